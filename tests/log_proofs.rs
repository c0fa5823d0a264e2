//! Receipts, proofs, the event stream and restarts, checked with the log's public key only.

mod common;

use std::io::{BufRead, BufReader};

use api::json::{ConsistencyProof, InclusionProof, Receipt, RecordJson, RecordPage};
use common::*;
use ledger::checkpoint::Checkpoint;
use ledger::keys::VerifierKey;
use ledger::merkle::{verify_consistency, verify_inclusion};
use ledger::{b64, Hash};
use serde_json::json;

fn log_key(s: &Server) -> VerifierKey {
    VerifierKey::parse(&s.log().log_key).unwrap()
}

fn hashes(v: &[String]) -> Vec<Hash> {
    api::json::hashes_from_b64(v).unwrap()
}

/// Verifies a receipt with nothing but the log key and the record's leaf bytes.
fn verify_receipt(receipt: &Receipt, key: &VerifierKey, leaf: &[u8]) {
    let cp = Checkpoint::open(receipt.checkpoint.as_bytes(), key).expect("checkpoint signed by the log key");
    assert_eq!(cp.size, receipt.inclusion.tree_size);
    assert_eq!(receipt.inclusion.index, receipt.seq);
    let leaf_hash = ledger::merkle::leaf_hash(leaf);
    assert_eq!(b64::encode(leaf_hash), receipt.leaf_hash);
    assert_eq!(b64::encode(ledger::record::chain_hash(leaf)), receipt.chain_hash);
    verify_inclusion(receipt.seq, cp.size, &leaf_hash, &hashes(&receipt.inclusion.hashes), &cp.root)
        .expect("inclusion proof verifies");
}

fn record(s: &Server, seq: u64) -> RecordJson {
    serde_json::from_value(s.get_json(&format!("/v1/events/{seq}"))).unwrap()
}

#[test]
fn identical_resubmission_returns_the_original_receipt_and_receipts_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"));
    let cast = cast(&s, tmp.path());
    let origin = s.log().origin;
    let body = envelope(
        &cast.bot,
        &origin,
        "open-gpu-1",
        "access.requested",
        json!({"request": "gpu-1", "project": PROJECT, "resource": RESOURCE, "justification": "GPU builds", "pull_request": false}),
    );
    let first = s.post(body.clone());
    assert_eq!(first.status().as_u16(), 201);
    let first: Receipt = first.json().unwrap();
    let size = s.log().size;
    // More events, then the same bytes again.
    open_request(&s, &cast, "gpu-2");
    let again = s.post(body);
    assert_eq!(again.status().as_u16(), 200);
    let again: Receipt = again.json().unwrap();
    assert_eq!(
        (again.seq, &again.id, &again.leaf_hash, &again.chain_hash),
        (first.seq, &first.id, &first.leaf_hash, &first.chain_hash)
    );
    assert_eq!(s.log().size, size + 1, "the re-submission was logged again");

    // Both receipts verify against their checkpoints with the log key alone.
    let key = log_key(&s);
    let rec = record(&s, first.seq);
    let leaf = b64::decode(&rec.leaf).unwrap();
    verify_receipt(&first, &key, &leaf);
    verify_receipt(&again, &key, &leaf);
    assert_eq!(rec.statement["id"], "open-gpu-1");
    assert_eq!(
        rec.envelope,
        serde_json::from_slice::<serde_json::Value>(ledger::record::Record::decode(&leaf).unwrap().envelope()).unwrap()
    );

    // A receipt for another leaf does not verify: the proof is specific.
    let other = record(&s, first.seq + 1);
    let other_hash = ledger::merkle::leaf_hash(&b64::decode(&other.leaf).unwrap());
    let cp = Checkpoint::open(first.checkpoint.as_bytes(), &key).unwrap();
    assert!(verify_inclusion(first.seq, cp.size, &other_hash, &hashes(&first.inclusion.hashes), &cp.root).is_err());
}

