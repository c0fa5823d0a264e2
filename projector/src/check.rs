//! `check`: may this statement be appended now? (SPEC.md sections 3 and 4.)
//!
//! Order: the statement's common fields, the event type, genesis first and only once, the
//! ledger, the clock, the signer, the data, the role, then the rules of the current state.

use ledger::statement::{format_rfc3339_ms, Statement};

use crate::automation::quorum_grant;
use crate::codes::{self, reject};
use crate::data::{self, derived_id, fnv1a64, EventData, GrantIssuedData, EVENT_TYPES};
use crate::limits::{ISSUED_AT_FUTURE_MINUTES_MAX, ISSUED_AT_FUTURE_MS_MAX, VOUCHES_PER_COMMIT_MAX};
use crate::state::{vouch_key, Actor, RequestStatus, State, AUTOMATION_ACTOR};
use crate::{GrantStatus, Rejection};

/// Decides whether `statement`, signed by `signers` (verified keyids), may be appended now.
/// `now_ms` is the server clock (when replaying: the record's `received_at_ms`).
pub fn check(state: &State, statement: &Statement, signers: &[String], now_ms: i64) -> Result<(), Rejection> {
    statement.validate().map_err(|e| reject(codes::MALFORMED_STATEMENT, e.to_string()))?;
    let kind = statement.kind.as_str();
    if !EVENT_TYPES.contains(&kind) {
        return Err(reject(codes::UNKNOWN_EVENT_TYPE, format!("unknown event type {kind:?}")));
    }
    let is_genesis = kind == "ledger.genesis";
    if is_genesis && (state.size > 0 || state.genesis.is_some()) {
        return Err(reject(codes::GENESIS_REPEATED, "ledger.genesis is allowed only as the first record"));
    }
    if !is_genesis && state.genesis.is_none() {
        return Err(reject(codes::GENESIS_REQUIRED, "the first record must be ledger.genesis"));
    }
    if let Some(origin) = state.origin() {
        if statement.ledger != origin {
            return Err(reject(
                codes::WRONG_LEDGER,
                format!("statement is for ledger {:?}, this is {origin:?}", statement.ledger),
            ));
        }
    }
    let issued_at_ms = statement.issued_at_ms();
    if issued_at_ms > now_ms.saturating_add(ISSUED_AT_FUTURE_MS_MAX) {
        return Err(reject(
            codes::ISSUED_IN_FUTURE,
            format!(
                "issued_at {} is more than {ISSUED_AT_FUTURE_MINUTES_MAX} minutes after the server clock",
                statement.issued_at
            ),
        ));
    }
    if is_genesis {
        return check_genesis(statement, signers);
    }
    let Some(actor) = state.actors.get(&statement.actor) else {
        return Err(reject(codes::UNKNOWN_ACTOR, format!("actor {:?} is not registered", statement.actor)));
    };
    authenticate(state, actor, signers)?;
    let parsed = data::parse(kind, &statement.data)?;
    authorize(actor, statement, &parsed)?;
    check_state(state, statement, &parsed, now_ms)
}

fn check_genesis(statement: &Statement, signers: &[String]) -> Result<(), Rejection> {
    let parsed = data::parse(&statement.kind, &statement.data)?;
    if let EventData::Genesis { admins, log_key, .. } = &parsed {
        if statement.ledger != log_key.name() {
            return Err(reject(
                codes::WRONG_LEDGER,
                format!("ledger {:?} must be the log key's name {:?}", statement.ledger, log_key.name()),
            ));
        }
        let Some(admin) = admins.iter().find(|k| k.name() == statement.actor) else {
            return Err(reject(
                codes::UNKNOWN_ACTOR,
                format!("{:?} is not one of the genesis admins", statement.actor),
            ));
        };
        if !signers.iter().any(|s| *s == admin.keyid()) {
            return Err(reject(codes::NOT_SIGNED_BY_ACTOR, format!("genesis must be signed by {}", admin.keyid())));
        }
    }
    Ok(())
}

