//! The projected state. Every collection is a persistent `im` map whose values are behind
//! `Arc`, so cloning a [`State`] is O(1), and `apply` after a snapshot copies only the map
//! paths and the one object it touches (`Arc::make_mut`). The short lists inside one object
//! (a request's approvals and timeline, a grant's history, an actor's keys) are plain `Vec`s:
//! `im::Vector` spills small vectors into 64-slot chunks, which cost ~5 KiB per request.
//!
//! Size: the state grows with live objects (actors, keys, resources, pools, requests, grants,
//! terms acceptances, vouches, unauthorized jobs), not with usage records. A usage report adds
//! its amount to counters (the grant, the pool, the pool's per-project total, the pool's day)
//! and a 64-bit FNV-1a hash of its `usage` id to the set of the grant it debited, so a
//! repeated report is recognised. The set outlives the grant by
//! [`USAGE_LATE_DAYS_MAX`](crate::limits::USAGE_LATE_DAYS_MAX) days: a job that started while
//! the grant was active is billed to it even when it completes after the grant ended (a
//! webhook comes at completion), so a repeat must still be recognised then. After that the
//! set is dropped (by the first record logged from then on) and the grant takes no more
//! reports (`no_active_grant`). (Two different ids with the same 64-bit hash on one grant
//! would make the second look like a repeat; with n reports the odds are about n²/2⁶⁵.)
//! `usage.unauthorized` records are kept whole: they are public facts the pages list.

use std::sync::Arc;

use im::{OrdMap, OrdSet, Vector};
use ledger::keys::VerifierKey;
use ledger::statement::Statement;
use serde::{Deserialize, Serialize};

use crate::data::{self, EventData};
use crate::{GrantStatus, UnauthorizedJob};

/// The name of the actor holding the automation key (SPEC.md section 2).
pub const AUTOMATION_ACTOR: &str = "automation";

