//! Projections: allocations, the access check and its explanation, requests, resources,
//! actors, sponsor usage and the exports, all read from [`State`].

use std::collections::{BTreeMap, BTreeSet};

use ledger::statement::format_rfc3339_ms;

use crate::data::{is_valid_project_name, DAY_MS};
use crate::limits::PROJECT_NAME_BYTES_MAX;
use crate::state::{Entry, Grant, Request, RequestStatus, State};
use crate::suggest::{nearest, project_name_fix};
use crate::{
    AccessAnswer, AccessQuery, ActorView, Allocations, ApprovalView, DailyUsage, ExplainStep, Explanation, GrantStatus,
    GrantView, KeyView, PoolUsage, ProjectUsage, RequestView, ResourceAllocations, ResourceView, SponsorUsage,
    SponsorView, Stats, TimelineEntry, UnauthorizedJob, UserEntry,
};

fn timeline_entry(e: &Entry) -> TimelineEntry {
    TimelineEntry {
        seq: e.seq,
        at: format_rfc3339_ms(e.at_ms),
        kind: e.kind.clone(),
        actor: e.actor.clone(),
        detail: e.detail.clone(),
    }
}

/// How the access check decided, with the facts it used (for `explain`).
struct Decision<'a> {
    allowed: bool,
    reason: String,
    grant: Option<&'a Grant>,
    request: Option<&'a Request>,
}

/// Whether `user` may trigger jobs under `g`: Ok(seq of the proving record) or the reason.
enum UserCheck {
    Ok(Option<u64>, String),
    Denied(&'static str, String, Option<u64>),
}

impl State {
    pub(crate) fn grant_view(&self, g: &Grant, now_ms: i64) -> GrantView {
        GrantView {
            grant: g.grant.clone(),
            project: g.project.clone(),
            resource: g.resource.clone(),
            pull_request: g.pull_request,
            status: g.status_at(now_ms),
            request: g.request.clone(),
            pool: g.pool.clone(),
            credit_limit: g.credit_limit,
            used: g.used,
            expires_at: g.expires_at_ms.map(format_rfc3339_ms),
            users: g.users.clone(),
            users_from_json: g.users_from_json.clone(),
            roles: g.roles.clone(),
            policy: g.policy.clone(),
            issued_seq: g.issued_seq,
            ended_seq: g.ended_seq,
            last_used_at: g.last_used_ms.map(format_rfc3339_ms),
            idle_since: format_rfc3339_ms(g.idle_since_ms()),
            history: g.history.iter().map(timeline_entry).collect(),
        }
    }

    fn request_view(&self, r: &Request) -> RequestView {
        RequestView {
            request: r.request.clone(),
            project: r.project.clone(),
            resource: r.resource.clone(),
            requester: r.requester.clone(),
            on_behalf_of: r.on_behalf_of.clone(),
            justification: r.justification.clone(),
            pull_request: r.pull_request,
            evidence_url: r.evidence_url.clone(),
            credits: r.credits,
            days: r.days,
            users: r.users.clone(),
            users_from_json: r.users_from_json.clone(),
            status: r.status.as_str().to_string(),
            approvals: r
                .approvals
                .iter()
                .map(|a| ApprovalView {
                    reviewer: a.reviewer.clone(),
                    seq: a.seq,
                    at: format_rfc3339_ms(a.at_ms),
                    note: a.note.clone(),
                    pool: a.pool.clone(),
                    credits: a.credits,
                    days: a.days,
                })
                .collect(),
            approvals_required: self.approvals_required(&r.resource),
            grant: r.grant.clone(),
            opened_seq: r.opened_seq,
            timeline: r.timeline.iter().map(timeline_entry).collect(),
        }
    }

    fn approvals_required(&self, resource: &str) -> u32 {
        self.resources.get(resource).map_or(0, |r| r.approvals_required)
    }

    /// Active grants (as of `now_ms`) grouped by resource, optionally filtered.
    pub fn allocations(&self, resource: Option<&str>, project: Option<&str>, now_ms: i64) -> Allocations {
        self.allocations_where(resource, project, now_ms, |_| true)
    }

