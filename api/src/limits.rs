//! Every limit of this crate (the service, the CLI, the auditor, the pages and the load
//! generator), as a named constant with its unit last. A limit derived from another is
//! computed from it, never copied; messages format the constant. The ledger's and the
//! projector's own limits are in their crates' `limits` modules.

/// Largest request body accepted by `POST /v1/events` (413 above).
pub(crate) const BODY_BYTES_MAX: usize = 64 * 1024;
/// Verified envelopes waiting for the sequencer; a full queue answers 503.
pub(crate) const SEQUENCER_QUEUE_DEPTH_MAX: usize = 4096;
/// Environment variable that lowers the queue depth (tests flood a queue of 1).
pub(crate) const QUEUE_DEPTH_ENV: &str = "GRANTLINE_QUEUE_DEPTH";
/// At most this many envelopes are appended with one durable flush.
pub(crate) const SEQUENCER_BATCH_MAX: usize = 512;
/// The automation (grant expiry) runs at least this often.
pub(crate) const AUTOMATION_TICK_MS: u64 = 1000;
/// Automation batches chained after one trigger (automation can cascade, but not forever).
pub(crate) const AUTOMATION_ROUNDS_MAX: usize = 8;
/// Whole-request deadline (until response headers; SSE bodies may stream longer).
pub(crate) const REQUEST_TIMEOUT_MS: u64 = 30_000;
/// Open connections; more are answered 503 and closed.
pub(crate) const CONNECTIONS_MAX: usize = 2048;
/// Environment variable that lowers the connection cap (tests fill a small one).
pub(crate) const CONNECTIONS_MAX_ENV: &str = "GRANTLINE_CONNECTIONS_MAX";
/// A request head (request line and headers) must arrive within this time, and an idle
/// kept-alive connection is closed after it: a slowloris holds no slot for longer.
pub(crate) const HEADER_READ_TIMEOUT_MS: u64 = 10_000;
/// Environment variable that lowers the header read timeout (tests use a short one).
pub(crate) const HEADER_READ_TIMEOUT_ENV: &str = "GRANTLINE_HEADER_READ_TIMEOUT_MS";
/// Pause after a failed `accept` (e.g. out of file descriptors) before the next one.
pub(crate) const ACCEPT_ERROR_BACKOFF_MS: u64 = 100;
/// Requests handled at once; more are shed with 503.
pub(crate) const REQUESTS_IN_FLIGHT_MAX: usize = 1024;
/// Concurrent SSE subscribers; more are refused with 503.
pub(crate) const SSE_STREAMS_MAX: usize = 256;
/// Batches of new records buffered per SSE subscriber before it falls back to the store.
pub(crate) const SSE_BROADCAST_BATCHES_MAX: usize = 1024;
/// SSE keep-alive comment interval.
pub(crate) const SSE_KEEPALIVE_MS: u64 = 15_000;
/// Records read from the store per SSE replay page.
pub(crate) const SSE_REPLAY_PAGE_RECORDS: usize = 256;
/// `limit` query parameter of `GET /v1/events`: its default.
pub(crate) const EVENTS_PAGE_RECORDS_DEFAULT: usize = 100;
/// `limit` query parameter of `GET /v1/events`: its maximum. Clients ask for pages this size.
pub(crate) const EVENTS_PAGE_RECORDS_MAX: usize = 1000;
/// Seconds a client should wait after a 503.
pub(crate) const RETRY_AFTER_S: u64 = 1;
/// How long the server waits for in-flight requests on shutdown.
pub(crate) const SHUTDOWN_GRACE_MS: u64 = 10_000;
/// Whole-request deadline of the client (CLI, auditor): as long as the server's own.
pub(crate) const CLIENT_TIMEOUT_MS: u64 = REQUEST_TIMEOUT_MS;
/// Attempts of a request the server answers 503 (overloaded).
pub(crate) const CLIENT_ATTEMPTS_MAX: u32 = 5;
/// Wait between attempts when the server sends no usable Retry-After.
pub(crate) const CLIENT_RETRY_WAIT_MS: u64 = 500;
/// A record's JSON at most: its leaf (at most `LEAF_BYTES_MAX`) appears three times over in
/// base64 (leaf, envelope, statement), plus a few hashes.
pub(crate) const RECORD_JSON_BYTES_MAX: u64 = 4 * ledger::record::LEAF_BYTES_MAX as u64;
/// Largest response body the client reads: a full page of records.
pub(crate) const CLIENT_RESPONSE_BYTES_MAX: u64 = EVENTS_PAGE_RECORDS_MAX as u64 * RECORD_JSON_BYTES_MAX;
/// Largest input file (`--data @file`, YAML files) the CLI reads.
pub(crate) const CLIENT_FILE_BYTES_MAX: u64 = 16 * 1024 * 1024;

