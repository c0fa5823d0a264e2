//! Writing events: the generic `submit` and one friendly command per common event. Each
//! builds the statement, signs the DSSE envelope as the key's actor, posts it and prints the
//! receipt or the server's problem in plain words.

use std::path::PathBuf;

use clap::Args;
use ledger::keys::VerifierKey;
use projector::RequestView;
use serde_json::{json, Map, Value};

use super::error::{CliError, CliResult};
use super::signer::{read_input_file, Signer, SignerOpts};
use crate::client::{encode_path_segment, random_id};

/// Inserts `value` under `name` when present (optional fields are omitted, not null).
fn put<T: Into<Value>>(data: &mut Map<String, Value>, name: &str, value: Option<T>) {
    if let Some(v) = value {
        data.insert(name.to_string(), v.into());
    }
}

/// Submit any event type with JSON data (the generic form of every write command).
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  grantline submit --key admin.key actor.roles_set --data '{\"actor\":\"alice\",\"roles\":[\"reviewer\"]}'\n  grantline submit --key bot.key user.terms_accepted --data @accept.json --id terms-alice-1\n\nThe actor is the key's name; the ledger origin comes from the server; issued_at is now."
)]
pub(crate) struct SubmitArgs {
    #[command(flatten)]
    pub signer: SignerOpts,
    /// Event type, e.g. access.requested (see SPEC.md section 4).
    #[arg(value_name = "TYPE")]
    pub kind: String,
    /// The statement's `data`: inline JSON, or @FILE to read it from a file.
    #[arg(long, value_name = "JSON|@FILE")]
    pub data: String,
    /// Statement id (idempotency key); default: a random unique id.
    #[arg(long)]
    pub id: Option<String>,
}

pub(super) fn submit(a: SubmitArgs) -> CliResult {
    let text = match a.data.strip_prefix('@') {
        Some(path) => read_input_file(std::path::Path::new(path))?,
        None => a.data.clone(),
    };
    let data: Value =
        serde_json::from_str(&text).map_err(|e| CliError::new(format!("--data is not valid JSON: {e}")))?;
    if !data.is_object() {
        return Err(CliError::new(format!(
            "--data is JSON but not an object: the event's data is an object of its fields, e.g. \
             '{{\"request\":\"gpu-pytorch\"}}' (got {}; see SPEC.md section 4 for each type's fields)",
            json_kind(&data)
        )));
    }
    let s = Signer::open(&a.signer)?;
    let sub = s.post(&a.kind, a.id, data)?;
    s.report(&sub, &format!("{} accepted", a.kind));
    Ok(())
}

/// What a JSON value is, in words: "an array", "a string", ...
fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Request access to a resource for a project (access.requested).
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  grantline request pytorch-cpu-feedstock cirun-openstack-gpu-large --request gpu-pytorch \\\n      --justification 'CUDA builds time out on the free runners' --days 90 --credits 5000\n  grantline request --from-admin-request admin-requests/pytorch-gpu.yml\n\nThe request then needs the resource's quorum of approvals; the grant is issued automatically."
)]
pub(crate) struct RequestArgs {
    #[command(flatten)]
    pub signer: SignerOpts,
    /// Repository name, e.g. pytorch-cpu-feedstock (not with --from-admin-request).
    #[arg(required_unless_present = "from_admin_request")]
    pub project: Option<String>,
    /// Resource name, e.g. cirun-openstack-gpu-large (not with --from-admin-request).
    #[arg(required_unless_present = "from_admin_request")]
    pub resource: Option<String>,
    /// Why the project needs it.
    #[arg(long, required_unless_present = "from_admin_request")]
    pub justification: Option<String>,
    /// Request id (reviewers approve it by this name); default: a random id.
    #[arg(long)]
    pub request: Option<String>,
    /// Also allow jobs on pull requests.
    #[arg(long)]
    pub pull_request: bool,
    /// GitHub login the request is made for (they may not approve it).
    #[arg(long, value_name = "LOGIN")]
    pub on_behalf_of: Option<String>,
    /// Link to the evidence (e.g. the admin-requests PR).
    #[arg(long, value_name = "URL")]
    pub evidence_url: Option<String>,
    /// Credits asked for.
    #[arg(long)]
    pub credits: Option<u64>,
    /// Days of access asked for.
    #[arg(long)]
    pub days: Option<u64>,
    /// GitHub logins allowed to trigger jobs, comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "LOGIN,...")]
    pub users: Option<Vec<String>>,
    /// URL of a users JSON file instead of --users.
    #[arg(long, value_name = "URL")]
    pub users_from_json: Option<String>,
    /// Build the request(s) from a conda-forge admin-requests YAML file instead.
    #[arg(long, value_name = "FILE.yml", conflicts_with_all = ["project", "resource", "justification", "request"])]
    pub from_admin_request: Option<PathBuf>,
    /// Statement id; default: a random unique id.
    #[arg(long)]
    pub id: Option<String>,
}

