//! Sending to one recipient per platform call (Tmall nrt, ALSC): which recipients get a call,
//! and what an error of one call means for the others.

use std::collections::BTreeMap;

use crate::contract::{Failed, Issued, IssuedCoupon, Outcome, Recipient, RecipientKind};
use crate::{ErrorClass, TopError, stops_later_calls};

/// What the call for one recipient came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientCall {
    /// The call's TOP `request_id`, when the answer had one.
    pub request_id: Option<String>,
    /// The coupon the recipient got, or why not.
    pub result: Result<IssuedCoupon, TopError>,
}

/// Sends to each recipient in turn with `call`, which gets the recipient's trimmed nick or id.
///
/// * Refused without a call (`invalid-request`): recipients of another kind than `kind`
///   (`recipient-kind`), blank ones (`recipient-empty`), and repeats of a recipient already in the
///   request (`recipient-duplicate`: the first is sent, once).
/// * An error of one call fails that recipient only, unless [`stops_later_calls`] says it holds
///   for every call (unauthorized, auth-expired, rate-limited, protocol or settings errors, an
///   unreachable gateway). Then, on the first call, nothing was issued and the whole request
///   fails with it (`Err`); on a later call, the remaining recipients fail with it without a call:
///   a rate-limited app must not keep calling, and the others would fail the same way.
///
/// Every recipient ends up in `issued` or `failed`, in request order; `request_ids` has the
/// `request_id` of every call that answered with one. `platform` names the adapter in messages.
pub fn send_one_by_one(
    recipients: &[Recipient],
    kind: RecipientKind,
    platform: &str,
    mut call: impl FnMut(&str) -> RecipientCall,
) -> Result<Outcome, TopError> {
    let mut outcome = Outcome::default();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let mut stopped: Option<TopError> = None;
    let mut calls = 0usize;
    for (index, recipient) in recipients.iter().enumerate() {
        let result = match recipient.checked(kind, platform) {
            Err(error) => Err(error),
            Ok(value) => match seen.get(value) {
                Some(first) => {
                    let message = format!(
                        "{} {value:?} repeats recipient {first} of the request; sent once",
                        kind.as_str()
                    );
                    Err(invalid("recipient-duplicate", message))
                }
                None => {
                    seen.insert(value, index);
                    match &stopped {
                        Some(error) => Err(not_sent(error)),
                        None => {
                            let RecipientCall { request_id, result } = call(value);
                            calls += 1;
                            outcome.request_ids.extend(request_id);
                            if let Err(error) = &result
                                && stops_later_calls(error)
                            {
                                if calls == 1 {
                                    return Err(error.clone());
                                }
                                stopped = Some(error.clone());
                            }
                            result
                        }
                    }
                }
            },
        };
        let recipient = recipient.clone();
        match result {
            Ok(coupon) => outcome.issued.push(Issued { recipient, coupon }),
            Err(error) => outcome.failed.push(Failed { recipient, error }),
        }
    }
    Ok(outcome)
}

fn invalid(code: &str, message: String) -> TopError {
    TopError::new(ErrorClass::InvalidRequest, code, message)
}