#[test]
fn consistency_and_inclusion_proofs_between_checkpoints_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"));
    let key = log_key(&s);
    let cp1_text = s.get("/v1/checkpoint").text().unwrap();
    let cp1 = Checkpoint::open(cp1_text.as_bytes(), &key).unwrap();
    assert_eq!(cp1.size, s.log().size);
    let cast = cast(&s, tmp.path());
    for i in 0..5 {
        open_request(&s, &cast, &format!("req-{i}"));
    }
    let resp = s.get("/v1/checkpoint");
    assert_eq!(resp.headers()["content-type"], "text/plain; charset=utf-8");
    let cp2 = Checkpoint::open(resp.text().unwrap().as_bytes(), &key).unwrap();
    assert!(cp2.size > cp1.size);
    assert_eq!(b64::encode(cp2.root), s.log().root);

    let proof: ConsistencyProof =
        serde_json::from_value(s.get_json(&format!("/v1/proofs/consistency?from={}&to={}", cp1.size, cp2.size)))
            .unwrap();
    assert_eq!((proof.from, proof.to), (cp1.size, cp2.size));
    verify_consistency(cp1.size, cp2.size, &cp1.root, &cp2.root, &hashes(&proof.hashes)).expect("consistent");
    // Against a wrong old root it fails.
    assert!(verify_consistency(cp1.size, cp2.size, &cp2.root, &cp2.root, &hashes(&proof.hashes)).is_err());

    // Every pair of sizes is consistent, and every record is included in every later tree.
    for from in 1..=cp2.size {
        let p: ConsistencyProof =
            serde_json::from_value(s.get_json(&format!("/v1/proofs/consistency?from={from}"))).unwrap();
        assert_eq!(p.to, cp2.size);
        let old_root = root_of_first(&s, from);
        verify_consistency(from, cp2.size, &old_root, &cp2.root, &hashes(&p.hashes)).unwrap();
    }
    for seq in 0..cp1.size {
        let p: InclusionProof =
            serde_json::from_value(s.get_json(&format!("/v1/proofs/inclusion/{seq}?size={}", cp1.size))).unwrap();
        let leaf = b64::decode(&record(&s, seq).leaf).unwrap();
        verify_inclusion(seq, cp1.size, &ledger::merkle::leaf_hash(&leaf), &hashes(&p.hashes), &cp1.root).unwrap();
    }
}

/// The root of the first `size` records, computed here from their leaves.
fn root_of_first(s: &Server, size: u64) -> Hash {
    let page: RecordPage = serde_json::from_value(s.get_json(&format!("/v1/events?from=0&limit={size}"))).unwrap();
    let mut tree = ledger::merkle::MemoryTree::new();
    for r in page.records.iter().take(size as usize) {
        tree.push(ledger::merkle::leaf_hash(&b64::decode(&r.leaf).unwrap()));
    }
    assert_eq!(tree.size(), size);
    tree.root()
}

#[test]
fn records_chain_and_pages_are_dense() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"));
    let cast = cast(&s, tmp.path());
    open_request(&s, &cast, "gpu-1");
    let size = s.log().size;
    let page: RecordPage = serde_json::from_value(s.get_json("/v1/events?from=0&limit=1000")).unwrap();
    assert_eq!(page.records.len() as u64, size);
    let mut prev = b64::encode([0u8; 32]);
    for (i, r) in page.records.iter().enumerate() {
        assert_eq!(r.seq, i as u64);
        assert_eq!(r.prev, prev);
        let rec = r.to_record().unwrap();
        assert_eq!(b64::encode(rec.chain_hash()), r.chain_hash);
        prev = r.chain_hash.clone();
    }
    assert_eq!(page.records[0].statement["type"], "ledger.genesis");
    // Paging: limit is honoured and `from` is inclusive.
    let two: RecordPage = serde_json::from_value(s.get_json("/v1/events?from=2&limit=2")).unwrap();
    assert_eq!(two.records.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![2, 3]);
    let by_id: RecordJson = serde_json::from_value(s.get_json("/v1/events/by-id/open-gpu-1")).unwrap();
    assert_eq!(by_id.statement["data"]["request"], "gpu-1");
    let empty: RecordPage = serde_json::from_value(s.get_json(&format!("/v1/events?from={size}"))).unwrap();
    assert!(empty.records.is_empty());
}

