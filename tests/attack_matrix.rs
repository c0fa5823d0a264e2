//! The attack matrix: hostile inputs against the service. Every row is an end-to-end attempt
//! against the real server that asserts the error (status and problem code) and that nothing
//! changed: the log's size, root and checkpoint, and the projections the attack aimed at.
//! After the hostile inputs the server still answers `/healthz`.

mod common;

use std::io::{Read, Write};

use common::*;
use ledger::dsse::Envelope;
use ledger::keys::SigningKey;
use ledger::statement::format_rfc3339_ms;
use serde_json::{json, Value};

const XLARGE: &str = "cirun-openstack-gpu-xlarge";

/// What no rejected submission may change: the log and these projections.
fn fingerprint(s: &Server) -> Fingerprint {
    fingerprint_of(s, &["/v1/requests", "/v1/actors", "/v1/allocations", &format!("/v1/sponsors/{SPONSOR}/usage")])
}

/// Posts `body` and expects a problem with `status` and `code`, and no change at all.
fn rejected(s: &Server, row: &str, body: Vec<u8>, status: u16, code: &str) -> Value {
    let before = fingerprint(s);
    let resp = s.post(body);
    assert_eq!(resp.status().as_u16(), status, "{row}");
    assert_eq!(resp.headers()["content-type"], "application/problem+json", "{row}");
    let problem: Value = resp.json().unwrap();
    assert_eq!(problem["code"], code, "{row}: {problem}");
    assert_eq!(problem["status"], status, "{row}");
    assert_eq!(fingerprint(s), before, "{row}: a rejected submission changed the log or the state");
    problem
}

fn signed(key: &SigningKey, origin: &str, id: &str, kind: &str, data: Value) -> Vec<u8> {
    envelope(key, origin, id, kind, data)
}

fn register(s: &Server, key: &SigningKey, roles: &[&str]) {
    let data = json!({"actor": key.name(), "key": key.verifier().to_string(), "roles": roles});
    s.append(&s.admin(), &format!("register-{}", key.name()), "actor.registered", data);
}

fn access(s: &Server, project: &str, resource: &str) -> Value {
    let resp = http()
        .get(format!("{}/v1/access/check", s.url))
        .query(&[("project", project), ("resource", resource), ("pull_request", "false")])
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200, "{project:?}");
    resp.json().unwrap()
}

/// The README's cast with the grant `grant:gpu` for PROJECT on RESOURCE (two approvals),
/// limited to `credits` from the pool.
fn granted(s: &Server, credits: u64) -> Cast {
    let cast = cast(s, std::path::Path::new("."));
    s.append(
        &cast.bot,
        "open-gpu",
        "access.requested",
        json!({"request": "gpu", "project": PROJECT, "resource": RESOURCE, "justification": "GPU builds",
            "pull_request": false, "credits": credits, "days": 90}),
    );
    s.append(&cast.alice, "approve-gpu-alice", "request.approved", json!({"request": "gpu", "pool": POOL}));
    s.append(&cast.bob, "approve-gpu-bob", "request.approved", json!({"request": "gpu"}));
    let answer = access(s, PROJECT, RESOURCE);
    assert_eq!(answer["allowed"], true, "{answer}");
    cast
}

fn usage(key: &SigningKey, origin: &str, id: &str, usage: &str, project: &str, resource: &str, amount: u64) -> Vec<u8> {
    signed(key, origin, id, "usage.reported", {
        let (started_at, ended_at) = job_just_now();
        json!({"usage": usage, "project": project, "resource": resource, "amount": amount,
                "started_at": started_at, "ended_at": ended_at})
    })
}