/// The error of a recipient left out because an earlier call failed with `error`.
fn not_sent(error: &TopError) -> TopError {
    let mut error = error.clone();
    error.message = format!("not sent because an earlier call failed: {}", error.message);
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(id: &str) -> Recipient {
        Recipient::OpenId(id.to_owned())
    }

    fn issued(id: &str) -> RecipientCall {
        RecipientCall {
            request_id: Some(format!("req-{id}")),
            result: Ok(IssuedCoupon {
                coupon_id: Some(id.to_owned()),
                ..IssuedCoupon::default()
            }),
        }
    }

    fn failing(class: ErrorClass, code: &str) -> RecipientCall {
        RecipientCall {
            request_id: Some(format!("req-{code}")),
            result: Err(TopError::new(class, code, "boom")),
        }
    }

    /// Runs a send where `answer` decides each call; returns the outcome and the ids called.
    fn run(
        recipients: &[Recipient],
        mut answer: impl FnMut(&str) -> RecipientCall,
    ) -> (Result<Outcome, TopError>, Vec<String>) {
        let mut called = Vec::new();
        let result = send_one_by_one(recipients, RecipientKind::OpenId, "tmall-nrt", |id| {
            called.push(id.to_owned());
            answer(id)
        });
        (result, called)
    }

    #[test]
    fn calls_once_per_recipient_in_order() {
        let recipients = [open("a"), open(" b "), open("c")];
        let (outcome, called) = run(&recipients, issued);
        let outcome = outcome.unwrap();
        assert_eq!(called, ["a", "b", "c"]);
        assert_eq!(outcome.request_ids, ["req-a", "req-b", "req-c"]);
        let got: Vec<_> = outcome.issued.iter().map(|i| i.recipient.clone()).collect();
        assert_eq!(got, recipients, "recipients are reported as given");
        assert!(outcome.failed.is_empty());
    }

    #[test]
    fn refuses_other_kinds_blanks_and_repeats_without_a_call() {
        let recipients = [
            Recipient::Nick("n".into()),
            open("  "),
            open("a"),
            open("a "),
            Recipient::CustomerId("c".into()),
        ];
        let (outcome, called) = run(&recipients, issued);
        let outcome = outcome.unwrap();
        assert_eq!(called, ["a"]);
        let failed: Vec<_> = outcome
            .failed
            .iter()
            .map(|f| (f.recipient.clone(), f.error.class, f.error.code.clone()))
            .collect();
        use ErrorClass::InvalidRequest as I;
        assert_eq!(
            failed,
            [
                (recipients[0].clone(), I, "recipient-kind".to_owned()),
                (recipients[1].clone(), I, "recipient-empty".to_owned()),
                (recipients[3].clone(), I, "recipient-duplicate".to_owned()),
                (recipients[4].clone(), I, "recipient-kind".to_owned()),
            ]
        );
        assert_eq!(
            outcome.failed[0].error.message,
            "tmall-nrt takes open-id recipients, not nick"
        );
        assert_eq!(outcome.issued.len(), 1);
    }

    #[test]
    fn a_per_recipient_error_fails_that_recipient_only() {
        let recipients = [open("a"), open("b"), open("c")];
        let (outcome, called) = run(&recipients, |id| match id {
            "a" => failing(ErrorClass::RecipientLimit, "-7"),
            "b" => failing(ErrorClass::Transient, "http.timeout"),
            _ => issued(id),
        });
        let outcome = outcome.unwrap();
        assert_eq!(called, ["a", "b", "c"]);
        assert_eq!(outcome.failed.len(), 2);
        assert_eq!(outcome.issued.len(), 1);
        assert_eq!(outcome.request_ids, ["req--7", "req-http.timeout", "req-c"]);
    }

    #[test]
    fn a_request_wide_error_on_the_first_call_fails_the_request() {
        for (class, code) in [
            (ErrorClass::RateLimited, "7"),
            (ErrorClass::AuthExpired, "invalid-sessionkey"),
            (ErrorClass::Unauthorized, "25"),
            (ErrorClass::InvalidRequest, "31"),
            (ErrorClass::Transient, "http.connect"),
        ] {
            let recipients = [open("a"), open("b")];
            let (result, called) = run(&recipients, |_| failing(class, code));
            let error = result.unwrap_err();
            assert_eq!((error.class, error.code.as_str()), (class, code));
            assert_eq!(called, ["a"], "{code}: no second call");
        }
    }

    #[test]
    fn a_refused_recipient_before_the_first_call_does_not_count_as_a_call() {
        let recipients = [Recipient::Nick("n".into()), open("a"), open("b")];
        let (result, called) = run(&recipients, |_| failing(ErrorClass::RateLimited, "7"));
        assert_eq!(result.unwrap_err().class, ErrorClass::RateLimited);
        assert_eq!(called, ["a"]);
    }

    #[test]
    fn a_request_wide_error_later_fails_the_rest_without_calls() {
        let recipients = [open("a"), open("b"), open("c"), open("d"), open("c")];
        let (outcome, called) = run(&recipients, |id| match id {
            "b" => failing(ErrorClass::RateLimited, "7"),
            _ => issued(id),
        });
        let outcome = outcome.unwrap();
        assert_eq!(called, ["a", "b"]);
        assert_eq!(outcome.issued.len(), 1);
        let failed: Vec<_> = outcome
            .failed
            .iter()
            .map(|f| {
                (
                    f.recipient.value().to_owned(),
                    f.error.class,
                    f.error.code.clone(),
                )
            })
            .collect();
        assert_eq!(
            failed,
            [
                ("b".to_owned(), ErrorClass::RateLimited, "7".to_owned()),
                ("c".to_owned(), ErrorClass::RateLimited, "7".to_owned()),
                ("d".to_owned(), ErrorClass::RateLimited, "7".to_owned()),
                (
                    "c".to_owned(),
                    ErrorClass::InvalidRequest,
                    "recipient-duplicate".to_owned()
                ),
            ]
        );
        assert_eq!(
            outcome.failed[1].error.message,
            "not sent because an earlier call failed: boom"
        );
        assert_eq!(outcome.request_ids, ["req-a", "req-7"]);
    }

    #[test]
    fn no_recipients_make_no_calls() {
        let (outcome, called) = run(&[], issued);
        assert_eq!(outcome.unwrap(), Outcome::default());
        assert!(called.is_empty());
    }
}
