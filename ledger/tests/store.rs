//! The sled store: dense seqs and chain links across reopen, idempotency by statement id,
//! reads, and proofs that verify and agree with the in-memory tree.

use std::path::Path;

use ledger::dsse::Envelope;
use ledger::keys::SigningKey;
use ledger::merkle::{self, MemoryTree};
use ledger::record::Record;
use ledger::statement::Statement;
use ledger::store::{AppendOutcome, Entry, Store, StoreError, RANGE_RECORDS_MAX};

fn key() -> SigningKey {
    SigningKey::from_seed("bot", [9; 32]).unwrap()
}

fn envelope(id: &str, note: &str) -> Vec<u8> {
    let st = Statement {
        ledger: "ledger.example/ci".into(),
        id: id.into(),
        actor: "bot".into(),
        issued_at: "2026-01-02T03:04:05Z".into(),
        kind: "request.approved".into(),
        data: serde_json::json!({ "request": "r1", "note": note }),
    };
    Envelope::sign(st.to_payload(), &[&key()]).canonical_json()
}

fn entry(id: &str) -> Entry {
    Entry { id: id.into(), envelope: envelope(id, "ok"), received_at_ms: 1_700_000_000_000 }
}

fn appended(outcomes: &[AppendOutcome]) -> Vec<Record> {
    outcomes
        .iter()
        .filter_map(|o| match o {
            AppendOutcome::Appended(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

/// Reads the whole log and checks seqs, chain links and the Merkle root against a
/// MemoryTree built from the records.
fn check_log(store: &Store) -> MemoryTree {
    let mut tree = MemoryTree::new();
    let mut prev = [0u8; 32];
    let mut from = 0;
    loop {
        let page = store.range(from, 97).unwrap();
        if page.is_empty() {
            break;
        }
        for r in page {
            assert_eq!(r.seq, tree.size(), "seqs are dense");
            assert_eq!(r.prev, prev, "record {} links to the one before", r.seq);
            assert_eq!(Record::decode(r.leaf()).unwrap(), r);
            prev = r.chain_hash();
            tree.push(r.leaf_hash());
            from = r.seq + 1;
        }
    }
    assert_eq!(tree.size(), store.size());
    assert_eq!(store.head(), prev);
    assert_eq!(store.tip(), (store.size(), prev));
    for size in 0..=store.size() {
        assert_eq!(store.root_at(size).unwrap(), tree.root_at(size).unwrap(), "root at {size}");
    }
    tree
}

fn open(path: &Path) -> Store {
    Store::open(path).unwrap()
}

#[test]
fn append_drop_reopen_append_keeps_seqs_dense_and_the_chain_linked() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        assert_eq!(store.size(), 0);
        assert_eq!(store.head(), [0u8; 32]);
        assert_eq!(store.root_at(0).unwrap(), merkle::empty_root());
        let first = appended(&store.append(&[entry("a"), entry("b"), entry("c")]).unwrap());
        assert_eq!(first.iter().map(|r| r.seq).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(first[0].prev, [0u8; 32]);
        assert_eq!(first[1].prev, first[0].chain_hash());
        assert_eq!(store.size(), 3);
        check_log(&store);
    }
    // Reopen several times, with batches of different sizes: Merkle tiles (256 hashes)
    // are crossed and rewritten, and every reopen resumes at the right seq and head.
    let mut n = 3;
    for (round, batch) in [1usize, 150, 2, 300, 40].into_iter().enumerate() {
        let store = open(dir.path());
        assert_eq!(store.size(), n);
        let before = check_log(&store);
        let entries: Vec<Entry> = (0..batch).map(|i| entry(&format!("r{round}-{i}"))).collect();
        let new = appended(&store.append(&entries).unwrap());
        assert_eq!(new.len(), batch);
        assert_eq!(new[0].seq, n);
        assert_eq!(
            new[0].prev,
            before.size().checked_sub(1).map(|s| store.get(s).unwrap().unwrap().chain_hash()).unwrap()
        );
        n += batch as u64;
        let after = check_log(&store);
        // The old tree is a prefix of the new one.
        let proof = store.consistency_proof(before.size(), n).unwrap();
        merkle::verify_consistency(before.size(), n, &before.root(), &after.root(), &proof).unwrap();
    }
    let store = open(dir.path());
    assert_eq!(store.size(), n);
    check_log(&store);
}

#[test]
fn idempotency_by_statement_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let out = store.append(&[entry("x"), entry("y")]).unwrap();
    let x = appended(&out)[0].clone();

    // Same id, same bytes: the original record, nothing new.
    let again = store.append(&[entry("x")]).unwrap();
    assert_eq!(again, vec![AppendOutcome::Duplicate(x.clone())]);
    assert_eq!(store.size(), 2);

    // Same id, other bytes: a conflict naming the original seq; size and head unchanged.
    let (size, head) = store.tip();
    let root = store.root_at(size).unwrap();
    let other = Entry { id: "x".into(), envelope: envelope("x", "different"), received_at_ms: 5 };
    assert_eq!(store.append(std::slice::from_ref(&other)).unwrap(), vec![AppendOutcome::Conflict { seq: 0 }]);
    assert_eq!(store.tip(), (size, head));
    assert_eq!(store.root_at(size).unwrap(), root);
    assert_eq!(store.get_by_id("x").unwrap().unwrap(), x);

    // Within one batch: duplicates and conflicts of an entry earlier in the same batch.
    let z = entry("z");
    let z_other = Entry { envelope: envelope("z", "other"), ..z.clone() };
    let out = store.append(&[z.clone(), z.clone(), other, z_other, entry("w")]).unwrap();
    let AppendOutcome::Appended(z_rec) = &out[0] else { panic!("{out:?}") };
    assert_eq!(z_rec.seq, 2);
    assert_eq!(out[1], AppendOutcome::Duplicate(z_rec.clone()));
    assert_eq!(out[2], AppendOutcome::Conflict { seq: 0 });
    assert_eq!(out[3], AppendOutcome::Conflict { seq: 2 });
    let AppendOutcome::Appended(w_rec) = &out[4] else { panic!("{out:?}") };
    assert_eq!(w_rec.seq, 3, "seqs stay dense around duplicates and conflicts");
    assert_eq!(w_rec.prev, z_rec.chain_hash());
    assert_eq!(store.size(), 4);
    check_log(&store);

    // And after a reopen.
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.append(&[entry("z")]).unwrap(), vec![AppendOutcome::Duplicate(z_rec.clone())]);
    assert_eq!(store.size(), 4);
}

#[test]
fn reads_by_seq_range_and_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let entries: Vec<Entry> = (0..20).map(|i| entry(&format!("e{i}"))).collect();
    let records = appended(&store.append(&entries).unwrap());
    assert_eq!(store.get(5).unwrap().unwrap(), records[5]);
    assert_eq!(store.get(20).unwrap(), None);
    assert_eq!(store.get(u64::MAX).unwrap(), None);
    assert_eq!(store.get_by_id("e7").unwrap().unwrap(), records[7]);
    assert_eq!(store.get_by_id("nope").unwrap(), None);
    assert_eq!(store.get_by_id("").unwrap(), None);
    assert_eq!(store.range(0, 100).unwrap(), records);
    assert_eq!(store.range(18, 100).unwrap(), records[18..]);
    assert_eq!(store.range(3, 4).unwrap(), records[3..7]);
    assert!(store.range(20, 10).unwrap().is_empty());
    assert!(store.range(u64::MAX, usize::MAX).unwrap().is_empty());
    assert!(store.range(0, 0).unwrap().is_empty());
    // The envelope round-trips byte for byte.
    assert_eq!(records[3].envelope(), entries[3].envelope.as_slice());
    assert_eq!(records[3].received_at_ms, entries[3].received_at_ms);
    let env = Envelope::parse(records[3].envelope()).unwrap();
    assert_eq!(env.canonical_json(), entries[3].envelope);
    assert_eq!(Statement::parse(&env.payload).unwrap().id, "e3");
}

