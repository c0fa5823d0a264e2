//! Service hygiene: slow clients get no lasting hold, the connection cap holds, a
//! disk that refuses writes gives 503 and leaves the log intact and appendable, the data
//! directory and key files are private, and secrets never reach logs or error bodies.

mod common;
mod crash_support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use crash_support::verify_log;
use ledger::keys::{SigningKey, VerifierKey};
use serde_json::{json, Value};

/// Generous cap for "the server closed it eventually"; not a timing assertion.
const CLOSE_CAP: Duration = Duration::from_secs(60);

fn addr(s: &Server) -> String {
    s.url.trim_start_matches("http://").to_string()
}

/// Feeds `prefix` one byte at a time every `pace` until the server closes the connection;
/// returns whether it did within CLOSE_CAP.
fn drip_until_closed(addr: &str, prefix: &[u8], pace: Duration) -> bool {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(pace)).unwrap();
    let deadline = Instant::now() + CLOSE_CAP;
    let mut i = 0;
    let mut buf = [0u8; 1024];
    while Instant::now() < deadline {
        if i < prefix.len() {
            if tcp.write_all(&prefix[i..i + 1]).is_err() {
                return true;
            }
            i += 1;
        }
        match tcp.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {} // e.g. a 408 before the close
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn slowloris_connections_are_closed_and_others_are_served_meanwhile() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start_with_env(&tmp.path().join("data"), &[("GRANTLINE_HEADER_READ_TIMEOUT_MS", "1000")]);
    let addr = addr(&s);
    // A request line that never ends, a head without its blank line, and silence.
    let slow: Vec<&'static [u8]> = vec![
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n",
        b"",
    ];
    let handles: Vec<_> = slow
        .into_iter()
        .cycle()
        .take(9)
        .map(|prefix| {
            let addr = addr.clone();
            std::thread::spawn(move || drip_until_closed(&addr, prefix, Duration::from_millis(200)))
        })
        .collect();
    // Meanwhile normal requests are served.
    for _ in 0..5 {
        assert_eq!(s.get_json("/healthz")["status"], "ok");
        std::thread::sleep(Duration::from_millis(100));
    }
    for h in handles {
        assert!(h.join().unwrap(), "a slow connection was held open");
    }
    assert_eq!(s.get_json("/healthz")["status"], "ok");
}

/// Opens a connection and completes one keep-alive request on it, so it holds a slot.
fn held_connection(addr: &str) -> (TcpStream, String) {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut buf = [0u8; 4096];
    let n = tcp.read(&mut buf).unwrap();
    (tcp, String::from_utf8_lossy(&buf[..n]).to_string())
}