pub(super) fn request(a: RequestArgs) -> CliResult {
    let s = Signer::open(&a.signer)?;
    if let Some(path) = &a.from_admin_request {
        return super::interop::post_admin_request(&s, path);
    }
    let (Some(project), Some(resource), Some(justification)) = (a.project, a.resource, a.justification) else {
        return Err(CliError::new("PROJECT, RESOURCE and --justification are required"));
    };
    let request = a.request.unwrap_or_else(|| random_id("req"));
    let mut data = Map::new();
    data.insert("request".into(), request.clone().into());
    data.insert("project".into(), project.clone().into());
    data.insert("resource".into(), resource.clone().into());
    data.insert("justification".into(), justification.into());
    data.insert("pull_request".into(), a.pull_request.into());
    put(&mut data, "on_behalf_of", a.on_behalf_of);
    put(&mut data, "evidence_url", a.evidence_url);
    put(&mut data, "credits", a.credits);
    put(&mut data, "days", a.days);
    put(&mut data, "users", a.users);
    put(&mut data, "users_from_json", a.users_from_json);
    let sub = s.post("access.requested", a.id, Value::Object(data))?;
    s.report(&sub, &format!("request {request} opened: {project} on {resource}"));
    Ok(())
}

/// Approve a request (request.approved); distinct reviewers count toward the quorum.
#[derive(Args, Debug)]
#[command(
    after_help = "Example:\n  grantline approve gpu-pytorch --note 'GPU tests are needed' --pool numfocus-2026 --key alice.key"
)]
pub(crate) struct ApproveArgs {
    #[command(flatten)]
    pub signer: SignerOpts,
    /// The request id.
    pub request: String,
    /// Why you approve, shown with your approval on the requests page.
    #[arg(long, value_name = "TEXT")]
    pub note: Option<String>,
    /// Credit pool the grant draws on.
    #[arg(long)]
    pub pool: Option<String>,
    /// Credit limit for the grant (overrides the request's).
    #[arg(long)]
    pub credits: Option<u64>,
    /// Days of access (overrides the request's).
    #[arg(long)]
    pub days: Option<u64>,
    /// Statement id; default: a random unique id.
    #[arg(long)]
    pub id: Option<String>,
}

pub(super) fn approve(a: ApproveArgs) -> CliResult {
    let s = Signer::open(&a.signer)?;
    let mut data = Map::new();
    data.insert("request".into(), a.request.clone().into());
    put(&mut data, "note", a.note);
    put(&mut data, "pool", a.pool);
    put(&mut data, "credits", a.credits);
    put(&mut data, "days", a.days);
    let sub = s.post("request.approved", a.id, Value::Object(data))?;
    s.report(&sub, &format!("request {} approved by {}", a.request, s.key.name()));
    if !s.json {
        // The automation appends `grant.issued` before this approval's receipt is answered,
        // so the request already shows the grant if this approval completed the quorum.
        match quorum_outcome(&s, &a.request, sub.receipt.seq) {
            Ok(Some(line)) => println!("  {line}"),
            Ok(None) => {}
            Err(e) => eprintln!("note: the approval is logged, but the request could not be read back: {}", e.message),
        }
    }
    Ok(())
}

