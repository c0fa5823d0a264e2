//! The JSON statement inside a DSSE envelope (SPEC.md section 3).
//!
//! The ledger decodes only the common fields; `data` stays a JSON object that the projector
//! interprets per event type.

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

pub use crate::limits::{ACTOR_NAME_BYTES_MAX, JSON_DEPTH_MAX, STATEMENT_ID_BYTES_MAX};

/// Why a payload is not a valid statement.
#[derive(Debug, thiserror::Error)]
pub enum StatementError {
    /// The payload bytes are not UTF-8.
    #[error("statement is not valid UTF-8")]
    NotUtf8,
    /// Nested deeper than [`JSON_DEPTH_MAX`]: refused before parsing.
    #[error("statement JSON nests deeper than {JSON_DEPTH_MAX} levels")]
    TooDeep,
    /// Not JSON, or JSON not of the statement's shape (missing or unknown fields, wrong
    /// types); the message says which.
    #[error("{}", json_problem(.0))]
    Json(#[source] serde_json::Error),
    /// The `id` breaks the statement-id rule.
    #[error("invalid statement id {0:?}: 1-{STATEMENT_ID_BYTES_MAX} characters of [A-Za-z0-9._:-]")]
    InvalidId(String),
    /// The `actor` is not a valid actor name.
    #[error("invalid actor name {0:?}: must match ^[a-z0-9][a-z0-9._-]{{0,{max}}}$", max = ACTOR_NAME_BYTES_MAX - 1)]
    InvalidActor(String),
    /// `issued_at` is not an RFC 3339 UTC timestamp.
    #[error("invalid issued_at {0:?}: must be an RFC 3339 UTC timestamp")]
    InvalidTime(String),
    /// `data` is not a JSON object.
    #[error("data must be a JSON object")]
    DataNotObject,
}

/// `serde_json::Error` has no equality: two JSON errors are equal when they say the same.
impl PartialEq for StatementError {
    fn eq(&self, other: &Self) -> bool {
        use StatementError::*;
        match self {
            NotUtf8 => matches!(other, NotUtf8),
            TooDeep => matches!(other, TooDeep),
            Json(a) => matches!(other, Json(b) if a.to_string() == b.to_string()),
            InvalidId(a) => matches!(other, InvalidId(b) if a == b),
            InvalidActor(a) => matches!(other, InvalidActor(b) if a == b),
            InvalidTime(a) => matches!(other, InvalidTime(b) if a == b),
            DataNotObject => matches!(other, DataNotObject),
        }
    }
}

impl Eq for StatementError {}

/// The signed JSON statement: the common fields the ledger checks, and `data` that the
/// projector interprets per event type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    /// The origin of the log the statement is meant for, so it cannot be replayed into another.
    pub ledger: String,
    /// The statement id: the idempotency key ([`is_valid_statement_id`]).
    pub id: String,
    /// Who makes the statement; one of the signatures must be by an active key of this actor.
    pub actor: String,
    /// When the client made it: RFC 3339 UTC, as written (so the signed bytes stay the same).
    pub issued_at: String,
    /// The event type, e.g. `request.approved` (`type` in JSON).
    #[serde(rename = "type")]
    pub kind: String,
    /// The event data, a JSON object; decoded by the projector.
    pub data: serde_json::Value,
}

impl Statement {
    /// Decodes and validates a statement from the envelope's payload bytes.
    pub fn parse(payload: &[u8]) -> Result<Statement, StatementError> {
        let text = std::str::from_utf8(payload).map_err(|_| StatementError::NotUtf8)?;
        if json_depth_exceeds(text, JSON_DEPTH_MAX) {
            return Err(StatementError::TooDeep);
        }
        let st: Statement = serde_json::from_str(text).map_err(StatementError::Json)?;
        st.validate()?;
        Ok(st)
    }

    /// Checks the common fields: id, actor name, `issued_at` as RFC 3339 UTC, `data` an object.
    /// [`Statement::parse`] calls it; the projector calls it again on statements it builds.
    pub fn validate(&self) -> Result<(), StatementError> {
        if !is_valid_statement_id(&self.id) {
            return Err(StatementError::InvalidId(self.id.clone()));
        }
        if !is_valid_actor_name(&self.actor) {
            return Err(StatementError::InvalidActor(self.actor.clone()));
        }
        parse_rfc3339_utc_ms(&self.issued_at).ok_or_else(|| StatementError::InvalidTime(self.issued_at.clone()))?;
        if !self.data.is_object() {
            return Err(StatementError::DataNotObject);
        }
        Ok(())
    }

    /// `issued_at` in Unix milliseconds. Valid after [`Statement::parse`].
    pub fn issued_at_ms(&self) -> i64 {
        parse_rfc3339_ms(&self.issued_at).unwrap_or(i64::MIN)
    }

