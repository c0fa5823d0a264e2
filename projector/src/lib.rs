//! The grantline projector: the access-control state machine (SPEC.md section 4).
//!
//! It is pure. It folds records in seq order ([`apply`]), decides whether a new statement is
//! allowed ([`check`]), and says which automatic statements must follow ([`automation`]). It
//! knows nothing of sled or HTTP and gives the same [`State`] for the same log every time.
//! [`State`] is built from persistent maps, so cloning it is O(1): the server publishes a
//! snapshot after every batch without copying.

//!
//! Module map: [`data`] decodes each event type's `data`; [`codes`] lists the rejection codes;
//! `state` holds [`State`]; `check`, `apply` and `automation` are the state machine; `views`
//! the projections (methods on [`State`]); [`interop`] the conda-forge files; [`runner`] the
//! GitHub runner layer (SPEC.md section 13: the label rule, the job gate, webhook metering).

#![warn(missing_docs)]
#![warn(unreachable_pub)]

use ledger::statement::Statement;
use serde::{Deserialize, Serialize};

mod apply;
mod automation;
mod check;
pub mod codes;
pub mod data;
pub mod interop;
pub mod limits;
pub mod runner;
mod state;
mod suggest;
mod views;

pub use apply::apply;
pub use automation::{automation, grant_id_for_request};
pub use check::check;
pub use limits::{AUTOMATION_STATEMENTS_MAX, ISSUED_AT_FUTURE_MS_MAX};
pub use state::{State, AUTOMATION_ACTOR};

/// One logged event as the projector sees it.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    /// The record's seq: what views and timelines link to.
    pub seq: u64,
    /// The server clock when it was logged (Unix milliseconds): the projector's "now" for it.
    pub received_at_ms: i64,
    /// The statement inside the envelope, already parsed and valid.
    pub statement: &'a Statement,
    /// The keyids (`<name>+<hex id>`) of the envelope's signatures, all already verified.
    pub signers: &'a [String],
}

/// How a rejection maps to the HTTP status classes of SPEC.md section 8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectionKind {
    /// 400: the statement or its data is malformed (or made for another ledger).
    Malformed,
    /// 401: no valid signature by an active key of the actor.
    Unauthenticated,
    /// 403: the actor lacks the role for this event type.
    Forbidden,
    /// 422: not valid in the current state.
    Unprocessable,
}

/// Why a statement may not be appended. `code` is stable and machine-readable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Rejection {
    /// One of [`codes`]; stable, for machines.
    pub code: String,
    /// What exactly is wrong, for people.
    pub message: String,
    /// The code's kind: which HTTP status class answers it.
    pub kind: RejectionKind,
}

/// A question to the access check (`GET /v1/access/check`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AccessQuery {
    /// The project (repository) the job runs for; matched exactly.
    pub project: String,
    /// The resource (runner label) the job wants.
    pub resource: String,
    /// Whether the job is for a pull request (the grant must allow those).
    #[serde(default)]
    pub pull_request: bool,
    /// The GitHub login that triggered the job; without it only the grant is checked.
    pub user: Option<String>,
    /// That user's numeric GitHub id, checked against their terms acceptance.
    pub github_id: Option<u64>,
}

/// One entry of a request's or grant's timeline; `seq` links to the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEntry {
    /// The record the entry comes from.
    pub seq: u64,
    /// RFC 3339, from the record's `received_at_ms`.
    pub at: String,
    /// The event type, e.g. `request.approved`.
    pub kind: String,
    /// Who made the statement.
    pub actor: String,
    /// A short summary (the reason of a denial or revocation, `approval 1 of 2`, ...).
    pub detail: Option<String>,
}

/// Where a grant is in its life; every status but `Active` is final.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantStatus {
    /// In force (a view may still show it expired or exhausted as of the query time).
    Active,
    /// Ended early by `grant.revoked`.
    Revoked,
    /// Past `expires_at`.
    Expired,
    /// Its usage reached `credit_limit`.
    Exhausted,
    /// Continued on another resource by `grants.migrated`.
    Migrated,
    /// The grant's resource was retired.
    Retired,
}