// The C2SP tile API (`/checkpoint`, `/tile/...`).

/// `Cache-Control: max-age` of `/checkpoint`: it changes with every batch, so a cache may hold
/// it only this long.
pub(crate) const CHECKPOINT_MAX_AGE_S: u64 = 2;
/// `Cache-Control: max-age` of a full tile or entry bundle (one year, with `immutable`): it
/// never changes.
pub(crate) const TILE_IMMUTABLE_MAX_AGE_S: u64 = 31_536_000;
/// `Cache-Control: max-age` of a partial tile or bundle: readers move on to a wider one as the
/// log grows.
pub(crate) const PARTIAL_TILE_MAX_AGE_S: u64 = 10;
/// Full hash tiles the server keeps in memory once served (8 KiB each: 32 MiB at most, every
/// level-0 tile of a 1,000,000-record log). A tile read from the store costs sled page-cache
/// misses (pread) under random reads; a full tile never changes, so a kept one is never stale.
pub(crate) const TILE_CACHE_TILES_MAX: usize = 4096;

// Projection snapshots.

/// The sequencer saves a snapshot (in the background) each time the log grows by this many
/// records, and once more on a clean shutdown.
pub(crate) const STATE_SNAPSHOT_INTERVAL_RECORDS: u64 = 50_000;

// The public pages.

/// Projects (with their active grants) listed per resource on `/`; the rest are on the
/// resource's own pages.
pub(crate) const INDEX_PROJECTS_PER_RESOURCE_MAX: usize = 100;
/// Projects per page on `/?resource=R&page=N`.
pub(crate) const INDEX_PROJECTS_PAGE_MAX: usize = 500;
/// Closed requests per page on `/requests?page=N` (pending requests are all shown).
pub(crate) const REQUESTS_CLOSED_PAGE_MAX: usize = 100;
/// Pending requests shown on `/requests`, oldest last; more are counted, not listed.
pub(crate) const REQUESTS_PENDING_MAX: usize = 1000;
/// History entries shown on a project page (newest kept).
pub(crate) const PROJECT_HISTORY_MAX: usize = 1000;
/// Rows of a sponsor's per-project breakdown (largest users first).
pub(crate) const SPONSOR_PROJECTS_MAX: usize = 500;
/// Days in a sponsor's daily usage chart (ending on the latest day with usage, or today).
pub(crate) const CHART_DAYS: usize = 30;
/// Records per page on `/events`.
pub(crate) const EVENTS_PAGE_RECORDS: u64 = 50;
/// Characters of an event's data summary on `/events`.
pub(crate) const EVENT_SUMMARY_CHARS_MAX: usize = 160;
/// Highest page number accepted in `?page=` (keeps the arithmetic trivially in range).
pub(crate) const PAGE_NUMBER_MAX: usize = 1_000_000;

// The auditor (`verify`, `export`, `prove`, `monitor`).

/// Records per verification window: large enough to keep all cores busy, small enough to
/// bound memory.
pub(crate) const WINDOW_RECORDS: usize = 4096;
/// Signatures per batch verification. A failing chunk is re-checked one by one, so the
/// chunk size also bounds the cost of naming a bad signature.
pub(crate) const SIGNATURE_CHUNK: usize = 512;
/// Longest line of an export file: a record's JSON, with room to spare.
pub(crate) const EXPORT_LINE_BYTES_MAX: usize = 2 * RECORD_JSON_BYTES_MAX as usize;
/// Chain hashes of recent records `monitor` keeps to compare with records proven later.
pub(crate) const RECENT_RECORDS_MAX: usize = 65_536;
/// Records buffered between `monitor`'s stream reader and its checker.
pub(crate) const STREAM_QUEUE_RECORDS_MAX: usize = 4096;
/// Key files are tiny; anything larger is not a key.
pub(crate) const KEY_FILE_BYTES_MAX: u64 = 4096;
/// Checkpoint notes and state files are small (a note is at most `NOTE_BYTES_MAX`).
pub(crate) const NOTE_FILE_BYTES_MAX: u64 = ledger::note::NOTE_BYTES_MAX as u64;
/// A receipt holds one record's JSON, a proof and a checkpoint.
pub(crate) const RECEIPT_FILE_BYTES_MAX: u64 = 4 << 20;
/// How long `prove` waits for a checkpoint that covers a record just appended. Without
/// witnesses one is published right after each batch; with them the served checkpoint is the
/// newest cosigned one, a witness round or two behind.
pub(crate) const PROVE_WAIT_MS: u64 = 5 * WITNESS_ROUND_INTERVAL_MS;
/// Wait between looks at the checkpoint while `prove` waits.
pub(crate) const PROVE_RETRY_MS: u64 = 100;

