//! The decisions of a send, as pure functions over its journal rows: what an interrupted send
//! resumes with, which retries have run out, how long to back off, what an adapter's answer
//! makes of each row, and what a reconciling query says. `delivery.rs` does the IO around them.

use std::collections::HashMap;
use std::time::Duration;

use crate::config::Retry;
use crate::runtime::SendAnswer;
use crate::store::{Detail, Row, RowState};
use crate::types::{AdapterError, Coupon, CouponState, ErrorClass, IssuedCoupon, Recipient};

/// How long the limiter pauses a plugin on a `rate-limited` answer that names no duration.
pub(crate) const DEFAULT_BAN: Duration = Duration::from_secs(1);

/// What to do with a recipient after a failure of this class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Send again (after a backoff): the failure may pass and a resend cannot issue twice.
    Retry,
    /// Ask the platform (`query-coupons`) whether the send applied before sending again.
    Reconcile,
    /// It ended.
    Final,
}

/// The step after a failure: `transient` and `rate-limited` are resent; `unknown` is resent only
/// when the adapter's send is idempotent, else reconciled; the rest are final.
pub(crate) fn next_step(class: ErrorClass, idempotent: bool) -> Next {
    match class {
        ErrorClass::Transient | ErrorClass::RateLimited => Next::Retry,
        ErrorClass::Unknown if idempotent => Next::Retry,
        ErrorClass::Unknown => Next::Reconcile,
        _ => Next::Final,
    }
}

/// The backoff before retry round `round` (1-based): full jitter up to `base × 2^(round-1)`,
/// capped, and never less than the longest wait the platform asked for. `unit` is the jitter
/// draw in [0, 1).
pub(crate) fn backoff(retry: &Retry, round: u32, asked: Option<Duration>, unit: f64) -> Duration {
    let cap = Duration::from_millis(retry.max_backoff_ms);
    let ceiling = Duration::from_millis(retry.base_backoff_ms)
        .saturating_mul(1 << round.saturating_sub(1).min(20))
        .min(cap);
    ceiling
        .mul_f64(unit.clamp(0.0, 1.0))
        .max(asked.unwrap_or_default())
}

/// Rows an interrupted run left in flight, as this run takes them over: resent where a resend
/// is idempotent, otherwise reconciled first. Returns the indices to reconcile.
pub(crate) fn resume(rows: &mut [Row], idempotent: bool) -> Vec<usize> {
    let mut to_reconcile = Vec::new();
    for (index, row) in rows.iter_mut().enumerate() {
        if row.state == RowState::InFlight {
            if idempotent {
                row.state = RowState::Retry;
            } else {
                to_reconcile.push(index);
            }
        }
    }
    to_reconcile
}

/// Ends the retries that are out of attempts, or all of them when the budget is spent; returns
/// the positions that changed.
pub(crate) fn expire_retries(rows: &mut [Row], max_attempts: u32, out_of_time: bool) -> Vec<u32> {
    let mut ended = Vec::new();
    for row in rows.iter_mut() {
        if row.state == RowState::Retry && (row.attempts >= max_attempts || out_of_time) {
            row.state = RowState::Failed;
            ended.push(row.position);
        }
    }
    ended
}

/// The indices of rows still to send, in order.
pub(crate) fn pending(rows: &[Row]) -> Vec<usize> {
    (0..rows.len())
        .filter(|&i| matches!(rows[i].state, RowState::New | RowState::Retry))
        .collect()
}

/// The longest wait the platform asked for among the `pending` rows' last errors.
pub(crate) fn asked_wait(rows: &[Row], pending: &[usize]) -> Option<Duration> {
    pending
        .iter()
        .filter_map(|&i| match &rows[i].detail {
            Some(Detail::Error(e)) => e.retry_after_ms,
            _ => None,
        })
        .max()
        .map(|ms| Duration::from_millis(ms.into()))
}

/// Whether nothing is left to do for any row.
pub(crate) fn finished(rows: &[Row]) -> bool {
    rows.iter()
        .all(|row| !matches!(row.state, RowState::New | RowState::Retry))
}

/// Marks the rows of `batch` in flight for another attempt; returns their positions.
pub(crate) fn start_attempt(rows: &mut [Row], batch: &[usize]) -> Vec<u32> {
    for &i in batch {
        rows[i].state = RowState::InFlight;
        rows[i].attempts += 1;
    }
    batch.iter().map(|&i| rows[i].position).collect()
}