/// A grant as the API and pages show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantView {
    /// The grant id.
    pub grant: String,
    /// The project it admits.
    pub project: String,
    /// The resource it admits to.
    pub resource: String,
    /// Whether jobs from pull requests may run.
    pub pull_request: bool,
    /// Status as of the query time: a grant past `expires_at` or out of credits shows as
    /// expired/exhausted even before the automation event is appended.
    pub status: GrantStatus,
    /// The request it answers, if any (admin and imported grants have none).
    pub request: Option<String>,
    /// The pool its usage is paid from.
    pub pool: Option<String>,
    /// Credits it may use.
    pub credit_limit: Option<u64>,
    /// Credits used so far.
    pub used: u64,
    /// When it expires (RFC 3339).
    pub expires_at: Option<String>,
    /// GitHub logins allowed, if limited.
    pub users: Option<Vec<String>>,
    /// A URL of a `users.json` listing them, instead of `users`.
    pub users_from_json: Option<String>,
    /// Repository roles whose members may use it.
    pub roles: Vec<String>,
    /// The runner-configuration policy id a migration import read (Cirun's), kept by exports.
    pub policy: Option<String>,
    /// The `grant.issued` record.
    pub issued_seq: u64,
    /// The record that ended it, if one did.
    pub ended_seq: Option<u64>,
    /// When it was last used (RFC 3339): the latest `ended_at` among the usage billed to it;
    /// none if never used.
    #[serde(default)]
    pub last_used_at: Option<String>,
    /// Since when it is idle (RFC 3339): `last_used_at`, or its issue time if never used (a
    /// migration is not a use). Pages flag grants idle for
    /// [`limits::GRANT_IDLE_DAYS_FLAG`] days.
    #[serde(default)]
    pub idle_since: String,
    /// Issue, migration and end, oldest first.
    pub history: Vec<TimelineEntry>,
}

/// A job that ran on a gated runner without access (`usage.unauthorized`): public.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct UnauthorizedJob {
    /// The `usage.unauthorized` record.
    pub seq: u64,
    /// The usage id (`gh:<repository id>:<job id>:<run attempt>` from webhooks).
    pub usage: String,
    /// The project whose job ran.
    pub project: String,
    /// The resource it ran on.
    pub resource: String,
    /// When the job started (RFC 3339, as recorded).
    pub started_at: String,
    /// When it ended (RFC 3339, as recorded).
    pub ended_at: String,
    /// The access check's denial at the job's start.
    pub reason: String,
    /// A link to the job.
    pub run_url: Option<String>,
}

/// The active grants on one resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceAllocations {
    /// The resource.
    pub resource: String,
    /// Its active grants, by project then grant id.
    pub grants: Vec<GrantView>,
}

/// Active grants grouped by resource: the public list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocations {
    /// By resource name; resources without active grants are left out.
    pub resources: Vec<ResourceAllocations>,
}

/// `{allowed, reason, grant?}`; `reason` is `ok` when allowed, else the first missing step
/// (`no_request`, `awaiting_approvals (1 of 2)`, `grant_revoked`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessAnswer {
    /// Whether the job may run.
    pub allowed: bool,
    /// `ok`, or why not.
    pub reason: String,
    /// The grant that admits, or the one whose end denies, if any.
    pub grant: Option<GrantView>,
}

/// One fact in the chain behind an access answer; `seq` is the record that proves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExplainStep {
    /// What was checked: `project`, `resource`, `request`, `grant` or `user`.
    pub step: String,
    /// Whether it held.
    pub ok: bool,
    /// The fact, for people.
    pub detail: String,
    /// The record that establishes it, if one does.
    pub seq: Option<u64>,
}

/// An access answer with the chain of facts behind it (`GET /v1/access/explain`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explanation {
    /// The project asked about.
    pub project: String,
    /// The resource asked about.
    pub resource: String,
    /// The user asked about, if any.
    pub user: Option<String>,
    /// The answer, as [`AccessAnswer::allowed`].
    pub allowed: bool,
    /// The reason, as [`AccessAnswer::reason`].
    pub reason: String,
    /// The grant the answer is about (the one that admits, or the one that ended), if any.
    #[serde(default)]
    pub grant: Option<String>,
    /// The facts checked, in order; the first that does not hold decides a denial.
    pub steps: Vec<ExplainStep>,
}

/// One approval of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalView {
    /// The reviewer who approved.
    pub reviewer: String,
    /// The `request.approved` record.
    pub seq: u64,
    /// When it was logged (RFC 3339).
    pub at: String,
    /// The reviewer's note.
    pub note: Option<String>,
    /// The pool this approval sets for the grant.
    pub pool: Option<String>,
    /// The credits this approval sets for the grant.
    pub credits: Option<u64>,
    /// The days this approval sets for the grant.
    pub days: Option<u64>,
}

