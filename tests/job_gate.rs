//! The job gate, `POST /v1/access/job` (SPEC.md section 13), over HTTP through the real binary:
//! the label rule (case, Cirun's `--` suffix, Namespace's `;` options, look-alikes, several
//! gated labels), the repository and event rules (forks, `pull_request_target` and the other
//! triggers outside a maintainer's control), the access check for the actor and for the
//! triggering actor of a re-run, bots and `job.vouched`, and the roles left to the provider.

mod common;

use common::github::*;
use common::*;
use serde_json::{json, Value};

const GPU_LABEL: &str = "cirun-openstack-gpu-large--2202229078-linux_64_cuda";
const CPU: &str = "cirun-openstack-cpu-large";
const BLACKSMITH: &str = "blacksmith-linux-8vcpu";
const TERMS: &str = "blacksmith-tos-2026-01";
const USERS_JSON_URL: &str = "https://raw.githubusercontent.com/conda-forge/.cirun/main/conda-forge-users.json";
const REQUEST: &str = "gpu-pytorch";
const GRANT: &str = "grant:gpu-pytorch";
/// Pull requests allowed, roles limited to admin and maintain (an import).
const XGBOOST: &str = "xgboost-feedstock";
/// A `users_from_json` grant on BLACKSMITH, whose terms its users must accept (an import).
const CUPY: &str = "cupy-feedstock";
/// A grant listing its users (an import).
const LIGHTGBM: &str = "lightgbm-feedstock";
const SHA: &str = "3484a3fb816e0859fd6e1cea078d76385ff50625";
const OTHER_SHA: &str = "0f5b3c2d1e4a69788796a5b4c3d2e1f0a9b8c7d6";
const THIRD_SHA: &str = "9c1e2a7b5d3f4e6a8b0c1d2e3f4a5b6c7d8e9f00";
const DEFAULT_ROLES: [&str; 3] = ["admin", "maintain", "write"];

fn user(login: &str, id: u64) -> Value {
    json!({"login": login, "id": id, "type": "User"})
}

fn bot(login: &str, id: u64) -> Value {
    json!({"login": login, "id": id, "type": "Bot"})
}

/// h-vetinari (GitHub id 33001) has accepted BLACKSMITH's terms.
fn maintainer() -> Value {
    user("h-vetinari", 33001)
}

/// A push to `ORG/project` by a maintainer, on `labels`.
fn job(project: &str, labels: &[&str]) -> Value {
    json!({"repository": format!("{ORG}/{project}"), "labels": labels, "event": "push",
           "head_repository": format!("{ORG}/{project}"), "head_sha": SHA,
           "actor": maintainer(), "triggering_actor": maintainer()})
}

fn with(mut job: Value, changes: Value) -> Value {
    for (k, v) in changes.as_object().unwrap() {
        job[k] = v.clone();
    }
    job
}

