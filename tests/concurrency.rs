//! 200 concurrent submitters: distinct dense seqs, no lost or duplicated events.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Barrier};

use api::json::{Receipt, RecordPage};
use common::*;
use ledger::checkpoint::Checkpoint;
use ledger::keys::VerifierKey;
use serde_json::json;

const SUBMITTERS: usize = 200;

#[test]
fn two_hundred_concurrent_submitters_get_distinct_dense_seqs() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"));
    let cast = cast(&s, tmp.path());
    let log = s.log();
    let base = log.size;
    let barrier = Arc::new(Barrier::new(SUBMITTERS));
    let handles: Vec<_> = (0..SUBMITTERS)
        .map(|i| {
            let id = format!("concurrent-{i}");
            let data = json!({"request": id, "project": PROJECT, "resource": RESOURCE,
                "justification": "load", "pull_request": false});
            let body = envelope(&cast.bot, &log.origin, &id, "access.requested", data);
            let url = s.url.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let client = http();
                barrier.wait();
                let resp = client.post(format!("{url}/v1/events")).body(body).send().unwrap();
                assert_eq!(resp.status().as_u16(), 201);
                let receipt: Receipt = resp.json().unwrap();
                assert_eq!(receipt.id, id);
                receipt
            })
        })
        .collect();
    let receipts: Vec<Receipt> = handles.into_iter().map(|h| h.join().unwrap()).collect();

    let seqs: BTreeSet<u64> = receipts.iter().map(|r| r.seq).collect();
    assert_eq!(seqs.len(), SUBMITTERS, "two submitters got the same seq");
    assert_eq!(seqs, (base..base + SUBMITTERS as u64).collect::<BTreeSet<_>>(), "seqs are not dense");
    assert_eq!(s.log().size, base + SUBMITTERS as u64);

    // The log holds each event exactly once, at its receipt's seq.
    let page: RecordPage =
        serde_json::from_value(s.get_json(&format!("/v1/events?from={base}&limit={SUBMITTERS}"))).unwrap();
    assert_eq!(page.records.len(), SUBMITTERS);
    let logged: BTreeSet<String> =
        page.records.iter().map(|r| r.statement["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(logged.len(), SUBMITTERS);
    let key = VerifierKey::parse(&log.log_key).unwrap();
    for r in &receipts {
        let rec = &page.records[(r.seq - base) as usize];
        assert_eq!(rec.statement["id"], r.id.as_str());
        assert_eq!(rec.leaf_hash, r.leaf_hash);
        let cp = Checkpoint::open(r.checkpoint.as_bytes(), &key).unwrap();
        let proof = api::json::hashes_from_b64(&r.inclusion.hashes).unwrap();
        let leaf_hash = ledger::b64::decode_hash(&r.leaf_hash).unwrap();
        ledger::merkle::verify_inclusion(r.seq, cp.size, &leaf_hash, &proof, &cp.root).unwrap();
    }
    let pending = s.get_json("/v1/requests?status=pending");
    assert_eq!(pending["requests"].as_array().unwrap().len(), SUBMITTERS);

    // Group commit happened: fewer batches than events (counted, not timed).
    let metrics = s.get("/metrics").text().unwrap();
    let appends = metric(&metrics, "grantline_appends_total");
    let batches = metric(&metrics, "grantline_batch_entries_count");
    assert_eq!(appends, (base + SUBMITTERS as u64 - 1) as f64, "genesis is written by init, not the server");
    assert!(batches <= appends);
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        .parse()
        .unwrap()
}
