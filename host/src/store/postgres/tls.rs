//! TLS to PostgreSQL, with libpq's `sslmode` and `sslrootcert`, over rustls (its `ring`
//! provider: the one reqwest already brings, so the host has one TLS stack and one crypto
//! library).
//!
//! | `sslmode` | encrypted | certificate checked |
//! | --- | --- | --- |
//! | `disable` | no | — |
//! | `prefer` (default) | if the server offers TLS, else in clear | no; the chain if a CA file is given |
//! | `require` | yes | no; the chain if a CA file is given (as libpq does with a root certificate) |
//! | `verify-ca` | yes | the chain, up to the CA file |
//! | `verify-full` | yes | the chain and the host name |
//!
//! The CA file is the URL's `sslrootcert` or `[storage] tls_ca_file` (one of them, not both);
//! `sslrootcert=system` means the public CAs compiled into the host (Mozilla's list, as for the
//! gateways), and like libpq's it implies and requires `verify-full`. Where nothing is checked,
//! the server still proves it holds the certificate's key (the handshake's signature).
//!
//! tokio-postgres knows neither `sslrootcert` nor the verify modes: [`split_url`] takes both out
//! of the URL before it is parsed, and the backend sets tokio-postgres's own mode from them.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, verify_server_name};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::Socket;
use tokio_postgres::config::SslMode as DriverMode;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

/// libpq's `sslmode` values this host takes (`allow`, which tries clear text first, is not one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl Mode {
    fn parse(text: &str) -> Result<Mode, String> {
        Ok(match text {
            "disable" => Mode::Disable,
            "prefer" => Mode::Prefer,
            "require" => Mode::Require,
            "verify-ca" => Mode::VerifyCa,
            "verify-full" => Mode::VerifyFull,
            "allow" => {
                return Err(
                    "sslmode=allow is not supported (it tries clear text first): use \
                            `prefer`, or `disable`"
                        .to_owned(),
                );
            }
            other => {
                return Err(format!(
                    "sslmode={other:?} is not one of disable, prefer, require, verify-ca, \
                     verify-full"
                ));
            }
        })
    }

    fn name(self) -> &'static str {
        match self {
            Mode::Disable => "disable",
            Mode::Prefer => "prefer",
            Mode::Require => "require",
            Mode::VerifyCa => "verify-ca",
            Mode::VerifyFull => "verify-full",
        }
    }
}

/// The TLS parameters the URL held, taken out of it.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct UrlParams {
    pub(crate) sslmode: Option<String>,
    pub(crate) sslrootcert: Option<String>,
}

/// Takes `sslmode` and `sslrootcert` out of a PostgreSQL URL (`postgres://…?sslmode=…`) or
/// key/value string (`host=… sslmode=…`), and returns the rest for tokio-postgres to parse.
/// `None` when the string is not of either form (tokio-postgres will then say it does not
/// parse).
pub(crate) fn split_url(url: &str) -> Option<(String, UrlParams)> {
    let mut params = UrlParams::default();
    let mut take = |key: &str, value: String| match key {
        "sslmode" => {
            params.sslmode = Some(value);
            true
        }
        "sslrootcert" => {
            params.sslrootcert = Some(value);
            true
        }
        _ => false,
    };
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let Some((base, query)) = url.split_once('?') else {
            return Some((url.to_owned(), params));
        };
        let mut kept = Vec::new();
        for pair in query.split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = urlencoding::decode(key).ok()?;
            let value = urlencoding::decode(value).ok()?.into_owned();
            if !take(&key, value) {
                kept.push(pair);
            }
        }
        if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        }
    } else {
        let mut kept = Vec::new();
        for (key, value) in key_values(url)? {
            if !take(&key, value.clone()) {
                let quoted = value.replace('\\', "\\\\").replace('\'', "\\'");
                kept.push(format!("{key}='{quoted}'"));
            }
        }
        kept.join(" ")
    };
    Some((rest, params))
}

/// The pairs of a libpq key/value string: `key = value`, a value quoted in `'…'` (with `\'` and
/// `\\`) or running to the next space.
fn key_values(text: &str) -> Option<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Some(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        chars.next_if_eq(&'=')?;
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next()? {
                    '\'' => break,
                    '\\' => value.push(chars.next()?),
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                value.push(c);
            }
        }
        pairs.push((key, value));
    }
}

/// Where the trusted CAs come from.
#[derive(Debug, Clone)]
enum Roots {
    /// None given: nothing to check a certificate against.
    None,
    /// A PEM file: `sslrootcert`, or `[storage] tls_ca_file`.
    File {
        path: PathBuf,
        named_by: &'static str,
    },
    /// `sslrootcert=system`: the public CAs compiled in.
    System,
}

