//! The `data` object of each event type (DESIGN.md section 4), decoded strictly: unknown
//! fields are rejected, required fields must be present, amounts are positive integers.

use ledger::keys::VerifierKey;
use ledger::statement::{is_valid_statement_id, parse_rfc3339_ms};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::codes::{self, reject};
use crate::Rejection;

/// Free text (justification, notes, reasons, descriptions, URLs) longer than this is rejected.
pub const TEXT_BYTES_MAX: usize = 4096;
/// Names of resources, pools, sponsors, providers, units, terms versions.
pub const NAME_BYTES_MAX: usize = 128;
/// People on one grant's or request's `users` list.
pub const USERS_MAX: usize = 1000;
/// Resources one pool may pay for.
pub const POOL_RESOURCES_MAX: usize = 256;
/// Admins named in the genesis.
pub const GENESIS_ADMINS_MAX: usize = 16;
/// Roles on one grant (Cirun's repository roles).
pub const GRANT_ROLES_MAX: usize = 16;
/// `days` / `max_days` larger than this are rejected (keeps time arithmetic in range).
pub const DAYS_MAX: u64 = 36_500;
/// Project names: `^[a-z0-9][a-z0-9._-]{0,99}$`.
pub const PROJECT_NAME_BYTES_MAX: usize = 100;
/// GitHub logins are at most 39 characters.
pub const GITHUB_LOGIN_BYTES_MAX: usize = 39;
/// Milliseconds in one day.
pub const DAY_MS: i64 = 86_400_000;

pub const EVENT_TYPES: &[&str] = &[
    "ledger.genesis",
    "actor.registered",
    "actor.roles_set",
    "key.added",
    "key.revoked",
    "resource.defined",
    "resource.retired",
    "sponsor.registered",
    "credits.deposited",
    "access.requested",
    "request.approved",
    "request.denied",
    "request.withdrawn",
    "grant.issued",
    "grant.revoked",
    "grant.expired",
    "grant.exhausted",
    "usage.reported",
    "user.terms_accepted",
    "user.terms_withdrawn",
    "grants.migrated",
];

/// The roles of DESIGN.md section 4.
pub const ROLES: &[&str] = &["admin", "reviewer", "requester", "meter", "sponsor"];

