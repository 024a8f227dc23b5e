//! What adapters' native tests share (the `test-support` feature, which adapters enable only as
//! a dev-dependency): the `signed-http` import scripted with canned answers, and the contract's
//! every-recipient-once check.
//!
//! ```
//! use adapter_kit::HttpError;
//! use adapter_kit::test_support::Script;
//!
//! let mut script: Script<String, u16> = Script::new([Ok(200)]);
//! assert_eq!(script.answer(&"first".to_owned()), Ok(200));
//! assert!(matches!(script.answer(&"second".to_owned()), Err(HttpError::Other(_))));
//! assert_eq!(script.into_calls(), ["first", "second"]);
//! ```

use std::collections::VecDeque;

use crate::HttpError;
use crate::contract::Recipient;

/// The `signed-http` import of a test: answers calls in order with the scripted answers, then
/// with `other` "no scripted answer", and records every call it was given.
#[derive(Debug)]
pub struct Script<Request, Response> {
    answers: VecDeque<Result<Response, HttpError>>,
    calls: Vec<Request>,
}

impl<Request: Clone, Response> Script<Request, Response> {
    /// A script that gives `answers`, one per call.
    pub fn new(answers: impl IntoIterator<Item = Result<Response, HttpError>>) -> Self {
        Self {
            answers: answers.into_iter().collect(),
            calls: Vec::new(),
        }
    }

    /// One call: recorded, and answered with the next scripted answer.
    pub fn answer(&mut self, call: &Request) -> Result<Response, HttpError> {
        self.calls.push(call.clone());
        self.answers
            .pop_front()
            .unwrap_or_else(|| Err(HttpError::Other("no scripted answer".to_owned())))
    }

    /// Every call made, in order.
    pub fn into_calls(self) -> Vec<Request> {
        self.calls
    }
}

/// Option or setting pairs from string slices.
pub fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect()
}

/// The contract's invariant: each recipient of the request is reported issued or failed exactly
/// once (a recipient listed twice, twice).
///
/// # Panics
///
/// When a recipient is missing, reported twice, or was not in the request.
pub fn assert_every_recipient_once<'a>(
    requested: &[Recipient],
    issued: impl IntoIterator<Item = &'a Recipient>,
    failed: impl IntoIterator<Item = &'a Recipient>,
) {
    let mut expected: Vec<&Recipient> = requested.iter().collect();
    let mut got: Vec<&Recipient> = issued.into_iter().chain(failed).collect();
    expected.sort();
    got.sort();
    assert_eq!(got, expected, "every recipient exactly once");
}