/// How the host reaches PostgreSQL: the mode, what it checks, and the connector that does it.
#[derive(Clone)]
pub(crate) struct Tls {
    mode: Mode,
    roots: Roots,
    connector: Connector,
}

impl Tls {
    /// The settings from the URL's parameters and `tls_ca_file` (already resolved against the
    /// config's folder). Errors name the setting at fault, never the URL.
    pub(crate) fn new(params: &UrlParams, tls_ca_file: Option<PathBuf>) -> Result<Tls, String> {
        let given = params.sslmode.as_deref().map(Mode::parse).transpose()?;
        let roots = match (params.sslrootcert.as_deref(), tls_ca_file) {
            (Some(_), Some(_)) => {
                return Err(
                    "the URL's sslrootcert and storage.tls_ca_file both name a CA \
                            file: keep one"
                        .to_owned(),
                );
            }
            (Some("system"), None) => Roots::System,
            (Some(path), None) => Roots::File {
                path: PathBuf::from(path),
                named_by: "the URL's sslrootcert",
            },
            (None, Some(path)) => Roots::File {
                path,
                named_by: "storage.tls_ca_file",
            },
            (None, None) => Roots::None,
        };
        let mode = match (given, &roots) {
            (None, Roots::System) => Mode::VerifyFull,
            (Some(mode), Roots::System) if mode != Mode::VerifyFull => {
                return Err(format!(
                    "sslrootcert=system takes sslmode=verify-full (as libpq), not {}",
                    mode.name()
                ));
            }
            (Some(mode @ (Mode::VerifyCa | Mode::VerifyFull)), Roots::None) => {
                return Err(format!(
                    "sslmode={} checks the server's certificate against a CA: name the CA's \
                     PEM file with the URL's sslrootcert or storage.tls_ca_file \
                     (sslrootcert=system for the public CAs)",
                    mode.name()
                ));
            }
            (given, _) => given.unwrap_or(Mode::Prefer),
        };
        let store = match &roots {
            Roots::None => None,
            Roots::System => Some(RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            }),
            Roots::File { path, named_by } if mode != Mode::Disable => {
                Some(read_roots(path).map_err(|why| format!("{named_by}: {why}"))?)
            }
            Roots::File { .. } => None,
        };
        let connector = Connector::new(store.map(Arc::new), mode == Mode::VerifyFull, &roots)?;
        Ok(Tls {
            mode,
            roots,
            connector,
        })
    }

    /// tokio-postgres's mode: whether it asks for TLS, and whether it goes on without.
    pub(crate) fn driver_mode(&self) -> DriverMode {
        match self.mode {
            Mode::Disable => DriverMode::Disable,
            Mode::Prefer => DriverMode::Prefer,
            Mode::Require | Mode::VerifyCa | Mode::VerifyFull => DriverMode::Require,
        }
    }

    /// The connector for tokio-postgres (and the pool).
    pub(crate) fn connector(&self) -> Connector {
        self.connector.clone()
    }

    /// Whether a connection made so far was encrypted (after the first one: whether the
    /// connection is).
    pub(crate) fn encrypted(&self) -> bool {
        self.connector.handshakes.load(Ordering::Relaxed) > 0
    }

    /// Whether the connection is encrypted, and what was checked: the line the host logs at
    /// start, after its first connection.
    pub(crate) fn describe(&self) -> String {
        let mode = self.mode.name();
        if !self.encrypted() {
            return match self.mode {
                Mode::Disable => format!("not encrypted (sslmode={mode})"),
                _ => format!(
                    "not encrypted: the server did not take TLS, or the host is a local socket \
                     (sslmode={mode})"
                ),
            };
        }
        let checked = match (&self.roots, self.mode) {
            (Roots::None, _) => "certificate not verified".to_owned(),
            (roots, Mode::VerifyFull) => {
                format!(
                    "certificate chain ({}) and host name verified",
                    roots.label()
                )
            }
            (roots, _) => format!(
                "certificate chain verified ({}), host name not checked",
                roots.label()
            ),
        };
        format!("encrypted (TLS), {checked} (sslmode={mode})")
    }

    /// Whether the connection is as `sslmode` asked: a connection in clear under `prefer` (the
    /// server did not take TLS) is not.
    pub(crate) fn as_asked(&self) -> bool {
        self.mode == Mode::Disable || self.encrypted()
    }
}