    /// The active grants of [`State::allocations`] that have been idle for at least
    /// `unused_days` days at `now_ms`: their last use (the latest `ended_at` billed to them),
    /// or their issue if never used, is that long ago. Pages flag those idle for
    /// [`crate::limits::GRANT_IDLE_DAYS_FLAG`] days.
    pub fn allocations_unused(
        &self,
        resource: Option<&str>,
        project: Option<&str>,
        unused_days: u64,
        now_ms: i64,
    ) -> Allocations {
        let idle_ms = i64::try_from(unused_days).unwrap_or(i64::MAX).saturating_mul(DAY_MS);
        let idle_before_ms = now_ms.saturating_sub(idle_ms);
        self.allocations_where(resource, project, now_ms, |g| g.idle_since_ms() <= idle_before_ms)
    }

    fn allocations_where(
        &self,
        resource: Option<&str>,
        project: Option<&str>,
        now_ms: i64,
        keep: impl Fn(&Grant) -> bool,
    ) -> Allocations {
        let mut by_resource: BTreeMap<&str, Vec<&Grant>> = BTreeMap::new();
        for id in self.active_grants.iter() {
            let Some(g) = self.grants.get(id) else { continue };
            if !g.is_active_at(now_ms)
                || resource.is_some_and(|r| r != g.resource)
                || project.is_some_and(|p| p != g.project)
                || !keep(g)
            {
                continue;
            }
            by_resource.entry(&g.resource).or_default().push(g);
        }
        let resources = by_resource
            .into_iter()
            .map(|(resource, mut grants)| {
                grants.sort_by(|a, b| (&a.project, &a.grant).cmp(&(&b.project, &b.grant)));
                ResourceAllocations {
                    resource: resource.to_string(),
                    grants: grants.into_iter().map(|g| self.grant_view(g, now_ms)).collect(),
                }
            })
            .collect();
        Allocations { resources }
    }

    fn check_user(&self, g: &Grant, user: &str, github_id: Option<u64>) -> UserCheck {
        if let Some(users) = &g.users {
            return if users.iter().any(|u| u.eq_ignore_ascii_case(user)) {
                UserCheck::Ok(Some(g.issued_seq), format!("{user:?} is on the users list of grant {:?}", g.grant))
            } else {
                // The grant.issued record carries the list, so it proves the denial.
                UserCheck::Denied(
                    "user_not_listed",
                    format!("{user:?} is not on the users list of grant {:?}", g.grant),
                    Some(g.issued_seq),
                )
            };
        }
        if g.users_from_json.is_none() {
            return UserCheck::Ok(None, format!("grant {:?} admits the project's {}", g.grant, g.roles.join("/")));
        }
        let terms = self.resources.get(&g.resource).and_then(|r| r.terms.clone());
        let Some(record) = self.users.get(&user.to_ascii_lowercase()) else {
            return UserCheck::Denied("terms_not_accepted", format!("{user:?} has accepted no terms"), None);
        };
        if let Some(id) = github_id {
            if id != record.github_id {
                return UserCheck::Denied(
                    "github_id_mismatch",
                    format!("the acceptance of {user:?} belongs to GitHub id {}, not {id}", record.github_id),
                    Some(record.last_seq),
                );
            }
        }
        let accepted = match &terms {
            Some(v) => record.accepted.get(v).map(|seq| (v.clone(), *seq)),
            None => record.accepted.iter().max_by_key(|(_, seq)| **seq).map(|(v, seq)| (v.clone(), *seq)),
        };
        match accepted {
            Some((version, seq)) => UserCheck::Ok(Some(seq), format!("{user:?} accepted terms {version:?}")),
            None => UserCheck::Denied(
                "terms_not_accepted",
                match &terms {
                    Some(v) => format!("{user:?} has not accepted terms {v:?}"),
                    None => format!("{user:?} has not accepted any terms"),
                },
                Some(record.last_seq),
            ),
        }
    }

