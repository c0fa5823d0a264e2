//! `/projects/{project}`: one project's grants, open requests and history; every event links
//! to its record and its inclusion proof.

use maud::html;
use projector::data::is_valid_project_name;
use projector::State;

use super::layout::{credits, expiry, fmt_num, grant_status, page, plural, record_links, time_tag, yes_no, Nav};
use super::runner::{last_used, unauthorized_section};
use super::{url_encode, LogFacts, PAGE_UNAUTHORIZED_JOBS_MAX, PROJECT_HISTORY_MAX};

/// `None` when the log has never mentioned the project (the caller answers 404).
pub fn project(state: &State, facts: &LogFacts, project: &str) -> Option<String> {
    if !is_valid_project_name(project) {
        return None;
    }
    let grants = state.project_grants(project, facts.now_ms);
    let history = state.project_history(project);
    let unauthorized = state.unauthorized_jobs(Some(project), None);
    if grants.is_empty() && history.is_empty() && unauthorized.is_empty() {
        return None;
    }
    let pending: Vec<_> = state.requests(Some("pending")).into_iter().filter(|r| r.project == project).collect();
    let units: std::collections::BTreeMap<String, String> =
        state.resources().into_iter().map(|r| (r.resource, r.unit)).collect();
    let skipped = history.len().saturating_sub(PROJECT_HISTORY_MAX);
    let api = [
        ("active grants", format!("/v1/allocations?project={}", url_encode(project))),
        ("requests", "/v1/requests".to_string()),
        ("jobs without access", format!("/v1/usage/unauthorized?project={}", url_encode(project))),
    ];
    let body = html! {
        h1 { "Project " code { (project) } }
        p.lead { (grants.iter().filter(|g| g.status == projector::GrantStatus::Active).count()) " active of "
            (plural(grants.len() as u64, "grant")) " ever issued; " (plural(pending.len() as u64, "pending request")) "." }
        h2 #grants { "Grants" }
        @if grants.is_empty() {
            p { "No grant has been issued to this project." }
        } @else {
            div.table-wrap {
                table {
                    caption { "Every grant issued to " (project) ", oldest first" }
                    thead {
                        tr {
                            th scope="col" { "Grant" }
                            th scope="col" { "Resource" }
                            th scope="col" { "Status" }
                            th scope="col" { "Pull requests" }
                            th scope="col" { "Expires" }
                            th scope="col" { "Credits used / limit" }
                            th scope="col" { "Pool" }
                            th scope="col" { "Last used" }
                            th scope="col" { "Issued" }
                        }
                    }
                    tbody {
                        @for g in &grants {
                            tr {
                                th scope="row" { code { (g.grant) } }
                                td { (g.resource) }
                                td { (grant_status(&g.status)) }
                                td { (yes_no(g.pull_request)) }
                                td { (expiry(g.expires_at.as_deref(), facts.now_ms)) }
                                td { (credits(g.used, g.credit_limit, units.get(&g.resource).map_or("", String::as_str))) }
                                td { @if let Some(p) = &g.pool { (p) } @else { span.muted { "none" } } }
                                td { (last_used(g, facts.now_ms)) }
                                td { (record_links(g.issued_seq)) }
                            }
                        }
                    }
                }
            }
        }
        @if !pending.is_empty() {
            h2 #pending { "Pending requests" }
            ul {
                @for r in &pending {
                    li {
                        code { (r.request) } " for " (r.resource) ": "
                        strong { (r.approvals.len()) " of " (r.approvals_required) }
                        @if r.approvals_required == 1 { " approval. " } @else { " approvals. " }
                        q { (r.justification) }
                    }
                }
            }
        }
        @if !unauthorized.is_empty() {
            (unauthorized_section(
                &unauthorized,
                PAGE_UNAUTHORIZED_JOBS_MAX,
                &format!("/v1/usage/unauthorized?project={}", url_encode(project)),
            ))
        }
        h2 #history { "History" }
        @if skipped > 0 {
            p { "The " (fmt_num(skipped as u64)) " oldest entries are not shown; "
                a href="/events" { "the event log" } " has every record." }
        }
        div.table-wrap {
            table {
                caption { "Every event about " (project) ", oldest first; usage reports are summarised per grant" }
                thead {
                    tr {
                        th scope="col" { "Record" }
                        th scope="col" { "When (UTC)" }
                        th scope="col" { "Event" }
                        th scope="col" { "By" }
                        th scope="col" { "Detail" }
                        th scope="col" { "Verify" }
                    }
                }
                tbody {
                    @for e in &history[skipped..] {
                        tr {
                            th scope="row" class="num" { (e.seq) }
                            td { (time_tag(&e.at)) }
                            td { code { (e.kind) } }
                            td { @if e.actor.is_empty() { span.muted { "meters" } } @else { (e.actor) } }
                            td.text { @if let Some(d) = &e.detail { (d) } }
                            td { (record_links(e.seq)) }
                        }
                    }
                }
            }
        }
    };
    Some(page(facts, &format!("Project {project}"), Nav::None, &api, body))
}
