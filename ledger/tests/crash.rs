//! kill -9 during appends: every acknowledged batch survives, and a batch is all or nothing.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use ledger::store::{Entry, Store};

const CHILD_ENV: &str = "GRANTLINE_LEDGER_CRASH_CHILD_DIR";
const BATCH: u64 = 7;
const ACKS_BEFORE_KILL: usize = 25;

/// In the child process: append batches forever, printing each acknowledged size.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return; // Only does something when started by the test below.
    };
    let store = Store::open(dir.as_ref()).unwrap();
    for b in 0u64.. {
        let entries: Vec<Entry> = (0..BATCH)
            .map(|i| Entry {
                id: format!("k{b}-{i}"),
                envelope: vec![b'e'; 500 + i as usize],
                received_at_ms: b as i64,
            })
            .collect();
        store.append(&entries).unwrap();
        println!("acked {}", store.size());
    }
}

#[test]
fn acknowledged_batches_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut acked = 0u64;
    let mut acks = 0;
    for line in BufReader::new(stdout).lines() {
        if let Some(n) = line.unwrap().strip_prefix("acked ") {
            acked = n.parse().unwrap();
            acks += 1;
            if acks == ACKS_BEFORE_KILL {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    assert!(acks == ACKS_BEFORE_KILL, "the child stopped early");

    let store = Store::open(dir.path()).unwrap();
    let size = store.size();
    eprintln!("{acks} acks: acknowledged {acked} records, {size} survived kill -9");
    assert!(size >= acked, "acknowledged {acked} records, {size} survived");
    assert_eq!(size % BATCH, 0, "a batch is all or nothing");
    let mut prev = [0u8; 32];
    let mut tree = ledger::merkle::MemoryTree::new();
    for seq in 0..size {
        let r = store.get(seq).unwrap().unwrap();
        assert_eq!(r.prev, prev);
        prev = r.chain_hash();
        tree.push(r.leaf_hash());
        assert_eq!(store.get_by_id(&format!("k{}-{}", seq / BATCH, seq % BATCH)).unwrap().unwrap().seq, seq);
    }
    assert_eq!(store.root_at(size).unwrap(), tree.root());
    // And the log goes on from there.
    store.append(&[Entry { id: "after".into(), envelope: b"{}".to_vec(), received_at_ms: 0 }]).unwrap();
    assert_eq!(store.get(size).unwrap().unwrap().prev, prev);
}
