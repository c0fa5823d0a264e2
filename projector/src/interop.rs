//! conda-forge interop: Cirun `.access.yml` export and import, admin-requests files.
//!
//! Import choices (SPEC.md does not fix them): every resource named in the file becomes a
//! `resource.defined` with provider `cirun`, unit `runner-minutes` and
//! `approvals_required: 2` (conda-forge's core review), without `max_days` or terms; each
//! (resource, policy) pair becomes one admin `grant.issued` without pool, credit limit or
//! expiry, with grant id `cirun:<policy id>:<resource>`. A resource listed twice in
//! `access_control` (the real file has `cirun-macos-m4-large` twice) is defined once and its
//! policy lists are merged. Policy ids are not kept by the ledger (grant data has no field
//! for them), so the export names policies `<repo>-policy`, `<repo>-policy-2`, ... in a
//! stable order.

use std::collections::{BTreeMap, BTreeSet};

use ledger::statement::{format_rfc3339_ms, Statement, StatementError};
use serde::{Deserialize, Serialize};

use crate::data::{self, derived_id, is_valid_project_name, GrantIssuedData};
use crate::{GrantStatus, Rejection, State};

pub use crate::limits::{ADMIN_REQUEST_PAIRS_MAX, IMPORT_POLICIES_MAX};

/// The approvals an imported Cirun resource requires.
pub const IMPORTED_APPROVALS_REQUIRED: u32 = 2;

