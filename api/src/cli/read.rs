//! Reading: `allocations`, `check`, `usage`, `requests`. Tables by default, JSON with --json.

use clap::Args;
use projector::{AccessAnswer, Allocations, Explanation, GrantView, RequestView, ResourceView, SponsorUsage};
use serde::Deserialize;

use super::error::{CliError, CliResult, EXIT_DENIED};
use super::signer::ServerOpt;
use super::table::Table;
use crate::client::encode_path_segment;

fn print_json<T: serde::Serialize>(v: &T) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map(|v| v.to_string()).unwrap_or_else(|| "-".to_string())
}

/// List the active grants: who may use which resource now (the public list).
#[derive(Args, Debug)]
#[command(after_help = "Example:\n  grantline allocations --resource cirun-openstack-gpu-large")]
pub(crate) struct AllocationsArgs {
    #[command(flatten)]
    pub server: ServerOpt,
    /// Only grants on this resource (runner label).
    #[arg(long)]
    pub resource: Option<String>,
    /// Only grants of this project (repository name, without owner).
    #[arg(long)]
    pub project: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub(super) fn allocations(a: AllocationsArgs) -> CliResult {
    let client = a.server.client()?;
    let mut query = Vec::new();
    if let Some(r) = a.resource {
        query.push(("resource", r));
    }
    if let Some(p) = a.project {
        query.push(("project", p));
    }
    let allocations: Allocations = client.get_json("/v1/allocations", &query)?;
    if a.json {
        print_json(&allocations);
        return Ok(());
    }
    let mut t = Table::new(&["RESOURCE", "PROJECT", "GRANT", "PULL_REQUESTS", "EXPIRES", "USED/LIMIT"]);
    for r in &allocations.resources {
        for g in &r.grants {
            t.row(vec![
                r.resource.clone(),
                g.project.clone(),
                g.grant.clone(),
                if g.pull_request { "yes" } else { "no" }.to_string(),
                opt(&g.expires_at),
                format!("{}/{}", g.used, opt(&g.credit_limit)),
            ]);
        }
    }
    if t.is_empty() {
        println!("no active grants");
    } else {
        print!("{}", t.render());
    }
    Ok(())
}

/// May PROJECT use RESOURCE now? Prints the chain of facts behind the answer as a checklist,
/// each with the seq of the record that proves it. Exits 0 when allowed, 3 when denied.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  grantline check pytorch-cpu-feedstock cirun-openstack-gpu-large\n  grantline check pytorch-cpu-feedstock cirun-openstack-gpu-large --pull-request --user alice --github-id 1234\n\nEach step is ✓ or ✗, with `seq N`: the log record that proves it (GET /v1/events/N).\nA denial names the first missing step, e.g. no_request or awaiting_approvals (1 of 2).\nA grant that names its users (users or users_from_json) denies without --user: user_required."
)]
pub(crate) struct CheckArgs {
    #[command(flatten)]
    pub server: ServerOpt,
    /// The project (repository name, lowercase, without owner), e.g. pytorch-cpu-feedstock.
    pub project: String,
    /// The resource (runner label), e.g. cirun-openstack-gpu-large.
    #[arg(required_unless_present = "label", conflicts_with = "label")]
    pub resource: Option<String>,
    /// A job's runs-on label instead of the resource, read by the runner layer's label rule
    /// (case ignored, cut at `--` and `;`), e.g. cirun-openstack-gpu-large--123-linux_64.
    #[arg(long, value_name = "LABEL")]
    pub label: Option<String>,
    /// The job runs for a pull request.
    #[arg(long)]
    pub pull_request: bool,
    /// GitHub login of the user triggering the job (needed by grants that name their users).
    #[arg(long)]
    pub user: Option<String>,
    /// Numeric GitHub account id of --user (binds a terms acceptance to the account).
    #[arg(long, requires = "user")]
    pub github_id: Option<u64>,
    /// Print the explanation as JSON (GET /v1/access/explain).
    #[arg(long)]
    pub json: bool,
}