fn authenticate(state: &State, actor: &Actor, signers: &[String]) -> Result<(), Rejection> {
    let mut revoked = None;
    for keyid in signers {
        let Some(entry) = state.keys.get(keyid) else { continue };
        if entry.actor != actor.actor {
            continue;
        }
        match entry.revoked_seq {
            None => return Ok(()),
            Some(seq) => revoked = Some((keyid, seq)),
        }
    }
    match revoked {
        Some((keyid, seq)) => Err(reject(codes::KEY_REVOKED, format!("key {keyid} was revoked at seq {seq}"))),
        None => Err(reject(codes::NOT_SIGNED_BY_ACTOR, format!("no signature by an active key of {:?}", actor.actor))),
    }
}

fn authorize(actor: &Actor, statement: &Statement, parsed: &EventData) -> Result<(), Rejection> {
    let is_admin = actor.has_role("admin");
    let is_automation = actor.actor == AUTOMATION_ACTOR;
    let (allowed, needs) = match parsed {
        EventData::GrantIssued { .. } => (is_automation || is_admin, "the automation key or admin"),
        EventData::GrantExpired(_) | EventData::GrantExhausted(_) | EventData::UsageUnauthorized { .. } => {
            (is_automation, "the automation key")
        }
        // The automation key meters the jobs GitHub's signed webhooks report (section 13).
        EventData::UsageReported { .. } => {
            (is_automation || actor.has_role("meter"), "meter (or the automation key, from webhooks)")
        }
        _ if is_automation => (false, "a role the automation key does not have"),
        EventData::Genesis { .. }
        | EventData::ActorRegistered { .. }
        | EventData::ActorRolesSet { .. }
        | EventData::KeyRevoked { .. }
        | EventData::ResourceDefined(_)
        | EventData::ResourceRetired(_)
        | EventData::SponsorRegistered(_)
        | EventData::GrantsMigrated(_) => (is_admin, "admin"),
        EventData::KeyAdded { actor: target, .. } => {
            (is_admin || *target == statement.actor, "admin or the actor itself")
        }
        EventData::CreditsDeposited { data, .. } => (
            is_admin || (actor.has_role("sponsor") && data.sponsor == statement.actor),
            "admin, or sponsor as the actor named like the sponsor",
        ),
        EventData::AccessRequested(_) => (actor.has_role("requester"), "requester"),
        EventData::RequestApproved(_) | EventData::RequestDenied(_) => (actor.has_role("reviewer"), "reviewer"),
        // Only the requester may withdraw; checked against the request.
        EventData::RequestWithdrawn(_) => (true, ""),
        EventData::GrantRevoked(_) => (is_admin || actor.has_role("reviewer"), "admin or reviewer"),
        EventData::JobVouched(_) => (actor.has_role("requester"), "requester"),
        EventData::TermsAccepted(_) | EventData::TermsWithdrawn(_) => {
            (is_admin || actor.has_role("requester"), "requester or admin")
        }
    };
    if allowed {
        Ok(())
    } else {
        Err(reject(codes::ROLE_REQUIRED, format!("{} needs {needs}; {:?} may not", statement.kind, actor.actor)))
    }
}

fn check_resource_open(state: &State, resource: &str) -> Result<(), Rejection> {
    match state.resources.get(resource) {
        None => Err(reject(codes::UNKNOWN_RESOURCE, format!("resource {resource:?} is not defined"))),
        Some(r) if r.retired_seq.is_some() => {
            Err(reject(codes::RESOURCE_RETIRED, format!("resource {resource:?} was retired")))
        }
        Some(_) => Ok(()),
    }
}