// Reading tiles: `grantline mirror` and `verify --tiles` (DESIGN.md section 12).

/// Tiles and entry bundles fetched (or read from disk, checked and written) at once.
pub(crate) const TILE_FETCHES_PARALLEL_MAX: usize = 8;
/// A hash tile is at most this long: 256 hashes.
pub(crate) const TILE_HASH_BYTES_MAX: u64 = ledger::tile::TILE_WIDTH * ledger::tile::HASH_BYTES as u64;
/// An entry bundle is at most this long: 256 entries, each a u16 length and a leaf.
pub(crate) const TILE_BUNDLE_BYTES_MAX: u64 = ledger::tile::TILE_WIDTH * (2 + ledger::record::LEAF_BYTES_MAX as u64);
/// `mirror --progress` off a terminal: at most one plain progress line per this long.
pub(crate) const MIRROR_PROGRESS_LINE_INTERVAL_MS: u64 = 1000;

// Witnesses (DESIGN.md section 12): the log's client of C2SP tlog-witness.

/// At most one witness round (a new checkpoint sent to the witnesses) this often, and a
/// backed-off witness is retried only on this beat.
pub(crate) const WITNESS_ROUND_INTERVAL_MS: u64 = 2_000;
/// A witness request (connect, send, answer) gives up after this long.
pub(crate) const WITNESS_REQUEST_TIMEOUT_MS: u64 = 10_000;
/// Connecting to a witness gives up after this long.
pub(crate) const WITNESS_CONNECT_TIMEOUT_MS: u64 = 3_000;
/// A witness that failed is next asked after this long, doubled on each further failure...
pub(crate) const WITNESS_BACKOFF_MIN_MS: u64 = 1_000;
/// ...up to this long.
pub(crate) const WITNESS_BACKOFF_MAX_MS: u64 = 60_000;
/// Environment variable that lowers the longest backoff (tests bring a witness back quickly).
pub(crate) const WITNESS_BACKOFF_MAX_ENV: &str = "GRANTLINE_WITNESS_BACKOFF_MAX_MS";
/// A witness's answer is a few cosignature lines; anything longer is refused.
pub(crate) const WITNESS_RESPONSE_BYTES_MAX: usize = 16 * 1024;
/// A refusal or failure of one witness is logged at most this often (the rest are counted).
pub(crate) const WITNESS_FAILURE_LOG_INTERVAL_MS: u64 = 60_000;
/// Bytes of a witness's refusal quoted in the log.
pub(crate) const WITNESS_REFUSAL_QUOTE_BYTES_MAX: usize = 512;
/// Recent checkpoints still collecting cosignatures (older ones are dropped).
pub(crate) const WITNESS_CHECKPOINTS_PENDING_MAX: usize = 16;
/// Witnesses one log or reader may list: each adds a line to the checkpoint note, which holds at
/// most `NOTE_SIGNATURES_MAX` signatures (the log's own among them).
pub(crate) const WITNESSES_MAX: usize = 32;
const _: () = assert!(WITNESSES_MAX < ledger::note::NOTE_SIGNATURES_MAX);

// The load generator.

