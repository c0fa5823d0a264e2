//! The accept loop. axum 0.7's `serve` sets no header read timeout, so a slowloris client
//! (one that sends its request head a byte at a time, or nothing at all) could hold a
//! connection slot forever. Connections are served here with hyper's HTTP/1 builder and a
//! timer instead: a request head not complete within the header read timeout closes the
//! connection. The timer also runs while a kept-alive connection waits for its next request,
//! so idle connections are closed too. A response being streamed (SSE) is not affected.

use std::future::Future;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

use super::connections::ConnectionCap;
use crate::limits::{
    lowered_by_env, ACCEPT_ERROR_BACKOFF_MS, HEADER_READ_TIMEOUT_ENV, HEADER_READ_TIMEOUT_MS, SHUTDOWN_GRACE_MS,
};

/// The one way a grantline process serves HTTP (`serve`, `witness serve`): prints
/// `listening_line` once SIGTERM and Ctrl-C are registered (a signal right after the line stops
/// the process cleanly, not by the default action), serves `router` with the connection cap and
/// the header read timeout until a signal, tells `stopping`, and waits for open connections to
/// finish for at most the shutdown grace period.
pub(crate) async fn serve_until_signal(
    listener: TcpListener,
    router: axum::Router,
    connections_max: usize,
    listening_line: &str,
    stopping: watch::Sender<bool>,
) {
    let signals = ShutdownSignals::register();
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{listening_line}");
        let _ = out.flush();
    }
    let connections = ConnectionCap::new(router, connections_max);
    let header_read_timeout = Duration::from_millis(lowered_by_env(HEADER_READ_TIMEOUT_ENV, HEADER_READ_TIMEOUT_MS));
    let mut grace_rx = stopping.subscribe();
    let server = serve(listener, connections, header_read_timeout, async move {
        signals.wait().await;
        tracing::info!("shutting down");
        let _ = stopping.send(true);
    });
    tokio::select! {
        _ = server => {}
        _ = async {
            let _ = grace_rx.wait_for(|stop| *stop).await;
            tokio::time::sleep(Duration::from_millis(SHUTDOWN_GRACE_MS)).await;
        } => tracing::warn!("connections still open after the grace period; closing them"),
    }
}

/// SIGTERM and Ctrl-C, listened for from the moment they are registered.
struct ShutdownSignals {
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl ShutdownSignals {
    fn register() -> ShutdownSignals {
        #[cfg(unix)]
        {
            let terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            ShutdownSignals { terminate }
        }
        #[cfg(not(unix))]
        ShutdownSignals {}
    }

    async fn wait(self) {
        let ctrl_c = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        #[cfg(unix)]
        let terminate = async move {
            match self.terminate {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {},
            _ = terminate => {},
        }
    }
}

/// Serves `listener` until `signal` completes, then stops accepting, asks every open
/// connection to finish its current request, and returns once all are closed.
async fn serve(
    listener: TcpListener,
    connections: ConnectionCap,
    header_read_timeout: Duration,
    signal: impl Future<Output = ()>,
) {
    // Each connection task holds a receiver; `closed()` resolves once all are gone.
    let (open_tx, open_rx) = watch::channel(());
    let (stop_tx, _) = watch::channel(false);
    tokio::pin!(signal);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Per-connection errors (reset before accept) and fd exhaustion: keep going.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(ACCEPT_ERROR_BACKOFF_MS)).await;
                    continue;
                }
            },
            _ = &mut signal => break,
        };
        let service = connections.admit().map_request(|req: Request<Incoming>| req.map(Body::new));
        let service = TowerToHyperService::new(service);
        let mut stop_rx = stop_tx.subscribe();
        let open_rx = open_rx.clone();
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(header_read_timeout);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let mut stopping = false;
            loop {
                tokio::select! {
                    result = conn.as_mut() => {
                        if let Err(e) = result {
                            tracing::debug!("connection from {remote} closed: {e}");
                        }
                        break;
                    }
                    changed = stop_rx.changed(), if !stopping => {
                        stopping = true;
                        if changed.is_ok() {
                            conn.as_mut().graceful_shutdown();
                        }
                    }
                }
            }
            drop(open_rx);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(open_rx);
    open_tx.closed().await;
}