/// Fails the rows of `batch` for good with `error`, keeping an error they already carry.
pub(crate) fn fail(rows: &mut [Row], batch: &[usize], error: &AdapterError) -> Vec<u32> {
    for &i in batch {
        rows[i].state = RowState::Failed;
        rows[i]
            .detail
            .get_or_insert_with(|| Detail::Error(error.clone()));
    }
    batch.iter().map(|&i| rows[i].position).collect()
}

/// Marks the rows of `batch` unknown with `error` (the adapter was stopped mid-call).
pub(crate) fn lose(rows: &mut [Row], batch: &[usize], error: &AdapterError) {
    for &i in batch {
        rows[i].state = RowState::Unknown;
        rows[i].detail = Some(Detail::Error(error.clone()));
    }
}

/// What an adapter's answer made of a batch.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Applied {
    /// Rows left in flight, to reconcile through `query-coupons`.
    pub(crate) to_reconcile: Vec<usize>,
    /// The longest ban a `rate-limited` answer asked for.
    pub(crate) ban: Option<Duration>,
    /// The classes of the failures that will be retried (for metrics).
    pub(crate) retried: Vec<ErrorClass>,
    /// Recipients the adapter reported that were not in the batch (ignored).
    pub(crate) strangers: usize,
}

/// Applies an adapter's answer (per recipient, or one error for the whole call) to the rows of
/// `batch`: every row ends exactly once — issued, failed, to retry, or in flight to reconcile; a
/// recipient the adapter did not report is `unknown` ("not-reported").
pub(crate) fn apply(
    rows: &mut [Row],
    batch: &[usize],
    answer: &Result<SendAnswer, AdapterError>,
    idempotent: bool,
) -> Applied {
    let mut answers: HashMap<&Recipient, Result<&IssuedCoupon, &AdapterError>> = HashMap::new();
    match answer {
        Ok(answer) => {
            for issued in &answer.issued {
                answers.entry(&issued.recipient).or_insert(Ok(issued));
            }
            for failure in &answer.failed {
                answers
                    .entry(&failure.recipient)
                    .or_insert(Err(&failure.error));
            }
        }
        Err(error) => {
            for &i in batch {
                answers.insert(&rows[i].recipient, Err(error));
            }
        }
    }
    let mut answers: HashMap<Recipient, Result<IssuedCoupon, AdapterError>> = answers
        .into_iter()
        .map(|(recipient, answer)| (recipient.clone(), answer.cloned().map_err(Clone::clone)))
        .collect();
    let mut applied = Applied::default();
    for &i in batch {
        let row = &mut rows[i];
        let answer = answers.remove(&row.recipient).unwrap_or_else(|| {
            Err(AdapterError::new(
                ErrorClass::Unknown,
                "not-reported",
                "the adapter did not report this recipient",
            ))
        });
        match answer {
            Ok(issued) => {
                row.state = RowState::Issued;
                row.detail = Some(Detail::Issued(issued));
            }
            Err(error) => {
                let next = next_step(error.class, idempotent);
                if next == Next::Retry {
                    applied.retried.push(error.class);
                }
                if error.class == ErrorClass::RateLimited {
                    let asked = error
                        .retry_after_ms
                        .map(|ms| Duration::from_millis(ms.into()))
                        .unwrap_or(DEFAULT_BAN);
                    applied.ban = applied.ban.max(Some(asked));
                }
                row.state = match next {
                    Next::Retry => RowState::Retry,
                    Next::Reconcile => {
                        applied.to_reconcile.push(i);
                        RowState::InFlight
                    }
                    Next::Final => RowState::Failed,
                };
                row.detail = Some(Detail::Error(error));
            }
        }
    }
    applied.strangers = answers.len();
    applied
}

