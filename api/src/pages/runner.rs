//! What the GitHub runner layer adds to the pages: jobs that ran on a gated runner without
//! access (cross-access, logged publicly), and when each grant was last used.

use ledger::statement::parse_rfc3339_ms;
use maud::{html, Markup};
use projector::data::DAY_MS;
use projector::limits::GRANT_IDLE_DAYS_FLAG;
use projector::{GrantView, UnauthorizedJob};

use super::layout::{external_link, fmt_num, project_link, record_links, time_tag};

/// "Jobs that ran without access": the newest `shown_max` of `jobs` (newest first), with a link
/// to the JSON list of all of them.
pub(crate) fn unauthorized_section(jobs: &[UnauthorizedJob], shown_max: usize, all_url: &str) -> Markup {
    let shown = &jobs[..jobs.len().min(shown_max)];
    html! {
        h2 #unauthorized { "Jobs that ran without access" }
        @if jobs.is_empty() {
            p { "No job has run on a gated runner without access." }
        } @else {
            p {
                "Jobs GitHub reported on a gated runner for a project without an active grant. They debit "
                "nothing; each is a signed record, so the cross-access is public."
            }
            div.table-wrap {
                table {
                    caption {
                        (fmt_num(jobs.len() as u64)) " jobs"
                        @if shown.len() < jobs.len() { " (the newest " (fmt_num(shown.len() as u64)) ")" }
                    }
                    thead {
                        tr {
                            th scope="col" { "Project" }
                            th scope="col" { "Resource" }
                            th scope="col" { "Why not allowed" }
                            th scope="col" { "Started" }
                            th scope="col" { "Job" }
                            th scope="col" { "Record" }
                        }
                    }
                    tbody {
                        @for j in shown {
                            tr {
                                th scope="row" { (project_link(&j.project)) }
                                td { (j.resource) }
                                td { code { (j.reason) } }
                                td { (time_tag(&j.started_at)) }
                                td { @if let Some(url) = &j.run_url { (external_link(url, "run")) } @else { code { (j.usage) } } }
                                td { (record_links(j.seq)) }
                            }
                        }
                    }
                }
            }
            p { a href=(all_url) { "All of them as JSON" } }
        }
    }
}

/// When a grant was last used, flagged when unused for [`GRANT_IDLE_DAYS_FLAG`] days or more.
pub(crate) fn last_used(g: &GrantView, now_ms: i64) -> Markup {
    let idle_days = parse_rfc3339_ms(&g.idle_since).map(|t| (now_ms - t).max(0) / DAY_MS);
    let flagged = idle_days.is_some_and(|d| d >= GRANT_IDLE_DAYS_FLAG as i64);
    html! {
        @match &g.last_used_at {
            Some(at) => (time_tag(at)),
            None => span.muted { "never" },
        }
        @if flagged {
            br;
            span.badge.warn title="A grant nobody uses may be revoked; see /v1/allocations?unused_days=30" {
                "unused " (idle_days.unwrap_or_default()) " days"
            }
        }
    }
}
