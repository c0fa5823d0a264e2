//! The messages a user reads, through the real binary and real sockets: what an approver is
//! told, how the requests page words an ended grant, counts in good grammar, the 413 and
//! wrong-shape explanations, `--json` on a refusal, problem+json for every router error, and
//! help for every argument.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::{json, Value};

/// A server with the README's cast whose reviewers have key files for the CLI.
struct Setup {
    server: Server,
    alice: PathBuf,
    bob: PathBuf,
    cast: Cast,
}

fn setup(dir: &Path) -> Setup {
    let server = Server::start(&dir.join("data"));
    let cast = cast(&server, dir);
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let alice = keys.join("alice.key");
    let bob = keys.join("bob.key");
    for (path, key) in [(&alice, &cast.alice), (&bob, &cast.bob)] {
        key.write_file(path).unwrap();
    }
    Setup { server, alice, bob, cast }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_approver_who_completes_the_quorum_is_told_the_grant_and_its_record() {
    let tmp = tempfile::tempdir().unwrap();
    let s = setup(tmp.path());
    open_request(&s.server, &s.cast, "gpu-1");

    let first = s.server.ok(&["approve", "gpu-1", "--key", s.alice.to_str().unwrap()]);
    assert!(first.contains("approval 1 of 2: 1 more approval needed"), "{first}");
    assert!(!first.contains("quorum reached"), "{first}");

    let second = s.server.ok(&["approve", "gpu-1", "--key", s.bob.to_str().unwrap()]);
    let view = s.server.get_json("/v1/requests/gpu-1");
    assert_eq!(view["status"], "granted", "{view}");
    let grant = view["grant"].as_str().unwrap();
    let issued = view["timeline"].as_array().unwrap().iter().find(|e| e["kind"] == "grant.issued").unwrap();
    let issued_seq = issued["seq"].as_u64().unwrap();
    let record = s.server.get_json(&format!("/v1/events/{issued_seq}"));
    assert_eq!(record["statement"]["type"], "grant.issued");
    assert_eq!(record["statement"]["data"]["grant"], grant);
    assert!(
        second.contains(&format!("quorum reached (2 of 2): grant {grant} issued, logged as record {issued_seq}")),
        "{second}"
    );
}

#[test]
fn the_requests_page_shows_a_revoked_grant_as_revoked() {
    let tmp = tempfile::tempdir().unwrap();
    let s = setup(tmp.path());
    open_request(&s.server, &s.cast, "gpu-1");
    s.server.append(&s.cast.alice, "approve-a", "request.approved", json!({"request": "gpu-1"}));
    s.server.append(&s.cast.bob, "approve-b", "request.approved", json!({"request": "gpu-1"}));
    let page = s.server.get("/requests").text().unwrap();
    assert!(page.contains("<span class=\"badge ok\">granted</span>"), "{page}");

    let grant = s.server.get_json("/v1/requests/gpu-1")["grant"].as_str().unwrap().to_string();
    s.server.append(&s.server.admin(), "revoke-1", "grant.revoked", json!({"grant": grant, "reason": "archived"}));
    let page = s.server.get("/requests").text().unwrap();
    assert!(page.contains("<span class=\"badge bad\">revoked</span>"), "{page}");
    assert!(!page.contains(">granted</span>"), "{page}");
}

#[test]
fn counts_are_in_good_grammar() {
    let tmp = tempfile::tempdir().unwrap();
    let s = setup(tmp.path());
    open_request(&s.server, &s.cast, "gpu-1");

    // No approvals yet: "0 of 2 approvals", no empty parentheses.
    let explain = s.server.get_json(&format!("/v1/access/explain?project={PROJECT}&resource={RESOURCE}"));
    let steps = explain["steps"].as_array().unwrap();
    let approvals = steps.iter().find(|st| st["step"] == "approvals").unwrap();
    let detail = approvals["detail"].as_str().unwrap();
    assert!(detail.starts_with("0 of 2 approvals"), "{detail}");
    assert!(!detail.contains("()"), "{detail}");
    let out = s.server.cli(&["check", PROJECT, RESOURCE]);
    assert!(!text(&out.stdout).contains("()"), "{}", text(&out.stdout));

    // One usage report: "1 report", not "1 reports".
    s.server.append(&s.cast.alice, "approve-a", "request.approved", json!({"request": "gpu-1", "pool": POOL}));
    s.server.append(&s.cast.bob, "approve-b", "request.approved", json!({"request": "gpu-1"}));
    // A second after the grant was issued: the job ran while it was active.
    let now = ledger::statement::format_rfc3339_ms(api::now_ms() + 1000);
    s.server.append(
        &s.cast.bot,
        "usage-1",
        "usage.reported",
        json!({"usage": "job-1", "project": PROJECT, "resource": RESOURCE, "amount": 7,
            "started_at": now, "ended_at": now}),
    );
    let page = s.server.get(&format!("/projects/{PROJECT}")).text().unwrap();
    assert!(page.contains("1 active of 1 grant ever issued; 0 pending requests."), "{page}");
    assert!(page.contains("1 report,"), "{page}");
    assert!(!page.contains("1 reports"), "{page}");
}

#[test]
fn a_413_explains_that_the_limit_is_on_the_whole_envelope() {
    let tmp = tempfile::tempdir().unwrap();
    let s = setup(tmp.path());
    let bot = tmp.path().join("keys/bot.key");
    s.cast.bot.write_file(&bot).unwrap();
    // 50,000 bytes of justification: under 64 KiB, over it once base64-encoded.
    let justification = "x".repeat(50_000);

    let origin = s.server.log().origin;
    let body = envelope(
        &s.cast.bot,
        &origin,
        "big-1",
        "access.requested",
        json!({"request": "big", "project": PROJECT, "resource": RESOURCE,
            "justification": justification, "pull_request": false}),
    );
    assert!(body.len() > 65_536);
    let resp = s.server.post(body);
    assert_eq!(resp.status().as_u16(), 413);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let problem: Value = resp.json().unwrap();
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("whole DSSE envelope") && detail.contains("base64"), "{detail}");

    let out = s.server.cli(&[
        "request",
        PROJECT,
        RESOURCE,
        "--justification",
        &justification,
        "--key",
        bot.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("413") && stderr.contains("whole signed envelope"), "{stderr}");
    assert!(stderr.contains("base64"), "{stderr}");
}

#[test]
fn json_of_the_wrong_shape_is_not_called_invalid_json() {
    let tmp = tempfile::tempdir().unwrap();
    let s = setup(tmp.path());

    let problem = |body: &[u8]| -> Value {
        let resp = s.server.post(body.to_vec());
        assert_eq!(resp.status().as_u16(), 400);
        resp.json().unwrap()
    };
    let not_json = problem(b"this is not json");
    assert_eq!(not_json["code"], "malformed_envelope");
    assert!(not_json["detail"].as_str().unwrap().contains("not valid JSON"), "{not_json}");

    let wrong_shape = problem(br#"{"hello": "world"}"#);
    assert_eq!(wrong_shape["code"], "malformed_envelope");
    let detail = wrong_shape["detail"].as_str().unwrap();
    assert!(!detail.contains("not valid JSON"), "{detail}");
    assert!(detail.contains("not a DSSE envelope") && detail.contains("payloadType"), "{detail}");

    let not_a_statement =
        ledger::dsse::Envelope::sign(br#"{"hello":"world"}"#.to_vec(), &[&s.cast.bot]).canonical_json();
    let statement = problem(&not_a_statement);
    assert_eq!(statement["code"], "malformed_statement");
    let detail = statement["detail"].as_str().unwrap();
    assert!(!detail.contains("not valid JSON"), "{detail}");
    assert!(detail.contains("not a statement") && detail.contains("issued_at"), "{detail}");

    // `submit --data` with an array: JSON, but not the object the data must be.
    let out = s.server.cli(&["submit", "request.approved", "--data", "[1, 2]", "--key", s.alice.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("not valid JSON"), "{stderr}");
    assert!(stderr.contains("not an object") && stderr.contains("an array"), "{stderr}");
    let out = s.server.cli(&["submit", "request.approved", "--data", "{nope", "--key", s.alice.to_str().unwrap()]);
    assert!(text(&out.stderr).contains("not valid JSON"), "{}", text(&out.stderr));

    // A query string of the wrong shape says which endpoint and where to find its parameters.
    let resp = s.server.get("/v1/events?limit=many");
    assert_eq!(resp.status().as_u16(), 400);
    let problem: Value = resp.json().unwrap();
    assert_eq!(problem["code"], "invalid_query");
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("/v1/events") && detail.contains("limit") && detail.contains("/openapi.json"), "{detail}");
}

#[test]
fn json_on_a_refusal_prints_the_servers_problem_on_stdout_with_the_same_exit_code() {
    let tmp = tempfile::tempdir().unwrap();
    let s = setup(tmp.path());
    let alice = s.alice.to_str().unwrap();

    let plain = s.server.cli(&["approve", "no-such-request", "--key", alice]);
    let json = s.server.cli(&["approve", "no-such-request", "--key", alice, "--json"]);
    assert_eq!(plain.status.code(), Some(1));
    assert_eq!(json.status.code(), plain.status.code());
    assert!(plain.stdout.is_empty(), "{}", text(&plain.stdout));
    let problem: Value = serde_json::from_slice(&json.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&json.stdout)));
    assert_eq!(problem["status"], 422, "{problem}");
    assert_eq!(problem["code"], "unknown_request", "{problem}");
    assert_eq!(problem["type"], "urn:grantline:problem:unknown_request");
    assert!(problem["detail"].as_str().is_some_and(|d| d.contains("no-such-request")), "{problem}");
    // The human message stays on stderr.
    assert!(text(&json.stderr).contains("unknown_request"), "{}", text(&json.stderr));

    // A reading command: the same, from the same conversion.
    let plain = s.server.cli(&["usage", "nobody"]);
    let json = s.server.cli(&["usage", "nobody", "--json"]);
    assert_eq!(plain.status.code(), Some(1));
    assert_eq!(json.status.code(), plain.status.code());
    let problem: Value = serde_json::from_slice(&json.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&json.stdout)));
    assert_eq!(problem["status"], 404, "{problem}");
    assert_eq!(problem["code"], "not_found", "{problem}");
}

