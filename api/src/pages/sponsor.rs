//! `/sponsors/{sponsor}`: the sponsor's pools, the projects using them and a daily usage chart.

use maud::html;
use projector::{ProjectUsage, State};

use super::chart::{colour, daily_usage, Window};
use super::layout::{expiry, fmt_num, page, project_link, Nav};
use super::{url_encode, LogFacts, CHART_DAYS, SPONSOR_PROJECTS_MAX};

/// `None` when the sponsor is unknown (the caller answers 404).
pub fn sponsor(state: &State, facts: &LogFacts, sponsor: &str) -> Option<String> {
    let usage = state.sponsor_usage(sponsor, None, None)?;
    let pools: Vec<String> = usage.pools.iter().map(|p| p.pool.clone()).collect();
    let unit_of = |pool: &str| usage.pools.iter().find(|p| p.pool == pool).map_or("", |p| p.unit.as_str());
    // Totals only mean something when every pool counts the same unit.
    let unit = usage.pools.first().map(|p| p.unit.as_str()).unwrap_or("credits");
    let one_unit = usage.pools.iter().all(|p| p.unit == unit);
    let sum = |f: fn(&projector::PoolUsage) -> u64| usage.pools.iter().map(f).fold(0u64, u64::saturating_add);
    let mut projects: Vec<&ProjectUsage> = usage.projects.iter().collect();
    projects.sort_by(|a, b| b.used.cmp(&a.used).then_with(|| (&a.project, &a.pool).cmp(&(&b.project, &b.pool))));
    let window = Window::new(&usage.series, &pools, facts.now_ms);
    let chart_days: Vec<usize> = (0..CHART_DAYS).filter(|&i| window.total(i) > 0).collect();
    let chart_label = format!("Daily usage of {}'s credits, last {CHART_DAYS} days", usage.name);
    let api = [("sponsor usage", format!("/v1/sponsors/{}/usage?bucket=day", url_encode(sponsor)))];

    let body = html! {
        h1 { (usage.name) }
        p.lead { "Sponsor " code { (usage.sponsor) } ": how its donated credits are allocated and used." }
        @if one_unit && !usage.pools.is_empty() {
            dl.facts {
                div { dt { "Deposited" } dd { (fmt_num(sum(|p| p.deposited))) } }
                div { dt { "Allocated to grants" } dd { (fmt_num(sum(|p| p.allocated))) } }
                div { dt { "Used" } dd { (fmt_num(sum(|p| p.used))) } }
                div { dt { "Remaining" } dd { (fmt_num(sum(|p| p.remaining))) } }
            }
            p.muted { "All figures in " (unit) "." }
        }
        h2 #pools { "Pools" }
        @if usage.pools.is_empty() {
            p { "This sponsor has not deposited credits yet." }
        } @else {
            div.table-wrap {
                table {
                    caption { "Credit pools of " (usage.name) }
                    thead {
                        tr {
                            th scope="col" { "Pool" }
                            th scope="col" { "Pays for" }
                            th scope="col" class="num" { "Deposited" }
                            th scope="col" class="num" { "Allocated" }
                            th scope="col" class="num" { "Used" }
                            th scope="col" class="num" { "Remaining" }
                            th scope="col" { "Unit" }
                            th scope="col" { "Expires" }
                        }
                    }
                    tbody {
                        @for (i, p) in usage.pools.iter().enumerate() {
                            tr {
                                th scope="row" {
                                    span.swatch style=(format!("background:{}", colour(i))) aria-hidden="true" {}
                                    (p.pool)
                                }
                                td { @if p.resources.iter().any(|r| r == "*") { "any resource" } @else { (p.resources.join(", ")) } }
                                td.num { (fmt_num(p.deposited)) }
                                td.num { (fmt_num(p.allocated)) }
                                td.num { (fmt_num(p.used)) }
                                td.num { (fmt_num(p.remaining)) }
                                td { (p.unit) }
                                td { (expiry(p.expires_at.as_deref(), facts.now_ms)) }
                            }
                        }
                    }
                }
            }
        }
        h2 #daily { "Daily usage" }
        @if usage.pools.is_empty() {
            p { "No usage yet." }
        } @else {
            figure.chart {
                div.chart-scroll { (daily_usage(&window, &pools, if one_unit { unit } else { "credits" }, &chart_label)) }
                figcaption {
                    "Credits used per day (UTC) from " (window.day(0)) " to " (window.day(CHART_DAYS - 1))
                    ", stacked by pool."
                }
                @if pools.len() > 1 {
                    ul.legend aria-label="Pools" {
                        @for (i, p) in pools.iter().enumerate() {
                            li { span.swatch style=(format!("background:{}", colour(i))) aria-hidden="true" {} (p) }
                        }
                    }
                }
            }
            details {
                summary { "The chart's numbers as a table" }
                @if chart_days.is_empty() {
                    p { "No usage in these days." }
                } @else {
                    div.table-wrap {
                        table {
                            caption { "Usage per day and pool, days with usage only" }
                            thead {
                                tr {
                                    th scope="col" { "Day (UTC)" }
                                    @for p in &pools { th scope="col" class="num" { (p) } }
                                    @if pools.len() > 1 { th scope="col" class="num" { "Total" } }
                                }
                            }
                            tbody {
                                @for &i in &chart_days {
                                    tr {
                                        th scope="row" { time datetime=(window.day(i)) { (window.day(i)) } }
                                        @for amount in &window.days[i] { td.num { (fmt_num(*amount)) } }
                                        @if pools.len() > 1 { td.num { (fmt_num(window.total(i))) } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 #projects { "Usage per project" }
        @if projects.is_empty() {
            p { "No project has used these credits yet." }
        } @else {
            @if projects.len() > SPONSOR_PROJECTS_MAX {
                p { "The " (fmt_num(SPONSOR_PROJECTS_MAX as u64)) " largest of " (fmt_num(projects.len() as u64))
                    " are shown; the JSON API lists them all." }
            }
            div.table-wrap {
                table {
                    caption { "Credits used per project, largest first" }
                    thead {
                        tr {
                            th scope="col" { "Project" }
                            th scope="col" { "Resource" }
                            th scope="col" { "Pool" }
                            th scope="col" class="num" { "Used" }
                            th scope="col" { "Unit" }
                        }
                    }
                    tbody {
                        @for p in projects.iter().take(SPONSOR_PROJECTS_MAX) {
                            tr {
                                th scope="row" { (project_link(&p.project)) }
                                td { (p.resource) }
                                td { (p.pool) }
                                td.num { (fmt_num(p.used)) }
                                td { (unit_of(&p.pool)) }
                            }
                        }
                    }
                }
            }
        }
    };
    Some(page(facts, &format!("Sponsor {}", usage.name), Nav::None, &api, body))
}
