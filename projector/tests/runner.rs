//! The GitHub runner layer (SPEC.md section 13): the label rule, the job gate with every
//! reason, webhook metering (and that `check` accepts what it produces), the two new event
//! types, and when grants were last used.

mod common;

use common::*;
use ledger::statement::{format_rfc3339_ms, Statement};
use projector::limits::{GRANT_IDLE_DAYS_FLAG, JOB_LABELS_MAX, LABEL_BYTES_MAX, VOUCHES_PER_COMMIT_MAX};
use projector::runner::{label_base, FinishedJob, GateAnswer, GitHubUser, JobFacts, LabelMatch, Metering};
use projector::{GrantStatus, UnauthorizedJob};
use serde_json::{json, Value};

const ORG: &str = "conda-forge";
const GPU: &str = "cirun-openstack-gpu-large";
const NAMESPACE: &str = "namespace-profile-16cpu-on-linux-64";
const SHA: &str = "0123456789abcdef0123456789abcdef01234567";
const OTHER_SHA: &str = "89abcdef0123456789abcdef0123456789abcdef";
const UNVOUCHED_SHA: &str = "ffffffffffffffffffffffffffffffffffffffff";
const PYTORCH: &str = "pytorch-cpu-feedstock";
const LIGHTGBM: &str = "lightgbm-feedstock";
const ONNX: &str = "onnxruntime-feedstock";

fn labels(list: &[&str]) -> Vec<String> {
    list.iter().map(|l| l.to_string()).collect()
}

fn user(login: &str, id: u64) -> GitHubUser {
    GitHubUser { login: login.into(), id, kind: Some("User".into()) }
}

fn bot(login: &str, id: u64) -> GitHubUser {
    GitHubUser { login: login.into(), id, kind: Some("Bot".into()) }
}

/// A push to `conda-forge/<project>` on `label` by `actor`.
fn push(project: &str, label: &str, actor: GitHubUser) -> JobFacts {
    JobFacts {
        repository: format!("{ORG}/{project}"),
        labels: labels(&["self-hosted", label]),
        event: "push".into(),
        head_repository: Some(format!("{ORG}/{project}")),
        head_sha: SHA.into(),
        actor,
        triggering_actor: None,
    }
}

/// Resources: the standard `gpu` (2 approvals) and `cpu` (1), Cirun's GPU runner, Namespace's
/// profile and `bs` (terms `bs-tos-1`). Grants: pytorch on the Cirun GPU (anyone with the
/// default roles), lightgbm on `bs` (users who accepted the terms), onnxruntime on `cpu`
/// (`users` alice). alice (id 1) accepted `bs-tos-1`.
fn world() -> World {
    let mut w = World::standard();
    w.define_resource(GPU, 1);
    w.define_resource(NAMESPACE, 1);
    w.ok("admin", "resource.defined", json!({"resource": "bs", "provider": "blacksmith", "unit": "runner-minutes", "approvals_required": 1, "terms": "bs-tos-1"}));
    w.granted("r-pytorch", PYTORCH, GPU, json!({}), json!({}));
    w.granted("r-lightgbm", LIGHTGBM, "bs", json!({"users_from_json": "https://example.org/users.json"}), json!({}));
    w.granted("r-onnx", ONNX, "cpu", json!({"users": ["alice"]}), json!({}));
    w.ok("bot", "user.terms_accepted", json!({"user": "alice", "github_id": 1, "terms": "bs-tos-1"}));
    w.advance(MINUTE_MS);
    w
}

#[track_caller]
fn reason(w: &World, job: &JobFacts) -> String {
    let a = w.state.gate(ORG, job, w.now_ms);
    assert_eq!(a.allowed, a.reason == "ok", "{a:?}");
    a.reason
}

// ---- the label rule ----

#[test]
fn label_base_lowercases_and_cuts_suffixes_and_options() {
    let base = |l: &str| label_base(l);
    assert_eq!(base("cirun-openstack-gpu-large--123-linux_64").as_deref(), Some(GPU));
    assert_eq!(base("Cirun-OpenStack-GPU-Large").as_deref(), Some(GPU));
    assert_eq!(base("namespace-profile-16cpu-on-linux-64;container.privileged=true").as_deref(), Some(NAMESPACE));
    // Cut at whichever comes first.
    assert_eq!(base("a;b--c").as_deref(), Some("a"));
    assert_eq!(base("a--b;c").as_deref(), Some("a"));
    assert_eq!(base("a-b").as_deref(), Some("a-b"));
    assert_eq!(base("--123").as_deref(), Some(""));
    assert_eq!(base("").as_deref(), Some(""));
    // Malformed: whitespace, control characters, too long.
    for bad in ["gpu large", " gpu", "gpu\n", "\tgpu", "gpu\u{7}", "gpu\u{0}", "gpu\u{a0}x", "gpu\u{85}"] {
        assert_eq!(base(bad), None, "{bad:?}");
    }
    assert!(base(&"a".repeat(LABEL_BYTES_MAX)).is_some());
    assert_eq!(base(&"a".repeat(LABEL_BYTES_MAX + 1)), None);
    // Only ASCII is lowercased: the Kelvin sign does not become a `k`.
    assert_eq!(base("\u{212a}").as_deref(), Some("\u{212a}"));
}