/// What a reconciling query said about a recipient whose send was ambiguous (`original` is the
/// ambiguous failure): the coupon is there (issued), it is not (send again, or fail after the
/// last attempt), or nobody can tell (`Err`: the query failed).
pub(crate) fn reconciled(
    row: &mut Row,
    coupon: &str,
    original: AdapterError,
    found: Result<&[Coupon], &str>,
    max_attempts: u32,
) {
    match found {
        Ok(coupons) => {
            let held = coupons.iter().find(|c| {
                c.template_id.as_deref() == Some(coupon) && c.state != CouponState::Claimable
            });
            match held {
                Some(coupon) => {
                    row.state = RowState::Issued;
                    row.detail = Some(Detail::Issued(IssuedCoupon {
                        coupon_id: Some(coupon.id.clone()),
                        name: coupon.title.clone(),
                        amount_fen: coupon.amount_fen,
                        threshold_fen: coupon.threshold_fen,
                        valid_from: coupon.valid_from,
                        valid_until: coupon.valid_until,
                        ..IssuedCoupon::new(row.recipient.clone())
                    }));
                }
                None if row.attempts < max_attempts => {
                    // Not applied: sending again cannot issue twice.
                    row.state = RowState::Retry;
                    row.detail = Some(Detail::Error(original));
                }
                None => {
                    row.state = RowState::Failed;
                    row.detail = Some(Detail::Error(AdapterError::new(
                        ErrorClass::Transient,
                        "not-applied",
                        format!(
                            "the platform did not apply the send (checked with query-coupons) after {} attempts; last: {}",
                            row.attempts, original
                        ),
                    )));
                }
            }
        }
        Err(error) => {
            row.state = RowState::Unknown;
            row.detail = Some(Detail::Error(AdapterError::new(
                ErrorClass::Unknown,
                original.code.clone(),
                format!(
                    "{}; query-coupons could not tell whether it applied: {error}",
                    original.message
                ),
            )));
        }
    }
}

