//! Target `leaf`: arbitrary bytes as a record's leaf (SPEC.md section 5).

use ledger::dsse::Envelope;
use ledger::record::{Record, LEAF_BYTES_MAX, LEAF_HEADER_BYTES};

pub fn run(data: &[u8]) {
    let decoded = Record::decode(data);
    // The owning decoder agrees with the borrowing one.
    assert_eq!(Record::decode_vec(data.to_vec()), decoded, "decode and decode_vec disagree");
    let Ok(record) = decoded else { return };
    assert!(data.len() <= LEAF_BYTES_MAX && data.len() >= LEAF_HEADER_BYTES);
    assert_eq!(record.leaf(), data, "a decoded record keeps other leaf bytes");
    assert_eq!(record.envelope(), &data[LEAF_HEADER_BYTES..]);
    // Re-encoding from the decoded fields gives the same bytes.
    let rebuilt = Record::new(record.seq, record.prev, record.received_at_ms, record.envelope())
        .unwrap_or_else(|e| panic!("a decoded record does not re-encode: {e}"));
    assert_eq!(rebuilt.leaf(), data, "re-encoding changed the leaf bytes");
    assert_eq!(rebuilt, record);
    assert_eq!(record.chain_hash(), ledger::record::chain_hash(data));
    assert_eq!(record.leaf_hash(), ledger::merkle::leaf_hash(data));
    // The envelope inside: parsing must not panic; a stored leaf holds the canonical form.
    if let Ok(env) = Envelope::parse(record.envelope()) {
        let canonical = env.canonical_json();
        assert!(Record::new(record.seq, record.prev, record.received_at_ms, &canonical).is_ok());
    }
}