#[test]
fn labels_name_a_resource_only_exactly() {
    let mut w = world();
    let m = |w: &World, list: &[&str]| w.state.resource_for_labels(&labels(list));
    let one = |r: &str| LabelMatch::Resource(r.to_string());
    assert_eq!(m(&w, &["cirun-openstack-gpu-large--123-linux_64"]), one(GPU));
    assert_eq!(m(&w, &["CIRUN-OPENSTACK-GPU-LARGE"]), one(GPU));
    assert_eq!(m(&w, &["namespace-profile-16cpu-on-linux-64;container.privileged=true"]), one(NAMESPACE));
    // One gated label among ungated ones names it; the same resource twice is one.
    assert_eq!(m(&w, &["ubuntu-latest", "self-hosted", "cirun-openstack-gpu-large--1-linux"]), one(GPU));
    assert_eq!(m(&w, &["cirun-openstack-gpu-large--1", "Cirun-OpenStack-GPU-Large--2"]), one(GPU));
    // Look-alikes, prefixes and extensions name nothing.
    for alike in [
        "cirun-openstack-gpu-large-x",
        "cirun-openstack-gpu",
        "xcirun-openstack-gpu-large",
        "cirun-openstack-gpu-large_",
        "cirun-openstack-gpu-larg\u{435}", // Cyrillic e
        "cirun-openstack-gpu-large\u{200b}",
        "ubuntu-latest",
    ] {
        assert_eq!(m(&w, &[alike]), LabelMatch::NoResource, "{alike:?}");
    }
    assert_eq!(m(&w, &[]), LabelMatch::NoResource);
    // Two resources: refused, whichever order.
    let several = LabelMatch::SeveralResources(vec![GPU.to_string(), "gpu".to_string()]);
    assert_eq!(m(&w, &["gpu", "cirun-openstack-gpu-large--9"]), several);
    assert_eq!(m(&w, &["cirun-openstack-gpu-large", "GPU"]), several);
    assert_eq!(several.reason(), Some("several_resources"));
    // One malformed label fails the whole job closed, even beside a gated one.
    for list in [vec!["gpu large"], vec![GPU, "ubuntu latest"], vec!["ubuntu-latest", "bad\u{1b}[0m"]] {
        let got = m(&w, &list);
        assert!(matches!(&got, LabelMatch::Malformed(_)), "{list:?}: {got:?}");
        assert_eq!(got.reason(), Some("malformed_label"));
    }
    let long = format!("{GPU}--{}", "x".repeat(LABEL_BYTES_MAX));
    let got = m(&w, &[&long]);
    assert!(matches!(&got, LabelMatch::Malformed(why) if why.contains("more than 256")), "{got:?}");
    // The number of labels is bounded.
    let many: Vec<String> = (0..JOB_LABELS_MAX).map(|i| format!("label-{i}")).collect();
    assert_eq!(w.state.resource_for_labels(&many), LabelMatch::NoResource);
    let too_many: Vec<String> = (0..=JOB_LABELS_MAX).map(|i| format!("label-{i}")).collect();
    assert!(matches!(w.state.resource_for_labels(&too_many), LabelMatch::Malformed(_)));
    assert_eq!(LabelMatch::NoResource.reason(), Some("no_resource"));
    assert_eq!(one(GPU).reason(), None);

    // A retired resource is still named: the access check says why it is closed.
    w.ok("admin", "resource.retired", json!({"resource": NAMESPACE}));
    assert_eq!(m(&w, &[NAMESPACE]), one(NAMESPACE));
    assert_eq!(reason(&w, &push("numpy-feedstock", NAMESPACE, user("alice", 1))), "resource_retired");
}

// ---- the job gate ----

#[test]
fn gate_allows_a_push_and_lists_the_roles() {
    let w = world();
    let a = w.state.gate(ORG, &push(PYTORCH, "cirun-openstack-gpu-large--77-linux_64", user("isuruf", 5)), w.now_ms);
    assert!(a.allowed, "{a:?}");
    assert_eq!((a.reason.as_str(), a.resource.as_deref()), ("ok", Some(GPU)));
    let grant = a.grant.as_ref().expect("the admitting grant");
    assert_eq!((grant.project.as_str(), grant.resource.as_str()), (PYTORCH, GPU));
    assert_eq!(a.roles, Some(vec!["admin".to_string(), "maintain".to_string(), "write".to_string()]));
    // workflow_dispatch too; the organisation and the owner compare without case.
    let mut job = push(PYTORCH, GPU, user("isuruf", 5));
    job.event = "workflow_dispatch".into();
    job.repository = format!("Conda-Forge/{PYTORCH}");
    assert!(w.state.gate("CONDA-FORGE", &job, w.now_ms).allowed);

    // The JSON: grant and roles only when there is something to say.
    let v = serde_json::to_value(&a).unwrap();
    assert_eq!(v["roles"], json!(["admin", "maintain", "write"]));
    let denied = w.state.gate(ORG, &push("numpy-feedstock", GPU, user("isuruf", 5)), w.now_ms);
    let v = serde_json::to_value(&denied).unwrap();
    assert_eq!(v, json!({"allowed": false, "reason": "no_request", "resource": GPU}));
    let back: GateAnswer = serde_json::from_value(v).unwrap();
    assert_eq!(back, denied);
}

#[test]
fn gate_lists_the_roles_a_grant_names() {
    let mut w = world();
    w.ok(
        "admin",
        "grant.issued",
        json!({"grant": "g-admins", "project": "numpy-feedstock", "resource": NAMESPACE, "pull_request": false, "roles": ["admin"]}),
    );
    let a = w.state.gate(ORG, &push("numpy-feedstock", NAMESPACE, user("ocefpaf", 7)), w.now_ms);
    assert!(a.allowed, "{a:?}");
    assert_eq!(a.roles, Some(vec!["admin".to_string()]));
    assert_eq!(a.grant.map(|g| g.grant), Some("g-admins".to_string()));
}

#[test]
fn gate_refuses_foreign_repositories_first() {
    let w = world();
    for repository in [
        format!("someone-else/{PYTORCH}"),
        format!("conda-forge-x/{PYTORCH}"),
        PYTORCH.to_string(),
        format!("{ORG}/{PYTORCH}/x"),
        format!("{ORG}/"),
        format!("/{PYTORCH}"),
        String::new(),
    ] {
        let mut job = push(PYTORCH, GPU, user("isuruf", 5));
        job.repository = repository.clone();
        // Even with labels and an event that would fail later.
        job.labels = labels(&["gpu large"]);
        job.event = "pull_request_target".into();
        let a = w.state.gate(ORG, &job, w.now_ms);
        assert_eq!(
            (a.allowed, a.reason.as_str(), a.resource.as_deref()),
            (false, "foreign_repository", None),
            "{repository:?}"
        );
    }
    // An empty organisation admits nothing.
    assert_eq!(w.state.gate("", &push(PYTORCH, GPU, user("isuruf", 5)), w.now_ms).reason, "foreign_repository");
}

#[test]
fn gate_needs_exactly_one_resource() {
    let w = world();
    let mut job = push(PYTORCH, GPU, user("isuruf", 5));
    job.labels = labels(&["ubuntu-latest"]);
    assert_eq!(reason(&w, &job), "no_resource");
    job.labels = labels(&[GPU, "gpu"]);
    assert_eq!(reason(&w, &job), "several_resources");
    job.labels = labels(&[GPU, "ubuntu\tlatest"]);
    assert_eq!(reason(&w, &job), "malformed_label");
    // Before the event is looked at.
    job.event = "issue_comment".into();
    assert_eq!(reason(&w, &job), "malformed_label");
}

#[test]
fn gate_allows_push_dispatch_and_same_repository_pull_requests_only() {
    let mut w = world();
    w.granted("r-numpy", "numpy-feedstock", GPU, json!({"pull_request": true}), json!({}));
    let pr = |head: Option<&str>| JobFacts {
        event: "pull_request".into(),
        head_repository: head.map(str::to_string),
        ..push("numpy-feedstock", GPU, user("isuruf", 5))
    };
    assert_eq!(reason(&w, &pr(Some("conda-forge/numpy-feedstock"))), "ok");
    assert_eq!(reason(&w, &pr(Some("Conda-Forge/NumPy-Feedstock"))), "ok");
    assert_eq!(reason(&w, &pr(Some("isuruf/numpy-feedstock"))), "fork_pull_request");
    assert_eq!(reason(&w, &pr(Some("conda-forge/scipy-feedstock"))), "fork_pull_request");
    // GitHub leaves no head repository on some fork runs: a fork, failing closed.
    assert_eq!(reason(&w, &pr(None)), "fork_pull_request");
    for event in [
        "pull_request_target",
        "workflow_run",
        "issue_comment",
        "schedule",
        "repository_dispatch",
        "Push",
        "",
        "release",
    ] {
        let mut job = push("numpy-feedstock", GPU, user("isuruf", 5));
        job.event = event.into();
        assert_eq!(reason(&w, &job), "event_not_allowed", "{event:?}");
    }
    // A same-repository pull request still needs a grant that allows pull requests.
    let mut job = push(PYTORCH, GPU, user("isuruf", 5));
    job.event = "pull_request".into();
    assert_eq!(reason(&w, &job), "pull_requests_not_granted");
}

