//! The witness (`grantline witness serve`, DESIGN.md section 12, C2SP tlog-witness v1.0.0)
//! against a hostile client: the real binary over real sockets, checkpoints signed here with
//! the ledger crate (no log server), and every cosignature checked by an implementation we
//! did not write (`tests/python/check_cosignature.py`, Python's `cryptography`). The Python
//! checks skip with a notice when python3 or `cryptography` is missing, unless CI=true.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Barrier, OnceLock};
use std::time::Duration;

use ledger::checkpoint::Checkpoint;
use ledger::cosignature::{verified_cosigners, CosignerKey};
use ledger::keys::SigningKey;
use ledger::merkle::{leaf_hash, MemoryTree};
use ledger::{b64, Hash};

use common::BIN;
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/check_cosignature.py");
const ORIGIN: &str = "log.example/witnessed";
const WITNESS_NAME: &str = "witness.example/w1";
/// The witness's body limit (`WITNESS_BODY_BYTES_MAX` in api/src/limits.rs).
const BODY_BYTES_MAX: usize = 64 * 1024;
const TEXT_PLAIN: &str = "text/plain; charset=utf-8";
const TLOG_SIZE: &str = "text/x.tlog.size";

/// A temp directory with a witness key (made by `grantline witness keygen`), a log key and
/// the witness's data directory.
struct Fixture {
    dir: tempfile::TempDir,
    witness_key: PathBuf,
    witness: CosignerKey,
    log: SigningKey,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let witness_key = dir.path().join("w1.key");
        let out =
            Command::new(BIN).args(["witness", "keygen", WITNESS_NAME, "--out"]).arg(&witness_key).output().unwrap();
        assert!(out.status.success(), "witness keygen: {}", String::from_utf8_lossy(&out.stderr));
        let witness = CosignerKey::parse(String::from_utf8(out.stdout).unwrap().trim()).unwrap();
        Fixture { dir, witness_key, witness, log: SigningKey::generate(ORIGIN).unwrap() }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("witness-data")
    }

    fn log_arg(&self) -> String {
        format!("{ORIGIN}={}", self.log.verifier())
    }

    /// `grantline witness serve` with this fixture's key, log and data, plus `extra` args.
    fn command(&self, env: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(["witness", "serve", "--addr", "127.0.0.1:0", "--key"]).arg(&self.witness_key);
        cmd.arg("--log").arg(self.log_arg()).arg("--data").arg(self.data());
        cmd.env("RUST_LOG", "warn").env_remove("GRANTLINE_FAULT");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    fn start(&self) -> Witness {
        self.start_with_env(&[])
    }

    fn start_with_env(&self, env: &[(&str, &str)]) -> Witness {
        Witness::spawn(self.command(env), &self.dir.path().join("witness.log"))
    }

    /// The signed note of the checkpoint of `tree` at `size`.
    fn signed(&self, tree: &MemoryTree, size: u64) -> String {
        Checkpoint { origin: ORIGIN.into(), size, root: tree.root_at(size).unwrap() }.sign(&self.log).unwrap()
    }

    /// Checks a 200's cosignature on `note`: with our own code, then with Python's
    /// `cryptography`. Returns the cosignature's time.
    fn check_cosigned(&self, note: &str, answer: &Answer) -> u64 {
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(answer.content_type, TEXT_PLAIN);
        let cosigned = format!("{note}{}", answer.body);
        let found = verified_cosigners(cosigned.as_bytes(), std::slice::from_ref(&self.witness)).unwrap();
        assert_eq!(found.len(), 1, "the cosignature does not verify: {answer:?}");
        let now = api::now_ms() as u64 / 1000;
        assert!(found[0].time.abs_diff(now) < 600, "the cosignature's time {} is not now ({now})", found[0].time);
        if python_with_cryptography() {
            let body = note.split_once("\n\n").unwrap().0.to_string() + "\n";
            let body_path = self.dir.path().join("body.txt");
            let line_path = self.dir.path().join("line.txt");
            std::fs::write(&body_path, body).unwrap();
            std::fs::write(&line_path, &answer.body).unwrap();
            let out = Command::new("python3")
                .arg(SCRIPT)
                .arg(self.witness.to_string())
                .arg(&body_path)
                .arg(&line_path)
                .output()
                .unwrap();
            assert!(out.status.success(), "Python rejects the cosignature: {}", String::from_utf8_lossy(&out.stderr));
            let time: u64 = String::from_utf8(out.stdout).unwrap().trim().parse().unwrap();
            assert_eq!(time, found[0].time);
        }
        found[0].time
    }
}

