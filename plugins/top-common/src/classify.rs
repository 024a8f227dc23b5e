//! The TOP error classifier of PROTOCOLS.md §1.7, as a table.
//!
//! Rules are tried in order and the first match wins; a code no rule names is a business error of
//! the caller (`invalid-request`), as the recommended classifier's last arm says. Two choices the
//! protocol notes leave open are made here:
//!
//! * **26 Missing Session → `unauthorized`.** The host adds `session` whenever the plugin has one,
//!   so a missing session means the seller never authorized the app (or the plugin has no session
//!   configured). A refresh cannot create an authorization, so `auth-expired` would only buy one
//!   wasted retry. 27 Invalid Session and 44 Invalid access token are `auth-expired`.
//! * **12 Insufficient User Permissions → `unauthorized`.** The seller did not grant the scope; a
//!   refreshed session carries the same scopes, so only re-authorizing helps.

use crate::ErrorClass;

/// When a rule applies.
#[derive(Debug, Clone, Copy)]
pub(crate) enum When {
    /// The numeric `code` is one of these.
    Code(&'static [i64]),
    /// The `sub_code` starts with this prefix.
    SubCodePrefix(&'static str),
    /// The `sub_code` contains this text.
    SubCodeContains(&'static str),
    /// The `sub_code` is exactly this.
    SubCode(&'static str),
    /// `msg` or `sub_msg` contains every one of these (ASCII case-insensitive).
    Text(&'static [&'static str]),
}

/// One row of the classifier.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rule {
    pub(crate) when: When,
    pub(crate) class: ErrorClass,
    /// Appended to the error message when the rule matches, to tell people what to do.
    pub(crate) hint: Option<&'static str>,
}

const fn rule(when: When, class: ErrorClass, hint: Option<&'static str>) -> Rule {
    Rule { when, class, hint }
}

use ErrorClass::{
    AuthExpired, CouponUnavailable, InvalidRequest, RateLimited, Transient, Unauthorized,
};
use When::{Code, SubCode, SubCodeContains, SubCodePrefix, Text};

const CLOCK_HINT: &str =
    "the host clock may be off: TOP accepts timestamps at most 10 minutes away from GMT+8";
const DAILY_QUOTA_HINT: &str = "the daily call quota is used up; it resets at 00:00 GMT+8";

/// The classifier, in order. The tests below have one case per row.
pub(crate) static RULES: &[Rule] = &[
    // 4 User, 5 Session, 6 Partner Call Limited, 7 App Call Limited, 8 frequency limit.
    rule(Code(&[4, 5, 6, 7, 8]), RateLimited, None),
    // The rate-limit sub codes of code 7 (`isv.access-limited-by-*`, and the IOP spelling
    // `accesscontrol.limited-by-*`), in case they ever arrive under another code.
    rule(
        SubCodeContains("limited-by-app-access-count"),
        RateLimited,
        Some(DAILY_QUOTA_HINT),
    ),
    rule(SubCodeContains("limited-by"), RateLimited, None),
    // Server-side failures: "try again some time later".
    rule(SubCodePrefix("isp."), Transient, None),
    // 10 Service Currently Unavailable.
    rule(Code(&[10]), Transient, None),
    // 27 Invalid Session, 44 Invalid access token: refresh, then retry once.
    rule(Code(&[27, 44]), AuthExpired, None),
    // 26 Missing Session: see the module docs.
    rule(
        Code(&[26]),
        Unauthorized,
        Some(
            "no session was sent: the seller must authorize the app and the plugin needs its session",
        ),
    ),
    // 12 Insufficient User Permissions: see the module docs.
    rule(
        Code(&[12]),
        Unauthorized,
        Some("the seller has not granted this permission: re-authorize the app"),
    ),
    // 11 Insufficient ISV, 13 Partner Permissions, 53 Insufficient security level.
    rule(
        Code(&[11, 13, 53]),
        Unauthorized,
        Some("the app lacks permission for this API: apply for it in the TOP console"),
    ),
    // 25 Invalid Signature, 28 Missing / 29 Invalid App Key: wrong credentials.
    rule(
        Code(&[25, 28, 29]),
        Unauthorized,
        Some("check the plugin's app_key and secret"),
    ),
    // Protocol bugs: 9 Http Action Not Allowed, 21-23 method/format, 24 Missing Signature,
    // 32-34 version.
    rule(Code(&[9, 21, 22, 23, 24, 32, 33, 34]), InvalidRequest, None),
    // 30 Missing / 31 Invalid Timestamp.
    rule(Code(&[30, 31]), InvalidRequest, Some(CLOCK_HINT)),
    // Business errors (15/40/41/43/50 with isv.*) that say something more specific.
    rule(SubCode("isv.coupon-error"), CouponUnavailable, None),
    rule(
        SubCode("isv.error-unauthorized"),
        Unauthorized,
        Some("the seller has not subscribed to the coupon service"),
    ),
    rule(Text(&["优惠券不存在"]), CouponUnavailable, None),
    rule(Text(&["优惠券", "过期"]), CouponUnavailable, None),
    rule(Text(&["优惠券", "已发完"]), CouponUnavailable, None),
    rule(Text(&["coupon", "not exist"]), CouponUnavailable, None),
    rule(Text(&["coupon", "expired"]), CouponUnavailable, None),
];

/// Classifies a TOP `error_response` (PROTOCOLS.md §1.7) and extracts the wait it asks for.
///
/// `retry_after_ms` is `Some` only for `rate-limited` errors whose `sub_msg` or `msg` says
/// "ban will last N more seconds"; it is then `(N + 1) * 1000`, saturated to `u32::MAX`.
///
/// ```
/// use top_common::{classify, ErrorClass};
///
/// let msg = "App Call Limited[This ban will last for 22 more seconds]";
/// assert_eq!(classify(7, None, Some(msg), None), (ErrorClass::RateLimited, Some(23_000)));
/// assert_eq!(
///     classify(15, Some("isp.top-remote-connection-timeout"), None, None),
///     (ErrorClass::Transient, None)
/// );
/// ```
pub fn classify(
    code: i64,
    sub_code: Option<&str>,
    msg: Option<&str>,
    sub_msg: Option<&str>,
) -> (ErrorClass, Option<u32>) {
    let class = rule_for(code, sub_code, msg, sub_msg).map_or(InvalidRequest, |rule| rule.class);
    let retry = match class {
        RateLimited => sub_msg
            .and_then(ban_seconds)
            .or_else(|| msg.and_then(ban_seconds)),
        _ => None,
    };
    let retry_after_ms = retry.map(|seconds| {
        let ms = seconds.saturating_add(1).saturating_mul(1000);
        u32::try_from(ms).unwrap_or(u32::MAX)
    });
    (class, retry_after_ms)
}

/// The first rule that matches, if any.
pub(crate) fn rule_for(
    code: i64,
    sub_code: Option<&str>,
    msg: Option<&str>,
    sub_msg: Option<&str>,
) -> Option<&'static Rule> {
    let sub_code = sub_code.unwrap_or("");
    let text = format!("{} {}", msg.unwrap_or(""), sub_msg.unwrap_or("")).to_ascii_lowercase();
    RULES.iter().find(|rule| match rule.when {
        Code(codes) => codes.contains(&code),
        SubCodePrefix(prefix) => sub_code.starts_with(prefix),
        SubCodeContains(part) => sub_code.contains(part),
        SubCode(exact) => sub_code == exact,
        Text(parts) => parts.iter().all(|part| text.contains(part)),
    })
}

/// Reads N from "... ban will last [for] N more seconds ...".
fn ban_seconds(text: &str) -> Option<u64> {
    let lower = text.to_ascii_lowercase();
    let start = lower.find("ban will last")? + "ban will last".len();
    let rest = lower.get(start..)?.trim_start();
    let rest = rest.strip_prefix("for").unwrap_or(rest).trim_start();
    let digits: &str = &rest[..rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len())];
    if digits.is_empty() {
        return None;
    }
    // Saturate rather than fail: an absurdly long ban is still a ban.
    Some(digits.bytes().fold(0u64, |n, d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(code: i64, sub_code: Option<&str>) -> ErrorClass {
        classify(code, sub_code, None, None).0
    }

    #[test]
    fn call_limits_are_rate_limited() {
        for code in [4, 5, 6, 7, 8] {
            assert_eq!(class(code, None), RateLimited, "code {code}");
        }
    }

    #[test]
    fn app_call_limited_parses_the_ban_from_sub_msg_then_msg() {
        let sub_msg = "This ban will last 1 more seconds";
        assert_eq!(
            classify(
                7,
                Some("isv.access-limited-by-api-access-count"),
                Some("App Call Limited"),
                Some(sub_msg)
            ),
            (RateLimited, Some(2000))
        );
        let msg = "App Call Limited[This ban will last for 22238 more seconds]";
        assert_eq!(
            classify(7, None, Some(msg), None),
            (RateLimited, Some(22_239_000))
        );
        assert_eq!(
            classify(7, None, Some("App Call Limited"), None),
            (RateLimited, None)
        );
        assert_eq!(
            classify(7, None, Some("ban will last for more seconds"), None),
            (RateLimited, None)
        );
    }

    #[test]
    fn a_huge_ban_saturates() {
        let msg = "This ban will last 99999999999999999999999999 more seconds";
        assert_eq!(
            classify(7, None, Some(msg), None),
            (RateLimited, Some(u32::MAX))
        );
    }

    #[test]
    fn ban_text_is_ignored_for_other_classes() {
        let msg = "This ban will last 5 more seconds";
        assert_eq!(classify(27, None, Some(msg), None), (AuthExpired, None));
    }

    #[test]
    fn rate_limit_sub_codes_are_rate_limited_under_any_code() {
        assert_eq!(
            class(15, Some("accesscontrol.limited-by-app-access-count")),
            RateLimited
        );
        assert_eq!(
            class(15, Some("isv.access-limited-by-app-api-access-count")),
            RateLimited
        );
        let rule = rule_for(
            7,
            Some("accesscontrol.limited-by-app-access-count"),
            None,
            None,
        );
        assert_eq!(
            rule.and_then(|r| r.hint),
            None,
            "code 7 matches the first row"
        );
        let rule = rule_for(
            15,
            Some("accesscontrol.limited-by-app-access-count"),
            None,
            None,
        );
        assert_eq!(rule.and_then(|r| r.hint), Some(DAILY_QUOTA_HINT));
    }

    #[test]
    fn isp_sub_codes_are_transient() {
        assert_eq!(
            class(15, Some("isp.top-remote-connection-timeout")),
            Transient
        );
        assert_eq!(
            class(50, Some("isp.promotiontop-service-unavailable")),
            Transient
        );
        assert_eq!(
            class(27, Some("isp.unknown-error")),
            Transient,
            "isp before session codes"
        );
    }

    #[test]
    fn service_unavailable_is_transient() {
        assert_eq!(class(10, None), Transient);
    }

    #[test]
    fn invalid_session_and_token_are_auth_expired() {
        assert_eq!(class(27, Some("invalid-sessionkey")), AuthExpired);
        assert_eq!(class(44, None), AuthExpired);
    }

    #[test]
    fn missing_session_is_unauthorized() {
        assert_eq!(class(26, None), Unauthorized);
    }

    #[test]
    fn insufficient_user_permissions_is_unauthorized() {
        assert_eq!(class(12, None), Unauthorized);
    }

    #[test]
    fn permission_codes_are_unauthorized() {
        for code in [11, 13, 53] {
            assert_eq!(class(code, None), Unauthorized, "code {code}");
        }
    }

    #[test]
    fn wrong_credentials_are_unauthorized() {
        for code in [25, 28, 29] {
            assert_eq!(class(code, None), Unauthorized, "code {code}");
        }
    }

    #[test]
    fn protocol_bugs_are_invalid_requests() {
        for code in [9, 21, 22, 23, 24, 32, 33, 34] {
            assert_eq!(class(code, None), InvalidRequest, "code {code}");
        }
    }

    #[test]
    fn timestamp_errors_are_invalid_requests_with_a_clock_hint() {
        for code in [30, 31] {
            assert_eq!(class(code, None), InvalidRequest, "code {code}");
            assert_eq!(
                rule_for(code, None, None, None).and_then(|r| r.hint),
                Some(CLOCK_HINT)
            );
        }
    }

    #[test]
    fn coupon_error_is_coupon_unavailable() {
        assert_eq!(class(15, Some("isv.coupon-error")), CouponUnavailable);
    }

    #[test]
    fn seller_without_coupon_service_is_unauthorized() {
        assert_eq!(class(15, Some("isv.error-unauthorized")), Unauthorized);
    }

    #[test]
    fn messages_about_missing_or_expired_coupons_are_coupon_unavailable() {
        let cases = [
            "优惠券不存在或者优惠券已经过期",
            "优惠券已过期",
            "优惠券已发完",
            "Coupon does not exist",
            "the coupon has EXPIRED",
        ];
        for sub_msg in cases {
            assert_eq!(
                classify(15, Some("isv.invalid-parameter"), None, Some(sub_msg)).0,
                CouponUnavailable,
                "{sub_msg}"
            );
        }
        assert_eq!(
            classify(50, None, Some("优惠券不存在"), None).0,
            CouponUnavailable,
            "msg counts too"
        );
    }

    #[test]
    fn other_business_errors_are_invalid_requests() {
        for code in [15, 40, 41, 43, 50] {
            assert_eq!(
                class(code, Some("isv.invalid-parameter")),
                InvalidRequest,
                "code {code}"
            );
        }
        assert_eq!(
            classify(
                50,
                Some("isv.invalid-parameter"),
                Some("Remote service error"),
                Some("非法参数")
            )
            .0,
            InvalidRequest
        );
        assert_eq!(class(40, Some("isv.missing-parameter")), InvalidRequest);
    }

    #[test]
    fn unlisted_codes_fall_back_to_invalid_request() {
        for code in [0, 3, 42, 47, 99, 1234, -1] {
            assert_eq!(class(code, None), InvalidRequest, "code {code}");
        }
    }

    #[test]
    fn every_row_is_reachable() {
        // Guards against a row shadowed by an earlier one: each row has a witness it classifies.
        let witnesses: [(i64, Option<&str>, Option<&str>); 19] = [
            (7, None, None),
            (15, Some("accesscontrol.limited-by-app-access-count"), None),
            (15, Some("isv.access-limited-by-api-access-count"), None),
            (15, Some("isp.x"), None),
            (10, None, None),
            (27, None, None),
            (26, None, None),
            (12, None, None),
            (11, None, None),
            (25, None, None),
            (24, None, None),
            (31, None, None),
            (15, Some("isv.coupon-error"), None),
            (15, Some("isv.error-unauthorized"), None),
            (15, None, Some("优惠券不存在")),
            (15, None, Some("优惠券过期")),
            (15, None, Some("优惠券已发完")),
            (15, None, Some("coupon not exist")),
            (15, None, Some("coupon expired")),
        ];
        assert_eq!(witnesses.len(), RULES.len());
        for (index, (code, sub_code, sub_msg)) in witnesses.into_iter().enumerate() {
            let found = rule_for(code, sub_code, None, sub_msg).map(|r| r as *const Rule);
            assert_eq!(found, Some(&RULES[index] as *const Rule), "row {index}");
        }
    }
}