    /// Why a grant that names its users needs the user of the job (`user_required`).
    fn user_requirement(&self, g: &Grant) -> String {
        if let Some(users) = &g.users {
            return format!(
                "grant {:?} admits only the {} users it lists: the job's user is required",
                g.grant,
                users.len()
            );
        }
        match self.resources.get(&g.resource).and_then(|r| r.terms.as_deref()) {
            Some(terms) => format!(
                "grant {:?} admits only users who accepted terms {terms:?}: the job's user and GitHub id are required",
                g.grant
            ),
            None => format!(
                "grant {:?} admits only users who accepted the provider's terms: the job's user and GitHub id are required",
                g.grant
            ),
        }
    }

    /// The reason and actor of the record that ended a grant or closed a request, from its
    /// timeline (`request.denied` and `grant.revoked` carry a reason).
    fn ended_by(entries: &[Entry], seq: Option<u64>) -> String {
        let Some(e) = seq.and_then(|seq| entries.iter().rev().find(|e| e.seq == seq)) else {
            return String::new();
        };
        let mut out = String::new();
        if !e.actor.is_empty() && matches!(e.kind.as_str(), "request.denied" | "request.withdrawn" | "grant.revoked") {
            out.push_str(&format!(" by {:?}", e.actor));
        }
        if let Some(reason) =
            e.detail.as_deref().filter(|_| matches!(e.kind.as_str(), "request.denied" | "grant.revoked"))
        {
            out.push_str(&format!(": {reason:?}"));
        }
        out
    }

    fn decide(&self, q: &AccessQuery, now_ms: i64) -> Decision<'_> {
        let deny = |reason: String, grant, request| Decision { allowed: false, reason, grant, request };
        if !is_valid_project_name(&q.project) {
            return deny("invalid_project_name".into(), None, None);
        }
        let Some(resource) = self.resources.get(&q.resource) else {
            return deny("unknown_resource".into(), None, None);
        };
        let request_of = |g: &Grant| g.request.as_ref().and_then(|r| self.requests.get(r)).map(|r| &**r);
        if resource.retired_seq.is_some() {
            let g = self.grants_for(&q.project, &q.resource).last();
            return deny("resource_retired".into(), g, g.and_then(request_of));
        }
        let active: Vec<&Grant> =
            self.active_grants_for(&q.project, &q.resource).into_iter().filter(|g| g.is_active_at(now_ms)).collect();
        if let Some(first) = active.first() {
            let candidates: Vec<&Grant> =
                active.iter().copied().filter(|g| !q.pull_request || g.pull_request).collect();
            let Some(first_candidate) = candidates.first() else {
                return deny("pull_requests_not_granted".into(), Some(first), request_of(first));
            };
            let Some(user) = &q.user else {
                // A grant that names its users fails closed when the job's user is unknown.
                return match candidates.iter().find(|g| g.users.is_none() && g.users_from_json.is_none()) {
                    Some(g) => Decision { allowed: true, reason: "ok".into(), grant: Some(g), request: request_of(g) },
                    None => deny("user_required".into(), Some(first_candidate), request_of(first_candidate)),
                };
            };
            let mut first_denial = None;
            for g in &candidates {
                match self.check_user(g, user, q.github_id) {
                    UserCheck::Ok(..) => {
                        return Decision { allowed: true, reason: "ok".into(), grant: Some(g), request: request_of(g) }
                    }
                    UserCheck::Denied(reason, ..) => {
                        first_denial.get_or_insert((reason, *g));
                    }
                }
            }
            let (reason, g) = first_denial.unwrap_or(("user_not_listed", first_candidate));
            return deny(reason.into(), Some(g), request_of(g));
        }
        let latest_grant = self.grants_for(&q.project, &q.resource).last();
        let latest_request = self.requests_for(&q.project, &q.resource).last();
        let request_is_newer = match (latest_request, latest_grant) {
            (Some(r), Some(g)) => r.opened_seq > g.issued_seq && r.status != RequestStatus::Granted,
            (Some(_), None) => true,
            _ => false,
        };
        if let (true, Some(r)) = (request_is_newer, latest_request) {
            let reason = match r.status {
                RequestStatus::Pending if self.awaiting_grant.contains(&r.request) => "awaiting_grant".to_string(),
                RequestStatus::Pending | RequestStatus::Granted => {
                    format!("awaiting_approvals ({} of {})", r.approvals.len(), resource.approvals_required)
                }
                RequestStatus::Denied => "request_denied".into(),
                RequestStatus::Withdrawn => "request_withdrawn".into(),
            };
            return deny(reason, None, Some(r));
        }
        match latest_grant {
            Some(g) => {
                let reason = match g.status_at(now_ms) {
                    GrantStatus::Revoked => "grant_revoked",
                    GrantStatus::Expired => "grant_expired",
                    GrantStatus::Exhausted => "grant_exhausted",
                    GrantStatus::Migrated => "grant_migrated",
                    GrantStatus::Retired => "resource_retired",
                    GrantStatus::Active => "no_request",
                };
                deny(reason.into(), Some(g), request_of(g))
            }
            None => deny("no_request".into(), None, None),
        }
    }