#[test]
fn sse_delivers_the_full_history_then_live_events() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"));
    let cast = cast(&s, tmp.path());
    open_request(&s, &cast, "gpu-1");
    let size = s.log().size;
    let page: RecordPage = serde_json::from_value(s.get_json("/v1/events?from=0&limit=1000")).unwrap();

    let resp = http().get(format!("{}/v1/events/stream?from=0", s.url)).send().unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let mut lines = BufReader::new(resp).lines();
    let mut next_record = || -> RecordJson {
        loop {
            let line = lines.next().expect("stream ended").unwrap();
            if let Some(data) = line.strip_prefix("data:") {
                return serde_json::from_str(data.trim_start()).unwrap();
            }
        }
    };
    for expected in &page.records {
        let got = next_record();
        assert_eq!(&got, expected, "history differs at seq {}", expected.seq);
    }
    // Now live: an event appended after the history was sent.
    let receipt = open_request(&s, &cast, "gpu-live");
    assert_eq!(receipt.seq, size);
    let live = next_record();
    assert_eq!(live.seq, size);
    assert_eq!(live.statement["id"], "open-gpu-live");
    assert_eq!(live.leaf_hash, receipt.leaf_hash);

    // A stream from the middle starts there.
    let resp = http().get(format!("{}/v1/events/stream?from={}", s.url, size - 1)).send().unwrap();
    let mut lines = BufReader::new(resp).lines();
    let first = loop {
        let line = lines.next().unwrap().unwrap();
        if let Some(data) = line.strip_prefix("data:") {
            break serde_json::from_str::<RecordJson>(data.trim_start()).unwrap();
        }
    };
    assert_eq!(first.seq, size - 1);
}

#[test]
fn restart_with_the_same_data_dir_keeps_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let s = Server::start(&data);
    let cast = cast(&s, tmp.path());
    let opened = open_request(&s, &cast, "gpu-1");
    s.append(&cast.alice, "a1", "request.approved", json!({"request": "gpu-1", "pool": POOL}));
    s.append(&cast.bob, "a2", "request.approved", json!({"request": "gpu-1"}));
    let log = s.log();
    let allocations = s.get_json("/v1/allocations");
    let requests = s.get_json("/v1/requests");
    let actors = s.get_json("/v1/actors");
    let usage = s.get_json(&format!("/v1/sponsors/{SPONSOR}/usage"));
    assert_eq!(allocations["resources"][0]["grants"][0]["project"], PROJECT, "{allocations}");
    s.stop();

    let s = Server::start(&data);
    assert_eq!(s.log(), log);
    assert_eq!(s.get_json("/v1/allocations"), allocations);
    assert_eq!(s.get_json("/v1/requests"), requests);
    assert_eq!(s.get_json("/v1/actors"), actors);
    assert_eq!(s.get_json(&format!("/v1/sponsors/{SPONSOR}/usage")), usage);
    let rec: RecordJson = serde_json::from_value(s.get_json("/v1/events/by-id/open-gpu-1")).unwrap();
    assert_eq!((rec.seq, rec.leaf_hash.clone()), (opened.seq, opened.leaf_hash.clone()));
    // The old checkpoint is consistent with the new one, and the log continues the chain.
    let receipt = open_request(&s, &cast, "gpu-2");
    assert_eq!(receipt.seq, log.size);
    let next = record(&s, log.size);
    assert_eq!(next.prev, record(&s, log.size - 1).chain_hash);
    let key = log_key(&s);
    let cp = Checkpoint::open(receipt.checkpoint.as_bytes(), &key).unwrap();
    let p: ConsistencyProof =
        serde_json::from_value(s.get_json(&format!("/v1/proofs/consistency?from={}&to={}", log.size, cp.size)))
            .unwrap();
    verify_consistency(log.size, cp.size, &b64::decode_hash(&log.root).unwrap(), &cp.root, &hashes(&p.hashes)).unwrap();
    s.stop();
}