#[test]
fn identity_replay_and_role_attacks_are_rejected_and_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"));
    let cast = cast(&s, tmp.path());
    let origin = s.log().origin;
    open_request(&s, &cast, "gpu-1");
    let approve = json!({"request": "gpu-1"});

    // An envelope made for another ledger origin, replayed here.
    let elsewhere =
        signed(&cast.alice, "ledger.other.example/ci", "approve-elsewhere", "request.approved", approve.clone());
    rejected(&s, "envelope for another origin", elsewhere, 400, "wrong_ledger");

    // A replayed id with other content; the identical envelope is idempotent (200, same receipt).
    let original = s.append(&cast.alice, "approve-a1", "request.approved", approve.clone());
    let changed =
        signed(&cast.alice, &origin, "approve-a1", "request.approved", json!({"request": "gpu-1", "note": "x"}));
    rejected(&s, "replayed id, other content", changed, 409, "id_conflict");
    let before = fingerprint(&s);
    let first_bytes = s.get_json(&format!("/v1/events/{}", original.seq))["envelope"].clone();
    let resp = s.post(serde_json::to_vec(&first_bytes).unwrap());
    assert_eq!(resp.status().as_u16(), 200);
    let again: api::json::Receipt = resp.json().unwrap();
    assert_eq!((again.seq, again.leaf_hash), (original.seq, original.leaf_hash));
    assert_eq!(fingerprint(&s), before, "an identical replay changed something");

    // A signature by a revoked key.
    let carol = SigningKey::generate("carol").unwrap();
    register(&s, &carol, &["reviewer"]);
    let carol2 = SigningKey::generate("carol").unwrap();
    s.append(&s.admin(), "carol-key-2", "key.added", json!({"actor": "carol", "key": carol2.verifier().to_string()}));
    s.append(
        &s.admin(),
        "carol-revoke-1",
        "key.revoked",
        json!({"actor": "carol", "key": carol.verifier().to_string(), "reason": "laptop stolen"}),
    );
    let by_revoked = signed(&carol, &origin, "approve-revoked", "request.approved", approve.clone());
    rejected(&s, "signature by a revoked key", by_revoked, 401, "unknown_key");

    // An actor claiming another actor's name: actor = alice, signed by bob's key.
    let statement = json!({"ledger": origin, "id": "impostor", "actor": "alice",
        "issued_at": format_rfc3339_ms(api::now_ms()), "type": "request.approved", "data": approve});
    let impostor = Envelope::sign(serde_json::to_vec(&statement).unwrap(), &[&cast.bob]).canonical_json();
    rejected(&s, "actor claiming another's name", impostor, 401, "not_signed_by_actor");

    // A requester approving their own request, directly...
    let dora = SigningKey::generate("dora").unwrap();
    register(&s, &dora, &["requester", "reviewer"]);
    s.append(
        &dora,
        "open-dora",
        "access.requested",
        json!({"request": "dora-gpu", "project": "numpy-feedstock", "resource": RESOURCE,
            "justification": "mine", "pull_request": false}),
    );
    let own = signed(&dora, &origin, "approve-own", "request.approved", json!({"request": "dora-gpu"}));
    rejected(&s, "requester approves own request", own, 422, "self_approval");
    // ...and via on_behalf_of: the bot files for reviewer erin, who then approves.
    let erin = SigningKey::generate("erin").unwrap();
    register(&s, &erin, &["reviewer"]);
    s.append(
        &cast.bot,
        "open-for-erin",
        "access.requested",
        json!({"request": "erin-gpu", "project": "scipy-feedstock", "resource": RESOURCE,
            "justification": "for erin", "pull_request": false, "on_behalf_of": "erin"}),
    );
    let behalf = signed(&erin, &origin, "approve-behalf", "request.approved", json!({"request": "erin-gpu"}));
    rejected(&s, "on_behalf_of person approves", behalf, 422, "self_approval");

    // Role escalation: a requester registering actors, setting roles, issuing a grant.
    let eve = SigningKey::generate("eve").unwrap();
    let escalate = json!({"actor": "eve", "key": eve.verifier().to_string(), "roles": ["admin"]});
    let body = signed(&cast.bot, &origin, "escalate-register", "actor.registered", escalate);
    rejected(&s, "requester registers an actor", body, 403, "role_required");
    let body =
        signed(&cast.bot, &origin, "escalate-roles", "actor.roles_set", json!({"actor": "bot", "roles": ["admin"]}));
    rejected(&s, "requester grants itself admin", body, 403, "role_required");
    let grant = json!({"grant": "grant:stolen", "project": PROJECT, "resource": RESOURCE, "pull_request": true});
    let body = signed(&cast.bot, &origin, "escalate-grant", "grant.issued", grant);
    rejected(&s, "requester issues a grant", body, 403, "role_required");
    assert_eq!(access(&s, PROJECT, RESOURCE)["allowed"], false);

    for id in [
        "approve-elsewhere",
        "approve-revoked",
        "impostor",
        "approve-own",
        "approve-behalf",
        "escalate-register",
        "escalate-roles",
        "escalate-grant",
    ] {
        assert_eq!(s.get(&format!("/v1/events/by-id/{id}")).status().as_u16(), 404, "{id} was logged");
    }
}

