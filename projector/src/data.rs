//! The `data` object of each event type (SPEC.md section 4), decoded strictly: unknown
//! fields are rejected, required fields must be present, amounts are positive integers.

use ledger::keys::VerifierKey;
use ledger::statement::{is_valid_statement_id, parse_rfc3339_ms};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::codes::{self, reject};
use crate::Rejection;

pub use crate::limits::{
    COMMIT_SHA_HEX_CHARS, DAYS_MAX, GENESIS_ADMINS_MAX, GITHUB_LOGIN_BYTES_MAX, GRANT_ROLES_MAX, NAME_BYTES_MAX,
    POLICY_ID_BYTES_MAX, POOL_RESOURCES_MAX, PROJECT_NAME_BYTES_MAX, TEXT_BYTES_MAX, USERS_MAX,
};
use ledger::statement::{ACTOR_NAME_BYTES_MAX, STATEMENT_ID_BYTES_MAX};

/// Milliseconds in one day.
pub const DAY_MS: i64 = 86_400_000;

/// Every event type (`type` of a statement), in the order SPEC.md section 4 lists them, except
/// the runner layer's two (`usage.unauthorized`, `job.vouched`): they come last, so the fuzz
/// corpus, which names event types by their index here, keeps its meaning.
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
    "usage.unauthorized",
    "job.vouched",
];

/// The roles of SPEC.md section 4.
pub const ROLES: &[&str] = &["admin", "reviewer", "requester", "meter", "sponsor"];

/// Cirun's default repository roles for a grant.
pub const DEFAULT_GRANT_ROLES: &[&str] = &["admin", "maintain", "write"];

/// `ledger.genesis`: the first record, naming the admins and the automation and log keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisData {
    /// Verifier keys of the first admins, each named as its actor (1 to [`GENESIS_ADMINS_MAX`]).
    pub admins: Vec<String>,
    /// The verifier key of the `automation` actor, which issues grants on quorum and ends them.
    pub automation_key: String,
    /// The verifier key that signs checkpoints; its name is the log origin.
    pub log_key: String,
}

/// `actor.registered`: a new actor with its first key and its roles.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActorRegisteredData {
    /// The new actor's name.
    pub actor: String,
    /// Its first verifier key, named as the actor.
    pub key: String,
    /// Its roles (of [`ROLES`]).
    pub roles: Vec<String>,
}

/// `actor.roles_set`: an actor's roles, replaced.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActorRolesSetData {
    /// The actor whose roles change.
    pub actor: String,
    /// Its roles from now on (replacing the old ones).
    pub roles: Vec<String>,
}

/// `key.added` and `key.revoked`: an actor's key, added or revoked for good.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyData {
    /// The actor the key belongs to.
    pub actor: String,
    /// The verifier key, named as the actor.
    pub key: String,
    /// Why (free text; used on revocation).
    pub reason: Option<String>,
}

/// `resource.defined`: something grants give access to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceDefinedData {
    /// The resource id (for Cirun, the runner label).
    pub resource: String,
    /// Who provides it, e.g. `cirun`.
    pub provider: String,
    /// What credits on it count, e.g. `runner-minutes`; pools pay in one unit.
    pub unit: String,
    /// Reviewer approvals a request needs before its grant is issued (at least 1).
    pub approvals_required: u32,
    /// Free text for people.
    pub description: Option<String>,
    /// Grants on it last at most this many days (and this long when a request names none).
    pub max_days: Option<u64>,
    /// The terms version users must accept to use it, if any.
    pub terms: Option<String>,
}

/// `resource.retired`: a resource withdrawn from use.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceRetiredData {
    /// The resource retired: no new requests, approvals or grants on it.
    pub resource: String,
}

/// `sponsor.registered`: someone who deposits credits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SponsorRegisteredData {
    /// The sponsor id.
    pub sponsor: String,
    /// Its display name.
    pub name: String,
}

/// `credits.deposited`: a sponsor's credits into a pool.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreditsDepositedData {
    /// The pool the credits go to (created by its first deposit).
    pub pool: String,
    /// The sponsor paying; a pool has one sponsor.
    pub sponsor: String,
    /// Credits deposited (positive), in `unit`.
    pub amount: u64,
    /// The unit of the credits; a pool has one unit.
    pub unit: String,
    /// The resources the pool pays for, or `["*"]` for all in its unit.
    pub resources: Vec<String>,
    /// When the pool's unallocated credits lapse (RFC 3339), if they do.
    pub expires_at: Option<String>,
}