    /// `{allowed, reason, grant?}` (SPEC.md section 4). Denial reasons, first missing step
    /// first: `invalid_project_name`, `unknown_resource`, `resource_retired`, `no_request`,
    /// `awaiting_approvals (n of m)`, `awaiting_grant` (quorum reached, grant not yet
    /// appended), `request_denied`, `request_withdrawn`, `grant_revoked`, `grant_expired`,
    /// `grant_exhausted`, `grant_migrated`, `pull_requests_not_granted`, `user_required` (every
    /// grant names its users, by `users` or `users_from_json`, and no user was given),
    /// `user_not_listed`, `terms_not_accepted`, `github_id_mismatch` (the login's acceptance is
    /// recorded for another numeric GitHub id than the one asked about).
    pub fn access_check(&self, query: &AccessQuery, now_ms: i64) -> AccessAnswer {
        let d = self.decide(query, now_ms);
        AccessAnswer { allowed: d.allowed, reason: d.reason, grant: d.grant.map(|g| self.grant_view(g, now_ms)) }
    }

    /// The whole chain of facts behind an access answer, each with the seq of its record.
    pub fn explain(&self, query: &AccessQuery, now_ms: i64) -> Explanation {
        let d = self.decide(query, now_ms);
        let mut steps = Vec::new();
        let mut step = |step: &str, ok: bool, detail: String, seq: Option<u64>| {
            steps.push(ExplainStep { step: step.to_string(), ok, detail, seq })
        };
        let valid = is_valid_project_name(&query.project);
        step(
            "project",
            valid,
            if valid {
                format!("{:?} is a valid project name", query.project)
            } else {
                let more = PROJECT_NAME_BYTES_MAX - 1;
                let mut detail =
                    format!("{:?} does not match ^[a-z0-9][a-z0-9._-]{{0,{more}}}$ (names are exact)", query.project);
                if let Some(fix) = project_name_fix(&query.project) {
                    detail.push_str(&format!("; {fix}"));
                }
                detail
            },
            None,
        );
        match self.resources.get(&query.resource) {
            None => {
                let detail = match nearest(&query.resource, self.resources.keys().map(String::as_str)) {
                    Some(near) => format!("no resource {:?}; did you mean {near:?}?", query.resource),
                    None => format!("no resource {:?} is defined", query.resource),
                };
                step("resource", false, detail, None)
            }
            Some(r) => match r.retired_seq {
                Some(seq) => step("resource", false, format!("resource {:?} was retired", r.resource), Some(seq)),
                None => step(
                    "resource",
                    true,
                    format!(
                        "resource {:?} is defined (provider {:?}, {} {} required)",
                        r.resource,
                        r.provider,
                        r.approvals_required,
                        plural(u64::from(r.approvals_required), "approval", "approvals")
                    ),
                    Some(r.defined_seq),
                ),
            },
        }
        match (d.request, d.grant) {
            (Some(r), _) => {
                let open = matches!(r.status, RequestStatus::Pending | RequestStatus::Granted);
                step(
                    "request",
                    open,
                    format!("request {:?} by {:?} is {}", r.request, r.requester, r.status.as_str()),
                    Some(r.opened_seq),
                );
                if let Some(seq) = r.closed_seq.filter(|_| !open) {
                    let why = State::ended_by(&r.timeline, Some(seq));
                    step(
                        "request_closed",
                        false,
                        format!("request {:?} was {}{why}", r.request, r.status.as_str()),
                        Some(seq),
                    );
                }
                let required = self.approvals_required(&r.resource);
                let n = r.approvals.len() as u64;
                let reviewers: Vec<String> = r.approvals.iter().map(|a| format!("{:?}", a.reviewer)).collect();
                let by = if reviewers.is_empty() { String::new() } else { format!(" ({})", reviewers.join(", ")) };
                step(
                    "approvals",
                    n >= u64::from(required),
                    format!("{n} of {required} {}{by}", plural(u64::from(required), "approval", "approvals")),
                    r.approvals.last().map(|a| a.seq),
                );
            }
            (None, Some(g)) => step(
                "request",
                true,
                format!("grant {:?} was issued by an admin without a request (import)", g.grant),
                Some(g.issued_seq),
            ),
            (None, None) => {
                step("request", false, format!("no request for {:?} on {:?}", query.project, query.resource), None)
            }
        }
        match d.grant {
            None => step("grant", false, "no grant issued".to_string(), None),
            Some(g) => {
                let status = g.status_at(now_ms);
                let ended = status != GrantStatus::Active;
                let ended_seq = if ended && g.status != GrantStatus::Active { g.ended_seq } else { None };
                let why = State::ended_by(&g.history, ended_seq);
                let now = format!("{status:?}").to_lowercase();
                step(
                    "grant",
                    !matches!(status, GrantStatus::Revoked | GrantStatus::Migrated | GrantStatus::Retired),
                    format!("grant {:?} issued, now {now}{why}", g.grant),
                    ended_seq.or(Some(g.issued_seq)),
                );
                let expired = g.expires_at_ms.is_some_and(|t| t <= now_ms);
                step(
                    "expiry",
                    !expired,
                    match g.expires_at_ms {
                        Some(t) if expired => format!("expired at {}", format_rfc3339_ms(t)),
                        Some(t) => format!("valid until {}", format_rfc3339_ms(t)),
                        None => "no expiry".to_string(),
                    },
                    if g.status == GrantStatus::Expired { g.ended_seq } else { Some(g.issued_seq) },
                );
                step(
                    "credits",
                    !g.is_exhausted(),
                    match g.credit_limit {
                        Some(limit) => format!("{} of {limit} credits used", g.used),
                        None => format!("{} used, no credit limit", g.used),
                    },
                    g.last_usage_seq.or(Some(g.issued_seq)),
                );
                if query.pull_request {
                    step(
                        "pull_request",
                        g.pull_request,
                        if g.pull_request { "pull requests allowed" } else { "pull requests not granted" }.to_string(),
                        Some(g.issued_seq),
                    );
                }
                match &query.user {
                    Some(user) => match self.check_user(g, user, query.github_id) {
                        UserCheck::Ok(seq, detail) => step("user", true, detail, seq),
                        UserCheck::Denied(_, detail, seq) => step("user", false, detail, seq),
                    },
                    // The grant.issued record names the users, so it proves the requirement.
                    None if d.reason == "user_required" => {
                        step("user", false, self.user_requirement(g), Some(g.issued_seq))
                    }
                    None => {}
                }
            }
        }
        Explanation {
            project: query.project.clone(),
            resource: query.resource.clone(),
            user: query.user.clone(),
            allowed: d.allowed,
            reason: d.reason,
            grant: d.grant.map(|g| g.grant.clone()),
            steps,
        }
    }

