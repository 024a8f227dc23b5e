//! The scripted platform `coupon-host check` runs an adapter against: a [`Transport`] that
//! answers every request the adapter makes through `signed-http` from the scenario of the
//! moment, and never opens a socket.
//!
//! A scenario is a platform behaving badly in one way (a 5xx, a refused connection, a timeout, a
//! truncated or foreign body, a body too large, …) or well in a way an adapter may not expect (a
//! success that leaves recipients out). Answers that look valid follow the two envelope
//! conventions the seed platforms use: TOP's `<method>_response` object when the request
//! carries a `method` parameter, and the `err_no` / `data` object otherwise. The transport also
//! records what a call saw, for the rules in `check.rs`: how many requests it made, and whether
//! any of them was answered with a success (a 2xx status and a JSON body).

use std::sync::Mutex;

use async_trait::async_trait;
use rand::{RngCore, SeedableRng};
use serde_json::{Value, json};

use crate::transport::{HttpRequest, HttpResponse, Method, TransportError};

/// How large the body of the `huge-body` scenario is: far beyond the default
/// `limits.max_response_kib`.
const HUGE_BODY_BYTES: u64 = 20 << 20;

/// How many random bytes the `random-bytes` scenario answers.
const RANDOM_BYTES: usize = 64 << 10;

/// How deep the `deeply-nested` scenario's JSON array nests.
const NESTING: usize = 100_000;

/// One way the platform behaves for the whole of one adapter call.
pub(super) struct Scenario {
    /// Its name in the report.
    pub(super) name: &'static str,
    /// What the platform does, in a few words.
    pub(super) about: &'static str,
    /// Whether every request of the call times out after it left, so that each may have been
    /// applied: the rule for sends that are not idempotent applies.
    pub(super) timed_out: bool,
    answer: fn(&Ask<'_>) -> Result<HttpResponse, TransportError>,
}

/// What an answer is made from: the request, and where it stands in the call.
struct Ask<'a> {
    /// 1 for the call's first request.
    number: u32,
    /// The TOP API the request names (its `method` parameter), if any.
    top_method: Option<String>,
    /// The recipient ids of the call that the request carries, in the call's order.
    ids: Vec<&'a str>,
    /// The largest body the host would read.
    max_response_bytes: u64,
}

