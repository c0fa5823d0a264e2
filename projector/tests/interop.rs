//! conda-forge's real files: Cirun `.access.yml` import/export round trip, admin-requests.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use projector::interop::{
    admin_request_statements, cirun_access_yaml, import_cirun_access, parse_cirun_access, plan_cirun_import,
    CirunAccess, CirunPolicy, InteropError, StatementContext,
};
use projector::AccessQuery;

const ACCESS: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/cirun-access.yml"));
const REQ_CIRUN: &str =
    include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/admin-requests/example-cirun.yml"));
const REQ_GPU: &str =
    include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/admin-requests/example-open-gpu-server.yml"));

/// (repo, resource, pull_request, users, users_from_json) for every policy on every resource.
type Policy = (String, String, bool, Option<BTreeSet<String>>, Option<String>);

fn policy_set(yaml: &str) -> BTreeSet<Policy> {
    let file = parse_cirun_access(yaml).unwrap();
    let mut out = BTreeSet::new();
    for ac in &file.access_control {
        for id in &ac.policies {
            let p = file.policies.iter().find(|p| &p.id == id).unwrap();
            out.insert((
                p.repo.clone(),
                ac.resource.clone(),
                p.pull_request.unwrap_or(false),
                p.users.as_ref().map(|u| u.iter().cloned().collect()),
                p.users_from_json.clone(),
            ));
        }
    }
    out
}

fn ctx(w: &World, actor: &str, prefix: &str) -> StatementContext {
    StatementContext { ledger: ORIGIN.into(), actor: actor.into(), now_ms: w.now_ms, id_prefix: prefix.into() }
}

fn import(w: &mut World) -> usize {
    let statements = import_cirun_access(ACCESS, &ctx(w, "admin", "cirun-import:")).unwrap();
    let n = statements.len();
    for st in statements {
        let signers = w.signer("admin");
        w.submit(st, signers).unwrap();
    }
    n
}

#[test]
fn cirun_access_round_trips() {
    let mut w = World::new();
    let n = import(&mut w);
    let original = policy_set(ACCESS);
    // 12 distinct resources (cirun-macos-m4-large appears twice) plus one grant per policy entry.
    assert_eq!(w.state.resources().len(), 12);
    assert_eq!(n, 12 + original.len());
    assert!(w.state.resources().iter().all(|r| r.approvals_required == 2 && r.provider == "cirun"));

    let exported = cirun_access_yaml(&w.state, w.now_ms);
    assert_eq!(policy_set(&exported), original);
    // Both macOS policies survive the duplicated access_control entry.
    let macos: Vec<String> = original.iter().filter(|p| p.1 == "cirun-macos-m4-large").map(|p| p.0.clone()).collect();
    assert_eq!(macos, ["temporalio-cli-feedstock", "tensorflow-feedstock"]);
    // Deterministic, and stable across a replay.
    assert_eq!(exported, cirun_access_yaml(&w.replay(), w.now_ms));
    let parsed = parse_cirun_access(&exported).unwrap();
    assert_eq!(parsed.version, 1);
    let ids: BTreeSet<&str> = parsed.policies.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids.len(), parsed.policies.len(), "policy ids are unique");

    // The imported grants answer access checks.
    let q = AccessQuery {
        project: "pytorch-cpu-feedstock".into(),
        resource: "cirun-azure-windows-2xlarge".into(),
        pull_request: true,
        user: Some("Tobias-Fischer".into()),
        github_id: None,
    };
    assert!(w.state.access_check(&q, w.now_ms).allowed);
    let q = AccessQuery { user: Some("mallory".into()), ..q };
    assert_eq!(w.state.access_check(&q, w.now_ms).reason, "user_not_listed");
    let q = AccessQuery {
        project: "conda-smithy-feedstock".into(),
        resource: "cirun-openstack-gpu-large".into(),
        pull_request: true,
        ..Default::default()
    };
    assert_eq!(w.state.access_check(&q, w.now_ms).reason, "pull_requests_not_granted");

    // A revocation shows in the next export.
    let grant = w.state.project_grants("mongodb-feedstock", w.now_ms)[0].grant.clone();
    w.ok("admin", "grant.revoked", serde_json::json!({"grant": grant, "reason": "done"}));
    let after = policy_set(&cirun_access_yaml(&w.state, w.now_ms));
    assert_eq!(original.difference(&after).count(), 1);
}

/// Policy id → the policy, and resource → its policy ids (a resource listed twice merged).
fn by_id(file: &CirunAccess) -> (BTreeMap<String, CirunPolicy>, BTreeMap<String, BTreeSet<String>>) {
    let policies = file.policies.iter().map(|p| (p.id.clone(), p.clone())).collect();
    let mut access: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for ac in &file.access_control {
        access.entry(ac.resource.clone()).or_default().extend(ac.policies.iter().cloned());
    }
    (policies, access)
}

