//! Every event type's accept path and every rejection code, each with the state after.

mod common;

use common::*;
use ledger::statement::format_rfc3339_ms;
use projector::{AccessQuery, GrantStatus, RejectionKind, State};
use serde_json::json;

fn query(project: &str, resource: &str) -> AccessQuery {
    AccessQuery { project: project.into(), resource: resource.into(), ..Default::default() }
}

// ---- common statement rules ----

#[test]
fn genesis_bootstraps_roots_of_trust() {
    let w = World::new();
    assert_eq!(w.state.size(), 1);
    assert_eq!(w.state.origin(), Some(ORIGIN));
    assert_eq!(w.state.log_key(), Some(&w.log_key.verifier()));
    assert_eq!(w.state.automation_key(), Some(&w.keys["automation"].verifier()));
    let actors = w.state.actors();
    let names: Vec<&str> = actors.iter().map(|a| a.actor.as_str()).collect();
    assert_eq!(names, ["admin", "automation"]);
    assert_eq!(actors[0].roles, ["admin"]);
    assert_eq!(actors[0].keys[0].keyid, w.keys["admin"].keyid());
    assert_eq!(actors[1].roles, ["automation"]);
}

#[test]
fn genesis_is_first_and_only_once() {
    let mut w = World::new();
    let data = w.genesis_data();
    w.err("admin", "ledger.genesis", data.clone(), "genesis_repeated");

    // A fresh ledger: anything but the genesis first is refused.
    let mut fresh = World::new();
    fresh.state = State::new();
    fresh.err(
        "admin",
        "resource.defined",
        json!({"resource": "gpu", "provider": "p", "unit": "u", "approvals_required": 1}),
        "genesis_required",
    );
    // The genesis must be made by one of its admins, signed by that admin's key, for the log key's origin.
    fresh.err("automation", "ledger.genesis", data.clone(), "unknown_actor");
    let st = fresh.statement("admin", "ledger.genesis", data.clone());
    let r = fresh.submit(st, fresh.signer("automation")).unwrap_err();
    assert_eq!(r.code, "not_signed_by_actor");
    let mut st = fresh.statement("admin", "ledger.genesis", data.clone());
    st.ledger = "other.example/ci".into();
    assert_eq!(fresh.submit(st, fresh.signer("admin")).unwrap_err().code, "wrong_ledger");
    // signing_key finds the genesis admin's key while the state is empty.
    let st = fresh.statement("admin", "ledger.genesis", data);
    assert_eq!(fresh.state.signing_key(&fresh.keys["admin"].keyid(), &st), Some(fresh.keys["admin"].verifier()));
    assert_eq!(fresh.state.signing_key(&fresh.keys["automation"].keyid(), &st), None);
    assert_eq!(fresh.state.size(), 0);
}

#[test]
fn statement_level_rejections() {
    let mut w = World::standard();
    let r = w.err("admin", "grant.teleported", json!({}), "unknown_event_type");
    assert_eq!(r.kind, RejectionKind::Malformed);

    let mut st = w.statement("admin", "sponsor.registered", json!({"sponsor": "s", "name": "S"}));
    st.ledger = "elsewhere.example/ci".into();
    let r = w.submit(st, w.signer("admin")).unwrap_err();
    assert_eq!((r.code.as_str(), r.kind), ("wrong_ledger", RejectionKind::Malformed));

    let mut st = w.statement("admin", "sponsor.registered", json!({"sponsor": "s", "name": "S"}));
    st.issued_at = format_rfc3339_ms(w.now_ms + 5 * MINUTE_MS + 1);
    assert_eq!(w.submit(st, w.signer("admin")).unwrap_err().code, "issued_in_future");
    // Exactly 5 minutes ahead is fine.
    let mut st = w.statement("admin", "sponsor.registered", json!({"sponsor": "s", "name": "S"}));
    st.issued_at = format_rfc3339_ms(w.now_ms + 5 * MINUTE_MS);
    w.submit(st, w.signer("admin")).unwrap();
    assert_eq!(w.state.sponsors().len(), 2);

    let mut st = w.statement("admin", "sponsor.registered", json!({"sponsor": "t", "name": "T"}));
    st.id = "has space".into();
    assert_eq!(w.submit(st, w.signer("admin")).unwrap_err().code, "malformed_statement");

    let r = w.err("nobody", "sponsor.registered", json!({"sponsor": "t", "name": "T"}), "unknown_actor");
    assert_eq!(r.kind, RejectionKind::Unauthenticated);
    // Signed by someone else's key only.
    let st = w.statement("admin", "sponsor.registered", json!({"sponsor": "t", "name": "T"}));
    let r = w.submit(st, w.signer("rev1")).unwrap_err();
    assert_eq!((r.code.as_str(), r.kind), ("not_signed_by_actor", RejectionKind::Unauthenticated));
    // Unknown data fields are rejected, not ignored.
    w.err("admin", "sponsor.registered", json!({"sponsor": "t", "name": "T", "tier": "gold"}), "malformed_data");
    w.err("admin", "sponsor.registered", json!({"sponsor": "t"}), "malformed_data");
    assert_eq!(w.state.sponsors().len(), 2);
}

// ---- actors and keys ----

