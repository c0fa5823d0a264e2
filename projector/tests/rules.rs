//! The rules a new operator and a new maintainer hit: usage must fall inside its grant's life
//! (`usage_outside_grant`), a grant that names its users fails closed without one
//! (`user_required`), and the explanation names things exactly (quoted, with the near miss a
//! typo most likely meant, and the reason of a denial or revocation).

mod common;

use common::*;
use ledger::statement::parse_rfc3339_ms;
use projector::{AccessQuery, ISSUED_AT_FUTURE_MS_MAX};
use serde_json::json;

fn query(project: &str, resource: &str) -> AccessQuery {
    AccessQuery { project: project.into(), resource: resource.into(), ..Default::default() }
}

fn step<'a>(e: &'a projector::Explanation, name: &str) -> &'a projector::ExplainStep {
    e.steps.iter().find(|s| s.step == name).unwrap_or_else(|| panic!("no {name} step: {e:?}"))
}

// ---- usage_outside_grant ----

#[test]
fn usage_must_fall_inside_the_grant_it_is_billed_to() {
    let mut w = World::standard();
    w.advance(DAY_MS);
    let issued_at_ms = w.now_ms;
    let grant =
        w.granted("r1", "numpy-feedstock", "cpu", json!({"days": 2, "credits": 500}), json!({"pool": "qs-gpu"}));
    w.advance(60 * MINUTE_MS);
    let p = "numpy-feedstock";

    // Dated 2001, and before the grant was issued (one millisecond is enough).
    let y2001 = parse_rfc3339_ms("2001-03-01T10:00:00Z").unwrap();
    let data = w.usage_data_at("job-2001", p, "cpu", 5, y2001, y2001 + 42 * MINUTE_MS);
    let r = w.err("meter", "usage.reported", data, "usage_outside_grant");
    assert!(r.message.contains(&format!("before grant {grant:?} began")), "{r}");
    let data = w.usage_data_at("job-early", p, "cpu", 5, issued_at_ms - 1, w.now_ms);
    w.err("meter", "usage.reported", data, "usage_outside_grant");
    // Dated 2030: it has not ended yet.
    let y2030 = parse_rfc3339_ms("2030-03-01T10:00:00Z").unwrap();
    let data = w.usage_data_at("job-2030", p, "cpu", 5, y2030, y2030 + 42 * MINUTE_MS);
    let r = w.err("meter", "usage.reported", data, "usage_outside_grant");
    assert!(r.message.contains("more than 5 minutes after the server clock"), "{r}");
    // ended_at may be up to 5 minutes ahead (the meter's clock drifts), not a millisecond more.
    let data = w.usage_data_at("job-ahead", p, "cpu", 5, w.now_ms, w.now_ms + ISSUED_AT_FUTURE_MS_MAX + 1);
    w.err("meter", "usage.reported", data, "usage_outside_grant");
    let data = w.usage_data_at("job-ahead", p, "cpu", 5, w.now_ms, w.now_ms + ISSUED_AT_FUTURE_MS_MAX);
    w.ok("meter", "usage.reported", data);
    // A job that started the moment the grant was issued counts; ended before started is
    // malformed data.
    let data = w.usage_data_at("job-first", p, "cpu", 5, issued_at_ms, issued_at_ms + 30 * MINUTE_MS);
    w.ok("meter", "usage.reported", data);
    let data = w.usage_data_at("job-backwards", p, "cpu", 5, w.now_ms, w.now_ms - 1);
    w.err("meter", "usage.reported", data, "malformed_data");

    // A job that starts after the grant's expiry (within the drift allowance) did not run under it.
    w.advance(2 * DAY_MS - 60 * MINUTE_MS - 3 * MINUTE_MS);
    let expires_at_ms = issued_at_ms + 2 * DAY_MS;
    assert!(w.state.access_check(&query(p, "cpu"), w.now_ms).allowed);
    let data = w.usage_data_at("job-late", p, "cpu", 5, expires_at_ms, expires_at_ms + MINUTE_MS);
    let r = w.err("meter", "usage.reported", data, "usage_outside_grant");
    assert!(r.message.contains("after grant"), "{r}");
    let data = w.usage_data_at("job-last", p, "cpu", 5, expires_at_ms - 1, expires_at_ms + MINUTE_MS);
    w.ok("meter", "usage.reported", data);

    // Only the accepted reports were counted; the replay (each record at its received_at_ms)
    // accepts exactly the same log.
    assert_eq!(w.state.project_grants(p, w.now_ms)[0].used, 15);
    assert_eq!(serialized(&w.replay()), serialized(&w.state));
}