    /// Requests, newest first; `status` filters (`pending`, `granted`, `denied`, `withdrawn`).
    pub fn requests(&self, status: Option<&str>) -> Vec<RequestView> {
        let mut out: Vec<&Request> = self
            .requests
            .values()
            .filter(|r| status.is_none() || status == Some(r.status.as_str()))
            .map(|r| &**r)
            .collect();
        out.sort_by_key(|r| std::cmp::Reverse(r.opened_seq));
        out.into_iter().map(|r| self.request_view(r)).collect()
    }

    /// One request with its approvals and timeline, any status.
    pub fn request(&self, id: &str) -> Option<RequestView> {
        self.requests.get(id).map(|r| self.request_view(r))
    }

    /// Every grant ever issued for a project, any status, oldest first.
    pub fn project_grants(&self, project: &str, now_ms: i64) -> Vec<GrantView> {
        let Some(p) = self.projects.get(project) else { return Vec::new() };
        p.grants.iter().filter_map(|id| self.grants.get(id)).map(|g| self.grant_view(g, now_ms)).collect()
    }

    /// Every event that touched a project (requests, approvals, grants), oldest first, with
    /// one summary entry per grant for its usage reports (usage records are not kept).
    pub fn project_history(&self, project: &str) -> Vec<TimelineEntry> {
        let Some(p) = self.projects.get(project) else { return Vec::new() };
        let mut entries: Vec<TimelineEntry> = Vec::new();
        for r in p.requests.iter().filter_map(|id| self.requests.get(id)) {
            entries.extend(r.timeline.iter().map(timeline_entry));
        }
        for g in p.grants.iter().filter_map(|id| self.grants.get(id)) {
            entries.extend(g.history.iter().map(timeline_entry));
            if let (Some(seq), Some(at_ms), true) =
                (g.last_usage_seq, g.last_usage_at_ms, g.status != GrantStatus::Migrated)
            {
                let unit = self.resources.get(&g.resource).map_or("", |r| r.unit.as_str());
                entries.push(TimelineEntry {
                    seq,
                    at: format_rfc3339_ms(at_ms),
                    kind: "usage.reported".to_string(),
                    actor: String::new(),
                    detail: Some(format!(
                        "{} {}, {} {unit} used on grant {}",
                        g.usage_reports,
                        plural(g.usage_reports, "report", "reports"),
                        g.used,
                        g.grant
                    )),
                });
            }
        }
        entries.sort_by(|a, b| (a.seq, &a.kind, &a.detail).cmp(&(b.seq, &b.kind, &b.detail)));
        entries.dedup();
        entries
    }