#[test]
fn actor_registered_and_roles_set() {
    let mut w = World::new();
    let seq = w.register("carol", &["reviewer", "requester"]);
    let carol = w.state.actors().into_iter().find(|a| a.actor == "carol").unwrap();
    assert_eq!(carol.roles, ["requester", "reviewer"]);
    assert_eq!(carol.registered_seq, seq);
    assert_eq!(carol.keys[0].keyid, w.keys["carol"].keyid());

    let key = w.new_key("carol").verifier().to_string();
    w.err("admin", "actor.registered", json!({"actor": "carol", "key": key, "roles": []}), "actor_exists");
    let r = w.err(
        "carol",
        "actor.registered",
        json!({"actor": "dave", "key": w.new_key("dave").verifier().to_string(), "roles": []}),
        "role_required",
    );
    assert_eq!(r.kind, RejectionKind::Forbidden);
    w.err(
        "admin",
        "actor.registered",
        json!({"actor": "dave", "key": w.new_key("dave").verifier().to_string(), "roles": ["emperor"]}),
        "malformed_data",
    );
    // A key must carry its actor's name.
    w.err(
        "admin",
        "actor.registered",
        json!({"actor": "dave", "key": w.new_key("eve").verifier().to_string(), "roles": []}),
        "malformed_data",
    );

    w.ok("admin", "actor.roles_set", json!({"actor": "carol", "roles": ["meter"]}));
    let carol = w.state.actors().into_iter().find(|a| a.actor == "carol").unwrap();
    assert_eq!(carol.roles, ["meter"]);
    w.err("admin", "actor.roles_set", json!({"actor": "zed", "roles": []}), "unknown_target_actor");
    w.err("admin", "actor.roles_set", json!({"actor": "automation", "roles": ["admin"]}), "reserved_actor");
    w.err("admin", "actor.roles_set", json!({"actor": "admin", "roles": ["reviewer"]}), "last_admin");
    assert_eq!(w.state.actors()[0].roles, ["admin"]);
}

#[test]
fn keys_added_and_revoked() {
    let mut w = World::standard();
    // The actor itself adds a key, signed by its existing key.
    let k2 = w.new_key("bot");
    let seq = w.ok("bot", "key.added", json!({"actor": "bot", "key": k2.verifier().to_string()}));
    let bot = w.state.actors().into_iter().find(|a| a.actor == "bot").unwrap();
    assert_eq!(bot.keys.len(), 2);
    assert_eq!(bot.keys[1].added_seq, seq);
    // The admin adds one for someone else; a non-admin may not.
    let k3 = w.new_key("rev1");
    w.err("bot", "key.added", json!({"actor": "rev1", "key": k3.verifier().to_string()}), "role_required");
    w.ok("admin", "key.added", json!({"actor": "rev1", "key": k3.verifier().to_string()}));
    w.err("admin", "key.added", json!({"actor": "rev1", "key": k3.verifier().to_string()}), "key_exists");
    w.err(
        "admin",
        "key.added",
        json!({"actor": "nobody", "key": w.new_key("nobody").verifier().to_string()}),
        "unknown_target_actor",
    );
    w.err(
        "admin",
        "key.added",
        json!({"actor": "automation", "key": w.new_key("automation").verifier().to_string()}),
        "reserved_actor",
    );

    // Revoke bot's first key: from then on it signs nothing, the new key still works.
    let old = w.keys["bot"].clone();
    let seq =
        w.ok("admin", "key.revoked", json!({"actor": "bot", "key": old.verifier().to_string(), "reason": "leaked"}));
    let bot = w.state.actors().into_iter().find(|a| a.actor == "bot").unwrap();
    assert_eq!(bot.keys[0].revoked_seq, Some(seq));
    let probe = w.statement("bot", "access.requested", json!({}));
    assert_eq!(w.state.signing_key(&old.keyid(), &probe), None);
    let data = json!({"request": "r1", "project": "numpy-feedstock", "resource": "cpu", "justification": "x", "pull_request": false});
    let r = w.err("bot", "access.requested", data.clone(), "key_revoked");
    assert_eq!(r.kind, RejectionKind::Unauthenticated);
    assert!(w.state.request("r1").is_none());
    let st = w.statement("bot", "access.requested", data);
    w.submit(st, vec![k2.keyid()]).unwrap();
    assert!(w.state.request("r1").is_some());

    w.err("admin", "key.revoked", json!({"actor": "bot", "key": old.verifier().to_string()}), "key_already_revoked");
    w.err(
        "admin",
        "key.revoked",
        json!({"actor": "bot", "key": w.new_key("bot").verifier().to_string()}),
        "unknown_key",
    );
    // A revoked key cannot come back.
    w.err("admin", "key.added", json!({"actor": "bot", "key": old.verifier().to_string()}), "key_exists");
    w.keys.insert("bot".into(), k2.clone());
    w.err("bot", "key.revoked", json!({"actor": "bot", "key": k2.verifier().to_string()}), "role_required");
}

// ---- resources, sponsors, credits ----

#[test]
fn resources_defined_and_retired() {
    let mut w = World::standard();
    let seq = w.ok(
        "admin",
        "resource.defined",
        json!({"resource": "cirun-openstack-gpu-large", "provider": "cirun", "unit": "runner-minutes",
               "approvals_required": 2, "description": "GPU", "max_days": 30, "terms": "cirun-2024"}),
    );
    let r = w.state.resources().into_iter().find(|r| r.resource == "cirun-openstack-gpu-large").unwrap();
    assert_eq!(
        (r.approvals_required, r.max_days, r.terms.as_deref(), r.defined_seq),
        (2, Some(30), Some("cirun-2024"), seq)
    );
    assert!(!r.retired);
    w.err(
        "admin",
        "resource.defined",
        json!({"resource": "gpu", "provider": "x", "unit": "u", "approvals_required": 1}),
        "resource_exists",
    );
    w.err(
        "admin",
        "resource.defined",
        json!({"resource": "tpu", "provider": "x", "unit": "u", "approvals_required": 0}),
        "malformed_data",
    );
    w.err(
        "rev1",
        "resource.defined",
        json!({"resource": "tpu", "provider": "x", "unit": "u", "approvals_required": 1}),
        "role_required",
    );

    let g = w.granted("r1", "numpy-feedstock", "cpu", json!({}), json!({}));
    w.ok("admin", "resource.retired", json!({"resource": "cpu"}));
    assert!(w.state.resources().into_iter().find(|r| r.resource == "cpu").unwrap().retired);
    let grants = w.state.project_grants("numpy-feedstock", w.now_ms);
    assert_eq!((grants[0].grant.as_str(), &grants[0].status), (g.as_str(), &GrantStatus::Retired));
    assert_eq!(w.state.access_check(&query("numpy-feedstock", "cpu"), w.now_ms).reason, "resource_retired");
    w.err("admin", "resource.retired", json!({"resource": "cpu"}), "resource_retired");
    w.err("admin", "resource.retired", json!({"resource": "tpu"}), "unknown_resource");
    let data = json!({"request": "r2", "project": "numpy-feedstock", "resource": "cpu", "justification": "x", "pull_request": false});
    w.err("bot", "access.requested", data, "resource_retired");
}

