//! Writes the seed corpora under `tests/fuzz/seeds/<target>/` from real records: a small log of
//! signed envelopes (every event type of SPEC.md section 4), its leaves, its Merkle tree,
//! signed checkpoints and proofs, and projector scenarios.
//!
//! `cargo run --manifest-path tests/fuzz/Cargo.toml --example make_seeds` (deterministic:
//! fixed keys, fixed times; re-running rewrites the same files).

use std::path::{Path, PathBuf};

use grantline_fuzz::keys::{fixed_key, log_key, ORIGIN};
use grantline_fuzz::projector::{ACTORS, AMOUNTS, DAYS, OPS, RESOURCES, USERS};
use grantline_fuzz::proofs::wire_input;
use ledger::checkpoint::Checkpoint;
use ledger::dsse::Envelope;
use ledger::keys::SigningKey;
use ledger::merkle::{self, MemoryTree};
use ledger::record::Record;
use ledger::statement::{format_rfc3339_ms, Statement};
use projector::data::EVENT_TYPES;
use serde_json::json;

/// 2026-11-29T00:00:00Z.
const T0_MS: i64 = 1_795_910_400_000;

fn seeds_dir(target: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    assert!(bytes.len() <= 64 * 1024, "seed {target}/{name} is larger than 64 KiB");
    std::fs::write(seeds_dir(target).join(name), bytes).unwrap();
}

fn statement(n: usize, actor: &str, kind: &str, data: serde_json::Value) -> Statement {
    Statement {
        ledger: ORIGIN.to_string(),
        id: format!("seed-{n:02}"),
        actor: actor.to_string(),
        issued_at: format_rfc3339_ms(T0_MS + n as i64 * 60_000),
        kind: kind.to_string(),
        data,
    }
}

