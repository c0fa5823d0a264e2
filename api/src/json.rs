//! The JSON shapes of SPEC.md section 8 shared by the server and its clients. Every hash and
//! byte string is standard padded base64.

use ledger::b64;
use ledger::dsse::Envelope;
use ledger::record::Record;
use ledger::Hash;
use serde::{Deserialize, Serialize};

/// `GET /v1/log`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogInfo {
    pub origin: String,
    pub log_key: String,
    pub automation_key: String,
    pub size: u64,
    pub root: String,
}

/// `{index, tree_size, hashes}`: an RFC 9162 inclusion proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    pub index: u64,
    pub tree_size: u64,
    pub hashes: Vec<String>,
}

/// `{from, to, hashes}`: an RFC 9162 consistency proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencyProof {
    pub from: u64,
    pub to: u64,
    pub hashes: Vec<String>,
}

/// What `POST /v1/events` answers: enough to prove later that the log accepted the event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub seq: u64,
    pub id: String,
    pub leaf_hash: String,
    pub chain_hash: String,
    /// The signed checkpoint note the inclusion proof is against.
    pub checkpoint: String,
    pub inclusion: InclusionProof,
}

/// One record as served (`GET /v1/events...`, SSE `data:` lines).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordJson {
    pub seq: u64,
    pub received_at_ms: i64,
    pub prev: String,
    pub chain_hash: String,
    pub leaf_hash: String,
    pub leaf: String,
    /// The canonical envelope object.
    pub envelope: serde_json::Value,
    /// The decoded statement.
    pub statement: serde_json::Value,
}

/// `GET /v1/events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordPage {
    pub records: Vec<RecordJson>,
}

/// What `POST /v1/github/webhook` answers (SPEC.md section 13).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookAnswer {
    /// The `X-GitHub-Delivery` id answered.
    pub delivery: String,
    /// `metered`, `unauthorized`, `already_logged`, `duplicate_delivery`, `pong` or `ignored`.
    pub outcome: String,
    /// Why a delivery was ignored, for the operator reading GitHub's delivery log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The record the job is logged in, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<LoggedJob>,
}

/// The record of a metered job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedJob {
    pub seq: u64,
    /// The statement id: `gh:<repository id>:<job id>:<run attempt>`.
    pub id: String,
    /// `usage.reported` or `usage.unauthorized`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// `GET /v1/usage/unauthorized`: jobs that ran on a gated runner without access.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnauthorizedJobs {
    pub jobs: Vec<projector::UnauthorizedJob>,
}

pub fn hashes_b64(hashes: &[Hash]) -> Vec<String> {
    hashes.iter().map(b64::encode).collect()
}

/// Decodes base64 hashes; `None` if any is not 32 bytes of padded base64.
pub fn hashes_from_b64(hashes: &[String]) -> Option<Vec<Hash>> {
    hashes.iter().map(|h| b64::decode_hash(h)).collect()
}

/// Why a record and its JSON shape do not convert.
#[derive(Debug, thiserror::Error)]
pub enum RecordJsonError {
    /// The stored envelope does not parse (a corrupt store).
    #[error("record {seq}: {source}")]
    Envelope {
        seq: u64,
        #[source]
        source: ledger::dsse::EnvelopeError,
    },
    /// The stored statement is not JSON (a corrupt store).
    #[error("record {seq}: statement: {source}")]
    Statement {
        seq: u64,
        #[source]
        source: serde_json::Error,
    },
    /// The served leaf is not base64.
    #[error("record {seq}: bad base64 leaf")]
    LeafBase64 {
        seq: u64,
        #[source]
        source: base64::DecodeError,
    },
    /// The served leaf does not decode.
    #[error("record {seq}: {source}")]
    Leaf {
        seq: u64,
        #[source]
        source: ledger::record::RecordError,
    },
    /// The served leaf names another seq or time than the record's fields.
    #[error("record {0}: leaf does not match its fields")]
    Mismatch(u64),
}

impl RecordJson {
    /// The served shape of a stored record. Fails only when the stored envelope is corrupt.
    pub fn from_record(rec: &Record) -> Result<RecordJson, RecordJsonError> {
        let seq = rec.seq;
        let env = Envelope::parse(rec.envelope()).map_err(|source| RecordJsonError::Envelope { seq, source })?;
        let statement: serde_json::Value =
            serde_json::from_slice(&env.payload).map_err(|source| RecordJsonError::Statement { seq, source })?;
        Ok(RecordJson {
            seq: rec.seq,
            received_at_ms: rec.received_at_ms,
            prev: b64::encode(rec.prev),
            chain_hash: b64::encode(rec.chain_hash()),
            leaf_hash: b64::encode(rec.leaf_hash()),
            leaf: b64::encode(rec.leaf()),
            envelope: env.to_json_value(),
            statement,
        })
    }

    /// The record's leaf bytes, re-checked against its own fields.
    pub fn to_record(&self) -> Result<Record, RecordJsonError> {
        let seq = self.seq;
        let leaf = b64::decode(&self.leaf).map_err(|source| RecordJsonError::LeafBase64 { seq, source })?;
        let rec = Record::decode_vec(leaf).map_err(|source| RecordJsonError::Leaf { seq, source })?;
        if rec.seq != self.seq || rec.received_at_ms != self.received_at_ms {
            return Err(RecordJsonError::Mismatch(seq));
        }
        Ok(rec)
    }
}