#[test]
fn sponsors_and_deposits() {
    let mut w = World::standard();
    let usage = w.state.sponsor_usage("quansight", None, None).unwrap();
    assert_eq!(usage.name, "Quansight");
    assert_eq!((usage.pools[0].deposited, usage.pools[0].remaining, usage.pools[0].allocated), (1000, 1000, 0));
    w.err("admin", "sponsor.registered", json!({"sponsor": "quansight", "name": "Q"}), "sponsor_exists");
    // A second deposit adds to the pool; an admin may deposit too.
    w.ok("admin", "credits.deposited", json!({"pool": "qs-gpu", "sponsor": "quansight", "amount": 500, "unit": "runner-minutes", "resources": ["gpu"]}));
    let pool = &w.state.sponsor_usage("quansight", None, None).unwrap().pools[0];
    assert_eq!((pool.deposited, pool.resources.clone()), (1500, vec!["gpu".to_string()]));

    w.ok("admin", "sponsor.registered", json!({"sponsor": "nvidia", "name": "NVIDIA"}));
    // A sponsor actor deposits only into its own sponsor's pools.
    w.err(
        "quansight",
        "credits.deposited",
        json!({"pool": "nv", "sponsor": "nvidia", "amount": 5, "unit": "runner-minutes", "resources": ["*"]}),
        "role_required",
    );
    w.err(
        "admin",
        "credits.deposited",
        json!({"pool": "x", "sponsor": "acme", "amount": 5, "unit": "runner-minutes", "resources": ["*"]}),
        "unknown_sponsor",
    );
    w.err(
        "admin",
        "credits.deposited",
        json!({"pool": "qs-gpu", "sponsor": "nvidia", "amount": 5, "unit": "runner-minutes", "resources": ["*"]}),
        "pool_mismatch",
    );
    w.err(
        "admin",
        "credits.deposited",
        json!({"pool": "qs-gpu", "sponsor": "quansight", "amount": 5, "unit": "gpu-hours", "resources": ["*"]}),
        "pool_mismatch",
    );
    w.err(
        "admin",
        "credits.deposited",
        json!({"pool": "qs-gpu", "sponsor": "quansight", "amount": 0, "unit": "runner-minutes", "resources": ["*"]}),
        "malformed_data",
    );
    w.err(
        "admin",
        "credits.deposited",
        json!({"pool": "qs-gpu", "sponsor": "quansight", "amount": -5, "unit": "runner-minutes", "resources": ["*"]}),
        "malformed_data",
    );
    assert!(w.state.sponsor_usage("nvidia", None, None).unwrap().pools.is_empty());
    assert!(w.state.sponsor_usage("acme", None, None).is_none());
}

// ---- requests ----

#[test]
fn access_requested() {
    let mut w = World::standard();
    let seq = w.request("r1", "pytorch-cpu-feedstock", "gpu", json!({"on_behalf_of": "h-vetinari", "credits": 100, "days": 30, "users_from_json": "https://example.org/users.json"}));
    let r = w.state.request("r1").unwrap();
    assert_eq!(
        (r.status.as_str(), r.requester.as_str(), r.opened_seq, r.approvals_required),
        ("pending", "bot", seq, 2)
    );
    assert_eq!((r.credits, r.days, r.on_behalf_of.as_deref()), (Some(100), Some(30), Some("h-vetinari")));
    assert_eq!(w.state.requests(Some("pending")).len(), 1);
    assert_eq!(
        w.state.access_check(&query("pytorch-cpu-feedstock", "gpu"), w.now_ms).reason,
        "awaiting_approvals (0 of 2)"
    );

    let base = json!({"request": "r2", "project": "pytorch-cpu-feedstock", "resource": "gpu", "justification": "x", "pull_request": false});
    let mut dup = base.clone();
    dup["request"] = json!("r1");
    w.err("bot", "access.requested", dup, "request_exists");
    for bad in ["PyTorch-cpu-feedstock", "pytorch-cpu-feedstock ", "a/../b", "", "-x", "pytorch‐cpu-feedstock"] {
        let mut d = base.clone();
        d["project"] = json!(bad);
        let r = w.err("bot", "access.requested", d, "invalid_project_name");
        assert_eq!(r.kind, RejectionKind::Malformed);
    }
    let mut d = base.clone();
    d["resource"] = json!("tpu");
    w.err("bot", "access.requested", d, "unknown_resource");
    w.err("rev1", "access.requested", base.clone(), "role_required");
    let mut d = base.clone();
    d["users"] = json!(["a"]);
    d["users_from_json"] = json!("https://x");
    w.err("bot", "access.requested", d, "malformed_data");
    assert_eq!(w.state.requests(None).len(), 1);
}

