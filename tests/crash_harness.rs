//! Crash safety under load. Each round starts the real server on one data
//! directory, drives it with 32 concurrent signing clients, sends SIGKILL at a random moment
//! and restarts it. After every round: every event that got a 201/200 receipt is in the log
//! with the same seq, leaf hash and chain hash; the log verifies completely; re-sending every
//! unacknowledged envelope yields exactly one copy of each.
//!
//! The default run does 3 rounds (CI); the long run is
//! `GRANTLINE_CRASH_ROUNDS=20 cargo test --release --test crash_harness`.
//!
//! The faults `abort_before_append`, `abort_after_append` and `abort_before_automation`
//! (GRANTLINE_FAULT, see api/src/server/fault.rs) crash the server at exact points: in the
//! middle of a batch and between a quorum and its grant.

mod common;
mod crash_support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use api::json::Receipt;
use common::{envelope, PROJECT, RESOURCE};
use crash_support::{verify_log, Proc};
use ledger::keys::{SigningKey, VerifierKey};
use rand::Rng;
use serde_json::{json, Value};

const CLIENTS: usize = 32;
const ROUNDS_ENV: &str = "GRANTLINE_CRASH_ROUNDS";
const ROUNDS_DEFAULT: usize = 3;
/// The kill comes this long after the clients start, uniformly at random.
const KILL_AFTER_MS_MIN: u64 = 50;
const KILL_AFTER_MS_MAX: u64 = 1500;
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// One envelope a client sent, and its receipt if it got one.
struct Sent {
    id: String,
    body: Vec<u8>,
    receipt: Option<Receipt>,
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(CLIENT_TIMEOUT).build().unwrap()
}

/// Posts `body`; `Some(receipt)` on 201/200, `None` when the answer never came (the server
/// died) or was a 503. Any other answer is a bug.
fn post(client: &reqwest::blocking::Client, url: &str, body: &[u8]) -> Option<(u16, Receipt)> {
    let resp = client.post(format!("{url}/v1/events")).body(body.to_vec()).send().ok()?;
    let status = resp.status().as_u16();
    let text = resp.text().ok()?;
    match status {
        200 | 201 => Some((status, serde_json::from_str(&text).unwrap())),
        503 => None,
        other => panic!("unexpected answer {other}: {text}"),
    }
}

fn admin_append(url: &str, admin: &SigningKey, origin: &str, id: &str, kind: &str, data: Value) {
    let (status, _) = post(&client(), url, &envelope(admin, origin, id, kind, data)).expect("setup event");
    assert!(status == 201 || status == 200, "{id}: {status}");
}

fn origin_and_key(url: &str) -> (String, VerifierKey) {
    let log: api::json::LogInfo = client().get(format!("{url}/v1/log")).send().unwrap().json().unwrap();
    (log.origin, VerifierKey::parse(&log.log_key).unwrap())
}

/// Registers `n` requester actors and the resource they request.
fn setup_clients(url: &str, data: &Path, n: usize) -> Vec<SigningKey> {
    let admin = Proc::admin_key(data);
    let (origin, _) = origin_and_key(url);
    admin_append(
        url,
        &admin,
        &origin,
        "define-gpu",
        "resource.defined",
        json!({"resource": RESOURCE, "provider": "open-gpu-server", "unit": "runner-minutes", "approvals_required": 2}),
    );
    (0..n)
        .map(|i| {
            let key = SigningKey::generate(&format!("client-{i}")).unwrap();
            admin_append(
                url,
                &admin,
                &origin,
                &format!("register-client-{i}"),
                "actor.registered",
                json!({"actor": key.name(), "key": key.verifier().to_string(), "roles": ["requester"]}),
            );
            key
        })
        .collect()
}

fn request_body(key: &SigningKey, origin: &str, id: &str) -> Vec<u8> {
    let data = json!({"request": id, "project": PROJECT, "resource": RESOURCE,
        "justification": "crash harness", "pull_request": false});
    envelope(key, origin, id, "access.requested", data)
}

/// Checks every acknowledged event against the verified log, then re-sends every
/// unacknowledged one and checks that each id is logged exactly once.
fn settle(url: &str, log_key: &VerifierKey, sent: &mut [Sent]) -> (usize, usize, u64) {
    let verified = verify_log(url, log_key);
    let mut acknowledged = 0;
    for s in sent.iter().filter(|s| s.receipt.is_some()) {
        let r = s.receipt.as_ref().unwrap();
        let logged = verified.by_id.get(&s.id).unwrap_or_else(|| panic!("acknowledged event {} was lost", s.id));
        assert_eq!(
            (logged.seq, &logged.leaf_hash, &logged.chain_hash),
            (r.seq, &r.leaf_hash, &r.chain_hash),
            "acknowledged event {} changed",
            s.id
        );
        acknowledged += 1;
    }
    let http = client();
    let mut resent = 0;
    for s in sent.iter_mut().filter(|s| s.receipt.is_none()) {
        let (status, receipt) = post(&http, url, &s.body).expect("a re-send to a running server is answered");
        assert_eq!(receipt.id, s.id);
        // Logged before the kill but never answered: the same record again (200).
        if let Some(logged) = verified.by_id.get(&s.id) {
            assert_eq!(status, 200, "{} was logged before the crash, so a re-send is a duplicate", s.id);
            assert_eq!((logged.seq, &logged.leaf_hash), (receipt.seq, &receipt.leaf_hash));
        } else {
            assert_eq!(status, 201, "{}", s.id);
        }
        s.receipt = Some(receipt);
        resent += 1;
    }
    let verified = verify_log(url, log_key);
    for s in sent.iter() {
        let logged = verified.by_id.get(&s.id).unwrap_or_else(|| panic!("{} is not logged after its re-send", s.id));
        assert_eq!(logged.copies, 1);
        assert_eq!(logged.seq, s.receipt.as_ref().unwrap().seq);
    }
    (acknowledged, resent, verified.size)
}

