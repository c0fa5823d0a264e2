//! Provider churn: one `grants.migrated` moves every active grant from the old runner to the
//! new one, keeping limits, usage, expiry, users and the pull-request flag; the sponsor's
//! usage stays with the pool that paid, and the Cirun and runner-label exports follow.

mod common;

use std::collections::BTreeMap;

use common::*;
use serde_json::{json, Value};

/// The provider the feedstocks move to.
const CIRRUS: &str = "cirrus-linux-gpu-large";
/// A resource the migration must not touch.
const CPU: &str = "cirun-openstack-cpu-large";
const JAX: &str = "jax-feedstock";
const TF: &str = "tensorflow-feedstock";
const NUMPY: &str = "numpy-feedstock";
const CUPY: &str = "cupy-feedstock";

fn check(server: &Server, project: &str, resource: &str, pull_request: bool) -> Value {
    server.get_json(&format!("/v1/access/check?project={project}&resource={resource}&pull_request={pull_request}"))
}

/// The check for a job of `user`: the question a grant that names its users answers.
fn check_as(server: &Server, project: &str, resource: &str, pull_request: bool, user: &str) -> Value {
    server.get_json(&format!(
        "/v1/access/check?project={project}&resource={resource}&pull_request={pull_request}&user={user}&github_id=1"
    ))
}

fn labels(server: &Server) -> BTreeMap<String, Vec<String>> {
    serde_json::from_value(server.get_json("/v1/exports/runner-labels.json")).unwrap()
}

fn expected_labels(entries: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
    entries.iter().map(|(p, ls)| (p.to_string(), ls.iter().map(|l| l.to_string()).collect())).collect()
}

/// resource → the repos of the policies the Cirun export gives it.
fn cirun_repos(server: &Server) -> BTreeMap<String, Vec<String>> {
    let yaml = server.get("/v1/exports/cirun-access.yml").text().unwrap();
    let access = projector::interop::parse_cirun_access(&yaml).unwrap();
    let repo_of: BTreeMap<&str, &str> = access.policies.iter().map(|p| (p.id.as_str(), p.repo.as_str())).collect();
    access
        .access_control
        .iter()
        .map(|ac| {
            let mut repos: Vec<String> = ac.policies.iter().map(|id| repo_of[id.as_str()].to_string()).collect();
            repos.sort();
            (ac.resource.clone(), repos)
        })
        .collect()
}

/// Requests `request` for `project` on the cast's GPU resource and approves it twice.
fn gpu_grant(server: &Server, cast: &Cast, request: &str, project: &str, extra: Value) -> String {
    let mut data = json!({"request": request, "project": project, "resource": RESOURCE,
                          "justification": "CUDA builds", "pull_request": false});
    for (k, v) in extra.as_object().unwrap() {
        data[k] = v.clone();
    }
    server.append(&cast.bot, &format!("open-{request}"), "access.requested", data);
    server.append(
        &cast.alice,
        &format!("alice-{request}"),
        "request.approved",
        json!({"request": request, "pool": POOL}),
    );
    server.append(&cast.bob, &format!("bob-{request}"), "request.approved", json!({"request": request}));
    let view = server.get_json(&format!("/v1/requests/{request}"));
    view["grant"].as_str().unwrap_or_else(|| panic!("not granted: {view}")).to_string()
}

fn usage(server: &Server, cast: &Cast, id: &str, project: &str, resource: &str, amount: u64) -> u64 {
    let (started_at, ended_at) = job_just_now();
    server
        .append(
            &cast.bot,
            id,
            "usage.reported",
            json!({"usage": id, "project": project, "resource": resource, "amount": amount,
                   "started_at": started_at, "ended_at": ended_at}),
        )
        .seq
}

fn pool_numbers(server: &Server) -> (u64, u64, u64, u64) {
    let u = server.get_json(&format!("/v1/sponsors/{SPONSOR}/usage"));
    let p = u["pools"].as_array().unwrap().iter().find(|p| p["pool"] == POOL).unwrap().clone();
    let n = |k: &str| p[k].as_u64().unwrap();
    (n("deposited"), n("allocated"), n("used"), n("remaining"))
}