/// Why an interop file cannot be imported or turned into statements.
#[derive(Debug, thiserror::Error)]
pub enum InteropError {
    /// Not YAML, or not the file's schema (unknown fields included).
    #[error("invalid YAML: {0}")]
    Yaml(#[source] serde_yaml::Error),
    /// The file is well-formed but says something grantline cannot do (an unknown policy, an
    /// undefined resource, too many entries, ...).
    #[error("{0}")]
    Invalid(String),
    /// A statement built from the file would be rejected for its data (the message is the
    /// rejection's).
    #[error("{}", .0.message)]
    Rejected(#[source] Rejection),
    /// A statement built from the file is not a valid statement (e.g. the signer's name).
    #[error("{0}")]
    Statement(#[source] StatementError),
    /// Grant data could not be encoded as JSON.
    #[error("{0}")]
    Json(#[source] serde_json::Error),
}

/// YAML and JSON errors have no equality: two are equal when they say the same.
impl PartialEq for InteropError {
    fn eq(&self, other: &Self) -> bool {
        use InteropError::*;
        match self {
            Yaml(a) => matches!(other, Yaml(b) if a.to_string() == b.to_string()),
            Invalid(a) => matches!(other, Invalid(b) if a == b),
            Rejected(a) => matches!(other, Rejected(b) if a == b),
            Statement(a) => matches!(other, Statement(b) if a == b),
            Json(a) => matches!(other, Json(b) if a.to_string() == b.to_string()),
        }
    }
}

impl Eq for InteropError {}

/// What the statements built from a file are signed as.
#[derive(Debug, Clone)]
pub struct StatementContext {
    /// The log origin the statements are for.
    pub ledger: String,
    /// The actor who signs them (an admin for imports, a requester for admin-requests).
    pub actor: String,
    /// Their `issued_at` (Unix milliseconds).
    pub now_ms: i64,
    /// Prefix of the generated statement ids, so one import is idempotent.
    pub id_prefix: String,
}

impl StatementContext {
    fn statement(&self, id: String, kind: &str, data: serde_json::Value) -> Result<Statement, InteropError> {
        // Validate the data as `check` will, so a bad file fails here with a clear message.
        data::parse(kind, &data).map_err(InteropError::Rejected)?;
        let st = Statement {
            ledger: self.ledger.clone(),
            id,
            actor: self.actor.clone(),
            issued_at: format_rfc3339_ms(self.now_ms),
            kind: kind.to_string(),
            data,
        };
        st.validate().map_err(InteropError::Statement)?;
        Ok(st)
    }

    fn id(&self, suffix: &str) -> String {
        derived_id(&self.id_prefix, suffix)
    }
}

/// The Cirun `.access.yml` schema (conda-forge's `.cirun` repository).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CirunAccess {
    /// The schema version; only 1 exists.
    pub version: u64,
    /// Who may use runners, per repository.
    #[serde(default)]
    pub policies: Vec<CirunPolicy>,
    /// Which policies apply to which resource (runner label).
    #[serde(default)]
    pub access_control: Vec<CirunAccessControl>,
}

/// One Cirun policy: a repository, and who in it may trigger jobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CirunPolicy {
    /// The policy id that `access_control` refers to (not kept by the ledger).
    pub id: String,
    /// The repository: a grantline project name.
    pub repo: String,
    /// Repository roles whose members may trigger jobs (Cirun's default when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    /// GitHub logins allowed, if the policy lists them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<Vec<String>>,
    /// A URL of a `users.json` listing the allowed users, instead of `users`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users_from_json: Option<String>,
    /// Whether jobs from pull requests may run (no when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_request: Option<bool>,
}

/// The policies that may use one resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CirunAccessControl {
    /// The resource (Cirun runner label).
    pub resource: String,
    /// Ids of policies in [`CirunAccess::policies`].
    pub policies: Vec<String>,
}

/// What makes two grants the same Cirun policy.
type PolicyKey = (String, bool, Option<Vec<String>>, Option<String>, Vec<String>);

/// The allocations as a Cirun `.access.yml` document, in a stable order.
pub fn cirun_access(state: &State, now_ms: i64) -> CirunAccess {
    let mut by_policy: BTreeMap<PolicyKey, BTreeSet<String>> = BTreeMap::new();
    for id in state.active_grants.iter() {
        let Some(g) = state.grants.get(id) else { continue };
        if !g.is_active_at(now_ms) {
            continue;
        }
        let key = (g.project.clone(), g.pull_request, g.users.clone(), g.users_from_json.clone(), g.roles.clone());
        by_policy.entry(key).or_default().insert(g.resource.clone());
    }
    let mut per_project: BTreeMap<&str, usize> = BTreeMap::new();
    for (project, ..) in by_policy.keys() {
        *per_project.entry(project).or_default() += 1;
    }
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let mut policies = Vec::new();
    let mut access: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (key, resources) in &by_policy {
        let (project, pull_request, users, users_from_json, roles) = key;
        let n = seen.entry(project).or_default();
        *n += 1;
        let id = if *n == 1 { format!("{project}-policy") } else { format!("{project}-policy-{n}") };
        for resource in resources {
            access.entry(resource).or_default().push(id.clone());
        }
        policies.push(CirunPolicy {
            id,
            repo: project.clone(),
            roles: Some(roles.clone()),
            users: users.clone(),
            users_from_json: users_from_json.clone(),
            pull_request: Some(*pull_request),
        });
    }
    let access_control = access
        .into_iter()
        .map(|(resource, mut policies)| {
            policies.sort();
            CirunAccessControl { resource: resource.to_string(), policies }
        })
        .collect();
    CirunAccess { version: 1, policies, access_control }
}

/// The allocations as a Cirun `.access.yml`, in a stable order.
pub fn cirun_access_yaml(state: &State, now_ms: i64) -> String {
    // Serialising plain strings, bools and lists cannot fail.
    serde_yaml::to_string(&cirun_access(state, now_ms)).unwrap_or_default()
}

/// Parses a Cirun `.access.yml`, checking that every referenced policy exists.
pub fn parse_cirun_access(yaml: &str) -> Result<CirunAccess, InteropError> {
    let file: CirunAccess = serde_yaml::from_str(yaml).map_err(InteropError::Yaml)?;
    if file.version != 1 {
        return Err(InteropError::Invalid(format!("unsupported .access.yml version {}", file.version)));
    }
    if file.policies.len() > IMPORT_POLICIES_MAX {
        return Err(InteropError::Invalid(format!("more than {IMPORT_POLICIES_MAX} policies")));
    }
    let mut ids = BTreeSet::new();
    for p in &file.policies {
        if !ids.insert(p.id.as_str()) {
            return Err(InteropError::Invalid(format!("policy {:?} is defined twice", p.id)));
        }
        if !is_valid_project_name(&p.repo) {
            return Err(InteropError::Invalid(format!("policy {:?}: repo {:?} is not a project name", p.id, p.repo)));
        }
    }
    for ac in &file.access_control {
        if let Some(missing) = ac.policies.iter().find(|id| !ids.contains(id.as_str())) {
            return Err(InteropError::Invalid(format!("resource {:?} names unknown policy {missing:?}", ac.resource)));
        }
    }
    Ok(file)
}

/// The admin-signed `resource.defined` and `grant.issued` statements that reproduce a Cirun
/// `.access.yml` (a migration import).
pub fn import_cirun_access(yaml: &str, ctx: &StatementContext) -> Result<Vec<Statement>, InteropError> {
    let file = parse_cirun_access(yaml)?;
    let policies: BTreeMap<&str, &CirunPolicy> = file.policies.iter().map(|p| (p.id.as_str(), p)).collect();
    // Resources in order of first appearance, each with its merged, deduplicated policies.
    let mut resources: Vec<(&str, Vec<&str>)> = Vec::new();
    for ac in &file.access_control {
        let index = match resources.iter().position(|(r, _)| *r == ac.resource) {
            Some(i) => i,
            None => {
                resources.push((&ac.resource, Vec::new()));
                resources.len() - 1
            }
        };
        for id in &ac.policies {
            if !resources[index].1.contains(&id.as_str()) {
                resources[index].1.push(id);
            }
        }
    }
    let mut out = Vec::new();
    for (resource, _) in &resources {
        let data = serde_json::json!({
            "resource": resource,
            "provider": "cirun",
            "unit": "runner-minutes",
            "approvals_required": IMPORTED_APPROVALS_REQUIRED,
            "description": "imported from a Cirun .access.yml",
        });
        out.push(ctx.statement(ctx.id(&format!("resource:{resource}")), "resource.defined", data)?);
    }
    for (resource, ids) in &resources {
        for id in ids {
            let Some(p) = policies.get(id) else { continue };
            let grant = GrantIssuedData {
                grant: derived_id("cirun:", &format!("{id}:{resource}")),
                project: p.repo.clone(),
                resource: resource.to_string(),
                pull_request: p.pull_request.unwrap_or(false),
                request: None,
                pool: None,
                credit_limit: None,
                expires_at: None,
                users: p.users.clone(),
                users_from_json: p.users_from_json.clone(),
                roles: p.roles.clone(),
            };
            let data = serde_json::to_value(&grant).map_err(InteropError::Json)?;
            out.push(ctx.statement(ctx.id(&format!("grant:{id}:{resource}")), "grant.issued", data)?);
        }
    }
    Ok(out)
}

/// An admin-requests file (`conda-forge/admin-requests`, `action: cirun`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminRequest {
    action: String,
    feedstocks: Vec<String>,
    resources: Vec<String>,
    #[serde(default)]
    pull_request: bool,
    #[serde(default)]
    revoke: bool,
    #[serde(default)]
    #[allow(dead_code)]
    send_pr: Option<bool>,
}