#[test]
fn gate_needs_a_commit_id() {
    let w = world();
    let mut job = push(PYTORCH, GPU, user("isuruf", 5));
    job.head_sha = SHA.to_uppercase();
    assert_eq!(reason(&w, &job), "ok");
    for sha in ["", "0123", &SHA[..39], &format!("{SHA}0"), &SHA.replace('a', "g"), "main"] {
        job.head_sha = sha.to_string();
        assert_eq!(reason(&w, &job), "malformed_job", "{sha:?}");
    }
}

#[test]
fn gate_passes_the_access_checks_reasons_through() {
    let mut w = world();
    let who = || user("isuruf", 5);
    assert_eq!(reason(&w, &push("numpy-feedstock", GPU, who())), "no_request");
    assert_eq!(reason(&w, &push("PyTorch-cpu-feedstock", GPU, who())), "invalid_project_name");
    w.request("r-scipy", "scipy-feedstock", "gpu", json!({}));
    w.ok("rev1", "request.approved", json!({"request": "r-scipy"}));
    assert_eq!(reason(&w, &push("scipy-feedstock", "gpu", who())), "awaiting_approvals (1 of 2)");
    let grant = w.state.project_grants(PYTORCH, w.now_ms)[0].grant.clone();
    w.ok("rev1", "grant.revoked", json!({"grant": grant, "reason": "misuse"}));
    let a = w.state.gate(ORG, &push(PYTORCH, GPU, who()), w.now_ms);
    assert_eq!((a.reason.as_str(), a.grant.map(|g| g.grant)), ("grant_revoked", Some(grant)));
    assert_eq!(a.roles, None);
}

#[test]
fn gate_checks_the_actor_and_the_triggering_actor() {
    let w = world();
    // users: alice only.
    assert_eq!(reason(&w, &push(ONNX, "cpu", user("alice", 1))), "ok");
    assert_eq!(reason(&w, &push(ONNX, "cpu", user("mallory", 9))), "user_not_listed");
    let mut rerun = push(ONNX, "cpu", user("alice", 1));
    rerun.triggering_actor = Some(user("mallory", 9));
    assert_eq!(reason(&w, &rerun), "user_not_listed");

    // users_from_json: alice accepted the terms; a re-run by carol, who did not, is refused.
    assert_eq!(reason(&w, &push(LIGHTGBM, "bs", user("alice", 1))), "ok");
    let mut rerun = push(LIGHTGBM, "bs", user("alice", 1));
    rerun.triggering_actor = Some(user("carol", 3));
    assert_eq!(reason(&w, &rerun), "terms_not_accepted");
    rerun.triggering_actor = Some(user("ALICE", 1));
    assert_eq!(reason(&w, &rerun), "ok");
    // The other way round: the first actor decides first.
    let mut rerun = push(LIGHTGBM, "bs", user("carol", 3));
    rerun.triggering_actor = Some(user("alice", 1));
    assert_eq!(reason(&w, &rerun), "terms_not_accepted");
    // A renamed or re-registered login with another GitHub id does not inherit alice's terms.
    assert_eq!(reason(&w, &push(LIGHTGBM, "bs", user("alice", 1001))), "github_id_mismatch");
}

#[test]
fn gate_admits_a_bot_only_through_a_vouch_whose_user_passes() {
    let mut w = world();
    let webservices = || bot("conda-forge-webservices[bot]", 41898282);
    let job = |project: &str, resource: &str| push(project, resource, webservices());
    // No vouch: refused, on any grant (a grant without users too).
    assert_eq!(reason(&w, &job(LIGHTGBM, "bs")), "bot_not_vouched");
    assert_eq!(reason(&w, &job(PYTORCH, GPU)), "bot_not_vouched");
    // A project without access says so, not that the bot lacks a vouch.
    assert_eq!(reason(&w, &job("numpy-feedstock", GPU)), "no_request");

    // A vouch for another commit, or for the same commit of another project, does not count.
    w.ok("bot", "job.vouched", json!({"project": LIGHTGBM, "head_sha": OTHER_SHA, "user": "alice", "github_id": 1}));
    w.ok("bot", "job.vouched", json!({"project": PYTORCH, "head_sha": SHA, "user": "alice", "github_id": 1}));
    assert_eq!(reason(&w, &job(LIGHTGBM, "bs")), "bot_not_vouched");
    // Now pytorch's commit is vouched for (and alice passes a grant without users).
    let a = w.state.gate(ORG, &job(PYTORCH, GPU), w.now_ms);
    assert!(a.allowed, "{a:?}");

    // A vouch whose user did not accept the terms, or with another GitHub id, does not pass.
    w.ok("bot", "job.vouched", json!({"project": LIGHTGBM, "head_sha": SHA, "user": "carol", "github_id": 3}));
    assert_eq!(reason(&w, &job(LIGHTGBM, "bs")), "bot_not_vouched");
    w.ok("bot", "job.vouched", json!({"project": LIGHTGBM, "head_sha": SHA, "user": "alice", "github_id": 1001}));
    assert_eq!(reason(&w, &job(LIGHTGBM, "bs")), "bot_not_vouched");
    // Alice's own vouch (her id corrected by a second vouch for her) admits the bot's job.
    w.ok("bot", "job.vouched", json!({"project": LIGHTGBM, "head_sha": SHA, "user": "alice", "github_id": 1, "command": "@conda-forge-admin, please rerender", "evidence_url": "https://github.com/conda-forge/lightgbm-feedstock/issues/1"}));
    let a = w.state.gate(ORG, &job(LIGHTGBM, "bs"), w.now_ms);
    assert!(a.allowed, "{a:?}");
    assert_eq!(a.grant.map(|g| g.project), Some(LIGHTGBM.to_string()));
    // The commit id compares lowercased.
    let mut upper = job(LIGHTGBM, "bs");
    upper.head_sha = SHA.to_uppercase();
    assert_eq!(reason(&w, &upper), "ok");

    // A bot is a bot by its type or by its login.
    let mut by_login = job(ONNX, "cpu");
    by_login.actor = GitHubUser { login: "regro-cf-autotick-bot[BOT]".into(), id: 7, kind: None };
    assert_eq!(reason(&w, &by_login), "bot_not_vouched");
    let mut by_type = job(ONNX, "cpu");
    by_type.actor = GitHubUser { login: "alice".into(), id: 1, kind: Some("Bot".into()) };
    assert_eq!(reason(&w, &by_type), "bot_not_vouched");
    // ... also as the triggering actor of a user's run.
    let mut rerun = push(LIGHTGBM, "bs", user("alice", 1));
    rerun.head_sha = UNVOUCHED_SHA.into();
    rerun.triggering_actor = Some(webservices());
    assert_eq!(reason(&w, &rerun), "bot_not_vouched");
}

