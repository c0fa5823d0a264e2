//! Offline receipts: `{record, inclusion, checkpoint}`, everything needed to prove later, with
//! no server, that the log holds a record.

use ledger::b64;
use ledger::keys::VerifierKey;
use ledger::merkle;
use serde::{Deserialize, Serialize};

use super::archive::open_checkpoint;
use super::engine::{leaf_of, record_fields_agree};
use super::{AuditError, Failure, FailureKind, Witnesses};
use crate::client::Client;
use crate::json::{hashes_from_b64, InclusionProof, RecordJson};
use crate::limits::{PROVE_RETRY_MS, PROVE_WAIT_MS};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Receipt {
    pub record: RecordJson,
    pub inclusion: InclusionProof,
    /// The signed checkpoint note the proof is against.
    pub checkpoint: String,
}

/// What a verified receipt proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Proven {
    pub seq: u64,
    pub id: String,
    pub kind: String,
    pub tree_size: u64,
}

impl Receipt {
    /// The receipt file: one line of JSON.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec(self).unwrap_or_default();
        out.push(b'\n');
        out
    }
}

/// Which event to prove: by statement id or by its seq in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Wanted {
    Id(String),
    Seq(u64),
}

impl Wanted {
    /// A bare argument: a number is a seq, anything else a statement id.
    pub(crate) fn from_arg(arg: &str) -> Wanted {
        match arg.parse::<u64>() {
            Ok(seq) if arg.bytes().all(|b| b.is_ascii_digit()) => Wanted::Seq(seq),
            _ => Wanted::Id(arg.to_string()),
        }
    }
}

