//! conda-forge interop: Cirun `.access.yml` export and import, admin-requests files.

use ledger::statement::Statement;

use crate::State;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InteropError {
    #[error("invalid YAML: {0}")]
    Yaml(String),
    #[error("{0}")]
    Invalid(String),
}

/// What the statements built from a file are signed as.
#[derive(Debug, Clone)]
pub struct StatementContext {
    pub ledger: String,
    pub actor: String,
    pub now_ms: i64,
    /// Prefix of the generated statement ids, so one import is idempotent.
    pub id_prefix: String,
}

/// The allocations as a Cirun `.access.yml`, in a stable order.
pub fn cirun_access_yaml(state: &State, now_ms: i64) -> String {
    todo!()
}

/// The admin-signed `resource.defined` and `grant.issued` statements that reproduce a Cirun
/// `.access.yml` (a migration import).
pub fn import_cirun_access(yaml: &str, ctx: &StatementContext) -> Result<Vec<Statement>, InteropError> {
    todo!()
}

/// The `access.requested` (or, with `revoke: true`, `grant.revoked`) statements an
/// admin-requests file means.
pub fn admin_request_statements(
    yaml: &str,
    state: &State,
    ctx: &StatementContext,
) -> Result<Vec<Statement>, InteropError> {
    todo!()
}
