//! The public transparency pages: HTML rendered on the server from one published snapshot.
//!
//! Every page is a pure function of the projector [`State`], the log facts ([`LogFacts`]) and,
//! for `/events`, a slice of records the caller read from the store. No JavaScript: the pages
//! are plain HTML with one small inline stylesheet and server-rendered SVG. All user-provided
//! text is escaped by `maud`; `PreEscaped` is only ever used on this module's own constants.
//!
//! | page | function | JSON behind it |
//! |---|---|---|
//! | `/` | [`index`] | `/v1/allocations`, `/v1/usage/unauthorized`, `/v1/log`, `/v1/checkpoint` |
//! | `/requests` | [`requests`] | `/v1/requests` |
//! | `/projects/{project}` | [`project`] | `/v1/allocations?project=`, `/v1/usage/unauthorized?project=` |
//! | `/sponsors/{sponsor}` | [`sponsor`] | `/v1/sponsors/{sponsor}/usage` |
//! | `/events` | [`events`] | `/v1/events?from=&limit=` |

mod chart;
mod events;
mod index;
mod layout;
mod project;
mod requests;
mod runner;
mod sponsor;
#[cfg(test)]
mod tests;
mod witnesses;

use crate::limits::{
    CHART_DAYS, EVENTS_PAGE_RECORDS, EVENT_SUMMARY_CHARS_MAX, INDEX_PROJECTS_PAGE_MAX, INDEX_PROJECTS_PER_RESOURCE_MAX,
    PAGE_NUMBER_MAX, PAGE_UNAUTHORIZED_JOBS_MAX, PROJECT_HISTORY_MAX, REQUESTS_CLOSED_PAGE_MAX, REQUESTS_PENDING_MAX,
    SPONSOR_PROJECTS_MAX,
};

pub(crate) use events::{events, events_window};
pub use index::index;
pub(crate) use layout::not_found;
pub use project::project;
pub use requests::requests;
pub use sponsor::sponsor;
pub use witnesses::WitnessFact;

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
    /// The witnesses the log asks for cosignatures (`serve --witness`), if any.
    pub witnesses: Vec<WitnessFact>,
}

/// `?page=N` (1-based). Out-of-range numbers clamp, so a hand-edited URL still renders.
pub(crate) fn page_number(page: Option<usize>) -> usize {
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
