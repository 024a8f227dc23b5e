//! Everything the taobao adapter decides, as pure functions over plain types (no WIT types).
//!
//! `lib.rs` converts the WIT records to these types and passes the `settings.get` and
//! `signed-http.send` imports in as closures, so the whole send and query flow, including calls that
//! fail half way, is tested natively with the fixtures under `fixtures/`.
//!
//! * Send: `taobao.promotion.coupon.sns.send`, one call per ≤100 nicks (`buyer_nick`) or ≤999
//!   open ids (`open_uids`). Every recipient of the request ends up issued or failed, never
//!   dropped.
//! * Query: `taobao.qianniu.coupon.buyer.get` for one nick.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use rustc_hash::FxBuildHasher;

use serde::Deserialize;
use top_common::contract::RecipientKind;
pub use top_common::contract::{Coupon, CouponState, Failed, Recipient};
use top_common::{
    ErrorClass, Field, Idempotence, Lookup, Obj, TopError, TopList, TopResponse, as_bool, as_i64,
    as_text, list_keys, top_response, value_to_unix, yuan_to_fen,
};
pub use top_common::{HttpError, HttpRequest, HttpResponse};

#[cfg(test)]
mod tests;

/// A hash map with rustc's Fx hash: no random seed, which std's default would ask WASI for in
/// every fresh instance.
type FxHashMap<K, V> = HashMap<K, V, FxBuildHasher>;

/// The platform name for `describe`.
pub const PLATFORM: &str = "taobao";
/// The adapter's own version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The host batches to this; the adapter still splits defensively (see [`MAX_NICKS_PER_CALL`]).
pub const MAX_RECIPIENTS_PER_CALL: u32 = 100;
/// The SNS send API has no idempotency key: a resend after a timeout can issue twice.
pub const IDEMPOTENT_SEND: bool = false;
/// The operations this adapter implements.
pub const OPERATIONS: [&str; 2] = ["send-coupon", "query-coupons"];

/// The TOP API behind `send-coupon`.
pub const SEND_METHOD: &str = "taobao.promotion.coupon.sns.send";
/// The TOP API behind `query-coupons`.
pub const QUERY_METHOD: &str = "taobao.qianniu.coupon.buyer.get";
/// The API's list limit for `buyer_nick`.
pub const MAX_NICKS_PER_CALL: usize = 100;
/// The API's list limit for `open_uids`.
pub const MAX_OPEN_UIDS_PER_CALL: usize = 999;

/// The WIT `send-request`, less the idempotency key this API cannot use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendRequest {
    /// The coupon template id (`coupon_id`), a decimal number.
    pub coupon: String,
    /// Everyone to send to.
    pub recipients: Vec<Recipient>,
    /// Coupons per recipient; the API sends exactly one.
    pub quantity: u32,
    /// Per-call overrides of the plugin's settings.
    pub options: Vec<(String, String)>,
}

/// A recipient who got the coupon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// As in the request.
    pub recipient: Recipient,
    /// The platform's `coupon_number`, when it gave one.
    pub coupon_id: Option<String>,
}

/// The WIT `send-outcome`: one entry per recipient of the request, in request order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outcome {
    /// Recipients who got the coupon.
    pub issued: Vec<Issued>,
    /// Recipients who did not, or whose outcome is unknown.
    pub failed: Vec<Failed>,
    /// The TOP `request_id` of every call that answered with one.
    pub request_ids: Vec<String>,
}

/// The plugin settings this adapter reads (`gateway`, `simplify`), after `--option` overrides:
/// exactly the settings every TOP adapter has.
pub use top_common::TopConfig as Config;

fn invalid(code: &str, message: String) -> TopError {
    TopError::new(ErrorClass::InvalidRequest, code, message)
}

/// Which list parameter a call carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BatchKind {
    /// `buyer_nick`, matched back by `buyer_nick`.
    Nick,
    /// `open_uids`, matched back by `open_uid`.
    OpenUid,
}

