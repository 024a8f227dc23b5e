//! How a request the host has checked and authorised leaves the process: the [`Transport`]
//! trait (the shape of wasmtime's `WasiHttpHooks::send_request`), and [`Network`], the one
//! production implementation, over reqwest with the egress guard (`transport/egress.rs`).
//!
//! Only this module opens sockets for a guest. A benchmark (cargo feature `bench`) swaps in a
//! transport that answers without a network; production code never checks for one.

pub(crate) mod egress;

use std::time::Duration;

use async_trait::async_trait;

/// GET or POST.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Post,
}

/// A request ready for the wire: checked against the plugin's policy and authorised.
#[derive(Debug, Clone)]
pub(crate) struct HttpRequest {
    pub(crate) method: Method,
    pub(crate) url: url::Url,
    pub(crate) headers: Vec<(String, String)>,
    /// The query string's pairs (a GET's parameters), form-encoded onto the URL.
    pub(crate) query: Vec<(String, String)>,
    pub(crate) body: Option<Vec<u8>>,
    /// The whole request's deadline.
    pub(crate) timeout: Duration,
    /// The largest response body read; a larger one is [`TransportError::TooLarge`].
    pub(crate) max_response_bytes: u64,
}

/// A response as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpResponse {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

/// Why no response came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TransportError {
    /// The egress guard refused the address the name resolved to: nothing was sent.
    Denied(String),
    /// No connection: nothing reached the platform.
    Connect(String),
    /// No complete answer in time after the request left: it may have been applied.
    Timeout,
    /// The answer was larger than allowed.
    TooLarge,
    /// Anything else (an unbuildable request, …).
    Other(String),
}

/// Sends requests.
#[async_trait]
pub(crate) trait Transport: Send + Sync {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, TransportError>;
}

/// The network, through one of the egress guard's clients.
pub(crate) struct Network {
    client: reqwest::Client,
}

impl Network {
    /// A transport over `client` (see [`egress::Clients::for_plugin`]).
    pub(crate) fn new(client: reqwest::Client) -> Network {
        Network { client }
    }
}

#[async_trait]
impl Transport for Network {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, TransportError> {
        let method = match request.method {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
        };
        // Named in a connection failure: scheme, host and port only (a GET's query string may
        // carry a session).
        let origin = request.url.origin().ascii_serialization();
        let transport_error = |error| transport_error(error, &origin);
        let mut builder = self
            .client
            .request(method, request.url)
            .timeout(request.timeout);
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        if !request.query.is_empty() {
            builder = builder.query(&request.query);
        }
        if let Some(body) = request.body {
            builder = builder.body(body);
        }
        let mut response = builder.send().await.map_err(transport_error)?;
        let status = response.status().as_u16();
        let max = request.max_response_bytes;
        if response.content_length().is_some_and(|len| len > max) {
            return Err(TransportError::TooLarge);
        }
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_owned(), value)
            })
            .collect();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
            if body.len() as u64 + chunk.len() as u64 > max {
                return Err(TransportError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }
}

/// Sorts a transport failure into "never left" (connect) and "may have been applied" (timeout).
/// The URL is stripped: on a GET it carries the query string, which may hold a session; a
/// connection failure names `origin` (where it tried) instead.
pub(crate) fn transport_error(error: reqwest::Error, origin: &str) -> TransportError {
    let error = error.without_url();
    if let Some(refused) = egress::refused_in(&error) {
        // The egress guard refused the resolved address: nothing was sent.
        return TransportError::Denied(refused.to_string());
    }
    if error.is_connect() {
        TransportError::Connect(format!(
            "cannot connect to {origin}: {}",
            crate::error::full_message(&error)
        ))
    } else if error.is_builder() {
        TransportError::Other(error.to_string())
    } else {
        // Timed out, or the connection broke after the request was written: either way the
        // platform may have applied it.
        TransportError::Timeout
    }
}

/// Form-encodes parameters (`application/x-www-form-urlencoded`).
pub(crate) fn form_encode(params: &[(String, String)]) -> Vec<u8> {
    let mut serializer = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in params {
        serializer.append_pair(name, value);
    }
    serializer.finish().into_bytes()
}