/// What the approval logged as record `seq` did to its request: how many approvals are still
/// needed, or, when it completed the quorum, the grant issued and its record.
fn quorum_outcome(s: &Signer, request: &str, seq: u64) -> Result<Option<String>, CliError> {
    let path = format!("/v1/requests/{}", encode_path_segment(request));
    let view: RequestView = s.client.get_json(&path, &[])?;
    let Some(position) = view.approvals.iter().position(|a| a.seq == seq) else { return Ok(None) };
    let count = position + 1;
    let required = view.approvals_required as usize;
    if count < required {
        let left = required - count;
        let more = if left == 1 { "1 more approval".to_string() } else { format!("{left} more approvals") };
        return Ok(Some(format!("approval {count} of {required}: {more} needed before the grant is issued")));
    }
    if count > required {
        return Ok(None);
    }
    let issued = view.timeline.iter().find(|e| e.kind == "grant.issued");
    Ok(Some(match (&view.grant, issued) {
        (Some(grant), Some(entry)) => format!(
            "quorum reached ({count} of {required}): grant {grant} issued, logged as record {} \
             (see `grantline allocations --project {}`)",
            entry.seq, view.project
        ),
        _ => format!(
            "quorum reached ({count} of {required}), but no grant is issued yet (status {}); \
             see `grantline requests` and the server's log",
            view.status
        ),
    }))
}

/// Deny a request (request.denied); closes it.
#[derive(Args, Debug)]
#[command(
    after_help = "Example:\n  grantline deny gpu-pytorch --reason 'no GPU code in this feedstock' --key alice.key"
)]
pub(crate) struct DenyArgs {
    #[command(flatten)]
    pub signer: SignerOpts,
    /// The request id.
    pub request: String,
    /// Why it is denied (public: it is logged with the request).
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
    /// Statement id (idempotency key); default: a random unique id.
    #[arg(long)]
    pub id: Option<String>,
}

pub(super) fn deny(a: DenyArgs) -> CliResult {
    let s = Signer::open(&a.signer)?;
    let sub = s.post("request.denied", a.id, json!({"request": a.request, "reason": a.reason}))?;
    s.report(&sub, &format!("request {} denied", a.request));
    Ok(())
}

/// Withdraw your own request (request.withdrawn).
#[derive(Args, Debug)]
#[command(after_help = "Example:\n  grantline withdraw gpu-pytorch --key bot.key")]
pub(crate) struct WithdrawArgs {
    #[command(flatten)]
    pub signer: SignerOpts,
    /// The request id (one you filed).
    pub request: String,
    /// Statement id (idempotency key); default: a random unique id.
    #[arg(long)]
    pub id: Option<String>,
}

pub(super) fn withdraw(a: WithdrawArgs) -> CliResult {
    let s = Signer::open(&a.signer)?;
    let sub = s.post("request.withdrawn", a.id, json!({"request": a.request}))?;
    s.report(&sub, &format!("request {} withdrawn", a.request));
    Ok(())
}

/// Revoke a grant now (grant.revoked).
#[derive(Args, Debug)]
#[command(
    after_help = "Example:\n  grantline revoke grant-gpu-pytorch --reason 'project archived' --key admin.key\n\nGrant ids are listed by `grantline allocations`."
)]
pub(crate) struct RevokeArgs {
    #[command(flatten)]
    pub signer: SignerOpts,
    /// The grant id.
    pub grant: String,
    /// Why it is revoked (public, kept in the grant's history).
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
    /// Statement id (idempotency key); default: a random unique id.
    #[arg(long)]
    pub id: Option<String>,
}

pub(super) fn revoke(a: RevokeArgs) -> CliResult {
    let s = Signer::open(&a.signer)?;
    let sub = s.post("grant.revoked", a.id, json!({"grant": a.grant, "reason": a.reason}))?;
    s.report(&sub, &format!("grant {} revoked", a.grant));
    Ok(())
}