    /// The payload bytes a client signs.
    pub fn to_payload(&self) -> Vec<u8> {
        // Serialising a struct of strings and a Value cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// The statement-id rule: 1 to [`STATEMENT_ID_BYTES_MAX`] bytes of `[A-Za-z0-9._:-]`. Ids are
/// idempotency keys and appear in URLs, so they need no escaping.
pub fn is_valid_statement_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= STATEMENT_ID_BYTES_MAX
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// The actor-name rule: `^[a-z0-9][a-z0-9._-]{0,63}$` (at most [`ACTOR_NAME_BYTES_MAX`] bytes).
/// Lowercase only, so two actors never differ by case alone.
pub fn is_valid_actor_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= ACTOR_NAME_BYTES_MAX
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes.iter().all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
}

/// Parses an RFC 3339 timestamp to Unix milliseconds.
pub fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    let t = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// Parses an RFC 3339 timestamp in UTC (`Z` or `+00:00`) to Unix milliseconds.
pub fn parse_rfc3339_utc_ms(text: &str) -> Option<i64> {
    let t = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    if !t.offset().is_utc() {
        return None;
    }
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// Formats Unix milliseconds as RFC 3339 UTC (`2026-11-29T01:02:03.456Z`, or without the
/// fraction when it is zero).
pub fn format_rfc3339_ms(ms: i64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    match OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(t) => t.format(&Rfc3339).unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// True when `text` has JSON arrays/objects nested deeper than `max` (strings are skipped).
fn json_depth_exceeds(text: &str, max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for b in text.bytes() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// "not valid JSON", or "JSON but not a statement" with the fields it must have.
fn json_problem(e: &serde_json::Error) -> String {
    if e.classify() == serde_json::error::Category::Data {
        format!(
            "the payload is JSON but not a statement: expected {{\"ledger\", \"id\", \"actor\", \"issued_at\", \
             \"type\", \"data\": {{...}}}} and no other fields ({e})"
        )
    } else {
        format!("the payload is not valid JSON: {e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(extra: &str) -> Vec<u8> {
        format!(
            r#"{{"ledger":"l.example/ci","id":"req-1","actor":"bot","issued_at":"2026-11-29T00:00:00Z","type":"access.requested","data":{{}}{extra}}}"#
        )
        .into_bytes()
    }

    #[test]
    fn parses_common_fields() {
        let st = Statement::parse(&payload("")).unwrap();
        assert_eq!(st.ledger, "l.example/ci");
        assert_eq!(st.kind, "access.requested");
        assert_eq!(st.issued_at_ms(), 1_795_910_400_000);
        assert_eq!(Statement::parse(&st.to_payload()).unwrap(), st);
    }

    #[test]
    fn rejects_unknown_missing_and_invalid_fields() {
        assert!(matches!(Statement::parse(&payload(r#","extra":1"#)), Err(StatementError::Json(_))));
        assert!(matches!(Statement::parse(br#"{"ledger":"x"}"#), Err(StatementError::Json(_))));
        assert_eq!(Statement::parse(b"\xff"), Err(StatementError::NotUtf8));
        let bad_id = String::from_utf8(payload("")).unwrap().replace("req-1", "req 1");
        assert!(matches!(Statement::parse(bad_id.as_bytes()), Err(StatementError::InvalidId(_))));
        let bad_actor = String::from_utf8(payload("")).unwrap().replace("\"bot\"", "\"Bot\"");
        assert!(matches!(Statement::parse(bad_actor.as_bytes()), Err(StatementError::InvalidActor(_))));
        let bad_time = String::from_utf8(payload("")).unwrap().replace("2026-11-29T00:00:00Z", "yesterday");
        assert!(matches!(Statement::parse(bad_time.as_bytes()), Err(StatementError::InvalidTime(_))));
        let not_utc = String::from_utf8(payload("")).unwrap().replace("00:00:00Z", "02:00:00+02:00");
        assert!(matches!(Statement::parse(not_utc.as_bytes()), Err(StatementError::InvalidTime(_))));
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(Statement::parse(deep.as_bytes()), Err(StatementError::TooDeep));
    }

    #[test]
    fn names_and_ids() {
        assert!(is_valid_actor_name("conda-forge-bot"));
        assert!(!is_valid_actor_name("-bot"));
        assert!(!is_valid_actor_name(&"a".repeat(65)));
        assert!(is_valid_statement_id("usage:job.42_a-b"));
        assert!(!is_valid_statement_id(""));
        assert!(!is_valid_statement_id(&"a".repeat(129)));
        assert_eq!(format_rfc3339_ms(1_795_910_400_000), "2026-11-29T00:00:00Z");
    }
}