/// The pool exists and pays for `resource` in the resource's unit.
fn check_pool_for(state: &State, pool: &str, resource: &str) -> Result<(), Rejection> {
    let Some(p) = state.pools.get(pool) else {
        return Err(reject(codes::UNKNOWN_POOL, format!("pool {pool:?} has no deposit")));
    };
    let unit = state.resources.get(resource).map(|r| r.unit.as_str());
    if !p.covers(resource) || unit != Some(p.unit.as_str()) {
        return Err(reject(
            codes::POOL_NOT_FOR_RESOURCE,
            format!("pool {pool:?} ({}) does not pay for {resource:?}", p.unit),
        ));
    }
    Ok(())
}

/// Credits still free in `pool`: deposited minus allocated to grants, minus what requests that
/// reached their quorum (and await `grant.issued`) will allocate. Without the latter, two
/// quorums reached in one batch would both see the same free credits.
fn check_credits(
    state: &State,
    pool: &str,
    credits: u64,
    now_ms: i64,
    except_request: Option<&str>,
) -> Result<(), Rejection> {
    let awaiting: u64 = state
        .awaiting_grant
        .iter()
        .filter(|id| Some(id.as_str()) != except_request)
        .filter_map(|id| state.requests.get(id))
        .filter_map(|req| match req.effective_terms() {
            (Some(p), Some(c), _) if p == pool => Some(c),
            _ => None,
        })
        .fold(0u64, u64::saturating_add);
    let unallocated = state.pools.get(pool).map_or(0, |p| p.unallocated(now_ms)).saturating_sub(awaiting);
    if credits > unallocated {
        return Err(reject(
            codes::CREDITS_EXCEEDED,
            format!("{credits} credits exceed the {unallocated} unallocated in pool {pool:?}"),
        ));
    }
    Ok(())
}