#[test]
fn approvals_count_distinct_reviewers_and_refuse_self_approval() {
    let mut w = World::standard();
    w.register("hvet", &["reviewer", "requester"]);
    w.request("r1", "pytorch-cpu-feedstock", "gpu", json!({"on_behalf_of": "HVet"}));
    // on_behalf_of names the reviewer (GitHub logins compare case-insensitively).
    let r = w.err("hvet", "request.approved", json!({"request": "r1"}), "self_approval");
    assert_eq!(r.kind, RejectionKind::Unprocessable);
    let s = w.ok("rev1", "request.approved", json!({"request": "r1", "note": "ok"}));
    let view = w.state.request("r1").unwrap();
    assert_eq!((view.approvals.len(), view.approvals[0].seq, view.approvals[0].reviewer.as_str()), (1, s, "rev1"));
    w.err("rev1", "request.approved", json!({"request": "r1"}), "duplicate_approval");
    w.err("bot", "request.approved", json!({"request": "r1"}), "role_required");
    w.err("rev1", "request.approved", json!({"request": "nope"}), "unknown_request");
    assert_eq!(
        w.state.access_check(&query("pytorch-cpu-feedstock", "gpu"), w.now_ms).reason,
        "awaiting_approvals (1 of 2)"
    );

    // A reviewer who made the request may not approve it.
    let data = json!({"request": "r2", "project": "numpy-feedstock", "resource": "gpu", "justification": "x", "pull_request": false});
    w.ok("hvet", "access.requested", data);
    w.err("hvet", "request.approved", json!({"request": "r2"}), "self_approval");
    assert!(w.state.request("r2").unwrap().approvals.is_empty());

    // The quorum closes the request for votes until its grant follows.
    w.ok("rev2", "request.approved", json!({"request": "r1"}));
    assert_eq!(w.state.access_check(&query("pytorch-cpu-feedstock", "gpu"), w.now_ms).reason, "awaiting_grant");
    w.register("rev3", &["reviewer"]);
    w.err("rev3", "request.approved", json!({"request": "r1"}), "request_closed");
    w.automate();
    assert_eq!(w.state.request("r1").unwrap().status, "granted");
    w.err("rev3", "request.approved", json!({"request": "r1"}), "request_closed");
}

#[test]
fn approvals_draw_on_pools_within_their_credits() {
    let mut w = World::standard();
    w.request("r1", "pytorch-cpu-feedstock", "gpu", json!({"credits": 600}));
    w.err("rev1", "request.approved", json!({"request": "r1", "pool": "nope"}), "unknown_pool");
    w.ok("admin", "sponsor.registered", json!({"sponsor": "nvidia", "name": "NVIDIA"}));
    w.ok(
        "admin",
        "credits.deposited",
        json!({"pool": "nv-cpu", "sponsor": "nvidia", "amount": 50, "unit": "runner-minutes", "resources": ["cpu"]}),
    );
    w.err("rev1", "request.approved", json!({"request": "r1", "pool": "nv-cpu"}), "pool_not_for_resource");
    w.err("rev1", "request.approved", json!({"request": "r1", "pool": "qs-gpu", "credits": 1001}), "credits_exceeded");
    w.ok("rev1", "request.approved", json!({"request": "r1", "pool": "qs-gpu"}));
    w.ok("rev2", "request.approved", json!({"request": "r1", "credits": 700, "days": 10}));
    w.automate();
    let g = &w.state.project_grants("pytorch-cpu-feedstock", w.now_ms)[0];
    // Pool from the first approval, credits and days from the latest that sets them.
    assert_eq!((g.pool.as_deref(), g.credit_limit), (Some("qs-gpu"), Some(700)));
    assert_eq!(g.expires_at.as_deref(), Some(format_rfc3339_ms(w.now_ms + 10 * DAY_MS).as_str()));
    let pool = &w.state.sponsor_usage("quansight", None, None).unwrap().pools[0];
    assert_eq!((pool.allocated, pool.remaining), (700, 1000));

    // Only 300 left unallocated.
    w.request("r2", "numpy-feedstock", "gpu", json!({"credits": 301}));
    w.err("rev1", "request.approved", json!({"request": "r2", "pool": "qs-gpu"}), "credits_exceeded");
    w.ok("rev1", "request.approved", json!({"request": "r2", "pool": "qs-gpu", "credits": 300}));
}

/// Two quorums reached before the automation runs (one server batch) must not both draw on
/// the same free credits (fuzzing observation 2).
#[test]
fn quorums_awaiting_their_grant_hold_their_credits() {
    let mut w = World::standard();
    w.request("r1", "pytorch-cpu-feedstock", "gpu", json!({"credits": 1000}));
    w.request("r2", "numpy-feedstock", "gpu", json!({"credits": 1000}));
    w.ok("rev1", "request.approved", json!({"request": "r1", "pool": "qs-gpu"}));
    w.ok("rev1", "request.approved", json!({"request": "r2", "pool": "qs-gpu"}));
    w.ok("rev2", "request.approved", json!({"request": "r1"}));
    // r1 holds the pool's 1,000 credits from its quorum on, before grant.issued.
    w.err("rev2", "request.approved", json!({"request": "r2"}), "credits_exceeded");
    w.automate();
    let pool = &w.state.sponsor_usage("quansight", None, None).unwrap().pools[0];
    assert_eq!((pool.deposited, pool.allocated), (1000, 1000));
    assert_eq!(w.state.project_grants("numpy-feedstock", w.now_ms).len(), 0);
}

#[test]
fn requests_denied_and_withdrawn_stay_closed() {
    let mut w = World::standard();
    w.request("r1", "numpy-feedstock", "gpu", json!({}));
    let seq = w.ok("rev1", "request.denied", json!({"request": "r1", "reason": "no GPU code"}));
    let r = w.state.request("r1").unwrap();
    assert_eq!((r.status.as_str(), r.timeline.last().unwrap().seq), ("denied", seq));
    assert_eq!(w.state.access_check(&query("numpy-feedstock", "gpu"), w.now_ms).reason, "request_denied");
    w.err("rev2", "request.approved", json!({"request": "r1"}), "request_closed");
    w.err("rev2", "request.denied", json!({"request": "r1", "reason": "x"}), "request_closed");
    w.err("bot", "request.withdrawn", json!({"request": "r1"}), "request_closed");
    w.err("bot", "request.denied", json!({"request": "r1", "reason": "x"}), "role_required");

    w.request("r2", "scipy-feedstock", "gpu", json!({}));
    w.register("bot2", &["requester"]);
    let r = w.err("bot2", "request.withdrawn", json!({"request": "r2"}), "not_requester");
    assert_eq!(r.kind, RejectionKind::Forbidden);
    w.err("bot", "request.withdrawn", json!({"request": "nope"}), "unknown_request");
    w.ok("bot", "request.withdrawn", json!({"request": "r2"}));
    assert_eq!(w.state.request("r2").unwrap().status, "withdrawn");
    assert_eq!(w.state.access_check(&query("scipy-feedstock", "gpu"), w.now_ms).reason, "request_withdrawn");
    assert_eq!(w.state.requests(Some("pending")).len(), 0);
    assert_eq!(w.state.requests(None).iter().map(|r| r.request.as_str()).collect::<Vec<_>>(), ["r2", "r1"]);
}