/// `method path` answers `status` with a problem+json body of `code`: its headers and problem.
fn expect_problem(
    s: &Server,
    method: reqwest::Method,
    path: &str,
    status: u16,
    code: &str,
) -> (reqwest::header::HeaderMap, Value) {
    let resp = http().request(method.clone(), format!("{}{path}", s.url)).send().unwrap();
    assert_eq!(resp.status().as_u16(), status, "{method} {path}");
    assert_eq!(resp.headers()["content-type"], "application/problem+json", "{method} {path}");
    let headers = resp.headers().clone();
    let problem: Value = resp.json().unwrap();
    assert_eq!(problem["code"], code, "{method} {path}: {problem}");
    assert_eq!(problem["status"], status, "{method} {path}: {problem}");
    assert_eq!(problem["type"], format!("urn:grantline:problem:{code}"), "{method} {path}: {problem}");
    assert!(problem["detail"].as_str().is_some_and(|d| !d.is_empty()), "{method} {path}: {problem}");
    (headers, problem)
}

#[test]
fn every_router_error_is_problem_json() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"));

    for (method, path, allow) in [
        (reqwest::Method::DELETE, "/v1/events", "GET,HEAD,POST"),
        (reqwest::Method::POST, "/v1/log", "GET,HEAD"),
        (reqwest::Method::PUT, "/requests", "GET,HEAD"),
    ] {
        let (headers, problem) = expect_problem(&s, method.clone(), path, 405, "method_not_allowed");
        assert_eq!(headers["allow"], allow, "{method} {path}");
        assert_eq!(problem["title"], "Method not allowed");
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains(path) && detail.contains(method.as_str()), "{detail}");
    }

    for (path, status, code) in [
        ("/v1/events/not-a-number", 400, "invalid_path"),
        ("/v1/proofs/inclusion/-1", 400, "invalid_path"),
        ("/projects/%FF", 400, "invalid_path"),
        ("/v1/events?from=x", 400, "invalid_query"),
        ("/v1/allocations?resource=a&resource=b", 400, "invalid_query"),
        ("/no-such-page", 404, "not_found"),
        ("/v1/no-such-endpoint", 404, "not_found"),
    ] {
        expect_problem(&s, reqwest::Method::GET, path, status, code);
    }
}

#[test]
fn request_help_shows_project_and_resource_as_optional() {
    let out = std::process::Command::new(BIN).args(["request", "--help"]).output().unwrap();
    assert!(out.status.success());
    let help = text(&out.stdout);
    let usage = help.lines().find(|l| l.starts_with("Usage:")).unwrap();
    assert!(usage.ends_with("[PROJECT] [RESOURCE]"), "{usage}");
    assert!(!usage.contains("<PROJECT>"), "{usage}");
}

#[test]
fn write_commands_have_help_for_every_option() {
    for command in ["approve", "deny", "revoke", "deposit", "report-usage", "define-resource"] {
        let out = std::process::Command::new(BIN).args([command, "--help"]).output().unwrap();
        assert!(out.status.success());
        let help = text(&out.stdout);
        let options = help.split("Options:").nth(1).unwrap();
        for line in options.lines().take_while(|l| !l.is_empty()) {
            let line = line.trim_start();
            if !line.starts_with('-') {
                continue;
            }
            // "--flag <VALUE>  Help text": two spaces separate the option from its help.
            let help_text = line.split_once("  ").map(|(_, h)| h.trim()).unwrap_or_default();
            assert!(!help_text.is_empty(), "{command}: {line:?} has no help");
        }
    }
}
