//! The grantline ledger: it stores and proves, and knows nothing of HTTP or of the domain rules.
//!
//! Data flows one way: a client signs a [`dsse::Envelope`] around a [`statement::Statement`];
//! the [`store::Store`] wraps accepted envelopes in [`record::Record`]s (the leaf bytes of
//! SPEC.md section 5), links them into the BLAKE3 chain, commits them into the RFC 6962
//! [`merkle`] tree and makes them durable with one flush per batch. [`checkpoint`]s over the
//! tree are C2SP signed [`note`]s made with [`keys`]. Every bound on input (sizes, counts,
//! depths) is in [`limits`].

#![warn(missing_docs)]
#![warn(unreachable_pub)]

pub mod checkpoint;
pub mod cosignature;
pub mod dsse;
pub mod keys;
pub mod limits;
pub mod merkle;
pub mod note;
pub mod pg;
pub mod record;
pub mod seen;
pub mod statement;
pub mod store;
pub mod tile;

/// A SHA-256 or BLAKE3 digest.
pub type Hash = [u8; 32];

/// Standard padded base64, the encoding of every hash and byte string in grantline's JSON.
pub mod b64 {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;

    /// Standard padded base64 of `bytes`.
    pub fn encode(bytes: impl AsRef<[u8]>) -> String {
        STANDARD.encode(bytes)
    }

    /// Decodes standard padded base64 (unpadded or URL-safe text is an error).
    pub fn decode(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
        STANDARD.decode(text)
    }

    /// Decodes exactly 32 bytes (a hash).
    pub fn decode_hash(text: &str) -> Option<crate::Hash> {
        decode(text).ok()?.try_into().ok()
    }
}