impl BatchKind {
    /// The request parameter.
    pub fn param(self) -> &'static str {
        match self {
            Self::Nick => "buyer_nick",
            Self::OpenUid => "open_uids",
        }
    }

    /// The field of a `CouponResult` / `ErrorMessage` that names the buyer.
    pub fn result_field(self) -> &'static str {
        match self {
            Self::Nick => "buyer_nick",
            Self::OpenUid => "open_uid",
        }
    }
}

/// The recipients of one platform call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Nicks or open ids.
    pub kind: BatchKind,
    /// `(index in the request, nick or open id as sent)`.
    pub members: Vec<(usize, String)>,
}

/// How the request's recipients are sent: the calls to make, and the recipients refused up front.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Calls, nicks first, each within the API's list limit.
    pub batches: Vec<Batch>,
    /// `(index in the request, why)` for recipients no call can carry.
    pub refused: Vec<(usize, TopError)>,
}

/// Splits recipients into calls. Refused without a call: customer ids, blank values, values with
/// a `,` (the list separator, so the platform would read two buyers), and repeats of a recipient
/// already in the request (sent once; the repeat fails).
pub fn plan(recipients: &[Recipient]) -> Plan {
    let mut nicks = Vec::new();
    let mut open_uids = Vec::new();
    let mut refused = Vec::new();
    // A hash map: a B-tree's string compares are a byte loop in wasm, and std's HashMap would
    // ask WASI for a random seed.
    let mut seen: FxHashMap<(BatchKind, &str), usize> = FxHashMap::default();
    seen.reserve(recipients.len());
    for (index, recipient) in recipients.iter().enumerate() {
        let (kind, value, list) = match recipient {
            Recipient::Nick(nick) => (BatchKind::Nick, nick, &mut nicks),
            Recipient::OpenId(open_uid) => (BatchKind::OpenUid, open_uid, &mut open_uids),
            Recipient::CustomerId(_) => {
                let message = "taobao takes nick and open-id recipients, not customer-id";
                refused.push((index, invalid("recipient-kind", message.to_owned())));
                continue;
            }
        };
        let value = value.trim();
        let what = kind.result_field();
        if value.is_empty() {
            refused.push((
                index,
                invalid("recipient-empty", format!("the {what} is empty")),
            ));
        } else if value.contains(',') {
            let message =
                format!("{what} {value:?} contains ',', which TOP reads as a list separator");
            refused.push((index, invalid("recipient-comma", message)));
        } else {
            // One search per recipient: string compares are slow in wasm (a byte loop).
            match seen.entry((kind, value)) {
                Entry::Occupied(first) => {
                    let first = first.get();
                    let message = format!(
                        "{what} {value:?} repeats recipient {first} of the request; sent once"
                    );
                    refused.push((index, invalid("recipient-duplicate", message)));
                }
                Entry::Vacant(slot) => {
                    slot.insert(index);
                    list.push((index, value.to_owned()));
                }
            }
        }
    }
    let mut batches = Vec::new();
    for (kind, list, size) in [
        (BatchKind::Nick, nicks, MAX_NICKS_PER_CALL),
        (BatchKind::OpenUid, open_uids, MAX_OPEN_UIDS_PER_CALL),
    ] {
        // Moved into the batches, not copied: each value was copied once already.
        let mut list = list.into_iter().peekable();
        while list.peek().is_some() {
            let members = list.by_ref().take(size).collect();
            batches.push(Batch { kind, members });
        }
    }
    Plan { batches, refused }
}

/// `coupon_id` must be a positive decimal that fits TOP's `Number` (a Java long).
pub fn parse_coupon_id(coupon: &str) -> Result<String, TopError> {
    let text = coupon.trim();
    let number = text
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| text.parse::<i64>().ok())
        .flatten()
        .filter(|id| *id > 0);
    number.map(|id| id.to_string()).ok_or_else(|| {
        invalid(
            "coupon-id",
            format!(
                "the coupon must be a taobao coupon_id, a positive decimal number; got {coupon:?}"
            ),
        )
    })
}