fn python_with_cryptography() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        let ok = Command::new("python3")
            .args(["-c", "from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("python3 with cryptography is required under CI=true (pip install cryptography)");
            }
            eprintln!(
                "NOTICE: skipping the independent cosignature checks: python3 with cryptography is not installed"
            );
        }
        ok
    })
}

/// A running `grantline witness serve`.
struct Witness {
    child: Option<Child>,
    url: String,
    log_path: PathBuf,
}

/// What the witness answered.
#[derive(Debug)]
struct Answer {
    status: u16,
    content_type: String,
    body: String,
}

impl Witness {
    fn spawn(cmd: Command, log_path: &Path) -> Witness {
        let (child, url) = common::witness::spawn(cmd, log_path);
        Witness { child: Some(child), url, log_path: log_path.to_path_buf() }
    }

    fn post_raw(&self, body: impl Into<reqwest::blocking::Body>) -> reqwest::Result<Answer> {
        let resp = http().post(format!("{}/add-checkpoint", self.url)).body(body).send()?;
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or_default().to_string())
            .unwrap_or_default();
        Ok(Answer { status, content_type, body: resp.text()? })
    }

    fn post(&self, body: impl Into<reqwest::blocking::Body>) -> Answer {
        self.post_raw(body).unwrap()
    }

    fn add(&self, old: u64, proof: &[Hash], note: &str) -> Answer {
        self.post(request(old, proof, note))
    }

    /// SIGTERM, then wait for a clean exit.
    fn stop(mut self) {
        // The child stays in `self` until the signal is sent, so a failure here still kills it.
        let pid = self.child.as_ref().unwrap().id();
        let status = Command::new("kill").arg("-TERM").arg(pid.to_string()).status().unwrap();
        assert!(status.success());
        let status = self.child.take().unwrap().wait().unwrap();
        assert!(status.success(), "witness exited with {status}");
    }

    /// Waits for the process to end on its own (after an injected abort).
    fn wait_exit(mut self) -> ExitStatus {
        self.child.take().unwrap().wait().unwrap()
    }

    /// `kill -9`.
    fn kill(mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

impl Drop for Witness {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(60)).build().unwrap()
}

/// An `add-checkpoint` body.
fn request(old: u64, proof: &[Hash], note: &str) -> String {
    let mut body = format!("old {old}\n");
    for hash in proof {
        body.push_str(&b64::encode(hash));
        body.push('\n');
    }
    body.push('\n');
    body.push_str(note);
    body
}

/// A tree of `size` leaves: the first `shared` are the same in every tree, the rest depend
/// on `tag` (so two tags give two histories that agree up to `shared`).
fn tree(shared: u64, tag: u8, size: u64) -> MemoryTree {
    let mut t = MemoryTree::new();
    for i in 0..size {
        let leaf = if i < shared { [0, 0] } else { [tag, 1] };
        t.push(leaf_hash(&[&leaf[..], &i.to_be_bytes()].concat()));
    }
    t
}

fn conflict(answer: &Answer, size: u64) {
    assert_eq!(answer.status, 409, "{answer:?}");
    assert_eq!(answer.body, format!("{size}\n"), "{answer:?}");
    assert_eq!(answer.content_type, TLOG_SIZE, "{answer:?}");
}

fn refused(answer: &Answer, status: u16, says: &str) {
    assert_eq!(answer.status, status, "{answer:?}");
    assert!(answer.body.contains(says), "{answer:?} should say {says:?}");
}

