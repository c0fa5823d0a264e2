//! Helpers for the crash harness and the hygiene tests: a server process that can be killed
//! (SIGKILL) or die (abort) and be restarted, and a complete verification of a served log.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use api::json::{RecordJson, RecordPage};
use api::testing::{verify_signers, Fold};
use ledger::checkpoint::Checkpoint;
use ledger::dsse::Envelope;
use ledger::keys::VerifierKey;
use ledger::merkle::MemoryTree;
use ledger::record::Record;
use ledger::statement::Statement;
use projector::State;

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_grantline");
const START_TIMEOUT: Duration = Duration::from_secs(60);
const EXIT_TIMEOUT: Duration = Duration::from_secs(60);

/// A `grantline serve` process on 127.0.0.1:0 over `data` (made with `grantline init` when new).
pub(crate) struct Proc {
    child: Child,
    pub url: String,
    pub log_path: PathBuf,
}

impl Proc {
    pub(crate) fn start(data: &Path, env: &[(&str, &str)]) -> Proc {
        let log_path = data.with_extension("server.log");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).unwrap();
        if !data.join("log.key").exists() && !data.join("db").exists() {
            // `serve --data DIR` refuses a directory that is not a ledger yet.
            let out = Command::new(BIN)
                .args(["init", "--origin", "localhost/grantline", "--admin", "admin", "--data"])
                .arg(data)
                .arg("--admin-key-out")
                .arg(data.join("admin.key"))
                .env_remove("GRANTLINE_FAULT")
                .stdin(Stdio::null())
                .output()
                .expect("spawn grantline init");
            assert!(out.status.success(), "grantline init: {}", String::from_utf8_lossy(&out.stderr));
        }
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--addr", "127.0.0.1:0", "--data"]).arg(data);
        cmd.env("RUST_LOG", "warn").env_remove("GRANTLINE_FAULT");
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::from(log));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn grantline serve");
        let rx = crate::common::stdout_lines(&mut child);
        let url = loop {
            match rx.recv_timeout(START_TIMEOUT) {
                Ok(line) => {
                    if let Some(url) = line.strip_prefix("grantline listening on ") {
                        break url.to_string();
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "server did not start; its log:\n{}",
                        std::fs::read_to_string(&log_path).unwrap_or_default()
                    );
                }
            }
        };
        Proc { child, url, log_path }
    }

    /// SIGKILL (what `kill -9` sends), then reap it.
    pub(crate) fn kill9(mut self) {
        self.child.kill().unwrap();
        let status = self.child.wait().unwrap();
        assert!(!status.success());
    }

    /// Waits for the process to exit on its own (an injected abort).
    pub(crate) fn wait_exit(mut self) -> ExitStatus {
        let deadline = Instant::now() + EXIT_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the server did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn admin_key(data: &Path) -> ledger::keys::SigningKey {
        ledger::keys::SigningKey::read_file(&data.join("admin.key")).unwrap()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a fully verified log says about each statement id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Logged {
    pub seq: u64,
    pub leaf_hash: String,
    pub chain_hash: String,
    /// Records with this statement id: exactly one in a sound log.
    pub copies: usize,
}

pub(crate) struct Verified {
    pub size: u64,
    pub by_id: HashMap<String, Logged>,
    pub state: State,
}

/// Reads the whole log from `url` and verifies it completely against the pinned `log_key`:
/// every leaf decodes and matches its served hashes; seqs are dense from 0; every `prev` is
/// the chain hash of the record before; every envelope's signatures verify with keys active
/// at that seq and the projector accepts every record in order (the log proves its policy);
/// the RFC 6962 root over all leaves equals the root of the served checkpoint, which is
/// signed by `log_key`. Panics naming the first bad seq.
pub(crate) fn verify_log(url: &str, log_key: &VerifierKey) -> Verified {
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
    let note = client.get(format!("{url}/v1/checkpoint")).send().unwrap().text().unwrap();
    let checkpoint = Checkpoint::open(note.as_bytes(), log_key).expect("checkpoint signed by the log key");
    let mut records: Vec<RecordJson> = Vec::new();
    while (records.len() as u64) < checkpoint.size {
        let page: RecordPage =
            client.get(format!("{url}/v1/events?from={}&limit=1000", records.len())).send().unwrap().json().unwrap();
        assert!(!page.records.is_empty(), "the log ends at {} below its checkpoint", records.len());
        records.extend(page.records);
    }
    records.truncate(checkpoint.size as usize);

    let mut fold = Fold::new();
    let mut tree = MemoryTree::new();
    let mut prev = [0u8; 32];
    let mut by_id: HashMap<String, Logged> = HashMap::new();
    for (index, rj) in records.iter().enumerate() {
        let seq = index as u64;
        assert_eq!(rj.seq, seq, "seqs are not dense at {seq}");
        let leaf = ledger::b64::decode(&rj.leaf).unwrap();
        let rec = Record::decode(&leaf).unwrap_or_else(|e| panic!("record {seq}: leaf does not decode: {e}"));
        assert_eq!(rec.seq, seq, "record {seq}: the leaf names seq {}", rec.seq);
        assert_eq!(rec.prev, prev, "record {seq}: prev is not the chain hash of record {}", seq.wrapping_sub(1));
        assert_eq!(ledger::b64::encode(rec.chain_hash()), rj.chain_hash, "record {seq}: chain hash");
        assert_eq!(ledger::b64::encode(rec.leaf_hash()), rj.leaf_hash, "record {seq}: leaf hash");
        prev = rec.chain_hash();
        tree.push(rec.leaf_hash());

        let env = Envelope::parse(rec.envelope()).unwrap_or_else(|e| panic!("record {seq}: envelope: {e}"));
        let statement = Statement::parse(&env.payload).unwrap_or_else(|e| panic!("record {seq}: statement: {e}"));
        let signers =
            verify_signers(fold.state(), &env, &statement).unwrap_or_else(|e| panic!("record {seq}: signature: {e}"));
        fold.admit(&statement, &signers, rec.received_at_ms)
            .unwrap_or_else(|r| panic!("record {seq}: the projector rejects it on replay: {r}"));
        let entry = by_id.entry(statement.id.clone()).or_insert(Logged {
            seq,
            leaf_hash: rj.leaf_hash.clone(),
            chain_hash: rj.chain_hash.clone(),
            copies: 0,
        });
        entry.copies += 1;
    }
    let state = fold.into_state();
    assert_eq!(state.log_key(), Some(log_key), "the genesis names another log key");
    assert_eq!(tree.root(), checkpoint.root, "the Merkle root over the leaves differs from the checkpoint's");
    for (id, logged) in &by_id {
        assert_eq!(logged.copies, 1, "statement {id} is logged {} times", logged.copies);
    }
    Verified { size: checkpoint.size, by_id, state }
}