/// One statement of every event type, in an order the projector accepts.
fn log_statements() -> Vec<(Statement, Vec<SigningKey>)> {
    let k = |name: &str| fixed_key(name, 0);
    let vk = |name: &str| k(name).verifier().to_string();
    let rows: Vec<(&str, &str, serde_json::Value)> = vec![
        (
            "admin",
            "ledger.genesis",
            json!({"admins": [vk("admin")], "automation_key": vk("automation"), "log_key": log_key().verifier().to_string()}),
        ),
        ("admin", "actor.registered", json!({"actor": "rev1", "key": vk("rev1"), "roles": ["reviewer"]})),
        ("admin", "actor.registered", json!({"actor": "req1", "key": vk("req1"), "roles": ["requester"]})),
        ("admin", "actor.roles_set", json!({"actor": "req1", "roles": ["requester", "meter"]})),
        ("admin", "key.added", json!({"actor": "rev1", "key": fixed_key("rev1", 1).verifier().to_string()})),
        (
            "admin",
            "key.revoked",
            json!({"actor": "rev1", "key": fixed_key("rev1", 1).verifier().to_string(), "reason": "rotated"}),
        ),
        (
            "admin",
            "resource.defined",
            json!({"resource": "cirun-openstack-gpu-large", "provider": "cirun", "unit": "runner-minutes", "approvals_required": 1, "description": "GPU runner", "max_days": 90, "terms": "v1"}),
        ),
        (
            "admin",
            "resource.defined",
            json!({"resource": "cirun-openstack-gpu-xlarge", "provider": "cirun", "unit": "runner-minutes", "approvals_required": 2}),
        ),
        ("admin", "sponsor.registered", json!({"sponsor": "quansight", "name": "Quansight"})),
        (
            "admin",
            "credits.deposited",
            json!({"pool": "quansight-2026", "sponsor": "quansight", "amount": 10000, "unit": "runner-minutes", "resources": ["*"], "expires_at": "2027-12-31T00:00:00Z"}),
        ),
        (
            "req1",
            "access.requested",
            json!({"request": "req-pytorch", "project": "pytorch-cpu-feedstock", "resource": "cirun-openstack-gpu-large", "justification": "CUDA builds time out", "pull_request": true, "on_behalf_of": "hmaarrfk", "evidence_url": "https://github.com/conda-forge/admin-requests/pull/1", "credits": 500, "days": 30, "users": ["hmaarrfk"]}),
        ),
        (
            "rev1",
            "request.approved",
            json!({"request": "req-pytorch", "note": "ok", "pool": "quansight-2026", "credits": 400}),
        ),
        (
            "automation",
            "grant.issued",
            json!({"grant": "grant-x", "project": "pytorch-cpu-feedstock", "resource": "cirun-openstack-gpu-large", "pull_request": true, "request": "req-pytorch", "pool": "quansight-2026", "credit_limit": 400, "expires_at": "2026-12-29T00:12:00Z", "users": ["hmaarrfk"]}),
        ),
        (
            "req1",
            "usage.reported",
            json!({"usage": "job-1", "project": "pytorch-cpu-feedstock", "resource": "cirun-openstack-gpu-large", "amount": 42, "started_at": "2026-11-29T01:00:00Z", "ended_at": "2026-11-29T01:42:00Z", "run_url": "https://github.com/x/y/actions/runs/1"}),
        ),
        (
            "req1",
            "access.requested",
            json!({"request": "req-2", "project": "numpy-feedstock", "resource": "cirun-openstack-gpu-large", "justification": "tests", "pull_request": false, "users_from_json": "https://example.org/users.json"}),
        ),
        ("rev1", "request.denied", json!({"request": "req-2", "reason": "not needed"})),
        ("req1", "request.withdrawn", json!({"request": "req-3"})),
        ("rev1", "grant.revoked", json!({"grant": "grant-x", "reason": "abuse"})),
        ("automation", "grant.expired", json!({"grant": "grant-y"})),
        ("automation", "grant.exhausted", json!({"grant": "grant-z"})),
        (
            "req1",
            "user.terms_accepted",
            json!({"user": "hmaarrfk", "github_id": 90008, "terms": "v1", "evidence_url": "https://github.com/x/y/pull/2"}),
        ),
        ("req1", "user.terms_withdrawn", json!({"user": "hmaarrfk", "github_id": 90008, "terms": "v1"})),
        (
            "admin",
            "grants.migrated",
            json!({"from_resource": "cirun-openstack-gpu-large", "to_resource": "cirun-openstack-gpu-xlarge", "reason": "provider change"}),
        ),
    ];
    rows.into_iter()
        .enumerate()
        .map(|(n, (actor, kind, data))| (statement(n, actor, kind, data), vec![k(actor)]))
        .collect()
}

