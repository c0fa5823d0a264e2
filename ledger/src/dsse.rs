//! DSSE v1 envelopes (secure-systems-lab/dsse) around grantline statements.

use crate::keys::{SigningKey, VerifierKey};

pub const PAYLOAD_TYPE: &str = "application/vnd.grantline.event+json";
/// An envelope carries 1 to 16 signatures.
pub const SIGNATURES_MAX: usize = 16;
/// Envelopes larger than a leaf can hold are rejected before parsing.
pub const ENVELOPE_BYTES_MAX: usize = crate::record::LEAF_BYTES_MAX;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("envelope is too large ({0} bytes)")]
    TooLarge(usize),
    #[error("envelope is not valid JSON: {0}")]
    Json(String),
    #[error("wrong payloadType {0:?}, expected application/vnd.grantline.event+json")]
    PayloadType(String),
    #[error("bad base64 in {0}")]
    Base64(&'static str),
    #[error("envelope has no signatures")]
    NoSignatures,
    #[error("envelope has {0} signatures, at most 16 are allowed")]
    TooManySignatures(usize),
    #[error("signature {0} is not 64 bytes")]
    SignatureLength(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub keyid: String,
    pub sig: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub payload_type: String,
    /// The raw payload bytes (the statement's UTF-8 JSON), not base64.
    pub payload: Vec<u8>,
    pub signatures: Vec<Signature>,
}

/// PAE(type, payload) = "DSSEv1" SP len(type) SP type SP len(payload) SP payload.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    todo!()
}

impl Envelope {
    /// Parses envelope JSON. Unknown top-level fields are rejected; payloadType must be
    /// [`PAYLOAD_TYPE`]; there must be 1..=16 signatures of 64 bytes each.
    pub fn parse(json: &[u8]) -> Result<Envelope, EnvelopeError> {
        todo!()
    }

    /// Signs `payload` with each key, in order.
    pub fn sign(payload: Vec<u8>, keys: &[&SigningKey]) -> Envelope {
        todo!()
    }

    pub fn pae(&self) -> Vec<u8> {
        pae(&self.payload_type, &self.payload)
    }

    /// Canonical JSON: keys in the order payloadType, payload, signatures; each signature as
    /// keyid, sig; no whitespace (DESIGN.md section 5).
    pub fn canonical_json(&self) -> Vec<u8> {
        todo!()
    }

    /// The envelope as a JSON value (same field order as the canonical form).
    pub fn to_json_value(&self) -> serde_json::Value {
        todo!()
    }

    /// Checks every signature. `lookup` maps a keyid to the key that may have made it.
    /// Returns the keyids, in envelope order, or the index of the first signature whose key
    /// is unknown or whose signature does not verify.
    pub fn verify(&self, lookup: impl Fn(&str) -> Option<VerifierKey>) -> Result<Vec<String>, SignatureFailure> {
        todo!()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureFailure {
    #[error("signature {index} names unknown or inactive key {keyid:?}")]
    UnknownKey { index: usize, keyid: String },
    #[error("signature {index} by {keyid:?} does not verify")]
    BadSignature { index: usize, keyid: String },
}
