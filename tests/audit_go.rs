//! The independent check: checkpoints, inclusion proofs and consistency proofs served by the
//! real server verify with Go's golang.org/x/mod/sumdb/note and sumdb/tlog (tests/go/tlogcheck),
//! code this project did not write. A format drift fails here.
//!
//! Needs `go` and the x/mod sources (Debian: golang-go, golang-golang-x-mod-dev). Without them
//! the test prints a notice and passes, except under CI=true, where it fails.

mod common;
mod common_audit;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use api::json::{ConsistencyProof, InclusionProof, RecordJson};
use common::*;
use common_audit::*;
use serde_json::json;

/// Runs tlogcheck on a job; returns (success, what it printed).
fn check(bin: &Path, job: &serde_json::Value) -> (bool, String) {
    let mut child = Command::new(bin).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(job.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn go_sumdb_verifies_the_servers_checkpoints_and_proofs() {
    let Some(bin) = tlogcheck() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"));
    let key = server.log().log_key;
    let cast = cast(&server, tmp.path());
    let old_checkpoint = server.get("/v1/checkpoint").text().unwrap();
    grant_many(&server, &cast, "go", 5);
    let size = wait_for_size(&server, 7 + 20);
    let checkpoint = server.get("/v1/checkpoint").text().unwrap();
    let cp_size =
        ledger::checkpoint::Checkpoint::open(checkpoint.as_bytes(), &ledger::keys::VerifierKey::parse(&key).unwrap())
            .unwrap()
            .size;
    assert!(cp_size >= size);

    let seqs = [0, 1, 6, 7, cp_size / 2, cp_size - 2, cp_size - 1];
    let inclusion: Vec<serde_json::Value> = seqs
        .iter()
        .map(|&seq| {
            let rec: RecordJson = serde_json::from_value(server.get_json(&format!("/v1/events/{seq}"))).unwrap();
            let proof: InclusionProof =
                serde_json::from_value(server.get_json(&format!("/v1/proofs/inclusion/{seq}?size={cp_size}"))).unwrap();
            assert_eq!((proof.index, proof.tree_size), (seq, cp_size));
            json!({"index": seq, "leaf": rec.leaf, "hashes": proof.hashes})
        })
        .collect();
    let old_size: u64 = old_checkpoint.lines().nth(1).unwrap().parse().unwrap();
    let consistency: ConsistencyProof =
        serde_json::from_value(server.get_json(&format!("/v1/proofs/consistency?from={old_size}&to={cp_size}")))
            .unwrap();
    let job = json!({
        "log_key": key,
        "checkpoint": checkpoint,
        "old_checkpoint": old_checkpoint,
        "consistency": consistency.hashes,
        "inclusion": inclusion,
    });
    let (ok, said) = check(&bin, &job);
    assert!(ok, "Go's sumdb rejects what the server serves: {said}");
    assert_eq!(said, format!("ok {cp_size} {}", seqs.len() + 1));

    // A receipt made by `grantline prove` checks too.
    let receipt: serde_json::Value = serde_json::from_str(&assert_ok(&grantline(&[
        "prove",
        "open-go-3",
        "--server",
        &server.url,
        "--log-key",
        &key,
    ])))
    .unwrap();
    let job_receipt = json!({
        "log_key": key,
        "checkpoint": receipt["checkpoint"],
        "inclusion": [{"index": receipt["inclusion"]["index"], "leaf": receipt["record"]["leaf"],
                       "hashes": receipt["inclusion"]["hashes"]}],
    });
    let (ok, said) = check(&bin, &job_receipt);
    assert!(ok, "Go rejects a grantline receipt: {said}");

    // The checker is not a rubber stamp: a changed proof hash, leaf or checkpoint fails.
    let mut bad = job.clone();
    bad["consistency"][0] = json!(ledger::b64::encode([7u8; 32]));
    assert!(!check(&bin, &bad).0);
    let mut bad = job.clone();
    bad["inclusion"][2]["leaf"] = job["inclusion"][3]["leaf"].clone();
    assert!(!check(&bin, &bad).0);
    let mut bad = job;
    bad["checkpoint"] = json!(checkpoint.replacen(&format!("\n{cp_size}\n"), &format!("\n{}\n", cp_size + 1), 1));
    assert!(!check(&bin, &bad).0);
}