#[test]
fn cirun_export_keeps_every_imported_policy_id_and_contents() {
    let mut w = World::new();
    import(&mut w);
    let original = by_id(&parse_cirun_access(ACCESS).unwrap());
    let exported = by_id(&parse_cirun_access(&cirun_access_yaml(&w.state, w.now_ms)).unwrap());
    // Renamed ids (`...-windows-policy`, `...-osx-m4-policy`) included.
    assert!(original.0.contains_key("pytorch-cpu-feedstock-windows-policy"));
    assert_eq!(exported.0, original.0);
    assert_eq!(exported.1, original.1);

    // A grant issued on a quorum joins the imported policy with the same contents, and one with
    // other contents gets a generated id that no imported policy has.
    w.register("rev1", &["reviewer"]);
    w.register("bot", &["requester"]);
    w.ok(
        "admin",
        "resource.defined",
        serde_json::json!({"resource": "gpu", "provider": "cirun", "unit": "runner-minutes", "approvals_required": 1}),
    );
    w.ok("bot", "access.requested", serde_json::json!({"request": "r1", "project": "mongodb-feedstock", "resource": "gpu", "justification": "x", "pull_request": true,
        "users_from_json": "https://raw.githubusercontent.com/Quansight/open-gpu-server/main/access/conda-forge-users.json"}));
    w.ok("rev1", "request.approved", serde_json::json!({"request": "r1"}));
    w.ok("bot", "access.requested", serde_json::json!({"request": "r2", "project": "pytorch-cpu-feedstock", "resource": "gpu", "justification": "x", "pull_request": false}));
    w.ok("rev1", "request.approved", serde_json::json!({"request": "r2"}));
    w.automate();
    let (policies, access) = by_id(&parse_cirun_access(&cirun_access_yaml(&w.state, w.now_ms)).unwrap());
    let new: Vec<&String> = policies.keys().filter(|id| !original.0.contains_key(*id)).collect();
    assert_eq!(new, ["pytorch-cpu-feedstock-policy-2"]);
    assert_eq!(policies["pytorch-cpu-feedstock-policy-2"].pull_request, Some(false));
    let on_gpu: Vec<&str> = access["gpu"].iter().map(String::as_str).collect();
    assert_eq!(on_gpu, ["mongodb-feedstock-policy", "pytorch-cpu-feedstock-policy-2"]);
    for (id, p) in &original.0 {
        assert_eq!(&policies[id], p, "{id} changed");
    }
}