#[test]
fn job_facts_decode_what_providers_send() {
    let facts: JobFacts = serde_json::from_value(json!({
        "repository": "conda-forge/pytorch-cpu-feedstock", "labels": ["cirun-openstack-gpu-large--1-linux"],
        "event": "push", "head_repository": "conda-forge/pytorch-cpu-feedstock", "head_sha": SHA,
        "actor": {"login": "isuruf", "id": 5, "type": "User", "node_id": "MDQ6VXNlcjU=", "site_admin": false},
        "run_id": 123, "workflow": "build"
    }))
    .unwrap();
    assert_eq!((facts.actor.kind.as_deref(), facts.triggering_actor), (Some("User"), None));
    let minimal: JobFacts = serde_json::from_value(json!({
        "repository": "conda-forge/x", "labels": [], "event": "push", "head_sha": SHA,
        "actor": {"login": "x", "id": 1}
    }))
    .unwrap();
    assert_eq!((minimal.head_repository, minimal.actor.kind), (None, None));
}

// ---- metering ----

fn finished(project: &str, label: &str, started_ms: i64, completed_ms: i64, job_id: u64) -> FinishedJob {
    FinishedJob {
        repository_id: 4242,
        owner: ORG.into(),
        project: project.into(),
        job_id,
        run_attempt: 1,
        labels: labels(&["self-hosted", label]),
        runner_name: Some("cirun-runner-1".into()),
        conclusion: Some("success".into()),
        started_at: format_rfc3339_ms(started_ms),
        completed_at: format_rfc3339_ms(completed_ms),
        html_url: Some(format!("https://github.com/{ORG}/{project}/actions/runs/1/job/{job_id}")),
    }
}

#[track_caller]
fn statement(m: Metering) -> Statement {
    match m {
        Metering::Statement(st) => st,
        other => panic!("expected a statement, got {other:?}"),
    }
}

/// Meters `job` and appends the statement as the automation key; `check` must accept it.
#[track_caller]
fn meter_and_log(w: &mut World, job: &FinishedJob) -> (Statement, u64) {
    let st = statement(w.state.meter(ORG, job));
    let signers = w.signer("automation");
    let seq = w.submit(st.clone(), signers).unwrap_or_else(|r| panic!("check refused {}: {r}", st.kind));
    (st, seq)
}

fn used(w: &World, project: &str) -> u64 {
    w.state.project_grants(project, w.now_ms).iter().map(|g| g.used).sum()
}

#[test]
fn meter_reports_granted_jobs_in_whole_minutes_rounded_up() {
    let mut w = world();
    w.advance(60 * MINUTE_MS);
    let end = w.now_ms;
    let mut expect = 0;
    for (job_id, seconds, minutes) in [(1u64, 0i64, 1u64), (2, 1, 1), (3, 60, 1), (4, 61, 2), (5, 3600, 60)] {
        let job = finished(PYTORCH, "cirun-openstack-gpu-large--9-linux_64", end - seconds * 1000, end, job_id);
        let (st, _) = meter_and_log(&mut w, &job);
        assert_eq!(st.kind, "usage.reported");
        assert_eq!((st.actor.as_str(), st.ledger.as_str()), ("automation", ORIGIN));
        assert_eq!(st.id, format!("gh:4242:{job_id}:1"));
        assert_eq!(st.issued_at, format_rfc3339_ms(end));
        assert_eq!(
            st.data,
            json!({"usage": st.id, "project": PYTORCH, "resource": GPU, "amount": minutes,
                "started_at": format_rfc3339_ms(end - seconds * 1000), "ended_at": format_rfc3339_ms(end),
                "run_url": format!("https://github.com/conda-forge/{PYTORCH}/actions/runs/1/job/{job_id}")})
        );
        expect += minutes;
        assert_eq!(used(&w, PYTORCH), expect, "{seconds} s");
    }
    // A re-run is another job; the same attempt is the same usage.
    let mut again = finished(PYTORCH, GPU, end - 1000, end, 5);
    again.run_attempt = 2;
    let (st, _) = meter_and_log(&mut w, &again);
    assert_eq!(st.id, "gh:4242:5:2");
    assert_eq!(serialized(&w.replay()), serialized(&w.state));
}

#[test]
fn meter_reports_seconds_and_leaves_other_units_alone() {
    let mut w = world();
    w.ok("admin", "resource.defined", json!({"resource": "depot-ubuntu-24.04-8", "provider": "depot", "unit": "runner-seconds", "approvals_required": 1}));
    w.ok(
        "admin",
        "resource.defined",
        json!({"resource": "cloud-credits", "provider": "aws", "unit": "usd-cents", "approvals_required": 1}),
    );
    w.granted("r-depot", PYTORCH, "depot-ubuntu-24.04-8", json!({}), json!({}));
    w.granted("r-cloud", PYTORCH, "cloud-credits", json!({}), json!({}));
    w.advance(60 * MINUTE_MS);
    let end = w.now_ms;
    for (job_id, ms, seconds) in [(1u64, 0i64, 1u64), (2, 1500, 2), (3, 61_000, 61)] {
        let (st, _) = {
            let job = finished(PYTORCH, "depot-ubuntu-24.04-8", end - ms, end, job_id);
            meter_and_log(&mut w, &job)
        };
        assert_eq!(st.data["amount"], json!(seconds), "{ms} ms");
    }
    let job = finished(PYTORCH, "cloud-credits", end - 1000, end, 9);
    assert_eq!(w.state.meter(ORG, &job), Metering::Ignored("unit_not_metered"));
    // Cross-access is recorded whatever the unit: a project without a grant on it.
    let (st, _) = {
        let job = finished("numpy-feedstock", "cloud-credits", end - 1000, end, 10);
        meter_and_log(&mut w, &job)
    };
    assert_eq!((st.kind.as_str(), &st.data["reason"]), ("usage.unauthorized", &json!("no_request")));
}

