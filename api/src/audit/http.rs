//! The few read-only HTTP calls the auditor makes (DESIGN.md section 8), with a blocking
//! client. Everything the server says is checked by the caller; this module only fetches.

use std::io::Read;
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::AuditError;
use crate::json::{ConsistencyProof, InclusionProof, RecordJson, RecordPage};

/// Whole-request deadline for ordinary calls (not the SSE stream).
pub const HTTP_TIMEOUT_MS: u64 = 30_000;
/// Largest response body read (a page of at most 1,000 records of at most ~250 KB each).
pub const RESPONSE_BYTES_MAX: u64 = 256 << 20;
/// Records asked for per `GET /v1/events` page (the server's maximum).
pub const PAGE_RECORDS: usize = 1000;
/// Attempts for a request the server answers 503 (overloaded).
pub const ATTEMPTS_MAX: u32 = 5;
/// Wait between attempts when the server sends no usable Retry-After.
pub const RETRY_WAIT_MS: u64 = 500;

/// A server, by its base URL.
pub struct Server {
    base: String,
    client: reqwest::blocking::Client,
}

impl Server {
    pub fn new(base: &str) -> Result<Server, AuditError> {
        let base = base.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(AuditError::Usage(format!("server URL {base:?} must start with http://")));
        }
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_millis(HTTP_TIMEOUT_MS))
            .build()
            .map_err(|e| AuditError::io("HTTP client", e))?;
        Ok(Server { base, client })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// GET `path`; `Ok(None)` on 404.
    fn get_bytes(&self, path: &str) -> Result<Option<Vec<u8>>, AuditError> {
        let url = format!("{}{path}", self.base);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let resp = self.client.get(&url).send().map_err(|e| AuditError::io(format!("GET {url}"), e))?;
            let status = resp.status();
            if status == reqwest::StatusCode::NOT_FOUND {
                return Ok(None);
            }
            if status == reqwest::StatusCode::SERVICE_UNAVAILABLE && attempt < ATTEMPTS_MAX {
                let wait_ms = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .map_or(RETRY_WAIT_MS, |s| s.saturating_mul(1000).min(HTTP_TIMEOUT_MS));
                std::thread::sleep(Duration::from_millis(wait_ms));
                continue;
            }
            let body = read_limited(resp, RESPONSE_BYTES_MAX).map_err(|e| AuditError::io(format!("GET {url}"), e))?;
            if !status.is_success() {
                let detail = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
                return Err(AuditError::Io(format!("GET {url}: HTTP {status}: {detail}")));
            }
            return Ok(Some(body));
        }
    }

    fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<Option<T>, AuditError> {
        match self.get_bytes(path)? {
            None => Ok(None),
            Some(body) => serde_json::from_slice(&body)
                .map(Some)
                .map_err(|e| AuditError::Io(format!("GET {}{path}: unexpected answer: {e}", self.base))),
        }
    }

    fn require<T>(&self, path: &str, value: Option<T>) -> Result<T, AuditError> {
        value.ok_or_else(|| AuditError::Io(format!("GET {}{path}: 404 not found", self.base)))
    }

    /// `GET /v1/checkpoint`: the latest signed checkpoint note.
    pub fn checkpoint(&self) -> Result<String, AuditError> {
        let path = "/v1/checkpoint";
        let body = self.get_bytes(path)?;
        let body = self.require(path, body)?;
        String::from_utf8(body).map_err(|_| AuditError::Io(format!("GET {}{path}: not UTF-8", self.base)))
    }

    /// `GET /v1/events?from=&limit=`.
    pub fn events(&self, from: u64, limit: usize) -> Result<Vec<RecordJson>, AuditError> {
        let path = format!("/v1/events?from={from}&limit={limit}");
        let page: Option<RecordPage> = self.get_json(&path)?;
        Ok(self.require(&path, page)?.records)
    }

    /// `GET /v1/events/{seq}`; `None` if the server has no such record.
    pub fn event(&self, seq: u64) -> Result<Option<RecordJson>, AuditError> {
        self.get_json(&format!("/v1/events/{seq}"))
    }

    /// `GET /v1/events/by-id/{id}`.
    pub fn event_by_id(&self, id: &str) -> Result<Option<RecordJson>, AuditError> {
        if !ledger::statement::is_valid_statement_id(id) {
            return Err(AuditError::Usage(format!("{id:?} is not an event id (1-128 characters of [A-Za-z0-9._:-])")));
        }
        self.get_json(&format!("/v1/events/by-id/{id}"))
    }

    /// `GET /v1/proofs/inclusion/{seq}?size=`.
    pub fn inclusion(&self, seq: u64, size: u64) -> Result<InclusionProof, AuditError> {
        let path = format!("/v1/proofs/inclusion/{seq}?size={size}");
        let proof = self.get_json(&path)?;
        self.require(&path, proof)
    }

    /// `GET /v1/proofs/consistency?from=&to=`.
    pub fn consistency(&self, from: u64, to: u64) -> Result<ConsistencyProof, AuditError> {
        let path = format!("/v1/proofs/consistency?from={from}&to={to}");
        let proof = self.get_json(&path)?;
        self.require(&path, proof)
    }

    /// `GET /v1/log`: `{origin, log_key, ...}`.
    pub fn log_info(&self) -> Result<crate::json::LogInfo, AuditError> {
        let path = "/v1/log";
        let info = self.get_json(path)?;
        self.require(path, info)
    }

    /// `GET /v1/events/stream?from=`: the open response, read line by line by the caller.
    pub fn stream(&self, from: u64) -> Result<reqwest::blocking::Response, AuditError> {
        let url = format!("{}/v1/events/stream?from={from}", self.base);
        // The stream lives as long as the monitor: no whole-request deadline.
        let client = reqwest::blocking::Client::builder()
            .timeout(None)
            .connect_timeout(Duration::from_millis(HTTP_TIMEOUT_MS))
            .build()
            .map_err(|e| AuditError::io("HTTP client", e))?;
        let resp = client.get(&url).send().map_err(|e| AuditError::io(format!("GET {url}"), e))?;
        if !resp.status().is_success() {
            return Err(AuditError::Io(format!("GET {url}: HTTP {}", resp.status())));
        }
        Ok(resp)
    }
}

fn read_limited(resp: reqwest::blocking::Response, bytes_max: u64) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    resp.take(bytes_max + 1).read_to_end(&mut body)?;
    if body.len() as u64 > bytes_max {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "response too large"));
    }
    Ok(body)
}
