//! conda-forge interop: Cirun `.access.yml` export and import, admin-requests files.
//!
//! Import choices (SPEC.md does not fix them): every resource named in the file becomes a
//! `resource.defined` with provider `cirun`, unit `runner-minutes` and
//! `approvals_required: 2` (conda-forge's core review), without `max_days` or terms; each
//! (resource, policy) pair becomes one admin `grant.issued` without pool, credit limit or
//! expiry, with grant id `cirun:<policy id>:<resource>`. A resource listed twice in
//! `access_control` (the real file has `cirun-macos-m4-large` twice) is defined once and its
//! policy lists are merged. Each grant keeps its policy id (`grant.issued.policy`), so the
//! export writes the file's policies back under their own ids; grants without one (issued on
//! a quorum) are named `<repo>-policy`, `<repo>-policy-2`, ... in a stable order, skipping ids
//! already taken. A resource the ledger already defines is reused when its definition is the
//! one the import would append, and refused otherwise ([`plan_cirun_import`]).

use std::collections::{BTreeMap, BTreeSet};

use ledger::statement::{format_rfc3339_ms, Statement, StatementError};
use serde::{Deserialize, Serialize};

use crate::data::{self, derived_id, is_valid_project_name, GrantIssuedData, ResourceDefinedData};
use crate::{GrantStatus, Rejection, ResourceView, State};

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
    /// The ledger already defines a resource of the file differently from the definition the
    /// import would append.
    #[error("{}", resource_conflict_message(.resource, *.defined_seq, .differences))]
    ResourceConflict {
        /// The resource.
        resource: String,
        /// The `resource.defined` record of the ledger's definition.
        defined_seq: u64,
        /// Every field that differs, in the order of the event's data.
        differences: Vec<FieldDifference>,
    },
}

/// One field of a definition that differs: what the ledger has, what the import would write
/// (each as JSON, so `null` shows an absent value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldDifference {
    /// The field of `resource.defined` data (or `retired`).
    pub field: String,
    /// The ledger's value.
    pub ledger: String,
    /// The value the import would define.
    pub import: String,
}

fn resource_conflict_message(resource: &str, defined_seq: u64, differences: &[FieldDifference]) -> String {
    let mut out = format!(
        "resource {resource:?} is already defined (seq {defined_seq}) differently from the definition the import \
         would append:"
    );
    for d in differences {
        out.push_str(&format!("\n  {}: ledger {}, import {}", d.field, d.ledger, d.import));
    }
    out
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
            ResourceConflict { resource, defined_seq, differences } => matches!(
                other,
                ResourceConflict { resource: r, defined_seq: s, differences: d }
                    if r == resource && s == defined_seq && d == differences
            ),
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
    /// The policy id that `access_control` refers to (kept on each imported grant).
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

/// What makes two grants the same Cirun policy: the id they were imported under (if any),
/// then their contents.
type PolicyKey = (Option<String>, String, bool, Option<Vec<String>>, Option<String>, Vec<String>);

/// The allocations as a Cirun `.access.yml` document, in a stable order.
pub fn cirun_access(state: &State, now_ms: i64) -> CirunAccess {
    let mut by_policy: BTreeMap<PolicyKey, BTreeSet<String>> = BTreeMap::new();
    for id in state.active_grants.iter() {
        let Some(g) = state.grants.get(id) else { continue };
        if !g.is_active_at(now_ms) {
            continue;
        }
        let key = (
            g.policy.clone(),
            g.project.clone(),
            g.pull_request,
            g.users.clone(),
            g.users_from_json.clone(),
            g.roles.clone(),
        );
        by_policy.entry(key).or_default().insert(g.resource.clone());
    }
    // A grant without a policy id joins a named policy with the same contents.
    let same_contents = |a: &PolicyKey, b: &PolicyKey| (&a.1, a.2, &a.3, &a.4, &a.5) == (&b.1, b.2, &b.3, &b.4, &b.5);
    let unnamed: Vec<PolicyKey> = by_policy.keys().filter(|k| k.0.is_none()).cloned().collect();
    for key in unnamed {
        let Some(named) = by_policy.keys().find(|k| k.0.is_some() && same_contents(k, &key)).cloned() else {
            continue;
        };
        if let Some(resources) = by_policy.remove(&key) {
            by_policy.entry(named).or_default().extend(resources);
        }
    }
    // A name is kept by the first policy that has it; any other (the same id with other
    // contents, e.g. after a re-import) is named like an unnamed one.
    let mut taken: BTreeSet<String> = BTreeSet::new();
    let mut ids: BTreeMap<&PolicyKey, String> = BTreeMap::new();
    for key in by_policy.keys() {
        if let Some(name) = &key.0 {
            if taken.insert(name.clone()) {
                ids.insert(key, name.clone());
            }
        }
    }
    let mut counters: BTreeMap<&str, usize> = BTreeMap::new();
    for key in by_policy.keys() {
        if ids.contains_key(key) {
            continue;
        }
        let project = key.1.as_str();
        let n = counters.entry(project).or_default();
        let id = loop {
            *n += 1;
            let id = if *n == 1 { format!("{project}-policy") } else { format!("{project}-policy-{n}") };
            if taken.insert(id.clone()) {
                break id;
            }
        };
        ids.insert(key, id);
    }
    let mut policies = Vec::new();
    let mut access: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (key, resources) in &by_policy {
        let (_, project, pull_request, users, users_from_json, roles) = key;
        let Some(id) = ids.get(key).cloned() else { continue };
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
    policies.sort_by(|a, b| (&a.repo, &a.id).cmp(&(&b.repo, &b.id)));
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
                policy: Some(id.to_string()),
            };
            let data = serde_json::to_value(&grant).map_err(InteropError::Json)?;
            out.push(ctx.statement(ctx.id(&format!("grant:{id}:{resource}")), "grant.issued", data)?);
        }
    }
    Ok(out)
}

