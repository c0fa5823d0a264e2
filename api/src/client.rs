//! A small blocking HTTP client for the grantline API: what the CLI (and later `verify` and
//! `monitor`) use. Plain http only (reqwest without TLS); put a TLS proxy in front for https.

use std::time::Duration;

use ledger::dsse::Envelope;
use ledger::keys::SigningKey;
use ledger::statement::{format_rfc3339_ms, Statement};
use serde::de::DeserializeOwned;

use crate::json::{LogInfo, Receipt, RecordJson, RecordPage};
use crate::limits::{CLIENT_PAGE_RECORDS, CLIENT_TIMEOUT_MS};
use crate::problem::Problem;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the server at {server}: {reason}")]
    Unreachable { server: String, reason: String },
    #[error("the server refused: {0}")]
    Problem(Problem),
    #[error("unexpected answer from the server: {0}")]
    Decode(String),
    #[error("{0}")]
    Invalid(String),
}

pub struct Client {
    base: String,
    http: reqwest::blocking::Client,
}

/// A receipt and whether the event is new (201) or an identical re-submission (200).
pub struct Submitted {
    pub receipt: Receipt,
    pub new: bool,
}

impl Client {
    pub fn new(server: &str) -> Result<Client, ClientError> {
        let base = server.trim_end_matches('/').to_string();
        if !base.starts_with("http://") {
            return Err(ClientError::Invalid(format!(
                "--server {server:?} must be an http:// URL (e.g. http://127.0.0.1:8080)"
            )));
        }
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_millis(CLIENT_TIMEOUT_MS))
            .build()
            .map_err(|e| ClientError::Invalid(e.to_string()))?;
        Ok(Client { base, http })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn unreachable(&self, e: reqwest::Error) -> ClientError {
        ClientError::Unreachable { server: self.base.clone(), reason: e.to_string() }
    }

    fn send(&self, req: reqwest::blocking::RequestBuilder) -> Result<reqwest::blocking::Response, ClientError> {
        let resp = req.send().map_err(|e| self.unreachable(e))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let text = resp.text().unwrap_or_default();
        Err(match serde_json::from_str::<Problem>(&text) {
            Ok(problem) => ClientError::Problem(problem),
            Err(_) => {
                ClientError::Problem(Problem::new(status, "http_error", text.chars().take(500).collect::<String>()))
            }
        })
    }

    /// GET a JSON document; `query` pairs are URL-encoded.
    pub fn get_json<T: DeserializeOwned>(&self, path: &str, query: &[(&str, String)]) -> Result<T, ClientError> {
        let resp = self.send(self.http.get(format!("{}{path}", self.base)).query(query))?;
        resp.json().map_err(|e| ClientError::Decode(format!("{path}: {e}")))
    }

    pub fn get_text(&self, path: &str) -> Result<String, ClientError> {
        let resp = self.send(self.http.get(format!("{}{path}", self.base)))?;
        resp.text().map_err(|e| ClientError::Decode(format!("{path}: {e}")))
    }

    pub fn log_info(&self) -> Result<LogInfo, ClientError> {
        self.get_json("/v1/log", &[])
    }

    /// Posts envelope JSON to `/v1/events`.
    pub fn post_envelope(&self, envelope_json: Vec<u8>) -> Result<Submitted, ClientError> {
        let req = self
            .http
            .post(format!("{}/v1/events", self.base))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(envelope_json);
        let resp = self.send(req)?;
        let new = resp.status() == reqwest::StatusCode::CREATED;
        let receipt = resp.json().map_err(|e| ClientError::Decode(format!("receipt: {e}")))?;
        Ok(Submitted { receipt, new })
    }

    /// The record with statement id `id`, if the log has it.
    pub fn record_by_id(&self, id: &str) -> Result<Option<RecordJson>, ClientError> {
        let path = format!("/v1/events/by-id/{}", encode_path_segment(id));
        match self.get_json(&path, &[]) {
            Ok(r) => Ok(Some(r)),
            Err(ClientError::Problem(p)) if p.status == 404 => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Rebuilds the projector state on the client by replaying the whole log.
    pub fn fetch_state(&self) -> Result<projector::State, ClientError> {
        let mut state = projector::State::new();
        let mut next = 0u64;
        loop {
            let page: RecordPage =
                self.get_json("/v1/events", &[("from", next.to_string()), ("limit", CLIENT_PAGE_RECORDS.to_string())])?;
            if page.records.is_empty() {
                return Ok(state);
            }
            for r in &page.records {
                if r.seq != next {
                    return Err(ClientError::Decode(format!("expected record {next}, got {}", r.seq)));
                }
                let rec = r.to_record().map_err(ClientError::Decode)?;
                // A record that does not verify is still part of the log; `grantline verify`
                // is the tool that reports it.
                let _ = crate::replay::apply_record(&mut state, &rec);
                next += 1;
            }
        }
    }
}

/// Builds, signs and serialises a statement as the key's actor.
pub fn sign_statement(
    key: &SigningKey,
    origin: &str,
    id: &str,
    kind: &str,
    data: serde_json::Value,
) -> (Statement, Vec<u8>) {
    let statement = Statement {
        ledger: origin.to_string(),
        id: id.to_string(),
        actor: key.name().to_string(),
        issued_at: format_rfc3339_ms(crate::now_ms()),
        kind: kind.to_string(),
        data,
    };
    let envelope = Envelope::sign(statement.to_payload(), &[key]);
    (statement, envelope.canonical_json())
}

/// Percent-encodes one path segment (ids are `[A-Za-z0-9._:-]`, but be safe).
pub fn encode_path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'~' | b':') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A random statement id: `<prefix>-<16 hex>`.
pub fn random_id(prefix: &str) -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}-{hex}")
}
