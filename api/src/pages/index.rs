//! `/`: each resource with the projects holding an active grant, and the log's facts.

use std::collections::BTreeMap;

use maud::{html, Markup};
use projector::{GrantStatus, GrantView, ResourceView, State};

use super::layout::{credits, expiry, fmt_num, page, pager, plural, project_link, yes_no, ApiLink, Nav};
use super::runner::{last_used, unauthorized_section};
use super::witnesses;
use super::{
    url_encode, LogFacts, INDEX_PROJECTS_PAGE_MAX, INDEX_PROJECTS_PER_RESOURCE_MAX, PAGE_UNAUTHORIZED_JOBS_MAX,
};

/// `/` (all resources, the first grants of each) or, with `resource`, that resource's
/// grants in pages of [`INDEX_PROJECTS_PAGE_MAX`]. `None` when `resource` is unknown.
pub fn index(state: &State, facts: &LogFacts, resource: Option<&str>, page_number: usize) -> Option<String> {
    let resources: Vec<ResourceView> =
        state.resources().into_iter().filter(|r| resource.is_none() || resource == Some(r.resource.as_str())).collect();
    if resource.is_some() && resources.is_empty() {
        return None;
    }
    // Resource → the projects that may use it now, sorted. Only the projects shown get their
    // grants' full views: formatting every grant's view would dominate the page with
    // thousands of grants (see BENCHMARKS.md).
    let mut by_resource: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (project, labels) in state.runner_labels(facts.now_ms) {
        for label in labels {
            if resource.is_none() || resource == Some(label.as_str()) {
                by_resource.entry(label).or_default().push(project.clone());
            }
        }
    }
    let stats = state.stats(facts.now_ms);
    let sponsors = state.sponsors();

    let mut api: Vec<ApiLink> = vec![
        (
            "allocations",
            match resource {
                Some(r) => format!("/v1/allocations?resource={}", url_encode(r)),
                None => "/v1/allocations".to_string(),
            },
        ),
        ("resources", "/v1/resources".to_string()),
        ("jobs without access", "/v1/usage/unauthorized".to_string()),
        ("log", "/v1/log".to_string()),
    ];
    api.push(("checkpoint (text)", "/v1/checkpoint".to_string()));

    let body = html! {
        @match resource {
            Some(r) => {
                h1 { "Active grants on " (r) }
                p.lead { a href="/" { "All resources" } }
            }
            None => {
                h1 { "Who may use which runner" }
                p.lead {
                    "The projects that may use each scarce CI resource right now. Every grant follows a "
                    "request reviewed by core members, and every step is a signed event in a public, "
                    "verifiable log."
                }
                dl.facts {
                    div { dt { "Active grants" } dd { (fmt_num(stats.active_grants)) } }
                    div { dt { a href="/requests" { "Pending requests" } } dd { (fmt_num(stats.pending_requests)) } }
                    div { dt { "Resources" } dd { (fmt_num(resources.len() as u64)) } }
                    div { dt { a href="/events" { "Log records" } } dd { (fmt_num(facts.size)) } }
                }
            }
        }
        @for r in &resources {
            (resource_section(state, r, by_resource.get(&r.resource).map_or(&[], Vec::as_slice), facts, resource.is_some(), page_number))
        }
        @if resources.is_empty() {
            p { "No resources are defined yet." }
        }
        @if resource.is_none() {
            (unauthorized_section(&state.unauthorized_jobs(None, None), PAGE_UNAUTHORIZED_JOBS_MAX, "/v1/usage/unauthorized"))
            h2 #sponsors { "Sponsors" }
            @if sponsors.is_empty() {
                p { "No sponsors are registered yet." }
            } @else {
                p { "Who pays for the credits, and how they are used:" }
                ul {
                    @for s in &sponsors {
                        li { a href=(format!("/sponsors/{}", url_encode(&s.sponsor))) { (s.name) } " (" code { (s.sponsor) } ")" }
                    }
                }
            }
            h2 #log { "The log" }
            dl.facts {
                div { dt { "Origin" } dd { code { (facts.origin) } } }
                div { dt { "Size (records)" } dd { (fmt_num(facts.size)) } }
            }
            p { "Log verifier key (auditors pin it): " code.key { (facts.log_key) } }
            h3 { "Latest checkpoint" }
            pre aria-label="Latest signed checkpoint" { (facts.checkpoint) }
            (witnesses::section(&facts.witnesses))
            p { a href="/events" { "Browse the event log" } }
        }
    };
    let title = match resource {
        Some(r) => format!("Active grants on {r}"),
        None => "Allocations".to_string(),
    };
    Some(page(facts, &title, Nav::Allocations, &api, body))
}