/// Builds the receipt of an event from a server and checks it before handing it out.
/// `log_key` pins the key; without it the server's own `/v1/log` key is used (trust on
/// first use: the receipt is only as good as the key it is later checked with).
pub(crate) fn prove(server: &Client, wanted: &Wanted, log_key: Option<&VerifierKey>) -> Result<Receipt, AuditError> {
    let key = match log_key {
        Some(k) => k.clone(),
        None => {
            let info = server.log_info()?;
            VerifierKey::parse(&info.log_key)
                .map_err(|e| AuditError::Unreadable(format!("the server's log key: {e}")))?
        }
    };
    let record = match wanted {
        Wanted::Id(id) => {
            server.record_by_id(id)?.ok_or_else(|| AuditError::Usage(format!("no event with id {id:?}")))?
        }
        Wanted::Seq(seq) => server.event(*seq)?.ok_or_else(|| {
            AuditError::Usage(format!("no event at seq {seq} (seqs count from 0; the genesis is seq 0)"))
        })?,
    };
    if let Wanted::Seq(seq) = wanted {
        if record.seq != *seq {
            return Err(AuditError::Unreadable(format!("asked for seq {seq}, the server sent seq {}", record.seq)));
        }
    }
    // The served checkpoint (with its witnesses' cosignatures, when the log has witnesses) may
    // lag a record just appended by a witness round: wait for one that covers it, boundedly.
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(PROVE_WAIT_MS);
    let (note, checkpoint) = loop {
        let note = server.checkpoint()?;
        let cp = open_checkpoint(&note, &key, "the server's checkpoint")?;
        if cp.checkpoint.size > record.seq {
            break (note, cp.checkpoint);
        }
        if std::time::Instant::now() >= deadline {
            return Err(AuditError::Unreadable(format!(
                "the server's checkpoint ({} records) does not cover seq {} yet after waiting {} s (a log with \
                 witnesses serves its newest cosigned checkpoint, which may lag behind while a witness is \
                 unreachable); try again later",
                cp.checkpoint.size,
                record.seq,
                PROVE_WAIT_MS / 1000
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(PROVE_RETRY_MS));
    };
    let inclusion = server.inclusion(record.seq, checkpoint.size)?;
    let receipt = Receipt { record, inclusion, checkpoint: note };
    verify(&receipt.to_bytes(), &key)?;
    Ok(receipt)
}

/// [`verify`], and then `witnesses`' quorum of cosignatures on the receipt's checkpoint.
pub(crate) fn verify_witnessed(
    bytes: &[u8],
    log_key: &VerifierKey,
    witnesses: &Witnesses,
) -> Result<Proven, AuditError> {
    let proven = verify(bytes, log_key)?;
    let receipt: Receipt =
        serde_json::from_slice(bytes).map_err(|e| AuditError::Usage(format!("not a grantline receipt: {e}")))?;
    witnesses.require(&receipt.checkpoint, proven.tree_size, "the receipt's checkpoint")?;
    Ok(proven)
}

/// Checks a receipt with no server: the checkpoint signature with the pinned key, the leaf
/// hash recomputed from the leaf bytes, the inclusion proof, and every other record field
/// against the leaf. Any changed byte fails.
pub(crate) fn verify(bytes: &[u8], log_key: &VerifierKey) -> Result<Proven, AuditError> {
    let receipt: Receipt =
        serde_json::from_slice(bytes).map_err(|e| AuditError::Usage(format!("not a grantline receipt: {e}")))?;
    let cp = open_checkpoint(&receipt.checkpoint, log_key, "the receipt's checkpoint")?.checkpoint;
    let seq = receipt.record.seq;
    let chain = |why: String| AuditError::Failed(Failure::at(FailureKind::Chain, seq, why));
    let merkle = |why: String| AuditError::Failed(Failure::at(FailureKind::Checkpoint, seq, why));
    let rec = leaf_of(&receipt.record).map_err(|e| chain(format!("the leaf does not decode: {e}")))?;
    record_fields_agree(&receipt.record, &rec)
        .map_err(|e| chain(format!("the record disagrees with its leaf: {e}")))?;
    let proof = &receipt.inclusion;
    if proof.index != rec.seq || proof.tree_size != cp.size {
        return Err(merkle(format!(
            "the proof is for index {} in {} records; the record is seq {} and the checkpoint has {} records",
            proof.index, proof.tree_size, rec.seq, cp.size
        )));
    }
    let hashes =
        hashes_from_b64(&proof.hashes).ok_or_else(|| merkle("a proof hash is not base64 of 32 bytes".into()))?;
    merkle::verify_inclusion(rec.seq, cp.size, &rec.leaf_hash(), &hashes, &cp.root).map_err(|e| {
        merkle(format!("the inclusion proof does not lead to the checkpoint's root {}: {e}", b64::encode(cp.root)))
    })?;
    let statement = receipt.record.statement;
    let text = |field: &str| statement.get(field).and_then(|v| v.as_str()).unwrap_or_default().to_string();
    Ok(Proven { seq: rec.seq, id: text("id"), kind: text("type"), tree_size: cp.size })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::testlog::TestLog;
    use crate::json::hashes_b64;
    use ledger::merkle::MemoryTree;

    fn receipt(log: &TestLog, seq: usize) -> Receipt {
        let mut tree = MemoryTree::new();
        log.records.iter().for_each(|r| tree.push(r.leaf_hash()));
        let proof = tree.inclusion_proof(seq as u64, tree.size()).unwrap();
        Receipt {
            record: RecordJson::from_record(&log.records[seq]).unwrap(),
            inclusion: InclusionProof { index: seq as u64, tree_size: tree.size(), hashes: hashes_b64(&proof) },
            checkpoint: log.checkpoint().note,
        }
    }

    #[test]
    fn a_receipt_verifies_offline() {
        let (log, _) = TestLog::typical(2);
        let key = log.log_key.verifier();
        for seq in [0, 5, log.records.len() - 1] {
            let proven = verify(&receipt(&log, seq).to_bytes(), &key).unwrap();
            assert_eq!((proven.seq, proven.tree_size), (seq as u64, log.size()));
        }
        let proven = verify(&receipt(&log, 0).to_bytes(), &key).unwrap();
        assert_eq!((proven.id.as_str(), proven.kind.as_str()), ("genesis", "ledger.genesis"));
    }

    #[test]
    fn a_number_names_a_seq_and_anything_else_an_id() {
        assert_eq!(Wanted::from_arg("0"), Wanted::Seq(0));
        assert_eq!(Wanted::from_arg("42"), Wanted::Seq(42));
        assert_eq!(Wanted::from_arg("open-gpu-1"), Wanted::Id("open-gpu-1".into()));
        assert_eq!(Wanted::from_arg("+5"), Wanted::Id("+5".into()));
        // Past u64: not a seq the log can have, so it is looked up as an id.
        assert_eq!(Wanted::from_arg("99999999999999999999"), Wanted::Id("99999999999999999999".into()));
    }

    #[test]
    fn every_changed_byte_fails() {
        let (log, _) = TestLog::typical(1);
        let key = log.log_key.verifier();
        let bytes = receipt(&log, 4).to_bytes();
        for at in 0..bytes.len() {
            for bit in [0x01u8, 0x20] {
                let mut changed = bytes.clone();
                changed[at] ^= bit;
                assert!(verify(&changed, &key).is_err(), "byte {at} ^ {bit:#x} still verifies");
            }
        }
    }

    #[test]
    fn the_pinned_key_matters_and_failures_are_typed() {
        let (log, _) = TestLog::typical(1);
        let r = receipt(&log, 3);
        let other = TestLog::new();
        let e = verify(&r.to_bytes(), &other.log_key.verifier()).unwrap_err();
        assert_eq!(e.failure().map(|f| f.kind), Some(FailureKind::Checkpoint), "{e}");
        // A proof for another record.
        let mut wrong = r.clone();
        wrong.inclusion = receipt(&log, 2).inclusion;
        let e = verify(&wrong.to_bytes(), &log.log_key.verifier()).unwrap_err();
        assert_eq!(e.failure().map(|f| f.kind), Some(FailureKind::Checkpoint), "{e}");
        // A statement field that says something the leaf does not.
        let mut lying = r;
        lying.record.statement["actor"] = serde_json::json!("mallory");
        let e = verify(&lying.to_bytes(), &log.log_key.verifier()).unwrap_err();
        assert_eq!(e.failure().map(|f| (f.kind, f.seq)), Some((FailureKind::Chain, Some(3))), "{e}");
    }
}