/// Every scenario, in the order the report lists them.
pub(super) const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "ok",
        about: "200, a success that names every recipient the request carries",
        timed_out: false,
        answer: |ask| Ok(json_response(200, &success(ask, &ask.ids))),
    },
    Scenario {
        name: "partial",
        about: "200, a success that names only the first recipient the request carries",
        timed_out: false,
        answer: |ask| {
            Ok(json_response(
                200,
                &success(ask, &ask.ids[..ask.ids.len().min(1)]),
            ))
        },
    },
    Scenario {
        name: "empty-success",
        about: "200, a success envelope with nothing in it",
        timed_out: false,
        answer: |ask| Ok(json_response(200, &success(ask, &[]))),
    },
    Scenario {
        name: "server-error",
        about: "500 with a plain-text body",
        timed_out: false,
        answer: |_| {
            Ok(response(
                500,
                "text/plain",
                b"Internal Server Error".to_vec(),
            ))
        },
    },
    Scenario {
        name: "unavailable",
        about: "503 with Retry-After and a JSON body",
        timed_out: false,
        answer: |_| {
            let mut answer = json_response(503, &json!({"error": "service unavailable"}));
            answer.headers.push(("retry-after".into(), "1".into()));
            Ok(answer)
        },
    },
    Scenario {
        name: "rate-limited",
        about: "429 with Retry-After",
        timed_out: false,
        answer: |_| {
            let mut answer = response(429, "text/plain", b"Too Many Requests".to_vec());
            answer.headers.push(("retry-after".into(), "2".into()));
            Ok(answer)
        },
    },
    Scenario {
        name: "unauthorized",
        about: "401 with a JSON body",
        timed_out: false,
        answer: |_| Ok(json_response(401, &json!({"error": "invalid credentials"}))),
    },
    Scenario {
        name: "redirect",
        about: "302 to another origin, with an empty body",
        timed_out: false,
        answer: |_| {
            let mut answer = response(302, "text/plain", Vec::new());
            answer
                .headers
                .push(("location".into(), "https://login.check.invalid/".into()));
            Ok(answer)
        },
    },
    Scenario {
        name: "connection-refused",
        about: "no connection: nothing reached the platform",
        timed_out: false,
        answer: |_| Err(TransportError::Connect("connection refused".into())),
    },
    Scenario {
        name: "timeout",
        about: "no answer in time after the request left: it may have been applied",
        timed_out: true,
        answer: |_| Err(TransportError::Timeout),
    },
    Scenario {
        name: "truncated-json",
        about: "200, the success answer cut in half",
        timed_out: false,
        answer: |ask| {
            let mut body = serde_json::to_vec(&success(ask, &ask.ids)).unwrap_or_default();
            body.truncate(body.len() / 2);
            Ok(response(200, "application/json", body))
        },
    },
    Scenario {
        name: "html",
        about: "200, an HTML error page",
        timed_out: false,
        answer: |_| {
            let page = "<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\
                        <body><h1>502 Bad Gateway</h1><hr>nginx</body></html>\n";
            Ok(response(200, "text/html", page.as_bytes().to_vec()))
        },
    },
    Scenario {
        name: "empty-body",
        about: "200 with an empty body",
        timed_out: false,
        answer: |_| Ok(response(200, "application/json", Vec::new())),
    },
    Scenario {
        name: "wrong-shape",
        about: "200, a JSON object of another API",
        timed_out: false,
        answer: |_| {
            let body = json!({"unexpected": {"deeply": {"nested": [1, 2, 3]}}, "err_no": "0", "code": "0"});
            Ok(json_response(200, &body))
        },
    },
    Scenario {
        name: "not-an-object",
        about: "200, a JSON array of odd values",
        timed_out: false,
        answer: |_| Ok(json_response(200, &json!([null, 1, "x", {"err_no": 0}]))),
    },
    Scenario {
        name: "deeply-nested",
        about: "200, a JSON array nested 100000 deep",
        timed_out: false,
        answer: |_| {
            let mut body = vec![b'['; NESTING];
            body.extend(std::iter::repeat_n(b']', NESTING));
            Ok(response(200, "application/json", body))
        },
    },
    Scenario {
        name: "random-bytes",
        about: "200, 64 KiB of random bytes",
        timed_out: false,
        answer: |_| {
            // Seeded: every run of the check sends the same bytes.
            let mut body = vec![0; RANDOM_BYTES];
            rand::rngs::StdRng::seed_from_u64(16).fill_bytes(&mut body);
            Ok(response(200, "application/octet-stream", body))
        },
    },
    Scenario {
        name: "large-body",
        about: "200, a success padded to just under limits.max_response_kib",
        timed_out: false,
        answer: |ask| {
            let mut body = success(ask, &ask.ids);
            let room = usize::try_from(ask.max_response_bytes).unwrap_or(usize::MAX);
            let padding = room.saturating_sub(4096);
            if let Value::Object(members) = &mut body {
                members.insert("padding".into(), Value::String(" ".repeat(padding)));
            }
            Ok(json_response(200, &body))
        },
    },
    Scenario {
        name: "huge-body",
        about: "200 with a 20 MiB body",
        timed_out: false,
        answer: |ask| {
            // As the network transport does: a body beyond the cap is never read.
            if ask.max_response_bytes < HUGE_BODY_BYTES {
                return Err(TransportError::TooLarge);
            }
            let padding = "x".repeat(HUGE_BODY_BYTES as usize);
            Ok(json_response(200, &json!({ "padding": padding })))
        },
    },
    Scenario {
        name: "then-server-error",
        about: "the first request succeeds, every later one gets 500",
        timed_out: false,
        answer: |ask| match ask.number {
            1 => Ok(json_response(200, &success(ask, &ask.ids))),
            _ => Ok(response(
                500,
                "text/plain",
                b"Internal Server Error".to_vec(),
            )),
        },
    },
    Scenario {
        name: "then-timeout",
        about: "the first request succeeds, every later one times out",
        timed_out: false,
        answer: |ask| match ask.number {
            1 => Ok(json_response(200, &success(ask, &ask.ids))),
            _ => Err(TransportError::Timeout),
        },
    },
];

/// A success answer that names `ids` as issued, in the request's convention.
fn success(ask: &Ask<'_>, ids: &[&str]) -> Value {
    let number = ask.number;
    match &ask.top_method {
        Some(method) => {
            // TOP names the answer after the API, without its `taobao.` prefix.
            let key = format!(
                "{}_response",
                method
                    .strip_prefix("taobao.")
                    .unwrap_or(method)
                    .replace('.', "_")
            );
            let mut answer = json!({ "request_id": format!("check-{number}") });
            if !ids.is_empty() {
                let results: Vec<Value> = ids
                    .iter()
                    .enumerate()
                    .map(|(i, id)| {
                        json!({"coupon_number": format!("{number}{i:03}"), "buyer_nick": id, "open_uid": id})
                    })
                    .collect();
                answer["coupon_results"] = json!({ "coupon_result": results });
                answer["is_success"] = json!(true);
            }
            json!({ key: answer })
        }
        None => {
            let mut answer = json!({"err_no": 0, "err_msg": "", "log_id": format!("check-{number}"), "data": {}});
            if let Some(id) = ids.first() {
                answer["data"]["coupon_info"] = json!({
                    "coupon_id": format!("check-{number}"),
                    "open_id": id,
                    "coupon_status": 10,
                });
            }
            answer
        }
    }
}

