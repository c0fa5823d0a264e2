//! GitHub webhooks (SPEC.md section 13) through the real binary: deliveries signed by GitHub's
//! own signing code (npm `@octokit/webhooks-methods`, run by Node: tests/node/sign.mjs) with
//! GitHub's real `workflow_job` payloads (npm `@octokit/webhooks-examples`), rewritten only where
//! a test must (the repository, labels, times, job id, runner, conclusion).
//!
//! Without Node or the npm packages (`npm ci --prefix tests/node`) the tests that need them print
//! a notice and skip, unless `CI=true`, where they fail. `.ci/run` installs them.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Barrier;

use common::github::*;
use common::*;
use ledger::statement::parse_rfc3339_ms;
use serde_json::{json, Value};

/// A Cirun label as conda-smithy writes it: the resource, `--`, the run id and the config.
const GPU_LABEL: &str = "cirun-openstack-gpu-large--2202229078-linux_64_cuda";
/// A second gated resource, for a job that names two.
const CPU: &str = "cirun-openstack-cpu-large";
/// GitHub's repository id of PROJECT in these tests.
const REPO_ID: u64 = 561_234_001;
/// The request (and so the grant, `grant:gpu-pytorch`) of PROJECT on RESOURCE.
const REQUEST: &str = "gpu-pytorch";
const GRANT: &str = "grant:gpu-pytorch";
/// `completed.failure` in webhooks-examples ran from 10:34:58 to 10:38:16: 198 s, 4 minutes.
const EXAMPLE_SECONDS: i64 = 198;
const EXAMPLE_MINUTES: u64 = 4;

/// The views a rejected or ignored delivery must leave alone, with the log.
fn fingerprint(s: &Server) -> Fingerprint {
    fingerprint_of(s, &["/v1/allocations", "/v1/usage/unauthorized", "/v1/requests"])
}

/// PROJECT's grant on RESOURCE through the README's flow: a request and two approvals.
fn grant_gpu(s: &Server, cast: &Cast) {
    open_request(s, cast, REQUEST);
    s.append(&cast.alice, "alice-approves", "request.approved", json!({"request": REQUEST, "pool": POOL}));
    s.append(&cast.bob, "bob-approves", "request.approved", json!({"request": REQUEST}));
    let view = s.get_json(&format!("/v1/requests/{REQUEST}"));
    assert_eq!(view["status"], "granted", "{view}");
}

/// The grant's entry in `GET /v1/allocations` (the path may add filters).
fn allocation(s: &Server, path: &str, grant: &str) -> Option<Value> {
    let all = s.get_json(path);
    all["resources"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["grants"].as_array().unwrap().clone())
        .find(|g| g["grant"] == grant)
}

fn assert_problem(a: &Answer, status: u16, row: &str) {
    assert_eq!(a.status, status, "{row}: {}", a.text);
    assert!(a.content_type.starts_with("application/problem+json"), "{row}: {} {}", a.content_type, a.text);
    assert_eq!(a.json["status"], status, "{row}: {}", a.text);
}

fn assert_ignored(a: &Answer, row: &str) {
    assert_eq!((a.status, a.outcome()), (202, "ignored"), "{row}: {}", a.text);
    let detail = a.json["detail"].as_str().unwrap_or_else(|| panic!("{row}: no detail: {}", a.text));
    assert!(!detail.trim().is_empty(), "{row}: {}", a.text);
}

/// Asserts a 200 with `outcome` and a record of `kind` whose id is the job's usage id; returns
/// the record's seq.
fn assert_logged(a: &Answer, outcome: &str, kind: &str, payload: &Value, row: &str) -> u64 {
    assert_eq!((a.status, a.outcome()), (200, outcome), "{row}: {}", a.text);
    let record = &a.json["record"];
    assert_eq!(record["id"], usage_id(payload), "{row}: {}", a.text);
    assert_eq!(record["type"], kind, "{row}: {}", a.text);
    record["seq"].as_u64().unwrap_or_else(|| panic!("{row}: no seq: {}", a.text))
}

fn data_keys(statement: &Value) -> BTreeSet<String> {
    statement["data"].as_object().unwrap().keys().cloned().collect()
}

