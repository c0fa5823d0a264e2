//! Provider terms of service: `user.terms_accepted` / `user.terms_withdrawn` gate a
//! `users_from_json` grant, `GET /v1/exports/users.json` mirrors today's
//! `conda-forge-users.json`, and an acceptance stays with its numeric GitHub id.

mod common;

use std::collections::BTreeSet;

use common::*;
use serde_json::{json, Value};

const BLACKSMITH: &str = "blacksmith-linux-8vcpu";
const TERMS: &str = "blacksmith-tos-2026-01";
const USERS_JSON_URL: &str = "https://raw.githubusercontent.com/conda-forge/.cirun/main/conda-forge-users.json";

fn access(server: &Server, user: &str, github_id: u64) -> Value {
    server.get_json(&format!(
        "/v1/access/check?project={PROJECT}&resource={BLACKSMITH}&pull_request=true&user={user}&github_id={github_id}"
    ))
}

fn explain_user_step(server: &Server, user: &str, github_id: u64) -> Value {
    let e = server.get_json(&format!(
        "/v1/access/explain?project={PROJECT}&resource={BLACKSMITH}&pull_request=true&user={user}&github_id={github_id}"
    ));
    e["steps"].as_array().unwrap().iter().find(|s| s["step"] == "user").cloned().unwrap_or_else(|| panic!("{e}"))
}

fn reason(server: &Server, user: &str, github_id: u64) -> String {
    access(server, user, github_id)["reason"].as_str().unwrap().to_string()
}

/// `users.json` as a set of (login, id), checking its shape: exactly `github` and `id`.
fn users_json(server: &Server) -> BTreeSet<(String, u64)> {
    let body = server.get_json("/v1/exports/users.json");
    body.as_array()
        .unwrap()
        .iter()
        .map(|u| {
            assert_eq!(u.as_object().unwrap().len(), 2, "{u}");
            (u["github"].as_str().unwrap().to_string(), u["id"].as_u64().unwrap())
        })
        .collect()
}

fn set(entries: &[(&str, u64)]) -> BTreeSet<(String, u64)> {
    entries.iter().map(|(l, id)| (l.to_string(), *id)).collect()
}

fn terms(
    server: &Server,
    key: &ledger::keys::SigningKey,
    id: &str,
    kind: &str,
    user: &str,
    github_id: u64,
    v: &str,
) -> u64 {
    let data = json!({"user": user, "github_id": github_id, "terms": v,
                      "evidence_url": "https://github.com/conda-forge/.cirun/pull/7"});
    server.append(key, id, kind, data).seq
}

