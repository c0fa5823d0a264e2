//! "Why am I denied?": every denial reason of SPEC.md section 4, each in a state that
//! produces it, through the real server. `GET /v1/access/explain` must agree with
//! `GET /v1/access/check` and point each step at the record (receipt seq) that proves it.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// A second GPU resource that needs one approval (quicker grants for the scenarios).
const CPU: &str = "cirun-openstack-cpu-large";
/// A resource with provider terms that users must accept.
const TERMS_RESOURCE: &str = "blacksmith-linux-4vcpu";
const TERMS: &str = "blacksmith-tos-2026-01";
const USERS_JSON_URL: &str = "https://raw.githubusercontent.com/conda-forge/.cirun/main/conda-forge-users.json";
/// How long the automation may take to append `grant.expired` after the time passes.
const EXPIRY_WAIT: Duration = Duration::from_secs(30);

/// `GET /v1/access/explain`, checked against `GET /v1/access/check` for the same question.
fn explain(server: &Server, project: &str, resource: &str, pull_request: bool, user: Option<(&str, u64)>) -> Value {
    let mut query = format!("project={project}&resource={resource}&pull_request={pull_request}");
    if let Some((login, id)) = user {
        query.push_str(&format!("&user={login}&github_id={id}"));
    }
    let explanation = server.get_json(&format!("/v1/access/explain?{query}"));
    let answer = server.get_json(&format!("/v1/access/check?{query}"));
    assert_eq!(answer["allowed"], explanation["allowed"], "check {answer} vs explain {explanation}");
    assert_eq!(answer["reason"], explanation["reason"], "check {answer} vs explain {explanation}");
    assert_eq!(answer["grant"]["grant"], explanation["grant"], "check {answer} vs explain {explanation}");
    explanation
}

/// The named step of an explanation.
fn step<'a>(e: &'a Value, name: &str) -> &'a Value {
    e["steps"].as_array().unwrap().iter().find(|s| s["step"] == name).unwrap_or_else(|| panic!("no {name} step: {e}"))
}

/// Asserts a step's verdict and the seq that proves it.
fn assert_step(e: &Value, name: &str, ok: bool, seq: Option<u64>) {
    let s = step(e, name);
    assert_eq!(s["ok"], ok, "{name}: {e}");
    assert_eq!(s["seq"].as_u64(), seq, "{name} seq: {e}");
}

fn assert_denied(e: &Value, reason: &str) {
    assert_eq!(e["allowed"], false, "{e}");
    assert_eq!(e["reason"], reason, "{e}");
}