/// `access.requested`: a project asks for a resource.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRequestedData {
    /// The request id.
    pub request: String,
    /// The project (repository) asking.
    pub project: String,
    /// The resource asked for.
    pub resource: String,
    /// Why (free text, required).
    pub justification: String,
    /// Whether jobs from pull requests should run too.
    pub pull_request: bool,
    /// The GitHub login of the person asking, when a bot files the request; they may
    /// not approve it.
    pub on_behalf_of: Option<String>,
    /// A link supporting the request.
    pub evidence_url: Option<String>,
    /// Credits asked for (approvals may override).
    pub credits: Option<u64>,
    /// Days asked for (approvals may override; capped by the resource's `max_days`).
    pub days: Option<u64>,
    /// GitHub logins allowed to use the grant, if limited.
    pub users: Option<Vec<String>>,
    /// A URL of a `users.json` listing them, instead of `users`.
    pub users_from_json: Option<String>,
}

/// `request.approved`: one reviewer's approval, possibly setting the grant's terms.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestApprovedData {
    /// The request approved.
    pub request: String,
    /// The reviewer's note.
    pub note: Option<String>,
    /// The pool the grant draws on (the latest approval that sets it wins).
    pub pool: Option<String>,
    /// Credits for the grant, overriding the request's.
    pub credits: Option<u64>,
    /// Days for the grant, overriding the request's.
    pub days: Option<u64>,
}

/// `request.denied`: a reviewer closes a request without a grant.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestDeniedData {
    /// The request denied.
    pub request: String,
    /// Why (free text, required).
    pub reason: String,
}

/// `request.withdrawn`: the requester closes their own request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestWithdrawnData {
    /// The request withdrawn.
    pub request: String,
}

/// `grant.issued` data; also built by [`crate::automation`] and the Cirun import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantIssuedData {
    /// The grant id.
    pub grant: String,
    /// The project granted access.
    pub project: String,
    /// The resource it may use.
    pub resource: String,
    /// Whether jobs from pull requests may run.
    pub pull_request: bool,
    /// The request it answers (always set when automation issues it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// The pool its usage is paid from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// Credits it may use; it is exhausted when usage reaches them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credit_limit: Option<u64>,
    /// When it expires (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// GitHub logins allowed to use it, if limited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<Vec<String>>,
    /// A URL of a `users.json` listing them, instead of `users`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users_from_json: Option<String>,
    /// Repository roles whose members may use it ([`DEFAULT_GRANT_ROLES`] when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    /// The runner-configuration policy id a migration import read (Cirun's
    /// `pytorch-cpu-feedstock-windows-policy`), so exports keep it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
}

/// `grant.revoked`: an admin or reviewer ends a grant early.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantRevokedData {
    /// The grant revoked.
    pub grant: String,
    /// Why (free text, required).
    pub reason: String,
}

/// `grant.expired` and `grant.exhausted`: automation records that a grant ran out.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantEndedData {
    /// The grant that ended.
    pub grant: String,
}

/// `usage.reported`: a meter reports what a job used, debited from the active grant.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageReportedData {
    /// The usage id: a second report with the same id on the same grant is refused.
    pub usage: String,
    /// The project that used the resource.
    pub project: String,
    /// The resource used.
    pub resource: String,
    /// How much (positive), in the resource's unit.
    pub amount: u64,
    /// When the job started (RFC 3339).
    pub started_at: String,
    /// When it ended (RFC 3339, not before `started_at`); the day usage counts on.
    pub ended_at: String,
    /// A link to the job.
    pub run_url: Option<String>,
}

/// `usage.unauthorized`: the automation key records a job that ran on a gated runner without
/// access (cross-access), publicly; it debits nothing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageUnauthorizedData {
    /// The usage id (`gh:<repository id>:<job id>:<run attempt>` from webhooks); a usage id
    /// already reported or recorded as unauthorized is refused.
    pub usage: String,
    /// The project (repository) whose job ran.
    pub project: String,
    /// The resource it ran on.
    pub resource: String,
    /// When the job started (RFC 3339).
    pub started_at: String,
    /// When it ended (RFC 3339, not before `started_at`).
    pub ended_at: String,
    /// The access check's denial at the job's start (`no_request`, `grant_revoked`, ...).
    pub reason: String,
    /// A link to the job.
    pub run_url: Option<String>,
}