// ---- grants ----

#[test]
fn automation_issues_exactly_the_quorum_grant() {
    let mut w = World::standard();
    w.request("r1", "pytorch-cpu-feedstock", "gpu", json!({"credits": 100, "pull_request": true, "users": ["wolfv"]}));
    w.ok("rev1", "request.approved", json!({"request": "r1", "pool": "qs-gpu"}));
    assert!(projector::automation(&w.state, w.now_ms).is_empty());
    // A grant.issued before the quorum is refused: replay proves no grant without quorum.
    let early = json!({"grant": "grant:r1", "project": "pytorch-cpu-feedstock", "resource": "gpu", "pull_request": true, "request": "r1", "pool": "qs-gpu", "credit_limit": 100, "users": ["wolfv"]});
    w.err("automation", "grant.issued", early, "quorum_not_reached");
    w.ok("rev2", "request.approved", json!({"request": "r1"}));

    let statements = projector::automation(&w.state, w.now_ms);
    assert_eq!(statements.len(), 1);
    let st = statements[0].clone();
    assert_eq!((st.kind.as_str(), st.actor.as_str(), st.ledger.as_str()), ("grant.issued", "automation", ORIGIN));
    assert_eq!(st.id, "grant.issued:r1");
    // Tampering with the computed grant is refused.
    let mut forged = st.clone();
    forged.data["credit_limit"] = json!(1000);
    let r = w.submit(forged, w.signer("automation")).unwrap_err();
    assert_eq!(r.code, "grant_mismatch");
    let mut no_request = st.clone();
    no_request.data.as_object_mut().unwrap().remove("request");
    assert_eq!(w.submit(no_request, w.signer("automation")).unwrap_err().code, "grant_mismatch");
    let seq = w.submit(st.clone(), w.signer("automation")).unwrap();
    let g = &w.state.project_grants("pytorch-cpu-feedstock", w.now_ms)[0];
    assert_eq!(
        (g.grant.as_str(), g.issued_seq, &g.status, g.request.as_deref()),
        ("grant:r1", seq, &GrantStatus::Active, Some("r1"))
    );
    assert_eq!(
        (g.users.clone(), g.pull_request, g.roles.clone()),
        (Some(vec!["wolfv".to_string()]), true, vec!["admin".to_string(), "maintain".into(), "write".into()])
    );
    assert_eq!(w.state.request("r1").unwrap().grant.as_deref(), Some("grant:r1"));
    assert!(projector::automation(&w.state, w.now_ms).is_empty());
    // The same statement again: the grant exists.
    let mut again = st;
    again.id = "again".into();
    assert_eq!(w.submit(again, w.signer("automation")).unwrap_err().code, "grant_exists");
    // Automation may append nothing but its three event types.
    w.err("automation", "sponsor.registered", json!({"sponsor": "x", "name": "X"}), "role_required");
}

#[test]
fn admins_issue_grants_directly_and_others_may_not() {
    let mut w = World::standard();
    let data = json!({"grant": "g1", "project": "numpy-feedstock", "resource": "cpu", "pull_request": false, "pool": "qs-gpu", "credit_limit": 100, "roles": ["admin"]});
    w.err("rev1", "grant.issued", data.clone(), "role_required");
    w.err("bot", "grant.issued", data.clone(), "role_required");
    let mut over = data.clone();
    over["credit_limit"] = json!(5000);
    w.err("admin", "grant.issued", over, "credits_exceeded");
    let mut bad = data.clone();
    bad["resource"] = json!("tpu");
    w.err("admin", "grant.issued", bad, "unknown_resource");
    let mut bad = data.clone();
    bad["pool"] = json!("nope");
    w.err("admin", "grant.issued", bad, "unknown_pool");
    let mut bad = data.clone();
    bad["project"] = json!("NumPy-feedstock");
    w.err("admin", "grant.issued", bad, "invalid_project_name");
    w.ok("admin", "grant.issued", data.clone());
    let g = &w.state.project_grants("numpy-feedstock", w.now_ms)[0];
    assert_eq!((g.roles.clone(), g.credit_limit), (vec!["admin".to_string()], Some(100)));
    w.err("admin", "grant.issued", data, "grant_exists");
    assert!(w.state.access_check(&query("numpy-feedstock", "cpu"), w.now_ms).allowed);
}

#[test]
fn grants_revoked() {
    let mut w = World::standard();
    let g = w.granted("r1", "numpy-feedstock", "cpu", json!({}), json!({}));
    w.err("bot", "grant.revoked", json!({"grant": g, "reason": "x"}), "role_required");
    let seq = w.ok("rev2", "grant.revoked", json!({"grant": g, "reason": "abuse"}));
    let view = &w.state.project_grants("numpy-feedstock", w.now_ms)[0];
    assert_eq!((&view.status, view.ended_seq), (&GrantStatus::Revoked, Some(seq)));
    assert_eq!(view.history.last().unwrap().detail.as_deref(), Some("abuse"));
    w.err("admin", "grant.revoked", json!({"grant": g, "reason": "again"}), "grant_not_active");
    w.err("admin", "grant.revoked", json!({"grant": "nope", "reason": "x"}), "unknown_grant");
    assert_eq!(w.state.access_check(&query("numpy-feedstock", "cpu"), w.now_ms).reason, "grant_revoked");
}

