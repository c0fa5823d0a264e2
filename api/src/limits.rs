//! Every limit of the service and the CLI, as a named constant (units last).

/// Largest request body accepted by `POST /v1/events` (413 above).
pub const BODY_BYTES_MAX: usize = 64 * 1024;
/// Verified envelopes waiting for the sequencer; a full queue answers 503.
pub const SEQUENCER_QUEUE_DEPTH_MAX: usize = 4096;
/// Environment variable that lowers the queue depth (tests flood a queue of 1).
pub const QUEUE_DEPTH_ENV: &str = "GRANTLINE_QUEUE_DEPTH";
/// At most this many envelopes are appended with one durable flush.
pub const SEQUENCER_BATCH_MAX: usize = 512;
/// The automation (grant expiry) runs at least this often.
pub const AUTOMATION_TICK_MS: u64 = 1000;
/// Automation batches chained after one trigger (automation can cascade, but not forever).
pub const AUTOMATION_ROUNDS_MAX: usize = 8;
/// Whole-request deadline (until response headers; SSE bodies may stream longer).
pub const REQUEST_TIMEOUT_MS: u64 = 30_000;
/// Open connections; more are answered 503 and closed.
pub const CONNECTIONS_MAX: usize = 2048;
/// Environment variable that lowers the connection cap (tests fill a small one).
pub const CONNECTIONS_MAX_ENV: &str = "GRANTLINE_CONNECTIONS_MAX";
/// A request head (request line and headers) must arrive within this time, and an idle
/// kept-alive connection is closed after it: a slowloris holds no slot for longer.
pub const HEADER_READ_TIMEOUT_MS: u64 = 10_000;
/// Environment variable that lowers the header read timeout (tests use a short one).
pub const HEADER_READ_TIMEOUT_ENV: &str = "GRANTLINE_HEADER_READ_TIMEOUT_MS";
/// Pause after a failed `accept` (e.g. out of file descriptors) before the next one.
pub const ACCEPT_ERROR_BACKOFF_MS: u64 = 100;
/// Requests handled at once; more are shed with 503.
pub const REQUESTS_IN_FLIGHT_MAX: usize = 1024;
/// Concurrent SSE subscribers; more are refused with 503.
pub const SSE_STREAMS_MAX: usize = 256;
/// Batches of new records buffered per SSE subscriber before it falls back to the store.
pub const SSE_BROADCAST_BATCHES_MAX: usize = 1024;
/// SSE keep-alive comment interval.
pub const SSE_KEEPALIVE_MS: u64 = 15_000;
/// Records read from the store per SSE replay page.
pub const SSE_REPLAY_PAGE_RECORDS: usize = 256;
/// `limit` query parameter of `GET /v1/events`: default and maximum.
pub const EVENTS_PAGE_RECORDS_DEFAULT: usize = 100;
pub const EVENTS_PAGE_RECORDS_MAX: usize = 1000;
/// Seconds a client should wait after a 503.
pub const RETRY_AFTER_S: u64 = 1;
/// How long the server waits for in-flight requests on shutdown.
pub const SHUTDOWN_GRACE_MS: u64 = 10_000;
/// CLI HTTP timeout.
pub const CLIENT_TIMEOUT_MS: u64 = 30_000;
/// Largest response the CLI reads as a page of events when rebuilding state.
pub const CLIENT_PAGE_RECORDS: usize = 1000;
/// Largest input file (`--data @file`, YAML files) the CLI reads.
pub const CLIENT_FILE_BYTES_MAX: u64 = 16 * 1024 * 1024;

/// `max`, or the positive value of the environment variable `name` if it is lower: tests
/// shrink limits this way, nothing can raise them.
pub fn lowered_by_env(name: &str, max: u64) -> u64 {
    match std::env::var(name).ok().and_then(|v| v.trim().parse::<u64>().ok()) {
        Some(v) if v > 0 => v.min(max),
        _ => max,
    }
}