/// `job.vouched`: the bot that made a commit says, signed, which GitHub user asked for it, so
/// a job a bot triggers on that commit counts, at the job gate, as triggered by that user.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobVouchedData {
    /// The project (repository) of the commit.
    pub project: String,
    /// The commit: exactly [`COMMIT_SHA_HEX_CHARS`] lowercase hex digits.
    pub head_sha: String,
    /// The GitHub login of the person who asked for the commit.
    pub user: String,
    /// Their numeric GitHub id (a renamed or re-registered login does not inherit a vouch).
    pub github_id: u64,
    /// The command they gave the bot (e.g. `@conda-forge-admin, please rerender`).
    pub command: Option<String>,
    /// A link to where they asked.
    pub evidence_url: Option<String>,
}

/// `user.terms_accepted` and `user.terms_withdrawn`: a user's acceptance of a terms version.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TermsData {
    /// The GitHub login (case-insensitive).
    pub user: String,
    /// The numeric GitHub id the acceptance is tied to (logins can be renamed and reused).
    pub github_id: u64,
    /// The terms version.
    pub terms: String,
    /// A link showing the user's acceptance.
    pub evidence_url: Option<String>,
}

/// `grants.migrated`: every active grant on a resource continues on another.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantsMigratedData {
    /// The resource whose active grants move.
    pub from_resource: String,
    /// The resource they move to (open, not retired).
    pub to_resource: String,
    /// Why (free text, required).
    pub reason: String,
}