#[test]
fn grants_expire_at_their_time() {
    let mut w = World::standard();
    let g = w.granted("r1", "numpy-feedstock", "cpu", json!({"days": 2}), json!({}));
    w.err("automation", "grant.expired", json!({"grant": g}), "not_due");
    w.err("admin", "grant.expired", json!({"grant": g}), "role_required");
    w.advance(2 * DAY_MS);
    // Ended the moment expires_at passes, before grant.expired is appended.
    let a = w.state.access_check(&query("numpy-feedstock", "cpu"), w.now_ms);
    assert_eq!((a.allowed, a.reason.as_str()), (false, "grant_expired"));
    assert_eq!(w.state.allocations(None, None, w.now_ms).resources.len(), 0);
    assert_eq!(w.usage("u1", "numpy-feedstock", "cpu", 1).unwrap_err().code, "no_active_grant");
    let statements = projector::automation(&w.state, w.now_ms);
    assert_eq!(statements.len(), 1);
    assert_eq!(
        (statements[0].kind.as_str(), statements[0].id.as_str()),
        ("grant.expired", format!("grant.expired:{g}").as_str())
    );
    let seqs = w.automate();
    let view = &w.state.project_grants("numpy-feedstock", w.now_ms)[0];
    assert_eq!((&view.status, view.ended_seq), (&GrantStatus::Expired, Some(seqs[0])));
    w.err("automation", "grant.expired", json!({"grant": g}), "grant_not_active");
}

#[test]
fn days_are_capped_by_max_days() {
    let mut w = World::standard();
    w.ok("admin", "resource.defined", json!({"resource": "m4", "provider": "cirun", "unit": "runner-minutes", "approvals_required": 1, "max_days": 7}));
    w.granted("r1", "numpy-feedstock", "m4", json!({"days": 30}), json!({}));
    w.granted("r2", "scipy-feedstock", "m4", json!({}), json!({}));
    for p in ["numpy-feedstock", "scipy-feedstock"] {
        let g = &w.state.project_grants(p, w.now_ms)[0];
        assert_eq!(g.expires_at.as_deref(), Some(format_rfc3339_ms(w.now_ms + 7 * DAY_MS).as_str()));
    }
}

// ---- usage ----

#[test]
fn usage_debits_grant_and_pool_once() {
    let mut w = World::standard();
    let g = w.granted("r1", "pytorch-cpu-feedstock", "gpu", json!({"credits": 100}), json!({"pool": "qs-gpu"}));
    w.usage("job-1", "pytorch-cpu-feedstock", "gpu", 30).unwrap();
    let r = w.usage("job-1", "pytorch-cpu-feedstock", "gpu", 30).unwrap_err();
    assert_eq!(r.code, "usage_duplicate");
    let view = &w.state.project_grants("pytorch-cpu-feedstock", w.now_ms)[0];
    assert_eq!((view.grant.as_str(), view.used), (g.as_str(), 30));
    let usage = w.state.sponsor_usage("quansight", None, None).unwrap();
    assert_eq!((usage.pools[0].used, usage.pools[0].remaining, usage.pools[0].allocated), (30, 970, 100));
    assert_eq!(usage.projects[0].used, 30);
    assert_eq!(usage.series[0].amount, 30);
    assert_eq!(usage.series[0].day, "2026-11-29");

    assert_eq!(w.usage("job-2", "numpy-feedstock", "gpu", 1).unwrap_err().code, "no_active_grant");
    assert_eq!(w.usage("job-2", "pytorch-cpu-feedstock", "cpu", 1).unwrap_err().code, "no_active_grant");
    assert_eq!(w.usage("job-2", "PyTorch-cpu-feedstock", "gpu", 1).unwrap_err().code, "invalid_project_name");
    let data = w.usage_data("job-2", "pytorch-cpu-feedstock", "gpu", 0);
    w.err("meter", "usage.reported", data, "malformed_data");
    let data = w.usage_data("job-2", "pytorch-cpu-feedstock", "gpu", 1);
    w.err("bot", "usage.reported", data, "role_required");

    // Overshoot: recorded, the grant is exhausted, later reports rejected.
    w.usage("job-3", "pytorch-cpu-feedstock", "gpu", 90).unwrap();
    let view = &w.state.project_grants("pytorch-cpu-feedstock", w.now_ms)[0];
    assert_eq!((view.used, &view.status), (120, &GrantStatus::Exhausted));
    assert_eq!(w.usage("job-4", "pytorch-cpu-feedstock", "gpu", 1).unwrap_err().code, "no_active_grant");
    assert_eq!(w.usage("job-3", "pytorch-cpu-feedstock", "gpu", 90).unwrap_err().code, "usage_duplicate");
    let pool = &w.state.sponsor_usage("quansight", None, None).unwrap().pools[0];
    assert_eq!((pool.used, pool.allocated, pool.remaining), (120, 120, 880));
    w.err("automation", "grant.exhausted", json!({"grant": "nope"}), "unknown_grant");
    w.automate();
    let view = &w.state.project_grants("pytorch-cpu-feedstock", w.now_ms)[0];
    assert_eq!(view.history.last().unwrap().kind, "grant.exhausted");
    w.err("automation", "grant.exhausted", json!({"grant": g}), "grant_not_active");
    let pool = &w.state.sponsor_usage("quansight", None, None).unwrap().pools[0];
    assert_eq!(pool.allocated, 120);
}

