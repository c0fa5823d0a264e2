//! `apply`: fold one logged record into the state, in place, touching only what it changes.
//!
//! `apply` trusts that `check` accepted the record, but never panics if it did not: data that
//! does not decode changes nothing but the size, and every lookup tolerates absence.

use std::sync::Arc;

use im::{OrdMap, OrdSet};
use ledger::statement::Statement;

use crate::check::migrated_grant_id;
use crate::data::{self, fnv1a64, EventData, DAY_MS, DEFAULT_GRANT_ROLES};
use crate::limits::{USAGE_LATE_MS_MAX, VOUCHES_PER_COMMIT_MAX};
use crate::state::{
    mut_in, vouch_key, Actor, Approval, Entry, Genesis, Grant, KeyEntry, Pool, Request, RequestStatus, Resource,
    Sponsor, State, UserTerms, Vouch, AUTOMATION_ACTOR,
};
use crate::{Event, GrantStatus, UnauthorizedJob};

/// Applies a record that `check` accepted. Never panics, whatever the input.
pub fn apply(state: &mut State, event: &Event<'_>) {
    let st = event.statement;
    if let Ok(parsed) = data::parse(&st.kind, &st.data) {
        apply_parsed(state, st, parsed, event.seq, event.received_at_ms);
    }
    // After the record, never before: `check` decided on the state without this record's
    // clock, and the record must change the state as `check` saw it.
    close_late_usage(state, event.received_at_ms);
    state.size = state.size.max(event.seq.saturating_add(1));
}

/// Drops the usage ids of grants whose late-report window has closed by `at_ms`.
fn close_late_usage(state: &mut State, at_ms: i64) {
    while let Some((closes_at_ms, id)) = state.usage_close_index.get_min().cloned() {
        if closes_at_ms > at_ms {
            return;
        }
        state.usage_close_index.remove(&(closes_at_ms, id.clone()));
        if let Some(g) = mut_in(&mut state.grants, &id) {
            g.usage_ids = OrdSet::new();
            g.usage_closed = true;
        }
    }
}

fn entry(st: &Statement, seq: u64, at_ms: i64, detail: Option<String>) -> Entry {
    Entry { seq, at_ms, kind: st.kind.clone(), actor: st.actor.clone(), detail }
}

fn register_key(state: &mut State, actor: &str, key: ledger::keys::VerifierKey, seq: u64) {
    let keyid = key.keyid();
    if state.keys.contains_key(&keyid) {
        return;
    }
    state.keys.insert(keyid.clone(), KeyEntry { key, actor: actor.to_string(), added_seq: seq, revoked_seq: None });
    if let Some(a) = mut_in(&mut state.actors, actor) {
        a.keys.push(keyid);
    }
}

fn register_actor(state: &mut State, name: &str, key: ledger::keys::VerifierKey, roles: Vec<String>, seq: u64) {
    if state.actors.contains_key(name) {
        return;
    }
    state.actors.insert(
        name.to_string(),
        Arc::new(Actor { actor: name.to_string(), roles, keys: Vec::new(), registered_seq: seq }),
    );
    register_key(state, name, key, seq);
}

/// Moves a pool's allocation from a grant's old share to its new one.
fn reallocate(state: &mut State, pool: Option<&str>, before: u64, after: u64) {
    let Some(pool) = pool.and_then(|p| mut_in(&mut state.pools, p)) else { return };
    debug_assert!(pool.allocated >= before, "pool allocation below a grant's share");
    pool.allocated = pool.allocated.saturating_sub(before).saturating_add(after);
}

fn end_grant(state: &mut State, id: &str, status: GrantStatus, seq: u64, e: Entry) {
    let Some(g) = mut_in(&mut state.grants, id) else { return };
    if g.status != GrantStatus::Active {
        return;
    }
    let before = g.pool_share();
    g.status = status;
    g.ended_seq = Some(seq);
    g.ended_at_ms = Some(e.at_ms);
    let closes_at_ms = e.at_ms.saturating_add(USAGE_LATE_MS_MAX);
    g.history.push(e);
    let after = g.pool_share();
    let pool = g.pool.clone();
    let expires = g.expires_at_ms;
    let project = g.project.clone();
    reallocate(state, pool.as_deref(), before, after);
    state.active_grants.remove(id);
    if let Some(p) = state.projects.get_mut(&project) {
        p.active.remove(id);
    }
    if let Some(t) = expires {
        state.expiry_index.remove(&(t, id.to_string()));
    }
    state.exhausted_pending.remove(id);
    state.usage_close_index.insert((closes_at_ms, id.to_string()));
}

