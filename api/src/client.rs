//! The one blocking HTTP client for the grantline API: the CLI's commands, `verify`, `export`,
//! `prove` and `monitor` all use it, with one retry policy and one set of limits. Everything
//! the server says is checked by the caller; this module only fetches and decodes.
//!
//! `https://` goes through rustls (no OpenSSL) and trusts the system's CA store, or the PEM
//! bundle named by `SSL_CERT_FILE` instead (rustls-native-certs reads that variable, as
//! OpenSSL does), so a deployment behind a TLS proxy is reached as it is.

use std::io::Read;
use std::time::Duration;

use ledger::dsse::Envelope;
use ledger::keys::SigningKey;
use ledger::statement::{format_rfc3339_ms, Statement};
use serde::de::DeserializeOwned;

use crate::fold::Fold;
use crate::json::{ConsistencyProof, InclusionProof, LogInfo, Receipt, RecordJson, RecordPage};
use crate::limits::{
    CLIENT_ATTEMPTS_MAX, CLIENT_RESPONSE_BYTES_MAX, CLIENT_RETRY_WAIT_MS, CLIENT_TIMEOUT_MS, EVENTS_PAGE_RECORDS_MAX,
};
use crate::problem::Problem;

/// Why a call to the server failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No HTTP answer at all (connection refused, timeout, DNS, an untrusted certificate).
    /// `detail` is the whole chain of causes: reqwest's own message names only the URL.
    #[error("cannot reach the server at {server}: {detail}")]
    Unreachable {
        server: String,
        detail: String,
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an error status (its problem details, or one made up from the
    /// status and the start of the body).
    #[error("the server refused: {0}")]
    Problem(Problem),
    /// The server answered 2xx with a body this client cannot use.
    #[error("unexpected answer from the server: {0}")]
    Decode(String),
    /// The client was asked for something it cannot do (a bad URL, an invalid id).
    #[error("{0}")]
    Invalid(String),
}

/// A grantline server, by its base URL.
pub(crate) struct Client {
    base: String,
    http: reqwest::blocking::Client,
}

/// A receipt and whether the event is new (201) or an identical re-submission (200).
pub(crate) struct Submitted {
    pub receipt: Receipt,
    pub new: bool,
}

impl Client {
    pub(crate) fn new(server: &str) -> Result<Client, ClientError> {
        let base = server.trim_end_matches('/').to_string();
        if !base.starts_with("http://") && !base.starts_with("https://") {
            return Err(ClientError::Invalid(format!(
                "--server {server:?} must be an http:// or https:// URL (e.g. http://127.0.0.1:8080 or \
                 https://ledger.example.org)"
            )));
        }
        if base.starts_with("https://") {
            check_ca_bundle()?;
        }
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_millis(CLIENT_TIMEOUT_MS))
            .build()
            .map_err(|e| ClientError::Invalid(format!("cannot build the HTTP client: {}", causes(&e))))?;
        Ok(Client { base, http })
    }

    fn unreachable(&self, source: reqwest::Error) -> ClientError {
        ClientError::Unreachable { server: self.base.clone(), detail: causes(&source), source }
    }

    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request, retrying while the server answers 503 (overloaded; every call here is
    /// idempotent, a POST of an envelope included), and reads at most
    /// `CLIENT_RESPONSE_BYTES_MAX` of the body. A non-2xx answer is a [`ClientError::Problem`].
    fn send(&self, request: impl Fn() -> reqwest::blocking::RequestBuilder) -> Result<(u16, Vec<u8>), ClientError> {
        self.send_limited(request, CLIENT_RESPONSE_BYTES_MAX)
    }

    /// [`Client::send`], reading at most `bytes_max` of the body.
    fn send_limited(
        &self,
        request: impl Fn() -> reqwest::blocking::RequestBuilder,
        bytes_max: u64,
    ) -> Result<(u16, Vec<u8>), ClientError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let resp = request().send().map_err(|source| self.unreachable(source))?;
            let status = resp.status();
            if status == reqwest::StatusCode::SERVICE_UNAVAILABLE && attempt < CLIENT_ATTEMPTS_MAX {
                let wait_ms = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .map_or(CLIENT_RETRY_WAIT_MS, |s| s.saturating_mul(1000).min(CLIENT_TIMEOUT_MS));
                std::thread::sleep(Duration::from_millis(wait_ms));
                continue;
            }
            let body = read_limited(resp, bytes_max)?;
            if status.is_success() {
                return Ok((status.as_u16(), body));
            }
            return Err(ClientError::Problem(match serde_json::from_slice::<Problem>(&body) {
                Ok(problem) => problem,
                Err(_) => {
                    let text = String::from_utf8_lossy(&body).chars().take(500).collect::<String>();
                    Problem::new(status, "http_error", text)
                }
            }));
        }
    }

    fn decode<T: DeserializeOwned>(path: &str, body: &[u8]) -> Result<T, ClientError> {
        serde_json::from_slice(body).map_err(|e| ClientError::Decode(format!("{path}: {e}")))
    }

    /// GET a JSON document; `query` pairs are URL-encoded.
    pub(crate) fn get_json<T: DeserializeOwned>(&self, path: &str, query: &[(&str, String)]) -> Result<T, ClientError> {
        let (_, body) = self.send(|| self.http.get(self.url(path)).query(query))?;
        Self::decode(path, &body)
    }

    /// GET a JSON document; `None` when the server answers 404.
    fn get_json_opt<T: DeserializeOwned>(&self, path: &str) -> Result<Option<T>, ClientError> {
        match self.get_json(path, &[]) {
            Ok(value) => Ok(Some(value)),
            Err(ClientError::Problem(p)) if p.status == 404 => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub(crate) fn get_text(&self, path: &str) -> Result<String, ClientError> {
        let (_, body) = self.send(|| self.http.get(self.url(path)))?;
        String::from_utf8(body).map_err(|_| ClientError::Decode(format!("{path}: not UTF-8")))
    }

    /// GET `path` as raw bytes, at most `bytes_max` of them (tiles, a checkpoint note as served).
    pub(crate) fn get_bytes(&self, path: &str, bytes_max: u64) -> Result<Vec<u8>, ClientError> {
        let (_, body) = self.send_limited(|| self.http.get(self.url(path)), bytes_max)?;
        Ok(body)
    }

    /// `GET /v1/log`: origin and keys.
    pub(crate) fn log_info(&self) -> Result<LogInfo, ClientError> {
        self.get_json("/v1/log", &[])
    }

    /// `GET /v1/checkpoint`: the latest signed checkpoint note.
    pub(crate) fn checkpoint(&self) -> Result<String, ClientError> {
        self.get_text("/v1/checkpoint")
    }

    /// Posts envelope JSON to `/v1/events`.
    pub(crate) fn post_envelope(&self, envelope_json: Vec<u8>) -> Result<Submitted, ClientError> {
        let (status, body) = self.send(|| {
            self.http
                .post(self.url("/v1/events"))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(envelope_json.clone())
        })?;
        let receipt = Self::decode("receipt", &body)?;
        Ok(Submitted { receipt, new: status == reqwest::StatusCode::CREATED.as_u16() })
    }

    /// `GET /v1/events?from=&limit=`.
    pub(crate) fn events(&self, from: u64, limit: usize) -> Result<Vec<RecordJson>, ClientError> {
        let page: RecordPage =
            self.get_json("/v1/events", &[("from", from.to_string()), ("limit", limit.to_string())])?;
        Ok(page.records)
    }

    /// `GET /v1/events/{seq}`; `None` if the server has no such record.
    pub(crate) fn event(&self, seq: u64) -> Result<Option<RecordJson>, ClientError> {
        self.get_json_opt(&format!("/v1/events/{seq}"))
    }

    /// The record with statement id `id`, if the log has it.
    pub(crate) fn record_by_id(&self, id: &str) -> Result<Option<RecordJson>, ClientError> {
        if !ledger::statement::is_valid_statement_id(id) {
            return Err(ClientError::Invalid(format!(
                "{id:?} is not an event id (1-128 characters of [A-Za-z0-9._:-])"
            )));
        }
        self.get_json_opt(&format!("/v1/events/by-id/{}", encode_path_segment(id)))
    }

    /// `GET /v1/proofs/inclusion/{index}?size=`.
    pub(crate) fn inclusion(&self, index: u64, size: u64) -> Result<InclusionProof, ClientError> {
        self.get_json(&format!("/v1/proofs/inclusion/{index}"), &[("size", size.to_string())])
    }

    /// `GET /v1/proofs/consistency?from=&to=`.
    pub(crate) fn consistency(&self, from: u64, to: u64) -> Result<ConsistencyProof, ClientError> {
        self.get_json("/v1/proofs/consistency", &[("from", from.to_string()), ("to", to.to_string())])
    }

    /// `GET /v1/events/stream?from=`: the open response, read line by line by the caller.
    pub(crate) fn stream(&self, from: u64) -> Result<reqwest::blocking::Response, ClientError> {
        // The stream lives as long as the monitor: no whole-request deadline.
        let client = reqwest::blocking::Client::builder()
            .timeout(None)
            .connect_timeout(Duration::from_millis(CLIENT_TIMEOUT_MS))
            .build()
            .map_err(|e| ClientError::Invalid(format!("cannot build the HTTP client: {}", causes(&e))))?;
        let resp = client
            .get(self.url(&format!("/v1/events/stream?from={from}")))
            .send()
            .map_err(|source| self.unreachable(source))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(ClientError::Problem(Problem::new(status, "http_error", "the event stream was refused")));
        }
        Ok(resp)
    }

    /// Rebuilds the projector state on the client by replaying the whole log.
    pub(crate) fn fetch_state(&self) -> Result<projector::State, ClientError> {
        let mut fold = Fold::new();
        let mut next = 0u64;
        loop {
            let records = self.events(next, EVENTS_PAGE_RECORDS_MAX)?;
            if records.is_empty() {
                return Ok(fold.into_state());
            }
            for r in &records {
                if r.seq != next {
                    return Err(ClientError::Decode(format!("expected record {next}, got {}", r.seq)));
                }
                let rec = r.to_record().map_err(|e| ClientError::Decode(e.to_string()))?;
                // A record that does not verify is still part of the log; `grantline verify`
                // is the tool that reports it.
                let _ = fold.apply_logged(&rec);
                next += 1;
            }
        }
    }
}