fn keys(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn time_ms(v: &Value) -> i64 {
    parse_rfc3339_ms(v.as_str().unwrap_or_else(|| panic!("not a time: {v}"))).unwrap_or_else(|| panic!("{v}"))
}

fn moved(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// A server for ORG with the README's cast; PROJECT holds `grant:gpu-pytorch` when `granted`.
fn setup(tmp: &Path, granted: bool) -> (Server, Secrets, Cast) {
    let (s, secrets) = start_github(&tmp.join("data"));
    let cast = cast(&s, tmp);
    if granted {
        grant_gpu(&s, &cast);
    }
    (s, secrets, cast)
}

#[test]
fn a_secret_file_readable_by_others_refuses_serve_and_org_and_secret_go_together() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let secret = tmp.path().join("webhook-secret");
    let previous = tmp.path().join("webhook-secret-previous");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    std::fs::write(&previous, PREVIOUS_SECRET).unwrap();
    chmod(&secret, 0o644);
    chmod(&previous, 0o600);
    let flags = |with_previous: bool| {
        let mut f = vec!["--github-org".into(), ORG.into(), "--github-webhook-secret".into(), secret.clone().into()];
        if with_previous {
            f.extend(["--github-webhook-secret-previous".into(), previous.clone().into()]);
        }
        f
    };
    let (code, said) = serve_refused(&data, &flags(false));
    assert_ne!(code, 0, "{said}");
    assert!(said.contains(&format!("chmod 600 {}", secret.display())), "names the file and the fix: {said}");

    // The previous secret is held to the same rule.
    chmod(&secret, 0o600);
    chmod(&previous, 0o640);
    let (code, said) = serve_refused(&data, &flags(true));
    assert_ne!(code, 0, "{said}");
    assert!(said.contains(&format!("chmod 600 {}", previous.display())), "names the file and the fix: {said}");

    // An organisation without a secret, or a secret without an organisation, is refused.
    let (code, said) = serve_refused(&data, &["--github-org".into(), ORG.into()]);
    assert_ne!(code, 0, "--github-org alone: {said}");
    let (code, said) = serve_refused(&data, &["--github-webhook-secret".into(), secret.clone().into()]);
    assert_ne!(code, 0, "--github-webhook-secret alone: {said}");

    // Fixed, it serves: the route is there and refuses an unsigned delivery.
    chmod(&previous, 0o600);
    let s = start_with_flags(&data, &flags(true));
    let a = deliver(&s, "ping", &delivery_id(1), None, b"{}");
    assert_problem(&a, 401, "unsigned delivery");
}

#[test]
fn without_the_github_flags_the_webhook_route_is_not_found() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"));
    let size = s.log().size;
    let zeros = format!("sha256={}", "0".repeat(64));
    let a = deliver(&s, "ping", &delivery_id(1), Some(&zeros), b"{\"zen\":\"Keep it logically awesome.\"}");
    assert_problem(&a, 404, "webhook without --github-org");
    assert_eq!(s.log().size, size);
}

