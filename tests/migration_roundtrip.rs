//! Migrating from Cirun without losing anything, through the real binary and server:
//! `import-cirun-access` of conda-forge's real `.access.yml`, then `export-cirun-access`,
//! gives back every policy under its own id with the same contents (renamed ids such as
//! `pytorch-cpu-feedstock-windows-policy` included). A resource the ledger already defines
//! is reused when its definition is the import's, and refused otherwise, field by field,
//! before anything is posted.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use projector::interop::{parse_cirun_access, CirunPolicy};
use serde_json::json;

const ACCESS_YML: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/cirun-access.yml");

type ById = (BTreeMap<String, CirunPolicy>, BTreeMap<String, BTreeSet<String>>);

/// Policy id → policy, and resource → policy ids (a resource listed twice is merged, as
/// Cirun reads it).
fn by_id(yaml: &str) -> ById {
    let file = parse_cirun_access(yaml).unwrap();
    let policies = file.policies.iter().map(|p| (p.id.clone(), p.clone())).collect();
    let mut access: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for ac in &file.access_control {
        access.entry(ac.resource.clone()).or_default().extend(ac.policies.iter().cloned());
    }
    (policies, access)
}

#[test]
fn importing_and_exporting_the_cirun_file_keeps_every_policy() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"));
    let admin_key = s.admin_key.to_str().unwrap().to_string();
    // The operator defined one of the file's resources already, as the import would.
    s.append(
        &s.admin(),
        "define-by-hand",
        "resource.defined",
        json!({"resource": "cirun-openstack-gpu-large", "provider": "cirun", "unit": "runner-minutes",
               "approvals_required": 2, "description": "the GPU runner, defined by hand"}),
    );

    let out = s.ok(&["import-cirun-access", "--key", &admin_key, ACCESS_YML]);
    assert!(
        out.contains(r#"resource "cirun-openstack-gpu-large" is already defined as the file needs: reused"#),
        "{out}"
    );
    let size = s.log().size;

    let exported = tmp.path().join("access.yml");
    s.ok(&["export-cirun-access", "--out", exported.to_str().unwrap()]);
    let original = by_id(&std::fs::read_to_string(ACCESS_YML).unwrap());
    let roundtrip = by_id(&std::fs::read_to_string(&exported).unwrap());
    for id in ["pytorch-cpu-feedstock-windows-policy", "tensorflow-feedstock-osx-m4-policy"] {
        assert!(roundtrip.0.contains_key(id), "{id} lost");
    }
    // An empty diff for every policy: the same ids, the same contents, the same resources.
    for (id, policy) in &original.0 {
        assert_eq!(roundtrip.0.get(id), Some(policy), "policy {id}");
    }
    assert_eq!(roundtrip.0.len(), original.0.len());
    assert_eq!(roundtrip.1, original.1);
    // The public list names each imported grant's policy.
    let allocations = s.get_json("/v1/allocations");
    let policies: std::collections::BTreeSet<String> = allocations["resources"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["grants"].as_array().unwrap().iter())
        .filter_map(|g| g["policy"].as_str().map(str::to_string))
        .collect();
    assert!(policies.contains("pytorch-cpu-feedstock-windows-policy"), "{allocations}");
    assert!(policies.iter().all(|p| original.0.contains_key(p)), "{policies:?}");

    // Importing again adds nothing.
    let out = s.ok(&["import-cirun-access", "--key", &admin_key, ACCESS_YML]);
    assert!(out.contains("0 new events"), "{out}");
    assert_eq!(s.log().size, size);
}

#[test]
fn importing_over_a_different_definition_is_refused_field_by_field() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"));
    let admin_key = s.admin_key.to_str().unwrap().to_string();
    let defined = s
        .append(
            &s.admin(),
            "define-gpu",
            "resource.defined",
            json!({"resource": "cirun-openstack-gpu-xlarge", "provider": "open-gpu-server", "unit": "runner-minutes",
                   "approvals_required": 1, "max_days": 90}),
        )
        .seq;
    let size = s.log().size;

    let out = s.cli(&["import-cirun-access", "--key", &admin_key, ACCESS_YML]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains(&format!(r#"resource "cirun-openstack-gpu-xlarge" is already defined (seq {defined})"#)),
        "{stderr}"
    );
    for difference in [
        r#"  provider: ledger "open-gpu-server", import "cirun""#,
        "  approvals_required: ledger 1, import 2",
        "  max_days: ledger 90, import null",
    ] {
        assert!(stderr.contains(difference), "{difference} missing from:\n{stderr}");
    }
    assert!(!stderr.contains("  unit:"), "{stderr}");
    assert!(stderr.contains("nothing was imported"), "{stderr}");
    assert_eq!(s.log().size, size, "nothing may be posted");
}
