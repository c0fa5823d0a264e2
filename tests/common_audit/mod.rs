//! Helpers for the auditor's end-to-end tests: a real log made through the API, concurrently;
//! export files read, tampered and written back; the binary's exit codes.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use api::json::RecordJson;
use ledger::b64;
use ledger::keys::SigningKey;
use ledger::record::Record;
use serde_json::json;

use crate::common::{envelope, Cast, Server, BIN, PROJECT, RESOURCE};

/// Threads posting events at once (the sequencer batches them: group commit).
pub(crate) const POSTERS: usize = 8;

/// Runs `grantline` with no server or key in the environment.
pub(crate) fn grantline(args: &[&str]) -> Output {
    Command::new(BIN).args(args).env_remove("GRANTLINE_SERVER").env_remove("GRANTLINE_KEY").output().unwrap()
}

pub(crate) fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

pub(crate) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub(crate) fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts the exit code, and that the failure names `seq` when given.
#[track_caller]
pub(crate) fn assert_fails(out: &Output, exit_code: i32, seq: Option<u64>) {
    assert_eq!(code(out), exit_code, "stdout: {}\nstderr: {}", stdout(out), stderr(out));
    if let Some(seq) = seq {
        assert!(stderr(out).contains(&format!("at seq {seq}:")), "should name seq {seq}: {}", stderr(out));
    }
}

#[track_caller]
pub(crate) fn assert_ok(out: &Output) -> String {
    assert_eq!(code(out), 0, "stdout: {}\nstderr: {}", stdout(out), stderr(out));
    stdout(out)
}

/// Posts a signed event that must be appended (201).
pub(crate) fn post_ok(server: &Server, origin: &str, key: &SigningKey, id: &str, kind: &str, data: serde_json::Value) {
    let resp = server.post(envelope(key, origin, id, kind, data));
    let status = resp.status().as_u16();
    assert_eq!(status, 201, "{kind} {id}: {}", resp.text().unwrap_or_default());
}

/// Opens `requests` requests for distinct projects and has alice and bob approve each (the
/// automation key then issues the grant): four records per request, posted from
/// [`POSTERS`] threads at once.
pub(crate) fn grant_many(server: &Server, cast: &Cast, prefix: &str, requests: usize) {
    let origin = server.log().origin;
    std::thread::scope(|scope| {
        for poster in 0..POSTERS {
            let origin = &origin;
            scope.spawn(move || {
                for i in (poster..requests).step_by(POSTERS) {
                    let request = format!("{prefix}-{i}");
                    post_ok(
                        server,
                        origin,
                        &cast.bot,
                        &format!("open-{request}"),
                        "access.requested",
                        json!({"request": request, "project": format!("{prefix}-feedstock-{i}"), "resource": RESOURCE,
                               "justification": "GPU builds", "pull_request": false}),
                    );
                    for reviewer in [&cast.alice, &cast.bob] {
                        post_ok(
                            server,
                            origin,
                            reviewer,
                            &format!("approve-{request}-{}", reviewer.name()),
                            "request.approved",
                            json!({"request": request}),
                        );
                    }
                }
            });
        }
    });
}

/// Opens one request that stays pending.
pub(crate) fn open_pending(server: &Server, cast: &Cast, request: &str) {
    let origin = server.log().origin;
    post_ok(
        server,
        &origin,
        &cast.bot,
        &format!("open-{request}"),
        "access.requested",
        json!({"request": request, "project": PROJECT, "resource": RESOURCE, "justification": "GPU builds",
               "pull_request": false}),
    );
}

/// Waits until the server's log has at least `size` records (automation appends grants
/// right after the approvals that complete a quorum).
pub(crate) fn wait_for_size(server: &Server, size: u64) -> u64 {
    for _ in 0..200 {
        let now = server.log().size;
        if now >= size {
            return now;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("the log did not reach {size} records");
}

/// `grantline export --server` of `server` into `dir`: (the export file, its checkpoint file).
pub(crate) fn export_server(server: &Server, dir: &Path) -> (PathBuf, PathBuf) {
    let export = dir.join("export.jsonl");
    let checkpoint = dir.join("checkpoint.txt");
    assert_ok(&grantline(&[
        "export",
        "--server",
        &server.url,
        "--out",
        export.to_str().unwrap(),
        "--checkpoint-out",
        checkpoint.to_str().unwrap(),
    ]));
    (export, checkpoint)
}

pub(crate) fn read_export(path: &Path) -> Vec<RecordJson> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines().filter(|l| !l.is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect()
}

pub(crate) fn write_export(path: &Path, records: &[RecordJson]) {
    let mut out = String::new();
    for r in records {
        out.push_str(&serde_json::to_string(r).unwrap());
        out.push('\n');
    }
    std::fs::write(path, out).unwrap();
}

pub(crate) fn record_of(rj: &RecordJson) -> Record {
    Record::decode_vec(b64::decode(&rj.leaf).unwrap()).unwrap()
}

/// Renumbers and re-chains records from `from` on, rewriting every field consistently, so
/// only what the records say can be wrong.
pub(crate) fn relink(records: &mut [RecordJson], from: usize) {
    for i in from..records.len() {
        let prev = if i == 0 { [0; 32] } else { record_of(&records[i - 1]).chain_hash() };
        let r = record_of(&records[i]);
        let rec = Record::new(i as u64, prev, r.received_at_ms, r.envelope()).unwrap();
        records[i] = RecordJson::from_record(&rec).unwrap();
    }
}

/// Inserts a record holding `envelope` at `at`, relinking everything after it.
pub(crate) fn insert(records: &mut Vec<RecordJson>, at: usize, envelope: &[u8]) {
    let received_at_ms = record_of(&records[at - 1]).received_at_ms;
    let rec = Record::new(at as u64, [0; 32], received_at_ms, envelope).unwrap();
    records.insert(at, RecordJson::from_record(&rec).unwrap());
    relink(records, at);
}

/// The first record whose statement has this type and id prefix.
pub(crate) fn find(records: &[RecordJson], kind: &str, id_prefix: &str) -> usize {
    records
        .iter()
        .position(|r| r.statement["type"] == kind && r.statement["id"].as_str().unwrap_or("").starts_with(id_prefix))
        .unwrap_or_else(|| panic!("no {kind} {id_prefix}*"))
}