#[test]
fn signatures_current_and_previous_secret_pass_anything_else_is_401_and_changes_nothing() {
    let Some(node) = node_tools() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (s, secrets, _cast) = setup(tmp.path(), true);
    let started = next_second_ms();
    let failure = node.workflow_job("completed", Some("failure"));
    let a = job_payload(&failure, PROJECT, REPO_ID, &[GPU_LABEL], started, EXAMPLE_SECONDS);
    let mut b = a.clone();
    b["workflow_job"]["id"] = json!(a["workflow_job"]["id"].as_u64().unwrap() + 1);
    let (body_a, body_b) = (body(&a), body(&b));
    // GitHub's documented test vector checks the signer itself.
    let vector_secret = tmp.path().join("github-test-vector-secret");
    write_secret(&vector_secret, "It's a Secret to Everybody");
    let sigs = node.sign(&[
        (&secrets.current, &body_a),
        (&secrets.previous, &body_a),
        (&secrets.wrong, &body_a),
        (&secrets.current, &body_b),
        (&secrets.previous, &body_b),
        (&vector_secret, b"Hello, World!"),
    ]);
    let [a_current, a_previous, a_wrong, b_current, b_previous, vector] = <[String; 6]>::try_from(sigs).unwrap();
    assert_eq!(vector, "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17");
    let a_hex = a_current.strip_prefix("sha256=").unwrap();

    // Every bad, missing or malformed signature: 401, nothing stored, and the delivery id is
    // not remembered.
    let delivery = delivery_id(1);
    let before = fingerprint(&s);
    let counts = delivery_counts(&s);
    let rows: Vec<(&str, Option<String>)> = vec![
        ("missing", None),
        ("empty", Some(String::new())),
        ("another secret", Some(a_wrong.clone())),
        ("another body's", Some(b_current.clone())),
        ("sha1= prefix", Some(format!("sha1={a_hex}"))),
        ("no prefix", Some(a_hex.to_string())),
        ("63 hex digits", Some(a_current[..a_current.len() - 1].to_string())),
        ("65 hex digits", Some(format!("{a_current}0"))),
        ("not hex", Some(format!("sha256={}", "g".repeat(64)))),
        ("two signatures", Some(format!("{a_wrong},{a_current}"))),
    ];
    for (row, sig) in &rows {
        let answer = deliver(&s, "workflow_job", &delivery, sig.as_deref(), &body_a);
        assert_problem(&answer, 401, row);
        assert_eq!(fingerprint(&s), before, "{row}: a rejected delivery changed the log or the state");
    }
    assert_eq!(
        counts_moved(&counts, &delivery_counts(&s)),
        moved(&[("bad_signature", rows.len() as u64)]),
        "grantline_github_deliveries_total"
    );

    // The same delivery id with GitHub's signature under the current secret is processed.
    let seq_a = assert_logged(
        &deliver(&s, "workflow_job", &delivery, Some(&a_current), &body_a),
        "metered",
        "usage.reported",
        &a,
        "current secret",
    );
    assert_eq!(s.log().size, before.size + 1);
    // The previous secret (a rotation in progress) is accepted too.
    let again = deliver(&s, "workflow_job", &delivery_id(2), Some(&a_previous), &body_a);
    assert_eq!(assert_logged(&again, "already_logged", "usage.reported", &a, "previous secret, same job"), seq_a);
    let seq_b = assert_logged(
        &deliver(&s, "workflow_job", &delivery_id(3), Some(&b_previous), &body_b),
        "metered",
        "usage.reported",
        &b,
        "previous secret",
    );
    assert_eq!(seq_b, seq_a + 1);
    assert_eq!(s.log().size, before.size + 2);
}

#[test]
fn ping_answers_pong_and_other_events_are_ignored() {
    let Some(node) = node_tools() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (s, secrets, _cast) = setup(tmp.path(), true);
    let deliveries: Vec<(&str, Vec<u8>)> = vec![
        ("ping", body(&node.examples("ping")[0])),
        ("push", body(&node.examples("push")[0])),
        ("workflow_run", body(&node.examples("workflow_run")[0])),
    ];
    let items: Vec<(&Path, &[u8])> =
        deliveries.iter().map(|(_, b)| (secrets.current.as_path(), b.as_slice())).collect();
    let sigs = node.sign(&items);
    let before = fingerprint(&s);
    let counts = delivery_counts(&s);
    let pong = deliver(&s, "ping", &delivery_id(1), Some(&sigs[0]), &deliveries[0].1);
    assert_eq!((pong.status, pong.outcome()), (200, "pong"), "{}", pong.text);
    for (i, (event, body)) in deliveries.iter().enumerate().skip(1) {
        let a = deliver(&s, event, &delivery_id(1 + i as u64), Some(&sigs[i]), body);
        assert_ignored(&a, event);
    }
    assert_eq!(fingerprint(&s), before);
    assert_eq!(counts_moved(&counts, &delivery_counts(&s)), moved(&[("ignored", 2), ("pong", 1)]));
}