/// A decoded and validated `data` object.
#[derive(Debug, Clone)]
pub enum EventData {
    /// `ledger.genesis`, with its keys parsed.
    Genesis {
        /// The first admins' keys, each named as its actor.
        admins: Vec<VerifierKey>,
        /// The key of the `automation` actor.
        automation_key: VerifierKey,
        /// The key that signs checkpoints.
        log_key: VerifierKey,
    },
    /// `actor.registered`, with the key parsed and the roles sorted.
    ActorRegistered {
        /// The new actor.
        actor: String,
        /// Its first key.
        key: VerifierKey,
        /// Its roles, sorted and without duplicates.
        roles: Vec<String>,
    },
    /// `actor.roles_set`, with the roles sorted.
    ActorRolesSet {
        /// The actor whose roles change.
        actor: String,
        /// Its new roles, sorted and without duplicates.
        roles: Vec<String>,
    },
    /// `key.added`, with the key parsed.
    KeyAdded {
        /// The actor the key is for.
        actor: String,
        /// The new key.
        key: VerifierKey,
    },
    /// `key.revoked`, with the key parsed.
    KeyRevoked {
        /// The actor whose key it is.
        actor: String,
        /// The key revoked.
        key: VerifierKey,
        /// Why.
        reason: Option<String>,
    },
    /// `resource.defined`.
    ResourceDefined(ResourceDefinedData),
    /// `resource.retired`.
    ResourceRetired(ResourceRetiredData),
    /// `sponsor.registered`.
    SponsorRegistered(SponsorRegisteredData),
    /// `credits.deposited`, with the expiry parsed.
    CreditsDeposited {
        /// The data as sent.
        data: CreditsDepositedData,
        /// `expires_at` in Unix milliseconds.
        expires_at_ms: Option<i64>,
    },
    /// `access.requested`.
    AccessRequested(AccessRequestedData),
    /// `request.approved`.
    RequestApproved(RequestApprovedData),
    /// `request.denied`.
    RequestDenied(RequestDeniedData),
    /// `request.withdrawn`.
    RequestWithdrawn(RequestWithdrawnData),
    /// `grant.issued`, with the expiry parsed.
    GrantIssued {
        /// The data as sent.
        data: GrantIssuedData,
        /// `expires_at` in Unix milliseconds.
        expires_at_ms: Option<i64>,
    },
    /// `grant.revoked`.
    GrantRevoked(GrantRevokedData),
    /// `grant.expired`.
    GrantExpired(GrantEndedData),
    /// `grant.exhausted`.
    GrantExhausted(GrantEndedData),
    /// `usage.reported`, with the times parsed.
    UsageReported {
        /// The data as sent.
        data: UsageReportedData,
        /// `started_at` in Unix milliseconds.
        started_at_ms: i64,
        /// `ended_at` in Unix milliseconds.
        ended_at_ms: i64,
    },
    /// `user.terms_accepted`.
    TermsAccepted(TermsData),
    /// `user.terms_withdrawn`.
    TermsWithdrawn(TermsData),
    /// `grants.migrated`.
    GrantsMigrated(GrantsMigratedData),
    /// `usage.unauthorized`, with the times parsed.
    UsageUnauthorized {
        /// The data as sent.
        data: UsageUnauthorizedData,
        /// `started_at` in Unix milliseconds.
        started_at_ms: i64,
        /// `ended_at` in Unix milliseconds.
        ended_at_ms: i64,
    },
    /// `job.vouched`.
    JobVouched(JobVouchedData),
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

/// A commit id as `job.vouched` records it: exactly [`COMMIT_SHA_HEX_CHARS`] lowercase hex
/// digits (no case folding: the job gate lowercases the job's `head_sha` before comparing).
pub fn is_valid_commit_sha(sha: &str) -> bool {
    sha.len() == COMMIT_SHA_HEX_CHARS && sha.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Ids of requests, grants, pools, sponsors, resources and usage reports follow the
/// statement-id rule: 1-128 characters of `[A-Za-z0-9._:-]`.
fn check_id(field: &str, value: &str) -> Result<(), Rejection> {
    if is_valid_statement_id(value) {
        Ok(())
    } else {
        Err(malformed(format!("{field} {value:?} must be 1-{STATEMENT_ID_BYTES_MAX} characters of [A-Za-z0-9._:-]")))
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
        return Ok(());
    }
    let more = PROJECT_NAME_BYTES_MAX - 1;
    let mut message = format!("project {value:?} must match ^[a-z0-9][a-z0-9._-]{{0,{more}}}$");
    if let Some(fix) = crate::suggest::project_name_fix(value) {
        message.push_str(&format!("; {fix}"));
    }
    Err(reject(codes::INVALID_PROJECT_NAME, message))
}

/// Policy ids come from outside files (Cirun's `.access.yml`): any text an export can write
/// back unchanged, without spaces or control characters.
fn check_policy(value: &str) -> Result<(), Rejection> {
    if value.is_empty()
        || value.len() > POLICY_ID_BYTES_MAX
        || value.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(malformed(format!("policy {value:?} must be 1-{POLICY_ID_BYTES_MAX} bytes without spaces")));
    }
    Ok(())
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
            if let Some(policy) = &d.policy {
                check_policy(policy)?;
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
        "usage.unauthorized" => {
            let d: UsageUnauthorizedData = decode(kind, data)?;
            check_id("usage", &d.usage)?;
            check_project(&d.project)?;
            check_id("resource", &d.resource)?;
            let started_at_ms = parse_time("started_at", &d.started_at)?;
            let ended_at_ms = parse_time("ended_at", &d.ended_at)?;
            if ended_at_ms < started_at_ms {
                return Err(malformed("ended_at is before started_at"));
            }
            check_text("reason", &d.reason, true)?;
            check_opt_text("run_url", &d.run_url)?;
            EventData::UsageUnauthorized { data: d, started_at_ms, ended_at_ms }
        }
        "job.vouched" => {
            let d: JobVouchedData = decode(kind, data)?;
            check_project(&d.project)?;
            if !is_valid_commit_sha(&d.head_sha) {
                return Err(malformed(format!(
                    "head_sha {:?} must be {COMMIT_SHA_HEX_CHARS} lowercase hex digits",
                    d.head_sha
                )));
            }
            if !is_valid_github_login(&d.user) {
                return Err(malformed(format!("user {:?} is not a GitHub login", d.user)));
            }
            check_positive("github_id", Some(d.github_id))?;
            check_opt_text("command", &d.command)?;
            check_opt_text("evidence_url", &d.evidence_url)?;
            EventData::JobVouched(d)
        }
        other => return Err(reject(codes::UNKNOWN_EVENT_TYPE, format!("unknown event type {other:?}"))),
    })
}

fn check_actor_name(name: &str) -> Result<(), Rejection> {
    if ledger::statement::is_valid_actor_name(name) {
        Ok(())
    } else {
        let more = ACTOR_NAME_BYTES_MAX - 1;
        Err(malformed(format!("actor {name:?} must match ^[a-z0-9][a-z0-9._-]{{0,{more}}}$")))
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
    if prefix.len() + id.len() <= STATEMENT_ID_BYTES_MAX {
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