fn check_state(state: &State, statement: &Statement, parsed: &EventData, now_ms: i64) -> Result<(), Rejection> {
    let issued_at_ms = statement.issued_at_ms();
    match parsed {
        EventData::Genesis { .. } => Ok(()),
        EventData::ActorRegistered { actor, key, .. } => {
            if state.actors.contains_key(actor) {
                return Err(reject(codes::ACTOR_EXISTS, format!("actor {actor:?} is registered")));
            }
            if state.keys.contains_key(&key.keyid()) {
                return Err(reject(codes::KEY_EXISTS, format!("key {} is known", key.keyid())));
            }
            Ok(())
        }
        EventData::ActorRolesSet { actor, roles } => {
            let target = target_actor(state, actor)?;
            if target.has_role("admin") && !roles.iter().any(|r| r == "admin") && state.admin_count() <= 1 {
                return Err(reject(codes::LAST_ADMIN, format!("{actor:?} is the last admin")));
            }
            Ok(())
        }
        EventData::KeyAdded { actor, key } => {
            target_actor(state, actor)?;
            match state.keys.get(&key.keyid()) {
                Some(k) if k.revoked_seq.is_some() => Err(reject(
                    codes::KEY_EXISTS,
                    format!("key {} was revoked; a revoked key stays revoked", key.keyid()),
                )),
                Some(_) => Err(reject(codes::KEY_EXISTS, format!("key {} is already registered", key.keyid()))),
                None => Ok(()),
            }
        }
        EventData::KeyRevoked { actor, key, .. } => {
            target_actor(state, actor)?;
            match state.keys.get(&key.keyid()) {
                Some(k) if k.actor == *actor && k.key == *key => match k.revoked_seq {
                    Some(seq) => {
                        Err(reject(codes::KEY_ALREADY_REVOKED, format!("key {} was revoked at seq {seq}", key.keyid())))
                    }
                    None => Ok(()),
                },
                _ => Err(reject(codes::UNKNOWN_KEY, format!("{actor:?} has no key {}", key.keyid()))),
            }
        }
        EventData::ResourceDefined(d) => {
            if state.resources.contains_key(&d.resource) {
                return Err(reject(codes::RESOURCE_EXISTS, format!("resource {:?} is defined", d.resource)));
            }
            Ok(())
        }
        EventData::ResourceRetired(d) => check_resource_open(state, &d.resource),
        EventData::SponsorRegistered(d) => {
            if state.sponsors.contains_key(&d.sponsor) {
                return Err(reject(codes::SPONSOR_EXISTS, format!("sponsor {:?} is registered", d.sponsor)));
            }
            Ok(())
        }
        EventData::CreditsDeposited { data: d, .. } => {
            if !state.sponsors.contains_key(&d.sponsor) {
                return Err(reject(codes::UNKNOWN_SPONSOR, format!("sponsor {:?} is not registered", d.sponsor)));
            }
            if let Some(pool) = state.pools.get(&d.pool) {
                if pool.sponsor != d.sponsor || pool.unit != d.unit {
                    return Err(reject(
                        codes::POOL_MISMATCH,
                        format!("pool {:?} belongs to {:?} in {}", d.pool, pool.sponsor, pool.unit),
                    ));
                }
                if pool.deposited.checked_add(d.amount).is_none() {
                    return Err(reject(codes::MALFORMED_DATA, "amount overflows the pool"));
                }
            }
            Ok(())
        }
        EventData::AccessRequested(d) => {
            if state.requests.contains_key(&d.request) {
                return Err(reject(codes::REQUEST_EXISTS, format!("request {:?} exists", d.request)));
            }
            check_resource_open(state, &d.resource)
        }
        EventData::RequestApproved(d) => {
            let req = open_request(state, &d.request)?;
            check_resource_open(state, &req.resource)?;
            let reviewer = statement.actor.as_str();
            if req.requester == reviewer {
                return Err(reject(
                    codes::SELF_APPROVAL,
                    format!("{reviewer:?} may not approve request {:?}: they filed it", req.request),
                ));
            }
            if let Some(who) = req.on_behalf_of.as_deref().filter(|who| who.eq_ignore_ascii_case(reviewer)) {
                return Err(reject(
                    codes::SELF_APPROVAL,
                    format!(
                        "{reviewer:?} may not approve request {:?}: {:?} filed it on their behalf (on_behalf_of {who:?})",
                        req.request, req.requester
                    ),
                ));
            }
            if req.approved_by(reviewer) {
                return Err(reject(
                    codes::DUPLICATE_APPROVAL,
                    format!("{reviewer:?} already approved request {:?}", req.request),
                ));
            }
            if let Some(pool) = &d.pool {
                check_pool_for(state, pool, &req.resource)?;
            }
            let (prior_pool, prior_credits, _) = req.effective_terms();
            let pool = d.pool.clone().or(prior_pool);
            let credits = d.credits.or(prior_credits);
            if let (Some(pool), Some(credits)) = (pool, credits) {
                check_credits(state, &pool, credits, now_ms, Some(req.request.as_str()))?;
            }
            Ok(())
        }
        EventData::RequestDenied(d) => open_request(state, &d.request).map(|_| ()),
        EventData::RequestWithdrawn(d) => {
            let Some(req) = state.requests.get(&d.request) else {
                return Err(reject(codes::UNKNOWN_REQUEST, format!("request {:?} does not exist", d.request)));
            };
            if req.requester != statement.actor {
                return Err(reject(
                    codes::NOT_REQUESTER,
                    format!("only {:?}, who made request {:?}, may withdraw it", req.requester, req.request),
                ));
            }
            open_request(state, &d.request).map(|_| ())
        }
        EventData::GrantIssued { data: d, expires_at_ms } => {
            if state.grants.contains_key(&d.grant) {
                return Err(reject(codes::GRANT_EXISTS, format!("grant {:?} exists", d.grant)));
            }
            check_resource_open(state, &d.resource)?;
            if statement.actor == AUTOMATION_ACTOR {
                check_quorum_grant(state, d, *expires_at_ms, issued_at_ms)
            } else {
                if let Some(request) = &d.request {
                    let req = open_request_for_grant(state, request)?;
                    if req.project != d.project || req.resource != d.resource {
                        return Err(reject(
                            codes::GRANT_MISMATCH,
                            format!("request {request:?} is for {} on {}", req.project, req.resource),
                        ));
                    }
                }
                if let Some(pool) = &d.pool {
                    check_pool_for(state, pool, &d.resource)?;
                    if let Some(limit) = d.credit_limit {
                        check_credits(state, pool, limit, now_ms, None)?;
                    }
                }
                Ok(())
            }
        }
        EventData::GrantRevoked(d) => active_grant(state, &d.grant).map(|_| ()),
        EventData::GrantExpired(d) => {
            let g = active_grant(state, &d.grant)?;
            match g.expires_at_ms {
                Some(t) if t <= issued_at_ms => Ok(()),
                _ => Err(reject(codes::NOT_DUE, format!("grant {:?} has not reached its expiry", d.grant))),
            }
        }
        EventData::GrantExhausted(d) => {
            let g = active_grant(state, &d.grant)?;
            if g.is_exhausted() {
                Ok(())
            } else {
                Err(reject(codes::NOT_DUE, format!("grant {:?} has credits left", d.grant)))
            }
        }
        EventData::UsageReported { data: d, started_at_ms, ended_at_ms } => {
            if let Some(seq) = state.unauthorized_usage.get(&d.usage) {
                return Err(reject(
                    codes::USAGE_DUPLICATE,
                    format!("usage {:?} was recorded as unauthorized at seq {seq}", d.usage),
                ));
            }
            let hash = fnv1a64(d.usage.as_bytes());
            let grants = state.active_grants_for(&d.project, &d.resource);
            if grants.iter().any(|g| g.usage_ids.contains(&hash)) {
                return Err(reject(codes::USAGE_DUPLICATE, format!("usage {:?} was already counted", d.usage)));
            }
            // The grant `apply` debits: the one the job ran under. Without one, the oldest
            // grant active now says why the job did not run under it.
            let grant = match state.billable_grant(&d.project, &d.resource, *started_at_ms, now_ms) {
                Some(g) if g.usage_ids.contains(&hash) => {
                    return Err(reject(
                        codes::USAGE_DUPLICATE,
                        format!("usage {:?} was already counted on grant {:?}", d.usage, g.grant),
                    ));
                }
                Some(g) => g,
                None => match grants.iter().find(|g| g.is_active_at(now_ms)) {
                    Some(g) => g,
                    None => {
                        return Err(reject(
                            codes::NO_ACTIVE_GRANT,
                            format!(
                                "{:?} has no active grant on {:?}, and none was active when the job started at {}",
                                d.project,
                                d.resource,
                                format_rfc3339_ms(*started_at_ms)
                            ),
                        ))
                    }
                },
            };
            check_usage_window(grant, d.usage.as_str(), *started_at_ms, *ended_at_ms, now_ms)
        }
        EventData::UsageUnauthorized { data: d, started_at_ms, .. } => {
            if !state.resources.contains_key(&d.resource) {
                return Err(reject(codes::UNKNOWN_RESOURCE, format!("resource {:?} is not defined", d.resource)));
            }
            if let Some(seq) = state.unauthorized_usage.get(&d.usage) {
                return Err(reject(
                    codes::USAGE_DUPLICATE,
                    format!("usage {:?} was recorded as unauthorized at seq {seq}", d.usage),
                ));
            }
            let hash = fnv1a64(d.usage.as_bytes());
            if let Some(g) = state.grants_for(&d.project, &d.resource).find(|g| g.usage_ids.contains(&hash)) {
                return Err(reject(
                    codes::USAGE_DUPLICATE,
                    format!("usage {:?} was counted on grant {:?}", d.usage, g.grant),
                ));
            }
            // The log proves each accusation: a job that ran under a grant is not cross-access.
            if let Some(g) = state.grants_for(&d.project, &d.resource).find(|g| g.covers_start(*started_at_ms)) {
                return Err(reject(
                    codes::USAGE_GRANTED,
                    format!(
                        "{:?} held grant {:?} (seq {}) on {:?} when the job started at {}",
                        d.project,
                        g.grant,
                        g.issued_seq,
                        d.resource,
                        format_rfc3339_ms(*started_at_ms)
                    ),
                ));
            }
            Ok(())
        }
        EventData::JobVouched(d) => {
            let vouches = state.vouches.get(&vouch_key(&d.project, &d.head_sha));
            let known = vouches.is_some_and(|v| v.iter().any(|v| v.user.eq_ignore_ascii_case(&d.user)));
            if !known && vouches.is_some_and(|v| v.len() >= VOUCHES_PER_COMMIT_MAX) {
                return Err(reject(
                    codes::TOO_MANY_VOUCHES,
                    format!(
                        "commit {} of {:?} already has {VOUCHES_PER_COMMIT_MAX} vouches, the most one commit may have",
                        d.head_sha, d.project
                    ),
                ));
            }
            Ok(())
        }
        EventData::TermsAccepted(_) => Ok(()),
        EventData::TermsWithdrawn(d) => {
            let Some(user) = state.users.get(&d.user.to_ascii_lowercase()) else {
                return Err(reject(codes::TERMS_NOT_ACCEPTED, format!("{} has accepted no terms", d.user)));
            };
            if user.github_id != d.github_id {
                return Err(reject(
                    codes::GITHUB_ID_MISMATCH,
                    format!("{}'s acceptance belongs to GitHub id {}, not {}", d.user, user.github_id, d.github_id),
                ));
            }
            if !user.accepted.contains_key(&d.terms) {
                return Err(reject(codes::TERMS_NOT_ACCEPTED, format!("{} has not accepted {}", d.user, d.terms)));
            }
            Ok(())
        }
        EventData::GrantsMigrated(d) => {
            if !state.resources.contains_key(&d.from_resource) {
                return Err(reject(codes::UNKNOWN_RESOURCE, format!("resource {:?} is not defined", d.from_resource)));
            }
            check_resource_open(state, &d.to_resource)?;
            for id in state.active_grants.iter() {
                let Some(g) = state.grants.get(id) else { continue };
                if g.resource == d.from_resource {
                    let new_id = migrated_grant_id(&g.grant, &d.to_resource);
                    if state.grants.contains_key(&new_id) {
                        return Err(reject(codes::GRANT_EXISTS, format!("grant {new_id:?} exists")));
                    }
                }
            }
            Ok(())
        }
    }
}