/// Cirun's default repository roles for a grant.
pub const DEFAULT_GRANT_ROLES: &[&str] = &["admin", "maintain", "write"];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisData {
    pub admins: Vec<String>,
    pub automation_key: String,
    pub log_key: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActorRegisteredData {
    pub actor: String,
    pub key: String,
    pub roles: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActorRolesSetData {
    pub actor: String,
    pub roles: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyData {
    pub actor: String,
    pub key: String,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceDefinedData {
    pub resource: String,
    pub provider: String,
    pub unit: String,
    pub approvals_required: u32,
    pub description: Option<String>,
    pub max_days: Option<u64>,
    pub terms: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceRetiredData {
    pub resource: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SponsorRegisteredData {
    pub sponsor: String,
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreditsDepositedData {
    pub pool: String,
    pub sponsor: String,
    pub amount: u64,
    pub unit: String,
    pub resources: Vec<String>,
    pub expires_at: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRequestedData {
    pub request: String,
    pub project: String,
    pub resource: String,
    pub justification: String,
    pub pull_request: bool,
    pub on_behalf_of: Option<String>,
    pub evidence_url: Option<String>,
    pub credits: Option<u64>,
    pub days: Option<u64>,
    pub users: Option<Vec<String>>,
    pub users_from_json: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestApprovedData {
    pub request: String,
    pub note: Option<String>,
    pub pool: Option<String>,
    pub credits: Option<u64>,
    pub days: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestDeniedData {
    pub request: String,
    pub reason: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestWithdrawnData {
    pub request: String,
}

/// `grant.issued` data; also built by [`crate::automation`] and the Cirun import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantIssuedData {
    pub grant: String,
    pub project: String,
    pub resource: String,
    pub pull_request: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credit_limit: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users_from_json: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantRevokedData {
    pub grant: String,
    pub reason: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantEndedData {
    pub grant: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageReportedData {
    pub usage: String,
    pub project: String,
    pub resource: String,
    pub amount: u64,
    pub started_at: String,
    pub ended_at: String,
    pub run_url: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TermsData {
    pub user: String,
    pub github_id: u64,
    pub terms: String,
    pub evidence_url: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantsMigratedData {
    pub from_resource: String,
    pub to_resource: String,
    pub reason: String,
}

/// A decoded and validated `data` object.
#[derive(Debug, Clone)]
pub enum EventData {
    Genesis { admins: Vec<VerifierKey>, automation_key: VerifierKey, log_key: VerifierKey },
    ActorRegistered { actor: String, key: VerifierKey, roles: Vec<String> },
    ActorRolesSet { actor: String, roles: Vec<String> },
    KeyAdded { actor: String, key: VerifierKey },
    KeyRevoked { actor: String, key: VerifierKey, reason: Option<String> },
    ResourceDefined(ResourceDefinedData),
    ResourceRetired(ResourceRetiredData),
    SponsorRegistered(SponsorRegisteredData),
    CreditsDeposited { data: CreditsDepositedData, expires_at_ms: Option<i64> },
    AccessRequested(AccessRequestedData),
    RequestApproved(RequestApprovedData),
    RequestDenied(RequestDeniedData),
    RequestWithdrawn(RequestWithdrawnData),
    GrantIssued { data: GrantIssuedData, expires_at_ms: Option<i64> },
    GrantRevoked(GrantRevokedData),
    GrantExpired(GrantEndedData),
    GrantExhausted(GrantEndedData),
    UsageReported { data: UsageReportedData, started_at_ms: i64, ended_at_ms: i64 },
    TermsAccepted(TermsData),
    TermsWithdrawn(TermsData),
    GrantsMigrated(GrantsMigratedData),
}

fn decode<T: DeserializeOwned>(kind: &str, data: &serde_json::Value) -> Result<T, Rejection> {
    T::deserialize(data).map_err(|e| reject(codes::MALFORMED_DATA, format!("{kind} data: {e}")))
}

fn malformed(message: impl Into<String>) -> Rejection {
    reject(codes::MALFORMED_DATA, message)
}

/// `^[a-z0-9][a-z0-9._-]{0,99}$`, exactly: no case folding, no trimming.
pub fn is_valid_project_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= PROJECT_NAME_BYTES_MAX
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes.iter().all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
}

/// GitHub logins: 1-39 characters of ASCII letters, digits and `-`.
pub fn is_valid_github_login(login: &str) -> bool {
    !login.is_empty()
        && login.len() <= GITHUB_LOGIN_BYTES_MAX
        && login.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Ids of requests, grants, pools, sponsors, resources and usage reports follow the
/// statement-id rule: 1-128 characters of `[A-Za-z0-9._:-]`.
fn check_id(field: &str, value: &str) -> Result<(), Rejection> {
    if is_valid_statement_id(value) {
        Ok(())
    } else {
        Err(malformed(format!("{field} {value:?} must be 1-128 characters of [A-Za-z0-9._:-]")))
    }
}

fn check_text(field: &str, value: &str, required: bool) -> Result<(), Rejection> {
    if required && value.trim().is_empty() {
        return Err(malformed(format!("{field} must not be empty")));
    }
    if value.len() > TEXT_BYTES_MAX {
        return Err(malformed(format!("{field} is longer than {TEXT_BYTES_MAX} bytes")));
    }
    Ok(())
}

fn check_opt_text(field: &str, value: &Option<String>) -> Result<(), Rejection> {
    value.as_deref().map_or(Ok(()), |v| check_text(field, v, false))
}

fn check_name(field: &str, value: &str) -> Result<(), Rejection> {
    if value.is_empty() || value.len() > NAME_BYTES_MAX || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(malformed(format!("{field} {value:?} must be 1-{NAME_BYTES_MAX} bytes without spaces")));
    }
    Ok(())
}

fn check_project(value: &str) -> Result<(), Rejection> {
    if is_valid_project_name(value) {
        Ok(())
    } else {
        Err(reject(codes::INVALID_PROJECT_NAME, format!("project {value:?} must match ^[a-z0-9][a-z0-9._-]{{0,99}}$")))
    }
}

fn check_positive(field: &str, value: Option<u64>) -> Result<(), Rejection> {
    if value == Some(0) {
        return Err(malformed(format!("{field} must be positive")));
    }
    Ok(())
}

fn check_days(field: &str, value: Option<u64>) -> Result<(), Rejection> {
    check_positive(field, value)?;
    if value.is_some_and(|d| d > DAYS_MAX) {
        return Err(malformed(format!("{field} must be at most {DAYS_MAX}")));
    }
    Ok(())
}

fn check_users(users: &Option<Vec<String>>, users_from_json: &Option<String>) -> Result<(), Rejection> {
    if users.is_some() && users_from_json.is_some() {
        return Err(malformed("give users or users_from_json, not both"));
    }
    if let Some(users) = users {
        if users.len() > USERS_MAX {
            return Err(malformed(format!("more than {USERS_MAX} users")));
        }
        if let Some(bad) = users.iter().find(|u| !is_valid_github_login(u)) {
            return Err(malformed(format!("user {bad:?} is not a GitHub login")));
        }
    }
    if let Some(url) = users_from_json {
        check_text("users_from_json", url, true)?;
    }
    Ok(())
}

fn check_roles(roles: &[String]) -> Result<(), Rejection> {
    if let Some(bad) = roles.iter().find(|r| !ROLES.contains(&r.as_str())) {
        return Err(malformed(format!("unknown role {bad:?}; roles are {}", ROLES.join(", "))));
    }
    Ok(())
}

/// Sorted, without duplicates.
pub fn normalise_roles(roles: &[String]) -> Vec<String> {
    let mut out: Vec<String> = roles.to_vec();
    out.sort();
    out.dedup();
    out
}

fn parse_key(field: &str, text: &str) -> Result<VerifierKey, Rejection> {
    VerifierKey::parse(text).map_err(|e| malformed(format!("{field}: {e}")))
}

fn parse_time(field: &str, text: &str) -> Result<i64, Rejection> {
    parse_rfc3339_ms(text).ok_or_else(|| malformed(format!("{field} {text:?} is not an RFC 3339 time")))
}

fn check_terms(d: &TermsData) -> Result<(), Rejection> {
    if !is_valid_github_login(&d.user) {
        return Err(malformed(format!("user {:?} is not a GitHub login", d.user)));
    }
    check_positive("github_id", Some(d.github_id))?;
    check_name("terms", &d.terms)?;
    check_opt_text("evidence_url", &d.evidence_url)
}

/// Decodes and validates `data` for event type `kind`. Checks only the data itself, not the
/// state (that is [`crate::check`]'s job).
pub fn parse(kind: &str, data: &serde_json::Value) -> Result<EventData, Rejection> {
    Ok(match kind {
        "ledger.genesis" => {
            let d: GenesisData = decode(kind, data)?;
            if d.admins.is_empty() || d.admins.len() > GENESIS_ADMINS_MAX {
                return Err(malformed(format!("admins must name 1-{GENESIS_ADMINS_MAX} keys")));
            }
            let mut admins = Vec::with_capacity(d.admins.len());
            for text in &d.admins {
                let key = parse_key("admins", text)?;
                if !ledger::statement::is_valid_actor_name(key.name()) || key.name() == crate::AUTOMATION_ACTOR {
                    return Err(malformed(format!("admin key name {:?} is not a valid actor name", key.name())));
                }
                if admins.iter().any(|k: &VerifierKey| k.name() == key.name()) {
                    return Err(malformed(format!("admin {:?} is named twice", key.name())));
                }
                admins.push(key);
            }
            let automation_key = parse_key("automation_key", &d.automation_key)?;
            if automation_key.name() != crate::AUTOMATION_ACTOR {
                return Err(malformed("automation_key must be named \"automation\""));
            }
            let log_key = parse_key("log_key", &d.log_key)?;
            EventData::Genesis { admins, automation_key, log_key }
        }
        "actor.registered" => {
            let d: ActorRegisteredData = decode(kind, data)?;
            check_actor_name(&d.actor)?;
            let key = parse_key("key", &d.key)?;
            check_key_name(&key, &d.actor)?;
            check_roles(&d.roles)?;
            EventData::ActorRegistered { actor: d.actor, key, roles: normalise_roles(&d.roles) }
        }
        "actor.roles_set" => {
            let d: ActorRolesSetData = decode(kind, data)?;
            check_actor_name(&d.actor)?;
            check_roles(&d.roles)?;
            EventData::ActorRolesSet { actor: d.actor, roles: normalise_roles(&d.roles) }
        }
        "key.added" | "key.revoked" => {
            let d: KeyData = decode(kind, data)?;
            check_actor_name(&d.actor)?;
            let key = parse_key("key", &d.key)?;
            check_key_name(&key, &d.actor)?;
            check_opt_text("reason", &d.reason)?;
            if kind == "key.added" {
                EventData::KeyAdded { actor: d.actor, key }
            } else {
                EventData::KeyRevoked { actor: d.actor, key, reason: d.reason }
            }
        }
        "resource.defined" => {
            let d: ResourceDefinedData = decode(kind, data)?;
            check_id("resource", &d.resource)?;
            check_name("provider", &d.provider)?;
            check_name("unit", &d.unit)?;
            if d.approvals_required == 0 {
                return Err(malformed("approvals_required must be at least 1"));
            }
            check_opt_text("description", &d.description)?;
            check_days("max_days", d.max_days)?;
            if let Some(t) = &d.terms {
                check_name("terms", t)?;
            }
            EventData::ResourceDefined(d)
        }
        "resource.retired" => {
            let d: ResourceRetiredData = decode(kind, data)?;
            check_id("resource", &d.resource)?;
            EventData::ResourceRetired(d)
        }
        "sponsor.registered" => {
            let d: SponsorRegisteredData = decode(kind, data)?;
            check_id("sponsor", &d.sponsor)?;
            check_text("name", &d.name, true)?;
            EventData::SponsorRegistered(d)
        }
        "credits.deposited" => {
            let d: CreditsDepositedData = decode(kind, data)?;
            check_id("pool", &d.pool)?;
            check_id("sponsor", &d.sponsor)?;
            check_positive("amount", Some(d.amount))?;
            check_name("unit", &d.unit)?;
            if d.resources.is_empty() || d.resources.len() > POOL_RESOURCES_MAX {
                return Err(malformed(format!("resources must list 1-{POOL_RESOURCES_MAX} resources or [\"*\"]")));
            }
            let wildcard = d.resources.iter().any(|r| r == "*");
            if wildcard && d.resources.len() != 1 {
                return Err(malformed("\"*\" must be the only entry of resources"));
            }
            if !wildcard {
                for r in &d.resources {
                    check_id("resource", r)?;
                }
            }
            let expires_at_ms = d.expires_at.as_deref().map(|t| parse_time("expires_at", t)).transpose()?;
            EventData::CreditsDeposited { data: d, expires_at_ms }
        }
        "access.requested" => {
            let d: AccessRequestedData = decode(kind, data)?;
            check_id("request", &d.request)?;
            check_project(&d.project)?;
            check_id("resource", &d.resource)?;
            check_text("justification", &d.justification, true)?;
            if let Some(who) = &d.on_behalf_of {
                if !is_valid_github_login(who) {
                    return Err(malformed(format!("on_behalf_of {who:?} is not a GitHub login")));
                }
            }
            check_opt_text("evidence_url", &d.evidence_url)?;
            check_positive("credits", d.credits)?;
            check_days("days", d.days)?;
            check_users(&d.users, &d.users_from_json)?;
            EventData::AccessRequested(d)
        }
        "request.approved" => {
            let d: RequestApprovedData = decode(kind, data)?;
            check_id("request", &d.request)?;
            check_opt_text("note", &d.note)?;
            if let Some(p) = &d.pool {
                check_id("pool", p)?;
            }
            check_positive("credits", d.credits)?;
            check_days("days", d.days)?;
            EventData::RequestApproved(d)
        }
        "request.denied" => {
            let d: RequestDeniedData = decode(kind, data)?;
            check_id("request", &d.request)?;
            check_text("reason", &d.reason, true)?;
            EventData::RequestDenied(d)
        }
        "request.withdrawn" => {
            let d: RequestWithdrawnData = decode(kind, data)?;
            check_id("request", &d.request)?;
            EventData::RequestWithdrawn(d)
        }
        "grant.issued" => {
            let d: GrantIssuedData = decode(kind, data)?;
            check_id("grant", &d.grant)?;
            check_project(&d.project)?;
            check_id("resource", &d.resource)?;
            if let Some(r) = &d.request {
                check_id("request", r)?;
            }
            if let Some(p) = &d.pool {
                check_id("pool", p)?;
            }
            check_positive("credit_limit", d.credit_limit)?;
            check_users(&d.users, &d.users_from_json)?;
            if let Some(roles) = &d.roles {
                if roles.len() > GRANT_ROLES_MAX {
                    return Err(malformed(format!("more than {GRANT_ROLES_MAX} roles")));
                }
                for r in roles {
                    check_name("role", r)?;
                }
            }
            let expires_at_ms = d.expires_at.as_deref().map(|t| parse_time("expires_at", t)).transpose()?;
            EventData::GrantIssued { data: d, expires_at_ms }
        }
        "grant.revoked" => {
            let d: GrantRevokedData = decode(kind, data)?;
            check_id("grant", &d.grant)?;
            check_text("reason", &d.reason, true)?;
            EventData::GrantRevoked(d)
        }
        "grant.expired" | "grant.exhausted" => {
            let d: GrantEndedData = decode(kind, data)?;
            check_id("grant", &d.grant)?;
            if kind == "grant.expired" {
                EventData::GrantExpired(d)
            } else {
                EventData::GrantExhausted(d)
            }
        }
        "usage.reported" => {
            let d: UsageReportedData = decode(kind, data)?;
            check_id("usage", &d.usage)?;
            check_project(&d.project)?;
            check_id("resource", &d.resource)?;
            check_positive("amount", Some(d.amount))?;
            let started_at_ms = parse_time("started_at", &d.started_at)?;
            let ended_at_ms = parse_time("ended_at", &d.ended_at)?;
            if ended_at_ms < started_at_ms {
                return Err(malformed("ended_at is before started_at"));
            }
            check_opt_text("run_url", &d.run_url)?;
            EventData::UsageReported { data: d, started_at_ms, ended_at_ms }
        }
        "user.terms_accepted" | "user.terms_withdrawn" => {
            let d: TermsData = decode(kind, data)?;
            check_terms(&d)?;
            if kind == "user.terms_accepted" {
                EventData::TermsAccepted(d)
            } else {
                EventData::TermsWithdrawn(d)
            }
        }
        "grants.migrated" => {
            let d: GrantsMigratedData = decode(kind, data)?;
            check_id("from_resource", &d.from_resource)?;
            check_id("to_resource", &d.to_resource)?;
            check_text("reason", &d.reason, true)?;
            if d.from_resource == d.to_resource {
                return Err(malformed("from_resource and to_resource are the same"));
            }
            EventData::GrantsMigrated(d)
        }
        other => return Err(reject(codes::UNKNOWN_EVENT_TYPE, format!("unknown event type {other:?}"))),
    })
}

fn check_actor_name(name: &str) -> Result<(), Rejection> {
    if ledger::statement::is_valid_actor_name(name) {
        Ok(())
    } else {
        Err(malformed(format!("actor {name:?} must match ^[a-z0-9][a-z0-9._-]{{0,63}}$")))
    }
}

fn check_key_name(key: &VerifierKey, actor: &str) -> Result<(), Rejection> {
    if key.name() == actor {
        Ok(())
    } else {
        Err(malformed(format!("key is named {:?}; an actor's keys carry the actor's name {actor:?}", key.name())))
    }
}

/// A deterministic id `prefix + id`, or `prefix + 16 hex digits of a hash of id` when that
/// would exceed the 128-byte id limit.
pub fn derived_id(prefix: &str, id: &str) -> String {
    if prefix.len() + id.len() <= ledger::statement::STATEMENT_ID_BYTES_MAX {
        format!("{prefix}{id}")
    } else {
        format!("{prefix}{:016x}", fnv1a64(id.as_bytes()))
    }
}

/// FNV-1a, 64 bits: a stable hash (same on every machine and version) for derived ids and
/// usage ids.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}