impl Roots {
    /// The CAs, for messages: which setting named them (never the URL itself).
    fn label(&self) -> String {
        match self {
            Roots::None => "no CA given".to_owned(),
            Roots::File { path, named_by } => format!("the CA in {} ({named_by})", path.display()),
            Roots::System => "the public CAs (sslrootcert=system)".to_owned(),
        }
    }
}

/// The CA certificates of a PEM file.
fn read_roots(path: &Path) -> Result<RootCertStore, String> {
    let display = path.display();
    let text = std::fs::read(path).map_err(|e| format!("cannot read {display}: {e}"))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&text) {
        let cert = cert.map_err(|e| format!("{display} is not a PEM certificate file: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("{display} holds a certificate that does not parse: {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!("{display} holds no PEM certificate"));
    }
    Ok(roots)
}

/// The ring provider (rustls's, without picking a process-wide default).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Checks a server's certificate as the mode says: the chain up to `roots` when there are some,
/// the host name too when `names` is set; nothing else when there are no roots. The handshake's
/// signature is always checked, so the server holds the certificate's key.
#[derive(Debug)]
struct Verifier {
    roots: Option<Arc<RootCertStore>>,
    names: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = ParsedCertificate::try_from(end_entity)?;
            verify_server_cert_signed_by_trust_anchor(
                &cert,
                roots,
                intermediates,
                now,
                self.algorithms.all,
            )?;
            if self.names {
                verify_server_name(&cert, server_name)?;
            }
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Makes TLS connections for tokio-postgres: one rustls client config for every connection of
/// the pool, and a count of the handshakes done (for the log line at start).
#[derive(Clone)]
pub(crate) struct Connector {
    config: Arc<rustls::ClientConfig>,
    /// The CAs, for errors.
    roots: Arc<str>,
    handshakes: Arc<AtomicU64>,
}

impl Connector {
    fn new(
        roots: Option<Arc<RootCertStore>>,
        names: bool,
        label: &Roots,
    ) -> Result<Connector, String> {
        let provider = provider();
        let verifier = Verifier {
            roots,
            names,
            algorithms: provider.signature_verification_algorithms,
        };
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("cannot set up TLS: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        // PostgreSQL 17 checks it when sent (and needs it for `sslnegotiation=direct`).
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok(Connector {
            config: Arc::new(config),
            roots: label.label().into(),
            handshakes: Arc::new(AtomicU64::new(0)),
        })
    }
}

impl MakeTlsConnect<Socket> for Connector {
    type Stream = Stream;
    type TlsConnect = Connect;
    type Error = Failure;

    fn make_tls_connect(&mut self, host: &str) -> Result<Connect, Failure> {
        let name = ServerName::try_from(host.to_owned()).map_err(|_| {
            Failure(format!(
                "the host name {host:?} is not one a TLS certificate can name"
            ))
        })?;
        Ok(Connect {
            connector: self.clone(),
            name,
        })
    }
}

/// One connection's handshake.
pub(crate) struct Connect {
    connector: Connector,
    name: ServerName<'static>,
}

impl TlsConnect<Socket> for Connect {
    type Stream = Stream;
    type Error = Failure;
    type Future = BoxFuture<'static, Result<Stream, Failure>>;

    fn connect(self, socket: Socket) -> Self::Future {
        Box::pin(async move {
            let Connect { connector, name } = self;
            let tls = tokio_rustls::TlsConnector::from(connector.config.clone());
            let stream = tls
                .connect(name.clone(), socket)
                .await
                .map_err(|error| Failure::explain(&error, &name, &connector.roots))?;
            connector.handshakes.fetch_add(1, Ordering::Relaxed);
            Ok(Stream(stream))
        })
    }
}

/// Why a TLS connection failed, in words that name the cause (unknown CA, name mismatch,
/// expired) and the setting to look at; never the URL.
#[derive(Debug)]
pub(crate) struct Failure(String);

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Failure {}

impl Failure {
    fn explain(error: &std::io::Error, name: &ServerName<'_>, roots: &str) -> Failure {
        let host = name.to_str();
        let cause = error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
        Failure(match cause {
            Some(rustls::Error::InvalidCertificate(why)) => match why {
                CertificateError::UnknownIssuer => {
                    format!("unknown CA: the server's certificate is not signed by {roots}")
                }
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => format!(
                    "name mismatch: the server's certificate is not valid for the host name \
                     {host:?} (verify-full checks the URL's host against the certificate)"
                ),
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    "expired: the server's certificate is past its end date".to_owned()
                }
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                    "not valid yet: the server's certificate starts later (check the clocks)"
                        .to_owned()
                }
                other => format!("the server's certificate was refused: {other}"),
            },
            Some(other) => format!("the TLS handshake with {host:?} failed: {other}"),
            None => format!("the TLS handshake with {host:?} failed: {error}"),
        })
    }
}

/// A TLS connection to the server.
pub(crate) struct Stream(tokio_rustls::client::TlsStream<Socket>);

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

impl TlsStream for Stream {
    /// No channel binding: SCRAM authentication then runs without `-PLUS`, as tokio-postgres's
    /// default `channel_binding=prefer` allows.
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_gives_up_its_tls_parameters_and_keeps_the_rest() {
        let (rest, params) = split_url(
            "postgres://u:p%40w@db:5432/x?sslmode=verify-full&application_name=a&sslrootcert=%2Fetc%2Fca.pem",
        )
        .unwrap();
        assert_eq!(rest, "postgres://u:p%40w@db:5432/x?application_name=a");
        assert_eq!(params.sslmode.as_deref(), Some("verify-full"));
        assert_eq!(params.sslrootcert.as_deref(), Some("/etc/ca.pem"));

        let (rest, params) = split_url("postgresql://db/x?sslmode=require").unwrap();
        assert_eq!(rest, "postgresql://db/x");
        assert_eq!(params.sslmode.as_deref(), Some("require"));

        let (rest, params) = split_url("postgres://db/x").unwrap();
        assert_eq!(
            (rest.as_str(), params),
            ("postgres://db/x", UrlParams::default())
        );

        // A quote closes the value: `'it'` is followed by `'s`, which is no `key=value`, and the
        // string is left whole for tokio-postgres to refuse.
        assert_eq!(split_url("host=db password='it''s'"), None);

        let (rest, params) = split_url(
            "host=db password='a \\'b\\' c' sslrootcert = '/a b/ca.pem' sslmode=verify-ca",
        )
        .unwrap();
        assert_eq!(rest, "host='db' password='a \\'b\\' c'");
        assert_eq!(params.sslmode.as_deref(), Some("verify-ca"));
        assert_eq!(params.sslrootcert.as_deref(), Some("/a b/ca.pem"));
        let parsed: tokio_postgres::Config = rest.parse().unwrap();
        assert_eq!(parsed.get_password(), Some(&b"a 'b' c"[..]));
    }

    fn modes(
        sslmode: Option<&str>,
        sslrootcert: Option<&str>,
        file: Option<&str>,
    ) -> Result<Mode, String> {
        let params = UrlParams {
            sslmode: sslmode.map(str::to_owned),
            sslrootcert: sslrootcert.map(str::to_owned),
        };
        Tls::new(&params, file.map(PathBuf::from)).map(|tls| tls.mode)
    }

    #[test]
    fn modes_follow_libpq() {
        assert_eq!(modes(None, None, None), Ok(Mode::Prefer));
        assert_eq!(modes(Some("disable"), None, None), Ok(Mode::Disable));
        assert_eq!(modes(Some("require"), None, None), Ok(Mode::Require));
        assert_eq!(modes(None, Some("system"), None), Ok(Mode::VerifyFull));
        let weak = modes(Some("require"), Some("system"), None).unwrap_err();
        assert!(
            weak.contains("sslrootcert=system takes sslmode=verify-full"),
            "{weak}"
        );
        let bare = modes(Some("verify-full"), None, None).unwrap_err();
        assert!(bare.contains("storage.tls_ca_file"), "{bare}");
        let allow = modes(Some("allow"), None, None).unwrap_err();
        assert!(allow.contains("not supported"), "{allow}");
        let bogus = modes(Some("bogus"), None, None).unwrap_err();
        assert!(bogus.contains("\"bogus\" is not one of"), "{bogus}");
        let both = modes(Some("verify-ca"), Some("/a"), Some("/b")).unwrap_err();
        assert!(both.contains("keep one"), "{both}");
        let missing = modes(Some("verify-ca"), None, Some("/no/such/ca.pem")).unwrap_err();
        assert!(
            missing.starts_with("storage.tls_ca_file: cannot read /no/such/ca.pem"),
            "{missing}"
        );
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").unwrap();
        let junk = junk.to_str().unwrap();
        let empty = modes(Some("verify-ca"), Some(junk), None).unwrap_err();
        assert!(
            empty.starts_with("the URL's sslrootcert: ")
                && empty.ends_with("holds no PEM certificate"),
            "{empty}"
        );
    }
}