#[test]
fn grants_migrated_moves_every_active_grant_to_the_new_provider() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"));
    let cast = cast(&server, tmp.path());
    let admin = server.admin();
    for (resource, provider) in [(CIRRUS, "cirrus-runners"), (CPU, "open-gpu-server")] {
        server.append(
            &admin,
            &format!("define-{resource}"),
            "resource.defined",
            json!({"resource": resource, "provider": provider, "unit": "runner-minutes", "approvals_required": 1}),
        );
    }

    // Three active grants on the old GPU runner, of different shapes...
    let pytorch = gpu_grant(&server, &cast, "pytorch-gpu", PROJECT, json!({"credits": 5000, "days": 90}));
    let jax = gpu_grant(
        &server,
        &cast,
        "jax-gpu",
        JAX,
        json!({"credits": 2000, "pull_request": true, "users": ["hawkinsp", "ngam"]}),
    );
    let expires_at = ledger::statement::format_rfc3339_ms(api::now_ms() + 30 * 86_400_000);
    server.append(
        &admin,
        "import-cupy",
        "grant.issued",
        json!({"grant": "import:cupy", "project": CUPY, "resource": RESOURCE, "pull_request": true,
               "expires_at": expires_at, "roles": ["admin", "maintain"]}),
    );
    // ...one that already ended, and one on another resource.
    let tf = gpu_grant(&server, &cast, "tf-gpu", TF, json!({"credits": 100}));
    server.append(&admin, "revoke-tf", "grant.revoked", json!({"grant": tf, "reason": "unused"}));
    server.append(
        &cast.bot,
        "open-numpy",
        "access.requested",
        json!({"request": "numpy-cpu", "project": NUMPY, "resource": CPU, "justification": "big tests", "pull_request": false}),
    );
    server.append(&cast.alice, "alice-numpy", "request.approved", json!({"request": "numpy-cpu"}));

    usage(&server, &cast, "pytorch-job-1", PROJECT, RESOURCE, 300);
    usage(&server, &cast, "jax-job-1", JAX, RESOURCE, 50);
    let pool_before = pool_numbers(&server);
    assert_eq!(pool_before, (100_000, 7000, 350, 99_650));
    let before: BTreeMap<String, Value> = [(PROJECT, &pytorch), (JAX, &jax), (CUPY, &"import:cupy".to_string())]
        .into_iter()
        .map(|(project, grant)| {
            let answer = check(&server, project, RESOURCE, false);
            assert_eq!(answer["grant"]["grant"], grant.as_str(), "{answer}");
            (project.to_string(), answer["grant"].clone())
        })
        .collect();
    assert_eq!(
        labels(&server),
        expected_labels(&[(CUPY, &[RESOURCE]), (JAX, &[RESOURCE]), (NUMPY, &[CPU]), (PROJECT, &[RESOURCE])])
    );
    let cirun = cirun_repos(&server);
    assert_eq!(cirun[RESOURCE], [CUPY, JAX, PROJECT]);
    assert!(!cirun.contains_key(CIRRUS));

    // One reviewed event moves them all.
    let migrated = server
        .append(
            &admin,
            "migrate-to-cirrus",
            "grants.migrated",
            json!({"from_resource": RESOURCE, "to_resource": CIRRUS, "reason": "open-gpu-server is shutting down"}),
        )
        .seq;

    for (project, old) in &before {
        // The old resource denies, naming the move and citing the migration record.
        let answer = check(&server, project, RESOURCE, false);
        assert_eq!((answer["allowed"].as_bool(), answer["reason"].as_str()), (Some(false), Some("grant_migrated")));
        assert_eq!(answer["grant"]["status"], "migrated", "{answer}");
        assert_eq!(answer["grant"]["ended_seq"], migrated, "{answer}");
        let last = answer["grant"]["history"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["kind"], "grants.migrated", "{answer}");
        assert_eq!(last["seq"], migrated);
        let e = server.get_json(&format!("/v1/access/explain?project={project}&resource={RESOURCE}"));
        let grant_step = e["steps"].as_array().unwrap().iter().find(|s| s["step"] == "grant").unwrap();
        assert_eq!((grant_step["ok"].as_bool(), grant_step["seq"].as_u64()), (Some(false), Some(migrated)), "{e}");

        // The new one allows, with the same terms (jax's to the users it lists).
        let answer = check_as(&server, project, CIRRUS, false, "hawkinsp");
        assert_eq!(answer["allowed"], true, "{project}: {answer}");
        let new = &answer["grant"];
        assert_ne!(new["grant"], old["grant"]);
        assert_eq!(new["issued_seq"], migrated);
        for field in
            ["project", "pull_request", "request", "pool", "credit_limit", "used", "expires_at", "users", "roles"]
        {
            assert_eq!(new[field], old[field], "{project}: {field} changed: {old} -> {new}");
        }
        // The history shows where it came from.
        let history = new["history"].as_array().unwrap();
        assert_eq!(history[0]["seq"], old["issued_seq"], "{new}");
        let moved = history.last().unwrap();
        assert_eq!((moved["kind"].as_str(), moved["seq"].as_u64()), (Some("grants.migrated"), Some(migrated)));
        assert!(moved["detail"].as_str().unwrap().contains(old["grant"].as_str().unwrap()), "{moved}");
    }
    // Limits and users came along: jax keeps pull requests and its users list.
    assert_eq!(check_as(&server, JAX, CIRRUS, true, "ngam")["allowed"], true);
    assert_eq!(check(&server, JAX, CIRRUS, true)["reason"], "user_required");
    let answer = server.get_json(&format!(
        "/v1/access/check?project={JAX}&resource={CIRRUS}&pull_request=true&user=mallory&github_id=7"
    ));
    assert_eq!(answer["reason"], "user_not_listed", "{answer}");
    assert_eq!(check(&server, PROJECT, CIRRUS, true)["reason"], "pull_requests_not_granted");
    // The ended grant stays ended; the other resource is untouched.
    assert_eq!(check(&server, TF, RESOURCE, false)["reason"], "grant_revoked");
    assert_eq!(check(&server, TF, CIRRUS, false)["reason"], "no_request");
    assert_eq!(check(&server, NUMPY, CPU, false)["allowed"], true);

    // Credits are preserved: the pool's numbers do not move.
    assert_eq!(pool_numbers(&server), pool_before);
    // Usage on the new runner debits the same grant and the same pool, and is attributed to it.
    usage(&server, &cast, "pytorch-job-2", PROJECT, CIRRUS, 25);
    let answer = check(&server, PROJECT, CIRRUS, false);
    assert_eq!((answer["grant"]["used"].as_u64(), answer["grant"]["credit_limit"].as_u64()), (Some(325), Some(5000)));
    assert_eq!(pool_numbers(&server), (100_000, 7000, 375, 99_625));
    let sponsor = server.get_json(&format!("/v1/sponsors/{SPONSOR}/usage"));
    let mut rows: Vec<(String, String, String, u64)> = sponsor["projects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap().to_string();
            (s("project"), s("pool"), s("resource"), r["used"].as_u64().unwrap())
        })
        .collect();
    rows.sort();
    let row = |p: &str, r: &str, n: u64| (p.to_string(), POOL.to_string(), r.to_string(), n);
    assert_eq!(rows, [row(JAX, RESOURCE, 50), row(PROJECT, CIRRUS, 25), row(PROJECT, RESOURCE, 300)]);
    // A usage report for the old runner is refused now.
    let (started_at, ended_at) = job_just_now();
    let (status, body) = server.submit(
        &cast.bot,
        "pytorch-job-3",
        "usage.reported",
        json!({"usage": "pytorch-job-3", "project": PROJECT, "resource": RESOURCE, "amount": 5,
               "started_at": started_at, "ended_at": ended_at}),
    );
    assert_eq!((status, body["code"].as_str()), (422, Some("no_active_grant")), "{body}");

    // The exports show the move.
    let after = expected_labels(&[(CUPY, &[CIRRUS]), (JAX, &[CIRRUS]), (NUMPY, &[CPU]), (PROJECT, &[CIRRUS])]);
    assert_eq!(labels(&server), after);
    let cirun = cirun_repos(&server);
    assert!(!cirun.contains_key(RESOURCE), "{cirun:?}");
    assert_eq!(cirun[CIRRUS], [CUPY, JAX, PROJECT]);
    assert_eq!(cirun[CPU], [NUMPY]);
    // `grantline export-runner-labels` writes the same document.
    let out = tmp.path().join("runner-labels.json");
    server.ok(&["export-runner-labels", "--out", out.to_str().unwrap()]);
    let written: BTreeMap<String, Vec<String>> = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(written, after);
    let printed: BTreeMap<String, Vec<String>> = serde_json::from_str(&server.ok(&["export-runner-labels"])).unwrap();
    assert_eq!(printed, after);

    // A second migration from the now-empty resource moves nothing.
    let size = server.log().size;
    server.append(
        &admin,
        "migrate-again",
        "grants.migrated",
        json!({"from_resource": RESOURCE, "to_resource": CPU, "reason": "nothing left"}),
    );
    assert_eq!(server.log().size, size + 1);
    assert_eq!(labels(&server), after);
}