#[test]
fn kill_9_under_load_loses_no_acknowledged_event_and_duplicates_none() {
    let rounds: usize = std::env::var(ROUNDS_ENV).ok().and_then(|v| v.parse().ok()).unwrap_or(ROUNDS_DEFAULT);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let server = Proc::start(&data, &[]);
    let keys = setup_clients(&server.url, &data, CLIENTS);
    let (origin, log_key) = origin_and_key(&server.url);
    let mut server = Some(server);
    let mut sent: Vec<Sent> = Vec::new();
    let mut rng = rand::thread_rng();
    let started = Instant::now();
    let (mut total_acked, mut total_resent) = (0usize, 0usize);

    for round in 0..rounds {
        let proc = server.take().unwrap_or_else(|| Proc::start(&data, &[]));
        let url = proc.url.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let barrier = Arc::new(Barrier::new(CLIENTS + 1));
        let handles: Vec<_> = keys
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, key)| {
                let (url, origin, stop, barrier) = (url.clone(), origin.clone(), stop.clone(), barrier.clone());
                std::thread::spawn(move || {
                    let http = client();
                    let mut mine = Vec::new();
                    barrier.wait();
                    for n in 0.. {
                        let id = format!("r{round}-c{i}-{n}");
                        let body = request_body(&key, &origin, &id);
                        let receipt = post(&http, &url, &body).map(|(status, receipt)| {
                            assert_eq!(status, 201, "{id}: a fresh event");
                            receipt
                        });
                        let dead = receipt.is_none();
                        mine.push(Sent { id, body, receipt });
                        if dead || stop.load(Ordering::SeqCst) {
                            break;
                        }
                    }
                    mine
                })
            })
            .collect();
        barrier.wait();
        std::thread::sleep(Duration::from_millis(rng.gen_range(KILL_AFTER_MS_MIN..=KILL_AFTER_MS_MAX)));
        proc.kill9();
        stop.store(true, Ordering::SeqCst);
        let mut round_sent: Vec<Sent> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
        let round_acked = round_sent.iter().filter(|s| s.receipt.is_some()).count();
        sent.append(&mut round_sent);

        let proc = Proc::start(&data, &[]);
        let (acknowledged, resent, size) = settle(&proc.url, &log_key, &mut sent);
        total_acked += round_acked;
        total_resent += resent;
        eprintln!(
            "round {}/{rounds}: {round_acked} acknowledged before the kill, {resent} re-sent, \
             {acknowledged} earlier receipts checked, log size {size}",
            round + 1
        );
        server = Some(proc);
    }
    eprintln!(
        "{rounds} rounds in {:.1} s: {total_acked} events acknowledged under load, {total_resent} re-sent after a \
         kill, 0 lost, 0 duplicated",
        started.elapsed().as_secs_f64()
    );
    assert!(total_acked > 0, "no client ever got a receipt");
}