/// Register an actor with their verifier key and roles (actor.registered; admin only).
#[derive(Args, Debug)]
#[command(
    after_help = "Example:\n  grantline register-actor alice @alice.key.pub --roles reviewer --key admin.key\n\nRoles: admin, reviewer, requester, meter, sponsor. The verifier key is the line printed by\n`grantline keygen` (or @FILE to read it from the .pub file)."
)]
pub(crate) struct RegisterActorArgs {
    #[command(flatten)]
    pub signer: SignerOpts,
    /// The actor's name (must be the name inside their key).
    pub name: String,
    /// The actor's verifier key, `<name>+<id>+<base64>`, or @FILE.
    #[arg(value_name = "VKEY|@FILE")]
    pub verifier_key: String,
    /// Roles, comma-separated.
    #[arg(long, value_delimiter = ',', required = true, value_name = "ROLE,...")]
    pub roles: Vec<String>,
    /// Statement id (idempotency key); default: a random unique id.
    #[arg(long)]
    pub id: Option<String>,
}

pub(super) fn register_actor(a: RegisterActorArgs) -> CliResult {
    let text = match a.verifier_key.strip_prefix('@') {
        Some(path) => read_input_file(std::path::Path::new(path))?,
        None => a.verifier_key.clone(),
    };
    let vkey = VerifierKey::parse(text.trim()).map_err(|e| CliError::new(format!("invalid verifier key: {e}")))?;
    let s = Signer::open(&a.signer)?;
    let data = json!({"actor": a.name, "key": vkey.to_string(), "roles": a.roles});
    let sub = s.post("actor.registered", a.id, data)?;
    s.report(&sub, &format!("actor {} registered with roles {}", a.name, a.roles.join(", ")));
    Ok(())
}

/// Define a resource that projects can request (resource.defined; admin only).
#[derive(Args, Debug)]
#[command(
    after_help = "Example:\n  grantline define-resource cirun-openstack-gpu-large --provider open-gpu-server \\\n      --unit runner-minutes --approvals-required 2 --max-days 365 --key admin.key"
)]
pub(crate) struct DefineResourceArgs {
    #[command(flatten)]
    pub signer: SignerOpts,
    /// Resource name (the runner label), e.g. cirun-openstack-gpu-large.
    pub resource: String,
    /// Who runs the runners, e.g. open-gpu-server.
    #[arg(long)]
    pub provider: String,
    /// Unit credits are counted in, e.g. runner-minutes.
    #[arg(long)]
    pub unit: String,
    /// Distinct reviewer approvals a request needs.
    #[arg(long)]
    pub approvals_required: u32,
    /// Longest grant, in days.
    #[arg(long)]
    pub max_days: Option<u64>,
    /// Terms version users must accept.
    #[arg(long)]
    pub terms: Option<String>,
    /// What the resource is, shown on the public pages.
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
    /// Statement id (idempotency key); default: a random unique id.
    #[arg(long)]
    pub id: Option<String>,
}

pub(super) fn define_resource(a: DefineResourceArgs) -> CliResult {
    let s = Signer::open(&a.signer)?;
    let mut data = Map::new();
    data.insert("resource".into(), a.resource.clone().into());
    data.insert("provider".into(), a.provider.into());
    data.insert("unit".into(), a.unit.into());
    data.insert("approvals_required".into(), a.approvals_required.into());
    put(&mut data, "description", a.description);
    put(&mut data, "max_days", a.max_days);
    put(&mut data, "terms", a.terms);
    let sub = s.post("resource.defined", a.id, Value::Object(data))?;
    s.report(&sub, &format!("resource {} defined ({} approvals required)", a.resource, a.approvals_required));
    Ok(())
}

/// Register a sponsor (sponsor.registered; admin only).
#[derive(Args, Debug)]
#[command(after_help = "Example:\n  grantline register-sponsor numfocus --name 'NumFOCUS' --key admin.key")]
pub(crate) struct RegisterSponsorArgs {
    #[command(flatten)]
    pub signer: SignerOpts,
    /// Sponsor id.
    pub sponsor: String,
    /// Display name.
    #[arg(long)]
    pub name: String,
    /// Statement id (idempotency key); default: a random unique id.
    #[arg(long)]
    pub id: Option<String>,
}

pub(super) fn register_sponsor(a: RegisterSponsorArgs) -> CliResult {
    let s = Signer::open(&a.signer)?;
    let sub = s.post("sponsor.registered", a.id, json!({"sponsor": a.sponsor, "name": a.name}))?;
    s.report(&sub, &format!("sponsor {} registered", a.sponsor));
    Ok(())
}

