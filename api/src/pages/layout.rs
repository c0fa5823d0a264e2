//! The page shell (head, navigation, footer with the JSON links) and small shared pieces.

use ledger::statement::parse_rfc3339_ms;
use maud::{html, Markup, PreEscaped, DOCTYPE};
use projector::GrantStatus;

use super::{url_encode, LogFacts};

/// The one stylesheet, inlined so every page is a single response.
const STYLE: &str = include_str!("style.css");
const DAY_MS: i64 = 86_400_000;

/// Which navigation entry is the current page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nav {
    Allocations,
    Requests,
    Events,
    None,
}

/// A link to the JSON behind a page: (label, href).
pub(crate) type ApiLink = (&'static str, String);

/// Wraps a page body in the shell. `title` is plain text (escaped).
pub(crate) fn page(facts: &LogFacts, title: &str, nav: Nav, api: &[ApiLink], body: Markup) -> String {
    let nav_item = |href: &str, label: &str, this: Nav| {
        html! {
            li { a href=(href) aria-current=[(nav == this).then_some("page")] { (label) } }
        }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light";
                title { (title) " · grantline " (facts.origin) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.site {
                    div.wrap {
                        a.brand href="/" { "grantline" }
                        span.origin { "ledger " code { (facts.origin) } }
                        nav aria-label="Site" {
                            ul {
                                (nav_item("/", "Allocations", Nav::Allocations))
                                (nav_item("/requests", "Requests", Nav::Requests))
                                (nav_item("/events", "Event log", Nav::Events))
                            }
                        }
                    }
                }
                main #main .wrap {
                    (body)
                    @if !api.is_empty() {
                        p.json {
                            strong { "JSON API for this page: " }
                            @for (label, href) in api {
                                a href=(href) type="application/json" { (label) }
                            }
                        }
                    }
                }
                footer.site {
                    div.wrap {
                        p {
                            "Every fact on this page is derived from the signed, append-only log ("
                            (plural(facts.size, "record")) "). Verify it yourself with "
                            code { "grantline verify" } " against the log key below."
                        }
                        p { "Log verifier key: " code.key { (facts.log_key) } }
                        p { "Rendered at " (time_tag(&ledger::statement::format_rfc3339_ms(facts.now_ms))) " (UTC)." }
                    }
                }
            }
        }
    }
    .into_string()
}

/// The 404 page for an unknown project, sponsor or page. `what` is plain text (escaped).
pub(crate) fn not_found(facts: &LogFacts, what: &str) -> String {
    let body = html! {
        h1 { "Not found" }
        p { (what) }
        p { "Start from " a href="/" { "the allocations" } ", " a href="/requests" { "the requests" }
            " or " a href="/events" { "the event log" } "." }
    };
    page(facts, "Not found", Nav::None, &[], body)
}

/// `12345` → `12,345`.
pub(crate) fn fmt_num(n: u64) -> String {
    let digits = n.to_string();
    let first = match digits.len() % 3 {
        0 => 3.min(digits.len()),
        r => r,
    };
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    out.push_str(&digits[..first]);
    for group in digits.as_bytes()[first..].chunks(3) {
        out.push(',');
        out.extend(group.iter().map(|&b| b as char));
    }
    out
}

/// A `<time>` showing the date and the time of day in UTC, machine-readable in `datetime`.
pub(crate) fn time_tag(rfc3339: &str) -> Markup {
    let shown = match (rfc3339.get(..10), rfc3339.get(11..16)) {
        (Some(date), Some(hm)) => format!("{date} {hm}"),
        _ => rfc3339.to_string(),
    };
    html! { time datetime=(rfc3339) { (shown) } }
}

/// An expiry: its date and how far it is from now ("in 89 days", "expired 2 days ago").
pub(crate) fn expiry(expires_at: Option<&str>, now_ms: i64) -> Markup {
    let Some(at) = expires_at else {
        return html! { span.muted { "no expiry" } };
    };
    let date = at.get(..10).unwrap_or(at);
    let relative = parse_rfc3339_ms(at).map(|t| {
        let days = (t - now_ms).unsigned_abs() / DAY_MS as u64;
        match (t <= now_ms, days) {
            (true, 0) => "ended today".to_string(),
            (true, d) => format!("ended {} ago", plural(d, "day")),
            (false, 0) => "ends within a day".to_string(),
            (false, d) => format!("in {}", plural(d, "day")),
        }
    });
    html! {
        time datetime=(at) { (date) }
        @if let Some(r) = relative { br; span.muted { (r) } }
    }
}

pub(crate) fn plural(n: u64, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{} {word}s", fmt_num(n))
    }
}

/// Credits used of the limit, as text and a `<meter>` (its text is the accessible name).
pub(crate) fn credits(used: u64, limit: Option<u64>, unit: &str) -> Markup {
    match limit {
        Some(limit) => html! {
            span { (fmt_num(used)) " / " (fmt_num(limit)) " " (unit) }
            br;
            meter min="0" max=(limit) value=(used.min(limit)) high=(limit - limit / 10)
                aria-label=(format!("{} of {} {unit} used", fmt_num(used), fmt_num(limit))) {}
        },
        None => html! { span { (fmt_num(used)) " " (unit) " used" } br; span.muted { "no limit" } },
    }
}

pub(crate) fn yes_no(flag: bool) -> Markup {
    if flag {
        html! { span.badge.ok { "yes" } }
    } else {
        html! { span.badge.off { "no" } }
    }
}

pub(crate) fn grant_status(status: &GrantStatus) -> Markup {
    let (class, text) = match status {
        GrantStatus::Active => ("badge ok", "active"),
        GrantStatus::Revoked => ("badge bad", "revoked"),
        GrantStatus::Expired => ("badge off", "expired"),
        GrantStatus::Exhausted => ("badge warn", "exhausted"),
        GrantStatus::Migrated => ("badge off", "migrated"),
        GrantStatus::Retired => ("badge off", "resource retired"),
    };
    html! { span class=(class) { (text) } }
}

pub(crate) fn request_status(status: &str) -> Markup {
    let class = match status {
        "granted" => "badge ok",
        "pending" => "badge warn",
        "denied" => "badge bad",
        _ => "badge off",
    };
    html! { span class=(class) { (status) } }
}

pub(crate) fn project_link(project: &str) -> Markup {
    html! { a href=(format!("/projects/{}", url_encode(project))) { (project) } }
}

/// Links to a record's JSON and its inclusion proof.
pub(crate) fn record_links(seq: u64) -> Markup {
    html! {
        a href=(format!("/v1/events/{seq}")) aria-label=(format!("record {seq} as JSON")) { "record" }
        " · "
        a href=(format!("/v1/proofs/inclusion/{seq}")) aria-label=(format!("inclusion proof of record {seq}")) { "proof" }
    }
}

/// "Newer" / "Older" style pager links; `None` hides a side.
pub(crate) fn pager(label: &str, prev: Option<(String, &str)>, next: Option<(String, &str)>) -> Markup {
    html! {
        @if prev.is_some() || next.is_some() {
            nav.pager aria-label=(label) {
                @if let Some((href, text)) = prev { a href=(href) rel="prev" { (text) } }
                @if let Some((href, text)) = next { a href=(href) rel="next" { (text) } }
            }
        }
    }
}

/// Only http(s) URLs become links; anything else (`javascript:` ...) is shown as text.
pub(crate) fn external_link(url: &str, text: &str) -> Markup {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if lower.starts_with("https://") || lower.starts_with("http://") {
        html! { a href=(url) rel="nofollow noopener" { (text) } }
    } else {
        html! { span.mono { (url) } }
    }
}