fn resource_section(
    state: &State,
    r: &ResourceView,
    projects: &[String],
    facts: &LogFacts,
    alone: bool,
    page_number: usize,
) -> Markup {
    let anchor = format!("resource-{}", url_encode(&r.resource));
    let per_page = if alone { INDEX_PROJECTS_PAGE_MAX } else { INDEX_PROJECTS_PER_RESOURCE_MAX };
    let page_index = if alone { page_number.saturating_sub(1) } else { 0 };
    let start = page_index.saturating_mul(per_page).min(projects.len());
    let end = start.saturating_add(per_page).min(projects.len());
    let shown: Vec<GrantView> = projects[start..end]
        .iter()
        .flat_map(|p| state.project_grants(p, facts.now_ms))
        .filter(|g| g.resource == r.resource && g.status == GrantStatus::Active)
        .collect();
    let resource_url = format!("/?resource={}", url_encode(&r.resource));
    html! {
        section.resource aria-labelledby=(anchor) {
            @if !alone {
                h2 id=(anchor) { (r.resource) @if r.retired { " " span.badge.off { "retired" } } }
            } @else {
                h2 id=(anchor) { "Grants" }
            }
            p.muted {
                "Provider " (r.provider) " · unit " (r.unit) " · "
                (plural(u64::from(r.approvals_required), "approval")) " required"
                @if let Some(days) = r.max_days { " · at most " (plural(days, "day")) }
                @if let Some(terms) = &r.terms { " · terms " (terms) }
            }
            @if let Some(d) = &r.description { p { (d) } }
            @if projects.is_empty() {
                p { "No project holds an active grant on this resource." }
            } @else {
                div.table-wrap {
                    table {
                        caption {
                            "Projects with an active grant on " (r.resource) ": " (fmt_num(projects.len() as u64))
                            @if end - start < projects.len() {
                                " (showing " (fmt_num(start as u64 + 1)) "–" (fmt_num(end as u64)) ")"
                            }
                        }
                        thead {
                            tr {
                                th scope="col" { "Project" }
                                th scope="col" { "Pull requests" }
                                th scope="col" { "Expires" }
                                th scope="col" { "Credits used / limit" }
                                th scope="col" { "Pool" }
                                th scope="col" { "Last used" }
                                th scope="col" { "Grant" }
                            }
                        }
                        tbody {
                            @for g in &shown {
                                tr {
                                    th scope="row" { (project_link(&g.project)) }
                                    td { (yes_no(g.pull_request)) }
                                    td { (expiry(g.expires_at.as_deref(), facts.now_ms)) }
                                    td { (credits(g.used, g.credit_limit, &r.unit)) }
                                    td { @if let Some(p) = &g.pool { (p) } @else { span.muted { "none" } } }
                                    td { (last_used(g, facts.now_ms)) }
                                    td { code { (g.grant) } br; a href=(format!("/v1/events/{}", g.issued_seq)) { "record " (g.issued_seq) } }
                                }
                            }
                        }
                    }
                }
                @if !alone && end - start < projects.len() {
                    p { a href=(format!("{resource_url}&page=1")) { "All " (fmt_num(projects.len() as u64)) " projects on " (r.resource) } }
                }
                @if alone {
                    (pager(
                        "Grant pages",
                        (page_index > 0).then(|| (format!("{resource_url}&page={}", page_index), "Previous page")),
                        (end < projects.len()).then(|| (format!("{resource_url}&page={}", page_index + 2), "Next page")),
                    ))
                }
            }
        }
    }
}
