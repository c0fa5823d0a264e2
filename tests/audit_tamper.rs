//! `grantline verify`, `export` and `import` over a real log of more than 1,000 events made
//! through the API, and every kind of tampering caught with its exit code and its seq.

mod common;
mod common_audit;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use api::json::RecordJson;
use api::testing::exit;
use common::*;
use common_audit::*;
use ledger::checkpoint::Checkpoint;
use ledger::dsse::Envelope;
use ledger::keys::{SigningKey, VerifierKey};
use ledger::statement::{format_rfc3339_ms, Statement};
use serde_json::json;

/// Requests granted through the API: four records each.
const REQUESTS: usize = 250;

/// One log, made once for all the tests of this file; the server is stopped after.
struct Fixture {
    root: PathBuf,
    data: PathBuf,
    export: PathBuf,
    checkpoint: PathBuf,
    /// A checkpoint the server published halfway, and its size.
    older_checkpoint: PathBuf,
    older_size: u64,
    log_key: String,
    origin: String,
    size: u64,
    bot: SigningKey,
    /// A reviewer whose key the admin revoked.
    dave: SigningKey,
    /// `grantline verify --server` against the live server.
    server_verify: Output,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(build)
}

fn build() -> Fixture {
    // The fixture outlives the tests (a static), so earlier runs' directories are removed here.
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    for entry in std::fs::read_dir(tmp).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with("audit_tamper-") {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    let root = tmp.join(format!("audit_tamper-{}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap();
    let data = root.join("data");
    let server = Server::start(&data);
    let info = server.log();
    let cast = cast(&server, &root);
    let admin = server.admin();
    let dave = SigningKey::generate("dave").unwrap();
    post_ok(
        &server,
        &info.origin,
        &admin,
        "register-dave",
        "actor.registered",
        json!({"actor": "dave", "key": dave.verifier().to_string(), "roles": ["reviewer"]}),
    );
    grant_many(&server, &cast, "gpu", REQUESTS / 2);
    let older = server.get("/v1/checkpoint").text().unwrap();
    let older_size = Checkpoint::open(older.as_bytes(), &VerifierKey::parse(&info.log_key).unwrap()).unwrap().size;
    let older_checkpoint = root.join("older-checkpoint.txt");
    std::fs::write(&older_checkpoint, older).unwrap();
    grant_many(&server, &cast, "more", REQUESTS - REQUESTS / 2);
    open_pending(&server, &cast, "late");
    post_ok(&server, &info.origin, &dave, "dave-approves-late", "request.approved", json!({"request": "late"}));
    post_ok(
        &server,
        &info.origin,
        &admin,
        "revoke-dave",
        "key.revoked",
        json!({"actor": "dave", "key": dave.verifier().to_string(), "reason": "lost laptop"}),
    );
    open_pending(&server, &cast, "later");
    // Genesis, the cast (6), dave, the grants (4 per request) and the last four events.
    let size = wait_for_size(&server, 1 + 6 + 1 + 4 * REQUESTS as u64 + 4);
    assert!(size >= 1000);

    let state = root.join("server-auditor.json");
    let server_verify =
        grantline(&["verify", "--server", &server.url, "--log-key", &info.log_key, "--state", state.to_str().unwrap()]);
    let (export, checkpoint) = export_server(&server, &root);
    server.stop();
    // The export of the data directory is the same file.
    let from_data = root.join("export-data.jsonl");
    assert_ok(&grantline(&["export", "--data", data.to_str().unwrap(), "--out", from_data.to_str().unwrap()]));
    assert_eq!(std::fs::read(&from_data).unwrap(), std::fs::read(&export).unwrap());
    Fixture {
        root,
        data,
        export,
        checkpoint,
        older_checkpoint,
        older_size,
        log_key: info.log_key,
        origin: info.origin,
        size,
        bot: cast.bot,
        dave,
        server_verify,
    }
}

impl Fixture {
    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn records(&self) -> Vec<RecordJson> {
        read_export(&self.export)
    }

    /// `grantline verify --export FILE --checkpoint CP --log-key K [--state S]`.
    fn verify_export(&self, export: &Path, checkpoint: &Path, state: Option<&Path>) -> Output {
        let mut args = vec![
            "verify",
            "--export",
            export.to_str().unwrap(),
            "--checkpoint",
            checkpoint.to_str().unwrap(),
            "--log-key",
            &self.log_key,
        ];
        if let Some(state) = state {
            args.extend(["--state", state.to_str().unwrap()]);
        }
        grantline(&args)
    }

    /// Writes tampered records to a new export named `name` and verifies it.
    fn verify_tampered(&self, name: &str, records: &[RecordJson]) -> Output {
        let path = self.path(name);
        write_export(&path, records);
        self.verify_export(&path, &self.checkpoint, None)
    }

    /// A statement signed by `key`, never accepted by the server.
    fn forged(&self, key: &SigningKey, id: &str, kind: &str, data: serde_json::Value, at_ms: i64) -> Vec<u8> {
        let st = Statement {
            ledger: self.origin.clone(),
            id: id.to_string(),
            actor: key.name().to_string(),
            issued_at: format_rfc3339_ms(at_ms),
            kind: kind.to_string(),
            data,
        };
        Envelope::sign(st.to_payload(), &[key]).canonical_json()
    }
}

#[test]
fn an_untampered_log_verifies_from_the_server_the_export_the_data_dir_and_an_import() {
    let f = fixture();
    let out = assert_ok(&f.server_verify);
    assert!(out.contains(&format!("verified: {} events", f.size)), "{out}");
    assert!(out.contains(&format!("{REQUESTS} grants")), "{out}");

    let out = assert_ok(&f.verify_export(&f.export, &f.checkpoint, None));
    assert!(out.contains(&format!("verified: {} events", f.size)), "{out}");

    let out = assert_ok(&grantline(&[
        "verify",
        "--data",
        f.data.to_str().unwrap(),
        "--checkpoint",
        f.checkpoint.to_str().unwrap(),
        "--log-key",
        &f.log_key,
    ]));
    assert!(out.contains(&format!("verified: {} events", f.size)), "{out}");

    let restored = f.path("restored");
    assert_ok(&grantline(&[
        "import",
        f.export.to_str().unwrap(),
        "--data",
        restored.to_str().unwrap(),
        "--checkpoint",
        f.checkpoint.to_str().unwrap(),
        "--log-key",
        &f.log_key,
    ]));
    let out = assert_ok(&grantline(&[
        "verify",
        "--data",
        restored.to_str().unwrap(),
        "--checkpoint",
        f.checkpoint.to_str().unwrap(),
        "--log-key",
        &f.log_key,
    ]));
    assert!(out.contains(&format!("verified: {} events", f.size)), "{out}");
}

#[test]
fn a_flipped_byte_in_a_stored_record_is_a_signature_failure_at_its_seq() {
    let f = fixture();
    let mut records = f.records();
    let seq = 500;
    let mut leaf = ledger::b64::decode(&records[seq].leaf).unwrap();
    // A byte inside the base64 payload of the envelope.
    let at = ledger::record::LEAF_HEADER_BYTES
        + r#"{"payloadType":"application/vnd.grantline.event+json","payload":""#.len()
        + 30;
    leaf[at] = if leaf[at] == b'A' { b'B' } else { b'A' };
    records[seq].leaf = ledger::b64::encode(&leaf);
    assert_fails(&f.verify_tampered("flipped.jsonl", &records), exit::SIGNATURE.into(), Some(seq as u64));
}

#[test]
fn swapped_records_break_the_chain_at_the_first() {
    let f = fixture();
    let mut records = f.records();
    records.swap(600, 601);
    assert_fails(&f.verify_tampered("swapped.jsonl", &records), exit::CHAIN.into(), Some(600));
}

#[test]
fn a_truncated_tail_is_a_consistency_failure_against_the_saved_state() {
    let f = fixture();
    let state = f.path("truncate-auditor.json");
    assert_ok(&f.verify_export(&f.export, &f.checkpoint, Some(&state)));
    let saved = std::fs::read(&state).unwrap();

    let records = f.records();
    let cut = records.len() - 20;
    let truncated = f.path("truncated.jsonl");
    write_export(&truncated, &records[..cut]);
    // With the full checkpoint, or with an honest older one that matches a shorter log.
    assert_fails(&f.verify_export(&truncated, &f.checkpoint, Some(&state)), exit::CONSISTENCY.into(), Some(cut as u64));
    let older = f.path("truncated-older.jsonl");
    write_export(&older, &records[..f.older_size as usize]);
    assert_ok(&f.verify_export(&older, &f.older_checkpoint, None));
    assert_fails(
        &f.verify_export(&older, &f.older_checkpoint, Some(&state)),
        exit::CONSISTENCY.into(),
        Some(f.older_size),
    );
    assert_eq!(std::fs::read(&state).unwrap(), saved, "a failed run leaves the state alone");
}

#[test]
fn a_record_signed_with_a_revoked_key_is_a_policy_failure() {
    let f = fixture();
    let mut records = f.records();
    let revoked = find(&records, "key.revoked", "revoke-dave");
    let later = find(&records, "access.requested", "open-later");
    assert!(later > revoked);
    let at_ms = record_of(&records[later]).received_at_ms;
    let env = f.forged(&f.dave, "dave-approves-later", "request.approved", json!({"request": "later"}), at_ms);
    insert(&mut records, later + 1, &env);
    let out = f.verify_tampered("revoked.jsonl", &records);
    assert_fails(&out, exit::POLICY.into(), Some(later as u64 + 1));
    assert!(stderr(&out).contains("revoked"), "{}", stderr(&out));
}

#[test]
fn a_grant_without_quorum_by_an_unauthorized_key_is_a_policy_failure() {
    let f = fixture();
    let mut records = f.records();
    let at = 300;
    let at_ms = record_of(&records[at - 1]).received_at_ms;
    let env = f.forged(
        &f.bot,
        "forged-grant",
        "grant.issued",
        json!({"grant": "forged", "project": "evil-feedstock", "resource": RESOURCE, "pull_request": true}),
        at_ms,
    );
    insert(&mut records, at, &env);
    assert_fails(&f.verify_tampered("forged-grant.jsonl", &records), exit::POLICY.into(), Some(at as u64));
}

#[test]
fn a_changed_checkpoint_root_is_a_checkpoint_failure() {
    let f = fixture();
    let note = std::fs::read_to_string(&f.checkpoint).unwrap();
    let key = VerifierKey::parse(&f.log_key).unwrap();
    let cp = Checkpoint::open(note.as_bytes(), &key).unwrap();
    let mut other_root = cp.root;
    other_root[0] ^= 0x80;
    // The note's root line edited: the signature no longer verifies.
    let edited = note.replacen(&ledger::b64::encode(cp.root), &ledger::b64::encode(other_root), 1);
    assert_ne!(edited, note);
    let path = f.path("edited-checkpoint.txt");
    std::fs::write(&path, edited).unwrap();
    assert_fails(&f.verify_export(&f.export, &path, None), exit::CHECKPOINT.into(), None);
    // Signed by the log key itself, over a root the leaves do not have.
    let log_signing = SigningKey::read_file(&f.data.join("log.key")).unwrap();
    let resigned = Checkpoint { root: other_root, ..cp }.sign(&log_signing).unwrap();
    let path = f.path("resigned-checkpoint.txt");
    std::fs::write(&path, resigned).unwrap();
    let out = f.verify_export(&f.export, &path, None);
    assert_fails(&out, exit::CHECKPOINT.into(), None);
    assert!(stderr(&out).contains("Merkle root"), "{}", stderr(&out));
}

#[test]
fn a_tampered_export_is_not_imported() {
    let f = fixture();
    let mut records = f.records();
    records.swap(10, 11);
    let path = f.path("import-swapped.jsonl");
    write_export(&path, &records);
    let target = f.path("never");
    let out = grantline(&[
        "import",
        path.to_str().unwrap(),
        "--data",
        target.to_str().unwrap(),
        "--checkpoint",
        f.checkpoint.to_str().unwrap(),
        "--log-key",
        &f.log_key,
    ]);
    assert_fails(&out, exit::CHAIN.into(), Some(10));
    assert!(!target.exists());
}

#[test]
fn usage_errors_are_explained() {
    let f = fixture();
    // No checkpoint for an export.
    let out = grantline(&["verify", "--export", f.export.to_str().unwrap(), "--log-key", &f.log_key]);
    assert_fails(&out, exit::USAGE.into(), None);
    assert!(stderr(&out).contains("--checkpoint"), "{}", stderr(&out));
    // Two sources at once.
    let out = grantline(&[
        "verify",
        "--export",
        f.export.to_str().unwrap(),
        "--data",
        f.data.to_str().unwrap(),
        "--log-key",
        &f.log_key,
    ]);
    assert_fails(&out, 2, None);
    // Another log's key.
    let other = SigningKey::generate(&f.origin).unwrap().verifier().to_string();
    let out = f.verify_export(&f.export, &f.checkpoint, None);
    assert_ok(&out);
    let out = grantline(&[
        "verify",
        "--export",
        f.export.to_str().unwrap(),
        "--checkpoint",
        f.checkpoint.to_str().unwrap(),
        "--log-key",
        &other,
    ]);
    assert_fails(&out, exit::CHECKPOINT.into(), None);
    // The help documents the exit codes.
    let help = assert_ok(&grantline(&["verify", "--help"]));
    assert!(help.contains("13 consistency") && help.contains("14 policy"), "{help}");
}