/// A job can only be billed to a grant it ran under: it started while the grant was active
/// (not before it began, not after it ends), and it has ended by now, give or take the same
/// clock drift `issued_at` is allowed. `now_ms` is the record's clock, so replay agrees.
fn check_usage_window(
    grant: &crate::state::Grant,
    usage: &str,
    started_at_ms: i64,
    ended_at_ms: i64,
    now_ms: i64,
) -> Result<(), Rejection> {
    let at = format_rfc3339_ms;
    if ended_at_ms > now_ms.saturating_add(ISSUED_AT_FUTURE_MS_MAX) {
        return Err(reject(
            codes::USAGE_OUTSIDE_GRANT,
            format!(
                "usage {usage:?} ended_at {} is more than {ISSUED_AT_FUTURE_MINUTES_MAX} minutes after the server clock ({})",
                at(ended_at_ms),
                at(now_ms)
            ),
        ));
    }
    if started_at_ms < grant.active_from_ms {
        return Err(reject(
            codes::USAGE_OUTSIDE_GRANT,
            format!(
                "usage {usage:?} started at {}, before grant {:?} began at {} (seq {})",
                at(started_at_ms),
                grant.grant,
                at(grant.active_from_ms),
                grant.issued_seq
            ),
        ));
    }
    if let Some(expires_at_ms) = grant.expires_at_ms.filter(|t| started_at_ms >= *t) {
        return Err(reject(
            codes::USAGE_OUTSIDE_GRANT,
            format!(
                "usage {usage:?} started at {}, after grant {:?} expires at {}",
                at(started_at_ms),
                grant.grant,
                at(expires_at_ms)
            ),
        ));
    }
    Ok(())
}