#[test]
fn every_answer_of_the_spec() {
    let fx = Fixture::new();
    let w = fx.start();
    let t = tree(20, 1, 20);
    let (n1, n2) = (7, 13);
    let note1 = fx.signed(&t, n1);

    // Malformed bodies: 400, and nothing is cosigned.
    refused(&w.post("garbage"), 400, "malformed add-checkpoint body");
    refused(&w.post("old 0\n"), 400, "no empty line after the consistency proof");
    refused(&w.post(format!("old 0\n{note1}")), 400, "malformed");
    refused(&w.post(format!("old 0\n\n{}", note1.replacen("\n\n", "\n", 1))), 400, "malformed checkpoint");
    refused(&w.post(format!("old 00\n\n{note1}")), 400, "decimal without leading zeros");
    refused(&w.post(request(0, &[[7; 32]; 64], &note1)), 400, "more than 63");
    refused(&w.post(format!("old 0\nnot base64\n\n{note1}")), 400, "line 1 is not base64");
    refused(&w.post(vec![b'o', b'l', b'd', b' ', b'0', b'\n', b'\n', 0xff, b'\n']), 400, "malformed checkpoint");
    // Too large: 413.
    assert_eq!(w.post(format!("old 0\n\n{}", "a".repeat(BODY_BYTES_MAX + 1))).status, 413);

    // Signatures: 404 for an unknown origin, 403 for no trusted signature or a bad one.
    let stranger = SigningKey::generate("other.example/log").unwrap();
    let elsewhere = Checkpoint { origin: "other.example/log".into(), size: n1, root: t.root_at(n1).unwrap() };
    refused(&w.add(0, &[], &elsewhere.sign(&stranger).unwrap()), 404, "unknown log origin \"other.example/log\"");
    let impostor = SigningKey::generate(ORIGIN).unwrap();
    let forged = Checkpoint { origin: ORIGIN.into(), size: n1, root: t.root_at(n1).unwrap() };
    refused(&w.add(0, &[], &forged.sign(&impostor).unwrap()), 403, "no signature by a trusted key");
    let (text, sig) = note1.split_once("\n\n").unwrap();
    let (sig_name, sig_b64) = sig.trim_end().rsplit_once(' ').unwrap();
    let mut raw = b64::decode(sig_b64).unwrap();
    raw[10] ^= 1;
    let corrupted = format!("{text}\n\n{sig_name} {}\n", b64::encode(&raw));
    refused(&w.add(0, &[], &corrupted), 403, "does not verify");
    // The impostor's line next to the real one is ignored.
    let both = format!("{note1}{}", forged.sign(&impostor).unwrap().split_once("\n\n").unwrap().1);

    // old > size: 400. A proof with old = 0: 422. The empty tree's size with another root: 422.
    refused(&w.add(n1 + 1, &[], &note1), 400, "larger than the checkpoint's size");
    refused(&w.add(0, &t.consistency_proof(1, n1).unwrap(), &note1), 422, "must be empty");
    let not_empty = Checkpoint { origin: ORIGIN.into(), size: 0, root: [9; 32] }.sign(&fx.log).unwrap();
    refused(&w.add(0, &[], &not_empty), 422, "size 0 already has another root");

    // 0 → n1: 200, cosigned.
    fx.check_cosigned(&both, &w.add(0, &[], &both));
    // A stale old: 409 with the last cosigned size.
    conflict(&w.add(0, &[], &fx.signed(&t, n2)), n1);
    conflict(&w.add(n1 - 1, &t.consistency_proof(n1 - 1, n2).unwrap(), &fx.signed(&t, n2)), n1);
    // A wrong proof, no proof, a proof of another history: 422.
    let note2 = fx.signed(&t, n2);
    let mut bad = t.consistency_proof(n1, n2).unwrap();
    bad[0][0] ^= 1;
    refused(&w.add(n1, &bad, &note2), 422, "no consistency");
    refused(&w.add(n1, &[], &note2), 422, "no consistency");
    let other = tree(5, 2, 20);
    refused(&w.add(n1, &other.consistency_proof(n1, n2).unwrap(), &fx.signed(&other, n2)), 422, "no consistency");
    // The same size with another root: 422.
    refused(&w.add(n1, &[], &fx.signed(&other, n1)), 422, "already has another root");
    // The same size and root again, with a proof where none belongs: 422.
    refused(&w.add(n1, &t.consistency_proof(n1 - 1, n1).unwrap(), &note1), 422, "must be empty");
    // old > size is checked before old against the last size.
    refused(&w.add(n2 + 1, &[], &note2), 400, "larger than");

    // n1 → n2: 200; the same again: 200 (a retry); n2 → 20: 200.
    fx.check_cosigned(&note2, &w.add(n1, &t.consistency_proof(n1, n2).unwrap(), &note2));
    fx.check_cosigned(&note2, &w.add(n2, &[], &note2));
    conflict(&w.add(n1, &t.consistency_proof(n1, n2).unwrap(), &note2), n2);
    let note3 = fx.signed(&t, 20);
    fx.check_cosigned(&note3, &w.add(n2, &t.consistency_proof(n2, 20).unwrap(), &note3));
    // Other paths and methods are not the witness's.
    assert_eq!(http().get(format!("{}/add-checkpoint", w.url)).send().unwrap().status().as_u16(), 405);
    assert_eq!(http().post(format!("{}/checkpoint", w.url)).body("x").send().unwrap().status().as_u16(), 404);
    w.stop();
}

