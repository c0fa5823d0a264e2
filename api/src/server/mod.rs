//! The HTTP service: `grantline serve`.
//!
//! Writes flow one way: handler (parse, verify signatures, on the tokio workers) → bounded
//! queue → [`sequencer`] (idempotency, `Fold::admit`, group commit, publish) → receipts,
//! SSE, automation. Reads are served from the published [`snapshot::Snapshot`] and the store's
//! immutable records below its size.
//!
//! Routes live in [`routes`], one module per area; a new area (pages, exports, explain) is a
//! new module whose `routes()` is merged in [`router`].

mod cluster;
mod connections;
mod extract;
mod fault;
mod forward;
mod identity;
pub(crate) mod listen;
mod metrics;
mod routes;
mod sequencer;
mod snapshot;
pub(crate) mod witnessing;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::error_handling::HandleErrorLayer;
use axum::http::StatusCode;
use axum::Router;
use ledger::store::Store;
use tokio::sync::{broadcast, watch, Semaphore};
use tower::ServiceBuilder;

use crate::datadir::{DataDir, Opened};
use crate::github::GitHub;
use crate::limits::{
    lowered_by_env, CONNECTIONS_MAX, CONNECTIONS_MAX_ENV, GITHUB_DELIVERIES_KEPT_MAX, GITHUB_DELIVERY_RETENTION_MS,
    REQUESTS_IN_FLIGHT_MAX, REQUEST_TIMEOUT_MS, SSE_BROADCAST_BATCHES_MAX, SSE_STREAMS_MAX,
};
use crate::problem::Problem;
use cluster::Cluster;
use identity::Identities;
use ledger::seen::{Retention, SeenSet};
use metrics::Metrics;
use sequencer::{LiveBatch, Queue};
use snapshot::Snapshot;

/// The seen set of GitHub delivery ids in the store's database.
const GITHUB_DELIVERIES_SET: &str = "github-deliveries";

/// What every handler shares.
pub(crate) struct App {
    pub store: Store,
    pub published: Arc<ArcSwap<Snapshot>>,
    pub queue: Queue,
    /// The keys this server signs with (checkpoints, automation statements).
    pub identities: Arc<Identities>,
    pub metrics: Arc<Metrics>,
    /// New records, per batch, for SSE subscribers.
    pub live: broadcast::Sender<LiveBatch>,
    pub sse_slots: Arc<Semaphore>,
    /// Flips to true when the server shuts down (SSE streams end).
    pub shutdown: watch::Receiver<bool>,
    /// The GitHub runner layer, when `serve --github-org` turned it on.
    pub github: Option<GitHubLayer>,
    /// The node's place in a PostgreSQL cluster (`serve --db`); `None` on sled.
    pub cluster: Option<Arc<Cluster>>,
    /// Followers forward writes to the leader with it.
    pub forwarder: reqwest::Client,
    /// Full hash tiles served before.
    pub tiles: routes::tiles::TileCache,
    /// The witness client (`serve --witness`): what readers get once checkpoints are cosigned.
    pub witnessing: Option<Arc<witnessing::Witnessing>>,
}

/// The GitHub runner layer's configuration and the delivery ids it has seen.
pub(crate) struct GitHubLayer {
    pub config: GitHub,
    /// Delivery ids already answered, persisted beside the log (not part of it).
    pub deliveries: SeenSet,
}

pub(crate) type AppState = Arc<App>;

impl App {
    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        self.published.load_full()
    }

    /// The checkpoint note readers are given at `/checkpoint` and `/v1/checkpoint`: with
    /// witnesses, the newest one with their quorum and its cosignatures (until one has it, the
    /// first offered to them); without, the latest.
    pub(crate) fn checkpoint_note(&self) -> String {
        match self.witnessing.as_ref().and_then(|w| w.served_note()) {
            Some(note) => note,
            None => self.snapshot().checkpoint.clone(),
        }
    }
}