    /// Every resource ever defined, retired ones included, by name.
    pub fn resources(&self) -> Vec<ResourceView> {
        self.resources
            .values()
            .map(|r| ResourceView {
                resource: r.resource.clone(),
                provider: r.provider.clone(),
                unit: r.unit.clone(),
                approvals_required: r.approvals_required,
                description: r.description.clone(),
                max_days: r.max_days,
                terms: r.terms.clone(),
                retired: r.retired_seq.is_some(),
                defined_seq: r.defined_seq,
            })
            .collect()
    }

    /// Every actor with its roles and keys (revoked keys included), by name. The automation
    /// actor shows the role `automation`, which no other actor can have.
    pub fn actors(&self) -> Vec<ActorView> {
        self.actors
            .values()
            .map(|a| ActorView {
                actor: a.actor.clone(),
                roles: if a.actor == crate::AUTOMATION_ACTOR {
                    vec!["automation".to_string()]
                } else {
                    a.roles.clone()
                },
                keys: a
                    .keys
                    .iter()
                    .filter_map(|id| self.keys.get(id))
                    .map(|k| KeyView {
                        key: k.key.to_string(),
                        keyid: k.key.keyid(),
                        added_seq: k.added_seq,
                        revoked_seq: k.revoked_seq,
                    })
                    .collect(),
                registered_seq: a.registered_seq,
            })
            .collect()
    }

    /// Every registered sponsor, by id.
    pub fn sponsors(&self) -> Vec<SponsorView> {
        self.sponsors
            .values()
            .map(|s| SponsorView { sponsor: s.sponsor.clone(), name: s.name.clone(), registered_seq: s.registered_seq })
            .collect()
    }