#[test]
fn a_migrated_grant_bills_only_jobs_since_the_migration() {
    let mut w = World::standard();
    w.define_resource("blacksmith-gpu", 1);
    w.granted("r1", "jaxlib-feedstock", "gpu", json!({}), json!({}));
    w.advance(DAY_MS);
    let migrated_at_ms = w.now_ms;
    w.ok(
        "admin",
        "grants.migrated",
        json!({"from_resource": "gpu", "to_resource": "blacksmith-gpu", "reason": "move"}),
    );
    w.advance(60 * MINUTE_MS);
    let before = w.usage_data_at("j1", "jaxlib-feedstock", "blacksmith-gpu", 5, migrated_at_ms - MINUTE_MS, w.now_ms);
    w.err("meter", "usage.reported", before, "usage_outside_grant");
    let since = w.usage_data_at("j2", "jaxlib-feedstock", "blacksmith-gpu", 5, migrated_at_ms, w.now_ms);
    w.ok("meter", "usage.reported", since);
    // The old resource has no grant any more: a job that started there since the migration
    // did not run under one.
    let old = w.usage_data_at("j3", "jaxlib-feedstock", "gpu", 5, migrated_at_ms, w.now_ms);
    w.err("meter", "usage.reported", old, "no_active_grant");
    // A job that started on the old resource before the migration ran under the old grant,
    // and is billed to it when it reports later (its pool pays); once.
    let late = w.usage_data_at("j4", "jaxlib-feedstock", "gpu", 5, migrated_at_ms - MINUTE_MS, w.now_ms);
    w.ok("meter", "usage.reported", late.clone());
    w.err("meter", "usage.reported", late, "usage_duplicate");
    let grants = w.state.project_grants("jaxlib-feedstock", w.now_ms);
    let used: Vec<(&str, u64)> = grants.iter().map(|g| (g.resource.as_str(), g.used)).collect();
    assert_eq!(used, [("gpu", 5), ("blacksmith-gpu", 5)]);
    assert_eq!(serialized(&w.replay()), serialized(&w.state));
}

// ---- user_required ----

#[test]
fn a_grant_that_names_its_users_fails_closed_without_a_user() {
    let mut w = World::standard();
    w.ok("admin", "resource.defined", json!({"resource": "bs", "provider": "blacksmith", "unit": "runner-minutes", "approvals_required": 1, "terms": "bs-tos-1"}));
    w.granted("r1", "onnxruntime-feedstock", "cpu", json!({"users": ["cbourjau", "hmaarrfk"]}), json!({}));
    w.granted(
        "r2",
        "lightgbm-feedstock",
        "bs",
        json!({"users_from_json": "https://example.org/users.json"}),
        json!({}),
    );
    let open = w.granted("r3", "numpy-feedstock", "cpu", json!({}), json!({}));

    for (project, resource, terms) in
        [("onnxruntime-feedstock", "cpu", None), ("lightgbm-feedstock", "bs", Some("bs-tos-1"))]
    {
        let a = w.state.access_check(&query(project, resource), w.now_ms);
        assert_eq!((a.allowed, a.reason.as_str()), (false, "user_required"), "{project}");
        let g = a.grant.expect("the grant the answer is about");
        let e = w.state.explain(&query(project, resource), w.now_ms);
        assert_eq!(
            (e.allowed, e.reason.as_str(), e.grant.as_deref()),
            (false, "user_required", Some(g.grant.as_str()))
        );
        let user = step(&e, "user");
        assert_eq!((user.ok, user.seq), (false, Some(g.issued_seq)), "{user:?}");
        match terms {
            None => assert!(user.detail.contains("admits only the 2 users it lists"), "{user:?}"),
            Some(t) => assert!(user.detail.contains(&format!("accepted terms {t:?}")), "{user:?}"),
        }
        // The only failing step is the missing user.
        assert_eq!(e.steps.iter().filter(|s| !s.ok).count(), 1, "{e:?}");
    }
    // A grant without users admits the project's maintainers (the provider enforces roles).
    let a = w.state.access_check(&query("numpy-feedstock", "cpu"), w.now_ms);
    assert_eq!((a.allowed, a.grant.map(|g| g.grant)), (true, Some(open)));
    assert!(w.state.explain(&query("numpy-feedstock", "cpu"), w.now_ms).steps.iter().all(|s| s.step != "user"));

    // When one of several active grants has no users list, it admits without a user.
    w.ok(
        "admin",
        "grant.issued",
        json!({"grant": "open-onnx", "project": "onnxruntime-feedstock", "resource": "cpu", "pull_request": false}),
    );
    let a = w.state.access_check(&query("onnxruntime-feedstock", "cpu"), w.now_ms);
    assert_eq!((a.allowed, a.grant.map(|g| g.grant)), (true, Some("open-onnx".to_string())));
    // Pull requests are decided first: no candidate allows them.
    let pr = AccessQuery { pull_request: true, ..query("lightgbm-feedstock", "bs") };
    assert_eq!(w.state.access_check(&pr, w.now_ms).reason, "pull_requests_not_granted");
}