/// The ambiguous failure a row to reconcile carries (taking it out of the row).
pub(crate) fn ambiguity(row: &mut Row) -> AdapterError {
    match row.detail.take() {
        Some(Detail::Error(error)) => error,
        _ => AdapterError::new(
            ErrorClass::Unknown,
            "interrupted",
            "the send was interrupted while in flight",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::RecipientFailure;

    fn rows(n: usize) -> Vec<Row> {
        (0..n)
            .map(|i| Row::new(i as u32, Recipient::Nick(format!("n{i}"))))
            .collect()
    }

    fn failure(recipient: &Row, class: ErrorClass) -> RecipientFailure {
        RecipientFailure {
            recipient: recipient.recipient.clone(),
            error: AdapterError::new(class, "c", "m"),
        }
    }

    #[test]
    fn backoff_grows_with_jitter_and_honours_the_platform() {
        let retry = Retry::default();
        for round in 1..10 {
            for unit in [0.0, 0.5, 0.999] {
                let wait = backoff(&retry, round, None, unit);
                assert!(wait <= Duration::from_millis(retry.max_backoff_ms));
                assert!(wait <= Duration::from_millis(retry.base_backoff_ms << (round - 1)));
            }
        }
        assert_eq!(backoff(&retry, 2, None, 0.5), Duration::from_millis(200));
        let asked = Duration::from_secs(22);
        assert!(backoff(&retry, 1, Some(asked), 0.9) >= asked);
    }

    #[test]
    fn only_passing_failures_are_retried_and_ambiguity_is_reconciled_unless_idempotent() {
        assert_eq!(next_step(ErrorClass::Transient, false), Next::Retry);
        assert_eq!(next_step(ErrorClass::RateLimited, false), Next::Retry);
        assert_eq!(next_step(ErrorClass::Unknown, true), Next::Retry);
        assert_eq!(next_step(ErrorClass::Unknown, false), Next::Reconcile);
        for class in [
            ErrorClass::InvalidRequest,
            ErrorClass::Unauthorized,
            ErrorClass::AuthExpired,
            ErrorClass::CouponUnavailable,
            ErrorClass::RecipientLimit,
            ErrorClass::RecipientInvalid,
        ] {
            assert_eq!(next_step(class, false), Next::Final, "{class}");
        }
    }

    #[test]
    fn an_answer_ends_every_row_of_the_batch_exactly_once() {
        let mut rows = rows(5);
        let batch = [0, 1, 2, 3];
        start_attempt(&mut rows, &batch);
        let answer = Ok(SendAnswer {
            issued: vec![IssuedCoupon::new(rows[0].recipient.clone())],
            failed: vec![
                failure(&rows[1], ErrorClass::RecipientLimit),
                failure(&rows[2], ErrorClass::Transient),
                // Reported twice: the first report counts.
                failure(&rows[0], ErrorClass::RecipientInvalid),
                // Not in the batch.
                failure(&rows[4], ErrorClass::RecipientInvalid),
            ],
            platform_request_ids: vec![],
        });
        let applied = apply(&mut rows, &batch, &answer, false);
        let states: Vec<_> = rows.iter().map(|r| r.state).collect();
        assert_eq!(
            states,
            [
                RowState::Issued,
                RowState::Failed,
                RowState::Retry,
                RowState::InFlight,
                RowState::New
            ]
        );
        assert_eq!(
            applied.to_reconcile,
            vec![3],
            "not reported: unknown, reconciled"
        );
        assert_eq!(applied.retried, vec![ErrorClass::Transient]);
        assert_eq!(applied.strangers, 1);
        assert!(matches!(&rows[3].detail, Some(Detail::Error(e)) if e.code == "not-reported"));
    }

    #[test]
    fn a_whole_call_failure_applies_to_every_row_and_a_ban_is_the_longest_asked() {
        let mut rows = rows(2);
        let mut error = AdapterError::new(ErrorClass::RateLimited, "7", "too frequent");
        error.retry_after_ms = Some(2500);
        let applied = apply(&mut rows, &[0, 1], &Err(error), true);
        assert!(rows.iter().all(|r| r.state == RowState::Retry));
        assert_eq!(applied.ban, Some(Duration::from_millis(2500)));
        let mut rows = self::rows(1);
        let applied = apply(
            &mut rows,
            &[0],
            &Err(AdapterError::new(ErrorClass::RateLimited, "7", "x")),
            true,
        );
        assert_eq!(applied.ban, Some(DEFAULT_BAN));
    }

    #[test]
    fn an_interrupted_send_resends_or_reconciles_what_was_in_flight() {
        let mut both = rows(3);
        both[0].state = RowState::Issued;
        both[1].state = RowState::InFlight;
        let mut idempotent = both.clone();
        assert!(resume(&mut idempotent, true).is_empty());
        assert_eq!(idempotent[1].state, RowState::Retry);
        assert_eq!(resume(&mut both, false), vec![1]);
        assert_eq!(both[1].state, RowState::InFlight);
    }

    #[test]
    fn retries_end_when_attempts_or_time_run_out() {
        let mut rows = rows(3);
        for (row, attempts) in rows.iter_mut().zip([1, 5, 2]) {
            row.state = RowState::Retry;
            row.attempts = attempts;
        }
        assert_eq!(expire_retries(&mut rows, 5, false), vec![1]);
        assert_eq!(pending(&rows), vec![0, 2]);
        assert_eq!(expire_retries(&mut rows, 5, true), vec![0, 2]);
        assert!(finished(&rows));
    }

    #[test]
    fn a_reconciling_query_decides_issued_resend_failed_or_unknown() {
        let coupon = |template: &str, state| Coupon {
            id: "i-1".into(),
            template_id: Some(template.into()),
            title: None,
            state,
            amount_fen: Some(300),
            threshold_fen: None,
            valid_from: None,
            valid_until: None,
            claim_url: None,
        };
        let original = AdapterError::new(ErrorClass::Unknown, "timeout", "no answer");
        let mut row = rows(1).remove(0);
        row.attempts = 1;
        let held = [coupon("48552", CouponState::Held)];
        reconciled(&mut row, "48552", original.clone(), Ok(&held), 5);
        assert_eq!(row.state, RowState::Issued);
        // Another coupon, or one only claimable, is not this send's.
        let other = [
            coupon("1", CouponState::Held),
            coupon("48552", CouponState::Claimable),
        ];
        reconciled(&mut row, "48552", original.clone(), Ok(&other), 5);
        assert_eq!(row.state, RowState::Retry);
        row.attempts = 5;
        reconciled(&mut row, "48552", original.clone(), Ok(&other), 5);
        assert_eq!(row.state, RowState::Failed);
        reconciled(&mut row, "48552", original, Err("down"), 5);
        assert_eq!(row.state, RowState::Unknown);
        assert!(matches!(&row.detail, Some(Detail::Error(e)) if e.message.contains("down")));
    }
}
