//! The public transparency pages: HTML rendered on the server from one published snapshot.
//!
//! Every page is a pure function of the projector [`State`], the log facts ([`LogFacts`]) and,
//! for `/events`, a slice of records the caller read from the store. No JavaScript: the pages
//! are plain HTML with one small inline stylesheet and server-rendered SVG. All user-provided
//! text is escaped by `maud`; `PreEscaped` is only ever used on this module's own constants.
//!
//! | page | function | JSON behind it |
//! |---|---|---|
//! | `/` | [`index`] | `/v1/allocations`, `/v1/log`, `/v1/checkpoint` |
//! | `/requests` | [`requests`] | `/v1/requests` |
//! | `/projects/{project}` | [`project`] | `/v1/allocations?project=` |
//! | `/sponsors/{sponsor}` | [`sponsor`] | `/v1/sponsors/{sponsor}/usage` |
//! | `/events` | [`events`] | `/v1/events?from=&limit=` |

mod chart;
mod events;
mod index;
mod layout;
mod project;
mod requests;
pub mod routes;
mod sponsor;
#[cfg(test)]
mod tests;

pub use events::{events, events_window, EventsWindow};
pub use index::index;
pub use layout::not_found;
pub use project::project;
pub use requests::requests;
pub use sponsor::sponsor;

/// Projects (with their active grants) listed per resource on `/`; the rest are on the
/// resource's own pages.
pub const INDEX_PROJECTS_PER_RESOURCE_MAX: usize = 100;
/// Projects per page on `/?resource=R&page=N`.
pub const INDEX_PROJECTS_PAGE_MAX: usize = 500;
/// Closed requests per page on `/requests?page=N` (pending requests are all shown).
pub const REQUESTS_CLOSED_PAGE_MAX: usize = 100;
/// Pending requests shown on `/requests`, oldest last; more are counted, not listed.
pub const REQUESTS_PENDING_MAX: usize = 1000;
/// History entries shown on a project page (newest kept).
pub const PROJECT_HISTORY_MAX: usize = 1000;
/// Rows of a sponsor's per-project breakdown (largest users first).
pub const SPONSOR_PROJECTS_MAX: usize = 500;
/// Days in a sponsor's daily usage chart (ending on the latest day with usage, or today).
pub const CHART_DAYS: usize = 30;
/// Records per page on `/events`.
pub const EVENTS_PAGE_RECORDS: u64 = 50;
/// Characters of an event's data summary on `/events`.
pub const EVENT_SUMMARY_CHARS_MAX: usize = 160;
/// Highest page number accepted in `?page=` (keeps the arithmetic trivially in range).
pub const PAGE_NUMBER_MAX: usize = 1_000_000;

/// Facts about the log that the projector does not hold: from the published snapshot.
#[derive(Debug, Clone)]
pub struct LogFacts {
    pub origin: String,
    /// Records published (the tree size of `checkpoint`).
    pub size: u64,
    /// The latest signed checkpoint note.
    pub checkpoint: String,
    /// The log's verifier key string (auditors pin it).
    pub log_key: String,
    /// The server clock when rendering, Unix milliseconds.
    pub now_ms: i64,
}

/// `?page=N` (1-based). Out-of-range numbers clamp, so a hand-edited URL still renders.
pub fn page_number(page: Option<usize>) -> usize {
    page.unwrap_or(1).clamp(1, PAGE_NUMBER_MAX)
}

/// Percent-encodes one URL path segment or query value (everything but RFC 3986 unreserved).
pub(crate) fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