#[test]
fn exhaustion_is_not_due_with_credits_left() {
    let mut w = World::standard();
    let g = w.granted("r1", "numpy-feedstock", "cpu", json!({"credits": 10}), json!({}));
    w.usage("j1", "numpy-feedstock", "cpu", 9).unwrap();
    w.err("automation", "grant.exhausted", json!({"grant": g}), "not_due");
    w.usage("j2", "numpy-feedstock", "cpu", 1).unwrap();
    assert_eq!(w.automate().len(), 1);
    assert_eq!(w.state.access_check(&query("numpy-feedstock", "cpu"), w.now_ms).reason, "grant_exhausted");
}

// ---- terms ----

#[test]
fn terms_acceptance_is_tied_to_the_github_id() {
    let mut w = World::standard();
    w.ok("admin", "resource.defined", json!({"resource": "m4", "provider": "cirun", "unit": "runner-minutes", "approvals_required": 1, "terms": "cirun-2024"}));
    w.granted(
        "r1",
        "tensorflow-feedstock",
        "m4",
        json!({"users_from_json": "https://example.org/users.json"}),
        json!({}),
    );
    let q = |user: &str, id: Option<u64>| AccessQuery {
        project: "tensorflow-feedstock".into(),
        resource: "m4".into(),
        pull_request: false,
        user: Some(user.into()),
        github_id: id,
    };
    assert_eq!(w.state.access_check(&q("wolfv", None), w.now_ms).reason, "terms_not_accepted");

    let seq = w.ok("bot", "user.terms_accepted", json!({"user": "wolfv", "github_id": 885054, "terms": "cirun-2024", "evidence_url": "https://github.com/x/pull/1"}));
    assert!(w.state.access_check(&q("wolfv", Some(885054)), w.now_ms).allowed);
    assert!(w.state.access_check(&q("wolfv", None), w.now_ms).allowed);
    assert_eq!(w.state.access_check(&q("wolfv", Some(1)), w.now_ms).reason, "github_id_mismatch");
    let e = w.state.explain(&q("wolfv", Some(885054)), w.now_ms);
    assert_eq!(e.steps.last().unwrap().seq, Some(seq));
    assert_eq!(w.state.users_json(), [projector::UserEntry { github: "wolfv".into(), id: 885054 }]);

    // Another version is not the resource's terms.
    w.ok("admin", "user.terms_accepted", json!({"user": "isuruf", "github_id": 42, "terms": "other-1"}));
    assert_eq!(w.state.access_check(&q("isuruf", None), w.now_ms).reason, "terms_not_accepted");
    assert_eq!(w.state.users_json().len(), 1);
    w.err("meter", "user.terms_accepted", json!({"user": "x", "github_id": 1, "terms": "t"}), "role_required");
    w.err("bot", "user.terms_accepted", json!({"user": "x y", "github_id": 1, "terms": "t"}), "malformed_data");
    w.err("bot", "user.terms_accepted", json!({"user": "x", "github_id": 0, "terms": "t"}), "malformed_data");

    // Withdrawals: for the recorded id and an accepted version only.
    w.err(
        "bot",
        "user.terms_withdrawn",
        json!({"user": "wolfv", "github_id": 1, "terms": "cirun-2024"}),
        "github_id_mismatch",
    );
    w.err(
        "bot",
        "user.terms_withdrawn",
        json!({"user": "wolfv", "github_id": 885054, "terms": "other-1"}),
        "terms_not_accepted",
    );
    w.err(
        "bot",
        "user.terms_withdrawn",
        json!({"user": "nobody", "github_id": 5, "terms": "cirun-2024"}),
        "terms_not_accepted",
    );
    w.ok("bot", "user.terms_withdrawn", json!({"user": "wolfv", "github_id": 885054, "terms": "cirun-2024"}));
    assert_eq!(w.state.access_check(&q("wolfv", None), w.now_ms).reason, "terms_not_accepted");
    assert!(w.state.users_json().is_empty());

    // A re-registered login (new id) does not inherit the old acceptance.
    w.ok("bot", "user.terms_accepted", json!({"user": "isuruf", "github_id": 43, "terms": "cirun-2024"}));
    assert_eq!(w.state.users_json(), [projector::UserEntry { github: "isuruf".into(), id: 43 }]);
    assert_eq!(w.state.access_check(&q("isuruf", Some(42)), w.now_ms).reason, "github_id_mismatch");
}

#[test]
fn users_lists_and_pull_requests() {
    let mut w = World::standard();
    w.granted("r1", "onnxruntime-feedstock", "cpu", json!({"users": ["cbourjau", "hmaarrfk"]}), json!({}));
    let mut q = AccessQuery {
        project: "onnxruntime-feedstock".into(),
        resource: "cpu".into(),
        user: Some("HMaarrfk".into()),
        ..Default::default()
    };
    assert!(w.state.access_check(&q, w.now_ms).allowed);
    q.user = Some("mallory".into());
    assert_eq!(w.state.access_check(&q, w.now_ms).reason, "user_not_listed");
    q.user = None;
    q.pull_request = true;
    assert_eq!(w.state.access_check(&q, w.now_ms).reason, "pull_requests_not_granted");
}

/// A user missing from a grant's users list is denied by the grant.issued record that holds
/// the list: explain cites it, and names the grant the answer is about.
#[test]
fn explain_cites_the_grant_for_user_not_listed() {
    let mut w = World::standard();
    let grant = w.granted("r1", "onnxruntime-feedstock", "cpu", json!({"users": ["cbourjau"]}), json!({}));
    let issued = w.state.access_check(
        &AccessQuery { project: "onnxruntime-feedstock".into(), resource: "cpu".into(), ..Default::default() },
        w.now_ms,
    );
    let issued_seq = issued.grant.unwrap().issued_seq;
    for (user, ok, reason) in [("mallory", false, "user_not_listed"), ("cbourjau", true, "ok")] {
        let q = AccessQuery {
            project: "onnxruntime-feedstock".into(),
            resource: "cpu".into(),
            user: Some(user.into()),
            github_id: Some(7),
            ..Default::default()
        };
        let e = w.state.explain(&q, w.now_ms);
        assert_eq!((e.allowed, e.reason.as_str(), e.grant.as_deref()), (ok, reason, Some(grant.as_str())));
        let step = e.steps.iter().find(|s| s.step == "user").unwrap();
        assert_eq!((step.ok, step.seq), (ok, Some(issued_seq)), "{user}");
    }
    let none = AccessQuery { project: "scipy-feedstock".into(), resource: "cpu".into(), ..Default::default() };
    assert_eq!(w.state.explain(&none, w.now_ms).grant, None);
}