#[test]
fn jobs_that_are_not_finished_gated_jobs_of_the_org_are_ignored() {
    let Some(node) = node_tools() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (s, secrets, _cast) = setup(tmp.path(), true);
    s.append(
        &s.admin(),
        "define-cpu",
        "resource.defined",
        json!({"resource": CPU, "provider": "cirun", "unit": "runner-minutes", "approvals_required": 1}),
    );
    let started = next_second_ms();
    let failure = node.workflow_job("completed", Some("failure"));
    let gated = |example: &Value| job_payload(example, PROJECT, REPO_ID, &[GPU_LABEL], started, EXAMPLE_SECONDS);

    let mut cases: Vec<(String, Value)> = Vec::new();
    // Every job that has not finished, from GitHub's own queued, waiting and in_progress
    // payloads (one of them already on a runner).
    for example in node.examples("workflow_job").iter().filter(|e| e["action"] != "completed") {
        let row = format!("{} job {}", example["action"], example["workflow_job"]["id"]);
        cases.push((row, gated(example)));
    }
    let mut skipped = gated(&failure);
    skipped["workflow_job"]["conclusion"] = json!("skipped");
    cases.push(("conclusion skipped".into(), skipped));
    let mut no_runner = gated(&failure);
    no_runner["workflow_job"]["runner_name"] = Value::Null;
    cases.push(("runner_name null".into(), no_runner));
    let mut foreign = gated(&failure);
    set_repository(&mut foreign, "conda-forge-mirror", PROJECT, REPO_ID + 7);
    cases.push(("a repository outside the org".into(), foreign));
    let ungated_labels: Vec<String> = serde_json::from_value(failure["workflow_job"]["labels"].clone()).unwrap(); // ["ubuntu-latest"]
    let ungated_labels: Vec<&str> = ungated_labels.iter().map(String::as_str).collect();
    cases.push((
        "GitHub's own ubuntu-latest".into(),
        job_payload(&failure, PROJECT, REPO_ID, &ungated_labels, started, EXAMPLE_SECONDS),
    ));
    cases.push((
        "a look-alike label".into(),
        job_payload(&failure, PROJECT, REPO_ID, &["cirun-openstack-gpu-large2"], started, EXAMPLE_SECONDS),
    ));
    cases.push((
        "two gated labels".into(),
        job_payload(&failure, PROJECT, REPO_ID, &[GPU_LABEL, CPU], started, EXAMPLE_SECONDS),
    ));
    let control = gated(&failure);
    let malformed = b"{\"action\":\"completed\",\"workflow_job\":{\"id\":289782451,".to_vec();

    let bodies: Vec<Vec<u8>> = cases.iter().map(|(_, p)| body(p)).chain([body(&control), malformed.clone()]).collect();
    let items: Vec<(&Path, &[u8])> = bodies.iter().map(|b| (secrets.current.as_path(), b.as_slice())).collect();
    let sigs = node.sign(&items);

    let before = fingerprint(&s);
    let counts = delivery_counts(&s);
    for (i, (row, _)) in cases.iter().enumerate() {
        let a = deliver(&s, "workflow_job", &delivery_id(i as u64), Some(&sigs[i]), &bodies[i]);
        assert_ignored(&a, row);
        assert_eq!(fingerprint(&s), before, "{row}: an ignored job changed the log or the state");
    }
    // Malformed JSON, correctly signed: 400, nothing stored.
    let n = cases.len();
    let a = deliver(&s, "workflow_job", &delivery_id(100), Some(&sigs[n + 1]), &malformed);
    assert_problem(&a, 400, "malformed JSON");
    assert_eq!(fingerprint(&s), before);
    // The same payload, finished on a gated runner of the org, is metered: the cases above
    // were ignored for the one fact each changed.
    let a = deliver(&s, "workflow_job", &delivery_id(101), Some(&sigs[n]), &bodies[n]);
    assert_logged(&a, "metered", "usage.reported", &control, "control");
    assert_eq!(
        counts_moved(&counts, &delivery_counts(&s)),
        moved(&[("ignored", n as u64), ("malformed", 1), ("metered", 1)])
    );
}