pub(crate) struct ServeConfig {
    pub data: DataDir,
    pub addr: SocketAddr,
    pub queue_depth: usize,
    /// The GitHub runner layer (its secrets already read).
    pub github: Option<GitHub>,
    /// With `--db`: the URL other nodes forward writes to [default: http://ADDR].
    pub advertise: Option<String>,
    /// The witnesses to ask for cosignatures (`--witness`).
    pub witnesses: Option<witnessing::WitnessConfig>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ServeError {
    #[error(transparent)]
    DataDir(#[from] crate::datadir::DataDirError),
    #[error(transparent)]
    Start(#[from] sequencer::StartError),
    #[error("cannot start the cluster thread: {0}")]
    Cluster(std::io::Error),
    #[error("cannot open the GitHub delivery ids: {0}")]
    Deliveries(ledger::store::StoreError),
    #[error("cannot listen on {addr}: {reason}")]
    Bind { addr: SocketAddr, reason: String },
    #[error("cannot start the witness client: {0}")]
    Witnessing(String),
    #[error("server error: {0}")]
    Io(String),
}

/// The whole router, with its limits.
pub(crate) fn router(app: AppState) -> Router {
    Router::new()
        .merge(routes::events::routes())
        .merge(routes::proofs::routes())
        .merge(routes::views::routes())
        .merge(routes::stream::routes())
        .merge(routes::ops::routes())
        .merge(routes::pages::routes())
        .merge(routes::github::routes())
        .merge(routes::tiles::routes())
        .fallback(routes::not_found)
        // Before the limits: a forwarded write holds no sequencer slot here.
        .layer(axum::middleware::from_fn_with_state(app.clone(), forward::writes_to_leader))
        // After the merges: it applies to the routes already added.
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(middleware_error))
                .load_shed()
                .concurrency_limit(REQUESTS_IN_FLIGHT_MAX)
                .timeout(Duration::from_millis(REQUEST_TIMEOUT_MS)),
        )
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(app)
}

async fn middleware_error(err: tower::BoxError) -> Problem {
    if err.is::<tower::timeout::error::Elapsed>() {
        Problem::new(StatusCode::REQUEST_TIMEOUT, "timeout", "the request took too long")
    } else if err.is::<tower::load_shed::error::Overloaded>() {
        Problem::overloaded("too many requests in flight; retry later")
    } else {
        Problem::internal("internal error")
    }
}

/// Runs the server on an opened data directory until SIGTERM or Ctrl-C. Prints exactly one
/// line, `grantline listening on http://<addr>`, once bound.
pub(crate) async fn serve(config: ServeConfig, opened: Opened) -> Result<(), ServeError> {
    let metrics = Arc::new(Metrics::default());
    let (live, _) = broadcast::channel(SSE_BROADCAST_BATCHES_MAX);
    let Opened { store, pg, fold, log_key, automation_key, replay_warnings } = opened;
    if replay_warnings > 0 {
        tracing::warn!("{replay_warnings} records did not verify during replay; run `grantline verify`");
    }
    let identities = Arc::new(Identities::new(log_key, automation_key));
    // Bound first: a cluster node advertises the address it listens on.
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .map_err(|e| ServeError::Bind { addr: config.addr, reason: e.to_string() })?;
    let local = listener.local_addr().map_err(|e| ServeError::Io(e.to_string()))?;
    let cluster = pg.map(|pg| {
        let advertise = config.advertise.clone().unwrap_or_else(|| format!("http://{local}"));
        Arc::new(Cluster::new(pg, advertise))
    });
    let started = sequencer::start(sequencer::Start {
        store: store.clone(),
        fold,
        identities: identities.clone(),
        replay_warnings,
        queue_depth: config.queue_depth,
        metrics: metrics.clone(),
        live: live.clone(),
        cluster: cluster.clone(),
    })?;
    let cluster_threads = match &cluster {
        Some(c) => {
            let beat =
                cluster::spawn(c.clone(), store.clone(), started.published.clone()).map_err(ServeError::Cluster)?;
            let queue = started.queue.clone();
            let listen = cluster::spawn_listener(c.clone(), move || queue.wake()).map_err(ServeError::Cluster)?;
            vec![beat, listen]
        }
        None => Vec::new(),
    };
    let github = match config.github {
        Some(github) => {
            let retention =
                Retention { count_max: GITHUB_DELIVERIES_KEPT_MAX, age_ms_max: GITHUB_DELIVERY_RETENTION_MS };
            let deliveries = store.seen_set(GITHUB_DELIVERIES_SET, retention).map_err(ServeError::Deliveries)?;
            tracing::info!(org = %github.org, deliveries_remembered = deliveries.len(), "GitHub runner layer on");
            Some(GitHubLayer { config: github, deliveries })
        }
        None => None,
    };
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let witnessing = config.witnesses.map(|w| {
        let fork = matches!(fault::Fault::from_env(), Ok(fault::Fault::ForkCheckpoint));
        Arc::new(witnessing::Witnessing::new(w, fork))
    });
    if let Some(w) = &witnessing {
        // Started before the listening line: readers are served the first offered checkpoint.
        w.clone()
            .start(witnessing::Context {
                published: started.published.clone(),
                store: store.clone(),
                identities: identities.clone(),
                shutdown: shutdown_rx.clone(),
            })
            .map_err(ServeError::Witnessing)?;
    }
    let app = Arc::new(App {
        store,
        published: started.published.clone(),
        queue: started.queue,
        identities,
        metrics,
        live,
        sse_slots: Arc::new(Semaphore::new(SSE_STREAMS_MAX)),
        shutdown: shutdown_rx.clone(),
        github,
        cluster: cluster.clone(),
        forwarder: forward::client(),
        tiles: routes::tiles::TileCache::default(),
        witnessing,
    });
    let snapshot = app.snapshot();
    tracing::info!(
        origin = %snapshot.origin,
        size = snapshot.size,
        log_key = %app.identities.log_key(),
        data = %config.data.root.display(),
        "log opened"
    );

    let app_router = router(app.clone());
    let connections_max = lowered_by_env(CONNECTIONS_MAX_ENV, CONNECTIONS_MAX as u64) as usize;
    let line = format!("grantline listening on http://{local}");
    listen::serve_until_signal(listener, app_router, connections_max, &line, shutdown_tx).await;
    if let Some(github) = &app.github {
        if let Err(e) = github.deliveries.flush() {
            tracing::warn!("could not flush the GitHub delivery ids: {e}");
        }
    }
    drop(app);
    let handle = started.handle;
    let _ = tokio::task::spawn_blocking(move || handle.stop()).await;
    if let Some(cluster) = cluster {
        cluster.stop();
        for thread in cluster_threads {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
    Ok(())
}