/// Environment variable naming a PEM bundle of CA certificates to trust instead of the
/// system's store (the OpenSSL convention, read by rustls-native-certs).
pub(crate) const CA_BUNDLE_ENV: &str = "SSL_CERT_FILE";

/// A bundle named by `SSL_CERT_FILE` must be readable: rustls-native-certs would otherwise
/// start with no trusted CA at all, and every https call would fail as an untrusted
/// certificate, far from the cause.
fn check_ca_bundle() -> Result<(), ClientError> {
    let Some(path) = std::env::var_os(CA_BUNDLE_ENV).filter(|p| !p.is_empty()) else {
        return Ok(());
    };
    match std::fs::File::open(&path) {
        Ok(_) => Ok(()),
        Err(e) => Err(ClientError::Invalid(format!(
            "{CA_BUNDLE_ENV}={} names the CA certificate bundle to trust, but it cannot be read: {e}",
            std::path::Path::new(&path).display()
        ))),
    }
}

/// An error and its causes in one line, each said once, with what to do about an untrusted
/// certificate.
fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in std::iter::successors(Some(error), |e| e.source()) {
        let text = cause.to_string();
        if !parts.iter().any(|part| part.contains(&text)) {
            parts.push(text);
        }
    }
    let mut said = parts.join(": ");
    if said.contains("certificate") {
        said.push_str(&format!(
            " (the server's TLS certificate was refused: if a private CA signed it, add that CA to the \
             system's store or name a PEM bundle of trusted CA certificates with {CA_BUNDLE_ENV}=FILE)"
        ));
    }
    said
}

/// The body, refused past `bytes_max` bytes (`CLIENT_RESPONSE_BYTES_MAX` unless said).
fn read_limited(resp: reqwest::blocking::Response, bytes_max: u64) -> Result<Vec<u8>, ClientError> {
    let mut body = Vec::new();
    let read = resp.take(bytes_max + 1).read_to_end(&mut body);
    match read {
        Err(e) => Err(ClientError::Decode(format!("cannot read the response: {e}"))),
        Ok(_) if body.len() as u64 > bytes_max => {
            Err(ClientError::Decode(format!("the response is larger than {bytes_max} bytes")))
        }
        Ok(_) => Ok(body),
    }
}

/// Builds, signs and serialises a statement as the key's actor.
pub(crate) fn sign_statement(
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
pub(crate) fn encode_path_segment(s: &str) -> String {
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
pub(crate) fn random_id(prefix: &str) -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}-{hex}")
}