/// The call for one batch of `taobao.promotion.coupon.sns.send`.
pub fn build_send_request(config: &Config, coupon_id: &str, batch: &Batch) -> HttpRequest {
    let values: Vec<&str> = batch
        .members
        .iter()
        .map(|(_, value)| value.as_str())
        .collect();
    HttpRequest::top(&config.gateway, SEND_METHOD, config.simplify)
        .param("coupon_id", coupon_id)
        .param(batch.kind.param(), values.join(","))
}

/// The call for `taobao.qianniu.coupon.buyer.get`.
pub fn build_query_request(config: &Config, nick: &str) -> HttpRequest {
    HttpRequest::top(&config.gateway, QUERY_METHOD, config.simplify).param("buyer_nick", nick)
}

/// One call's answer: its TOP `request_id`, and the response object read as `T` or the call's
/// error. The SNS send has no idempotency key, so a timeout is `unknown` (see
/// [`top_common::http_error`]).
pub fn read_answer<'a, T: TopResponse<'a>>(
    answer: &'a Result<HttpResponse, HttpError>,
) -> (Option<String>, Result<T, TopError>) {
    top_common::read_answer_as(answer, Idempotence::NotIdempotent)
}

list_keys!(
    CouponResultKey = "coupon_result",
    ErrorMessageKey = "error_message",
    CouponInfoDoKey = "coupon_info_do",
);

/// What this adapter reads of a `taobao.promotion.coupon.sns.send` response; every field is
/// optional and may come as any JSON type.
#[derive(Debug, Default, Deserialize)]
pub struct SendResponse<'a> {
    /// Who got a coupon (`CouponResult`).
    #[serde(borrow, default)]
    pub coupon_results: TopList<Obj<SendEntry<'a>>, CouponResultKey>,
    /// Who did not (`ErrorMessage`).
    #[serde(borrow, default)]
    pub failure_buyers: TopList<Obj<SendEntry<'a>>, ErrorMessageKey>,
    /// Whether the call as a whole succeeded.
    #[serde(borrow, default)]
    pub is_success: Field<'a>,
    /// The TOP request id.
    #[serde(borrow, default)]
    pub request_id: Field<'a>,
}

top_response!(SendResponse);

/// One `CouponResult` or `ErrorMessage` of a send response.
#[derive(Debug, Default, Deserialize)]
pub struct SendEntry<'a> {
    /// The buyer, when the call carried nicks.
    #[serde(borrow, default)]
    pub buyer_nick: Field<'a>,
    /// The buyer, when the call carried open ids.
    #[serde(borrow, default)]
    pub open_uid: Field<'a>,
    /// The issued coupon's number (`CouponResult`).
    #[serde(borrow, default)]
    pub coupon_number: Field<'a>,
    /// Why the buyer got nothing (`ErrorMessage`).
    #[serde(borrow, default)]
    pub reason: Field<'a>,
}

impl<'a> SendEntry<'a> {
    /// The field that names the buyer in a call of `kind`.
    fn buyer(&self, kind: BatchKind) -> &Field<'a> {
        match kind {
            BatchKind::Nick => &self.buyer_nick,
            BatchKind::OpenUid => &self.open_uid,
        }
    }
}

/// What one recipient of a call got.
pub type RecipientResult = Result<Option<String>, TopError>;