fn response(status: u16, content_type: &str, body: Vec<u8>) -> HttpResponse {
    HttpResponse {
        status,
        headers: vec![("content-type".into(), content_type.into())],
        body,
    }
}

fn json_response(status: u16, body: &Value) -> HttpResponse {
    let body = serde_json::to_vec(body).unwrap_or_default();
    response(status, "application/json", body)
}

/// What one adapter call did against its scenario.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Observed {
    /// Requests that reached the transport (the host denies those past its cap before).
    pub(super) requests: u32,
    /// Whether any was answered with a 2xx status and a body that is JSON.
    pub(super) success: bool,
}

/// The transport: answers from the current scenario, and counts.
pub(super) struct Scripted {
    /// The recipient ids of the check's requests, to find in what the adapter sends.
    ids: Vec<String>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    scenario: Option<&'static Scenario>,
    observed: Observed,
}

impl Scripted {
    pub(super) fn new(ids: Vec<String>) -> Scripted {
        Scripted {
            ids,
            state: Mutex::default(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Answers the next call's requests from `scenario`.
    pub(super) fn begin(&self, scenario: &'static Scenario) {
        *self.state() = State {
            scenario: Some(scenario),
            observed: Observed::default(),
        };
    }

    /// Ends the call: what it did. Requests from now on are refused as never connected.
    pub(super) fn end(&self) -> Observed {
        std::mem::take(&mut *self.state()).observed
    }
}

#[async_trait]
impl crate::transport::Transport for Scripted {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, TransportError> {
        let (scenario, number) = {
            let mut state = self.state();
            state.observed.requests += 1;
            (state.scenario, state.observed.requests)
        };
        let Some(scenario) = scenario else {
            // Outside a scenario (`describe`, which has no business calling out).
            return Err(TransportError::Connect(
                "the check answers requests of send-coupon and query-coupons only".into(),
            ));
        };
        let texts = texts(&request);
        let ids = self
            .ids
            .iter()
            .filter(|id| texts.iter().any(|text| text.contains(id.as_str())))
            .map(String::as_str)
            .collect();
        let top_method = find_param(&request, "method");
        let ask = Ask {
            number,
            top_method,
            ids,
            max_response_bytes: request.max_response_bytes,
        };
        let answer = (scenario.answer)(&ask);
        let answer = match answer {
            Ok(response) if response.body.len() as u64 > request.max_response_bytes => {
                Err(TransportError::TooLarge)
            }
            other => other,
        };
        if let Ok(response) = &answer
            && (200..300).contains(&response.status)
            && serde_json::from_slice::<serde::de::IgnoredAny>(&response.body).is_ok()
        {
            self.state().observed.success = true;
        }
        answer
    }
}

/// The request's form parameters: a GET's query, a form-encoded POST body.
fn form_params(request: &HttpRequest) -> Vec<(String, String)> {
    let mut params = request.query.clone();
    let is_form = request.headers.iter().any(|(name, value)| {
        name.eq_ignore_ascii_case("content-type")
            && value.starts_with("application/x-www-form-urlencoded")
    });
    if request.method == Method::Post
        && is_form
        && let Some(body) = &request.body
    {
        params.extend(url::form_urlencoded::parse(body).into_owned());
    }
    params.extend(request.url.query_pairs().into_owned());
    params
}

fn find_param(request: &HttpRequest, name: &str) -> Option<String> {
    form_params(request)
        .into_iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value)
}

/// Every piece of text the request carries, decoded: its URL path, parameters, and the string
/// values of a JSON body (or the body as text).
fn texts(request: &HttpRequest) -> Vec<String> {
    let mut texts = vec![request.url.path().to_owned()];
    texts.extend(form_params(request).into_iter().map(|(_, value)| value));
    if let Some(body) = &request.body {
        match serde_json::from_slice::<Value>(body) {
            Ok(value) => strings(&value, &mut texts),
            Err(_) => texts.push(String::from_utf8_lossy(body).into_owned()),
        }
    }
    texts
}

fn strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(text) => out.push(text.clone()),
        Value::Array(items) => items.iter().for_each(|item| strings(item, out)),
        Value::Object(members) => members.values().for_each(|item| strings(item, out)),
        _ => {}
    }
}
