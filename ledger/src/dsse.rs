//! DSSE v1 envelopes (secure-systems-lab/dsse) around grantline statements.

use crate::b64;
use crate::keys::{SigningKey, VerifierKey};

pub use crate::limits::ENVELOPE_BYTES_MAX;
pub use crate::limits::ENVELOPE_SIGNATURES_MAX as SIGNATURES_MAX;

/// The only `payloadType` grantline signs and accepts: the payload is a statement's JSON.
pub const PAYLOAD_TYPE: &str = "application/vnd.grantline.event+json";
/// An Ed25519 signature is 64 bytes.
pub const SIGNATURE_BYTES: usize = 64;

/// Why envelope bytes are not an envelope grantline accepts.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// Larger than [`ENVELOPE_BYTES_MAX`]: refused before parsing.
    #[error("envelope is too large ({0} bytes, at most {ENVELOPE_BYTES_MAX})")]
    TooLarge(usize),
    /// Not JSON, or JSON not of the envelope's shape (unknown fields included); the message
    /// says which, since "not valid JSON" misleads whoever sent a well-formed object.
    #[error("{}", json_problem(.0))]
    Json(#[source] serde_json::Error),
    /// A `payloadType` other than [`PAYLOAD_TYPE`].
    #[error("wrong payloadType {0:?}, expected {PAYLOAD_TYPE}")]
    PayloadType(String),
    /// The named field (`payload` or `sig`) is not standard padded base64.
    #[error("bad base64 in {0}")]
    Base64(&'static str),
    /// An empty `signatures` array.
    #[error("envelope has no signatures")]
    NoSignatures,
    /// More than [`SIGNATURES_MAX`] signatures (the count).
    #[error("envelope has {0} signatures, at most {SIGNATURES_MAX} are allowed")]
    TooManySignatures(usize),
    /// The signature at this index is not [`SIGNATURE_BYTES`] long.
    #[error("signature {0} is not {SIGNATURE_BYTES} bytes")]
    SignatureLength(usize),
}

/// `serde_json::Error` has no equality: two JSON errors are equal when they say the same.
impl PartialEq for EnvelopeError {
    fn eq(&self, other: &Self) -> bool {
        use EnvelopeError::*;
        match self {
            TooLarge(a) => matches!(other, TooLarge(b) if a == b),
            Json(a) => matches!(other, Json(b) if a.to_string() == b.to_string()),
            PayloadType(a) => matches!(other, PayloadType(b) if a == b),
            Base64(a) => matches!(other, Base64(b) if a == b),
            NoSignatures => matches!(other, NoSignatures),
            TooManySignatures(a) => matches!(other, TooManySignatures(b) if a == b),
            SignatureLength(a) => matches!(other, SignatureLength(b) if a == b),
        }
    }
}

impl Eq for EnvelopeError {}

/// One DSSE signature: who signed, and the Ed25519 signature over the envelope's PAE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// `<name>+<8 hex key id>`: the signed-note key that made the signature.
    pub keyid: String,
    /// The raw signature bytes ([`SIGNATURE_BYTES`] once parsed), not base64.
    pub sig: Vec<u8>,
}

/// A DSSE envelope: a payload with its type and the signatures over both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Always [`PAYLOAD_TYPE`] once parsed; signed as part of the PAE.
    pub payload_type: String,
    /// The raw payload bytes (the statement's UTF-8 JSON), not base64.
    pub payload: Vec<u8>,
    /// 1 to [`SIGNATURES_MAX`] signatures once parsed, in envelope order.
    pub signatures: Vec<Signature>,
}

