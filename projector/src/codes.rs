//! Rejection codes. Each code is stable, machine-readable and has exactly one kind.
//!
//! | code | kind | meaning |
//! |---|---|---|
//! | `unknown_event_type` | Malformed | `type` is not an event type of SPEC.md section 4 |
//! | `malformed_statement` | Malformed | a common field (id, actor, issued_at, data object) is invalid |
//! | `malformed_data` | Malformed | `data` misses a field, has an unknown field, a wrong type, a zero amount, a bad key or time |
//! | `invalid_project_name` | Malformed | `project` does not match `^[a-z0-9][a-z0-9._-]{0,99}$` exactly |
//! | `wrong_ledger` | Malformed | `ledger` is not this log's origin (for the genesis: not the log key's name) |
//! | `unknown_actor` | Unauthenticated | `actor` is not registered |
//! | `key_revoked` | Unauthenticated | the actor's key that signed was revoked |
//! | `not_signed_by_actor` | Unauthenticated | no signature by an active key of `actor` |
//! | `role_required` | Forbidden | the actor lacks the role this event type needs |
//! | `not_requester` | Forbidden | only the requester may withdraw a request |
//! | `issued_in_future` | Unprocessable | `issued_at` is more than 5 minutes after the server clock |
//! | `genesis_required` | Unprocessable | the first record must be `ledger.genesis` |
//! | `genesis_repeated` | Unprocessable | `ledger.genesis` after the first record |
//! | `actor_exists` | Unprocessable | `actor.registered` for a registered name |
//! | `unknown_target_actor` | Unprocessable | the actor named in `data` is not registered |
//! | `reserved_actor` | Unprocessable | the `automation` actor's roles and keys are fixed by the genesis |
//! | `last_admin` | Unprocessable | `actor.roles_set` would leave no admin |
//! | `key_exists` | Unprocessable | `key.added` for a key id the actor has (or had: revoked keys stay revoked) |
//! | `unknown_key` | Unprocessable | `key.revoked` for a key the actor does not have |
//! | `key_already_revoked` | Unprocessable | `key.revoked` for a key revoked before |
//! | `resource_exists` | Unprocessable | `resource.defined` for a defined resource |
//! | `unknown_resource` | Unprocessable | the resource is not defined |
//! | `resource_retired` | Unprocessable | the resource was retired: no new requests, approvals or grants |
//! | `sponsor_exists` | Unprocessable | `sponsor.registered` for a registered sponsor |
//! | `unknown_sponsor` | Unprocessable | the sponsor is not registered |
//! | `unknown_pool` | Unprocessable | the pool has no deposit |
//! | `pool_mismatch` | Unprocessable | a deposit into an existing pool with another sponsor or unit |
//! | `pool_not_for_resource` | Unprocessable | the pool does not pay for this resource (or in another unit) |
//! | `credits_exceeded` | Unprocessable | the credits exceed what the pool has unallocated (or the pool expired) |
//! | `request_exists` | Unprocessable | `access.requested` with a request id in use |
//! | `unknown_request` | Unprocessable | the request does not exist |
//! | `request_closed` | Unprocessable | the request was granted, denied or withdrawn, or already has its quorum |
//! | `self_approval` | Unprocessable | the reviewer made the request or is its `on_behalf_of` person |
//! | `duplicate_approval` | Unprocessable | the reviewer already approved this request |
//! | `quorum_not_reached` | Unprocessable | automation's `grant.issued` for a request without its quorum |
//! | `grant_mismatch` | Unprocessable | automation's `grant.issued` differs from the grant the quorum computes |
//! | `grant_exists` | Unprocessable | the grant id is in use |
//! | `unknown_grant` | Unprocessable | the grant does not exist |
//! | `grant_not_active` | Unprocessable | the grant already ended |
//! | `not_due` | Unprocessable | `grant.expired` before `expires_at`, or `grant.exhausted` before `credit_limit` is used |
//! | `no_active_grant` | Unprocessable | usage for a project and resource without a grant active now or when the job started |
//! | `usage_duplicate` | Unprocessable | this `usage` id was already counted on the grant, or recorded as unauthorized |
//! | `usage_outside_grant` | Unprocessable | the job started before the grant began or after it ended, or `ended_at` is more than 5 minutes after the server clock |
//! | `terms_not_accepted` | Unprocessable | `user.terms_withdrawn` for terms the user has not accepted |
//! | `github_id_mismatch` | Unprocessable | `user.terms_withdrawn` with another GitHub id than the recorded one |
//! | `usage_granted` | Unprocessable | `usage.unauthorized` for a job that started while the project held a grant on the resource |
//! | `too_many_vouches` | Unprocessable | `job.vouched` for a commit that already has the most vouches one commit may have |