/// Matches a send response to the batch: one result per member, in batch order.
///
/// `coupon_results` entries are issued (`coupon_number` as the coupon id); `failure_buyers` entries
/// fail with [`classify_failure_reason`] and code `failure_buyers`; a member in both lists counts
/// as issued (it has a coupon number, so resending could issue twice); a member in neither fails
/// as `unknown` / `not-reported`. Entries naming no member are ignored. `request_id` is copied
/// into the errors.
pub fn parse_send_response(
    response: &SendResponse<'_>,
    batch: &Batch,
    request_id: Option<&str>,
) -> Vec<RecipientResult> {
    // The platform lists buyers in the order they were sent, so each entry is first compared
    // with the member after the last one found; an index of every member is built only when
    // that misses. Members are distinct (`plan` refuses repeats).
    let mut expected = 0;
    let mut index: Option<FxHashMap<&str, usize>> = None;
    let mut find = |entry: &SendEntry<'_>| {
        // Borrowed, not copied, when the buyer is a string (the usual case).
        let buyer = entry.buyer(batch.kind).text()?;
        let buyer = buyer.trim();
        let at = match batch.members.get(expected) {
            Some((_, member)) if member == buyer => expected,
            _ => *index
                .get_or_insert_with(|| {
                    let members = batch.members.iter().enumerate();
                    members
                        .map(|(at, (_, member))| (member.as_str(), at))
                        .collect()
                })
                .get(buyer)?,
        };
        expected = at + 1;
        Some(at)
    };
    let with_id = |mut error: TopError| {
        error.request_id = request_id.map(str::to_owned);
        error
    };

    let mut results: Vec<Option<RecipientResult>> = vec![None; batch.members.len()];
    for entry in response
        .coupon_results
        .items
        .iter()
        .filter_map(|item| item.0.as_ref())
    {
        if let Some(slot) = find(entry).and_then(|at| results.get_mut(at))
            && slot.is_none()
        {
            let coupon_id = as_text(&entry.coupon_number);
            *slot = Some(Ok(coupon_id.filter(|id| !id.trim().is_empty())));
        }
    }
    for entry in response
        .failure_buyers
        .items
        .iter()
        .filter_map(|item| item.0.as_ref())
    {
        if let Some(slot) = find(entry).and_then(|at| results.get_mut(at))
            && slot.is_none()
        {
            let reason = entry.reason.text().unwrap_or_default();
            let reason = reason.trim();
            let message = if reason.is_empty() {
                "the platform gave no reason"
            } else {
                reason
            };
            let class = classify_failure_reason(reason);
            *slot = Some(Err(with_id(TopError::new(
                class,
                "failure_buyers",
                message,
            ))));
        }
    }
    let not_reported = || {
        let success = as_bool(&response.is_success);
        format!(
            "the platform reported neither success nor failure for this recipient (is_success {}); the coupon may or may not have been issued: check with query-coupons before resending",
            success.map_or("absent", |s| if s { "true" } else { "false" })
        )
    };
    results
        .into_iter()
        .map(|result| {
            result.unwrap_or_else(|| {
                Err(with_id(TopError::new(
                    ErrorClass::Unknown,
                    "not-reported",
                    not_reported(),
                )))
            })
        })
        .collect()
}

/// Words in a `failure_buyers` reason, in the order they are tried (ASCII case-insensitive). The
/// coupon-level words come first because "优惠券不存在" also contains "不存在".
static FAILURE_REASONS: &[(&[&str], ErrorClass)] = &[
    (
        &[
            "优惠券不存在",
            "过期",
            "已发完",
            "已领完",
            "库存",
            "已失效",
            "sold out",
            "stock",
            "expired",
        ],
        ErrorClass::CouponUnavailable,
    ),
    (
        &[
            "超过",
            "上限",
            "限制",
            "限领",
            "已领取",
            "已经领取",
            "领取过",
            "limit",
            "too many",
        ],
        ErrorClass::RecipientLimit,
    ),
    (
        &[
            "买家不存在",
            "用户不存在",
            "不存在",
            "粉丝",
            "关注",
            "not exist",
            "not found",
            "fan",
        ],
        ErrorClass::RecipientInvalid,
    ),
    (
        &[
            "系统异常",
            "系统错误",
            "繁忙",
            "稍后",
            "超时",
            "system error",
            "busy",
            "timeout",
            "try again",
        ],
        ErrorClass::Transient,
    ),
];