/// The id of the grant that continues `grant` on `to_resource` after `grants.migrated`.
pub(crate) fn migrated_grant_id(grant: &str, to_resource: &str) -> String {
    derived_id(&format!("{grant}:"), to_resource)
}

fn target_actor<'a>(state: &'a State, actor: &str) -> Result<&'a Actor, Rejection> {
    if actor == AUTOMATION_ACTOR {
        return Err(reject(codes::RESERVED_ACTOR, "the automation actor's roles and keys are set by the genesis"));
    }
    state
        .actors
        .get(actor)
        .map(|a| &**a)
        .ok_or_else(|| reject(codes::UNKNOWN_TARGET_ACTOR, format!("actor {actor:?} is not registered")))
}

/// A request still open for votes: pending and without its quorum yet.
fn open_request<'a>(state: &'a State, id: &str) -> Result<&'a crate::state::Request, Rejection> {
    let req = open_request_for_grant(state, id)?;
    if state.awaiting_grant.contains(id) {
        return Err(reject(codes::REQUEST_CLOSED, format!("request {id:?} has its quorum and awaits its grant")));
    }
    Ok(req)
}

/// A pending request (with or without its quorum).
fn open_request_for_grant<'a>(state: &'a State, id: &str) -> Result<&'a crate::state::Request, Rejection> {
    let Some(req) = state.requests.get(id) else {
        return Err(reject(codes::UNKNOWN_REQUEST, format!("request {id:?} does not exist")));
    };
    if req.status != RequestStatus::Pending {
        return Err(reject(codes::REQUEST_CLOSED, format!("request {id:?} is {}", req.status.as_str())));
    }
    Ok(req)
}