#[test]
fn meter_ignores_what_is_not_a_metered_job() {
    let mut w = world();
    w.advance(60 * MINUTE_MS);
    let end = w.now_ms;
    let base = || finished(PYTORCH, GPU, end - MINUTE_MS, end, 1);
    let cases: Vec<(FinishedJob, &str)> = vec![
        (FinishedJob { owner: "someone-else".into(), ..base() }, "foreign_repository"),
        (FinishedJob { owner: "conda-forge-x".into(), ..base() }, "foreign_repository"),
        (FinishedJob { runner_name: None, ..base() }, "no_runner"),
        (FinishedJob { runner_name: Some(" ".into()), ..base() }, "no_runner"),
        (FinishedJob { conclusion: Some("skipped".into()), ..base() }, "skipped"),
        (FinishedJob { conclusion: None, ..base() }, "no_conclusion"),
        (FinishedJob { labels: labels(&["ubuntu-latest"]), ..base() }, "no_resource"),
        (FinishedJob { labels: labels(&[GPU, "gpu"]), ..base() }, "several_resources"),
        (FinishedJob { labels: labels(&[GPU, "a b"]), ..base() }, "malformed_label"),
        (FinishedJob { project: "PyTorch-cpu-feedstock".into(), ..base() }, "invalid_project_name"),
        (FinishedJob { started_at: "yesterday".into(), ..base() }, "malformed_time"),
        (FinishedJob { completed_at: String::new(), ..base() }, "malformed_time"),
        (FinishedJob { completed_at: format_rfc3339_ms(end - 2 * MINUTE_MS), ..base() }, "malformed_time"),
    ];
    for (job, why) in cases {
        assert_eq!(w.state.meter(ORG, &job), Metering::Ignored(why), "{job:?}");
    }
    assert_eq!(w.state.meter("", &base()), Metering::Ignored("foreign_repository"));
    // Owner compared without case; failures and cancellations are metered.
    for conclusion in ["failure", "cancelled", "timed_out"] {
        let job = FinishedJob { owner: "Conda-Forge".into(), conclusion: Some(conclusion.into()), ..base() };
        assert!(matches!(w.state.meter(ORG, &job), Metering::Statement(_)), "{conclusion}");
    }
}

#[test]
fn meter_records_cross_access_with_the_reason_at_the_jobs_start() {
    let mut w = world();
    w.advance(60 * MINUTE_MS);
    let t = w.now_ms;
    // No request at all.
    let (st, seq) = {
        let job = finished("numpy-feedstock", GPU, t - 10 * MINUTE_MS, t, 1);
        meter_and_log(&mut w, &job)
    };
    assert_eq!(st.kind, "usage.unauthorized");
    assert_eq!(
        st.data,
        json!({"usage": "gh:4242:1:1", "project": "numpy-feedstock", "resource": GPU, "reason": "no_request",
            "started_at": format_rfc3339_ms(t - 10 * MINUTE_MS), "ended_at": format_rfc3339_ms(t),
            "run_url": format!("https://github.com/conda-forge/numpy-feedstock/actions/runs/1/job/1")})
    );
    assert_eq!(used(&w, "numpy-feedstock"), 0);
    // Metered again (a redelivery): already recorded, said so rather than re-worded.
    assert_eq!(
        w.state.meter(ORG, &finished("numpy-feedstock", GPU, t - 10 * MINUTE_MS, t, 1)),
        Metering::AlreadyRecorded { seq }
    );

    // Awaiting approvals.
    w.request("r-scipy", "scipy-feedstock", "gpu", json!({}));
    w.ok("rev1", "request.approved", json!({"request": "r-scipy"}));
    w.advance(MINUTE_MS);
    let t = w.now_ms;
    let (st, _) = {
        let job = finished("scipy-feedstock", "gpu", t - MINUTE_MS, t, 2);
        meter_and_log(&mut w, &job)
    };
    assert_eq!(st.data["reason"], "awaiting_approvals (1 of 2)");

    // A job that started before its project's grant was issued ran without it.
    let before_grant = w.now_ms - 30 * MINUTE_MS;
    w.ok("rev2", "request.approved", json!({"request": "r-scipy"}));
    w.automate();
    w.advance(MINUTE_MS);
    let (st, _) = {
        let job = finished("scipy-feedstock", "gpu", before_grant, w.now_ms, 3);
        meter_and_log(&mut w, &job)
    };
    assert_eq!((st.kind.as_str(), &st.data["reason"]), ("usage.unauthorized", &json!("usage_outside_grant")));
    // ... while one that started since is billed.
    let (st, _) = {
        let job = finished("scipy-feedstock", "gpu", w.now_ms - 1000, w.now_ms, 4);
        meter_and_log(&mut w, &job)
    };
    assert_eq!(st.kind, "usage.reported");

    // Revoked before the job started.
    let grant = w.state.project_grants(PYTORCH, w.now_ms)[0].grant.clone();
    w.ok("rev1", "grant.revoked", json!({"grant": grant, "reason": "misuse"}));
    w.advance(MINUTE_MS);
    let (st, _) = {
        let job = finished(PYTORCH, GPU, w.now_ms - 1000, w.now_ms, 5);
        meter_and_log(&mut w, &job)
    };
    assert_eq!(st.data["reason"], "grant_revoked");

    // A grant that names its users does not make the project's job unauthorized: metering
    // asks whether the project held a grant, not who triggered the job.
    let (st, _) = {
        let job = finished(ONNX, "cpu", w.now_ms - 1000, w.now_ms, 6);
        meter_and_log(&mut w, &job)
    };
    assert_eq!(st.kind, "usage.reported");

    // The public list, newest first, filtered by exact names.
    let jobs = w.state.unauthorized_jobs(None, None);
    let listed: Vec<(&str, &str)> = jobs.iter().map(|j| (j.usage.as_str(), j.reason.as_str())).collect();
    assert_eq!(
        listed,
        [
            ("gh:4242:5:1", "grant_revoked"),
            ("gh:4242:3:1", "usage_outside_grant"),
            ("gh:4242:2:1", "awaiting_approvals (1 of 2)"),
            ("gh:4242:1:1", "no_request")
        ]
    );
    assert!(jobs.windows(2).all(|p| p[0].seq > p[1].seq));
    assert_eq!(
        w.state.unauthorized_jobs(Some("numpy-feedstock"), None),
        [UnauthorizedJob {
            seq,
            usage: "gh:4242:1:1".into(),
            project: "numpy-feedstock".into(),
            resource: GPU.into(),
            started_at: format_rfc3339_ms(t - 11 * MINUTE_MS),
            ended_at: format_rfc3339_ms(t - MINUTE_MS),
            reason: "no_request".into(),
            run_url: Some("https://github.com/conda-forge/numpy-feedstock/actions/runs/1/job/1".into()),
        }]
    );
    assert_eq!(w.state.unauthorized_jobs(Some("scipy-feedstock"), Some("gpu")).len(), 2);
    assert!(w.state.unauthorized_jobs(Some("scipy-feedstock"), Some(GPU)).is_empty());
    assert!(w.state.unauthorized_jobs(Some("Numpy-feedstock"), None).is_empty());
    assert_eq!(serialized(&w.replay()), serialized(&w.state));
}