/// Classifies a `failure_buyers` reason.
///
/// * 优惠券不存在 / 过期 / 已发完 / 库存 … → `coupon-unavailable`
/// * 超过 / 上限 / 限制 / 已领取 … → `recipient-limit`
/// * 买家不存在 / not a fan (粉丝, 关注) … → `recipient-invalid`
/// * 系统异常 / 繁忙 / 稍后 … → `transient` (the buyer is listed as failed, so a resend is safe)
/// * anything else → `recipient-invalid`: the platform named this buyer as not sent, so the outcome
///   is known (not `unknown`), the request as a whole was accepted (not `invalid-request`), and a
///   blind retry is unlikely to help; the reason is kept as the message for people.
pub fn classify_failure_reason(reason: &str) -> ErrorClass {
    let reason = reason.to_ascii_lowercase();
    FAILURE_REASONS
        .iter()
        .find(|(words, _)| words.iter().any(|word| reason.contains(word)))
        .map_or(ErrorClass::RecipientInvalid, |(_, class)| *class)
}

/// After a call fails with one of these, later calls would fail the same way (and a rate-limited
/// app must not keep calling), so their recipients fail with the same error without a call.
fn stops_later_calls(class: ErrorClass) -> bool {
    matches!(
        class,
        ErrorClass::RateLimited | ErrorClass::AuthExpired | ErrorClass::Unauthorized
    )
}

/// Sends the coupon to every recipient.
///
/// Returns `Err` when the request itself is wrong (quantity, coupon id, settings) or when the
/// first call fails as a whole; after that a failing call fails only its own recipients, and the
/// remaining calls still go out unless the error was `rate-limited`, `auth-expired` or
/// `unauthorized`: later calls would fail the same way, and a rate-limited app must stop calling;
/// their recipients then fail with that error, and no call is made for them.
pub fn send_coupon(
    request: &SendRequest,
    settings: &dyn Fn(&str) -> Option<String>,
    mut http: impl FnMut(&HttpRequest) -> Result<HttpResponse, HttpError>,
) -> Result<Outcome, TopError> {
    if request.quantity != 1 {
        let message = format!(
            "{SEND_METHOD} sends one coupon per recipient; quantity is {}",
            request.quantity
        );
        return Err(invalid("quantity", message));
    }
    let coupon_id = parse_coupon_id(&request.coupon)?;
    let config = Config::resolve(&Lookup::new(&request.options, settings))?;
    let plan = plan(&request.recipients);

    let mut results: Vec<Option<RecipientResult>> = vec![None; request.recipients.len()];
    for (index, error) in plan.refused {
        if let Some(slot) = results.get_mut(index) {
            *slot = Some(Err(error));
        }
    }
    let mut request_ids = Vec::new();
    let mut stopped: Option<TopError> = None;
    for (call, batch) in plan.batches.iter().enumerate() {
        let batch_results = if let Some(error) = &stopped {
            let mut error = error.clone();
            error.message = format!("not sent because an earlier call failed: {}", error.message);
            vec![Err(error); batch.members.len()]
        } else {
            let answer = http(&build_send_request(&config, &coupon_id, batch));
            let (id, response) = read_answer::<SendResponse<'_>>(&answer);
            request_ids.extend(id.clone());
            match response {
                Ok(response) => parse_send_response(&response, batch, id.as_deref()),
                Err(error) if call == 0 => return Err(error),
                Err(error) => {
                    if stops_later_calls(error.class) {
                        stopped = Some(error.clone());
                    }
                    vec![Err(error); batch.members.len()]
                }
            }
        };
        for ((index, _), result) in batch.members.iter().zip(batch_results) {
            if let Some(slot) = results.get_mut(*index) {
                *slot = Some(result);
            }
        }
    }

    let mut outcome = Outcome {
        request_ids,
        ..Outcome::default()
    };
    for (recipient, result) in request.recipients.iter().zip(results) {
        let recipient = recipient.clone();
        match result {
            Some(Ok(coupon_id)) => outcome.issued.push(Issued {
                recipient,
                coupon_id,
            }),
            Some(Err(error)) => outcome.failed.push(Failed { recipient, error }),
            // Unreachable by construction (every recipient is refused or in a batch), but an
            // unplanned recipient must still be reported, never dropped.
            None => outcome.failed.push(Failed {
                recipient,
                error: TopError::new(
                    ErrorClass::Unknown,
                    "not-reported",
                    "the adapter made no call for this recipient",
                ),
            }),
        }
    }
    Ok(outcome)
}