use crate::{Rejection, RejectionKind};

/// Malformed: `type` is not an event type of SPEC.md section 4.
pub const UNKNOWN_EVENT_TYPE: &str = "unknown_event_type";
/// Malformed: a common field (id, actor, issued_at, data object) is invalid.
pub const MALFORMED_STATEMENT: &str = "malformed_statement";
/// Malformed: `data` misses a field, has an unknown field, a wrong type, a zero amount, a bad key or time.
pub const MALFORMED_DATA: &str = "malformed_data";
/// Malformed: `project` does not match `^[a-z0-9][a-z0-9._-]{0,99}$` exactly.
pub const INVALID_PROJECT_NAME: &str = "invalid_project_name";
/// Malformed: `ledger` is not this log's origin (for the genesis: not the log key's name).
pub const WRONG_LEDGER: &str = "wrong_ledger";
/// Unauthenticated: `actor` is not registered.
pub const UNKNOWN_ACTOR: &str = "unknown_actor";
/// Unauthenticated: the actor's key that signed was revoked.
pub const KEY_REVOKED: &str = "key_revoked";
/// Unauthenticated: no signature by an active key of `actor`.
pub const NOT_SIGNED_BY_ACTOR: &str = "not_signed_by_actor";
/// Forbidden: the actor lacks the role this event type needs.
pub const ROLE_REQUIRED: &str = "role_required";
/// Forbidden: only the requester may withdraw a request.
pub const NOT_REQUESTER: &str = "not_requester";
/// Unprocessable: `issued_at` is more than 5 minutes after the server clock.
pub const ISSUED_IN_FUTURE: &str = "issued_in_future";
/// Unprocessable: the first record must be `ledger.genesis`.
pub const GENESIS_REQUIRED: &str = "genesis_required";
/// Unprocessable: `ledger.genesis` after the first record.
pub const GENESIS_REPEATED: &str = "genesis_repeated";
/// Unprocessable: `actor.registered` for a registered name.
pub const ACTOR_EXISTS: &str = "actor_exists";
/// Unprocessable: the actor named in `data` is not registered.
pub const UNKNOWN_TARGET_ACTOR: &str = "unknown_target_actor";
/// Unprocessable: the `automation` actor's roles and keys are fixed by the genesis.
pub const RESERVED_ACTOR: &str = "reserved_actor";
/// Unprocessable: `actor.roles_set` would leave no admin.
pub const LAST_ADMIN: &str = "last_admin";
/// Unprocessable: `key.added` for a key id the actor has (or had: revoked keys stay revoked).
pub const KEY_EXISTS: &str = "key_exists";
/// Unprocessable: `key.revoked` for a key the actor does not have.
pub const UNKNOWN_KEY: &str = "unknown_key";
/// Unprocessable: `key.revoked` for a key revoked before.
pub const KEY_ALREADY_REVOKED: &str = "key_already_revoked";
/// Unprocessable: `resource.defined` for a defined resource.
pub const RESOURCE_EXISTS: &str = "resource_exists";
/// Unprocessable: the resource is not defined.
pub const UNKNOWN_RESOURCE: &str = "unknown_resource";
/// Unprocessable: the resource was retired: no new requests, approvals or grants.
pub const RESOURCE_RETIRED: &str = "resource_retired";
/// Unprocessable: `sponsor.registered` for a registered sponsor.
pub const SPONSOR_EXISTS: &str = "sponsor_exists";
/// Unprocessable: the sponsor is not registered.
pub const UNKNOWN_SPONSOR: &str = "unknown_sponsor";
/// Unprocessable: the pool has no deposit.
pub const UNKNOWN_POOL: &str = "unknown_pool";
/// Unprocessable: a deposit into an existing pool with another sponsor or unit.
pub const POOL_MISMATCH: &str = "pool_mismatch";
/// Unprocessable: the pool does not pay for this resource (or in another unit).
pub const POOL_NOT_FOR_RESOURCE: &str = "pool_not_for_resource";
/// Unprocessable: the credits exceed what the pool has unallocated (or the pool expired).
pub const CREDITS_EXCEEDED: &str = "credits_exceeded";
/// Unprocessable: `access.requested` with a request id in use.
pub const REQUEST_EXISTS: &str = "request_exists";
/// Unprocessable: the request does not exist.
pub const UNKNOWN_REQUEST: &str = "unknown_request";
/// Unprocessable: the request was granted, denied or withdrawn, or already has its quorum.
pub const REQUEST_CLOSED: &str = "request_closed";
/// Unprocessable: the reviewer made the request or is its `on_behalf_of` person.
pub const SELF_APPROVAL: &str = "self_approval";
/// Unprocessable: the reviewer already approved this request.
pub const DUPLICATE_APPROVAL: &str = "duplicate_approval";
/// Unprocessable: automation's `grant.issued` for a request without its quorum.
pub const QUORUM_NOT_REACHED: &str = "quorum_not_reached";
/// Unprocessable: automation's `grant.issued` differs from the grant the quorum computes.
pub const GRANT_MISMATCH: &str = "grant_mismatch";
/// Unprocessable: the grant id is in use.
pub const GRANT_EXISTS: &str = "grant_exists";
/// Unprocessable: the grant does not exist.
pub const UNKNOWN_GRANT: &str = "unknown_grant";
/// Unprocessable: the grant already ended.
pub const GRANT_NOT_ACTIVE: &str = "grant_not_active";
/// Unprocessable: `grant.expired` before `expires_at`, or `grant.exhausted` before `credit_limit` is used.
pub const NOT_DUE: &str = "not_due";
/// Unprocessable: usage for a project and resource without a grant active now or when the job started.
pub const NO_ACTIVE_GRANT: &str = "no_active_grant";
/// Unprocessable: this `usage` id was already counted on the grant, or recorded as unauthorized.
pub const USAGE_DUPLICATE: &str = "usage_duplicate";
/// Unprocessable: the job started before the grant began or after it ended, or `ended_at` is more than 5 minutes after the server clock.
pub const USAGE_OUTSIDE_GRANT: &str = "usage_outside_grant";
/// Unprocessable: `user.terms_withdrawn` for terms the user has not accepted.
pub const TERMS_NOT_ACCEPTED: &str = "terms_not_accepted";
/// Unprocessable: `user.terms_withdrawn` with another GitHub id than the recorded one.
pub const GITHUB_ID_MISMATCH: &str = "github_id_mismatch";
/// Unprocessable: `usage.unauthorized` for a job that started while the project held a grant on the resource.
pub const USAGE_GRANTED: &str = "usage_granted";
/// Unprocessable: `job.vouched` for a commit that already has the most vouches one commit may have.
pub const TOO_MANY_VOUCHES: &str = "too_many_vouches";

