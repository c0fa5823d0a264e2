//! `/events`: the log itself, newest first, [`EVENTS_PAGE_RECORDS`] per page.

use ledger::dsse::Envelope;
use ledger::record::Record;
use ledger::statement::{format_rfc3339_ms, Statement};
use maud::{html, Markup};

use super::layout::{fmt_num, page, pager, record_links, time_tag, Nav};
use super::{LogFacts, EVENTS_PAGE_RECORDS, EVENT_SUMMARY_CHARS_MAX};

/// Which records one `/events` page shows: seqs `from .. before`, newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EventsWindow {
    /// The log size the page was made at.
    pub size: u64,
    /// First seq shown (the oldest on the page).
    pub from: u64,
    /// One past the newest seq shown.
    pub before: u64,
}

impl EventsWindow {
    /// How many records the caller must read from `from`.
    pub(crate) fn len(&self) -> usize {
        usize::try_from(self.before - self.from).unwrap_or(0)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.before == self.from
    }
}

/// The window for `?before=SEQ` (records older than SEQ) or `?page=N` (1 = newest). `before`
/// wins when both are given; both are clamped to the log.
pub(crate) fn events_window(size: u64, before: Option<u64>, page: Option<usize>) -> EventsWindow {
    let before = match (before, page) {
        (Some(b), _) => b.min(size),
        (None, Some(p)) => {
            let skipped = (super::page_number(Some(p)) as u64 - 1).saturating_mul(EVENTS_PAGE_RECORDS);
            size.saturating_sub(skipped)
        }
        (None, None) => size,
    };
    EventsWindow { size, from: before.saturating_sub(EVENTS_PAGE_RECORDS), before }
}

/// The data fields worth showing in a one-line summary, in this order.
const SUMMARY_FIELDS: [&str; 20] = [
    "request",
    "grant",
    "project",
    "resource",
    "pull_request",
    "pool",
    "sponsor",
    "name",
    "actor",
    "roles",
    "amount",
    "unit",
    "credits",
    "days",
    "usage",
    "approvals_required",
    "from_resource",
    "to_resource",
    "user",
    "terms",
];

/// `key: value, ...` of the interesting data fields, cut at EVENT_SUMMARY_CHARS_MAX chars.
fn summary(st: &Statement) -> String {
    let mut parts = Vec::new();
    if let Some(data) = st.data.as_object() {
        for field in SUMMARY_FIELDS {
            let value = match data.get(field) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Array(items)) => {
                    items.iter().filter_map(|v| v.as_str()).collect::<Vec<_>>().join(" ")
                }
                Some(v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => v.to_string(),
                _ => continue,
            };
            parts.push(format!("{field}: {value}"));
        }
    }
    let text = parts.join(", ");
    match text.char_indices().nth(EVENT_SUMMARY_CHARS_MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// The page for `window`; `records` are what the caller read for it (any order; records
/// outside the window are ignored).
pub(crate) fn events(facts: &LogFacts, window: &EventsWindow, records: &[Record]) -> String {
    let mut shown: Vec<&Record> = records.iter().filter(|r| r.seq >= window.from && r.seq < window.before).collect();
    shown.sort_by_key(|r| std::cmp::Reverse(r.seq));
    let newer = window.before < window.size;
    let older = window.from > 0;
    let api = [("these records", format!("/v1/events?from={}&limit={}", window.from, window.len().max(1)))];
    let body = html! {
        h1 { "Event log" }
        p.lead {
            "Every accepted event, newest first. Each record is a signed DSSE envelope, hash-chained to "
            "the one before it and included in the Merkle tree of the signed checkpoint; its links give "
            "the record as JSON and its inclusion proof."
        }
        @if window.is_empty() {
            p { "No records here. " a href="/events" { "The newest records" } }
        } @else {
            div.table-wrap {
                table {
                    caption {
                        "Records " (fmt_num(window.from)) "–" (fmt_num(window.before - 1)) " of "
                        (fmt_num(window.size)) ", newest first"
                    }
                    thead {
                        tr {
                            th scope="col" class="num" { "Seq" }
                            th scope="col" { "Received (UTC)" }
                            th scope="col" { "Event" }
                            th scope="col" { "Actor" }
                            th scope="col" { "Details" }
                            th scope="col" { "Signed by" }
                            th scope="col" { "Verify" }
                        }
                    }
                    tbody {
                        @for r in &shown { (row(r)) }
                    }
                }
            }
        }
        (pager(
            "Event log pages",
            newer.then(|| (format!("/events?before={}", (window.before + EVENTS_PAGE_RECORDS).min(window.size)), "Newer records")),
            older.then(|| (format!("/events?before={}", window.from), "Older records")),
        ))
    };
    page(facts, "Event log", Nav::Events, &api, body)
}

fn row(r: &Record) -> Markup {
    let decoded = Envelope::parse(r.envelope())
        .ok()
        .and_then(|env| Statement::parse(&env.payload).ok().map(|st| (env.signatures, st)));
    html! {
        tr {
            th scope="row" class="num" { (r.seq) }
            td { (time_tag(&format_rfc3339_ms(r.received_at_ms))) }
            @match &decoded {
                Some((signatures, st)) => {
                    td { code { (st.kind) } br; span.muted { "id " (st.id) } }
                    td { (st.actor) }
                    td.text { (summary(st)) }
                    td { @for (i, s) in signatures.iter().enumerate() { @if i > 0 { br; } code { (s.keyid) } } }
                }
                None => {
                    td colspan="4" { span.badge.bad { "undecodable record" } }
                }
            }
            td { (record_links(r.seq)) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_pages_back_from_the_newest() {
        let w = events_window(120, None, None);
        assert_eq!((w.from, w.before, w.len()), (70, 120, 50));
        let w = events_window(120, Some(70), None);
        assert_eq!((w.from, w.before), (20, 70));
        let w = events_window(120, None, Some(3));
        assert_eq!((w.from, w.before), (0, 20));
        // Past the end: empty, not a panic; `before` beyond the log clamps.
        assert!(events_window(120, None, Some(9)).is_empty());
        assert_eq!(events_window(120, Some(10_000), None).before, 120);
        assert!(events_window(0, None, None).is_empty());
    }
}