fn active_grant<'a>(state: &'a State, id: &str) -> Result<&'a crate::state::Grant, Rejection> {
    let Some(g) = state.grants.get(id) else {
        return Err(reject(codes::UNKNOWN_GRANT, format!("grant {id:?} does not exist")));
    };
    if g.status != GrantStatus::Active {
        return Err(reject(codes::GRANT_NOT_ACTIVE, format!("grant {id:?} ended ({:?})", g.status)));
    }
    Ok(g)
}

/// Automation's `grant.issued` must be exactly the grant the quorum computes: replaying the
/// log therefore proves that no grant was issued without a quorum of valid approvals.
fn check_quorum_grant(
    state: &State,
    d: &GrantIssuedData,
    expires_at_ms: Option<i64>,
    issued_at_ms: i64,
) -> Result<(), Rejection> {
    let Some(request) = &d.request else {
        return Err(reject(codes::GRANT_MISMATCH, "the automation key issues grants only for requests"));
    };
    let req = open_request_for_grant(state, request)?;
    let required = state.resources.get(&req.resource).map_or(u32::MAX, |r| r.approvals_required);
    if (req.approvals.len() as u64) < u64::from(required) {
        return Err(reject(
            codes::QUORUM_NOT_REACHED,
            format!("request {request:?} has {} of {required} approvals", req.approvals.len()),
        ));
    }
    let Some(expected) = quorum_grant(state, req, issued_at_ms) else {
        return Err(reject(codes::UNKNOWN_RESOURCE, format!("resource {:?} is not defined", req.resource)));
    };
    let expected_expiry = expected.expires_at.as_deref().and_then(ledger::statement::parse_rfc3339_ms);
    let same = GrantIssuedData { expires_at: None, ..d.clone() } == GrantIssuedData { expires_at: None, ..expected }
        && expires_at_ms == expected_expiry;
    if !same {
        return Err(reject(
            codes::GRANT_MISMATCH,
            format!("grant.issued for request {request:?} differs from the grant its approvals give"),
        ));
    }
    Ok(())
}