#[test]
fn a_job_that_started_under_a_grant_is_billed_to_it_after_the_grant_ends() {
    let mut w = world();
    let g =
        w.granted("r-jax", "jaxlib-feedstock", "cpu", json!({"credits": 100, "days": 1}), json!({"pool": "qs-gpu"}));
    w.advance(10 * MINUTE_MS);
    let started = w.now_ms;
    w.advance(MINUTE_MS);
    w.ok("rev1", "grant.revoked", json!({"grant": g, "reason": "moved to another runner"}));
    w.advance(30 * MINUTE_MS);
    let job = finished("jaxlib-feedstock", "cpu", started, w.now_ms, 1);
    let (st, _) = meter_and_log(&mut w, &job);
    assert_eq!((st.kind.as_str(), &st.data["amount"]), ("usage.reported", &json!(31)));
    let view = &w.state.project_grants("jaxlib-feedstock", w.now_ms)[0];
    assert_eq!((&view.status, view.used), (&GrantStatus::Revoked, 31));
    let pool = &w.state.sponsor_usage("quansight", None, None).unwrap().pools[0];
    assert_eq!(pool.used, 31);
    // Deterministic: the same job gives the same statement, byte for byte; the log's id
    // index answers the redelivery. A report of it under another id is refused by check.
    assert_eq!(statement(w.state.meter(ORG, &job)), st);
    assert_eq!(statement(w.state.meter(ORG, &job.clone())).to_payload(), st.to_payload());
    let mut again = st.clone();
    again.id = "another-id".into();
    let signers = w.signer("automation");
    assert_eq!(w.submit(again, signers).unwrap_err().code, "usage_duplicate");
    // A job that started after the revocation was not under it.
    let (st, _) = {
        let job = finished("jaxlib-feedstock", "cpu", w.now_ms - 1000, w.now_ms, 2);
        meter_and_log(&mut w, &job)
    };
    assert_eq!((st.kind.as_str(), &st.data["reason"]), ("usage.unauthorized", &json!("grant_revoked")));

    // Exhaustion and expiry end a grant for jobs that start later, not for running ones.
    let g2 = w.granted("r-jax-2", "jaxlib-feedstock", "cpu", json!({"credits": 10, "days": 1}), json!({}));
    w.advance(MINUTE_MS);
    let before_exhaustion = w.now_ms;
    w.advance(15 * MINUTE_MS);
    let (st, _) = {
        let job = finished("jaxlib-feedstock", "cpu", w.now_ms - 10 * MINUTE_MS + 1, w.now_ms, 3);
        meter_and_log(&mut w, &job)
    };
    assert_eq!(st.data["amount"], json!(10));
    w.advance(MINUTE_MS);
    let (st, _) = {
        let job = finished("jaxlib-feedstock", "cpu", w.now_ms - 1000, w.now_ms, 4);
        meter_and_log(&mut w, &job)
    };
    assert_eq!((st.kind.as_str(), &st.data["reason"]), ("usage.unauthorized", &json!("grant_exhausted")));
    let (st, _) = {
        let job = finished("jaxlib-feedstock", "cpu", before_exhaustion, w.now_ms, 5);
        meter_and_log(&mut w, &job)
    };
    assert_eq!((st.kind.as_str(), &st.data["amount"]), ("usage.reported", &json!(16)));
    w.automate();
    let view = w.state.project_grants("jaxlib-feedstock", w.now_ms).into_iter().find(|v| v.grant == g2).unwrap();
    assert_eq!((view.status, view.used), (GrantStatus::Exhausted, 26));

    w.granted("r-optax", "optax-feedstock", "cpu", json!({"days": 1}), json!({}));
    let expires_ms = w.now_ms + DAY_MS;
    w.advance(DAY_MS + 10 * MINUTE_MS);
    w.automate();
    assert_eq!(w.state.project_grants("optax-feedstock", w.now_ms)[0].status, GrantStatus::Expired);
    let (st, _) = {
        let job = finished("optax-feedstock", "cpu", expires_ms - MINUTE_MS, w.now_ms, 6);
        meter_and_log(&mut w, &job)
    };
    assert_eq!((st.kind.as_str(), &st.data["amount"]), ("usage.reported", &json!(11)));
    let (st, _) = {
        let job = finished("optax-feedstock", "cpu", expires_ms, w.now_ms, 7);
        meter_and_log(&mut w, &job)
    };
    assert_eq!((st.kind.as_str(), &st.data["reason"]), ("usage.unauthorized", &json!("grant_expired")));
    assert_eq!(serialized(&w.replay()), serialized(&w.state));
}

#[test]
fn every_metered_statement_is_accepted_by_check() {
    // Jobs of every kind against grants in every state, each metered and then appended.
    let mut w = world();
    w.granted("r-exp", "expiring-feedstock", "cpu", json!({"days": 1}), json!({}));
    w.granted("r-small", "small-feedstock", "cpu", json!({"credits": 3}), json!({}));
    let mut job_id = 0u64;
    let mut kinds = std::collections::BTreeMap::new();
    for step in 0..40i64 {
        w.advance(step * 7 * MINUTE_MS);
        for project in [PYTORCH, LIGHTGBM, ONNX, "numpy-feedstock", "expiring-feedstock", "small-feedstock"] {
            for label in [GPU, "bs", "cpu", "gpu"] {
                for started_ago in [1, 30, 400, 3000] {
                    job_id += 1;
                    let job = finished(project, label, w.now_ms - started_ago * MINUTE_MS, w.now_ms, job_id);
                    if let Metering::Statement(_) = w.state.meter(ORG, &job) {
                        let (st, _) = meter_and_log(&mut w, &job);
                        *kinds.entry(st.kind).or_insert(0) += 1;
                    }
                }
            }
        }
        if step == 20 {
            let g = w.state.project_grants(PYTORCH, w.now_ms)[0].grant.clone();
            w.ok("admin", "grant.revoked", json!({"grant": g, "reason": "r"}));
        }
        w.automate();
    }
    assert!(kinds["usage.reported"] > 100 && kinds["usage.unauthorized"] > 100, "{kinds:?}");
    assert_eq!(serialized(&w.replay()), serialized(&w.state));
}

// ---- the new event types ----

fn unauthorized(usage: &str, project: &str, started_ms: i64, ended_ms: i64) -> Value {
    json!({"usage": usage, "project": project, "resource": GPU, "started_at": format_rfc3339_ms(started_ms),
        "ended_at": format_rfc3339_ms(ended_ms), "reason": "no_request"})
}