/// The statements of a Cirun import against the resources the ledger defines now: a
/// `resource.defined` whose resource exists with the same definition is left out (listed in
/// `reused`); one that exists with another definition refuses the whole import, naming every
/// field that differs. The free-text `description` is for people and is not compared.
pub fn plan_cirun_import(
    yaml: &str,
    ctx: &StatementContext,
    defined: &[ResourceView],
) -> Result<CirunImportPlan, InteropError> {
    let mut plan = CirunImportPlan { statements: Vec::new(), reused: Vec::new() };
    for st in import_cirun_access(yaml, ctx)? {
        if st.kind != "resource.defined" {
            plan.statements.push(st);
            continue;
        }
        let d: ResourceDefinedData = match data::parse(&st.kind, &st.data).map_err(InteropError::Rejected)? {
            data::EventData::ResourceDefined(d) => d,
            _ => return Err(InteropError::Invalid(format!("statement {:?} is not a resource definition", st.id))),
        };
        let Some(existing) = defined.iter().find(|r| r.resource == d.resource) else {
            plan.statements.push(st);
            continue;
        };
        let differences = resource_differences(existing, &d);
        if !differences.is_empty() {
            return Err(InteropError::ResourceConflict {
                resource: d.resource,
                defined_seq: existing.defined_seq,
                differences,
            });
        }
        plan.reused.push(d.resource);
    }
    Ok(plan)
}

/// What a Cirun import will post, and the definitions it reuses.
#[derive(Debug, Clone)]
pub struct CirunImportPlan {
    /// The statements to post, in order.
    pub statements: Vec<Statement>,
    /// Resources the ledger already defines exactly as the import would.
    pub reused: Vec<String>,
}

/// The fields of a `resource.defined` that rules use (and whether it was retired), where the
/// ledger's definition and `import` differ.
fn resource_differences(ledger: &ResourceView, import: &ResourceDefinedData) -> Vec<FieldDifference> {
    fn json<T: Serialize>(v: &T) -> String {
        serde_json::to_string(v).unwrap_or_default()
    }
    let mut out = Vec::new();
    let mut compare = |field: &str, a: String, b: String| {
        if a != b {
            out.push(FieldDifference { field: field.to_string(), ledger: a, import: b });
        }
    };
    compare("provider", json(&ledger.provider), json(&import.provider));
    compare("unit", json(&ledger.unit), json(&import.unit));
    compare("approvals_required", json(&ledger.approvals_required), json(&import.approvals_required));
    compare("max_days", json(&ledger.max_days), json(&import.max_days));
    compare("terms", json(&ledger.terms), json(&import.terms));
    compare("retired", json(&ledger.retired), json(&false));
    out
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