/// The failing steps' names, in order.
fn failing(e: &Value) -> Vec<String> {
    e["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["ok"] == false)
        .map(|s| s["step"].as_str().unwrap().to_string())
        .collect()
}

fn record_seq(server: &Server, id: &str) -> u64 {
    server.get_json(&format!("/v1/events/by-id/{id}"))["seq"].as_u64().unwrap()
}

struct Granted {
    opened: u64,
    last_approval: u64,
    grant_seq: u64,
    grant: String,
}

/// Opens `request` by the bot with `extra` data fields and approves it to its quorum (alice,
/// then bob when the resource needs two). The automation issues the grant.
fn grant_via_quorum(server: &Server, cast: &Cast, request: &str, resource: &str, extra: Value) -> Granted {
    let mut data =
        json!({"request": request, "resource": resource, "justification": "GPU builds", "pull_request": false});
    for (k, v) in extra.as_object().unwrap() {
        data[k] = v.clone();
    }
    let opened = server.append(&cast.bot, &format!("open-{request}"), "access.requested", data).seq;
    let mut last_approval =
        server.append(&cast.alice, &format!("alice-{request}"), "request.approved", json!({"request": request})).seq;
    if resource == RESOURCE {
        last_approval = server
            .append(&cast.bob, &format!("bob-{request}"), "request.approved", json!({"request": request, "pool": POOL}))
            .seq;
    }
    let view = server.get_json(&format!("/v1/requests/{request}"));
    assert_eq!(view["status"], "granted", "{view}");
    let grant = view["grant"].as_str().unwrap().to_string();
    let grant_seq = record_seq(server, &format!("grant.issued:{request}"));
    assert!(grant_seq > last_approval);
    Granted { opened, last_approval, grant_seq, grant }
}

fn define(server: &Server, resource: &str, approvals: u32, terms: Option<&str>) -> u64 {
    let mut data =
        json!({"resource": resource, "provider": "cirun", "unit": "runner-minutes", "approvals_required": approvals});
    if let Some(t) = terms {
        data["terms"] = json!(t);
    }
    server.append(&server.admin(), &format!("define-{resource}"), "resource.defined", data).seq
}

#[test]
fn every_denial_reason_is_explained_with_the_seqs_that_prove_it() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"));
    let cast = cast(&server, tmp.path());
    let admin = server.admin();
    let gpu_defined = record_seq(&server, "define-gpu");
    define(&server, CPU, 1, None);

    // no_request: nothing was ever asked for this project.
    let e = explain(&server, "numpy-feedstock", RESOURCE, false, None);
    assert_denied(&e, "no_request");
    assert_step(&e, "project", true, None);
    assert_step(&e, "resource", true, Some(gpu_defined));
    assert_step(&e, "request", false, None);
    assert_step(&e, "grant", false, None);
    assert_eq!(e["grant"], Value::Null);

    // A project name is exact: no case folding, no owner prefix.
    let e = explain(&server, "conda-forge/numpy-feedstock", RESOURCE, false, None);
    assert_denied(&e, "invalid_project_name");
    assert_step(&e, "project", false, None);

    // awaiting_approvals (1 of 2): one reviewer of two approved.
    let opened = server
        .append(
            &cast.bot,
            "open-scipy",
            "access.requested",
            json!({"request": "scipy-gpu", "project": "scipy-feedstock", "resource": RESOURCE,
                   "justification": "GPU tests", "pull_request": false}),
        )
        .seq;
    let e = explain(&server, "scipy-feedstock", RESOURCE, false, None);
    assert_denied(&e, "awaiting_approvals (0 of 2)");
    assert_step(&e, "approvals", false, None);
    let approved = server.append(&cast.alice, "alice-scipy", "request.approved", json!({"request": "scipy-gpu"})).seq;
    let e = explain(&server, "scipy-feedstock", RESOURCE, false, None);
    assert_denied(&e, "awaiting_approvals (1 of 2)");
    assert_step(&e, "request", true, Some(opened));
    assert_step(&e, "approvals", false, Some(approved));
    assert!(step(&e, "approvals")["detail"].as_str().unwrap().contains(r#"1 of 2 approvals ("alice")"#), "{e}");
    assert_step(&e, "grant", false, None);

    // request_denied: a reviewer said no.
    let opened = server
        .append(
            &cast.bot,
            "open-jax",
            "access.requested",
            json!({"request": "jax-gpu", "project": "jax-feedstock", "resource": RESOURCE,
                   "justification": "GPU tests", "pull_request": false}),
        )
        .seq;
    let denied = server.append(
        &cast.bob,
        "bob-denies-jax",
        "request.denied",
        json!({"request": "jax-gpu", "reason": "no GPU code"}),
    );
    let e = explain(&server, "jax-feedstock", RESOURCE, false, None);
    assert_denied(&e, "request_denied");
    assert_step(&e, "request", false, Some(opened));
    assert_step(&e, "request_closed", false, Some(denied.seq));

    // grant_revoked: granted, then revoked by the admin.
    let g =
        grant_via_quorum(&server, &cast, "torch-gpu", RESOURCE, json!({"project": "torch-feedstock", "credits": 500}));
    let e = explain(&server, "torch-feedstock", RESOURCE, false, None);
    assert_eq!((e["allowed"].as_bool(), e["grant"].as_str()), (Some(true), Some(g.grant.as_str())), "{e}");
    assert_step(&e, "grant", true, Some(g.grant_seq));
    let revoked =
        server.append(&admin, "revoke-torch", "grant.revoked", json!({"grant": g.grant, "reason": "moved provider"}));
    let e = explain(&server, "torch-feedstock", RESOURCE, false, None);
    assert_denied(&e, "grant_revoked");
    assert_eq!(e["grant"], g.grant.as_str());
    assert_step(&e, "request", true, Some(g.opened));
    assert_step(&e, "approvals", true, Some(g.last_approval));
    assert_step(&e, "grant", false, Some(revoked.seq));
    assert_eq!(failing(&e), ["grant"]);

    // grant_exhausted: the usage reached the credit limit.
    let g = grant_via_quorum(&server, &cast, "tf-cpu", CPU, json!({"project": "tensorflow-feedstock", "credits": 100}));
    let (started_at, ended_at) = job_just_now();
    let usage = server.append(
        &cast.bot,
        "usage-tf-1",
        "usage.reported",
        json!({"usage": "tf-job-1", "project": "tensorflow-feedstock", "resource": CPU, "amount": 100,
               "started_at": started_at, "ended_at": ended_at}),
    );
    let e = explain(&server, "tensorflow-feedstock", CPU, false, None);
    assert_denied(&e, "grant_exhausted");
    assert_step(&e, "credits", false, Some(usage.seq));
    assert!(step(&e, "credits")["detail"].as_str().unwrap().contains("100 of 100 credits used"), "{e}");
    assert_eq!(failing(&e), ["credits"]);
    // The automation appends grant.exhausted right after the usage; the grant step cites it.
    let exhausted = record_seq(&server, &format!("grant.exhausted:{}", g.grant));
    assert!(exhausted > usage.seq);
    assert_step(&e, "grant", true, Some(exhausted));

    // pull_requests_not_granted: the grant is for the default branch only.
    let g = grant_via_quorum(&server, &cast, "arrow-cpu", CPU, json!({"project": "arrow-cpp-feedstock"}));
    let e = explain(&server, "arrow-cpp-feedstock", CPU, true, None);
    assert_denied(&e, "pull_requests_not_granted");
    assert_step(&e, "pull_request", false, Some(g.grant_seq));
    assert_eq!(failing(&e), ["pull_request"]);
    let e = explain(&server, "arrow-cpp-feedstock", CPU, false, None);
    assert_eq!(e["allowed"], true, "{e}");
    assert!(failing(&e).is_empty(), "{e}");

    // user_not_listed: the grant names its users; the grant.issued record proves the list.
    let g = grant_via_quorum(
        &server,
        &cast,
        "cupy-cpu",
        CPU,
        json!({"project": "cupy-feedstock", "users": ["leofang", "jakirkham"]}),
    );
    let e = explain(&server, "cupy-feedstock", CPU, false, Some(("mallory", 666)));
    assert_denied(&e, "user_not_listed");
    assert_step(&e, "user", false, Some(g.grant_seq));
    // user_required: without a user, a grant that names its users fails closed.
    let e = explain(&server, "cupy-feedstock", CPU, false, None);
    assert_denied(&e, "user_required");
    assert_eq!(e["grant"], g.grant.as_str());
    assert_step(&e, "user", false, Some(g.grant_seq));
    assert_eq!(failing(&e), ["user"]);
    let e = explain(&server, "cupy-feedstock", CPU, false, Some(("leofang", 123)));
    assert_eq!(e["allowed"], true, "{e}");
    assert_step(&e, "user", true, Some(g.grant_seq));

    // terms_not_accepted, then the GitHub id mismatch: a users_from_json grant on a resource
    // with provider terms.
    define(&server, TERMS_RESOURCE, 1, Some(TERMS));
    let g = grant_via_quorum(
        &server,
        &cast,
        "lightgbm-bs",
        TERMS_RESOURCE,
        json!({"project": "lightgbm-feedstock", "users_from_json": USERS_JSON_URL}),
    );
    let e = explain(&server, "lightgbm-feedstock", TERMS_RESOURCE, false, Some(("carol", 1003)));
    assert_denied(&e, "terms_not_accepted");
    assert_step(&e, "user", false, None);
    assert_step(&e, "grant", true, Some(g.grant_seq));
    let e = explain(&server, "lightgbm-feedstock", TERMS_RESOURCE, false, None);
    assert_denied(&e, "user_required");
    assert_step(&e, "user", false, Some(g.grant_seq));
    assert!(step(&e, "user")["detail"].as_str().unwrap().contains(&format!("accepted terms {TERMS:?}")), "{e}");
    let old_terms = server
        .append(
            &cast.bot,
            "carol-old",
            "user.terms_accepted",
            json!({"user": "carol", "github_id": 1003, "terms": "bs-2025"}),
        )
        .seq;
    let e = explain(&server, "lightgbm-feedstock", TERMS_RESOURCE, false, Some(("carol", 1003)));
    assert_denied(&e, "terms_not_accepted");
    assert_step(&e, "user", false, Some(old_terms));
    let accepted = server
        .append(
            &cast.bot,
            "carol-new",
            "user.terms_accepted",
            json!({"user": "carol", "github_id": 1003, "terms": TERMS}),
        )
        .seq;
    let e = explain(&server, "lightgbm-feedstock", TERMS_RESOURCE, false, Some(("carol", 1003)));
    assert_eq!(e["allowed"], true, "{e}");
    assert_step(&e, "user", true, Some(accepted));
    // Someone else holding the login "carol" now (another numeric id) does not inherit it.
    let e = explain(&server, "lightgbm-feedstock", TERMS_RESOURCE, false, Some(("carol", 4242)));
    assert_denied(&e, "github_id_mismatch");
    assert_step(&e, "user", false, Some(accepted));
    assert!(step(&e, "user")["detail"].as_str().unwrap().contains("1003"), "{e}");

    // resource_retired: retiring the resource ends its grants.
    let g = grant_via_quorum(&server, &cast, "numba-cpu", CPU, json!({"project": "numba-feedstock"}));
    let retired = server.append(&admin, "retire-cpu", "resource.retired", json!({"resource": CPU})).seq;
    let e = explain(&server, "numba-feedstock", CPU, false, None);
    assert_denied(&e, "resource_retired");
    assert_eq!(e["grant"], g.grant.as_str());
    assert_step(&e, "resource", false, Some(retired));
    assert_step(&e, "grant", false, Some(retired));
    // It ends every grant on it, e.g. the one that was only missing pull requests.
    assert_denied(&explain(&server, "arrow-cpp-feedstock", CPU, false, None), "resource_retired");

    // The seqs are the log's: each cited record is the event the step names.
    let e = explain(&server, "torch-feedstock", RESOURCE, false, None);
    let cited = step(&e, "grant")["seq"].as_u64().unwrap();
    let record = server.get_json(&format!("/v1/events/{cited}"));
    assert_eq!(record["statement"]["type"], "grant.revoked", "{record}");
    assert_eq!(record["statement"]["data"]["grant"], e["grant"], "{record}");
}

#[test]
fn an_expiring_grant_denies_as_soon_as_its_time_passes() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"));
    cast(&server, tmp.path());
    let admin = server.admin();
    // An admin-issued grant (an import) that expires in two seconds: whole `days` are too long
    // to wait for.
    let expires_at_ms = api::now_ms() + 2000;
    let expires_at = ledger::statement::format_rfc3339_ms(expires_at_ms);
    let issued = server
        .append(
            &admin,
            "import-xgboost",
            "grant.issued",
            json!({"grant": "import:xgboost", "project": "xgboost-feedstock", "resource": RESOURCE,
                   "pull_request": true, "expires_at": expires_at}),
        )
        .seq;
    let e = explain(&server, "xgboost-feedstock", RESOURCE, true, None);
    if api::now_ms() < expires_at_ms {
        assert_eq!(e["allowed"], true, "{e}");
        assert_step(&e, "request", true, Some(issued));
        assert_step(&e, "expiry", true, Some(issued));
    }

    // The check denies as soon as the time passes, even before grant.expired is appended.
    let deadline = Instant::now() + EXPIRY_WAIT;
    while api::now_ms() <= expires_at_ms {
        assert!(Instant::now() < deadline, "the clock did not pass {expires_at}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let e = explain(&server, "xgboost-feedstock", RESOURCE, true, None);
    assert_denied(&e, "grant_expired");
    assert_eq!(e["grant"], "import:xgboost");
    let expiry = step(&e, "expiry");
    assert_eq!(expiry["ok"], false, "{e}");
    assert_eq!(expiry["detail"], format!("expired at {expires_at}"), "{e}");
    assert_eq!(failing(&e), ["expiry"]);
    assert!(server.get_json("/v1/allocations?project=xgboost-feedstock")["resources"].as_array().unwrap().is_empty());

    // The automation appends grant.expired on its tick; the expiry step then cites it.
    let expired_seq = loop {
        let resp = server.get("/v1/events/by-id/grant.expired:import:xgboost");
        if resp.status().is_success() {
            let record: Value = resp.json().unwrap();
            assert!(record["envelope"]["signatures"][0]["keyid"].as_str().unwrap().starts_with("automation+"));
            break record["seq"].as_u64().unwrap();
        }
        assert!(Instant::now() < deadline, "no grant.expired appended within {EXPIRY_WAIT:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let e = explain(&server, "xgboost-feedstock", RESOURCE, true, None);
    assert_denied(&e, "grant_expired");
    assert_step(&e, "expiry", false, Some(expired_seq));
    let grant = server.get_json("/v1/access/check?project=xgboost-feedstock&resource=cirun-openstack-gpu-large");
    assert_eq!(grant["grant"]["status"], "expired", "{grant}");
    assert_eq!(grant["grant"]["ended_seq"], expired_seq, "{grant}");
}
