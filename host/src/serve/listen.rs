//! The server loop: HTTP/1 connections with a deadline on every request head, and a drain
//! that ends.
//!
//! axum's own `serve` neither times out a request head (a client sending its headers a byte
//! at a time keeps its connection forever) nor bounds its graceful shutdown (it waits for
//! every connection), so this loop drives hyper's connections itself.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::{AppState, ServeOptions, app, state};
use crate::Host;

/// Serves the API on `listener` until `shutdown` resolves, then drains: no new connections,
/// `/readyz` answers `503`, the host takes no new calls (a campaign starts no new batch), and
/// the requests, calls and campaign batches running are given until
/// [`ServeOptions::drain_timeout`] to finish. Whatever is left then is cancelled: its
/// connections are closed and its tasks dropped, which leaves an unfinished send in flight in
/// the journal, for the next run (or the next post of the campaign) to reconcile. That case
/// returns an error of kind [`std::io::ErrorKind::TimedOut`] saying what was cut.
///
/// With a metrics handle, runs the recorder's upkeep every few seconds.
pub async fn serve(
    listener: tokio::net::TcpListener,
    host: Host,
    options: ServeOptions,
    metrics: Option<PrometheusHandle>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let state = state(host.clone(), &options, metrics.clone());
    let app = app(state.clone());
    let upkeep = metrics.map(|handle| {
        tokio::spawn(async move {
            // Without upkeep, histogram samples between two scrapes pile up in memory.
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                handle.run_upkeep();
            }
        })
    });

    // Unfinished campaigns on the storage (one cut off by a drain, one whose process died) are
    // worked here too, as `coupon-host worker` works them, until the drain.
    let (stop_work, work_stopped) = tokio::sync::oneshot::channel::<()>();
    let mut worker = options.work_campaigns.then(|| {
        let host = host.clone();
        tokio::spawn(async move {
            let stop = async {
                let _ = work_stopped.await;
            };
            if let Err(error) = host.work(super::WORK_CONCURRENCY, stop).await {
                tracing::warn!(error = %crate::error::full_message(&error), "cannot work campaigns");
            }
        })
    });

    let (drain, draining) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    connections.spawn(connection(
                        stream,
                        app.clone(),
                        options.read_timeout,
                        draining.clone(),
                    ));
                }
                Err(error) => {
                    // Out of file descriptors, most likely: give connections time to close
                    // rather than spin on the error.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            // Reap finished connections so the set does not grow with the server's age.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    state.draining.store(true, Ordering::SeqCst);
    tracing::info!(
        drain_timeout_s = options.drain_timeout.as_secs(),
        "draining: no new connections or calls; finishing what runs"
    );
    let _ = drain.send(true);
    let _ = stop_work.send(());

    let drained = async {
        tokio::join!(
            async { while connections.join_next().await.is_some() {} },
            host.shutdown(),
            campaigns_ended(&state),
            async {
                if let Some(worker) = worker.as_mut() {
                    let _ = worker.await;
                }
            },
        )
    };
    let result = match tokio::time::timeout(options.drain_timeout, drained).await {
        Ok(_) => {
            tracing::info!("drained");
            Ok(())
        }
        Err(_) => {
            let cut_connections = connections.len();
            connections.shutdown().await;
            if let Some(worker) = &worker {
                worker.abort();
            }
            let cut_campaigns = {
                let campaigns = state.campaigns.lock().unwrap_or_else(|p| p.into_inner());
                for task in campaigns.running.values() {
                    task.abort();
                }
                campaigns.running.len()
            };
            // Hand what was cut over at once, instead of after the leases expire.
            tokio::task::yield_now().await;
            if let Err(error) = host.release_leases().await {
                tracing::warn!(error = %crate::error::full_message(&error), "cannot give up the leases; others take the work over when they expire");
            }
            let message = format!(
                "the drain did not finish within {} s: cancelled {cut_connections} connections and \
                 {cut_campaigns} campaigns; unfinished sends stay in flight in the journal, to be \
                 reconciled by the next run",
                options.drain_timeout.as_secs()
            );
            tracing::warn!("{message}");
            Err(std::io::Error::new(std::io::ErrorKind::TimedOut, message))
        }
    };
    if let Some(upkeep) = upkeep {
        upkeep.abort();
    }
    result
}

/// Waits until no campaign runs.
async fn campaigns_ended(state: &AppState) {
    loop {
        let ended = state.campaign_ended.notified();
        let mut ended = std::pin::pin!(ended);
        // Registered before looking, so an end between the look and the wait is not missed.
        ended.as_mut().enable();
        let running = {
            let campaigns = state.campaigns.lock().unwrap_or_else(|p| p.into_inner());
            campaigns.running.len()
        };
        if running == 0 {
            return;
        }
        ended.await;
    }
}

/// Serves one connection: a request head must arrive within `read_timeout` of the connection
/// being ready for it (or the connection is closed); once the server drains, the connection
/// closes after the request it is answering.
async fn connection(
    stream: TcpStream,
    app: Router,
    read_timeout: Duration,
    mut draining: watch::Receiver<bool>,
) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(read_timeout);
    let service = TowerToHyperService::new(app);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%error, "connection ended with an error");
            }
        }
        // The watch's guard is dropped inside: it must not live across the awaits below.
        () = async { drop(draining.wait_for(|draining| *draining).await) } => {
            connection.as_mut().graceful_shutdown();
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error while draining");
            }
        }
    }
}