#[test]
fn import_reuses_identical_resources_and_refuses_different_ones() {
    let mut w = World::new();
    w.ok("admin", "resource.defined", serde_json::json!({"resource": "cirun-openstack-gpu-large", "provider": "cirun", "unit": "runner-minutes", "approvals_required": 2, "description": "by hand"}));
    let c = ctx(&w, "admin", "cirun-import:");
    let plan = plan_cirun_import(ACCESS, &c, &w.state.resources()).unwrap();
    assert_eq!(plan.reused, ["cirun-openstack-gpu-large"]);
    let all = import_cirun_access(ACCESS, &c).unwrap();
    assert_eq!(plan.statements.len(), all.len() - 1);
    for st in plan.statements {
        let signers = w.signer("admin");
        w.submit(st, signers).unwrap();
    }
    assert_eq!(w.state.resources().len(), 12);

    let mut w = World::new();
    let seq = w.ok("admin", "resource.defined", serde_json::json!({"resource": "cirun-openstack-gpu-xlarge", "provider": "open-gpu-server", "unit": "runner-minutes", "approvals_required": 1, "max_days": 30}));
    let size = w.state.size();
    let err = plan_cirun_import(ACCESS, &ctx(&w, "admin", "cirun-import:"), &w.state.resources()).unwrap_err();
    let InteropError::ResourceConflict { resource, defined_seq, differences } = &err else { panic!("{err}") };
    assert_eq!((resource.as_str(), *defined_seq), ("cirun-openstack-gpu-xlarge", seq));
    let fields: Vec<(&str, &str, &str)> =
        differences.iter().map(|d| (d.field.as_str(), d.ledger.as_str(), d.import.as_str())).collect();
    assert_eq!(
        fields,
        [
            ("provider", r#""open-gpu-server""#, r#""cirun""#),
            ("approvals_required", "1", "2"),
            ("max_days", "30", "null")
        ]
    );
    let message = err.to_string();
    assert!(message.contains("(seq 1)"), "{message}");
    assert!(message.contains(r#"provider: ledger "open-gpu-server", import "cirun""#), "{message}");
    assert_eq!(w.state.size(), size);
    // A retired resource is not the one the import would define.
    w.ok("admin", "resource.retired", serde_json::json!({"resource": "cirun-openstack-gpu-xlarge"}));
    let err = plan_cirun_import(ACCESS, &ctx(&w, "admin", "cirun-import:"), &w.state.resources()).unwrap_err();
    assert!(err.to_string().contains("retired: ledger true, import false"), "{err}");
}

#[test]
fn import_rejects_what_it_cannot_reproduce() {
    let c = StatementContext { ledger: ORIGIN.into(), actor: "admin".into(), now_ms: T0_MS, id_prefix: "i:".into() };
    assert!(matches!(import_cirun_access("version: [", &c), Err(InteropError::Yaml(_))));
    let unknown_policy = "version: 1\npolicies: []\naccess_control:\n  - resource: r\n    policies: [nope]\n";
    assert!(matches!(import_cirun_access(unknown_policy, &c), Err(InteropError::Invalid(_))));
    let bad_repo = "version: 1\npolicies:\n  - id: p\n    repo: Foo/Bar\naccess_control: []\n";
    assert!(matches!(import_cirun_access(bad_repo, &c), Err(InteropError::Invalid(_))));
    let unknown_field = "version: 1\npolicies:\n  - id: p\n    repo: foo\n    teams: [core]\naccess_control: []\n";
    assert!(matches!(import_cirun_access(unknown_field, &c), Err(InteropError::Yaml(_))));
    assert!(matches!(import_cirun_access("version: 2\n", &c), Err(InteropError::Invalid(_))));
}

#[test]
fn admin_requests_become_requests_and_revocations() {
    let mut w = World::standard();
    w.define_resource("cirun-azure-windows-2xlarge", 1);
    w.define_resource("cirun-openstack-gpu-large", 2);
    let c = ctx(&w, "bot", "admin-requests:example-cirun:");
    let statements = admin_request_statements(REQ_CIRUN, &w.state, &c).unwrap();
    assert_eq!(statements.len(), 1);
    let st = &statements[0];
    assert_eq!((st.kind.as_str(), st.actor.as_str()), ("access.requested", "bot"));
    assert_eq!(st.data["project"], "pytorch-cpu-feedstock");
    assert_eq!(st.data["resource"], "cirun-azure-windows-2xlarge");
    assert_eq!(st.data["pull_request"], false);
    let request = st.data["request"].as_str().unwrap().to_string();
    w.submit(st.clone(), w.signer("bot")).unwrap();
    let gpu = admin_request_statements(REQ_GPU, &w.state, &ctx(&w, "bot", "admin-requests:gpu:")).unwrap();
    assert_eq!(gpu[0].data["resource"], "cirun-openstack-gpu-large");
    w.submit(gpu[0].clone(), w.signer("bot")).unwrap();
    assert_eq!(w.state.requests(Some("pending")).len(), 2);

    // Approved and granted, then the same file with `revoke: true` revokes it.
    w.ok("rev1", "request.approved", serde_json::json!({"request": request}));
    w.automate();
    let q = AccessQuery {
        project: "pytorch-cpu-feedstock".into(),
        resource: "cirun-azure-windows-2xlarge".into(),
        ..Default::default()
    };
    assert!(w.state.access_check(&q, w.now_ms).allowed);
    let revoke = REQ_CIRUN.replace("revoke: false", "revoke: true");
    let statements = admin_request_statements(&revoke, &w.state, &ctx(&w, "admin", "admin-requests:revoke:")).unwrap();
    assert_eq!(statements.len(), 1);
    assert_eq!(statements[0].kind, "grant.revoked");
    w.submit(statements[0].clone(), w.signer("admin")).unwrap();
    assert_eq!(w.state.access_check(&q, w.now_ms).reason, "grant_revoked");
    // Nothing left to revoke; unknown resources, other actions and unknown fields are refused.
    assert!(matches!(admin_request_statements(&revoke, &w.state, &c), Err(InteropError::Invalid(_))));
    let typo = REQ_CIRUN.replace("cirun-azure-windows-2xlarge", "cirun-azure-windows-3xlarge");
    assert!(matches!(admin_request_statements(&typo, &w.state, &c), Err(InteropError::Invalid(_))));
    let other = "action: broken\npackages: [x]\n";
    assert!(matches!(admin_request_statements(other, &w.state, &c), Err(InteropError::Invalid(_))));
    let extra = format!("{REQ_CIRUN}\nrevok: true\n");
    assert!(matches!(admin_request_statements(&extra, &w.state, &c), Err(InteropError::Yaml(_))));
}
