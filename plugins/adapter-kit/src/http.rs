//! The generic shapes of the host's `signed-http` import, so that an adapter's pure code takes
//! the import as a closure and native tests script it.

/// The WIT `signed-http.response`, less the headers (an adapter that reads them keeps its own
/// shape).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// HTTP status.
    pub status: u16,
    /// The raw body.
    pub body: Vec<u8>,
}

/// The WIT `signed-http.http-error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// Refused by the host's policy; nothing was sent.
    Denied(String),
    /// Could not connect; nothing reached the platform.
    Connect(String),
    /// No complete answer in time; the platform may have applied the call.
    Timeout,
    /// The answer was larger than the host allows.
    TooLarge,
    /// The host could not obtain credentials; nothing was sent.
    Unauthorized(String),
    /// Anything else.
    Other(String),
}
