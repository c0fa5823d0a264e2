//! What the automation key must append: grants on quorum, expiries, exhaustions.

use ledger::statement::{format_rfc3339_ms, Statement};

use crate::data::{derived_id, GrantIssuedData, DAY_MS};
use crate::limits::AUTOMATION_STATEMENTS_MAX;
use crate::state::{Request, State, AUTOMATION_ACTOR};

/// The id of the grant issued on a request's quorum.
pub fn grant_id_for_request(request: &str) -> String {
    derived_id("grant:", request)
}

/// The `grant.issued` data a request's quorum gives when issued at `issued_at_ms`: pool,
/// credits (as `credit_limit`) and days from the request, each overridden by the latest
/// approval that sets it; `expires_at` = issue time + days, capped by the resource's
/// `max_days` (and `max_days` when no days are given). `None` if the resource is unknown.
pub(crate) fn quorum_grant(state: &State, req: &Request, issued_at_ms: i64) -> Option<GrantIssuedData> {
    let resource = state.resources.get(&req.resource)?;
    let (pool, credits, days) = req.effective_terms();
    let days = match (days, resource.max_days) {
        (Some(d), Some(max)) => Some(d.min(max)),
        (d, max) => d.or(max),
    };
    let expires_at = days.map(|d| {
        let ms = i64::try_from(d).unwrap_or(i64::MAX).saturating_mul(DAY_MS);
        format_rfc3339_ms(issued_at_ms.saturating_add(ms))
    });
    Some(GrantIssuedData {
        grant: grant_id_for_request(&req.request),
        project: req.project.clone(),
        resource: req.resource.clone(),
        pull_request: req.pull_request,
        request: Some(req.request.clone()),
        pool,
        credit_limit: credits,
        expires_at,
        users: req.users.clone(),
        users_from_json: req.users_from_json.clone(),
        roles: None,
        policy: None,
    })
}

fn automation_statement(state: &State, id: String, kind: &str, data: serde_json::Value, now_ms: i64) -> Statement {
    Statement {
        ledger: state.origin().unwrap_or_default().to_string(),
        id,
        actor: AUTOMATION_ACTOR.to_string(),
        issued_at: format_rfc3339_ms(now_ms),
        kind: kind.to_string(),
        data,
    }
}

/// The statements the automation key must append now, in order: `grant.issued` for requests
/// that reached their quorum, `grant.expired` for grants past `expires_at`, `grant.exhausted`
/// for grants whose usage reached `credit_limit`. Their ids are deterministic, so a crash
/// between quorum and grant issues the grant exactly once after restart.
pub fn automation(state: &State, now_ms: i64) -> Vec<Statement> {
    let mut out = Vec::new();
    if state.genesis.is_none() {
        return out;
    }
    for id in state.awaiting_grant.iter() {
        if out.len() >= AUTOMATION_STATEMENTS_MAX {
            return out;
        }
        let Some(req) = state.requests.get(id) else { continue };
        let retired = !matches!(state.resources.get(&req.resource), Some(r) if r.retired_seq.is_none());
        if retired || state.grants.contains_key(&grant_id_for_request(id)) {
            continue;
        }
        let Some(data) = quorum_grant(state, req, now_ms) else { continue };
        let Ok(value) = serde_json::to_value(&data) else { continue };
        out.push(automation_statement(state, derived_id("grant.issued:", id), "grant.issued", value, now_ms));
    }
    let mut expired = std::collections::BTreeSet::new();
    for (expires_at_ms, grant) in state.expiry_index.iter() {
        if *expires_at_ms > now_ms || out.len() >= AUTOMATION_STATEMENTS_MAX {
            break;
        }
        expired.insert(grant.clone());
        let data = serde_json::json!({ "grant": grant });
        out.push(automation_statement(state, derived_id("grant.expired:", grant), "grant.expired", data, now_ms));
    }
    for grant in state.exhausted_pending.iter() {
        if out.len() >= AUTOMATION_STATEMENTS_MAX {
            break;
        }
        if expired.contains(grant) {
            continue;
        }
        let data = serde_json::json!({ "grant": grant });
        out.push(automation_statement(state, derived_id("grant.exhausted:", grant), "grant.exhausted", data, now_ms));
    }
    out
}
