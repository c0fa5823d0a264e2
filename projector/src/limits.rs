//! Every limit of the projector, as a named constant (units last): the bounds a statement's
//! `data`, the clock and the interop files meet, in one place.
//!
//! The modules that enforce a limit re-export it under its old path
//! (`projector::data::TEXT_BYTES_MAX`, `projector::ISSUED_AT_FUTURE_MS_MAX`, ...). A limit
//! that follows from another one is computed from it here, never copied. The ledger's own
//! limits (statement ids, actor names, envelope and leaf sizes) are in `ledger::limits`.

/// `issued_at` (and a usage report's `ended_at`) may be at most this many minutes after the
/// server clock (client clocks drift; a statement dated further ahead is refused).
pub const ISSUED_AT_FUTURE_MINUTES_MAX: i64 = 5;
/// [`ISSUED_AT_FUTURE_MINUTES_MAX`] in milliseconds, the unit of the clocks it is checked on.
pub const ISSUED_AT_FUTURE_MS_MAX: i64 = ISSUED_AT_FUTURE_MINUTES_MAX * 60 * 1000;

/// At most this many automatic statements are returned per call to `automation`; the rest
/// follow on the next call.
pub const AUTOMATION_STATEMENTS_MAX: usize = 1024;

/// Free text (justification, notes, reasons, descriptions, URLs) longer than this is rejected.
pub const TEXT_BYTES_MAX: usize = 4096;
/// Names of providers, units, terms versions and grant roles are 1 to this many bytes.
pub const NAME_BYTES_MAX: usize = 128;
/// People on one grant's or request's `users` list.
pub const USERS_MAX: usize = 1000;
/// Resources one pool may pay for.
pub const POOL_RESOURCES_MAX: usize = 256;
/// Admins named in the genesis.
pub const GENESIS_ADMINS_MAX: usize = 16;
/// Roles on one grant (Cirun's repository roles).
pub const GRANT_ROLES_MAX: usize = 16;
/// `days` / `max_days` larger than this (about a century) are rejected, so time arithmetic
/// stays in range.
pub const DAYS_MAX: u64 = 36_500;
/// Project names (`^[a-z0-9][a-z0-9._-]{0,99}$`) are 1 to this many bytes.
pub const PROJECT_NAME_BYTES_MAX: usize = 100;
/// GitHub logins are 1 to this many characters.
pub const GITHUB_LOGIN_BYTES_MAX: usize = 39;
/// A grant's `policy` (the runner-configuration policy id a migration import read, e.g.
/// Cirun's `pytorch-cpu-feedstock-windows-policy`) is 1 to this many bytes.
pub const POLICY_ID_BYTES_MAX: usize = 128;

/// `explain` suggests a defined resource for an unknown one only within this many edits
/// (insertions, deletions, substitutions; case ignored): further away it is a guess.
pub const RESOURCE_SUGGESTION_EDITS_MAX: usize = 4;

/// Policies in one imported Cirun `.access.yml` (a bound on hostile input).
pub const IMPORT_POLICIES_MAX: usize = 10_000;
/// Feedstocks × resources in one admin-requests file.
pub const ADMIN_REQUEST_PAIRS_MAX: usize = 1_000;

/// A `runs-on` label longer than this many bytes is malformed (DESIGN section 13): no runner
/// label is that long, and the bound keeps hostile job facts cheap to read.
pub const LABEL_BYTES_MAX: usize = 256;
/// A job with more `runs-on` labels than this is malformed (GitHub jobs carry a handful: the
/// runner's label, its OS and architecture).
pub const JOB_LABELS_MAX: usize = 64;
/// A commit id (`head_sha`, `job.vouched`) is exactly this many lowercase hex digits (SHA-1).
pub const COMMIT_SHA_HEX_CHARS: usize = 40;
/// Users vouched for one commit of one project (`job.vouched`); a further vouch is refused
/// (`too_many_vouches`), so one commit cannot grow the state without bound. A vouch for a
/// user already vouched for replaces theirs and does not count twice.
pub const VOUCHES_PER_COMMIT_MAX: usize = 16;
/// Pages flag an active grant whose last use (or issue, if never used) is at least this many
/// days ago: idle grants hold scarce runners and pool credits others could use.
pub const GRANT_IDLE_DAYS_FLAG: u64 = 30;
/// A job that started under a grant may be billed to it for this many days after the grant
/// ended (its report comes when it completes: GitHub runs a self-hosted job for at most 5
/// days; 2 more for delivery retries and a meter's daily batch). Then the grant forgets its
/// usage ids, so the state does not grow with every report ever made, and takes no more.
pub const USAGE_LATE_DAYS_MAX: i64 = 7;
/// [`USAGE_LATE_DAYS_MAX`] in milliseconds, the unit of the clocks it is checked on.
pub const USAGE_LATE_MS_MAX: i64 = USAGE_LATE_DAYS_MAX * 24 * 60 * 60 * 1000;
