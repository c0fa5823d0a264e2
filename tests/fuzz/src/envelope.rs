//! Target `envelope`: arbitrary bytes as DSSE envelope JSON and as a statement.

use ledger::dsse::{Envelope, ENVELOPE_BYTES_MAX};
use ledger::record::Record;
use ledger::statement::Statement;

use crate::keys::envelope_keys;

pub fn run(data: &[u8]) {
    if let Ok(env) = Envelope::parse(data) {
        parsed_envelope(data, &env);
    }
    // The bytes may also be a bare statement (the payload of some envelope).
    statement(data);
}

fn parsed_envelope(data: &[u8], env: &Envelope) {
    let canonical = env.canonical_json();
    // The canonical form re-parses to the same envelope and is a fixed point.
    let again = Envelope::parse(&canonical)
        .unwrap_or_else(|e| panic!("canonical JSON of a parsed envelope does not re-parse: {e}"));
    assert_eq!(&again, env, "canonical JSON re-parses to another envelope");
    assert_eq!(again.canonical_json(), canonical, "canonical JSON is not a fixed point");
    // dsse.rs promises that a parsed envelope always fits in a leaf.
    assert!(
        canonical.len() <= data.len(),
        "canonical form ({} bytes) is longer than the parsed text ({} bytes)",
        canonical.len(),
        data.len()
    );
    assert!(canonical.len() <= ENVELOPE_BYTES_MAX);
    assert!(Record::new(0, [0; 32], 0, &canonical).is_ok(), "a parsed envelope does not fit in a leaf");
    // The JSON-value form is the same bytes as the canonical form.
    let value_bytes = serde_json::to_vec(&env.to_json_value()).expect("a JSON value serialises");
    assert_eq!(value_bytes, canonical, "to_json_value and canonical_json disagree");
    // Signature checking on hostile signatures: no panic; success only with the keys named.
    let keys = envelope_keys();
    if let Ok(keyids) = env.verify(|id| keys.iter().find(|k| k.keyid() == id).map(|k| k.verifier())) {
        assert_eq!(keyids.len(), env.signatures.len());
        assert!(keyids.iter().all(|id| keys.iter().any(|k| k.keyid() == *id)));
    }
    statement(&env.payload);
}

fn statement(payload: &[u8]) {
    let Ok(st) = Statement::parse(payload) else { return };
    assert_eq!(st.validate(), Ok(()), "a parsed statement does not validate");
    assert_ne!(st.issued_at_ms(), i64::MIN, "a parsed statement has no issued_at time");
    // What a client would sign for this statement parses back to it.
    let again = Statement::parse(&st.to_payload())
        .unwrap_or_else(|e| panic!("the payload of a parsed statement does not re-parse: {e}"));
    // serde_json (without its float_roundtrip feature) may read a float back one ulp off, so
    // data holding floats is compared without them. Signed payloads are never re-serialised.
    if has_float(&st.data) {
        assert_eq!(
            Statement { data: serde_json::Value::Null, ..again },
            Statement { data: serde_json::Value::Null, ..st }
        );
    } else {
        assert_eq!(again, st, "statement payload round trip changed the statement");
    }
}

fn has_float(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Number(n) => n.is_f64(),
        serde_json::Value::Array(a) => a.iter().any(has_float),
        serde_json::Value::Object(o) => o.values().any(has_float),
        _ => false,
    }
}