/// Lists the seller's coupons the buyer holds or can claim.
pub fn query_coupons(
    recipient: &Recipient,
    options: &[(String, String)],
    settings: &dyn Fn(&str) -> Option<String>,
    mut http: impl FnMut(&HttpRequest) -> Result<HttpResponse, HttpError>,
) -> Result<Vec<Coupon>, TopError> {
    let nick = recipient.checked(RecipientKind::Nick, QUERY_METHOD)?;
    let config = Config::resolve(&Lookup::new(options, settings))?;
    let answer = http(&build_query_request(&config, nick));
    let (id, response) = read_answer::<QueryResponse<'_>>(&answer);
    let response = response?;
    if as_bool(&response.is_success) == Some(false) {
        let suffix = id
            .as_ref()
            .map_or_else(String::new, |id| format!(" (request_id {id})"));
        let message = format!("{QUERY_METHOD} answered is_success false without an error{suffix}");
        let error = TopError::new(ErrorClass::Transient, "not-success", message);
        return Err(TopError {
            request_id: id,
            ..error
        });
    }
    Ok(parse_query_response(&response))
}

/// What this adapter reads of a `taobao.qianniu.coupon.buyer.get` response.
#[derive(Debug, Default, Deserialize)]
pub struct QueryResponse<'a> {
    /// The coupons (`CouponInfoDo`).
    #[serde(borrow, default)]
    pub coupons: TopList<Obj<QueryCoupon<'a>>, CouponInfoDoKey>,
    /// Whether the call succeeded.
    #[serde(borrow, default)]
    pub is_success: Field<'a>,
    /// The TOP request id.
    #[serde(borrow, default)]
    pub request_id: Field<'a>,
}

top_response!(QueryResponse);

/// One `CouponInfoDo`; every field is optional.
#[derive(Debug, Default, Deserialize)]
pub struct QueryCoupon<'a> {
    /// The coupon instance id.
    #[serde(borrow, default)]
    pub id: Field<'a>,
    /// The template it was issued from.
    #[serde(borrow, default)]
    pub template_id: Field<'a>,
    /// Its name.
    #[serde(borrow, default)]
    pub title: Field<'a>,
    /// 1 held, 0 claimable.
    #[serde(borrow, default)]
    pub status: Field<'a>,
    /// Face value in yuan.
    #[serde(borrow, default)]
    pub amount: Field<'a>,
    /// Minimum spend in yuan.
    #[serde(borrow, default)]
    pub start_fee: Field<'a>,
    /// Start of validity (GMT+8 text or epoch).
    #[serde(borrow, default)]
    pub start_time: Field<'a>,
    /// End of validity.
    #[serde(borrow, default)]
    pub end_time: Field<'a>,
    /// Where the buyer claims it.
    #[serde(borrow, default)]
    pub apply_url: Field<'a>,
}

/// The coupons of a `taobao.qianniu.coupon.buyer.get` response; items that are not objects are
/// skipped, and every field is optional.
pub fn parse_query_response(response: &QueryResponse<'_>) -> Vec<Coupon> {
    response
        .coupons
        .items
        .iter()
        .filter_map(|item| item.0.as_ref())
        .map(parse_coupon)
        .collect()
}

fn parse_coupon(item: &QueryCoupon<'_>) -> Coupon {
    let text = |field: &Field<'_>| {
        field
            .text()
            .map(|text| text.trim().to_owned())
            .filter(|text| !text.is_empty())
    };
    let state = match as_i64(&item.status) {
        Some(1) => CouponState::Held,
        Some(0) => CouponState::Claimable,
        _ => CouponState::Unknown,
    };
    Coupon {
        id: text(&item.id).unwrap_or_default(),
        template_id: text(&item.template_id),
        title: text(&item.title),
        state,
        amount_fen: yuan_to_fen(&item.amount),
        threshold_fen: yuan_to_fen(&item.start_fee),
        valid_from: value_to_unix(&item.start_time),
        valid_until: value_to_unix(&item.end_time),
        claim_url: text(&item.apply_url),
    }
}