// ---- names and reasons in the explanation ----

#[test]
fn explain_quotes_names_and_suggests_the_name_meant() {
    let mut w = World::standard();
    w.define_resource("cirun-openstack-gpu-large", 1);
    w.define_resource("cirun-openstack-gpu-xlarge", 1);
    w.granted("r1", "numpy-feedstock", "cirun-openstack-gpu-large", json!({}), json!({}));

    // A typo names the nearest defined resource; something unlike every resource names none.
    let e = w.state.explain(&query("numpy-feedstock", "cirun-openstack-gpu-larg"), w.now_ms);
    assert_eq!(e.reason, "unknown_resource");
    assert_eq!(
        step(&e, "resource").detail,
        r#"no resource "cirun-openstack-gpu-larg"; did you mean "cirun-openstack-gpu-large"?"#
    );
    let e = w.state.explain(&query("numpy-feedstock", "CIRUN-openstack-gpu-xlarge"), w.now_ms);
    assert!(step(&e, "resource").detail.ends_with(r#"did you mean "cirun-openstack-gpu-xlarge"?"#), "{e:?}");
    let e = w.state.explain(&query("numpy-feedstock", "macos-arm64"), w.now_ms);
    assert_eq!(step(&e, "resource").detail, r#"no resource "macos-arm64" is defined"#);

    // An owner prefix, capitals or stray spaces: the exact name to use instead.
    for (typed, fix) in [
        ("conda-forge/numpy-feedstock", r#"drop the owner prefix "conda-forge/": did you mean "numpy-feedstock"?"#),
        ("NumPy-feedstock", r#"use lowercase: did you mean "numpy-feedstock"?"#),
        (
            "Conda-Forge/NumPy-feedstock",
            r#"drop the owner prefix "Conda-Forge/" and use lowercase: did you mean "numpy-feedstock"?"#,
        ),
        ("numpy-feedstock ", r#"remove the spaces around it: did you mean "numpy-feedstock"?"#),
    ] {
        let e = w.state.explain(&query(typed, "cirun-openstack-gpu-large"), w.now_ms);
        assert_eq!(e.reason, "invalid_project_name");
        let project = step(&e, "project");
        assert!(project.detail.starts_with(&format!("{typed:?} does not match")), "{project:?}");
        assert!(project.detail.ends_with(fix), "{typed}: {project:?}");
    }
    // The same advice when an event names the project wrongly.
    let r = w.err(
        "bot",
        "access.requested",
        json!({"request": "r9", "project": "conda-forge/numpy-feedstock", "resource": "cpu", "justification": "x", "pull_request": false}),
        "invalid_project_name",
    );
    assert!(r.message.ends_with(r#"did you mean "numpy-feedstock"?"#), "{r}");

    // Every name in the steps is quoted, so a trailing space or a lookalike shows.
    let e = w.state.explain(&query("numpy-feedstock", "cirun-openstack-gpu-large"), w.now_ms);
    assert!(e.allowed, "{e:?}");
    assert_eq!(step(&e, "project").detail, r#""numpy-feedstock" is a valid project name"#);
    assert!(step(&e, "resource")
        .detail
        .starts_with(r#"resource "cirun-openstack-gpu-large" is defined (provider "cirun""#));
    assert!(step(&e, "request").detail.starts_with(r#"request "r1" by "bot""#), "{e:?}");
    assert_eq!(step(&e, "approvals").detail, r#"1 of 1 approval ("rev1")"#);
    assert!(step(&e, "grant").detail.starts_with(r#"grant "grant:r1" issued, now active"#), "{e:?}");
    let e = w.state.explain(&query("scipy-feedstock", "cpu"), w.now_ms);
    assert_eq!(step(&e, "request").detail, r#"no request for "scipy-feedstock" on "cpu""#);
}

#[test]
fn explain_gives_the_reason_of_a_denial_or_revocation_with_its_seq() {
    let mut w = World::standard();
    w.request("r1", "jax-feedstock", "gpu", json!({}));
    let denied = w.ok("rev2", "request.denied", json!({"request": "r1", "reason": "no GPU code"}));
    let e = w.state.explain(&query("jax-feedstock", "gpu"), w.now_ms);
    let closed = step(&e, "request_closed");
    assert_eq!((closed.ok, closed.seq), (false, Some(denied)));
    assert_eq!(closed.detail, r#"request "r1" was denied by "rev2": "no GPU code""#);

    let g = w.granted("r2", "torch-feedstock", "cpu", json!({}), json!({}));
    let revoked = w.ok("admin", "grant.revoked", json!({"grant": g, "reason": "moved provider"}));
    let e = w.state.explain(&query("torch-feedstock", "cpu"), w.now_ms);
    assert_eq!(e.reason, "grant_revoked");
    let grant = step(&e, "grant");
    assert_eq!((grant.ok, grant.seq), (false, Some(revoked)));
    assert_eq!(grant.detail, format!(r#"grant {g:?} issued, now revoked by "admin": "moved provider""#));

    w.request("r3", "jax-feedstock", "cpu", json!({}));
    let withdrawn = w.ok("bot", "request.withdrawn", json!({"request": "r3"}));
    let e = w.state.explain(&query("jax-feedstock", "cpu"), w.now_ms);
    let closed = step(&e, "request_closed");
    assert_eq!((closed.seq, closed.detail.as_str()), (Some(withdrawn), r#"request "r3" was withdrawn by "bot""#));
}

#[test]
fn self_approval_says_whose_behalf_the_request_was_filed_on() {
    let mut w = World::standard();
    w.register("hvet", &["reviewer", "requester"]);
    w.request("r1", "pytorch-cpu-feedstock", "gpu", json!({"on_behalf_of": "HVet"}));
    let r = w.err("hvet", "request.approved", json!({"request": "r1"}), "self_approval");
    assert_eq!(
        r.message,
        r#""hvet" may not approve request "r1": "bot" filed it on their behalf (on_behalf_of "HVet")"#
    );
    w.ok("hvet", "access.requested", json!({"request": "r2", "project": "numpy-feedstock", "resource": "gpu", "justification": "x", "pull_request": false}));
    let r = w.err("hvet", "request.approved", json!({"request": "r2"}), "self_approval");
    assert_eq!(r.message, r#""hvet" may not approve request "r2": they filed it"#);
}

// ---- grant.issued policy ----

#[test]
fn grant_policy_is_strictly_decoded_and_only_imports_set_it() {
    let mut w = World::standard();
    let base = json!({"grant": "g1", "project": "numpy-feedstock", "resource": "cpu", "pull_request": false});
    for bad in [json!(""), json!("has space"), json!("x".repeat(projector::limits::POLICY_ID_BYTES_MAX + 1)), json!(7)]
    {
        let mut d = base.clone();
        d["policy"] = bad;
        w.err("admin", "grant.issued", d, "malformed_data");
    }
    let mut d = base.clone();
    d["policy"] = json!("x".repeat(projector::limits::POLICY_ID_BYTES_MAX));
    w.ok("admin", "grant.issued", d);

    // The automation's grant must be exactly the quorum's, which has no policy.
    w.request("r1", "scipy-feedstock", "cpu", json!({}));
    w.ok("rev1", "request.approved", json!({"request": "r1"}));
    let mut st = projector::automation(&w.state, w.now_ms).remove(0);
    st.data["policy"] = json!("scipy-feedstock-policy");
    assert_eq!(w.submit(st, w.signer("automation")).unwrap_err().code, "grant_mismatch");
}