#[test]
fn range_is_capped() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let entries: Vec<Entry> = (0..RANGE_RECORDS_MAX as u64 + 5)
        .map(|i| Entry { id: format!("n{i}"), envelope: b"{}".to_vec(), received_at_ms: 0 })
        .collect();
    for chunk in entries.chunks(ledger::store::BATCH_ENTRIES_MAX) {
        store.append(chunk).unwrap();
    }
    assert_eq!(store.range(0, usize::MAX).unwrap().len(), RANGE_RECORDS_MAX);
}

#[test]
fn proofs_from_the_store_verify() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // 608 records, about 1,200 stored hashes: proofs read full tiles from sled and the last
    // tile from memory.
    for batch in [1usize, 2, 5, 30, 1, 70, 199, 300] {
        let base = store.size();
        let entries: Vec<Entry> = (0..batch).map(|i| entry(&format!("p{base}-{i}"))).collect();
        store.append(&entries).unwrap();
    }
    let tree = check_log(&store);
    let n = store.size();
    for size in 1..=n {
        let root = store.root_at(size).unwrap();
        for index in (0..size).step_by(7).chain([size - 1]) {
            let leaf = store.get(index).unwrap().unwrap().leaf_hash();
            let proof = store.inclusion_proof(index, size).unwrap();
            assert_eq!(proof, tree.inclusion_proof(index, size).unwrap());
            merkle::verify_inclusion(index, size, &leaf, &proof, &root).unwrap();
        }
        for old in (0..=size).step_by(5).chain([size]) {
            let proof = store.consistency_proof(old, size).unwrap();
            let old_root = store.root_at(old).unwrap();
            merkle::verify_consistency(old, size, &old_root, &root, &proof).unwrap();
        }
    }
    // Beyond the log: typed errors.
    assert!(matches!(store.root_at(n + 1), Err(StoreError::Merkle(_))));
    assert!(matches!(store.inclusion_proof(n, n), Err(StoreError::Merkle(_))));
    assert!(matches!(store.inclusion_proof(0, n + 1), Err(StoreError::Merkle(_))));
    assert!(matches!(store.consistency_proof(3, n + 1), Err(StoreError::Merkle(_))));
    assert!(matches!(store.consistency_proof(4, 3), Err(StoreError::Merkle(_))));
    assert!(matches!(store.inclusion_proof(u64::MAX, u64::MAX), Err(StoreError::Merkle(_))));
}

