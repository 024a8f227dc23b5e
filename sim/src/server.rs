//! The HTTP server: routes, and an accept loop of its own.
//!
//! `axum::serve` would do, except that it cannot drop a connection without answering, which is
//! what [`crate::Fault::ResetConnection`] needs. So each connection is served by hyper directly,
//! next to a [`ResetHandle`] that the request handler can pull.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::{JoinHandle, JoinSet};
use tower::Service;

use crate::state::Shared;
use crate::{admin, douyin, top};

/// How long [`Server::shutdown`] lets calls in flight finish before cutting them off.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Every route. Anything else is a 404.
pub(crate) fn router(state: Shared) -> Router {
    Router::new()
        // Every HTTP method reaches the gateway, which answers TOP code 9 for the ones it does
        // not serve, as the real one does.
        .route("/router/rest", any(top::handle))
        // Douyin serves its OpenAPI by POST only; another method gets axum's 405.
        // TOP's OAuth token endpoint (oauth.taobao.com/token on the real platform).
        .route("/token", post(top::oauth::token))
        .route("/oauth/client_token/", post(douyin::client_token))
        .route(
            "/oauth/stable_client_token/",
            post(douyin::stable_client_token),
        )
        .route(
            "/api/promotion/v1/coupon/send_coupon_to_designated_user/",
            post(douyin::send_coupon),
        )
        .route(
            "/api/promotion/v1/coupon/get_coupon_receive_info/",
            post(douyin::coupon_receive_info),
        )
        .route("/_sim/ledger", get(admin::ledger))
        .route("/_sim/calls", get(admin::calls))
        .route("/_sim/fault", post(admin::fault))
        .route("/_sim/clock_skew", post(admin::clock_skew))
        .route(
            "/_sim/douyin/expire_tokens",
            post(admin::expire_douyin_tokens),
        )
        .route("/_sim/stats", get(admin::stats))
        .route("/_sim/top/sessions", get(admin::top_sessions))
        .route("/_sim/top/code", post(admin::top_code))
        .route("/_sim/top/expire_session", post(admin::expire_top_session))
        .route("/_sim/top/revoke_session", post(admin::revoke_top_session))
        .with_state(state)
}

/// The HTML page a load balancer in front of a platform answers an HTTP error with
/// ([`crate::Fault::Status`]).
pub(crate) fn error_page(status: StatusCode) -> Response {
    let title = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error")
    );
    let page = format!(
        "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n<hr><center>Tengine</center>\r\n</body>\r\n</html>\r\n"
    );
    (status, [(header::CONTENT_TYPE, "text/html")], page).into_response()
}

/// Lets a request handler close its connection without answering. Found in the request's
/// extensions; with zero linger, the client sees a TCP reset.
#[derive(Clone)]
pub(crate) struct ResetHandle(Arc<Notify>);

impl ResetHandle {
    pub(crate) fn reset(&self) {
        // `notify_one` keeps a permit when the connection task is not waiting yet.
        self.0.notify_one();
    }
}

/// The accept loop, running on the runtime that started it.
pub(crate) struct Server {
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Server {
    pub(crate) fn spawn(listener: TcpListener, router: Router) -> Server {
        let (shutdown, signal) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, router, signal));
        Server {
            shutdown,
            task: Some(task),
        }
    }

    /// Stops accepting, drains the connections (at most [`DRAIN_TIMEOUT`]), and waits for it.
    pub(crate) async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Dropped without `shutdown()` (a test that just ends): stop in the background.
        let _ = self.shutdown.send(true);
    }
}

async fn accept_loop(listener: TcpListener, router: Router, mut signal: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(stream, router.clone(), signal.clone()));
                }
                // Out of file descriptors and the like: the listener is still good, so wait a
                // moment and carry on rather than stop serving.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            },
            // A shutdown, or the `Sim` is gone.
            _ = signal.changed() => break,
            // Reap finished connections so the set does not grow without bound.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let drain = async { while connections.join_next().await.is_some() {} };
    // Whatever is still running after the timeout is aborted when the set drops.
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, drain).await;
}

/// Serves one connection until the client closes it, a handler resets it, or shutdown.
async fn serve_connection(stream: TcpStream, router: Router, mut signal: watch::Receiver<bool>) {
    let _ = stream.set_nodelay(true);
    let reset = ResetHandle(Arc::new(Notify::new()));
    let handle = reset.clone();
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(handle.clone());
        router.clone().call(request)
    });
    let mut connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(stream), service);
    let mut draining = false;
    loop {
        tokio::select! {
            _ = &mut connection => return,
            () = reset.0.notified() => {
                let socket = connection.into_parts().io.into_inner();
                // Zero linger turns the close into a RST, so the client sees "connection reset"
                // rather than an orderly end of stream.
                let _ = socket.set_zero_linger();
                return;
            }
            _ = signal.changed(), if !draining => {
                draining = true;
                std::pin::Pin::new(&mut connection).graceful_shutdown();
            }
        }
    }
}