/// One timeline entry as stored (times as milliseconds; formatted by the views).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Entry {
    pub seq: u64,
    pub at_ms: i64,
    pub kind: String,
    pub actor: String,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Genesis {
    pub origin: String,
    pub log_key: VerifierKey,
    pub automation_key: VerifierKey,
    pub seq: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Actor {
    pub actor: String,
    /// Sorted; empty for `automation`, whose rights are fixed.
    pub roles: Vec<String>,
    /// Key ids, in the order added.
    pub keys: Vec<String>,
    pub registered_seq: u64,
}

impl Actor {
    pub(crate) fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct KeyEntry {
    pub key: VerifierKey,
    pub actor: String,
    pub added_seq: u64,
    pub revoked_seq: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Resource {
    pub resource: String,
    pub provider: String,
    pub unit: String,
    pub approvals_required: u32,
    pub description: Option<String>,
    pub max_days: Option<u64>,
    pub terms: Option<String>,
    pub retired_seq: Option<u64>,
    pub defined_seq: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Sponsor {
    pub sponsor: String,
    pub name: String,
    pub registered_seq: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Pool {
    pub pool: String,
    pub sponsor: String,
    pub unit: String,
    /// `["*"]` or resource names; the latest deposit's list.
    pub resources: Vec<String>,
    pub deposited: u64,
    /// Per grant on the pool: active → max(credit_limit, used); ended → used; migrated → 0
    /// (its successor carries the used credits). See [`Grant::pool_share`].
    pub allocated: u64,
    pub used: u64,
    pub expires_at_ms: Option<i64>,
    pub created_seq: u64,
    /// project → resource → used.
    pub per_project: OrdMap<String, OrdMap<String, u64>>,
    /// UTC day number (Unix ms / 86,400,000) of the job's end → used.
    pub daily: OrdMap<i64, u64>,
}

impl Pool {
    pub(crate) fn covers(&self, resource: &str) -> bool {
        self.resources.iter().any(|r| r == "*" || r == resource)
    }

    pub(crate) fn unallocated(&self, now_ms: i64) -> u64 {
        if self.expires_at_ms.is_some_and(|t| t <= now_ms) {
            return 0;
        }
        self.deposited.saturating_sub(self.allocated)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RequestStatus {
    Pending,
    Granted,
    Denied,
    Withdrawn,
}

impl RequestStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Pending => "pending",
            RequestStatus::Granted => "granted",
            RequestStatus::Denied => "denied",
            RequestStatus::Withdrawn => "withdrawn",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Approval {
    pub reviewer: String,
    pub seq: u64,
    pub at_ms: i64,
    pub note: Option<String>,
    pub pool: Option<String>,
    pub credits: Option<u64>,
    pub days: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Request {
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
    pub status: RequestStatus,
    pub approvals: Vec<Approval>,
    pub grant: Option<String>,
    pub opened_seq: u64,
    pub closed_seq: Option<u64>,
    pub timeline: Vec<Entry>,
}

impl Request {
    /// Pool, credits and days of the grant the quorum issues: the request's, each overridden
    /// by the latest approval that sets it.
    pub(crate) fn effective_terms(&self) -> (Option<String>, Option<u64>, Option<u64>) {
        let pool = self.approvals.iter().rev().find_map(|a| a.pool.clone());
        let credits = self.approvals.iter().rev().find_map(|a| a.credits).or(self.credits);
        let days = self.approvals.iter().rev().find_map(|a| a.days).or(self.days);
        (pool, credits, days)
    }

    pub(crate) fn approved_by(&self, reviewer: &str) -> bool {
        self.approvals.iter().any(|a| a.reviewer == reviewer)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Grant {
    pub grant: String,
    pub project: String,
    pub resource: String,
    pub pull_request: bool,
    pub request: Option<String>,
    pub pool: Option<String>,
    pub credit_limit: Option<u64>,
    pub used: u64,
    pub expires_at_ms: Option<i64>,
    pub users: Option<Vec<String>>,
    pub users_from_json: Option<String>,
    pub roles: Vec<String>,
    /// The runner-configuration policy id it was imported from, kept for exports.
    pub policy: Option<String>,
    pub status: GrantStatus,
    pub issued_seq: u64,
    /// When it began admitting jobs: the `received_at_ms` of its `grant.issued` record, or of
    /// the `grants.migrated` record that continued it on this resource. A job that started
    /// earlier did not run under it.
    pub active_from_ms: i64,
    pub ended_seq: Option<u64>,
    /// The `received_at_ms` of the record that ended it, if one did.
    pub ended_at_ms: Option<i64>,
    /// When its usage first reached `credit_limit` (the record's clock), if it did: it admits
    /// no job that starts from then on, even before `grant.exhausted` is appended.
    pub exhausted_at_ms: Option<i64>,
    pub history: Vec<Entry>,
    /// FNV-1a hashes of the `usage` ids debited; kept for late reports until
    /// [`crate::limits::USAGE_LATE_DAYS_MAX`] days after the grant ended.
    pub usage_ids: OrdSet<u64>,
    /// The late-report window closed: `usage_ids` were dropped, no report is billed to it.
    pub usage_closed: bool,
    pub usage_reports: u64,
    pub last_usage_seq: Option<u64>,
    pub last_usage_at_ms: Option<i64>,
    /// The latest `ended_at` among the usage billed to it (a migrated grant's successor keeps
    /// its predecessor's): when it was last used.
    pub last_used_ms: Option<i64>,
}

impl Grant {
    /// The status at `now_ms`: an active grant past `expires_at` or out of credits counts as
    /// ended even before `grant.expired` / `grant.exhausted` is appended.
    pub(crate) fn status_at(&self, now_ms: i64) -> GrantStatus {
        if self.status != GrantStatus::Active {
            return self.status.clone();
        }
        if self.expires_at_ms.is_some_and(|t| t <= now_ms) {
            return GrantStatus::Expired;
        }
        if self.is_exhausted() {
            return GrantStatus::Exhausted;
        }
        GrantStatus::Active
    }

    pub(crate) fn is_exhausted(&self) -> bool {
        self.credit_limit.is_some_and(|limit| self.used >= limit)
    }

    pub(crate) fn is_active_at(&self, now_ms: i64) -> bool {
        self.status_at(now_ms) == GrantStatus::Active
    }

    /// When it stopped admitting jobs, if it did: the earliest of its expiry, the record that
    /// ended it and the usage that used up its credits.
    pub(crate) fn admitted_until_ms(&self) -> Option<i64> {
        [self.expires_at_ms, self.ended_at_ms, self.exhausted_at_ms].into_iter().flatten().min()
    }

    /// Whether a job that started at `started_at_ms` ran under this grant: it started while
    /// the grant was active, not before it began and not once it had ended. A grant that has
    /// ended since still covers the jobs that started before its end.
    pub(crate) fn covers_start(&self, started_at_ms: i64) -> bool {
        started_at_ms >= self.active_from_ms && !matches!(self.admitted_until_ms(), Some(end) if started_at_ms >= end)
    }

    /// When it was last used, or issued if never used: a migrated grant's successor carries
    /// the original `grant.issued` entry first in its history, so a migration is not a use.
    pub(crate) fn idle_since_ms(&self) -> i64 {
        self.last_used_ms.unwrap_or_else(|| self.history.first().map_or(self.active_from_ms, |e| e.at_ms))
    }

    /// What the grant holds of its pool's deposit.
    pub(crate) fn pool_share(&self) -> u64 {
        match self.status {
            GrantStatus::Active => self.credit_limit.unwrap_or(0).max(self.used),
            GrantStatus::Migrated => 0,
            _ => self.used,
        }
    }
}

/// One `job.vouched`: a user who asked the bot for a commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Vouch {
    pub user: String,
    pub github_id: u64,
    pub seq: u64,
}

/// The key of a commit's vouches: `<project>@<head_sha>` (project names hold no `@`). A
/// string, so the map serialises as a JSON object.
pub(crate) fn vouch_key(project: &str, head_sha: &str) -> String {
    format!("{project}@{head_sha}")
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct ProjectIndex {
    /// Grant ids, oldest first.
    pub grants: Vector<String>,
    /// Request ids, oldest first.
    pub requests: Vector<String>,
    /// Grants whose stored status is active, so usage and access checks do not walk the
    /// project's whole grant history.
    pub active: OrdSet<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct UserTerms {
    pub user: String,
    pub github_id: u64,
    /// Terms version → seq of the acceptance, for the versions currently accepted.
    pub accepted: OrdMap<String, u64>,
    pub last_seq: u64,
}

/// The whole projected state. Cheap to clone; serialisable, so it can be snapshotted.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    pub(crate) size: u64,
    pub(crate) genesis: Option<Genesis>,
    pub(crate) actors: OrdMap<String, Arc<Actor>>,
    /// keyid → key (active and revoked).
    pub(crate) keys: OrdMap<String, KeyEntry>,
    pub(crate) resources: OrdMap<String, Arc<Resource>>,
    pub(crate) sponsors: OrdMap<String, Sponsor>,
    pub(crate) pools: OrdMap<String, Arc<Pool>>,
    pub(crate) requests: OrdMap<String, Arc<Request>>,
    pub(crate) grants: OrdMap<String, Arc<Grant>>,
    pub(crate) projects: OrdMap<String, ProjectIndex>,
    /// Lowercased GitHub login (logins are case-insensitive) → terms acceptances.
    pub(crate) users: OrdMap<String, Arc<UserTerms>>,
    /// Pending requests that reached their quorum and wait for `grant.issued`.
    pub(crate) awaiting_grant: OrdSet<String>,
    /// Grants whose stored status is active.
    pub(crate) active_grants: OrdSet<String>,
    /// (expires_at_ms, grant) of active grants with an expiry.
    pub(crate) expiry_index: OrdSet<(i64, String)>,
    /// (when its late-report window closes, grant) of ended grants still taking reports.
    pub(crate) usage_close_index: OrdSet<(i64, String)>,
    /// Active grants whose usage reached their credit limit.
    pub(crate) exhausted_pending: OrdSet<String>,
    /// `usage.unauthorized` records by seq (the view lists them newest first).
    pub(crate) unauthorized: OrdMap<u64, Arc<UnauthorizedJob>>,
    /// `usage` id → seq of its `usage.unauthorized` record.
    pub(crate) unauthorized_usage: OrdMap<String, u64>,
    /// [`vouch_key`] → the users vouched for that commit, oldest first.
    pub(crate) vouches: OrdMap<String, Arc<Vec<Vouch>>>,
}

impl State {
    /// The state before the genesis: an empty log.
    pub fn new() -> State {
        State::default()
    }

    /// Number of records applied (the next seq).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The log origin, from the genesis record's `ledger` field.
    pub fn origin(&self) -> Option<&str> {
        self.genesis.as_ref().map(|g| g.origin.as_str())
    }

    /// The log key named in genesis (checkpoints are signed by it).
    pub fn log_key(&self) -> Option<&VerifierKey> {
        self.genesis.as_ref().map(|g| &g.log_key)
    }

    /// The automation key named in genesis.
    pub fn automation_key(&self) -> Option<&VerifierKey> {
        self.genesis.as_ref().map(|g| &g.automation_key)
    }

    /// The key that may have made a signature with this keyid on this statement: an active
    /// (registered, not revoked) key of some actor (the automation key included), or, while
    /// the state is empty and the statement is the genesis, one of the admin keys the
    /// genesis itself names.
    pub fn signing_key(&self, keyid: &str, statement: &Statement) -> Option<VerifierKey> {
        if self.size == 0 && self.genesis.is_none() && statement.kind == "ledger.genesis" {
            if let Ok(EventData::Genesis { admins, .. }) = data::parse(&statement.kind, &statement.data) {
                return admins.into_iter().find(|k| k.keyid() == keyid);
            }
            return None;
        }
        self.keys.get(keyid).filter(|k| k.revoked_seq.is_none()).map(|k| k.key.clone())
    }

    /// Active grants for (project, resource) at `now_ms`, oldest first.
    pub(crate) fn grants_for(&self, project: &str, resource: &str) -> impl Iterator<Item = &Grant> + '_ {
        let resource = resource.to_string();
        self.projects
            .get(project)
            .into_iter()
            .flat_map(|p| p.grants.iter())
            .filter_map(move |id| self.grants.get(id).map(Arc::as_ref))
            .filter(move |g| g.resource == resource)
    }

    /// Grants for (project, resource) whose stored status is active, oldest first.
    pub(crate) fn active_grants_for(&self, project: &str, resource: &str) -> Vec<&Grant> {
        let mut out: Vec<&Grant> = self
            .projects
            .get(project)
            .into_iter()
            .flat_map(|p| p.active.iter())
            .filter_map(|id| self.grants.get(id).map(Arc::as_ref))
            .filter(|g| g.resource == resource)
            .collect();
        out.sort_by_key(|g| g.issued_seq);
        out
    }

    /// The grant a job of (project, resource) that started at `started_at_ms` is billed to,
    /// when the usage is logged at `now_ms`: the oldest grant active now, if the job ran under
    /// it (the rule before late reports existed, so old logs replay to the same debits);
    /// otherwise the oldest grant, of any status, the job ran under ([`Grant::covers_start`])
    /// and that still takes reports (its late-report window is open).
    pub(crate) fn billable_grant(
        &self,
        project: &str,
        resource: &str,
        started_at_ms: i64,
        now_ms: i64,
    ) -> Option<&Grant> {
        let active_now = self.active_grants_for(project, resource).into_iter().find(|g| g.is_active_at(now_ms));
        if let Some(g) = active_now.filter(|g| g.covers_start(started_at_ms)) {
            return Some(g);
        }
        self.grants_for(project, resource).find(|g| !g.usage_closed && g.covers_start(started_at_ms))
    }

    pub(crate) fn requests_for(&self, project: &str, resource: &str) -> impl Iterator<Item = &Request> + '_ {
        let resource = resource.to_string();
        self.projects
            .get(project)
            .into_iter()
            .flat_map(|p| p.requests.iter())
            .filter_map(move |id| self.requests.get(id).map(Arc::as_ref))
            .filter(move |r| r.resource == resource)
    }

    pub(crate) fn admin_count(&self) -> usize {
        self.actors.values().filter(|a| a.has_role("admin")).count()
    }
}

/// A mutable reference to a shared map value, copying only that value if a snapshot holds it.
pub(crate) fn mut_in<'a, T: Clone>(map: &'a mut OrdMap<String, Arc<T>>, key: &str) -> Option<&'a mut T> {
    map.get_mut(key).map(Arc::make_mut)
}