#[test]
fn usage_unauthorized_is_the_automation_keys_and_proves_itself() {
    let mut w = world();
    w.advance(60 * MINUTE_MS);
    let t = w.now_ms;
    let data = unauthorized("job-1", "numpy-feedstock", t - MINUTE_MS, t);
    for actor in ["meter", "admin", "bot"] {
        w.err(actor, "usage.unauthorized", data.clone(), "role_required");
    }
    let seq = w.ok("automation", "usage.unauthorized", data.clone());
    assert_eq!(w.state.unauthorized_jobs(None, None)[0].seq, seq);
    // Once per usage id: again, or as a usage report.
    w.err("automation", "usage.unauthorized", data, "usage_duplicate");
    let report = w.usage_data_at("job-1", PYTORCH, GPU, 1, t - MINUTE_MS, t);
    w.err("meter", "usage.reported", report.clone(), "usage_duplicate");
    w.err("automation", "usage.reported", report, "usage_duplicate");
    // A usage id already reported cannot be called unauthorized.
    w.usage("job-2", PYTORCH, GPU, 1).unwrap();
    w.err("automation", "usage.unauthorized", unauthorized("job-2", PYTORCH, t - MINUTE_MS, t), "usage_duplicate");
    // The automation key meters webhooks as usage.reported too.
    let report = w.usage_data_at("job-3", PYTORCH, GPU, 4, t - MINUTE_MS, t);
    w.ok("automation", "usage.reported", report);
    // A job that ran under a grant is not cross-access.
    let r =
        w.err("automation", "usage.unauthorized", unauthorized("job-4", PYTORCH, t - MINUTE_MS, t), "usage_granted");
    assert!(r.message.contains("held grant"), "{r}");
    // Before the grant began it was.
    let issued = w.state.project_grants(PYTORCH, w.now_ms)[0].history[0].at.clone();
    let issued_ms = ledger::statement::parse_rfc3339_ms(&issued).unwrap();
    w.ok("automation", "usage.unauthorized", unauthorized("job-5", PYTORCH, issued_ms - 1, t));
    w.err("automation", "usage.unauthorized", unauthorized("job-6", PYTORCH, issued_ms, t), "usage_granted");

    // Data: strict.
    let mut extra = unauthorized("job-7", "numpy-feedstock", t - MINUTE_MS, t);
    extra["amount"] = json!(1);
    w.err("automation", "usage.unauthorized", extra, "malformed_data");
    let mut no_reason = unauthorized("job-7", "numpy-feedstock", t - MINUTE_MS, t);
    no_reason["reason"] = json!(" ");
    w.err("automation", "usage.unauthorized", no_reason, "malformed_data");
    let mut missing = unauthorized("job-7", "numpy-feedstock", t - MINUTE_MS, t);
    missing.as_object_mut().unwrap().remove("reason");
    w.err("automation", "usage.unauthorized", missing, "malformed_data");
    w.err("automation", "usage.unauthorized", unauthorized("job-7", "numpy-feedstock", t, t - 1), "malformed_data");
    w.err("automation", "usage.unauthorized", unauthorized("job 7", "numpy-feedstock", t - 1, t), "malformed_data");
    w.err("automation", "usage.unauthorized", unauthorized("job-7", "NumPy", t - 1, t), "invalid_project_name");
    let mut other = unauthorized("job-7", "numpy-feedstock", t - 1, t);
    other["resource"] = json!("nope");
    w.err("automation", "usage.unauthorized", other, "unknown_resource");
    let mut bad_time = unauthorized("job-7", "numpy-feedstock", t - 1, t);
    bad_time["started_at"] = json!("soon");
    w.err("automation", "usage.unauthorized", bad_time, "malformed_data");
    let mut with_url = unauthorized("job-7", "numpy-feedstock", t - 1, t);
    with_url["run_url"] = json!("https://github.com/conda-forge/numpy-feedstock/actions/runs/7");
    w.ok("automation", "usage.unauthorized", with_url);
    assert_eq!(serialized(&w.replay()), serialized(&w.state));
}

fn vouch(project: &str, sha: &str, user: &str, github_id: u64) -> Value {
    json!({"project": project, "head_sha": sha, "user": user, "github_id": github_id})
}

#[test]
fn job_vouched_is_the_requesters_with_a_strict_commit_id() {
    let mut w = world();
    for actor in ["admin", "meter", "automation", "rev1"] {
        w.err(actor, "job.vouched", vouch(PYTORCH, SHA, "alice", 1), "role_required");
    }
    w.ok("bot", "job.vouched", vouch(PYTORCH, SHA, "alice", 1));
    for sha in [&SHA.to_uppercase(), &SHA[..39], &format!("{SHA}0"), &SHA.replace('a', "g"), ""] {
        w.err("bot", "job.vouched", vouch(PYTORCH, sha, "alice", 1), "malformed_data");
    }
    w.err("bot", "job.vouched", vouch("PyTorch", SHA, "alice", 1), "invalid_project_name");
    w.err("bot", "job.vouched", vouch(PYTORCH, SHA, "a b", 1), "malformed_data");
    w.err("bot", "job.vouched", vouch(PYTORCH, SHA, "webservices[bot]", 1), "malformed_data");
    w.err("bot", "job.vouched", vouch(PYTORCH, SHA, "alice", 0), "malformed_data");
    let mut extra = vouch(PYTORCH, SHA, "alice", 1);
    extra["pull_request"] = json!(7);
    w.err("bot", "job.vouched", extra, "malformed_data");
    let mut missing = vouch(PYTORCH, SHA, "alice", 1);
    missing.as_object_mut().unwrap().remove("github_id");
    w.err("bot", "job.vouched", missing, "malformed_data");
    let mut long = vouch(PYTORCH, SHA, "alice", 1);
    long["command"] = json!("x".repeat(projector::limits::TEXT_BYTES_MAX + 1));
    w.err("bot", "job.vouched", long, "malformed_data");

    // A commit holds a bounded number of vouches; a user vouched again replaces theirs.
    for i in 1..VOUCHES_PER_COMMIT_MAX {
        w.ok("bot", "job.vouched", vouch(LIGHTGBM, SHA, &format!("user{i}"), i as u64 + 100));
    }
    w.ok("bot", "job.vouched", vouch(LIGHTGBM, SHA, "carol", 3));
    let r = w.err("bot", "job.vouched", vouch(LIGHTGBM, SHA, "dave", 4), "too_many_vouches");
    assert!(r.message.contains(SHA), "{r}");
    w.ok("bot", "job.vouched", vouch(LIGHTGBM, SHA, "Carol", 3));
    w.ok("bot", "job.vouched", vouch(LIGHTGBM, OTHER_SHA, "dave", 4));
    assert_eq!(reason(&w, &push(LIGHTGBM, "bs", bot("webservices[bot]", 2))), "bot_not_vouched");
    // carol's replaced vouch now names alice's id under carol's login: still not alice.
    w.ok("bot", "job.vouched", vouch(LIGHTGBM, SHA, "carol", 1));
    assert_eq!(reason(&w, &push(LIGHTGBM, "bs", bot("webservices[bot]", 2))), "bot_not_vouched");
    assert_eq!(serialized(&w.replay()), serialized(&w.state));
}

// ---- when grants were last used ----

