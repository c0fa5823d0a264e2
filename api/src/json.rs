//! The JSON shapes of DESIGN.md section 8 shared by the server and its clients. Every hash and
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

pub fn hashes_b64(hashes: &[Hash]) -> Vec<String> {
    hashes.iter().map(b64::encode).collect()
}

/// Decodes base64 hashes; `None` if any is not 32 bytes of padded base64.
pub fn hashes_from_b64(hashes: &[String]) -> Option<Vec<Hash>> {
    hashes.iter().map(|h| b64::decode_hash(h)).collect()
}

impl RecordJson {
    /// The served shape of a stored record. Fails only when the stored envelope is corrupt.
    pub fn from_record(rec: &Record) -> Result<RecordJson, String> {
        let env = Envelope::parse(rec.envelope()).map_err(|e| format!("record {}: {e}", rec.seq))?;
        let statement: serde_json::Value =
            serde_json::from_slice(&env.payload).map_err(|e| format!("record {}: statement: {e}", rec.seq))?;
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
    pub fn to_record(&self) -> Result<Record, String> {
        let leaf = b64::decode(&self.leaf).map_err(|_| format!("record {}: bad base64 leaf", self.seq))?;
        let rec = Record::decode_vec(leaf).map_err(|e| format!("record {}: {e}", self.seq))?;
        if rec.seq != self.seq || rec.received_at_ms != self.received_at_ms {
            return Err(format!("record {}: leaf does not match its fields", self.seq));
        }
        Ok(rec)
    }
}