#[test]
fn a_completed_job_is_metered_once_with_its_facts() {
    let Some(node) = node_tools() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let t0 = api::now_ms();
    let (s, secrets, _cast) = setup(tmp.path(), true);
    let g = allocation(&s, "/v1/allocations", GRANT).unwrap();
    assert_eq!((g["used"].as_u64(), &g["last_used_at"]), (Some(0), &Value::Null), "{g}");

    let started = next_second_ms();
    let failure = job_payload(
        &node.workflow_job("completed", Some("failure")),
        PROJECT,
        REPO_ID,
        &[GPU_LABEL],
        started,
        EXAMPLE_SECONDS,
    );
    // GitHub's duplicate completion: the same job id completed again, as a success.
    let success = job_payload(
        &node.workflow_job("completed", Some("success")),
        PROJECT,
        REPO_ID,
        &[GPU_LABEL],
        started,
        EXAMPLE_SECONDS,
    );
    assert_eq!(usage_id(&failure), usage_id(&success));
    let job_id = failure["workflow_job"]["id"].as_u64().unwrap();
    // Two more jobs of the run: one that took no time (at least 1 minute) and one of exactly 2.
    let mut instant = failure.clone();
    instant["workflow_job"]["id"] = json!(job_id + 1);
    instant["workflow_job"]["completed_at"] = instant["workflow_job"]["started_at"].clone();
    let mut two = job_payload(&failure, PROJECT, REPO_ID, &[GPU_LABEL], started, 120);
    two["workflow_job"]["id"] = json!(job_id + 2);
    let bodies = [body(&failure), body(&success), body(&instant), body(&two)];
    let items: Vec<(&Path, &[u8])> = bodies.iter().map(|b| (secrets.current.as_path(), b.as_slice())).collect();
    let sigs = node.sign(&items);

    let counts = delivery_counts(&s);
    let size = s.log().size;
    let first = deliver(&s, "workflow_job", &delivery_id(1), Some(&sigs[0]), &bodies[0]);
    let seq = assert_logged(&first, "metered", "usage.reported", &failure, "first delivery");
    assert_eq!((seq, s.log().size), (size, size + 1), "one record, appended before the answer");

    // The record: usage.reported by the automation key, with the job's facts.
    let usage = usage_id(&failure);
    assert_eq!(usage, format!("gh:{REPO_ID}:{job_id}:1"));
    let record = s.get_json(&format!("/v1/events/by-id/{usage}"));
    assert_eq!(record["seq"], seq, "{record}");
    let st = &record["statement"];
    assert_eq!((st["type"].as_str(), st["id"].as_str()), (Some("usage.reported"), Some(usage.as_str())), "{st}");
    assert_eq!(st["ledger"], s.log().origin);
    assert_signed_by_automation(&s, &record);
    let d = &st["data"];
    assert_eq!(data_keys(st), keys(&["usage", "project", "resource", "amount", "started_at", "ended_at", "run_url"]));
    assert_eq!(d["usage"], usage.as_str());
    assert_eq!(d["project"], PROJECT);
    assert_eq!(d["resource"], RESOURCE);
    assert_eq!(d["amount"], EXAMPLE_MINUTES, "198 s are 4 runner-minutes (rounded up): {d}");
    assert_eq!(time_ms(&d["started_at"]), started);
    assert_eq!(time_ms(&d["ended_at"]), started + EXAMPLE_SECONDS * 1000);
    assert_eq!(d["run_url"], failure["workflow_job"]["html_url"]);

    // The grant is debited and shows when it was last used.
    let g = allocation(&s, "/v1/allocations", GRANT).unwrap();
    assert_eq!(g["used"], EXAMPLE_MINUTES, "{g}");
    let last_used = time_ms(&g["last_used_at"]);
    assert!(t0 - 1000 <= last_used && last_used <= started + EXAMPLE_SECONDS * 1000 + 1000, "{g}");
    assert!(allocation(&s, "/v1/allocations?unused_days=1", GRANT).is_none(), "a grant used today is not idle");

    // A redelivery keeps its delivery id: nothing changes.
    let dup = deliver(&s, "workflow_job", &delivery_id(1), Some(&sigs[0]), &bodies[0]);
    assert_eq!((dup.status, dup.outcome()), (200, "duplicate_delivery"), "{}", dup.text);
    // The same job attempt under a new delivery id, and GitHub's second completion of the
    // same job (a success after the failure): already logged, the same record.
    let again = deliver(&s, "workflow_job", &delivery_id(2), Some(&sigs[0]), &bodies[0]);
    assert_eq!(assert_logged(&again, "already_logged", "usage.reported", &failure, "new delivery id"), seq);
    let second = deliver(&s, "workflow_job", &delivery_id(3), Some(&sigs[1]), &bodies[1]);
    assert_eq!(assert_logged(&second, "already_logged", "usage.reported", &success, "completed.success"), seq);
    assert_eq!(s.log().size, size + 1);
    let reported: Vec<Value> =
        records_of_type(&s, "usage.reported").into_iter().filter(|r| r["statement"]["id"] == usage.as_str()).collect();
    assert_eq!(reported.len(), 1);
    assert_eq!(allocation(&s, "/v1/allocations", GRANT).unwrap()["used"], EXAMPLE_MINUTES);

    // Rounding: no time at all is still 1 minute; exactly 120 s is 2.
    for (i, (payload, minutes)) in [(&instant, 1), (&two, 2)].into_iter().enumerate() {
        let a = deliver(&s, "workflow_job", &delivery_id(10 + i as u64), Some(&sigs[2 + i]), &bodies[2 + i]);
        assert_logged(&a, "metered", "usage.reported", payload, "rounding");
        let record = s.get_json(&format!("/v1/events/by-id/{}", usage_id(payload)));
        assert_eq!(record["statement"]["data"]["amount"], minutes, "{record}");
    }
    assert_eq!(allocation(&s, "/v1/allocations", GRANT).unwrap()["used"], EXAMPLE_MINUTES + 3);
    assert_eq!(
        counts_moved(&counts, &delivery_counts(&s)),
        moved(&[("already_logged", 2), ("duplicate_delivery", 1), ("metered", 3)])
    );
}