#[test]
fn grants_record_their_last_use_and_idle_ones_are_listed() {
    let mut w = world();
    assert_eq!(GRANT_IDLE_DAYS_FLAG, 30);
    let issued_ms = w.now_ms;
    let g = w.granted("r-jax", "jaxlib-feedstock", "cpu", json!({}), json!({}));
    let view =
        |w: &World| w.state.project_grants("jaxlib-feedstock", w.now_ms).into_iter().find(|v| v.grant == g).unwrap();
    assert_eq!((view(&w).last_used_at, view(&w).idle_since), (None, format_rfc3339_ms(issued_ms)));

    w.advance(60 * MINUTE_MS);
    let ended = w.now_ms - 10 * MINUTE_MS;
    let data = w.usage_data_at("j1", "jaxlib-feedstock", "cpu", 5, ended - MINUTE_MS, ended);
    w.ok("meter", "usage.reported", data);
    assert_eq!(view(&w).last_used_at, Some(format_rfc3339_ms(ended)));
    assert_eq!(view(&w).idle_since, format_rfc3339_ms(ended));
    // A report of an older job does not move it back.
    let data = w.usage_data_at("j2", "jaxlib-feedstock", "cpu", 5, ended - 30 * MINUTE_MS, ended - 20 * MINUTE_MS);
    w.ok("meter", "usage.reported", data);
    assert_eq!(view(&w).last_used_at, Some(format_rfc3339_ms(ended)));

    let idle = |w: &World, days: u64| -> Vec<String> {
        w.state
            .allocations_unused(None, None, days, w.now_ms)
            .resources
            .into_iter()
            .flat_map(|r| r.grants)
            .map(|g| g.project)
            .collect()
    };
    // Right after their use nothing is 30 days idle; 0 days lists every active grant.
    assert!(idle(&w, 30).is_empty());
    assert_eq!(
        idle(&w, 0).len(),
        w.state.allocations(None, None, w.now_ms).resources.iter().map(|r| r.grants.len()).sum::<usize>()
    );
    // 30 days after issue, the never-used grants are idle; jaxlib was used an hour later.
    w.now_ms = issued_ms + 30 * DAY_MS;
    let mut never_used = idle(&w, 30);
    never_used.sort();
    assert_eq!(never_used, [LIGHTGBM, ONNX, PYTORCH]);
    // Exactly 30 days after its last use, jaxlib is idle too (at least that long).
    w.now_ms = ended + 30 * DAY_MS - 1;
    assert!(!idle(&w, 30).contains(&"jaxlib-feedstock".to_string()));
    w.now_ms = ended + 30 * DAY_MS;
    assert!(idle(&w, 30).contains(&"jaxlib-feedstock".to_string()));
    // Filters as allocations; ended grants are not allocations.
    let cpu = w.state.allocations_unused(Some("cpu"), None, 30, w.now_ms);
    let projects: Vec<&str> = cpu.resources.iter().flat_map(|r| &r.grants).map(|g| g.project.as_str()).collect();
    assert_eq!(projects, ["jaxlib-feedstock", ONNX]);
    assert!(w.state.allocations_unused(None, Some("numpy-feedstock"), 30, w.now_ms).resources.is_empty());
    w.ok("admin", "grant.revoked", json!({"grant": g, "reason": "idle"}));
    assert!(!idle(&w, 30).contains(&"jaxlib-feedstock".to_string()));
    // Absurd day counts do not overflow.
    assert!(idle(&w, u64::MAX).is_empty());
}

#[test]
fn a_migration_is_not_a_use() {
    let mut w = world();
    let issued_ms = w.now_ms - MINUTE_MS;
    w.define_resource("blacksmith-gpu", 1);
    w.advance(DAY_MS);
    w.ok("admin", "grants.migrated", json!({"from_resource": GPU, "to_resource": "blacksmith-gpu", "reason": "move"}));
    let g = &w.state.allocations(Some("blacksmith-gpu"), None, w.now_ms).resources[0].grants[0];
    assert_eq!((g.project.as_str(), g.last_used_at.as_deref()), (PYTORCH, None));
    // The grant was issued in world(), before the minute it advanced.
    let issued = ledger::statement::parse_rfc3339_ms(&g.idle_since).unwrap();
    assert!(issued <= issued_ms && issued > issued_ms - 10 * MINUTE_MS, "{}", g.idle_since);
}

#[test]
fn an_ended_grant_takes_late_reports_for_a_week_then_forgets_its_usage_ids() {
    use projector::limits::USAGE_LATE_DAYS_MAX;
    let mut w = world();
    let g = w.granted("r-jax", "jaxlib-feedstock", "cpu", json!({}), json!({}));
    w.advance(MINUTE_MS);
    let started = w.now_ms;
    w.usage("in-life", "jaxlib-feedstock", "cpu", 1).unwrap();
    w.advance(MINUTE_MS);
    w.ok("admin", "grant.revoked", json!({"grant": g, "reason": "r"}));
    let revoked_ms = w.now_ms;
    // Within the window: billed, and a repeat of a report made while the grant was active
    // is still recognised.
    w.now_ms = revoked_ms + USAGE_LATE_DAYS_MAX * DAY_MS - 1;
    let late = w.usage_data_at("late", "jaxlib-feedstock", "cpu", 3, started, started + 5 * MINUTE_MS);
    w.ok("meter", "usage.reported", late);
    let repeat = w.usage_data_at("in-life", "jaxlib-feedstock", "cpu", 1, started, started);
    w.err("meter", "usage.reported", repeat.clone(), "usage_duplicate");
    let job = finished("jaxlib-feedstock", "cpu", started, started + 9 * MINUTE_MS, 1);
    assert!(matches!(w.state.meter(ORG, &job), Metering::Statement(ref st) if st.kind == "usage.reported"));
    // The window closes with the first record logged from its end on.
    w.now_ms = revoked_ms + USAGE_LATE_DAYS_MAX * DAY_MS;
    w.ok("bot", "user.terms_accepted", json!({"user": "bob", "github_id": 2, "terms": "bs-tos-1"}));
    assert_eq!(w.state.meter(ORG, &job), Metering::Ignored("report_too_late"));
    w.err("meter", "usage.reported", repeat, "no_active_grant");
    // It was no cross-access either.
    let st = Statement {
        ledger: ORIGIN.into(),
        id: "gh:1:2:1".into(),
        actor: "automation".into(),
        issued_at: format_rfc3339_ms(w.now_ms),
        kind: "usage.unauthorized".into(),
        data: json!({"usage": "gh:1:2:1", "project": "jaxlib-feedstock", "resource": "cpu",
            "started_at": format_rfc3339_ms(started), "ended_at": format_rfc3339_ms(started), "reason": "no_request"}),
    };
    let signers = w.signer("automation");
    assert_eq!(w.submit(st, signers).unwrap_err().code, "usage_granted");
    assert_eq!(used(&w, "jaxlib-feedstock"), 4);
    assert_eq!(serialized(&w.replay()), serialized(&w.state));
}