fn post_job(s: &Server, body: Vec<u8>) -> Answer {
    answer(
        http()
            .post(format!("{}/v1/access/job", s.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .unwrap(),
    )
}

/// The gate's answer to `job` (which must be a 200).
fn gate(s: &Server, job: &Value) -> Value {
    let a = post_job(s, serde_json::to_vec(job).unwrap());
    assert_eq!(a.status, 200, "{job}: {}", a.text);
    assert!(a.json["allowed"].is_boolean() && a.json["reason"].is_string(), "{job}: {}", a.text);
    a.json
}

fn assert_allowed(s: &Server, job: &Value, resource: &str) -> Value {
    let a = gate(s, job);
    assert_eq!((a["allowed"].as_bool(), a["reason"].as_str()), (Some(true), Some("ok")), "{job}: {a}");
    assert_eq!(a["resource"], resource, "{job}: {a}");
    assert_eq!(a["grant"]["resource"], resource, "{job}: {a}");
    a
}

fn assert_denied(s: &Server, job: &Value, reason: &str) -> Value {
    let a = gate(s, job);
    assert_eq!((a["allowed"].as_bool(), a["reason"].as_str()), (Some(false), Some(reason)), "{job}: {a}");
    a
}

fn roles(answer: &Value) -> Vec<String> {
    serde_json::from_value(answer["roles"].clone()).unwrap_or_else(|e| panic!("roles: {e}: {answer}"))
}

/// A server for ORG with the README's cast and:
/// - PROJECT: `grant:gpu-pytorch` on RESOURCE through two approvals (no pull requests, the
///   default roles);
/// - XGBOOST: an imported grant on RESOURCE with pull requests and roles admin, maintain;
/// - CUPY: an imported `users_from_json` grant on BLACKSMITH (terms TERMS), accepted by
///   h-vetinari (33001) and jakirkham (3019);
/// - LIGHTGBM: an imported grant on RESOURCE for the users [jakirkham];
/// - revoked-feedstock: an imported grant on RESOURCE, revoked;
/// - a second gated resource CPU.
fn setup(tmp: &std::path::Path) -> (Server, Cast) {
    let (s, _secrets) = start_github(&tmp.join("data"));
    let cast = cast(&s, tmp);
    let admin = s.admin();
    for (resource, terms) in [(CPU, None), (BLACKSMITH, Some(TERMS))] {
        let mut data =
            json!({"resource": resource, "provider": "cirun", "unit": "runner-minutes", "approvals_required": 1});
        if let Some(t) = terms {
            data["terms"] = json!(t);
        }
        s.append(&admin, &format!("define-{resource}"), "resource.defined", data);
    }
    open_request(&s, &cast, REQUEST);
    s.append(&cast.alice, "alice-approves", "request.approved", json!({"request": REQUEST}));
    s.append(&cast.bob, "bob-approves", "request.approved", json!({"request": REQUEST}));
    assert_eq!(s.get_json(&format!("/v1/requests/{REQUEST}"))["status"], "granted");
    let imports = [
        ("import:xgboost", XGBOOST, RESOURCE, json!({"pull_request": true, "roles": ["admin", "maintain"]})),
        ("import:cupy", CUPY, BLACKSMITH, json!({"pull_request": true, "users_from_json": USERS_JSON_URL})),
        ("import:lightgbm", LIGHTGBM, RESOURCE, json!({"pull_request": false, "users": ["jakirkham"]})),
        ("import:revoked", "revoked-feedstock", RESOURCE, json!({"pull_request": false})),
    ];
    for (grant, project, resource, extra) in imports {
        let data = with(json!({"grant": grant, "project": project, "resource": resource}), extra);
        s.append(&admin, grant, "grant.issued", data);
    }
    s.append(
        &admin,
        "revoke",
        "grant.revoked",
        json!({"grant": "import:revoked", "reason": "moved to another provider"}),
    );
    for (login, id) in [("h-vetinari", 33001), ("jakirkham", 3019)] {
        s.append(
            &cast.bot,
            &format!("terms-{login}"),
            "user.terms_accepted",
            json!({"user": login, "github_id": id, "terms": TERMS,
                   "evidence_url": "https://github.com/conda-forge/.cirun/pull/7"}),
        );
    }
    (s, cast)
}

#[test]
fn labels_name_one_resource_by_the_label_rule() {
    let tmp = tempfile::tempdir().unwrap();
    let (s, _cast) = setup(tmp.path());

    // Allowed, with the grant, and the grant's roles for the provider to enforce.
    let a = assert_allowed(&s, &job(PROJECT, &[RESOURCE]), RESOURCE);
    assert_eq!(a["grant"]["grant"], GRANT, "{a}");
    assert_eq!(a["grant"]["project"], PROJECT, "{a}");
    assert_eq!(roles(&a), DEFAULT_ROLES);

    // GitHub compares labels without case; Cirun's per-job suffix follows `--`, Namespace's
    // options follow `;`; the runner's other labels name nothing.
    let named = [
        vec!["Cirun-OpenStack-GPU-Large--123456-linux_64_cuda"],
        vec!["self-hosted", "linux", GPU_LABEL],
        vec!["CIRUN-OPENSTACK-GPU-LARGE"],
        vec!["cirun-openstack-gpu-large;container.privileged=true"],
        vec!["cirun-openstack-gpu-large--1;x=y"],
        vec!["cirun-openstack-gpu-large--"],
    ];
    for labels in &named {
        assert_allowed(&s, &job(PROJECT, labels), RESOURCE);
    }
    // At most 256 bytes: a suffixed label of exactly 256 names the resource, one of 257 is
    // malformed (not cut down to a gated name).
    let at_limit = format!("{RESOURCE}--{}", "1".repeat(256 - RESOURCE.len() - 2));
    assert_eq!(at_limit.len(), 256);
    assert_allowed(&s, &job(PROJECT, &[&at_limit]), RESOURCE);
    let over_limit = format!("{at_limit}1");
    assert_denied(&s, &job(PROJECT, &[&over_limit]), "malformed_label");

    // Look-alikes name nothing: the rest must equal a defined resource exactly.
    let look_alikes = [
        "cirun-openstack-gpu-large2",
        "cirun-openstack-gpu-larg",
        "cirun-openstack-gpu-large-",
        "cirun-openstack-gpu-large-x--1",
        "xcirun-openstack-gpu-large",
        "cirun_openstack_gpu_large",
        "cirun-openstack-gpu-l\u{430}rge",
        "gpu-large",
        "cirun-openstack-gpu-large.",
    ];
    for label in look_alikes {
        let a = assert_denied(&s, &job(PROJECT, &[label]), "no_resource");
        assert!(a["resource"].is_null(), "{label}: {a}");
    }
    for labels in [vec![], vec!["ubuntu-latest"], vec!["self-hosted", "linux", "x64"]] {
        let a = assert_denied(&s, &job(PROJECT, &labels), "no_resource");
        assert!(a["resource"].is_null(), "{labels:?}: {a}");
    }

    // Two gated labels: which runner would be billed is not clear, so neither.
    assert_denied(&s, &job(PROJECT, &[GPU_LABEL, CPU]), "several_resources");
    assert_denied(&s, &job(PROJECT, &["linux", "CIRUN-OPENSTACK-CPU-LARGE--9", GPU_LABEL]), "several_resources");

    // Whitespace and control characters make a label malformed.
    for label in [
        "cirun-openstack-gpu-large --1",
        "cirun-openstack-gpu-large\t",
        "cirun-openstack-gpu-large\u{7}",
        " cirun-openstack-gpu-large",
    ] {
        assert_denied(&s, &job(PROJECT, &[label]), "malformed_label");
    }
}

#[test]
fn repository_and_event_rules() {
    let tmp = tempfile::tempdir().unwrap();
    let (s, _cast) = setup(tmp.path());
    let pr = |project: &str, head: &str, event: &str| {
        with(job(project, &[GPU_LABEL]), json!({"event": event, "head_repository": head}))
    };
    let same = format!("{ORG}/{XGBOOST}");

    // A look-alike repository under another owner.
    for repo in
        ["conda-forge-evil/pytorch-cpu-feedstock", "mallory/pytorch-cpu-feedstock", "conda-forg/pytorch-cpu-feedstock"]
    {
        let j = with(job(PROJECT, &[GPU_LABEL]), json!({"repository": repo, "head_repository": repo}));
        assert_denied(&s, &j, "foreign_repository");
    }

    // push and workflow_dispatch run; a pull request runs only from the same repository.
    assert_allowed(&s, &job(PROJECT, &[GPU_LABEL]), RESOURCE);
    assert_allowed(&s, &pr(PROJECT, &format!("{ORG}/{PROJECT}"), "workflow_dispatch"), RESOURCE);
    let a = assert_allowed(&s, &pr(XGBOOST, &same, "pull_request"), RESOURCE);
    assert_eq!(a["grant"]["grant"], "import:xgboost", "{a}");
    assert_eq!(roles(&a), ["admin", "maintain"]);
    // From a fork, even where the grant allows pull requests.
    assert_denied(&s, &pr(XGBOOST, "mallory/xgboost-feedstock", "pull_request"), "fork_pull_request");
    assert_denied(&s, &pr(XGBOOST, "h-vetinari/xgboost-feedstock", "pull_request"), "fork_pull_request");
    // A same-repository pull request on a grant for the default branch only.
    assert_denied(&s, &pr(PROJECT, &format!("{ORG}/{PROJECT}"), "pull_request"), "pull_requests_not_granted");

    // Triggers outside a maintainer's control, even from the same repository and on a grant
    // that allows pull requests.
    for event in
        ["pull_request_target", "workflow_run", "issue_comment", "schedule", "repository_dispatch", "merge_group"]
    {
        assert_denied(&s, &pr(XGBOOST, &same, event), "event_not_allowed");
    }

    // The section-4 access check's reasons come through.
    assert_denied(&s, &job("scipy-feedstock", &[GPU_LABEL]), "no_request");
    assert_denied(&s, &job("revoked-feedstock", &[GPU_LABEL]), "grant_revoked");
}

#[test]
fn the_actor_and_the_triggering_actor_each_pass_the_user_check() {
    let tmp = tempfile::tempdir().unwrap();
    let (s, _cast) = setup(tmp.path());
    let on = |project: &str, label: &str, actor: Value, triggering: Value| {
        with(job(project, &[label]), json!({"actor": actor, "triggering_actor": triggering}))
    };

    // users_from_json: both accepted the terms.
    let a = assert_allowed(&s, &on(CUPY, BLACKSMITH, maintainer(), user("jakirkham", 3019)), BLACKSMITH);
    assert_eq!(a["grant"]["grant"], "import:cupy", "{a}");
    assert_eq!(roles(&a), DEFAULT_ROLES);
    // A re-run started by someone without the terms: the run has the first actor's privileges,
    // but the one who started it is checked too.
    assert_denied(&s, &on(CUPY, BLACKSMITH, maintainer(), user("rando", 4242)), "terms_not_accepted");
    assert_denied(&s, &on(CUPY, BLACKSMITH, user("rando", 4242), maintainer()), "terms_not_accepted");
    // A renamed or re-registered login: the same login under another GitHub id.
    assert_denied(&s, &on(CUPY, BLACKSMITH, user("h-vetinari", 99999), maintainer()), "github_id_mismatch");
    assert_denied(&s, &on(CUPY, BLACKSMITH, maintainer(), user("h-vetinari", 99999)), "github_id_mismatch");

    // users: only the listed ones.
    let jk = user("jakirkham", 3019);
    assert_allowed(&s, &on(LIGHTGBM, GPU_LABEL, jk.clone(), jk.clone()), RESOURCE);
    assert_denied(&s, &on(LIGHTGBM, GPU_LABEL, maintainer(), maintainer()), "user_not_listed");
    assert_denied(&s, &on(LIGHTGBM, GPU_LABEL, jk.clone(), maintainer()), "user_not_listed");
}

#[test]
fn a_bot_passes_only_through_a_vouch_for_its_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let (s, cast) = setup(tmp.path());
    let webservices = bot("conda-forge-webservices[bot]", 91080706);
    let on = |sha: &str, actor: Value, triggering: Value| {
        with(job(CUPY, &[BLACKSMITH]), json!({"head_sha": sha, "actor": actor, "triggering_actor": triggering}))
    };

    // Without a vouch: a Bot account, a login ending in [bot], as the actor or as the one who
    // started a re-run.
    let bots = [webservices.clone(), user("pre-commit-ci[bot]", 66853113), bot("conda-forge-curator", 79913779)];
    for b in &bots {
        assert_denied(&s, &on(SHA, b.clone(), b.clone()), "bot_not_vouched");
    }
    assert_denied(&s, &on(SHA, maintainer(), webservices.clone()), "bot_not_vouched");
    assert_denied(&s, &on(SHA, webservices.clone(), maintainer()), "bot_not_vouched");
    // Also on a grant that names no users: a bot command is open to anyone on GitHub.
    let ungated = with(
        job(PROJECT, &[GPU_LABEL]),
        json!({"actor": webservices.clone(), "triggering_actor": webservices.clone()}),
    );
    assert_denied(&s, &ungated, "bot_not_vouched");

    // Only a requester (the bot that made the commit) may vouch; a malformed sha is refused.
    let vouch = |sha: &str, login: &str, id: u64| {
        json!({"project": CUPY, "head_sha": sha, "user": login, "github_id": id,
               "command": "@conda-forge-admin, please rerender",
               "evidence_url": "https://github.com/conda-forge/cupy-feedstock/pull/300#issuecomment-1"})
    };
    let size = s.log().size;
    let (status, body) = s.submit(&cast.alice, "alice-vouches", "job.vouched", vouch(SHA, "h-vetinari", 33001));
    assert_eq!(status, 403, "a reviewer may not vouch: {body}");
    let (status, body) =
        s.submit(&cast.bot, "bad-sha", "job.vouched", vouch(&SHA.to_ascii_uppercase(), "h-vetinari", 33001));
    assert_eq!(status, 400, "head_sha is 40 lowercase hex: {body}");
    assert_eq!(s.log().size, size);
    assert_denied(&s, &on(SHA, webservices.clone(), webservices.clone()), "bot_not_vouched");

    // The bot vouches that h-vetinari asked for the commit: the bot's job on it counts as
    // h-vetinari's.
    s.append(&cast.bot, "vouch-1", "job.vouched", vouch(SHA, "h-vetinari", 33001));
    let a = assert_allowed(&s, &on(SHA, webservices.clone(), webservices.clone()), BLACKSMITH);
    assert_eq!(roles(&a), DEFAULT_ROLES);
    assert_allowed(&s, &on(SHA, maintainer(), webservices.clone()), BLACKSMITH);
    assert_allowed(&s, &on(SHA, user("pre-commit-ci[bot]", 66853113), maintainer()), BLACKSMITH);
    // Not for another commit, nor for another project's job on the same commit: jakirkham is
    // listed on LIGHTGBM, but the vouch naming him is for CUPY.
    assert_denied(&s, &on(OTHER_SHA, webservices.clone(), webservices.clone()), "bot_not_vouched");
    s.append(&cast.bot, "vouch-jk", "job.vouched", vouch(THIRD_SHA, "jakirkham", 3019));
    assert_allowed(&s, &on(THIRD_SHA, webservices.clone(), webservices.clone()), BLACKSMITH);
    let elsewhere = with(
        job(LIGHTGBM, &[GPU_LABEL]),
        json!({"head_sha": THIRD_SHA, "actor": webservices.clone(), "triggering_actor": webservices.clone()}),
    );
    assert_denied(&s, &elsewhere, "bot_not_vouched");
    // A vouch for a user who did not accept the terms lets nobody in.
    s.append(&cast.bot, "vouch-2", "job.vouched", vouch(OTHER_SHA, "rando", 4242));
    assert_denied(&s, &on(OTHER_SHA, webservices.clone(), webservices.clone()), "bot_not_vouched");
}

#[test]
fn check_reads_a_label_by_the_same_rule() {
    let tmp = tempfile::tempdir().unwrap();
    let (s, _cast) = setup(tmp.path());
    let check = |project: &str, label: &str| s.cli(&["check", project, "--label", label]);
    let out = check(PROJECT, "Cirun-OpenStack-GPU-Large--2202229078-linux_64_cuda");
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{said}");
    assert!(said.contains(&format!("names resource \"{RESOURCE}\"")), "{said}");
    assert!(said.contains(&format!("allowed: {PROJECT} may use {RESOURCE}")), "{said}");
    // The gate and the CLI agree on a denial.
    let out = check("revoked-feedstock", GPU_LABEL);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("grant_revoked"));
    // A look-alike names nothing; a label with whitespace is malformed.
    let out = check(PROJECT, "cirun-openstack-gpu-largex");
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success() && said.contains("names no resource"), "{said}");
    let out = check(PROJECT, "cirun-openstack-gpu-large extra");
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success() && said.contains("malformed"), "{said}");
}

#[test]
fn malformed_questions_are_400() {
    let tmp = tempfile::tempdir().unwrap();
    let (s, _cast) = setup(tmp.path());
    let mut wrong_type = job(PROJECT, &[GPU_LABEL]);
    wrong_type["repository"] = json!(5);
    let mut labels_not_list = job(PROJECT, &[GPU_LABEL]);
    labels_not_list["labels"] = json!(GPU_LABEL);
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("not JSON", b"not json".to_vec()),
        ("truncated", b"{\"repository\": \"conda-forge/pytorch-cpu-feedstock\", \"labels\": [".to_vec()),
        ("repository not a string", serde_json::to_vec(&wrong_type).unwrap()),
        ("labels not a list", serde_json::to_vec(&labels_not_list).unwrap()),
        ("an array", b"[]".to_vec()),
    ];
    for (row, body) in bodies {
        let a = post_job(&s, body);
        assert_eq!(a.status, 400, "{row}: {}", a.text);
        assert!(a.content_type.starts_with("application/problem+json"), "{row}: {}", a.content_type);
    }
    // The well-formed question still answers.
    assert_allowed(&s, &job(PROJECT, &[GPU_LABEL]), RESOURCE);
}