fn main() {
    for target in ["envelope", "leaf", "note", "proofs"] {
        let _ = std::fs::remove_dir_all(seeds_dir(target));
    }
    // Envelopes: one per event type, signed by the actor; one co-signed; one pretty-printed.
    let mut envelopes = Vec::new();
    for (st, keys) in log_statements() {
        let refs: Vec<&SigningKey> = keys.iter().collect();
        let env = Envelope::sign(st.to_payload(), &refs);
        write("envelope", &format!("{}-{}.json", st.id, st.kind), &env.canonical_json());
        envelopes.push(env);
    }
    let cosigned = Envelope::sign(envelopes[11].payload.clone(), &[&fixed_key("rev1", 0), &fixed_key("admin", 0)]);
    write("envelope", "cosigned.json", &cosigned.canonical_json());
    write("envelope", "pretty.json", serde_json::to_string_pretty(&cosigned.to_json_value()).unwrap().as_bytes());
    write("envelope", "statement.json", &envelopes[10].payload);

    // Leaves: the hash chain over those envelopes, one record per minute.
    let mut prev = [0u8; 32];
    let mut tree = MemoryTree::new();
    for (seq, env) in envelopes.iter().enumerate() {
        let record = Record::new(seq as u64, prev, T0_MS + seq as i64 * 60_000, &env.canonical_json()).unwrap();
        if seq < 12 || seq % 3 == 0 {
            write("leaf", &format!("leaf-{seq:02}.bin"), record.leaf());
        }
        prev = record.chain_hash();
        tree.push(record.leaf_hash());
    }
    let n = tree.size();

    // Checkpoints and notes: signed checkpoints at a few sizes, one with an extension line,
    // a note with a second signer, and the C2SP spec example.
    for size in [0, 1, 7, n] {
        let cp = Checkpoint { origin: ORIGIN.to_string(), size, root: tree.root_at(size).unwrap() };
        write("note", &format!("checkpoint-{size}.txt"), cp.sign(log_key()).unwrap().as_bytes());
    }
    let cp = Checkpoint { origin: ORIGIN.to_string(), size: n, root: tree.root() };
    let ext = ledger::note::sign(&format!("{}extension line\n", cp.to_text()), log_key()).unwrap();
    write("note", "checkpoint-extension.txt", ext.as_bytes());
    let other = ledger::note::sign(&cp.to_text(), &fixed_key("witness.example", 0)).unwrap();
    let two = format!("{}{}", cp.sign(log_key()).unwrap(), other.rsplit_once("\n\n").unwrap().1);
    write("note", "checkpoint-two-signers.txt", two.as_bytes());
    write("note", "body.txt", cp.to_text().as_bytes());
    write(
        "note",
        "c2sp-example.txt",
        "This is an example message.\n\n\u{2014} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n".as_bytes(),
    );

    // Proofs: real inclusion and consistency proofs of that log, in the wire layout.
    for (index, size) in [(0, 1), (0, n), (5, n), (n - 1, n), (6, 7)] {
        let proof = tree.inclusion_proof(index, size).unwrap();
        let leaf = tree.stored_hashes()[merkle::stored_hash_index(0, index) as usize];
        let input = wire_input(index, size, &leaf, &tree.root_at(size).unwrap(), &proof);
        write("proofs", &format!("inclusion-{index}-{size}.bin"), &input);
    }
    for (old, new) in [(0, n), (1, n), (4, n), (7, n), (6, 7), (n, n)] {
        let proof = tree.consistency_proof(old, new).unwrap();
        let input = wire_input(old, new, &tree.root_at(old).unwrap(), &tree.root_at(new).unwrap(), &proof);
        write("proofs", &format!("consistency-{old}-{new}.bin"), &input);
    }
    // The structured (mutated) mode: a few byte strings that pick trees, proofs, mutations.
    for (i, bytes) in
        [[1u8, 63, 7, 1, 40, 3, 0, 5, 1], [3, 20, 0, 0, 20, 9, 6, 1, 9], [1, 9, 2, 1, 3, 2, 7, 0, 4]].iter().enumerate()
    {
        write("proofs", &format!("mutated-{i}.bin"), bytes);
    }
    projector_seeds();
    println!("seeds written under {}", seeds_dir("").display());
}

fn index(alphabet: &[&str], name: &str) -> u8 {
    alphabet.iter().position(|a| *a == name).unwrap_or_else(|| panic!("{name} is not in the alphabet")) as u8
}

/// One step of the projector harness's input: event type, one second later, actor, signer
/// choice (0: the actor's first key), issued now, then the type's fields in the order the
/// harness reads them.
fn step(kind: &str, actor: &str, signer: u8, fields: &[u8]) -> Vec<u8> {
    let mut out = vec![index(EVENT_TYPES, kind), 1, 1, index(ACTORS, actor), signer, 0, 0, 0x10];
    out.extend_from_slice(fields);
    out
}

/// A step that only moves the clock by `days`.
fn tick(days: u8) -> Vec<u8> {
    vec![(OPS - 1) as u8, days, 3]
}

/// Name, bootstrap level, steps, and the event types the scenario must get accepted.
type Scenario = (&'static str, u8, Vec<Vec<u8>>, Vec<&'static str>);