fn close_request(state: &mut State, id: &str, status: RequestStatus, seq: u64, e: Entry) {
    let Some(req) = mut_in(&mut state.requests, id) else { return };
    if req.status != RequestStatus::Pending {
        return;
    }
    req.status = status;
    req.closed_seq = Some(seq);
    req.timeline.push(e);
    state.awaiting_grant.remove(id);
}

fn insert_grant(state: &mut State, g: Grant) {
    let id = g.grant.clone();
    if g.status == GrantStatus::Active {
        state.active_grants.insert(id.clone());
        if let Some(t) = g.expires_at_ms {
            state.expiry_index.insert((t, id.clone()));
        }
        if g.is_exhausted() {
            state.exhausted_pending.insert(id.clone());
        }
    }
    reallocate(state, g.pool.as_deref(), 0, g.pool_share());
    let index = state.projects.entry(g.project.clone()).or_default();
    index.grants.push_back(id.clone());
    if g.status == GrantStatus::Active {
        index.active.insert(id.clone());
    }
    state.grants.insert(id, Arc::new(g));
}

fn apply_parsed(state: &mut State, st: &Statement, parsed: EventData, seq: u64, at_ms: i64) {
    match parsed {
        EventData::Genesis { admins, automation_key, log_key } => {
            if state.genesis.is_some() || state.size > 0 {
                return;
            }
            state.genesis =
                Some(Genesis { origin: st.ledger.clone(), log_key, automation_key: automation_key.clone(), seq });
            for key in admins {
                let name = key.name().to_string();
                register_actor(state, &name, key, vec!["admin".to_string()], seq);
            }
            register_actor(state, AUTOMATION_ACTOR, automation_key, Vec::new(), seq);
        }
        EventData::ActorRegistered { actor, key, roles } => register_actor(state, &actor, key, roles, seq),
        EventData::ActorRolesSet { actor, roles } => {
            if let Some(a) = mut_in(&mut state.actors, &actor) {
                a.roles = roles;
            }
        }
        EventData::KeyAdded { actor, key } => {
            if state.actors.contains_key(&actor) {
                register_key(state, &actor, key, seq);
            }
        }
        EventData::KeyRevoked { key, .. } => {
            if let Some(k) = state.keys.get_mut(&key.keyid()) {
                k.revoked_seq.get_or_insert(seq);
            }
        }
        EventData::ResourceDefined(d) => {
            if state.resources.contains_key(&d.resource) {
                return;
            }
            state.resources.insert(
                d.resource.clone(),
                Arc::new(Resource {
                    resource: d.resource,
                    provider: d.provider,
                    unit: d.unit,
                    approvals_required: d.approvals_required,
                    description: d.description,
                    max_days: d.max_days,
                    terms: d.terms,
                    retired_seq: None,
                    defined_seq: seq,
                }),
            );
        }
        EventData::ResourceRetired(d) => {
            let Some(r) = mut_in(&mut state.resources, &d.resource) else { return };
            if r.retired_seq.is_some() {
                return;
            }
            r.retired_seq = Some(seq);
            let ended: Vec<String> = state
                .active_grants
                .iter()
                .filter(|id| state.grants.get(*id).is_some_and(|g| g.resource == d.resource))
                .cloned()
                .collect();
            for id in ended {
                end_grant(
                    state,
                    &id,
                    GrantStatus::Retired,
                    seq,
                    entry(st, seq, at_ms, Some("resource retired".into())),
                );
            }
        }
        EventData::SponsorRegistered(d) => {
            if !state.sponsors.contains_key(&d.sponsor) {
                state
                    .sponsors
                    .insert(d.sponsor.clone(), Sponsor { sponsor: d.sponsor, name: d.name, registered_seq: seq });
            }
        }
        EventData::CreditsDeposited { data: d, expires_at_ms } => match mut_in(&mut state.pools, &d.pool) {
            Some(pool) => {
                pool.deposited = pool.deposited.saturating_add(d.amount);
                pool.resources = d.resources;
                pool.expires_at_ms = expires_at_ms;
            }
            None => {
                state.pools.insert(
                    d.pool.clone(),
                    Arc::new(Pool {
                        pool: d.pool,
                        sponsor: d.sponsor,
                        unit: d.unit,
                        resources: d.resources,
                        deposited: d.amount,
                        allocated: 0,
                        used: 0,
                        expires_at_ms,
                        created_seq: seq,
                        per_project: OrdMap::new(),
                        daily: OrdMap::new(),
                    }),
                );
            }
        },
        EventData::AccessRequested(d) => {
            if state.requests.contains_key(&d.request) {
                return;
            }
            let detail = Some(format!("{} asks for {} on {}", st.actor, d.project, d.resource));
            let req = Request {
                request: d.request.clone(),
                project: d.project.clone(),
                resource: d.resource,
                requester: st.actor.clone(),
                on_behalf_of: d.on_behalf_of,
                justification: d.justification,
                pull_request: d.pull_request,
                evidence_url: d.evidence_url,
                credits: d.credits,
                days: d.days,
                users: d.users,
                users_from_json: d.users_from_json,
                status: RequestStatus::Pending,
                approvals: Vec::new(),
                grant: None,
                opened_seq: seq,
                closed_seq: None,
                timeline: vec![entry(st, seq, at_ms, detail)],
            };
            state.projects.entry(d.project).or_default().requests.push_back(d.request.clone());
            state.requests.insert(d.request, Arc::new(req));
        }
        EventData::RequestApproved(d) => {
            let Some(req) = mut_in(&mut state.requests, &d.request) else { return };
            if req.status != RequestStatus::Pending || req.approved_by(&st.actor) {
                return;
            }
            let required = state.resources.get(&req.resource).map_or(u32::MAX, |r| r.approvals_required);
            req.approvals.push(Approval {
                reviewer: st.actor.clone(),
                seq,
                at_ms,
                note: d.note.clone(),
                pool: d.pool,
                credits: d.credits,
                days: d.days,
            });
            let count = req.approvals.len() as u64;
            let detail = Some(format!("approval {count} of {required}"));
            req.timeline.push(entry(st, seq, at_ms, detail));
            if count >= u64::from(required) {
                state.awaiting_grant.insert(d.request);
            }
        }
        EventData::RequestDenied(d) => {
            close_request(state, &d.request, RequestStatus::Denied, seq, entry(st, seq, at_ms, Some(d.reason)));
        }
        EventData::RequestWithdrawn(d) => {
            close_request(state, &d.request, RequestStatus::Withdrawn, seq, entry(st, seq, at_ms, None));
        }
        EventData::GrantIssued { data: d, expires_at_ms } => {
            if state.grants.contains_key(&d.grant) {
                return;
            }
            let detail = Some(format!("grant {} for {} on {}", d.grant, d.project, d.resource));
            let e = entry(st, seq, at_ms, detail);
            if let Some(request) = &d.request {
                if let Some(req) = mut_in(&mut state.requests, request) {
                    if req.status == RequestStatus::Pending {
                        req.grant = Some(d.grant.clone());
                    }
                }
                close_request(state, request, RequestStatus::Granted, seq, e.clone());
            }
            let roles = d.roles.unwrap_or_else(|| DEFAULT_GRANT_ROLES.iter().map(|r| r.to_string()).collect());
            insert_grant(
                state,
                Grant {
                    grant: d.grant,
                    project: d.project,
                    resource: d.resource,
                    pull_request: d.pull_request,
                    request: d.request,
                    pool: d.pool,
                    credit_limit: d.credit_limit,
                    used: 0,
                    expires_at_ms,
                    users: d.users,
                    users_from_json: d.users_from_json,
                    roles,
                    policy: d.policy,
                    status: GrantStatus::Active,
                    issued_seq: seq,
                    active_from_ms: at_ms,
                    ended_seq: None,
                    ended_at_ms: None,
                    exhausted_at_ms: None,
                    history: vec![e],
                    usage_ids: OrdSet::new(),
                    usage_closed: false,
                    usage_reports: 0,
                    last_usage_seq: None,
                    last_usage_at_ms: None,
                    last_used_ms: None,
                },
            );
        }
        EventData::GrantRevoked(d) => {
            end_grant(state, &d.grant, GrantStatus::Revoked, seq, entry(st, seq, at_ms, Some(d.reason)));
        }
        EventData::GrantExpired(d) => {
            end_grant(state, &d.grant, GrantStatus::Expired, seq, entry(st, seq, at_ms, None))
        }
        EventData::GrantExhausted(d) => {
            end_grant(state, &d.grant, GrantStatus::Exhausted, seq, entry(st, seq, at_ms, None));
        }
        EventData::UsageReported { data: d, started_at_ms, ended_at_ms } => {
            if state.unauthorized_usage.contains_key(&d.usage) {
                return;
            }
            let hash = fnv1a64(d.usage.as_bytes());
            if state.active_grants_for(&d.project, &d.resource).iter().any(|g| g.usage_ids.contains(&hash)) {
                return;
            }
            let Some(id) = state
                .billable_grant(&d.project, &d.resource, started_at_ms, at_ms)
                .filter(|g| !g.usage_ids.contains(&hash))
                .map(|g| g.grant.clone())
            else {
                return;
            };
            let Some(g) = mut_in(&mut state.grants, &id) else { return };
            let before = g.pool_share();
            let was_exhausted = g.is_exhausted();
            g.used = g.used.saturating_add(d.amount);
            g.usage_ids.insert(hash);
            g.usage_reports = g.usage_reports.saturating_add(1);
            g.last_usage_seq = Some(seq);
            g.last_usage_at_ms = Some(at_ms);
            g.last_used_ms = Some(g.last_used_ms.map_or(ended_at_ms, |t| t.max(ended_at_ms)));
            let exhausted = g.is_exhausted();
            if exhausted && !was_exhausted {
                g.exhausted_at_ms = Some(at_ms);
            }
            let after = g.pool_share();
            let pool_id = g.pool.clone();
            // A grant that ended already needs no `grant.exhausted`.
            if exhausted && g.status == GrantStatus::Active {
                state.exhausted_pending.insert(id);
            }
            reallocate(state, pool_id.as_deref(), before, after);
            if let Some(pool) = pool_id.and_then(|p| mut_in(&mut state.pools, &p)) {
                pool.used = pool.used.saturating_add(d.amount);
                let per_resource = pool.per_project.entry(d.project).or_default();
                let used = per_resource.entry(d.resource).or_insert(0);
                *used = used.saturating_add(d.amount);
                let day = pool.daily.entry(ended_at_ms.div_euclid(DAY_MS)).or_insert(0);
                *day = day.saturating_add(d.amount);
            }
        }
        EventData::TermsAccepted(d) => {
            let user = Arc::make_mut(state.users.entry(d.user.to_ascii_lowercase()).or_insert_with(|| {
                Arc::new(UserTerms {
                    user: d.user.clone(),
                    github_id: d.github_id,
                    accepted: OrdMap::new(),
                    last_seq: seq,
                })
            }));
            if user.github_id != d.github_id {
                // A renamed or re-registered login does not inherit the old acceptances.
                user.github_id = d.github_id;
                user.accepted = OrdMap::new();
            }
            user.user = d.user;
            user.accepted.insert(d.terms, seq);
            user.last_seq = seq;
        }
        EventData::TermsWithdrawn(d) => {
            if let Some(user) = mut_in(&mut state.users, &d.user.to_ascii_lowercase()) {
                if user.github_id == d.github_id {
                    user.accepted.remove(&d.terms);
                    user.last_seq = seq;
                }
            }
        }
        EventData::UsageUnauthorized { data: d, .. } => {
            if state.unauthorized_usage.contains_key(&d.usage) {
                return;
            }
            state.unauthorized_usage.insert(d.usage.clone(), seq);
            state.unauthorized.insert(
                seq,
                Arc::new(UnauthorizedJob {
                    seq,
                    usage: d.usage,
                    project: d.project,
                    resource: d.resource,
                    started_at: d.started_at,
                    ended_at: d.ended_at,
                    reason: d.reason,
                    run_url: d.run_url,
                }),
            );
        }
        EventData::JobVouched(d) => {
            let key = vouch_key(&d.project, &d.head_sha);
            let list = Arc::make_mut(state.vouches.entry(key).or_default());
            let vouch = Vouch { user: d.user, github_id: d.github_id, seq };
            // A second vouch for the same user replaces the first (a correction of the id).
            match list.iter().position(|v| v.user.eq_ignore_ascii_case(&vouch.user)) {
                Some(i) => list[i] = vouch,
                None if list.len() < VOUCHES_PER_COMMIT_MAX => list.push(vouch),
                None => {}
            }
        }
        EventData::GrantsMigrated(d) => {
            if !matches!(state.resources.get(&d.to_resource), Some(r) if r.retired_seq.is_none()) {
                return;
            }
            let moving: Vec<String> = state
                .active_grants
                .iter()
                .filter(|id| state.grants.get(*id).is_some_and(|g| g.resource == d.from_resource))
                .cloned()
                .collect();
            for id in moving {
                let new_id = migrated_grant_id(&id, &d.to_resource);
                let Some(old) = state.grants.get(&id).cloned() else { continue };
                let old: &Grant = &old;
                if state.grants.contains_key(&new_id) {
                    continue;
                }
                let moved_to = format!("moved to grant {new_id} on {}: {}", d.to_resource, d.reason);
                let moved_from = format!("moved from grant {id} on {}: {}", d.from_resource, d.reason);
                let mut history = old.history.clone();
                history.push(entry(st, seq, at_ms, Some(moved_from)));
                let successor = Grant {
                    grant: new_id,
                    resource: d.to_resource.clone(),
                    status: GrantStatus::Active,
                    issued_seq: seq,
                    active_from_ms: at_ms,
                    ended_seq: None,
                    ended_at_ms: None,
                    history,
                    ..Grant::clone(old)
                };
                end_grant(state, &id, GrantStatus::Migrated, seq, entry(st, seq, at_ms, Some(moved_to)));
                insert_grant(state, successor);
            }
        }
    }
}