#[test]
fn meta_blobs_persist_outside_the_log() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        store.append(&[entry("a")]).unwrap();
        assert_eq!(store.get_meta("snapshot").unwrap(), None);
        store.put_meta("snapshot", b"state at 1").unwrap();
        store.put_meta("snapshot", b"state at 1, again").unwrap();
        assert_eq!(store.size(), 1);
    }
    let store = open(dir.path());
    assert_eq!(store.get_meta("snapshot").unwrap().unwrap(), b"state at 1, again");
    assert_eq!(store.size(), 1);
    check_log(&store);
}

#[test]
fn readers_see_only_whole_published_batches_while_a_writer_appends() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            for b in 0..40 {
                let entries: Vec<Entry> = (0..5).map(|i| entry(&format!("c{b}-{i}"))).collect();
                store.append(&entries).unwrap();
            }
        })
    };
    let mut last = 0;
    while !writer.is_finished() || last < 200 {
        let size = store.size();
        assert!(size >= last, "size {size} after {last}");
        assert_eq!(size % 5, 0, "only whole batches are published");
        if size > 0 {
            // Everything up to the published size is readable and provable.
            assert!(store.get(size - 1).unwrap().is_some());
            let root = store.root_at(size).unwrap();
            let leaf = store.get(size - 1).unwrap().unwrap().leaf_hash();
            let proof = store.inclusion_proof(size - 1, size).unwrap();
            merkle::verify_inclusion(size - 1, size, &leaf, &proof, &root).unwrap();
        }
        last = size;
    }
    writer.join().unwrap();
    check_log(&store);
}