fn projector_seeds() {
    let _ = std::fs::remove_dir_all(seeds_dir("projector"));
    let (r1, r2, r3) = (0, 1, 2);
    let amount = |a: u64| AMOUNTS.iter().position(|x| *x == a).unwrap() as u8;
    let day = |d: u64| DAYS.iter().position(|x| *x == d).unwrap() as u8;
    // access.requested fields: users, request, project, resource, justification, pull_request,
    // on_behalf_of?, credits?, days?
    let request =
        |req: u8, project: u8, resource: &str, on_behalf: Option<&str>, credits: Option<u64>, days: Option<u64>| {
            let mut f = vec![1, 0, req, project, index(RESOURCES, resource), 1, 1];
            f.extend(on_behalf.map_or(vec![0], |u| vec![1, index(USERS, u)]));
            f.extend(credits.map_or(vec![0], |c| vec![1, amount(c)]));
            f.extend(days.map_or(vec![0], |d| vec![1, day(d)]));
            f
        };
    // request.approved fields: request, note?, pool?, credits?, days?
    let approve = |req: u8, pool: Option<u8>, credits: Option<u64>| {
        let mut f = vec![req, 1];
        f.extend(pool.map_or(vec![0], |p| vec![1, p]));
        f.extend(credits.map_or(vec![0], |c| vec![1, amount(c)]));
        f.push(0);
        f
    };
    // usage.reported fields: usage kind, job n, minutes before now, project, resource, amount, run_url?
    let usage = |job: u8, project: u8, resource: &str, a: u64| {
        vec![1, job, 30, project, index(RESOURCES, resource), amount(a), 1]
    };
    let scenarios: Vec<Scenario> = vec![
        (
            "quorum-usage-exhausted",
            2,
            vec![
                step("access.requested", "req1", 0, &request(r1, 0, "gpu-large", Some("alice"), Some(400), Some(30))),
                step("request.approved", "rev1", 0, &approve(r1, Some(0), None)),
                step("usage.reported", "meter", 0, &usage(1, 0, "gpu-large", 100)),
                step("usage.reported", "meter", 0, &usage(1, 0, "gpu-large", 100)),
                step("usage.reported", "meter", 0, &usage(2, 0, "gpu-large", 400)),
                tick(1),
            ],
            vec!["grant.issued", "usage.reported", "grant.exhausted"],
        ),
        (
            "two-approvals-self-approval-revoked",
            2,
            vec![
                step("access.requested", "req2", 0, &request(r2, 1, "gpu-xlarge", Some("rev1"), None, None)),
                step("request.approved", "rev1", 0, &approve(r2, None, None)),
                step("request.approved", "rev2", 0, &approve(r2, Some(0), Some(100))),
                step("request.approved", "rev2", 0, &approve(r2, None, None)),
                step("request.approved", "rev3", 0, &approve(r2, None, None)),
                step("grant.revoked", "rev1", 0, &[0]),
                step("usage.reported", "meter", 0, &usage(1, 1, "gpu-xlarge", 5)),
            ],
            vec!["grant.issued", "grant.revoked"],
        ),
        (
            "expiry",
            2,
            vec![
                step("access.requested", "req1", 0, &request(r1, 0, "gpu-large", None, None, Some(1))),
                step("request.approved", "rev2", 0, &approve(r1, Some(1), Some(10))),
                tick(2),
                step("usage.reported", "meter", 0, &usage(3, 0, "gpu-large", 1)),
            ],
            vec!["grant.issued", "grant.expired"],
        ),
        (
            "withdraw-deny-closed",
            2,
            vec![
                step("access.requested", "req1", 0, &request(r3, 0, "cpu-long", None, None, None)),
                step("request.withdrawn", "req1", 0, &[r3]),
                step("request.approved", "rev1", 0, &approve(r3, None, None)),
                step("access.requested", "req2", 0, &request(r2, 1, "gpu-large", None, None, None)),
                step("request.denied", "rev1", 0, &[r2]),
                step("request.withdrawn", "req2", 0, &[r2]),
            ],
            vec!["request.withdrawn", "request.denied"],
        ),
        (
            "migration-retirement",
            2,
            vec![
                step("access.requested", "req1", 0, &request(r1, 0, "gpu-large", None, Some(100), None)),
                step("request.approved", "rev1", 0, &approve(r1, Some(0), None)),
                step("usage.reported", "meter", 0, &usage(1, 0, "gpu-large", 10)),
                step("grants.migrated", "admin", 0, &[index(RESOURCES, "gpu-large"), index(RESOURCES, "gpu-xlarge")]),
                step("usage.reported", "meter", 0, &usage(2, 0, "gpu-xlarge", 10)),
                step("resource.retired", "admin", 0, &[index(RESOURCES, "gpu-xlarge")]),
            ],
            vec!["grants.migrated", "resource.retired"],
        ),
        (
            "keys-roles-terms",
            2,
            vec![
                // key.added fields: actor, same actor (pick 4 != 0), key n, reason?
                step("key.added", "rev1", 0, &[index(ACTORS, "rev1"), 1, 1, 0]),
                step("key.revoked", "admin", 0, &[index(ACTORS, "rev1"), 1, 0, 1]),
                step("access.requested", "req1", 0, &request(r1, 0, "gpu-large", None, None, None)),
                step("request.approved", "rev1", 0, &approve(r1, None, None)),
                step("request.approved", "rev1", 1, &approve(r1, None, None)),
                // actor.roles_set fields: actor, roles mask (reviewer | requester)
                step("actor.roles_set", "admin", 0, &[index(ACTORS, "req2"), 0b110]),
                // user.terms_accepted / withdrawn fields: user, github id, terms, evidence?
                step("user.terms_accepted", "req1", 0, &[0, 1, 0, 1]),
                step("user.terms_withdrawn", "req1", 0, &[0, 1, 0, 0]),
                // credits.deposited fields: resources kind, pool, sponsor, amount, unit, expires?
                step("credits.deposited", "quansight", 0, &[0, 0, 0, amount(1000), 0, 0]),
            ],
            vec!["key.added", "key.revoked", "actor.roles_set", "user.terms_withdrawn", "credits.deposited"],
        ),
        (
            "from-empty",
            0,
            vec![
                // ledger.genesis fields: admin key n, second admin?, log key?, automation key n
                step("ledger.genesis", "admin", 0, &[0, 0, 1, 0]),
                // actor.registered fields: actor, key's actor, key n, roles mask
                step("actor.registered", "admin", 0, &[index(ACTORS, "rev1"), index(ACTORS, "rev1"), 0, 0b10]),
                step("actor.registered", "admin", 0, &[index(ACTORS, "req1"), index(ACTORS, "req1"), 0, 0b100]),
                // resource.defined fields: resource, unit, approvals required, max_days?, terms?
                step("resource.defined", "admin", 0, &[0, 0, 1, 0, 0]),
                step("sponsor.registered", "admin", 0, &[0]),
                step("access.requested", "req1", 0, &request(r1, 0, "gpu-large", None, None, None)),
                step("request.approved", "rev1", 0, &approve(r1, None, None)),
            ],
            vec!["ledger.genesis", "actor.registered", "resource.defined", "sponsor.registered", "grant.issued"],
        ),
    ];
    for (name, level, steps, want) in scenarios {
        let mut input = vec![level];
        for s in steps {
            input.extend(s);
        }
        let report = grantline_fuzz::projector::run_with_report(&input);
        let accepted: Vec<&str> = report.accepted.iter().map(|(_, kind, _)| kind.as_str()).collect();
        for kind in want {
            assert!(accepted.contains(&kind), "scenario {name} never accepts {kind}: {report:?}");
        }
        println!("projector/{name}: accepted {accepted:?}, rejected {:?}", report.rejected);
        write("projector", &format!("{name}.bin"), &input);
    }
}