#[test]
fn look_alike_projects_and_other_resources_never_match_a_grant() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"));
    let cast = granted(&s, 5000);
    let origin = s.log().origin;
    s.append(
        &s.admin(),
        "define-xlarge",
        "resource.defined",
        json!({"resource": XLARGE, "provider": "open-gpu-server", "unit": "runner-minutes", "approvals_required": 1}),
    );
    assert_eq!(access(&s, PROJECT, RESOURCE)["grant"]["grant"], "grant:gpu");

    let look_alikes = [
        "PyTorch-cpu-feedstock",
        "pytorch-cpu-feedstock-fork",
        "pytorch-cpu",
        "pytorch-cpu-feedstock/../x",
        "pytorch-cpu-feedstock ",
        " pytorch-cpu-feedstock",
        "conda-forge/pytorch-cpu-feedstock",
        "\u{440}ytorch-cpu-feedstock",   // Cyrillic 'р'
        "pytorch-cpu-feedstock\u{200b}", // zero-width space
        "pytorch-cpu-feedstock\n",
    ];
    for (i, project) in look_alikes.iter().enumerate() {
        let answer = access(&s, project, RESOURCE);
        assert_eq!(answer["allowed"], false, "{project:?} matched the grant: {answer}");
        assert!(answer.get("grant").is_none_or(Value::is_null), "{project:?}: {answer}");
        // Usage for the look-alike is rejected too: either not a project name at all, or
        // a project without a grant.
        let body =
            usage(&cast.bot, &origin, &format!("usage-alike-{i}"), &format!("job-alike-{i}"), project, RESOURCE, 5);
        let before = fingerprint(&s);
        let resp = s.post(body);
        let status = resp.status().as_u16();
        let problem: Value = resp.json().unwrap();
        assert!(
            (status == 400 && problem["code"] == "invalid_project_name")
                || (status == 422 && problem["code"] == "no_active_grant"),
            "{project:?}: {status} {problem}"
        );
        assert_eq!(fingerprint(&s), before, "{project:?}");
    }
    // Names that are valid projects but different ones get the typed 422.
    for (i, project) in ["pytorch-cpu-feedstock-fork", "pytorch-cpu"].iter().enumerate() {
        let body =
            usage(&cast.bot, &origin, &format!("usage-valid-{i}"), &format!("job-valid-{i}"), project, RESOURCE, 5);
        rejected(&s, "usage for a similar project", body, 422, "no_active_grant");
    }

    // A grant for -large used for -xlarge: access denied, usage rejected.
    let answer = access(&s, PROJECT, XLARGE);
    assert_eq!(answer["allowed"], false, "{answer}");
    let body = usage(&cast.bot, &origin, "usage-xlarge", "job-xlarge", PROJECT, XLARGE, 5);
    rejected(&s, "usage on another resource", body, 422, "no_active_grant");
    // The real grant still works.
    assert_eq!(access(&s, PROJECT, RESOURCE)["allowed"], true);
}

#[test]
fn usage_without_a_grant_after_exhaustion_or_twice_is_rejected_or_counted_once() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"));
    let cast = granted(&s, 100);
    let origin = s.log().origin;
    let used = |s: &Server| s.get_json(&format!("/v1/sponsors/{SPONSOR}/usage"))["pools"][0]["used"].as_u64().unwrap();

    // Without a grant.
    let body = usage(&cast.bot, &origin, "usage-nogrant", "job-ng", "numpy-feedstock", RESOURCE, 5);
    rejected(&s, "usage without a grant", body, 422, "no_active_grant");

    // Twice with the same usage id: the identical envelope is a 200 duplicate, a new
    // envelope for the same job is refused; counted once.
    let first = usage(&cast.bot, &origin, "usage-1", "job-1", PROJECT, RESOURCE, 60);
    assert_eq!(s.post(first.clone()).status().as_u16(), 201);
    assert_eq!(used(&s), 60);
    let before = fingerprint(&s);
    assert_eq!(s.post(first).status().as_u16(), 200);
    assert_eq!(fingerprint(&s), before);
    let again = usage(&cast.bot, &origin, "usage-1-again", "job-1", PROJECT, RESOURCE, 60);
    rejected(&s, "same usage id twice", again, 422, "usage_duplicate");
    assert_eq!(used(&s), 60, "the job was counted twice");

    // Use up the grant: the automation marks it exhausted, and further usage is refused.
    let last = usage(&cast.bot, &origin, "usage-2", "job-2", PROJECT, RESOURCE, 40);
    assert_eq!(s.post(last).status().as_u16(), 201);
    let answer = access(&s, PROJECT, RESOURCE);
    assert_eq!(answer["allowed"], false, "{answer}");
    assert_eq!(answer["reason"], "grant_exhausted", "{answer}");
    let after = usage(&cast.bot, &origin, "usage-3", "job-3", PROJECT, RESOURCE, 1);
    rejected(&s, "usage after exhaustion", after, 422, "no_active_grant");
    assert_eq!(used(&s), 100);
}

/// POSTs `body` to /v1/events over a raw socket (see `common::post_raw`): the status and the
/// problem document.
fn raw_exchange(s: &Server, body: &[u8], declared: bool) -> (u16, Value) {
    let (status, answer) = post_raw(s, "/v1/events", &[], body, declared);
    (status, serde_json::from_str(&answer).unwrap_or(Value::Null))
}