pub(super) fn check(a: CheckArgs) -> CliResult {
    let client = a.server.client()?;
    let resource = match (&a.resource, &a.label) {
        (Some(resource), _) => resource.clone(),
        (None, Some(label)) => resource_of_label(&client, label)?,
        (None, None) => return Err(CliError::new("give a RESOURCE or --label LABEL")),
    };
    let mut query = vec![
        ("project", a.project.clone()),
        ("resource", resource.clone()),
        ("pull_request", a.pull_request.to_string()),
    ];
    if let Some(u) = &a.user {
        query.push(("user", u.clone()));
    }
    if let Some(id) = a.github_id {
        query.push(("github_id", id.to_string()));
    }
    let explanation: Explanation = client.get_json("/v1/access/explain", &query)?;
    if a.json {
        print_json(&explanation);
    } else {
        print!("{}", checklist(&explanation, a.github_id));
        let needs_user = explanation.reason == "user_required";
        let unchecked_id = explanation.allowed && a.user.is_some() && a.github_id.is_none();
        if needs_user || unchecked_id {
            // The explanation names the grant; its user fields and the resource's terms say
            // what the job's user must bring.
            let answer: AccessAnswer = client.get_json("/v1/access/check", &query)?;
            let resources: ResourceList = client.get_json("/v1/resources", &[])?;
            let terms = resources.resources.iter().find(|r| r.resource == resource).and_then(|r| r.terms.clone());
            if let Some(hint) = user_hint(answer.grant.as_ref(), terms.as_deref(), needs_user) {
                println!("{hint}");
            }
        }
    }
    if explanation.allowed {
        Ok(())
    } else {
        Err(CliError::with_code(String::new(), EXIT_DENIED))
    }
}

/// The resource a runs-on label names, by the runner layer's label rule (SPEC.md section 13).
fn resource_of_label(client: &crate::client::Client, label: &str) -> Result<String, CliError> {
    let base = projector::runner::label_base(label).ok_or_else(|| {
        CliError::new(format!(
            "label {label:?} is malformed: labels are at most {} bytes, without whitespace or control characters",
            projector::limits::LABEL_BYTES_MAX
        ))
    })?;
    let resources: ResourceList = client.get_json("/v1/resources", &[])?;
    match resources.resources.iter().find(|r| projector::runner::names_resource(&base, &r.resource)) {
        Some(r) => {
            println!("label {label:?} names resource {:?}", r.resource);
            Ok(r.resource.clone())
        }
        None => Err(CliError::with_code(
            format!(
                "denied: label {label:?} (read as {base:?}) names no resource, so no job with it is gated: no_resource"
            ),
            EXIT_DENIED,
        )),
    }
}

/// The explanation as lines: a heading, one ✓/✗ line per step, then the verdict.
fn checklist(e: &Explanation, github_id: Option<u64>) -> String {
    let mut out = format!("{} on {}", e.project, e.resource);
    if let Some(user) = &e.user {
        out.push_str(&format!(" for {user}"));
        if let Some(id) = github_id {
            out.push_str(&format!(" (GitHub id {id})"));
        }
    }
    out.push_str(":\n");
    let width = e.steps.iter().map(|s| s.step.chars().count()).max().unwrap_or(0);
    for s in &e.steps {
        let mark = if s.ok { '✓' } else { '✗' };
        let seq = s.seq.map(|n| format!("  (seq {n})")).unwrap_or_default();
        out.push_str(&format!("  {mark} {:<width$}  {}{seq}\n", s.step, s.detail));
    }
    if e.allowed {
        let grant = e.grant.as_ref().map(|g| format!(" (grant {g})")).unwrap_or_default();
        out.push_str(&format!("allowed: {} may use {}{grant}\n", e.project, e.resource));
    } else {
        out.push_str(&format!("denied: {} may not use {}: {}\n", e.project, e.resource, e.reason));
    }
    out
}

#[derive(Deserialize)]
struct ResourceList {
    resources: Vec<ResourceView>,
}