#[test]
fn terms_acceptance_gates_a_users_from_json_grant() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"));
    let cast = cast(&server, tmp.path());
    let admin = server.admin();
    server.append(
        &admin,
        "define-blacksmith",
        "resource.defined",
        json!({"resource": BLACKSMITH, "provider": "blacksmith", "unit": "runner-minutes", "approvals_required": 1,
               "terms": TERMS}),
    );
    server.append(
        &cast.bot,
        "open-bs",
        "access.requested",
        json!({"request": "pytorch-bs", "project": PROJECT, "resource": BLACKSMITH, "justification": "faster builds",
               "pull_request": true, "users_from_json": USERS_JSON_URL}),
    );
    server.append(&cast.alice, "approve-bs", "request.approved", json!({"request": "pytorch-bs"}));
    // Without a user the check fails closed; with one, the user must have accepted the terms.
    let answer =
        server.get_json(&format!("/v1/access/check?project={PROJECT}&resource={BLACKSMITH}&pull_request=true"));
    assert_eq!(answer["allowed"], false, "{answer}");
    assert_eq!(answer["reason"], "user_required", "{answer}");
    assert_eq!(answer["grant"]["users_from_json"], USERS_JSON_URL);
    assert_eq!(reason(&server, "h-vetinari", 33001), "terms_not_accepted");
    assert!(users_json(&server).is_empty());

    // Acceptances, by the bot acting on the users' signed-off PRs (and one by the admin).
    let hv = terms(&server, &cast.bot, "hv-accepts", "user.terms_accepted", "h-vetinari", 33001, TERMS);
    terms(&server, &cast.bot, "jk-accepts", "user.terms_accepted", "jakirkham", 3019, TERMS);
    terms(&server, &admin, "beckermr-accepts", "user.terms_accepted", "beckermr", 5296, TERMS);
    // Someone who accepted only an older version is not in the export and is denied.
    let old = terms(&server, &cast.bot, "old-accepts", "user.terms_accepted", "old-timer", 777, "blacksmith-tos-2025");
    assert_eq!(
        users_json(&server),
        set(&[("beckermr", 5296), ("h-vetinari", 33001), ("jakirkham", 3019)]),
        "only the current terms count"
    );
    let answer = access(&server, "h-vetinari", 33001);
    assert_eq!((answer["allowed"].as_bool(), answer["reason"].as_str()), (Some(true), Some("ok")), "{answer}");
    assert_eq!(explain_user_step(&server, "h-vetinari", 33001)["seq"], hv);
    // Logins are case-insensitive on GitHub; the numeric id is what binds.
    assert_eq!(reason(&server, "H-Vetinari", 33001), "ok");
    assert_eq!(reason(&server, "old-timer", 777), "terms_not_accepted");
    assert_eq!(explain_user_step(&server, "old-timer", 777)["seq"], old);

    // A withdrawal removes the user from the export and from the grant.
    let withdrawn = terms(&server, &cast.bot, "jk-withdraws", "user.terms_withdrawn", "jakirkham", 3019, TERMS);
    assert_eq!(users_json(&server), set(&[("beckermr", 5296), ("h-vetinari", 33001)]));
    assert_eq!(reason(&server, "jakirkham", 3019), "terms_not_accepted");
    let step = explain_user_step(&server, "jakirkham", 3019);
    assert_eq!((step["ok"].as_bool(), step["seq"].as_u64()), (Some(false), Some(withdrawn)), "{step}");
    // Withdrawing for another account's id is refused and changes nothing.
    let size = server.log().size;
    let (status, body) = server.submit(
        &cast.bot,
        "bm-wrong-withdraw",
        "user.terms_withdrawn",
        json!({"user": "beckermr", "github_id": 1, "terms": TERMS}),
    );
    assert_eq!(status, 422, "{body}");
    assert_eq!(server.log().size, size);
    assert_eq!(reason(&server, "beckermr", 5296), "ok");

    // A renamed or re-registered login: the same login with another numeric id is denied.
    assert_eq!(reason(&server, "h-vetinari", 99999), "github_id_mismatch");
    let step = explain_user_step(&server, "h-vetinari", 99999);
    assert_eq!((step["ok"].as_bool(), step["seq"].as_u64()), (Some(false), Some(hv)), "{step}");
    assert!(step["detail"].as_str().unwrap().contains("33001"), "{step}");
    // When the new holder of the login accepts, the acceptance moves to the new id: the old
    // account loses it, and the export keeps the new numeric id.
    terms(&server, &cast.bot, "beckermr-new-account", "user.terms_accepted", "beckermr", 8888, TERMS);
    assert_eq!(reason(&server, "beckermr", 8888), "ok");
    assert_eq!(reason(&server, "beckermr", 5296), "github_id_mismatch");
    assert_eq!(users_json(&server), set(&[("beckermr", 8888), ("h-vetinari", 33001)]));
    // Re-accepting after a withdrawal brings the user back.
    terms(&server, &cast.bot, "jk-again", "user.terms_accepted", "jakirkham", 3019, TERMS);
    assert_eq!(reason(&server, "jakirkham", 3019), "ok");
    assert_eq!(users_json(&server), set(&[("beckermr", 8888), ("h-vetinari", 33001), ("jakirkham", 3019)]));

    // The Cirun export keeps pointing the policy at the users file.
    let yaml = server.get("/v1/exports/cirun-access.yml").text().unwrap();
    let access = projector::interop::parse_cirun_access(&yaml).unwrap();
    let policy = access.policies.iter().find(|p| p.repo == PROJECT).unwrap_or_else(|| panic!("{yaml}"));
    assert_eq!(policy.users_from_json.as_deref(), Some(USERS_JSON_URL));
    assert_eq!(policy.pull_request, Some(true));

    // Only requesters (the bot) and admins record acceptances: a reviewer may not.
    let (status, body) = server.submit(
        &cast.alice,
        "alice-forges",
        "user.terms_accepted",
        json!({"user": "mallory", "github_id": 13, "terms": TERMS}),
    );
    assert_eq!(status, 403, "{body}");
    assert_eq!(reason(&server, "mallory", 13), "terms_not_accepted");
}