#[test]
fn the_last_cosigned_checkpoint_survives_a_restart() {
    let fx = Fixture::new();
    let t = tree(30, 1, 30);
    let w = fx.start();
    fx.check_cosigned(&fx.signed(&t, 5), &w.add(0, &[], &fx.signed(&t, 5)));
    w.stop();
    let w = fx.start();
    conflict(&w.add(0, &[], &fx.signed(&t, 9)), 5);
    refused(&w.add(5, &[], &fx.signed(&tree(2, 3, 5), 5)), 422, "another root");
    let note = fx.signed(&t, 9);
    fx.check_cosigned(&note, &w.add(5, &t.consistency_proof(5, 9).unwrap(), &note));
    // A kill -9 after an answer loses nothing either.
    w.kill();
    let w = fx.start();
    conflict(&w.add(0, &[], &note), 9);
    w.stop();
}

#[test]
fn a_crash_after_persisting_never_leads_to_a_second_root() {
    let fx = Fixture::new();
    let t = tree(40, 1, 40);
    let w = fx.start();
    let note4 = fx.signed(&t, 4);
    fx.check_cosigned(&note4, &w.add(0, &[], &note4));
    w.stop();

    // The witness dies right after persisting size 11 with t's root, before answering.
    let w = fx.start_with_env(&[("GRANTLINE_FAULT", "witness_abort_after_persist")]);
    let note11 = fx.signed(&t, 11);
    let proof = t.consistency_proof(4, 11).unwrap();
    assert!(w.post_raw(request(4, &proof, &note11)).is_err(), "the witness answered instead of aborting");
    let log_path = w.log_path.clone();
    let status = w.wait_exit();
    let log = std::fs::read_to_string(log_path).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(6), "expected SIGABRT, got {status}; log:\n{log}");
    }
    assert!(!status.success());
    assert!(log.contains("aborting after persisting"), "{log}");

    // Restarted without the fault, the witness remembers size 11 and its root.
    let w = fx.start();
    conflict(&w.post(request(4, &proof, &note11)), 11);
    // Another history at 11, with a valid proof from 4: never cosigned.
    let other = tree(4, 2, 40);
    let fork11 = fx.signed(&other, 11);
    conflict(&w.add(4, &other.consistency_proof(4, 11).unwrap(), &fork11), 11);
    refused(&w.add(11, &[], &fork11), 422, "size 11 already has another root");
    // The retry, with old = 11, gets the cosignature of the root persisted before the crash.
    fx.check_cosigned(&note11, &w.add(11, &[], &note11));
    refused(&w.add(11, &[], &fork11), 422, "another root");
    w.stop();
}