#[test]
fn a_hundred_concurrent_deliveries_of_one_job_log_one_record() {
    let Some(node) = node_tools() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (s, secrets, _cast) = setup(tmp.path(), true);
    let payload = job_payload(
        &node.workflow_job("completed", Some("success")),
        PROJECT,
        REPO_ID,
        &[GPU_LABEL],
        next_second_ms(),
        EXAMPLE_SECONDS,
    );
    let body = body(&payload);
    let sig = node.sign(&[(&secrets.current, &body)]).remove(0);
    let size = s.log().size;
    const DELIVERIES: u64 = 100;
    let barrier = Barrier::new(DELIVERIES as usize);
    let answers: Vec<Answer> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..DELIVERIES)
            .map(|i| {
                let (s, body, sig, barrier) = (&s, &body, &sig, &barrier);
                scope.spawn(move || {
                    barrier.wait();
                    deliver(s, "workflow_job", &delivery_id(1000 + i), Some(sig), body)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    let mut seqs = BTreeSet::new();
    for a in &answers {
        assert_eq!(a.status, 200, "{}", a.text);
        *outcomes.entry(a.outcome().to_string()).or_default() += 1;
        assert_eq!(a.json["record"]["id"], usage_id(&payload), "{}", a.text);
        seqs.insert(a.json["record"]["seq"].as_u64().unwrap());
    }
    assert_eq!(outcomes, moved(&[("already_logged", DELIVERIES - 1), ("metered", 1)]));
    assert_eq!(seqs.len(), 1, "every answer names the one record: {seqs:?}");
    assert_eq!(s.log().size, size + 1);
    let usage = usage_id(&payload);
    let reported = records_of_type(&s, "usage.reported");
    assert_eq!(reported.iter().filter(|r| r["statement"]["id"] == usage.as_str()).count(), 1);
    assert_eq!(allocation(&s, "/v1/allocations", GRANT).unwrap()["used"], EXAMPLE_MINUTES);
}

#[test]
fn a_delivery_is_remembered_across_a_restart() {
    let Some(node) = node_tools() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (s, secrets, _cast) = setup(tmp.path(), true);
    let payload = job_payload(
        &node.workflow_job("completed", Some("failure")),
        PROJECT,
        REPO_ID,
        &[GPU_LABEL],
        next_second_ms(),
        EXAMPLE_SECONDS,
    );
    let body = body(&payload);
    let sig = node.sign(&[(&secrets.current, &body)]).remove(0);
    let delivery = delivery_id(1);
    let seq = assert_logged(
        &deliver(&s, "workflow_job", &delivery, Some(&sig), &body),
        "metered",
        "usage.reported",
        &payload,
        "before the restart",
    );
    let size = s.log().size;
    s.stop();

    let s = start_with_flags(&data, &secrets.serve_flags());
    assert_eq!(s.log().size, size);
    let dup = deliver(&s, "workflow_job", &delivery, Some(&sig), &body);
    assert_eq!((dup.status, dup.outcome()), (200, "duplicate_delivery"), "{}", dup.text);
    let again = deliver(&s, "workflow_job", &delivery_id(2), Some(&sig), &body);
    assert_eq!(assert_logged(&again, "already_logged", "usage.reported", &payload, "after the restart"), seq);
    assert_eq!(s.log().size, size);
    assert_eq!(allocation(&s, "/v1/allocations", GRANT).unwrap()["used"], EXAMPLE_MINUTES);
}

#[test]
fn a_gated_job_without_access_is_logged_as_unauthorized_publicly() {
    let Some(node) = node_tools() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (s, secrets, _cast) = setup(tmp.path(), true);
    let admin = s.admin();
    // xgboost-feedstock had a grant (an import), revoked before its job ran.
    s.append(
        &admin,
        "import-xgboost",
        "grant.issued",
        json!({"grant": "import:xgboost", "project": "xgboost-feedstock", "resource": RESOURCE, "pull_request": false}),
    );
    s.append(&admin, "revoke-xgboost", "grant.revoked", json!({"grant": "import:xgboost", "reason": "moved"}));
    s.append(
        &admin,
        "define-cpu",
        "resource.defined",
        json!({"resource": CPU, "provider": "cirun", "unit": "runner-minutes", "approvals_required": 1}),
    );
    let allocations = s.get_json("/v1/allocations");

    let started = next_second_ms();
    let example = node.workflow_job("completed", Some("failure"));
    // scipy-feedstock never asked.
    let scipy = job_payload(&example, "scipy-feedstock", REPO_ID + 1, &[GPU_LABEL], started, EXAMPLE_SECONDS);
    let mut xgboost = job_payload(&example, "xgboost-feedstock", REPO_ID + 2, &[GPU_LABEL], started, EXAMPLE_SECONDS);
    xgboost["workflow_job"]["id"] = json!(example["workflow_job"]["id"].as_u64().unwrap() + 1);
    let bodies = [body(&scipy), body(&xgboost)];
    let sigs = node.sign(&[(&secrets.current, &bodies[0]), (&secrets.current, &bodies[1])]);
    let counts = delivery_counts(&s);

    let mut seqs = Vec::new();
    for (i, (payload, project, reason)) in
        [(&scipy, "scipy-feedstock", "no_request"), (&xgboost, "xgboost-feedstock", "grant_revoked")]
            .into_iter()
            .enumerate()
    {
        let a = deliver(&s, "workflow_job", &delivery_id(1 + i as u64), Some(&sigs[i]), &bodies[i]);
        let seq = assert_logged(&a, "unauthorized", "usage.unauthorized", payload, project);
        seqs.push(seq);
        let record = s.get_json(&format!("/v1/events/by-id/{}", usage_id(payload)));
        assert_eq!(record["seq"], seq);
        let st = &record["statement"];
        assert_eq!(st["type"], "usage.unauthorized", "{st}");
        assert_signed_by_automation(&s, &record);
        assert_eq!(
            data_keys(st),
            keys(&["usage", "project", "resource", "started_at", "ended_at", "reason", "run_url"])
        );
        let d = &st["data"];
        assert_eq!(d["usage"], usage_id(payload));
        assert_eq!((d["project"].as_str(), d["resource"].as_str()), (Some(project), Some(RESOURCE)), "{d}");
        assert_eq!(d["reason"], reason, "{d}");
        assert_eq!(time_ms(&d["started_at"]), started);
        assert_eq!(time_ms(&d["ended_at"]), started + EXAMPLE_SECONDS * 1000);
        assert_eq!(d["run_url"], payload["workflow_job"]["html_url"]);
    }
    // Nothing is debited, no grant changes.
    assert_eq!(s.get_json("/v1/allocations"), allocations);
    // A redelivery under a new id is the same record.
    let again = deliver(&s, "workflow_job", &delivery_id(9), Some(&sigs[0]), &bodies[0]);
    assert_eq!(assert_logged(&again, "already_logged", "usage.unauthorized", &scipy, "redelivery"), seqs[0]);
    assert_eq!(counts_moved(&counts, &delivery_counts(&s)), moved(&[("already_logged", 1), ("unauthorized", 2)]));

    // GET /v1/usage/unauthorized lists them, filtered by project and resource.
    let jobs = s.get_json("/v1/usage/unauthorized");
    let jobs = jobs["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    let scipy_job = jobs.iter().find(|j| j["project"] == "scipy-feedstock").unwrap_or_else(|| panic!("{jobs:?}"));
    for field in ["seq", "usage", "project", "resource", "started_at", "ended_at", "reason", "run_url"] {
        assert!(scipy_job.get(field).is_some(), "{field}: {scipy_job}");
    }
    assert_eq!(scipy_job["seq"], seqs[0]);
    assert_eq!(scipy_job["usage"], usage_id(&scipy));
    assert_eq!(scipy_job["resource"], RESOURCE);
    assert_eq!(scipy_job["reason"], "no_request");
    assert_eq!(scipy_job["run_url"], scipy["workflow_job"]["html_url"]);
    assert_eq!(time_ms(&scipy_job["started_at"]), started);
    let filtered = s.get_json(&format!("/v1/usage/unauthorized?project=scipy-feedstock&resource={RESOURCE}"));
    assert_eq!(filtered["jobs"].as_array().unwrap().len(), 1, "{filtered}");
    assert_eq!(filtered["jobs"][0]["seq"], seqs[0]);
    let filtered = s.get_json(&format!("/v1/usage/unauthorized?project={PROJECT}"));
    assert_eq!(filtered["jobs"].as_array().unwrap().len(), 0, "{filtered}");
    let filtered = s.get_json(&format!("/v1/usage/unauthorized?resource={CPU}"));
    assert_eq!(filtered["jobs"].as_array().unwrap().len(), 0, "{filtered}");

    // The public pages say so.
    const TITLE: &str = "Jobs that ran without access";
    let index = s.get("/");
    assert_eq!(index.status().as_u16(), 200);
    let index = index.text().unwrap();
    let at = index.find(TITLE).unwrap_or_else(|| panic!("no {TITLE:?} on /:\n{index}"));
    assert!(index[at..].contains("scipy-feedstock") && index[at..].contains("xgboost-feedstock"), "{index}");
    let page = s.get("/projects/scipy-feedstock");
    assert_eq!(page.status().as_u16(), 200);
    let page = page.text().unwrap();
    assert!(page.contains(TITLE), "no {TITLE:?} on /projects/scipy-feedstock:\n{page}");
}

#[test]
fn a_body_over_1_mib_is_413() {
    let Some(node) = node_tools() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (s, secrets, _cast) = setup(tmp.path(), true);
    let payload = job_payload(
        &node.workflow_job("completed", Some("failure")),
        PROJECT,
        REPO_ID,
        &[GPU_LABEL],
        next_second_ms(),
        EXAMPLE_SECONDS,
    );
    // The same JSON, padded with whitespace before its last `}` to exactly 1 MiB and to one
    // byte more.
    const MIB: usize = 1 << 20;
    let padded = |len: usize| {
        let mut b = body(&payload);
        let last = b.pop().unwrap();
        assert_eq!(last, b'}');
        b.resize(len - 1, b' ');
        b.push(b'}');
        b
    };
    let (exact, over) = (padded(MIB), padded(MIB + 1));
    let sigs = node.sign(&[(&secrets.current, &exact), (&secrets.current, &over)]);
    let before = fingerprint(&s);
    for declared in [true, false] {
        let (status, answer) =
            deliver_raw(&s, "workflow_job", &delivery_id(declared as u64), &sigs[1], &over, declared);
        assert_eq!(status, 413, "1 MiB + 1 byte (Content-Length declared: {declared}): {answer}");
        assert_eq!(fingerprint(&s), before);
    }
    let a = deliver(&s, "workflow_job", &delivery_id(3), Some(&sigs[0]), &exact);
    assert_logged(&a, "metered", "usage.reported", &payload, "exactly 1 MiB");
}