/// What the job's user must bring for `grant`: the flags to pass when the check failed closed
/// (`user_required`), or a note that --github-id was not checked when a terms acceptance
/// admitted the login alone.
fn user_hint(grant: Option<&GrantView>, terms: Option<&str>, needs_user: bool) -> Option<String> {
    let grant = grant?;
    let terms = match terms {
        Some(t) => format!("terms {t:?}"),
        None => "the provider's terms".to_string(),
    };
    if needs_user {
        if grant.users.is_some() {
            return Some("this grant lists users: pass --user LOGIN".to_string());
        }
        if grant.users_from_json.is_some() {
            return Some(format!("this grant takes users who accepted {terms}: pass --user LOGIN --github-id ID"));
        }
        return None;
    }
    grant.users_from_json.as_ref().map(|_| {
        format!("note: the acceptance of {terms} was matched by login only: pass --github-id ID to check the account")
    })
}

/// A sponsor's pools and how their credits are used.
#[derive(Args, Debug)]
#[command(after_help = "Example:\n  grantline usage numfocus --from 2026-01-01 --to 2026-04-01")]
pub(crate) struct UsageArgs {
    #[command(flatten)]
    pub server: ServerOpt,
    /// The sponsor id, e.g. numfocus.
    pub sponsor: String,
    /// Start of the daily series (RFC 3339 or YYYY-MM-DD).
    #[arg(long)]
    pub from: Option<String>,
    /// End of the daily series (exclusive).
    #[arg(long)]
    pub to: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub(super) fn usage(a: UsageArgs) -> CliResult {
    let client = a.server.client()?;
    let mut query = Vec::new();
    if let Some(f) = a.from {
        query.push(("from", f));
    }
    if let Some(t) = a.to {
        query.push(("to", t));
    }
    let path = format!("/v1/sponsors/{}/usage", encode_path_segment(&a.sponsor));
    let usage: SponsorUsage = client.get_json(&path, &query)?;
    if a.json {
        print_json(&usage);
        return Ok(());
    }
    println!("sponsor {} ({})", usage.sponsor, usage.name);
    let mut pools = Table::new(&["POOL", "UNIT", "DEPOSITED", "ALLOCATED", "USED", "REMAINING", "RESOURCES"]);
    for p in &usage.pools {
        pools.row(vec![
            p.pool.clone(),
            p.unit.clone(),
            p.deposited.to_string(),
            p.allocated.to_string(),
            p.used.to_string(),
            p.remaining.to_string(),
            p.resources.join(","),
        ]);
    }
    print!("\n{}", if pools.is_empty() { "no pools\n".to_string() } else { pools.render() });
    let mut projects = Table::new(&["PROJECT", "POOL", "RESOURCE", "USED"]);
    for p in &usage.projects {
        projects.row(vec![p.project.clone(), p.pool.clone(), p.resource.clone(), p.used.to_string()]);
    }
    if !projects.is_empty() {
        print!("\n{}", projects.render());
    }
    let mut series = Table::new(&["DAY", "POOL", "USED"]);
    for d in &usage.series {
        series.row(vec![d.day.clone(), d.pool.clone(), d.amount.to_string()]);
    }
    if !series.is_empty() {
        print!("\n{}", series.render());
    }
    Ok(())
}

/// Requests with their approvals so far.
#[derive(Args, Debug)]
#[command(after_help = "Example:\n  grantline requests --status pending")]
pub(crate) struct RequestsArgs {
    #[command(flatten)]
    pub server: ServerOpt,
    /// pending, granted, denied or withdrawn.
    #[arg(long)]
    pub status: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Deserialize, serde::Serialize)]
struct RequestList {
    requests: Vec<RequestView>,
}

pub(super) fn requests(a: RequestsArgs) -> CliResult {
    let client = a.server.client()?;
    let query: Vec<(&str, String)> = a.status.map(|s| vec![("status", s)]).unwrap_or_default();
    let list: RequestList = client.get_json("/v1/requests", &query)?;
    if a.json {
        print_json(&list);
        return Ok(());
    }
    let mut t = Table::new(&["REQUEST", "PROJECT", "RESOURCE", "STATUS", "APPROVALS", "REQUESTER", "GRANT"]);
    for r in &list.requests {
        t.row(vec![
            r.request.clone(),
            r.project.clone(),
            r.resource.clone(),
            r.status.clone(),
            format!("{}/{}", r.approvals.len(), r.approvals_required),
            r.requester.clone(),
            opt(&r.grant),
        ]);
    }
    if t.is_empty() {
        println!("no requests");
    } else {
        print!("{}", t.render());
    }
    Ok(())
}