/// A request as the API and pages show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestView {
    /// The request id.
    pub request: String,
    /// The project asking.
    pub project: String,
    /// The resource asked for.
    pub resource: String,
    /// The actor who filed it.
    pub requester: String,
    /// The GitHub login of the person asking, when a bot filed it.
    pub on_behalf_of: Option<String>,
    /// Why, in the requester's words.
    pub justification: String,
    /// Whether jobs from pull requests should run too.
    pub pull_request: bool,
    /// A link supporting the request.
    pub evidence_url: Option<String>,
    /// Credits asked for.
    pub credits: Option<u64>,
    /// Days asked for.
    pub days: Option<u64>,
    /// GitHub logins to allow, if limited.
    pub users: Option<Vec<String>>,
    /// A URL of a `users.json` listing them, instead of `users`.
    pub users_from_json: Option<String>,
    /// `pending`, `granted`, `denied` or `withdrawn`.
    pub status: String,
    /// Approvals so far, oldest first.
    pub approvals: Vec<ApprovalView>,
    /// Approvals the resource requires.
    pub approvals_required: u32,
    /// The grant issued for it, once issued.
    pub grant: Option<String>,
    /// The `access.requested` record.
    pub opened_seq: u64,
    /// Everything that happened to it, oldest first.
    pub timeline: Vec<TimelineEntry>,
}

/// A resource as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceView {
    /// The resource id.
    pub resource: String,
    /// Who provides it.
    pub provider: String,
    /// What its credits count.
    pub unit: String,
    /// Approvals a request needs.
    pub approvals_required: u32,
    /// Free text for people.
    pub description: Option<String>,
    /// The longest a grant on it lasts, if limited.
    pub max_days: Option<u64>,
    /// The terms version users must accept, if any.
    pub terms: Option<String>,
    /// Whether it was retired.
    pub retired: bool,
    /// The `resource.defined` record.
    pub defined_seq: u64,
}

/// One key of an actor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyView {
    /// The verifier key string.
    pub key: String,
    /// The DSSE keyid, `<name>+<hex id>`.
    pub keyid: String,
    /// The record that added it.
    pub added_seq: u64,
    /// The record that revoked it, if one did.
    pub revoked_seq: Option<u64>,
}

/// An actor as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorView {
    /// The actor name.
    pub actor: String,
    /// Its roles (`automation` for the automation actor).
    pub roles: Vec<String>,
    /// Its keys, in the order added, revoked ones included.
    pub keys: Vec<KeyView>,
    /// The record that registered it (the genesis for the first admins).
    pub registered_seq: u64,
}

/// A sponsor as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SponsorView {
    /// The sponsor id.
    pub sponsor: String,
    /// Its display name.
    pub name: String,
    /// The `sponsor.registered` record.
    pub registered_seq: u64,
}

/// One pool of a sponsor, with its figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolUsage {
    /// The pool id.
    pub pool: String,
    /// The unit of its credits.
    pub unit: String,
    /// The resources it pays for (`["*"]`: all in its unit).
    pub resources: Vec<String>,
    /// Credits deposited, all deposits together.
    pub deposited: u64,
    /// Sum of the credit limits of grants drawing on the pool.
    pub allocated: u64,
    /// Credits used by grants drawing on it.
    pub used: u64,
    /// deposited - used.
    pub remaining: u64,
    /// When its unallocated credits lapse (RFC 3339), if they do.
    pub expires_at: Option<String>,
}

/// What one project used of one pool on one resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectUsage {
    /// The project.
    pub project: String,
    /// The pool that paid.
    pub pool: String,
    /// The resource used.
    pub resource: String,
    /// Credits used.
    pub used: u64,
}

/// What one pool paid for on one day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DailyUsage {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    /// The pool that paid.
    pub pool: String,
    /// Credits used by jobs that ended that day.
    pub amount: u64,
}

/// A sponsor's report: where its credits went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SponsorUsage {
    /// The sponsor id.
    pub sponsor: String,
    /// Its display name.
    pub name: String,
    /// Its pools.
    pub pools: Vec<PoolUsage>,
    /// Usage per project, pool and resource.
    pub projects: Vec<ProjectUsage>,
    /// Usage per day and pool, oldest first.
    pub series: Vec<DailyUsage>,
}

/// `users.json`: the shape of the file `users_from_json` points at today.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserEntry {
    /// The GitHub login, as written in the user's latest acceptance.
    pub github: String,
    /// The numeric GitHub id the acceptance is tied to.
    pub id: u64,
}

/// Counts for summaries (`grantline verify`, the public page).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Records in the log.
    pub events: u64,
    /// Registered actors (automation included).
    pub actors: u64,
    /// Grants ever issued.
    pub grants: u64,
    /// Grants active now.
    pub active_grants: u64,
    /// Requests ever filed.
    pub requests: u64,
    /// Requests still pending.
    pub pending_requests: u64,
}
