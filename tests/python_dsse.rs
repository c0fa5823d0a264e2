//! Envelopes signed by an independent DSSE implementation (Python, PyNaCl, PAE by hand) are
//! accepted. Skips with a notice when python3 or PyNaCl is missing, unless CI=true.

mod common;

use std::process::Command;

use api::json::Receipt;
use common::*;
use ledger::checkpoint::Checkpoint;
use ledger::keys::VerifierKey;
use serde_json::{json, Value};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/sign_and_post.py");

fn python_with_nacl() -> bool {
    let ok = Command::new("python3").args(["-c", "import nacl.signing"]).output().is_ok_and(|o| o.status.success());
    if !ok {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("python3 with PyNaCl is required under CI=true (pip install pynacl)");
        }
        eprintln!("NOTICE: skipping the independent DSSE test: python3 with PyNaCl is not installed");
    }
    ok
}

fn python_submit(s: &Server, key: &std::path::Path, kind: &str, data: Value, id: &str) -> (u16, Value) {
    let out = Command::new("python3")
        .arg(SCRIPT)
        .arg(&s.url)
        .arg(key)
        .arg(kind)
        .arg(data.to_string())
        .arg(id)
        .output()
        .unwrap();
    assert!(out.status.success(), "python failed: {}", String::from_utf8_lossy(&out.stderr));
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    (answer["status"].as_u64().unwrap() as u16, answer["body"].clone())
}

#[test]
fn envelopes_signed_by_pynacl_are_accepted() {
    if !python_with_nacl() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"));
    let cast = cast(&s, tmp.path());
    let (pybot_path, pybot) = keygen(tmp.path(), "pybot");
    s.append(
        &s.admin(),
        "register-pybot",
        "actor.registered",
        json!({"actor": "pybot", "key": pybot.verifier().to_string(), "roles": ["requester"]}),
    );
    let data = json!({"request": "py-1", "project": PROJECT, "resource": RESOURCE,
        "justification": "signed in Python", "pull_request": true});
    let (status, body) = python_submit(&s, &pybot_path, "access.requested", data.clone(), "py-open-1");
    assert_eq!(status, 201, "{body}");
    let receipt: Receipt = serde_json::from_value(body).unwrap();
    let log_key = VerifierKey::parse(&s.log().log_key).unwrap();
    let cp = Checkpoint::open(receipt.checkpoint.as_bytes(), &log_key).unwrap();
    assert_eq!(cp.size, s.log().size);
    let request = s.get_json("/v1/requests/py-1");
    assert_eq!(request["requester"], "pybot");
    assert_eq!(request["pull_request"], true);
    // The logged envelope keeps the Python signature and keyid; the payload bytes are the
    // Python's own (indented JSON), untouched.
    let rec = s.get_json(&format!("/v1/events/{}", receipt.seq));
    assert_eq!(rec["envelope"]["signatures"][0]["keyid"], pybot.keyid());
    let payload = ledger::b64::decode(rec["envelope"]["payload"].as_str().unwrap()).unwrap();
    assert!(payload.contains(&b'\n'));

    // A reviewer's approval signed in Python counts toward the quorum too.
    let alice_path = tmp.path().join("alice.key");
    cast.alice.write_file(&alice_path).unwrap();
    let (status, body) = python_submit(&s, &alice_path, "request.approved", json!({"request": "py-1"}), "py-approve-1");
    assert_eq!(status, 201, "{body}");
    let request = s.get_json("/v1/requests/py-1");
    assert_eq!(request["approvals"][0]["reviewer"], "alice");

    // And a Python signature over other bytes is refused.
    let mallory_path = tmp.path().join("mallory.key");
    ledger::keys::SigningKey::generate("mallory").unwrap().write_file(&mallory_path).unwrap();
    let (status, body) = python_submit(&s, &mallory_path, "request.approved", json!({"request": "py-1"}), "py-x");
    assert_eq!(status, 401, "{body}");
}