// ---- migration ----

#[test]
fn grants_migrated_keep_limits_usage_and_pool() {
    let mut w = World::standard();
    w.ok("admin", "resource.defined", json!({"resource": "blacksmith-gpu", "provider": "blacksmith", "unit": "runner-minutes", "approvals_required": 2}));
    let g1 = w.granted(
        "r1",
        "pytorch-cpu-feedstock",
        "gpu",
        json!({"credits": 100, "days": 30, "pull_request": true}),
        json!({"pool": "qs-gpu"}),
    );
    let g2 = w.granted("r2", "jaxlib-feedstock", "gpu", json!({"users": ["wolfv"]}), json!({}));
    w.granted("r3", "numpy-feedstock", "cpu", json!({}), json!({}));
    w.usage("j1", "pytorch-cpu-feedstock", "gpu", 40).unwrap();
    let before = w.state.project_grants("pytorch-cpu-feedstock", w.now_ms)[0].clone();

    w.err(
        "rev1",
        "grants.migrated",
        json!({"from_resource": "gpu", "to_resource": "blacksmith-gpu", "reason": "x"}),
        "role_required",
    );
    w.err(
        "admin",
        "grants.migrated",
        json!({"from_resource": "tpu", "to_resource": "blacksmith-gpu", "reason": "x"}),
        "unknown_resource",
    );
    w.err(
        "admin",
        "grants.migrated",
        json!({"from_resource": "gpu", "to_resource": "tpu", "reason": "x"}),
        "unknown_resource",
    );
    w.err(
        "admin",
        "grants.migrated",
        json!({"from_resource": "gpu", "to_resource": "gpu", "reason": "x"}),
        "malformed_data",
    );
    let seq = w.ok(
        "admin",
        "grants.migrated",
        json!({"from_resource": "gpu", "to_resource": "blacksmith-gpu", "reason": "provider change"}),
    );

    let grants = w.state.project_grants("pytorch-cpu-feedstock", w.now_ms);
    assert_eq!(grants.len(), 2);
    let (old, new) = (&grants[0], &grants[1]);
    assert_eq!((old.grant.as_str(), &old.status, old.ended_seq), (g1.as_str(), &GrantStatus::Migrated, Some(seq)));
    assert_eq!(new.grant, format!("{g1}:blacksmith-gpu"));
    assert_eq!((new.resource.as_str(), &new.status, new.issued_seq), ("blacksmith-gpu", &GrantStatus::Active, seq));
    assert_eq!(
        (new.credit_limit, new.used, &new.expires_at, new.pull_request, &new.pool),
        (before.credit_limit, 40, &before.expires_at, true, &before.pool)
    );
    assert_eq!(new.history.last().unwrap().kind, "grants.migrated");
    assert_eq!(new.history[0].kind, "grant.issued");
    let jax = w.state.project_grants("jaxlib-feedstock", w.now_ms);
    assert_eq!(
        (jax[1].grant.clone(), jax[1].users.clone()),
        (format!("{g2}:blacksmith-gpu"), Some(vec!["wolfv".to_string()]))
    );
    // numpy's cpu grant is untouched.
    assert_eq!(w.state.project_grants("numpy-feedstock", w.now_ms)[0].status, GrantStatus::Active);

    assert_eq!(w.state.access_check(&query("pytorch-cpu-feedstock", "gpu"), w.now_ms).reason, "grant_migrated");
    assert!(w.state.access_check(&query("pytorch-cpu-feedstock", "blacksmith-gpu"), w.now_ms).allowed);
    // The usage id stays known; the pool still pays, allocation unchanged.
    assert_eq!(w.usage("j1", "pytorch-cpu-feedstock", "blacksmith-gpu", 40).unwrap_err().code, "usage_duplicate");
    let pool = &w.state.sponsor_usage("quansight", None, None).unwrap().pools[0];
    assert_eq!((pool.allocated, pool.used), (100, 40));
    w.usage("j2", "pytorch-cpu-feedstock", "blacksmith-gpu", 60).unwrap();
    let usage = w.state.sponsor_usage("quansight", None, None).unwrap();
    assert_eq!(usage.pools[0].used, 100);
    assert!(usage.projects.iter().any(|p| p.resource == "blacksmith-gpu" && p.used == 60));
    let labels = w.state.runner_labels(w.now_ms);
    assert_eq!(labels["jaxlib-feedstock"], ["blacksmith-gpu"]);
    assert_eq!(labels["numpy-feedstock"], ["cpu"]);
    assert!(!labels.contains_key("pytorch-cpu-feedstock"), "exhausted by now");
    // Migrating back would reuse no id; migrating to a retired resource is refused.
    w.ok("admin", "resource.retired", json!({"resource": "cpu"}));
    w.err(
        "admin",
        "grants.migrated",
        json!({"from_resource": "blacksmith-gpu", "to_resource": "cpu", "reason": "x"}),
        "resource_retired",
    );
}

#[test]
fn every_code_has_one_kind() {
    let mut seen = std::collections::BTreeSet::new();
    for (code, _) in projector::codes::ALL {
        assert!(seen.insert(*code), "{code} listed twice");
        assert!(code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
    }
    assert_eq!(projector::codes::kind_of("wrong_ledger"), RejectionKind::Malformed);
    assert_eq!(projector::codes::kind_of("role_required"), RejectionKind::Forbidden);
}
