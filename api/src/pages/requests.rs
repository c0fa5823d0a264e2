//! `/requests`: pending requests with their approvals and quorum; closed ones below, paged.

use std::collections::BTreeMap;

use maud::{html, Markup};
use projector::{GrantStatus, RequestView, State};

use super::layout::{
    external_link, fmt_num, grant_status, page, pager, plural, project_link, request_status, time_tag, yes_no, Nav,
};
use super::{LogFacts, REQUESTS_CLOSED_PAGE_MAX, REQUESTS_PENDING_MAX};

/// `/requests?page=N`: every pending request (up to [`REQUESTS_PENDING_MAX`]), then the
/// closed ones, newest first, [`REQUESTS_CLOSED_PAGE_MAX`] per page.
pub fn requests(state: &State, facts: &LogFacts, page_number: usize) -> String {
    let all = state.requests(None);
    let (pending, closed): (Vec<&RequestView>, Vec<&RequestView>) = all.iter().partition(|r| r.status == "pending");
    let page_index = page_number.saturating_sub(1);
    let start = page_index.saturating_mul(REQUESTS_CLOSED_PAGE_MAX).min(closed.len());
    let end = start.saturating_add(REQUESTS_CLOSED_PAGE_MAX).min(closed.len());
    let ended_grants = ended_grants(state, &closed[start..end], facts.now_ms);
    let api =
        [("pending requests", "/v1/requests?status=pending".to_string()), ("all requests", "/v1/requests".to_string())];
    let body = html! {
        h1 { "Requests" }
        p.lead {
            "Maintainers ask for a resource; reviewers approve or deny. When a request has the "
            "approvals its resource requires, the ledger issues the grant itself."
        }
        h2 #pending { "Pending (" (fmt_num(pending.len() as u64)) ")" }
        @if pending.is_empty() {
            p { "No request is waiting for review." }
        } @else {
            @if pending.len() > REQUESTS_PENDING_MAX {
                p { "Showing the newest " (fmt_num(REQUESTS_PENDING_MAX as u64)) "; the JSON API lists them all." }
            }
            div.table-wrap {
                table {
                    caption { "Requests waiting for approvals, newest first" }
                    thead {
                        tr {
                            th scope="col" { "Request" }
                            th scope="col" { "Project" }
                            th scope="col" { "Resource" }
                            th scope="col" { "Asked by" }
                            th scope="col" { "Justification" }
                            th scope="col" { "Pull requests" }
                            th scope="col" { "Approvals" }
                        }
                    }
                    tbody {
                        @for r in pending.iter().take(REQUESTS_PENDING_MAX) { (pending_row(r)) }
                    }
                }
            }
        }
        h2 #closed { "Closed (" (fmt_num(closed.len() as u64)) ")" }
        @if closed.is_empty() {
            p { "No request has been closed yet." }
        } @else {
            div.table-wrap {
                table {
                    caption {
                        "Granted, denied and withdrawn requests, newest first"
                        @if closed.len() > REQUESTS_CLOSED_PAGE_MAX {
                            " (" (fmt_num(start as u64 + 1)) "–" (fmt_num(end as u64)) " of " (fmt_num(closed.len() as u64)) ")"
                        }
                    }
                    thead {
                        tr {
                            th scope="col" { "Request" }
                            th scope="col" { "Project" }
                            th scope="col" { "Resource" }
                            th scope="col" { "Status" }
                            th scope="col" { "Justification" }
                            th scope="col" { "Approvals" }
                            th scope="col" { "Grant" }
                        }
                    }
                    tbody {
                        @for r in &closed[start..end] {
                            tr {
                                th scope="row" { code { (r.request) } }
                                td { (project_link(&r.project)) }
                                td { (r.resource) }
                                td {
                                    @match ended_grants.get(r.grant.as_deref().unwrap_or_default()) {
                                        Some(status) => { (grant_status(status)) br; span.muted { "was granted" } }
                                        None => (request_status(&r.status)),
                                    }
                                }
                                td.text { (r.justification) }
                                td.num { (r.approvals.len()) " of " (r.approvals_required) }
                                td { @if let Some(g) = &r.grant { code { (g) } } @else { span.muted { "none" } } }
                            }
                        }
                    }
                }
            }
            (pager(
                "Closed request pages",
                (page_index > 0).then(|| (format!("/requests?page={page_index}#closed"), "Newer closed requests")),
                (end < closed.len()).then(|| (format!("/requests?page={}#closed", page_index + 2), "Older closed requests")),
            ))
        }
    };
    page(facts, "Requests", Nav::Requests, &api, body)
}

/// The grants of these requests that are no longer active now (revoked, expired, exhausted
/// ...), by grant id: a granted request whose grant ended shows how it ended, not "granted".
fn ended_grants(state: &State, requests: &[&RequestView], now_ms: i64) -> BTreeMap<String, GrantStatus> {
    let mut projects: Vec<&str> = requests.iter().filter(|r| r.grant.is_some()).map(|r| r.project.as_str()).collect();
    projects.sort_unstable();
    projects.dedup();
    projects
        .into_iter()
        .flat_map(|project| state.project_grants(project, now_ms))
        .filter(|g| g.status != GrantStatus::Active)
        .map(|g| (g.grant, g.status))
        .collect()
}

fn pending_row(r: &RequestView) -> Markup {
    html! {
        tr {
            th scope="row" {
                code { (r.request) } br;
                span.muted { "opened " } a href=(format!("/v1/events/{}", r.opened_seq)) { "record " (r.opened_seq) }
            }
            td { (project_link(&r.project)) }
            td { (r.resource) }
            td {
                (r.requester)
                @if let Some(who) = &r.on_behalf_of { br; span.muted { "for " (who) } }
            }
            td.text {
                (r.justification)
                @if let Some(url) = &r.evidence_url { br; (external_link(url, "evidence")) }
                @if r.credits.is_some() || r.days.is_some() {
                    br;
                    span.muted {
                        @if let Some(c) = r.credits { (plural(c, "credit")) }
                        @if r.credits.is_some() && r.days.is_some() { ", " }
                        @if let Some(d) = r.days { (plural(d, "day")) }
                    }
                }
            }
            td { (yes_no(r.pull_request)) }
            td {
                strong { (r.approvals.len()) " of " (r.approvals_required) }
                " needed"
                @if !r.approvals.is_empty() {
                    ul.approvals {
                        @for a in &r.approvals {
                            li {
                                (a.reviewer) " " span.muted { "(" (time_tag(&a.at)) ")" }
                                @if let Some(note) = &a.note { ": " q { (note) } }
                            }
                        }
                    }
                }
            }
        }
    }
}