/// PAE(type, payload) = "DSSEv1" SP len(type) SP type SP len(payload) SP payload.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let type_len = payload_type.len().to_string();
    let payload_len = payload.len().to_string();
    let mut out = Vec::with_capacity(6 + 4 + type_len.len() + payload_type.len() + payload_len.len() + payload.len());
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(type_len.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_len.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

/// The envelope as it arrives: strings not yet decoded, signatures counted but at most
/// [`SIGNATURES_MAX`] kept.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WireEnvelope {
    #[serde(rename = "payloadType")]
    payload_type: String,
    payload: String,
    signatures: WireSignatures,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WireSignature {
    keyid: String,
    sig: String,
}

struct WireSignatures {
    kept: Vec<WireSignature>,
    count: usize,
}

impl<'de> serde::Deserialize<'de> for WireSignatures {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = WireSignatures;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an array of signatures")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<WireSignatures, A::Error> {
                let mut kept = Vec::new();
                let mut count = 0usize;
                // Past the limit, elements are skipped without allocating, only counted.
                while count < SIGNATURES_MAX {
                    match seq.next_element::<WireSignature>()? {
                        Some(sig) => kept.push(sig),
                        None => return Ok(WireSignatures { kept, count }),
                    }
                    count += 1;
                }
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                    count += 1;
                }
                Ok(WireSignatures { kept, count })
            }
        }
        d.deserialize_seq(Visitor)
    }
}

/// A JSON string literal, escaped by serde_json.
fn json_string(out: &mut Vec<u8>, s: &str) {
    // Writing a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

impl Envelope {
    /// Parses envelope JSON. Unknown top-level fields are rejected; payloadType must be
    /// [`PAYLOAD_TYPE`]; there must be 1 to [`SIGNATURES_MAX`] signatures of [`SIGNATURE_BYTES`]
    /// bytes each.
    pub fn parse(json: &[u8]) -> Result<Envelope, EnvelopeError> {
        if json.len() > ENVELOPE_BYTES_MAX {
            return Err(EnvelopeError::TooLarge(json.len()));
        }
        let wire: WireEnvelope = serde_json::from_slice(json).map_err(EnvelopeError::Json)?;
        if wire.payload_type != PAYLOAD_TYPE {
            return Err(EnvelopeError::PayloadType(wire.payload_type));
        }
        match wire.signatures.count {
            0 => return Err(EnvelopeError::NoSignatures),
            n if n > SIGNATURES_MAX => return Err(EnvelopeError::TooManySignatures(n)),
            _ => {}
        }
        let payload = b64::decode(&wire.payload).map_err(|_| EnvelopeError::Base64("payload"))?;
        let mut signatures = Vec::with_capacity(wire.signatures.kept.len());
        for (index, s) in wire.signatures.kept.into_iter().enumerate() {
            let sig = b64::decode(&s.sig).map_err(|_| EnvelopeError::Base64("sig"))?;
            if sig.len() != SIGNATURE_BYTES {
                return Err(EnvelopeError::SignatureLength(index));
            }
            signatures.push(Signature { keyid: s.keyid, sig });
        }
        debug_assert!((1..=SIGNATURES_MAX).contains(&signatures.len()));
        Ok(Envelope { payload_type: wire.payload_type, payload, signatures })
    }

    /// Signs `payload` with each key, in order.
    pub fn sign(payload: Vec<u8>, keys: &[&SigningKey]) -> Envelope {
        let msg = pae(PAYLOAD_TYPE, &payload);
        let signatures = keys.iter().map(|k| Signature { keyid: k.keyid(), sig: k.sign(&msg).to_vec() }).collect();
        Envelope { payload_type: PAYLOAD_TYPE.to_string(), payload, signatures }
    }

    /// The bytes the signatures are over: [`pae`] of this envelope's type and payload.
    pub fn pae(&self) -> Vec<u8> {
        pae(&self.payload_type, &self.payload)
    }

    /// Canonical JSON: keys in the order payloadType, payload, signatures; each signature as
    /// keyid, sig; no whitespace (SPEC.md section 5).
    pub fn canonical_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.payload.len() * 4 / 3 + self.signatures.len() * 160);
        out.extend_from_slice(b"{\"payloadType\":");
        json_string(&mut out, &self.payload_type);
        out.extend_from_slice(b",\"payload\":\"");
        out.extend_from_slice(b64::encode(&self.payload).as_bytes());
        out.extend_from_slice(b"\",\"signatures\":[");
        for (i, s) in self.signatures.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"keyid\":");
            json_string(&mut out, &s.keyid);
            out.extend_from_slice(b",\"sig\":\"");
            out.extend_from_slice(b64::encode(&s.sig).as_bytes());
            out.extend_from_slice(b"\"}");
        }
        out.extend_from_slice(b"]}");
        out
    }

    /// The envelope as a JSON value (same field order as the canonical form).
    pub fn to_json_value(&self) -> serde_json::Value {
        let signatures: Vec<serde_json::Value> =
            self.signatures.iter().map(|s| serde_json::json!({"keyid": s.keyid, "sig": b64::encode(&s.sig)})).collect();
        serde_json::json!({
            "payloadType": self.payload_type,
            "payload": b64::encode(&self.payload),
            "signatures": signatures,
        })
    }

    /// Checks every signature. `lookup` maps a keyid to the key that may have made it.
    /// Returns the keyids, in envelope order, or the index of the first signature whose key
    /// is unknown or whose signature does not verify.
    pub fn verify(&self, lookup: impl Fn(&str) -> Option<VerifierKey>) -> Result<Vec<String>, SignatureFailure> {
        let msg = self.pae();
        let mut keyids = Vec::with_capacity(self.signatures.len());
        for (index, s) in self.signatures.iter().enumerate() {
            // The key must be the one the keyid names, whatever `lookup` returned.
            let key = match lookup(&s.keyid) {
                Some(key) if key.keyid() == s.keyid => key,
                _ => return Err(SignatureFailure::UnknownKey { index, keyid: s.keyid.clone() }),
            };
            if !key.verify(&msg, &s.sig) {
                return Err(SignatureFailure::BadSignature { index, keyid: s.keyid.clone() });
            }
            keyids.push(s.keyid.clone());
        }
        Ok(keyids)
    }
}

