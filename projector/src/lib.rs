//! The grantline projector: the access-control state machine (DESIGN.md section 4).
//!
//! It is pure. It folds records in seq order ([`apply`]), decides whether a new statement is
//! allowed ([`check`]), and says which automatic statements must follow ([`automation`]). It
//! knows nothing of sled or HTTP and gives the same [`State`] for the same log every time.
//! [`State`] is built from persistent maps, so cloning it is O(1): the server publishes a
//! snapshot after every batch without copying.

//!
//! Module map: [`data`] decodes each event type's `data`; [`codes`] lists the rejection codes;
//! `state` holds [`State`]; `check`, `apply` and `automation` are the state machine; `views`
//! the projections (methods on [`State`]); [`interop`] the conda-forge files.

use ledger::statement::Statement;
use serde::{Deserialize, Serialize};

mod apply;
mod automation;
mod check;
pub mod codes;
pub mod data;
pub mod interop;
mod state;
mod views;

pub use apply::apply;
pub use automation::{automation, grant_id_for_request, AUTOMATION_STATEMENTS_MAX};
pub use check::{check, ISSUED_AT_FUTURE_MS_MAX};
pub use state::{State, AUTOMATION_ACTOR};

/// One logged event as the projector sees it.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    pub seq: u64,
    pub received_at_ms: i64,
    pub statement: &'a Statement,
    /// The keyids (`<name>+<hex id>`) of the envelope's signatures, all already verified.
    pub signers: &'a [String],
}

/// How a rejection maps to the HTTP status classes of DESIGN.md section 8.
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
    pub code: String,
    pub message: String,
    pub kind: RejectionKind,
}

/// A question to the access check (`GET /v1/access/check`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AccessQuery {
    pub project: String,
    pub resource: String,
    #[serde(default)]
    pub pull_request: bool,
    pub user: Option<String>,
    pub github_id: Option<u64>,
}

/// One entry of a request's or grant's timeline; `seq` links to the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub seq: u64,
    /// RFC 3339, from the record's `received_at_ms`.
    pub at: String,
    /// The event type, e.g. `request.approved`.
    pub kind: String,
    pub actor: String,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantStatus {
    Active,
    Revoked,
    Expired,
    Exhausted,
    Migrated,
    /// The grant's resource was retired.
    Retired,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantView {
    pub grant: String,
    pub project: String,
    pub resource: String,
    pub pull_request: bool,
    /// Status as of the query time: a grant past `expires_at` or out of credits shows as
    /// expired/exhausted even before the automation event is appended.
    pub status: GrantStatus,
    pub request: Option<String>,
    pub pool: Option<String>,
    pub credit_limit: Option<u64>,
    pub used: u64,
    pub expires_at: Option<String>,
    pub users: Option<Vec<String>>,
    pub users_from_json: Option<String>,
    pub roles: Vec<String>,
    pub issued_seq: u64,
    pub ended_seq: Option<u64>,
    pub history: Vec<TimelineEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceAllocations {
    pub resource: String,
    pub grants: Vec<GrantView>,
}

/// Active grants grouped by resource: the public list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocations {
    pub resources: Vec<ResourceAllocations>,
}

/// `{allowed, reason, grant?}`; `reason` is `ok` when allowed, else the first missing step
/// (`no_request`, `awaiting_approvals (1 of 2)`, `grant_revoked`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessAnswer {
    pub allowed: bool,
    pub reason: String,
    pub grant: Option<GrantView>,
}

/// One fact in the chain behind an access answer; `seq` is the record that proves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExplainStep {
    pub step: String,
    pub ok: bool,
    pub detail: String,
    pub seq: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explanation {
    pub project: String,
    pub resource: String,
    pub user: Option<String>,
    pub allowed: bool,
    pub reason: String,
    /// The grant the answer is about (the one that admits, or the one that ended), if any.
    #[serde(default)]
    pub grant: Option<String>,
    pub steps: Vec<ExplainStep>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalView {
    pub reviewer: String,
    pub seq: u64,
    pub at: String,
    pub note: Option<String>,
    pub pool: Option<String>,
    pub credits: Option<u64>,
    pub days: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestView {
    pub request: String,
    pub project: String,
    pub resource: String,
    pub requester: String,
    pub on_behalf_of: Option<String>,
    pub justification: String,
    pub pull_request: bool,
    pub evidence_url: Option<String>,
    pub credits: Option<u64>,
    pub days: Option<u64>,
    pub users: Option<Vec<String>>,
    pub users_from_json: Option<String>,
    /// `pending`, `granted`, `denied` or `withdrawn`.
    pub status: String,
    pub approvals: Vec<ApprovalView>,
    pub approvals_required: u32,
    pub grant: Option<String>,
    pub opened_seq: u64,
    pub timeline: Vec<TimelineEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceView {
    pub resource: String,
    pub provider: String,
    pub unit: String,
    pub approvals_required: u32,
    pub description: Option<String>,
    pub max_days: Option<u64>,
    pub terms: Option<String>,
    pub retired: bool,
    pub defined_seq: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyView {
    /// The verifier key string.
    pub key: String,
    pub keyid: String,
    pub added_seq: u64,
    pub revoked_seq: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorView {
    pub actor: String,
    pub roles: Vec<String>,
    pub keys: Vec<KeyView>,
    pub registered_seq: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SponsorView {
    pub sponsor: String,
    pub name: String,
    pub registered_seq: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolUsage {
    pub pool: String,
    pub unit: String,
    pub resources: Vec<String>,
    pub deposited: u64,
    /// Sum of the credit limits of grants drawing on the pool.
    pub allocated: u64,
    pub used: u64,
    /// deposited - used.
    pub remaining: u64,
    pub expires_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectUsage {
    pub project: String,
    pub pool: String,
    pub resource: String,
    pub used: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DailyUsage {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    pub pool: String,
    pub amount: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SponsorUsage {
    pub sponsor: String,
    pub name: String,
    pub pools: Vec<PoolUsage>,
    pub projects: Vec<ProjectUsage>,
    pub series: Vec<DailyUsage>,
}

/// `users.json`: the shape of the file `users_from_json` points at today.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserEntry {
    pub github: String,
    pub id: u64,
}

/// Counts for summaries (`grantline verify`, the public page).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub events: u64,
    pub actors: u64,
    pub grants: u64,
    pub active_grants: u64,
    pub requests: u64,
    pub pending_requests: u64,
}
