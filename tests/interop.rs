//! conda-forge interop through the CLI: importing the real Cirun `.access.yml` (idempotent),
//! exporting it back, and filing a request from a real admin-requests file.

mod common;

use std::collections::BTreeSet;

use common::*;
use serde_json::json;

const ACCESS_YML: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/cirun-access.yml");
const ADMIN_REQUEST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/admin-requests/example-cirun.yml");

/// (resource, repo, pull_request) for every policy attached to a resource.
fn access_pairs(yaml: &str) -> BTreeSet<(String, String, bool)> {
    let doc: serde_yaml::Value = serde_yaml::from_str(yaml).unwrap();
    let policies: std::collections::BTreeMap<String, (String, bool)> = doc["policies"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| {
            let id = p["id"].as_str().unwrap().to_string();
            (id, (p["repo"].as_str().unwrap().to_string(), p["pull_request"].as_bool().unwrap_or(false)))
        })
        .collect();
    let mut out = BTreeSet::new();
    for ac in doc["access_control"].as_sequence().unwrap() {
        let resource = ac["resource"].as_str().unwrap();
        for id in ac["policies"].as_sequence().unwrap() {
            let (repo, pr) = &policies[id.as_str().unwrap()];
            out.insert((resource.to_string(), repo.clone(), *pr));
        }
    }
    out
}

#[test]
fn cirun_access_imports_once_and_exports_the_same_allocations() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"));
    let admin_key = s.admin_key.to_str().unwrap().to_string();
    let before = s.log().size;

    let out = s.ok(&["import-cirun-access", "--key", &admin_key, ACCESS_YML]);
    let imported = s.log().size - before;
    assert!(imported > 0);
    assert!(out.contains(&format!("{imported} new events, 0 already logged")), "{out}");

    // Again: nothing new, the log is unchanged.
    let log = s.log();
    let out = s.ok(&["import-cirun-access", "--key", &admin_key, ACCESS_YML]);
    assert!(out.contains(&format!("0 new events, {imported} already logged")), "{out}");
    assert_eq!(s.log(), log);

    // The export has the same (resource, repo, pull_request) allocations as the file.
    let exported = tmp.path().join("access.yml");
    s.ok(&["export-cirun-access", "--out", exported.to_str().unwrap()]);
    let original = access_pairs(&std::fs::read_to_string(ACCESS_YML).unwrap());
    assert_eq!(access_pairs(&std::fs::read_to_string(&exported).unwrap()), original);
    assert_eq!(s.ok(&["export-cirun-access"]), std::fs::read_to_string(&exported).unwrap());
    // And the access check agrees with the file: these policies list their users, so without
    // a user the check fails closed, and with one of the policy's users it allows.
    for (resource, repo, _) in original.iter().take(5) {
        let answer = s.get_json(&format!("/v1/access/check?project={repo}&resource={resource}"));
        assert_eq!(answer["allowed"], false, "{repo} on {resource}: {answer}");
        assert_eq!(answer["reason"], "user_required", "{repo} on {resource}: {answer}");
        let user = answer["grant"]["users"][0].as_str().unwrap_or_else(|| panic!("{answer}")).to_string();
        let answer = s.get_json(&format!("/v1/access/check?project={repo}&resource={resource}&user={user}"));
        assert_eq!(answer["allowed"], true, "{repo} on {resource} for {user}: {answer}");
    }

    // A maintainer's admin-requests file becomes a request (by a registered requester).
    let (bot_path, bot) = keygen(tmp.path(), "bot");
    s.append(
        &s.admin(),
        "register-bot",
        "actor.registered",
        json!({"actor": "bot", "key": bot.verifier().to_string(), "roles": ["requester"]}),
    );
    let before = s.log().size;
    let out = s.ok(&["request", "--from-admin-request", ADMIN_REQUEST, "--key", bot_path.to_str().unwrap()]);
    assert!(out.contains("access.requested"), "{out}");
    assert_eq!(s.log().size, before + 1);
    let requests = s.get_json("/v1/requests?status=pending");
    let request = &requests["requests"][0];
    assert_eq!(request["project"], "pytorch-cpu-feedstock", "{requests}");
    assert_eq!(request["resource"], "cirun-azure-windows-2xlarge", "{requests}");
    assert_eq!(request["requester"], "bot");
    // Filing the same file again adds nothing.
    let out = s.ok(&["request", "--from-admin-request", ADMIN_REQUEST, "--key", bot_path.to_str().unwrap()]);
    assert!(out.contains("0 new events, 1 already logged"), "{out}");
    assert_eq!(s.log().size, before + 1);
}