/// Deposit credits into a sponsor's pool (credits.deposited).
#[derive(Args, Debug)]
#[command(
    after_help = "Example:\n  grantline deposit --pool numfocus-2026 --sponsor numfocus --amount 100000 \\\n      --unit runner-minutes --resources cirun-openstack-gpu-large --key admin.key"
)]
pub(crate) struct DepositArgs {
    #[command(flatten)]
    pub signer: SignerOpts,
    /// Pool id the credits go into (created by its first deposit), e.g. numfocus-2026.
    #[arg(long)]
    pub pool: String,
    /// The sponsor paying (registered with `grantline register-sponsor`).
    #[arg(long)]
    pub sponsor: String,
    /// Credits deposited, in --unit.
    #[arg(long)]
    pub amount: u64,
    /// Unit of the credits, e.g. runner-minutes (the pool keeps one unit).
    #[arg(long)]
    pub unit: String,
    /// Resources the pool pays for, comma-separated; `*` for all.
    #[arg(long, value_delimiter = ',', default_value = "*", value_name = "RESOURCE,...")]
    pub resources: Vec<String>,
    /// When the credits expire (RFC 3339).
    #[arg(long)]
    pub expires_at: Option<String>,
    /// Statement id (idempotency key); default: a random unique id.
    #[arg(long)]
    pub id: Option<String>,
}

pub(super) fn deposit(a: DepositArgs) -> CliResult {
    let s = Signer::open(&a.signer)?;
    let mut data = Map::new();
    data.insert("pool".into(), a.pool.clone().into());
    data.insert("sponsor".into(), a.sponsor.clone().into());
    data.insert("amount".into(), a.amount.into());
    data.insert("unit".into(), a.unit.clone().into());
    data.insert("resources".into(), a.resources.into());
    put(&mut data, "expires_at", a.expires_at);
    let sub = s.post("credits.deposited", a.id, Value::Object(data))?;
    s.report(&sub, &format!("{} {} deposited into pool {} by {}", a.amount, a.unit, a.pool, a.sponsor));
    Ok(())
}

/// Report a finished job's usage (usage.reported; meter role).
#[derive(Args, Debug)]
#[command(
    after_help = "Example:\n  grantline report-usage --usage job-8812 --project pytorch-cpu-feedstock \\\n      --resource cirun-openstack-gpu-large --amount 42 \\\n      --started-at 2026-03-01T10:00:00Z --ended-at 2026-03-01T10:42:00Z --key meter.key\n\nThe usage id is the job id: reporting it again is counted once."
)]
pub(crate) struct ReportUsageArgs {
    #[command(flatten)]
    pub signer: SignerOpts,
    /// Job id (idempotent).
    #[arg(long)]
    pub usage: String,
    /// Repository the job ran for, e.g. pytorch-cpu-feedstock.
    #[arg(long)]
    pub project: String,
    /// Resource (runner label) it ran on.
    #[arg(long)]
    pub resource: String,
    /// Credits used, in the resource's unit.
    #[arg(long)]
    pub amount: u64,
    /// When the job started (RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub started_at: String,
    /// When the job ended (RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub ended_at: String,
    /// Link to the CI run.
    #[arg(long, value_name = "URL")]
    pub run_url: Option<String>,
    /// Statement id (idempotency key); default: a random unique id.
    #[arg(long)]
    pub id: Option<String>,
}

pub(super) fn report_usage(a: ReportUsageArgs) -> CliResult {
    let s = Signer::open(&a.signer)?;
    let mut data = Map::new();
    data.insert("usage".into(), a.usage.clone().into());
    data.insert("project".into(), a.project.clone().into());
    data.insert("resource".into(), a.resource.clone().into());
    data.insert("amount".into(), a.amount.into());
    data.insert("started_at".into(), a.started_at.into());
    data.insert("ended_at".into(), a.ended_at.into());
    put(&mut data, "run_url", a.run_url);
    let sub = s.post("usage.reported", a.id, Value::Object(data))?;
    s.report(&sub, &format!("usage {}: {} on {} by {}", a.usage, a.amount, a.resource, a.project));
    Ok(())
}