/// Connections one run may open.
pub(crate) const LOADGEN_CONNECTIONS_MAX: usize = 1024;
/// Envelopes one run may pre-sign (they are held in memory).
pub(crate) const LOADGEN_EVENTS_MAX: u64 = 10_000_000;
/// Actors one run registers.
pub(crate) const LOADGEN_ACTORS_MAX: usize = 1024;
/// Longest read run.
pub(crate) const LOADGEN_DURATION_S_MAX: u64 = 3600;
/// Highest background append rate.
pub(crate) const LOADGEN_APPEND_RATE_MAX: u64 = 100_000;
/// Connections the background appender of the read modes uses.
pub(crate) const LOADGEN_BACKGROUND_CONNECTIONS: usize = 32;
/// Per-request timeout of the load generator's connections: the client's.
pub(crate) const LOADGEN_REQUEST_TIMEOUT_MS: u64 = CLIENT_TIMEOUT_MS;
/// Largest response head the measuring connection reads.
pub(crate) const LOADGEN_RESPONSE_HEAD_BYTES_MAX: usize = 16 * 1024;
/// Largest response body the measuring connection reads (receipts and proofs are a few KB).
pub(crate) const LOADGEN_RESPONSE_BODY_BYTES_MAX: usize = 1 << 20;
/// Webhook deliveries one run may pre-sign: each is held in memory, and a GitHub-sized
/// payload is about 10 KB (2 GB at most).
pub(crate) const LOADGEN_DELIVERIES_MAX: u64 = 200_000;
/// Bytes of an unexpected answer quoted when a run stops before its clock starts.
pub(crate) const LOADGEN_ANSWER_QUOTE_BYTES_MAX: usize = 512;

/// `max`, or the positive value of the environment variable `name` if it is lower: tests
/// shrink limits this way, nothing can raise them.
pub(crate) fn lowered_by_env(name: &str, max: u64) -> u64 {
    match std::env::var(name).ok().and_then(|v| v.trim().parse::<u64>().ok()) {
        Some(v) if v > 0 => v.min(max),
        _ => max,
    }
}

// The GitHub runner layer (SPEC.md section 13).

/// A webhook delivery's body is at most this many bytes (GitHub caps payloads at 25 MB, but a
/// `workflow_job` payload is a few KB; section 13 sets 1 MiB).
pub(crate) const GITHUB_WEBHOOK_BODY_BYTES_MAX: usize = 1 << 20;
/// A delivery id (`X-GitHub-Delivery`, a GUID) is 1 to this many bytes.
pub(crate) const GITHUB_DELIVERY_ID_BYTES_MAX: usize = ledger::limits::SEEN_KEY_BYTES_MAX;
/// Delivery ids are remembered for at least this long (GitHub redelivers by hand for 30 days)...
pub(crate) const GITHUB_DELIVERY_RETENTION_MS: i64 = 30 * 24 * 60 * 60 * 1000;
/// ...or at least this many of the newest, whichever bound is reached first.
pub(crate) const GITHUB_DELIVERIES_KEPT_MAX: u64 = 1_000_000;
/// How many times a delivery is metered again when the state changed between its metering
/// and the sequencer's check (a grant revoked in between, say).
pub(crate) const GITHUB_METERING_ATTEMPTS_MAX: usize = 3;
/// A job gate question is at most this many bytes.
pub(crate) const JOB_GATE_BODY_BYTES_MAX: usize = 64 * 1024;
/// `GET /v1/usage/unauthorized` lists at most this many jobs (newest first).
pub(crate) const UNAUTHORIZED_JOBS_PAGE_MAX: usize = 1000;
/// The pages show at most this many of the newest jobs that ran without access.
pub(crate) const PAGE_UNAUTHORIZED_JOBS_MAX: usize = 50;

// A cluster (SPEC.md section 11).

/// A write forwarded from a follower to the leader is at most this large (the largest body a
/// write route takes: a webhook delivery).
pub(crate) const FORWARD_BODY_BYTES_MAX: usize = GITHUB_WEBHOOK_BODY_BYTES_MAX;
/// A forwarded write gives up after this long: a paused leader must not hold a write past its
/// lease (the client resubmits the identical envelope and gets the same receipt).
pub(crate) const FORWARD_TIMEOUT_MS: u64 = 4_000;
/// A follower holds a forwarded write's receipt at most this long until it has published the
/// record itself (read-your-writes at the node a client talks to).
pub(crate) const FORWARD_CATCH_UP_MS: u64 = 1_000;

// The witness (`grantline witness serve`, DESIGN.md section 12).

/// Consistency proof lines in an `add-checkpoint` body at most (C2SP tlog-witness).
pub(crate) const WITNESS_PROOF_HASHES_MAX: usize = 63;
/// Largest `add-checkpoint` body (413 above). The old size line and the proof take under 3 KB;
/// the rest is room for a checkpoint note with dozens of signature lines.
pub(crate) const WITNESS_BODY_BYTES_MAX: usize = 64 * 1024;
/// Open connections to a witness; more are closed at once (its clients are a few logs).
pub(crate) const WITNESS_CONNECTIONS_MAX: usize = 256;
