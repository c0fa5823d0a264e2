//! Every error status of SPEC.md section 8, each checked to be problem+json and to have
//! changed nothing: log size and root, and the projection it would have touched.

mod common;

use common::*;
use ledger::b64;
use ledger::dsse::Envelope;
use ledger::keys::SigningKey;
use serde_json::{json, Value};

/// What no rejected submission may change: the log and these projections.
fn fingerprint(s: &Server) -> Fingerprint {
    fingerprint_of(s, &["/v1/requests", "/v1/actors", "/v1/allocations"])
}

/// Posts `body`, expects `status` with a problem+json body of `code`; returns the problem.
fn expect_problem(s: &Server, body: Vec<u8>, status: u16, code: &str) -> Value {
    let before = fingerprint(s);
    let resp = s.post(body);
    assert_eq!(resp.status().as_u16(), status);
    let content_type = resp.headers().get("content-type").unwrap().to_str().unwrap().to_string();
    assert_eq!(content_type, "application/problem+json");
    let problem: Value = resp.json().unwrap();
    assert_eq!(problem["status"], status, "{problem}");
    assert_eq!(problem["code"], code, "{problem}");
    assert_eq!(problem["type"], format!("urn:grantline:problem:{code}"));
    assert!(problem["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(problem["detail"].as_str().is_some_and(|t| !t.is_empty()));
    assert_eq!(fingerprint(s), before, "a rejected submission changed the log or the state");
    problem
}

#[test]
fn every_rejection_has_its_status_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"));
    let cast = cast(&s, tmp.path());
    open_request(&s, &cast, "gpu-1");
    let origin = s.log().origin;

    // 400: not an envelope; an envelope around a statement that is not one; another ledger;
    // unknown fields in data.
    expect_problem(&s, b"this is not json".to_vec(), 400, "malformed_envelope");
    let not_a_statement = Envelope::sign(br#"{"hello":"world"}"#.to_vec(), &[&cast.bot]).canonical_json();
    expect_problem(&s, not_a_statement, 400, "malformed_statement");
    let approve = json!({"request": "gpu-1"});
    let other_ledger = envelope(&cast.alice, "other.example/ci", "approve-x", "request.approved", approve.clone());
    expect_problem(&s, other_ledger, 400, "wrong_ledger");
    let extra =
        envelope(&cast.alice, &origin, "approve-y", "request.approved", json!({"request": "gpu-1", "votes": 2}));
    expect_problem(&s, extra, 400, "malformed_data");

    // 401: a key nobody registered; a registered actor's key with a broken signature; an
    // actor claiming another actor's name.
    let stranger = SigningKey::generate("mallory").unwrap();
    expect_problem(
        &s,
        envelope(&stranger, &origin, "approve-z", "request.approved", approve.clone()),
        401,
        "unknown_key",
    );
    let mut tampered: Value =
        serde_json::from_slice(&envelope(&cast.alice, &origin, "approve-t", "request.approved", approve.clone()))
            .unwrap();
    let mut sig = b64::decode(tampered["signatures"][0]["sig"].as_str().unwrap()).unwrap();
    sig[0] ^= 1;
    tampered["signatures"][0]["sig"] = Value::String(b64::encode(&sig));
    expect_problem(&s, serde_json::to_vec(&tampered).unwrap(), 401, "bad_signature");
    let statement = json!({"ledger": origin, "id": "impostor", "actor": "alice",
        "issued_at": ledger::statement::format_rfc3339_ms(api::now_ms()), "type": "request.approved", "data": approve});
    let impostor = Envelope::sign(serde_json::to_vec(&statement).unwrap(), &[&cast.bob]).canonical_json();
    expect_problem(&s, impostor, 401, "not_signed_by_actor");

    // 403: a requester may not register actors.
    let escalate =
        json!({"actor": "eve", "key": SigningKey::generate("eve").unwrap().verifier().to_string(), "roles": ["admin"]});
    expect_problem(&s, envelope(&cast.bot, &origin, "escalate", "actor.registered", escalate), 403, "role_required");

    // 409: an id reused with other content.
    let reused = json!({"request": "gpu-2", "project": PROJECT, "resource": RESOURCE,
        "justification": "other", "pull_request": false});
    expect_problem(&s, envelope(&cast.bot, &origin, "open-gpu-1", "access.requested", reused), 409, "id_conflict");

    // 413: a body over 64 KiB, as problem+json too.
    let huge = json!({"request": "gpu-1", "note": "x".repeat(70 * 1024)});
    expect_problem(&s, envelope(&cast.alice, &origin, "huge", "request.approved", huge), 413, "too_large");

    // 422: valid statements that the state does not allow.
    let missing = json!({"request": "no-such-request"});
    expect_problem(
        &s,
        envelope(&cast.alice, &origin, "approve-m", "request.approved", missing),
        422,
        "unknown_request",
    );
    let deny = json!({"request": "gpu-1", "reason": "no"});
    s.append(&cast.alice, "deny-1", "request.denied", deny);
    expect_problem(&s, envelope(&cast.bob, &origin, "approve-c", "request.approved", approve), 422, "request_closed");

    // Nothing above was logged: the ids are unknown.
    for id in ["approve-x", "approve-y", "approve-z", "approve-t", "impostor", "escalate", "huge", "approve-m"] {
        assert_eq!(s.get(&format!("/v1/events/by-id/{id}")).status().as_u16(), 404, "{id} was logged");
    }
    // Rejections are counted by code.
    let metrics = s.get("/metrics").text().unwrap();
    for code in ["malformed_envelope", "unknown_key", "role_required", "id_conflict", "too_large", "unknown_request"] {
        assert!(metrics.contains(&format!("grantline_rejections_total{{code=\"{code}\"}} 1")), "{code}:\n{metrics}");
    }
}

#[test]
fn bad_reads_are_typed_problems() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"));
    let size = s.log().size;
    let cases = [
        (format!("/v1/events/{size}"), 404, "not_found"),
        ("/v1/events/not-a-number".to_string(), 400, "invalid_path"),
        ("/v1/events/by-id/nope".to_string(), 404, "not_found"),
        (format!("/v1/proofs/inclusion/{size}"), 404, "not_found"),
        (format!("/v1/proofs/inclusion/0?size={}", size + 1), 400, "invalid_size"),
        ("/v1/proofs/inclusion/0?size=0".to_string(), 400, "invalid_size"),
        ("/v1/proofs/consistency?from=0&to=1".to_string(), 400, "invalid_size"),
        (format!("/v1/proofs/consistency?from=1&to={}", size + 1), 400, "invalid_size"),
        ("/v1/proofs/consistency?to=1".to_string(), 400, "invalid_size"),
        ("/v1/proofs/consistency?from=x".to_string(), 400, "invalid_query"),
        ("/v1/requests?status=maybe".to_string(), 400, "invalid_query"),
        ("/v1/requests/nope".to_string(), 404, "not_found"),
        ("/v1/sponsors/nobody/usage".to_string(), 404, "not_found"),
        ("/v1/access/check?resource=x".to_string(), 400, "invalid_query"),
        ("/v1/no-such-endpoint".to_string(), 404, "not_found"),
    ];
    for (path, status, code) in cases {
        let resp = s.get(&path);
        assert_eq!(resp.status().as_u16(), status, "{path}");
        assert_eq!(resp.headers()["content-type"], "application/problem+json", "{path}");
        let problem: Value = resp.json().unwrap();
        assert_eq!(problem["code"], code, "{path}: {problem}");
    }
}

#[test]
fn a_full_queue_answers_503_with_retry_after_and_logs_nothing_for_it() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start_with_env(&tmp.path().join("data"), &[("GRANTLINE_QUEUE_DEPTH", "1")]);
    let cast = cast(&s, tmp.path());
    let origin = s.log().origin;
    const SUBMITTERS: usize = 48;
    const ROUNDS_MAX: usize = 20;
    let mut accepted: Vec<String> = Vec::new();
    let mut refused: Vec<String> = Vec::new();
    for round in 0..ROUNDS_MAX {
        let before = s.log().size;
        let bodies: Vec<(String, Vec<u8>)> = (0..SUBMITTERS)
            .map(|i| {
                let request = format!("flood-{round}-{i}");
                let data = json!({"request": request, "project": PROJECT, "resource": RESOURCE,
                    "justification": "flood", "pull_request": false});
                (request.clone(), envelope(&cast.bot, &origin, &request, "access.requested", data))
            })
            .collect();
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(SUBMITTERS));
        let url = s.url.clone();
        let handles: Vec<_> = bodies
            .into_iter()
            .map(|(id, body)| {
                let barrier = barrier.clone();
                let url = url.clone();
                std::thread::spawn(move || {
                    let client = http();
                    barrier.wait();
                    let resp = client.post(format!("{url}/v1/events")).body(body).send().unwrap();
                    let status = resp.status().as_u16();
                    let retry_after = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
                    let content_type = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_string());
                    let body: Value = resp.json().unwrap();
                    (id, status, retry_after, content_type, body)
                })
            })
            .collect();
        let mut round_accepted = 0u64;
        for h in handles {
            let (id, status, retry_after, content_type, body) = h.join().unwrap();
            match status {
                201 => {
                    round_accepted += 1;
                    accepted.push(id);
                }
                503 => {
                    assert_eq!(retry_after.as_deref(), Some("1"));
                    assert_eq!(content_type.as_deref(), Some("application/problem+json"));
                    assert_eq!(body["code"], "overloaded", "{body}");
                    refused.push(id);
                }
                other => panic!("unexpected status {other}: {body}"),
            }
        }
        // Only the accepted events were logged.
        assert_eq!(s.log().size, before + round_accepted);
        if !refused.is_empty() {
            break;
        }
    }
    assert!(!refused.is_empty(), "a queue of depth 1 never overflowed in {ROUNDS_MAX} rounds");
    for id in &refused {
        assert_eq!(s.get(&format!("/v1/events/by-id/{id}")).status().as_u16(), 404, "{id} was refused but logged");
        assert_eq!(s.get(&format!("/v1/requests/{id}")).status().as_u16(), 404, "{id} was refused but opened");
    }
    for id in &accepted {
        assert_eq!(s.get(&format!("/v1/requests/{id}")).status().as_u16(), 200, "{id} was accepted but not opened");
    }
    let metrics = s.get("/metrics").text().unwrap();
    assert!(metrics.contains(&format!("grantline_rejections_total{{code=\"overloaded\"}} {}", refused.len())));
}