/// Fires `ids` concurrently (one client each) at a server that will abort in the middle;
/// returns the receipts that came back.
fn fire(url: &str, bodies: &[(String, Vec<u8>)]) -> HashMap<String, Receipt> {
    let barrier = Arc::new(Barrier::new(bodies.len()));
    let got = Arc::new(Mutex::new(HashMap::new()));
    let handles: Vec<_> = bodies
        .iter()
        .cloned()
        .map(|(id, body)| {
            let (url, barrier, got) = (url.to_string(), barrier.clone(), got.clone());
            std::thread::spawn(move || {
                let http = client();
                barrier.wait();
                if let Some((_, receipt)) = post(&http, &url, &body) {
                    got.lock().unwrap().insert(id, receipt);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    Arc::try_unwrap(got).unwrap().into_inner().unwrap()
}

/// A crash in the middle of a batch, either side of its durable write.
fn crash_in_batch(fault: &str, batch_is_durable: bool) {
    const FIRED: usize = 24;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let trigger = "trigger-request";
    let proc = Proc::start(&data, &[("GRANTLINE_FAULT", &format!("{fault}:{trigger}"))]);
    let keys = setup_clients(&proc.url, &data, 4);
    let (origin, log_key) = origin_and_key(&proc.url);
    let before = verify_log(&proc.url, &log_key).size;
    let mut bodies: Vec<(String, Vec<u8>)> = (0..FIRED - 1)
        .map(|i| {
            let id = format!("batch-{i}");
            let body = request_body(&keys[i % keys.len()], &origin, &id);
            (id, body)
        })
        .collect();
    bodies.insert(FIRED / 2, (trigger.to_string(), request_body(&keys[0], &origin, trigger)));
    let receipts = fire(&proc.url, &bodies);
    let status = proc.wait_exit();
    assert!(!status.success(), "the fault must have aborted the server: {status}");
    assert!(!receipts.contains_key(trigger), "the crashed batch was acknowledged");

    let proc = Proc::start(&data, &[]);
    let verified = verify_log(&proc.url, &log_key);
    assert_eq!(verified.by_id.contains_key(trigger), batch_is_durable, "{fault}");
    for (id, receipt) in &receipts {
        let logged = &verified.by_id[id];
        assert_eq!(
            (logged.seq, &logged.leaf_hash, &logged.chain_hash),
            (receipt.seq, &receipt.leaf_hash, &receipt.chain_hash)
        );
    }
    let mut sent: Vec<Sent> = bodies
        .into_iter()
        .map(|(id, body)| {
            let receipt = receipts.get(&id).cloned();
            Sent { id, body, receipt }
        })
        .collect();
    let (_, resent, size) = settle(&proc.url, &log_key, &mut sent);
    assert!(resent >= 1);
    assert_eq!(size, before + FIRED as u64, "every fired event is logged exactly once");
}

#[test]
fn crash_before_a_batch_is_written_loses_only_unacknowledged_events() {
    crash_in_batch("abort_before_append", false);
}

#[test]
fn crash_after_a_batch_is_durable_keeps_it_and_resends_are_duplicates() {
    crash_in_batch("abort_after_append", true);
}

#[test]
fn crash_between_quorum_and_grant_issues_the_grant_exactly_once_after_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let proc = Proc::start(&data, &[("GRANTLINE_FAULT", "abort_before_automation")]);
    let url = proc.url.clone();
    let admin = Proc::admin_key(&data);
    let (origin, log_key) = origin_and_key(&url);
    let bot = SigningKey::generate("bot").unwrap();
    let alice = SigningKey::generate("alice").unwrap();
    let bob = SigningKey::generate("bob").unwrap();
    for (key, role) in [(&bot, "requester"), (&alice, "reviewer"), (&bob, "reviewer")] {
        admin_append(
            &url,
            &admin,
            &origin,
            &format!("register-{}", key.name()),
            "actor.registered",
            json!({"actor": key.name(), "key": key.verifier().to_string(), "roles": [role]}),
        );
    }
    admin_append(
        &url,
        &admin,
        &origin,
        "define-gpu",
        "resource.defined",
        json!({"resource": RESOURCE, "provider": "open-gpu-server", "unit": "runner-minutes", "approvals_required": 2}),
    );
    let http = client();
    let open = envelope(
        &bot,
        &origin,
        "open-gpu",
        "access.requested",
        json!({"request": "gpu", "project": PROJECT, "resource": RESOURCE, "justification": "GPU builds",
            "pull_request": false, "days": 30}),
    );
    assert_eq!(post(&http, &url, &open).unwrap().0, 201);
    let first = envelope(&alice, &origin, "approve-alice", "request.approved", json!({"request": "gpu"}));
    assert_eq!(post(&http, &url, &first).unwrap().0, 201);
    // The second approval completes the quorum: durable, then the automation aborts.
    let second = envelope(&bob, &origin, "approve-bob", "request.approved", json!({"request": "gpu"}));
    assert!(post(&http, &url, &second).is_none(), "the quorum's approval was answered before the grant");
    assert!(!proc.wait_exit().success());

    let proc = Proc::start(&data, &[]);
    // The start-up automation issues the grant; poll until it is there (no timing assertion).
    let check = format!("{}/v1/access/check?project={PROJECT}&resource={RESOURCE}&pull_request=false", proc.url);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer: Value = http.get(&check).send().unwrap().json().unwrap();
        if answer["allowed"] == true {
            break;
        }
        assert!(Instant::now() < deadline, "the grant was never issued after restart: {answer}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Re-sending bob's approval is a duplicate; the grant stays single.
    assert_eq!(post(&http, &proc.url, &second).unwrap().0, 200);
    let verified = verify_log(&proc.url, &log_key);
    assert!(verified.by_id.contains_key("approve-bob"));
    let records: Value = http.get(format!("{}/v1/events?from=0&limit=1000", proc.url)).send().unwrap().json().unwrap();
    let grants: Vec<&Value> =
        records["records"].as_array().unwrap().iter().filter(|r| r["statement"]["type"] == "grant.issued").collect();
    assert_eq!(grants.len(), 1, "the grant must be issued exactly once: {grants:?}");
    assert_eq!(grants[0]["statement"]["data"]["request"], "gpu");
    assert_eq!(grants[0]["statement"]["actor"], "automation");
    // And once more after another restart: the automation does not issue it again.
    drop(proc);
    let proc = Proc::start(&data, &[]);
    let again = verify_log(&proc.url, &log_key);
    assert_eq!(again.size, verified.size);
}