#[test]
fn concurrent_requests_for_one_old_size_cosign_exactly_one() {
    const RACERS: u8 = 8;
    const ROUNDS: u64 = 6;
    let fx = Fixture::new();
    let w = Arc::new(fx.start());
    let mut base = tree(0, 0, 0);
    let mut size = 0;
    for round in 0..ROUNDS {
        // Each racer extends the last cosigned tree its own way, to its own size: same size
        // with other roots (a fork) and different sizes (the rollback race of the spec).
        let racers: Vec<(MemoryTree, u64)> = (0..RACERS)
            .map(|r| {
                let mut t = base.clone();
                let new_size = size + 1 + u64::from(r % 3);
                for i in size..new_size {
                    t.push(leaf_hash(&[round as u8, r, i as u8]));
                }
                (t, new_size)
            })
            .collect();
        let barrier = Arc::new(Barrier::new(usize::from(RACERS)));
        let handles: Vec<_> = racers
            .iter()
            .map(|(t, new_size)| {
                let body = request(size, &t.consistency_proof(size, *new_size).unwrap(), &fx.signed(t, *new_size));
                let (w, barrier) = (w.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    w.post(body)
                })
            })
            .collect();
        let answers: Vec<Answer> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let winners: Vec<usize> = (0..answers.len()).filter(|&i| answers[i].status == 200).collect();
        assert_eq!(winners.len(), 1, "round {round}: {answers:?}");
        let (winner_tree, winner_size) = racers[winners[0]].clone();
        for (i, answer) in answers.iter().enumerate() {
            if i != winners[0] {
                conflict(answer, winner_size);
            }
        }
        let note = fx.signed(&winner_tree, winner_size);
        fx.check_cosigned(&note, &answers[winners[0]]);
        // The losers of the winner's size are never cosigned afterwards.
        for (t, s) in racers.iter().filter(|(_, s)| *s == winner_size) {
            let answer = w.add(winner_size, &[], &fx.signed(t, *s));
            if t.root() == winner_tree.root() {
                fx.check_cosigned(&note, &answer);
            } else {
                refused(&answer, 422, "another root");
            }
        }
        (base, size) = (winner_tree, winner_size);
    }
    match Arc::try_unwrap(w) {
        Ok(w) => w.stop(),
        Err(_) => panic!("a racer still holds the witness"),
    }
}

#[test]
fn keygen_writes_a_private_key_once_and_prints_the_verifier_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("w.key");
    let out = Command::new(BIN).args(["witness", "keygen", "witness.example/k", "--out"]).arg(&key).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8(out.stdout).unwrap();
    let vkey = CosignerKey::parse(printed.trim()).unwrap();
    assert_eq!(vkey.name(), "witness.example/k");
    assert_eq!(std::fs::read_to_string(dir.path().join("w.key.pub")).unwrap(), printed);
    let private = ledger::cosignature::Cosigner::read_file(&key).unwrap();
    assert_eq!(private.verifier(), vkey);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let before = std::fs::read(&key).unwrap();
    let again = Command::new(BIN).args(["witness", "keygen", "witness.example/k", "--out"]).arg(&key).output().unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("refusing to overwrite"));
    assert_eq!(std::fs::read(&key).unwrap(), before);
    let bad =
        Command::new(BIN).args(["witness", "keygen", "two words", "--out"]).arg(dir.path().join("x")).output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid key name"));
}

#[test]
fn serve_refuses_bad_configurations() {
    let fx = Fixture::new();
    let refuse = |cmd: &mut Command, says: &str| {
        let out = cmd.stdout(Stdio::null()).output().unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "stderr should say {says:?}: {stderr}");
    };
    // A log key not named after the origin.
    let mut cmd = fx.command(&[]);
    cmd.arg("--log").arg(format!("other.example/log={}", fx.log.verifier()));
    refuse(&mut cmd, "the key is named \"log.example/witnessed\", not \"other.example/log\"");
    // No '='.
    let mut cmd = fx.command(&[]);
    cmd.arg("--log").arg(fx.log.verifier().to_string());
    refuse(&mut cmd, "expected ORIGIN=VKEY");
    // An unknown fault.
    refuse(&mut fx.command(&[("GRANTLINE_FAULT", "abort_after_append:x")]), "unknown GRANTLINE_FAULT value");
    // A witness key others may read.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fx.witness_key, std::fs::Permissions::from_mode(0o644)).unwrap();
        refuse(&mut fx.command(&[]), "too open");
        std::fs::set_permissions(&fx.witness_key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    // A second witness over the same data directory.
    let w = fx.start();
    if cfg!(target_os = "linux") {
        refuse(&mut fx.command(&[]), "in use by another witness process");
    }
    w.stop();
    // A corrupt state file.
    let t = tree(3, 1, 3);
    let w = fx.start();
    fx.check_cosigned(&fx.signed(&t, 3), &w.add(0, &[], &fx.signed(&t, 3)));
    w.stop();
    for entry in std::fs::read_dir(fx.data()).unwrap() {
        std::fs::write(entry.unwrap().path(), b"grantline-witness-state/1\nnot a checkpoint\n").unwrap();
    }
    refuse(&mut fx.command(&[]), "is corrupt");
}