/// The `access.requested` (or, with `revoke: true`, `grant.revoked`) statements an
/// admin-requests file means. Feedstocks are named without their `-feedstock` suffix, so
/// `pytorch-cpu` is the project `pytorch-cpu-feedstock`. The resources must be defined (and
/// for a revocation each pair must have an active grant), so a typo fails here instead of
/// producing a request nobody can approve.
pub fn admin_request_statements(
    yaml: &str,
    state: &State,
    ctx: &StatementContext,
) -> Result<Vec<Statement>, InteropError> {
    let value: serde_yaml::Value = serde_yaml::from_str(yaml).map_err(InteropError::Yaml)?;
    let action = value.get("action").and_then(|a| a.as_str()).unwrap_or("");
    if action != "cirun" {
        return Err(InteropError::Invalid(format!("action {action:?} is not \"cirun\"")));
    }
    let file: AdminRequest = serde_yaml::from_value(value).map_err(InteropError::Yaml)?;
    debug_assert_eq!(file.action, "cirun");
    if file.feedstocks.is_empty() || file.resources.is_empty() {
        return Err(InteropError::Invalid("feedstocks and resources must not be empty".to_string()));
    }
    if file.feedstocks.len().saturating_mul(file.resources.len()) > ADMIN_REQUEST_PAIRS_MAX {
        return Err(InteropError::Invalid(format!("more than {ADMIN_REQUEST_PAIRS_MAX} feedstock/resource pairs")));
    }
    let mut out = Vec::new();
    for feedstock in &file.feedstocks {
        let project = format!("{feedstock}-feedstock");
        if !is_valid_project_name(&project) {
            return Err(InteropError::Invalid(format!("feedstock {feedstock:?} does not name a project")));
        }
        for resource in &file.resources {
            match state.resources.get(resource) {
                None => return Err(InteropError::Invalid(format!("resource {resource:?} is not defined"))),
                Some(r) if r.retired_seq.is_some() && !file.revoke => {
                    return Err(InteropError::Invalid(format!("resource {resource:?} was retired")))
                }
                Some(_) => {}
            }
            if file.revoke {
                let grants: Vec<String> = state
                    .grants_for(&project, resource)
                    .filter(|g| g.status == GrantStatus::Active)
                    .map(|g| g.grant.clone())
                    .collect();
                if grants.is_empty() {
                    return Err(InteropError::Invalid(format!("{project} has no active grant on {resource}")));
                }
                for grant in grants {
                    let data = serde_json::json!({
                        "grant": grant,
                        "reason": format!("revoked by an admin-requests file ({project} on {resource})"),
                    });
                    out.push(ctx.statement(ctx.id(&format!("revoke:{grant}")), "grant.revoked", data)?);
                }
            } else {
                let request = ctx.id(&format!("{project}:{resource}"));
                let data = serde_json::json!({
                    "request": request,
                    "project": project,
                    "resource": resource,
                    "justification": format!("admin-requests file: cirun access for {project} on {resource}"),
                    "pull_request": file.pull_request,
                });
                out.push(ctx.statement(request, "access.requested", data)?);
            }
        }
    }
    Ok(out)
}