/// Every code with its kind.
pub const ALL: &[(&str, RejectionKind)] = &[
    (UNKNOWN_EVENT_TYPE, RejectionKind::Malformed),
    (MALFORMED_STATEMENT, RejectionKind::Malformed),
    (MALFORMED_DATA, RejectionKind::Malformed),
    (INVALID_PROJECT_NAME, RejectionKind::Malformed),
    (WRONG_LEDGER, RejectionKind::Malformed),
    (UNKNOWN_ACTOR, RejectionKind::Unauthenticated),
    (KEY_REVOKED, RejectionKind::Unauthenticated),
    (NOT_SIGNED_BY_ACTOR, RejectionKind::Unauthenticated),
    (ROLE_REQUIRED, RejectionKind::Forbidden),
    (NOT_REQUESTER, RejectionKind::Forbidden),
    (ISSUED_IN_FUTURE, RejectionKind::Unprocessable),
    (GENESIS_REQUIRED, RejectionKind::Unprocessable),
    (GENESIS_REPEATED, RejectionKind::Unprocessable),
    (ACTOR_EXISTS, RejectionKind::Unprocessable),
    (UNKNOWN_TARGET_ACTOR, RejectionKind::Unprocessable),
    (RESERVED_ACTOR, RejectionKind::Unprocessable),
    (LAST_ADMIN, RejectionKind::Unprocessable),
    (KEY_EXISTS, RejectionKind::Unprocessable),
    (UNKNOWN_KEY, RejectionKind::Unprocessable),
    (KEY_ALREADY_REVOKED, RejectionKind::Unprocessable),
    (RESOURCE_EXISTS, RejectionKind::Unprocessable),
    (UNKNOWN_RESOURCE, RejectionKind::Unprocessable),
    (RESOURCE_RETIRED, RejectionKind::Unprocessable),
    (SPONSOR_EXISTS, RejectionKind::Unprocessable),
    (UNKNOWN_SPONSOR, RejectionKind::Unprocessable),
    (UNKNOWN_POOL, RejectionKind::Unprocessable),
    (POOL_MISMATCH, RejectionKind::Unprocessable),
    (POOL_NOT_FOR_RESOURCE, RejectionKind::Unprocessable),
    (CREDITS_EXCEEDED, RejectionKind::Unprocessable),
    (REQUEST_EXISTS, RejectionKind::Unprocessable),
    (UNKNOWN_REQUEST, RejectionKind::Unprocessable),
    (REQUEST_CLOSED, RejectionKind::Unprocessable),
    (SELF_APPROVAL, RejectionKind::Unprocessable),
    (DUPLICATE_APPROVAL, RejectionKind::Unprocessable),
    (QUORUM_NOT_REACHED, RejectionKind::Unprocessable),
    (GRANT_MISMATCH, RejectionKind::Unprocessable),
    (GRANT_EXISTS, RejectionKind::Unprocessable),
    (UNKNOWN_GRANT, RejectionKind::Unprocessable),
    (GRANT_NOT_ACTIVE, RejectionKind::Unprocessable),
    (NOT_DUE, RejectionKind::Unprocessable),
    (NO_ACTIVE_GRANT, RejectionKind::Unprocessable),
    (USAGE_DUPLICATE, RejectionKind::Unprocessable),
    (USAGE_OUTSIDE_GRANT, RejectionKind::Unprocessable),
    (TERMS_NOT_ACCEPTED, RejectionKind::Unprocessable),
    (GITHUB_ID_MISMATCH, RejectionKind::Unprocessable),
    (USAGE_GRANTED, RejectionKind::Unprocessable),
    (TOO_MANY_VOUCHES, RejectionKind::Unprocessable),
];

/// The kind of a code (Unprocessable for a code not in [`ALL`]).
pub fn kind_of(code: &str) -> RejectionKind {
    ALL.iter().find(|(c, _)| *c == code).map_or(RejectionKind::Unprocessable, |(_, k)| *k)
}

/// A rejection with the code's kind.
pub fn reject(code: &str, message: impl Into<String>) -> Rejection {
    Rejection { code: code.to_string(), message: message.into(), kind: kind_of(code) }
}