#[test]
fn connections_over_the_cap_get_503_and_a_freed_slot_is_reused() {
    const CAP: usize = 4;
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start_with_env(&tmp.path().join("data"), &[("GRANTLINE_CONNECTIONS_MAX", "4")]);
    let addr = addr(&s);
    let mut held: Vec<TcpStream> = (0..CAP)
        .map(|_| {
            let (tcp, answer) = held_connection(&addr);
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
            tcp
        })
        .collect();
    let (_over, answer) = held_connection(&addr);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("overloaded"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("retry-after: 1"), "{answer}");
    // Free a slot: a new connection is served again (once the server has seen the close).
    drop(held.pop());
    let deadline = Instant::now() + CLOSE_CAP;
    loop {
        let (_tcp, answer) = held_connection(&addr);
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "the freed slot was never reused: {answer}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_disk_that_refuses_writes_gives_503_and_the_log_stays_intact_and_appendable() {
    let tmp = tempfile::tempdir().unwrap();
    let full = tmp.path().join("disk-full");
    let fault = format!("io_error_while_exists:{}", full.display());
    let s = Server::start_with_env(&tmp.path().join("data"), &[("GRANTLINE_FAULT", &fault)]);
    let cast = cast(&s, tmp.path());
    let log = s.log();
    let log_key = VerifierKey::parse(&log.log_key).unwrap();
    open_request(&s, &cast, "gpu-1");
    let before_size = s.log().size;
    let before_root = s.log().root;
    let before_requests = s.get_json("/v1/requests");

    std::fs::write(&full, b"").unwrap();
    let bodies: Vec<(String, Vec<u8>)> = (0..3)
        .map(|i| {
            let id = format!("while-full-{i}");
            let data = json!({"request": id, "project": PROJECT, "resource": RESOURCE,
                "justification": "disk full", "pull_request": false});
            (id.clone(), envelope(&cast.bot, &log.origin, &id, "access.requested", data))
        })
        .collect();
    for (id, body) in &bodies {
        let resp = s.post(body.clone());
        assert_eq!(resp.status().as_u16(), 503, "{id}");
        assert_eq!(resp.headers()["retry-after"], "1");
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
        let problem: Value = resp.json().unwrap();
        assert_eq!(problem["code"], "storage_unavailable", "{problem}");
    }
    // Nothing was acknowledged, published or applied; reads still work.
    assert_eq!(s.log().size, before_size);
    assert_eq!(s.log().root, before_root);
    assert_eq!(s.get_json("/v1/requests"), before_requests);
    for (id, _) in &bodies {
        assert_eq!(s.get(&format!("/v1/events/by-id/{id}")).status().as_u16(), 404);
    }
    // Health says writes fail (a supervisor can act), and so does the metrics gauge.
    let health = s.get("/healthz");
    assert_eq!(health.status().as_u16(), 503);
    let health: Value = health.json().unwrap();
    assert_eq!(health["status"], "failing", "{health}");
    assert_eq!(health["size"], before_size, "{health}");
    assert!(s.get("/metrics").text().unwrap().contains("\ngrantline_appends_failing 1\n"));
    verify_log(&s.url, &log_key);

    // Space returns: the same envelopes are appended, once each, and the log verifies.
    std::fs::remove_file(&full).unwrap();
    for (id, body) in &bodies {
        let resp = s.post(body.clone());
        assert_eq!(resp.status().as_u16(), 201, "{id}");
    }
    let health = s.get("/healthz");
    assert_eq!(health.status().as_u16(), 200);
    assert_eq!(health.json::<Value>().unwrap()["status"], "ok");
    assert!(s.get("/metrics").text().unwrap().contains("\ngrantline_appends_failing 0\n"));
    let verified = verify_log(&s.url, &log_key);
    assert_eq!(verified.size, before_size + bodies.len() as u64);
    for (id, _) in &bodies {
        assert_eq!(verified.by_id[id].copies, 1);
        assert_eq!(s.get(&format!("/v1/requests/{id}")).status().as_u16(), 200);
    }
    // And it survives a restart in the same state.
    s.stop();
    let s = Server::start(&tmp.path().join("data"));
    assert_eq!(verify_log(&s.url, &log_key).size, before_size + bodies.len() as u64);
}

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[cfg(unix)]
#[test]
fn the_data_directory_and_key_files_are_private() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let s = Server::start(&data);
    assert_eq!(mode(&data), 0o700, "data directory");
    for key in ["log.key", "automation.key", "admin.key"] {
        assert_eq!(mode(&data.join(key)), 0o600, "{key}");
    }
    drop(s);
    // `grantline init` with the admin key elsewhere, and `keygen`.
    let other = tmp.path().join("other");
    let admin_key = tmp.path().join("alice.key");
    let out = std::process::Command::new(BIN)
        .args(["init", "--origin", "ledger.example.org/ci", "--admin", "alice", "--data"])
        .arg(&other)
        .arg("--admin-key-out")
        .arg(&admin_key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(mode(&other), 0o700);
    assert_eq!(mode(&admin_key), 0o600);
    assert_eq!(mode(&other.join("log.key")), 0o600);
    let (bot_key, _) = keygen(tmp.path(), "bot");
    assert_eq!(mode(&bot_key), 0o600);
}

/// Every text form of a private key that could leak: the key file line, its base64 part,
/// and the raw seed in base64 and hex.
fn secret_forms(path: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap().trim().to_string();
    let key = SigningKey::read_file(path).unwrap();
    assert_eq!(key.to_private_text(), text);
    let b64_part = text.splitn(5, '+').nth(4).unwrap().to_string();
    let seed = &ledger::b64::decode(&b64_part).unwrap()[1..];
    let hex: String = seed.iter().map(|b| format!("{b:02x}")).collect();
    vec![text, b64_part, ledger::b64::encode(seed), hex]
}

#[test]
fn secrets_never_appear_in_logs_or_error_bodies() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let s = Server::start_with_env(&data, &[("RUST_LOG", "debug")]);
    let mut answers: Vec<String> = s.stdout.clone();

    // The walkthrough: cast, request, two approvals (the automation signs a grant), usage,
    // revocation; and a spread of rejected submissions.
    let cast = cast(&s, tmp.path());
    let origin = s.log().origin;
    open_request(&s, &cast, "gpu-1");
    s.append(&cast.alice, "approve-1", "request.approved", json!({"request": "gpu-1", "pool": POOL}));
    s.append(&cast.bob, "approve-2", "request.approved", json!({"request": "gpu-1"}));
    s.append(&cast.bot, "usage-1", "usage.reported", {
        let (started_at, ended_at) = job_just_now();
        json!({"usage": "job-1", "project": PROJECT, "resource": RESOURCE, "amount": 42,
                "started_at": started_at, "ended_at": ended_at})
    });
    s.append(&s.admin(), "revoke-1", "grant.revoked", json!({"grant": "grant:gpu-1", "reason": "moved"}));
    let stranger = SigningKey::generate("mallory").unwrap();
    let rejected: Vec<Vec<u8>> = vec![
        b"not json".to_vec(),
        envelope(&stranger, &origin, "x1", "request.approved", json!({"request": "gpu-1"})),
        envelope(&cast.bot, &origin, "x2", "actor.registered", json!({"actor": "eve", "key": "nope", "roles": []})),
        envelope(&cast.alice, &origin, "approve-1", "request.approved", json!({"request": "other"})),
        envelope(&cast.alice, "other.example/ci", "x3", "request.approved", json!({"request": "gpu-1"})),
        vec![b'x'; 70 * 1024],
    ];
    for body in rejected {
        let resp = s.post(body);
        assert!(resp.status().is_client_error(), "{}", resp.status());
        answers.push(resp.text().unwrap());
    }
    for path in ["/v1/log", "/v1/actors", "/v1/checkpoint", "/metrics", "/v1/events?from=0&limit=1000", "/nope"] {
        answers.push(s.get(path).text().unwrap());
    }
    s.stop();

    let log = std::fs::read_to_string(data.with_extension("server.log")).unwrap();
    assert!(log.contains("DEBUG"), "the server did not log at debug level, so this test would prove nothing");
    for key in ["log.key", "automation.key", "admin.key"] {
        for secret in secret_forms(&data.join(key)) {
            assert!(!log.contains(&secret), "{key} appears in the server log");
            for answer in &answers {
                assert!(!answer.contains(&secret), "{key} appears in an HTTP answer: {answer}");
            }
        }
    }
}
