//! `GET /v1/events/stream?from=N`: Server-Sent Events, one record JSON per `data:` line. It
//! subscribes to new batches first, replays from the store, then follows live; a subscriber
//! that falls behind the broadcast replays from the store again. Seqs are never repeated.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use axum::Router;
use futures::Stream;
use serde::Deserialize;
use tokio::sync::{broadcast, mpsc, OwnedSemaphorePermit};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

use super::events::record_json;
use crate::limits::{SSE_KEEPALIVE_MS, SSE_REPLAY_PAGE_RECORDS};
use crate::problem::Problem;
use crate::server::extract::Q;
use crate::server::sequencer::LiveBatch;
use crate::server::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/v1/events/stream", get(stream))
}

#[derive(Deserialize)]
struct StreamParams {
    from: Option<u64>,
}

async fn stream(
    State(app): State<AppState>,
    Q(p): Q<StreamParams>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Problem> {
    let permit = app
        .sse_slots
        .clone()
        .try_acquire_owned()
        .map_err(|_| Problem::overloaded("too many open event streams; retry later"))?;
    // Subscribe before replaying, so nothing appended meanwhile is missed.
    let live = app.live.subscribe();
    let (tx, rx) = mpsc::channel::<Event>(SSE_REPLAY_PAGE_RECORDS);
    tokio::spawn(follow(app, p.from.unwrap_or(0), live, tx, permit));
    let events = ReceiverStream::new(rx).map(Ok);
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_millis(SSE_KEEPALIVE_MS))))
}

/// Sends records `next..` to one subscriber until it disconnects or the server stops.
async fn follow(
    app: AppState,
    mut next: u64,
    mut live: broadcast::Receiver<LiveBatch>,
    tx: mpsc::Sender<Event>,
    _permit: OwnedSemaphorePermit,
) {
    app.metrics.sse_subscribers.fetch_add(1, Ordering::Relaxed);
    let mut shutdown = app.shutdown.clone();
    'outer: loop {
        // Replay what is published but not yet sent.
        loop {
            let size = app.snapshot().size;
            if next >= size {
                break;
            }
            let limit = usize::try_from(size - next).unwrap_or(usize::MAX).min(SSE_REPLAY_PAGE_RECORDS);
            let page = match app.store.range(next, limit) {
                Ok(page) if !page.is_empty() => page,
                Ok(_) => break 'outer,
                Err(e) => {
                    tracing::error!("SSE replay from {next} failed: {e}");
                    break 'outer;
                }
            };
            for rec in &page {
                if rec.seq != next {
                    tracing::error!("SSE replay: the store returned record {} where {next} was expected", rec.seq);
                    break 'outer;
                }
                let Ok(json) = record_json(rec)
                    .and_then(|r| serde_json::to_string(&r).map_err(|e| Problem::internal(e.to_string())))
                else {
                    break 'outer;
                };
                if tx.send(Event::default().id(rec.seq.to_string()).data(json)).await.is_err() {
                    break 'outer;
                }
                next += 1;
            }
        }
        // Follow live.
        tokio::select! {
            _ = tx.closed() => break,
            _ = shutdown.changed() => break,
            msg = live.recv() => match msg {
                Ok(batch) => {
                    for (seq, json) in batch.iter() {
                        if *seq < next {
                            continue;
                        }
                        if *seq > next {
                            // A gap: the replay above fills it from the store.
                            continue 'outer;
                        }
                        if tx.send(Event::default().id(seq.to_string()).data(json.as_str())).await.is_err() {
                            break 'outer;
                        }
                        next += 1;
                    }
                }
                // Fell behind: replay from the store.
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => break,
            },
        }
    }
    app.metrics.sse_subscribers.fetch_sub(1, Ordering::Relaxed);
}