#[test]
fn hostile_inputs_get_typed_errors_and_the_server_stays_up() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"));
    let cast = cast(&s, tmp.path());
    let origin = s.log().origin;
    open_request(&s, &cast, "gpu-1");

    // A huge body: 8 MiB declared (refused from its header, before any body byte is read),
    // and 8 MiB streamed chunked without a length (refused after 64 KiB).
    let huge = vec![b'{'; 8 << 20];
    let before = fingerprint(&s);
    let (status, problem) = raw_exchange(&s, &huge, true);
    assert_eq!((status, problem["code"].as_str()), (413, Some("too_large")), "{problem}");
    let (status, problem) = raw_exchange(&s, &huge, false);
    assert_eq!((status, problem["code"].as_str()), (413, Some("too_large")), "{problem}");
    assert_eq!(fingerprint(&s), before);

    // Deep JSON nesting, in the envelope and inside a signed statement.
    let deep_envelope = format!("{}{}", "[".repeat(20_000), "]".repeat(20_000)).into_bytes();
    rejected(&s, "deeply nested envelope", deep_envelope, 400, "malformed_envelope");
    let deep = format!("{}1{}", "[".repeat(5000), "]".repeat(5000));
    let statement = format!(
        r#"{{"ledger":"{origin}","id":"deep","actor":"alice","issued_at":"{}","type":"request.approved","data":{{"request":"gpu-1","note":{deep}}}}}"#,
        format_rfc3339_ms(api::now_ms())
    );
    let deep_statement = Envelope::sign(statement.into_bytes(), &[&cast.alice]).canonical_json();
    rejected(&s, "deeply nested statement", deep_statement, 400, "malformed_statement");

    // 10,000 signatures (over the body limit), and 17 real ones (over the signature limit).
    let one = envelope(&cast.alice, &origin, "many-sigs", "request.approved", json!({"request": "gpu-1"}));
    let mut many: Value = serde_json::from_slice(&one).unwrap();
    let sig = many["signatures"][0].clone();
    many["signatures"] = Value::Array(vec![sig.clone(); 10_000]);
    let ten_thousand = serde_json::to_vec(&many).unwrap();
    for declared in [true, false] {
        let (status, problem) = raw_exchange(&s, &ten_thousand, declared);
        assert!(status == 413 || status == 400, "{status}: {problem}");
        assert_eq!(fingerprint(&s), before);
    }
    many["signatures"] = Value::Array(vec![sig; ledger::dsse::SIGNATURES_MAX + 1]);
    rejected(&s, "too many signatures", serde_json::to_vec(&many).unwrap(), 400, "malformed_envelope");

    // issued_at far in the future.
    let statement = json!({"ledger": origin, "id": "future", "actor": "alice", "issued_at": "2999-01-01T00:00:00Z",
        "type": "request.approved", "data": {"request": "gpu-1"}});
    let future = Envelope::sign(serde_json::to_vec(&statement).unwrap(), &[&cast.alice]).canonical_json();
    rejected(&s, "issued_at in the future", future, 422, "issued_in_future");

    // Malformed UTF-8: in the body, and inside the signed payload.
    let mut bad_body = envelope(&cast.alice, &origin, "utf8-a", "request.approved", json!({"request": "gpu-1"}));
    let at = bad_body.iter().position(|&b| b == b'"').unwrap() + 1;
    bad_body.splice(at..at, [0xff, 0xfe, 0xc3]);
    rejected(&s, "malformed UTF-8 body", bad_body, 400, "malformed_envelope");
    let mut payload = serde_json::to_vec(&json!({"ledger": origin, "id": "utf8-b", "actor": "alice",
        "issued_at": format_rfc3339_ms(api::now_ms()), "type": "request.approved",
        "data": {"request": "gpu-1", "note": "XX"}}))
    .unwrap();
    let note = payload.windows(2).position(|w| w == b"XX").unwrap();
    payload[note] = 0xc3;
    payload[note + 1] = 0x28;
    let bad_payload = Envelope::sign(payload, &[&cast.alice]).canonical_json();
    rejected(&s, "malformed UTF-8 payload", bad_payload, 400, "malformed_statement");

    // A request head that is not HTTP at all.
    let mut tcp = std::net::TcpStream::connect(s.url.trim_start_matches("http://")).unwrap();
    tcp.write_all(b"\xff\xfe\x00garbage\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer);
    assert!(answer.is_empty() || answer.starts_with(b"HTTP/1.1 400"), "{}", String::from_utf8_lossy(&answer));

    for id in ["deep", "many-sigs", "future", "utf8-a", "utf8-b"] {
        assert_eq!(s.get(&format!("/v1/events/by-id/{id}")).status().as_u16(), 404, "{id} was logged");
    }
    // Still up.
    let health = s.get_json("/healthz");
    assert_eq!(health["status"], "ok");
    s.append(&cast.alice, "approve-after", "request.approved", json!({"request": "gpu-1"}));
}