    /// Pools, per-project usage and the daily series, limited to `[from_ms, to_ms)` for the
    /// series (a day is included when it overlaps the range). `None` when the sponsor is
    /// unknown.
    pub fn sponsor_usage(&self, sponsor: &str, from_ms: Option<i64>, to_ms: Option<i64>) -> Option<SponsorUsage> {
        let s = self.sponsors.get(sponsor)?;
        let mut pools = Vec::new();
        let mut projects = Vec::new();
        let mut series = Vec::new();
        for p in self.pools.values().filter(|p| p.sponsor == sponsor) {
            pools.push(PoolUsage {
                pool: p.pool.clone(),
                unit: p.unit.clone(),
                resources: p.resources.clone(),
                deposited: p.deposited,
                allocated: p.allocated,
                used: p.used,
                remaining: p.deposited.saturating_sub(p.used),
                expires_at: p.expires_at_ms.map(format_rfc3339_ms),
            });
            for (project, per_resource) in p.per_project.iter() {
                for (resource, used) in per_resource.iter() {
                    projects.push(ProjectUsage {
                        project: project.clone(),
                        pool: p.pool.clone(),
                        resource: resource.clone(),
                        used: *used,
                    });
                }
            }
            for (day, amount) in p.daily.iter() {
                let start_ms = day.saturating_mul(DAY_MS);
                let end_ms = start_ms.saturating_add(DAY_MS);
                if from_ms.is_some_and(|f| end_ms <= f) || to_ms.is_some_and(|t| start_ms >= t) {
                    continue;
                }
                let date = format_rfc3339_ms(start_ms);
                series.push(DailyUsage {
                    day: date.get(..10).unwrap_or(&date).to_string(),
                    pool: p.pool.clone(),
                    amount: *amount,
                });
            }
        }
        series.sort_by(|a, b| (&a.day, &a.pool).cmp(&(&b.day, &b.pool)));
        Some(SponsorUsage { sponsor: s.sponsor.clone(), name: s.name.clone(), pools, projects, series })
    }

    /// The counts for summaries; grants count as active only if active at `now_ms`.
    pub fn stats(&self, now_ms: i64) -> Stats {
        Stats {
            events: self.size,
            actors: self.actors.len() as u64,
            grants: self.grants.len() as u64,
            active_grants: self
                .active_grants
                .iter()
                .filter(|id| self.grants.get(*id).is_some_and(|g| g.is_active_at(now_ms)))
                .count() as u64,
            requests: self.requests.len() as u64,
            pending_requests: self.requests.values().filter(|r| r.status == RequestStatus::Pending).count() as u64,
        }
    }

    /// Users who currently accept the current terms of some resource (not retired), with the
    /// numeric GitHub id their acceptance is tied to; withdrawn acceptances are gone. When
    /// no resource names terms, every user with a standing acceptance is listed.
    pub fn users_json(&self) -> Vec<UserEntry> {
        let current: BTreeSet<&str> =
            self.resources.values().filter(|r| r.retired_seq.is_none()).filter_map(|r| r.terms.as_deref()).collect();
        self.users
            .values()
            .filter(|u| {
                if current.is_empty() {
                    !u.accepted.is_empty()
                } else {
                    u.accepted.keys().any(|v| current.contains(v.as_str()))
                }
            })
            .map(|u| UserEntry { github: u.user.clone(), id: u.github_id })
            .collect()
    }

    /// Jobs that ran on a gated runner without access (`usage.unauthorized`), newest first,
    /// optionally filtered by project and resource (exact names). Unbounded: callers cap it.
    pub fn unauthorized_jobs(&self, project: Option<&str>, resource: Option<&str>) -> Vec<UnauthorizedJob> {
        self.unauthorized
            .values()
            .rev()
            .filter(|j| project.map_or(true, |p| p == j.project) && resource.map_or(true, |r| r == j.resource))
            .map(|j| UnauthorizedJob::clone(j))
            .collect()
    }

    /// Per project, the resources (runner labels) it may use now.
    pub fn runner_labels(&self, now_ms: i64) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for id in self.active_grants.iter() {
            let Some(g) = self.grants.get(id) else { continue };
            if g.is_active_at(now_ms) {
                out.entry(g.project.clone()).or_default().insert(g.resource.clone());
            }
        }
        out.into_iter().map(|(p, labels)| (p, labels.into_iter().collect())).collect()
    }
}

/// `one` for a count of 1, `many` otherwise ("1 report", "2 reports").
fn plural(count: u64, one: &'static str, many: &'static str) -> &'static str {
    if count == 1 {
        one
    } else {
        many
    }
}