/// Which signature of an envelope did not verify, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureFailure {
    /// The keyid names no key that may sign here (unknown, revoked, or another actor's).
    #[error("signature {index} names unknown or inactive key {keyid:?}")]
    UnknownKey {
        /// The signature's position in the envelope.
        index: usize,
        /// The keyid the signature names.
        keyid: String,
    },
    /// The key is known, but the signature is not over this envelope's PAE.
    #[error("signature {index} by {keyid:?} does not verify")]
    BadSignature {
        /// The signature's position in the envelope.
        index: usize,
        /// The keyid the signature names.
        keyid: String,
    },
}

/// "not valid JSON", or "JSON but not a DSSE envelope" with the shape it must have.
fn json_problem(e: &serde_json::Error) -> String {
    if e.classify() == serde_json::error::Category::Data {
        format!(
            "the envelope is JSON but not a DSSE envelope: expected {{\"payloadType\": \"{PAYLOAD_TYPE}\", \
             \"payload\": \"<base64 statement>\", \"signatures\": [{{\"keyid\": \"...\", \"sig\": \"<base64>\"}}]}} \
             and no other fields ({e})"
        )
    } else {
        format!("the envelope is not valid JSON: {e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAYLOAD: &[u8] = br#"{"ledger":"l","id":"a"}"#;

    #[test]
    fn pae_matches_the_dsse_v1_vector() {
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ".to_vec());
        // Lengths count bytes, not characters.
        assert_eq!(pae("t", "é".as_bytes()), "DSSEv1 1 t 2 é".as_bytes().to_vec());
    }

    #[test]
    fn sign_parse_verify_round_trip() {
        let alice = SigningKey::generate("alice").unwrap();
        let bob = SigningKey::generate("bob").unwrap();
        let env = Envelope::sign(PAYLOAD.to_vec(), &[&alice, &bob]);
        let json = env.canonical_json();
        let back = Envelope::parse(&json).unwrap();
        assert_eq!(back, env);
        assert_eq!(back.canonical_json(), json);
        let keys = [alice.verifier(), bob.verifier()];
        let lookup = |id: &str| keys.iter().find(|k| k.keyid() == id).cloned();
        assert_eq!(back.verify(lookup).unwrap(), vec![alice.keyid(), bob.keyid()]);
        assert_eq!(serde_json::to_vec(&env.to_json_value()).unwrap(), json);
    }

    #[test]
    fn canonical_json_has_fixed_order_and_no_whitespace() {
        let key = SigningKey::from_seed("alice", [1; 32]).unwrap();
        let env = Envelope::sign(b"hi".to_vec(), &[&key]);
        let pretty = format!(
            "{{ \"signatures\" : [ {{ \"sig\": \"{}\", \"keyid\": \"{}\" }} ],\n \"payload\": \"aGk=\", \"payloadType\": \"{PAYLOAD_TYPE}\" }}",
            b64::encode(&env.signatures[0].sig),
            key.keyid()
        );
        let parsed = Envelope::parse(pretty.as_bytes()).unwrap();
        let want = format!(
            "{{\"payloadType\":\"{PAYLOAD_TYPE}\",\"payload\":\"aGk=\",\"signatures\":[{{\"keyid\":\"{}\",\"sig\":\"{}\"}}]}}",
            key.keyid(),
            b64::encode(&env.signatures[0].sig)
        );
        assert_eq!(String::from_utf8(parsed.canonical_json()).unwrap(), want);
        // Strings are escaped as JSON requires.
        let odd = Envelope {
            payload_type: "a\"b\\c\n".into(),
            payload: vec![],
            signatures: vec![Signature { keyid: "k\u{1}".into(), sig: vec![0; 64] }],
        };
        let v: serde_json::Value = serde_json::from_slice(&odd.canonical_json()).unwrap();
        assert_eq!(v["payloadType"], "a\"b\\c\n");
        assert_eq!(v["signatures"][0]["keyid"], "k\u{1}");
    }

    #[test]
    fn verify_rejects_unknown_keys_wrong_keys_and_bad_signatures() {
        let alice = SigningKey::generate("alice").unwrap();
        let mallory = SigningKey::generate("mallory").unwrap();
        let env = Envelope::sign(PAYLOAD.to_vec(), &[&alice]);
        assert_eq!(env.verify(|_| None), Err(SignatureFailure::UnknownKey { index: 0, keyid: alice.keyid() }));
        // A lookup that returns a key under another name or id does not count.
        assert!(matches!(env.verify(|_| Some(mallory.verifier())), Err(SignatureFailure::UnknownKey { .. })));
        let mut tampered = env.clone();
        tampered.payload.push(b' ');
        assert_eq!(
            tampered.verify(|_| Some(alice.verifier())),
            Err(SignatureFailure::BadSignature { index: 0, keyid: alice.keyid() })
        );
    }

    fn envelope_json(payload_type: &str, payload: &str, sigs: &[String]) -> String {
        format!(r#"{{"payloadType":"{payload_type}","payload":"{payload}","signatures":[{}]}}"#, sigs.join(","))
    }

    fn sig(b64_sig: &str) -> String {
        format!(r#"{{"keyid":"alice+00000000","sig":"{b64_sig}"}}"#)
    }

    #[test]
    fn bad_envelopes_are_typed_errors() {
        let good_sig = b64::encode([0u8; 64]);
        let payload = b64::encode(PAYLOAD);
        assert!(Envelope::parse(envelope_json(PAYLOAD_TYPE, &payload, &[sig(&good_sig)]).as_bytes()).is_ok());
        assert_eq!(
            Envelope::parse(envelope_json("text/plain", &payload, &[sig(&good_sig)]).as_bytes()),
            Err(EnvelopeError::PayloadType("text/plain".into()))
        );
        assert_eq!(
            Envelope::parse(envelope_json(PAYLOAD_TYPE, "not base64!", &[sig(&good_sig)]).as_bytes()),
            Err(EnvelopeError::Base64("payload"))
        );
        // Unpadded base64 is not the standard padded form.
        assert_eq!(
            Envelope::parse(envelope_json(PAYLOAD_TYPE, "aGk", &[sig(&good_sig)]).as_bytes()),
            Err(EnvelopeError::Base64("payload"))
        );
        assert_eq!(
            Envelope::parse(envelope_json(PAYLOAD_TYPE, &payload, &[sig("%%%%")]).as_bytes()),
            Err(EnvelopeError::Base64("sig"))
        );
        assert_eq!(
            Envelope::parse(envelope_json(PAYLOAD_TYPE, &payload, &[sig(&good_sig), sig("AAAA")]).as_bytes()),
            Err(EnvelopeError::SignatureLength(1))
        );
        assert_eq!(
            Envelope::parse(envelope_json(PAYLOAD_TYPE, &payload, &[]).as_bytes()),
            Err(EnvelopeError::NoSignatures)
        );
        let seventeen = vec![sig(&good_sig); 17];
        assert_eq!(
            Envelope::parse(envelope_json(PAYLOAD_TYPE, &payload, &seventeen).as_bytes()),
            Err(EnvelopeError::TooManySignatures(17))
        );
        let sixteen = vec![sig(&good_sig); 16];
        assert_eq!(
            Envelope::parse(envelope_json(PAYLOAD_TYPE, &payload, &sixteen).as_bytes()).unwrap().signatures.len(),
            16
        );
        // Thousands of signatures are only counted, never decoded.
        let mut many = vec![sig("x"); 16];
        many.extend(vec!["{}".to_string(); 1984]);
        assert_eq!(
            Envelope::parse(envelope_json(PAYLOAD_TYPE, &payload, &many).as_bytes()),
            Err(EnvelopeError::TooManySignatures(2000))
        );
        let unknown = format!(
            r#"{{"payloadType":"{PAYLOAD_TYPE}","payload":"{payload}","signatures":[{}],"x":1}}"#,
            sig(&good_sig)
        );
        assert!(matches!(Envelope::parse(unknown.as_bytes()), Err(EnvelopeError::Json(_))));
        let Err(err) = Envelope::parse(b"{") else { panic!("{{ parsed") };
        // The JSON error is kept as the cause, not only as text.
        let cause = std::error::Error::source(&err).and_then(|e| e.downcast_ref::<serde_json::Error>());
        assert!(cause.is_some_and(serde_json::Error::is_eof), "{err:?}");
        assert!(matches!(Envelope::parse(b"\xff"), Err(EnvelopeError::Json(_))));
        let big = vec![b' '; ENVELOPE_BYTES_MAX + 1];
        assert_eq!(Envelope::parse(&big), Err(EnvelopeError::TooLarge(ENVELOPE_BYTES_MAX + 1)));
    }

    #[test]
    fn a_parsed_envelope_always_fits_in_a_leaf() {
        let key = SigningKey::from_seed("alice", [2; 32]).unwrap();
        let sig = Envelope::sign(vec![], &[&key]).signatures[0].clone();
        // Grow the payload until the canonical envelope is as large as parsing allows.
        let fixed = Envelope { payload_type: PAYLOAD_TYPE.into(), payload: vec![], signatures: vec![sig] }
            .canonical_json()
            .len();
        let payload_b64_len = (ENVELOPE_BYTES_MAX - fixed) / 4 * 4;
        let env = Envelope { payload: vec![b'x'; payload_b64_len / 4 * 3], ..Envelope::sign(vec![], &[&key]) };
        let json = env.canonical_json();
        assert!(json.len() <= ENVELOPE_BYTES_MAX && json.len() + 4 > ENVELOPE_BYTES_MAX);
        let parsed = Envelope::parse(&json).unwrap();
        assert!(crate::record::Record::new(0, [0; 32], 0, &parsed.canonical_json()).is_ok());
    }
}
