//! One conformance suite for both storage backends: the sled store (`Store::open`) and the
//! PostgreSQL-backed replica (`Store::open_replica` over a `PgLog`). Every test here runs on
//! both: dense seqs and chain links across reopen, Merkle roots and proofs against an
//! in-memory tree and a naive RFC 6962 implementation, idempotency by id, reads, meta blobs,
//! and whole-batch publication under a concurrent writer. A PostgreSQL store is reopened twice
//! each time: on the same local directory, and on a brand-new empty one that must rebuild
//! everything from PostgreSQL alone. (It replaces the sled store's own test file: every test
//! of that file is one of these, run on both.)
//!
//! The PostgreSQL-only tests at the end: two replicas of one database (catch-up, the head's
//! compare-and-swap refusing a stale writer), a local replica that the database is behind or
//! disagrees with, the schema version, and rows that cannot be updated or deleted.
//!
//! The PostgreSQL half needs `GRANTLINE_TEST_PG` (see `common/pg.rs`; `.ci/run` starts a
//! server): without it those tests skip with a notice, and fail under `CI=true`.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use common::naive::Naive;
use common::pg::fresh_database;
use ledger::dsse::Envelope;
use ledger::keys::SigningKey;
use ledger::merkle::{self, MemoryTree};
use ledger::pg::PgLog;
use ledger::record::Record;
use ledger::statement::Statement;
use ledger::store::{AppendOutcome, Entry, Store, StoreError, BATCH_ENTRIES_MAX, RANGE_RECORDS_MAX};
use tempfile::TempDir;

// ---------------------------------------------------------------------------------------------
// Entries

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

fn entries(prefix: &str, n: usize) -> Vec<Entry> {
    (0..n).map(|i| entry(&format!("{prefix}-{i}"))).collect()
}

/// Cheap entries (no signature) for the tests that need many records.
fn plain_entries(prefix: &str, n: usize) -> Vec<Entry> {
    (0..n)
        .map(|i| Entry {
            id: format!("{prefix}{i}"),
            envelope: format!("{{\"n\":{i}}}").into_bytes(),
            received_at_ms: 0,
        })
        .collect()
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

// ---------------------------------------------------------------------------------------------
// Checks of a whole log

/// Every record, read in pages through `range`.
fn all_records(store: &Store) -> Vec<Record> {
    let mut records = Vec::new();
    loop {
        let page = store.range(records.len() as u64, 97).unwrap();
        if page.is_empty() {
            return records;
        }
        records.extend(page);
    }
}

/// Reads the whole log and checks seqs, chain links, the id index and the Merkle root at every
/// size against a MemoryTree and the naive RFC 6962 definition. Returns the tree and records.
fn check_log(store: &Store) -> (MemoryTree, Vec<Record>) {
    let records = all_records(store);
    let mut tree = MemoryTree::new();
    let mut prev = [0u8; 32];
    for r in &records {
        assert_eq!(r.seq, tree.size(), "seqs are dense");
        assert_eq!(r.prev, prev, "record {} links to the one before", r.seq);
        assert_eq!(&Record::decode(r.leaf()).unwrap(), r);
        assert_eq!(store.get(r.seq).unwrap().as_ref(), Some(r));
        prev = r.chain_hash();
        tree.push(r.leaf_hash());
    }
    assert_eq!(tree.size(), store.size());
    assert_eq!(store.head(), prev);
    assert_eq!(store.tip(), (store.size(), prev));
    assert_eq!(store.get(store.size()).unwrap(), None);
    let mut naive = Naive::new(records.iter().map(Record::leaf_hash).collect());
    for size in 0..=store.size() {
        let root = store.root_at(size).unwrap();
        assert_eq!(root, tree.root_at(size).unwrap(), "root at {size}");
        assert_eq!(root, naive.mth(0, size as usize), "root at {size} (RFC 6962)");
    }
    (tree, records)
}

/// Two stores hold the same log: size, head, roots and records.
fn assert_same_log(a: &Store, b: &Store) {
    assert_eq!(a.tip(), b.tip());
    assert_eq!(all_records(a), all_records(b));
    for size in 0..=a.size() {
        assert_eq!(a.root_at(size).unwrap(), b.root_at(size).unwrap(), "root at {size}");
    }
}

// ---------------------------------------------------------------------------------------------
// Backends

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Sled,
    Postgres,
}

/// How a store was reopened.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Reopened {
    /// On the local directory it had.
    SameDir,
    /// PostgreSQL only: on a brand-new empty local directory, rebuilt from the database.
    NewDir,
}

/// A store under test and what it lives in. `open` opens it on its current local directory;
/// `reopen` reopens it every way its backend can be reopened.
enum Backend {
    Sled {
        dir: TempDir,
    },
    Postgres {
        url: String,
        dir: TempDir,
        /// The local directories used before `dir` (kept: stale replicas to reopen).
        earlier: Vec<TempDir>,
    },
}

fn replica(dir: &Path, url: &str) -> Result<Store, StoreError> {
    Store::open_replica(dir, Arc::new(PgLog::connect(url)?))
}

fn pg_head(url: &str) -> ledger::pg::Head {
    PgLog::connect(url).unwrap().head().unwrap()
}

impl Backend {
    /// An empty store of this kind, or None when PostgreSQL tests are skipped.
    fn fresh(kind: Kind, test: &str) -> Option<Backend> {
        let dir = tempfile::tempdir().unwrap();
        match kind {
            Kind::Sled => Some(Backend::Sled { dir }),
            Kind::Postgres => {
                let url = fresh_database(test)?;
                PgLog::create(&url).unwrap();
                Some(Backend::Postgres { url, dir, earlier: Vec::new() })
            }
        }
    }

    fn kind(&self) -> Kind {
        match self {
            Backend::Sled { .. } => Kind::Sled,
            Backend::Postgres { .. } => Kind::Postgres,
        }
    }

    fn url(&self) -> Option<&str> {
        match self {
            Backend::Sled { .. } => None,
            Backend::Postgres { url, .. } => Some(url),
        }
    }

    /// Opens the store on its current local directory (the caller dropped any earlier handle).
    fn open(&self) -> Store {
        match self {
            Backend::Sled { dir } => Store::open(dir.path()).unwrap(),
            Backend::Postgres { url, dir, .. } => replica(dir.path(), url).unwrap(),
        }
    }

    /// Reopens the store after the caller dropped it and runs `check` on each way of
    /// reopening: the same local directory, and for PostgreSQL then a brand-new empty one,
    /// which becomes the store's directory from then on. Returns the last store opened.
    fn reopen(&mut self, check: impl Fn(&Store, Reopened)) -> Store {
        let store = self.open();
        self.check(&store);
        check(&store, Reopened::SameDir);
        let Backend::Postgres { earlier, dir, .. } = self else { return store };
        drop(store);
        earlier.push(std::mem::replace(dir, tempfile::tempdir().unwrap()));
        let store = self.open();
        self.check(&store);
        check(&store, Reopened::NewDir);
        store
    }

    /// Replicas on every earlier local directory of a PostgreSQL store (each behind by what
    /// was appended since it was left), opened now: they must catch up on open.
    fn reopen_earlier_dirs(&self) -> Vec<Store> {
        match self {
            Backend::Sled { .. } => Vec::new(),
            Backend::Postgres { url, earlier, .. } => earlier.iter().map(|d| replica(d.path(), url).unwrap()).collect(),
        }
    }

    /// The backend's own view agrees with the store: for PostgreSQL, the database's head
    /// row has the store's size and root.
    fn check(&self, store: &Store) {
        if let Some(url) = self.url() {
            let head = pg_head(url);
            assert_eq!(head.size, store.size(), "the database's head size");
            assert_eq!(head.root, store.root_at(store.size()).unwrap(), "the database's head root");
            assert_eq!(head.chain, store.head(), "the database's head chain hash");
        }
    }
}

/// Runs `test` on a fresh store of `kind`, and says how long it took.
fn run(kind: Kind, name: &str, test: fn(&mut Backend)) {
    let Some(mut backend) = Backend::fresh(kind, name) else { return };
    let started = Instant::now();
    test(&mut backend);
    eprintln!("{name} on {kind:?}: {:.2?}", started.elapsed());
}

/// For each conformance test `f`, the #[test]s `f_sled` and `f_postgres`.
macro_rules! conformance {
    ($($test:ident: $sled:ident, $postgres:ident;)*) => {$(
        #[test]
        fn $sled() {
            run(Kind::Sled, stringify!($sled), $test);
        }
        #[test]
        fn $postgres() {
            run(Kind::Postgres, stringify!($postgres), $test);
        }
    )*};
}

conformance! {
    append_and_reopen: append_and_reopen_sled, append_and_reopen_postgres;
    idempotency_and_conflicts: idempotency_and_conflicts_sled, idempotency_and_conflicts_postgres;
    reads_by_seq_range_and_id: reads_by_seq_range_and_id_sled, reads_by_seq_range_and_id_postgres;
    range_is_capped: range_is_capped_sled, range_is_capped_postgres;
    proofs_verify_at_every_size: proofs_verify_at_every_size_sled, proofs_verify_at_every_size_postgres;
    invalid_batches_write_nothing: invalid_batches_write_nothing_sled, invalid_batches_write_nothing_postgres;
    meta_blobs: meta_blobs_sled, meta_blobs_postgres;
    readers_see_whole_batches: readers_see_whole_batches_sled, readers_see_whole_batches_postgres;
    extreme_entries_round_trip: extreme_entries_round_trip_sled, extreme_entries_round_trip_postgres;
}

// ---------------------------------------------------------------------------------------------
// The conformance tests

fn append_and_reopen(b: &mut Backend) {
    let store = b.open();
    assert_eq!(store.size(), 0);
    assert_eq!(store.head(), [0u8; 32]);
    assert_eq!(store.root_at(0).unwrap(), merkle::empty_root());
    b.check(&store);
    let first = appended(&store.append(&[entry("a"), entry("b"), entry("c")]).unwrap());
    assert_eq!(first.iter().map(|r| r.seq).collect::<Vec<_>>(), [0, 1, 2]);
    assert_eq!(first[0].prev, [0u8; 32]);
    assert_eq!(first[1].prev, first[0].chain_hash());
    assert_eq!(first[2].prev, first[1].chain_hash());
    assert_eq!(store.size(), 3);
    b.check(&store);
    check_log(&store);
    drop(store);

    // Reopen between batches of different sizes: Merkle tiles (256 hashes) are crossed and
    // rewritten, and every reopen resumes at the right seq and head.
    let mut n = 3u64;
    for (round, batch) in [1usize, 150, 2, 300, 40].into_iter().enumerate() {
        let store = b.reopen(|store, _| assert_eq!(store.size(), n));
        let (before, records) = check_log(&store);
        let new = appended(&store.append(&entries(&format!("r{round}"), batch)).unwrap());
        assert_eq!(new.len(), batch);
        assert_eq!(new.iter().map(|r| r.seq).collect::<Vec<_>>(), (n..n + batch as u64).collect::<Vec<_>>());
        assert_eq!(new[0].prev, records.last().unwrap().chain_hash());
        n += batch as u64;
        b.check(&store);
        let (after, records) = check_log(&store);
        assert_eq!(records[records.len() - batch..], new);
        // The old tree is a prefix of the new one.
        let proof = store.consistency_proof(before.size(), n).unwrap();
        merkle::verify_consistency(before.size(), n, &before.root(), &after.root(), &proof).unwrap();
    }
    let last = b.reopen(|store, _| assert_eq!(store.size(), n));
    let (_, records) = check_log(&last);
    // PostgreSQL: a replica left behind at each size catches up on open to the same log.
    for stale in b.reopen_earlier_dirs() {
        assert_eq!(all_records(&stale), records);
        assert_same_log(&stale, &last);
    }
}

fn idempotency_and_conflicts(b: &mut Backend) {
    let store = b.open();
    let out = store.append(&[entry("x"), entry("y")]).unwrap();
    let x = appended(&out)[0].clone();

    // Same id, same bytes: the original record, nothing new.
    let again = store.append(&[entry("x")]).unwrap();
    assert_eq!(again, vec![AppendOutcome::Duplicate(x.clone())]);
    assert_eq!(store.size(), 2);
    // A different received time does not make it another record.
    let later = Entry { received_at_ms: 42, ..entry("x") };
    assert_eq!(store.append(&[later]).unwrap(), vec![AppendOutcome::Duplicate(x.clone())]);
    b.check(&store);

    // Same id, other bytes: a conflict naming the original seq; nothing written.
    let (size, head) = store.tip();
    let root = store.root_at(size).unwrap();
    let other = Entry { id: "x".into(), envelope: envelope("x", "different"), received_at_ms: 5 };
    assert_eq!(store.append(std::slice::from_ref(&other)).unwrap(), vec![AppendOutcome::Conflict { seq: 0 }]);
    assert_eq!(store.tip(), (size, head));
    assert_eq!(store.root_at(size).unwrap(), root);
    assert_eq!(store.get_by_id("x").unwrap().unwrap(), x);
    b.check(&store);

    // Within one batch: duplicates and conflicts of an entry earlier in the same batch, and
    // of one logged before.
    let z = entry("z");
    let z_other = Entry { envelope: envelope("z", "other"), ..z.clone() };
    let out = store.append(&[z.clone(), z.clone(), other.clone(), z_other.clone(), entry("w"), entry("x")]).unwrap();
    assert_eq!(out.len(), 6);
    let AppendOutcome::Appended(z_rec) = &out[0] else { panic!("{out:?}") };
    assert_eq!(z_rec.seq, 2);
    assert_eq!(out[1], AppendOutcome::Duplicate(z_rec.clone()));
    assert_eq!(out[2], AppendOutcome::Conflict { seq: 0 });
    assert_eq!(out[3], AppendOutcome::Conflict { seq: 2 });
    let AppendOutcome::Appended(w_rec) = &out[4] else { panic!("{out:?}") };
    assert_eq!(w_rec.seq, 3, "seqs stay dense around duplicates and conflicts");
    assert_eq!(w_rec.prev, z_rec.chain_hash());
    assert_eq!(out[5], AppendOutcome::Duplicate(x.clone()));
    assert_eq!(store.size(), 4);
    assert_eq!(store.get_by_id("z").unwrap().as_ref(), Some(z_rec));
    b.check(&store);
    check_log(&store);

    // A batch of nothing but duplicates and conflicts writes nothing.
    let tip = store.tip();
    let out = store.append(&[entry("y"), z_other.clone(), other.clone()]).unwrap();
    assert!(matches!(
        out[..],
        [AppendOutcome::Duplicate(_), AppendOutcome::Conflict { seq: 2 }, AppendOutcome::Conflict { seq: 0 }]
    ));
    assert_eq!(store.tip(), tip);
    b.check(&store);
    drop(store);

    // And after every kind of reopen (a new local directory rebuilds the id index).
    let (z_rec, x) = (z_rec.clone(), x.clone());
    let store = b.reopen(|store, _| {
        assert_eq!(store.append(&[entry("z")]).unwrap(), vec![AppendOutcome::Duplicate(z_rec.clone())]);
        assert_eq!(store.append(std::slice::from_ref(&other)).unwrap(), vec![AppendOutcome::Conflict { seq: 0 }]);
        assert_eq!(store.append(std::slice::from_ref(&z_other)).unwrap(), vec![AppendOutcome::Conflict { seq: 2 }]);
        assert_eq!(store.get_by_id("x").unwrap(), Some(x.clone()));
        assert_eq!(store.size(), 4);
    });
    // The next new id still gets the next seq.
    let out = store.append(&[entry("v"), entry("w")]).unwrap();
    let AppendOutcome::Appended(v) = &out[0] else { panic!("{out:?}") };
    assert_eq!(v.seq, 4);
    assert_eq!(out[1], AppendOutcome::Duplicate(w_rec.clone()));
    b.check(&store);
    check_log(&store);
}

fn reads_by_seq_range_and_id(b: &mut Backend) {
    let store = b.open();
    let batch = entries("e", 20);
    let records = appended(&store.append(&batch).unwrap());
    let reads = |store: &Store, _: Reopened| {
        assert_eq!(store.get(5).unwrap().unwrap(), records[5]);
        assert_eq!(store.get(0).unwrap().unwrap(), records[0]);
        assert_eq!(store.get(19).unwrap().unwrap(), records[19]);
        assert_eq!(store.get(20).unwrap(), None);
        assert_eq!(store.get(u64::MAX).unwrap(), None);
        assert_eq!(store.get_by_id("e-7").unwrap().unwrap(), records[7]);
        assert_eq!(store.get_by_id("e-19").unwrap().unwrap(), records[19]);
        assert_eq!(store.get_by_id("nope").unwrap(), None);
        assert_eq!(store.get_by_id("").unwrap(), None);
        assert_eq!(store.get_by_id(&"i".repeat(10_000)).unwrap(), None);
        assert_eq!(store.range(0, 100).unwrap(), records);
        assert_eq!(store.range(18, 100).unwrap(), records[18..]);
        assert_eq!(store.range(3, 4).unwrap(), records[3..7]);
        assert!(store.range(20, 10).unwrap().is_empty());
        assert!(store.range(u64::MAX, usize::MAX).unwrap().is_empty());
        assert!(store.range(0, 0).unwrap().is_empty());
        // The envelope round-trips byte for byte.
        for (r, e) in records.iter().zip(&batch) {
            assert_eq!(r.envelope(), e.envelope.as_slice());
            assert_eq!(r.received_at_ms, e.received_at_ms);
        }
        let env = Envelope::parse(store.get(3).unwrap().unwrap().envelope()).unwrap();
        assert_eq!(env.canonical_json(), batch[3].envelope);
        assert_eq!(Statement::parse(&env.payload).unwrap().id, "e-3");
    };
    reads(&store, Reopened::SameDir);
    drop(store);
    let store = b.reopen(reads);
    reads(&store, Reopened::SameDir);
}

fn range_is_capped(b: &mut Backend) {
    let store = b.open();
    let all = plain_entries("n", RANGE_RECORDS_MAX + 5);
    for chunk in all.chunks(BATCH_ENTRIES_MAX) {
        store.append(chunk).unwrap();
    }
    let n = all.len() as u64;
    assert_eq!(store.size(), n);
    b.check(&store);
    drop(store);
    // A new local directory catches up 10,005 records, several pages of them.
    b.reopen(|store, _| {
        assert_eq!(store.size(), n);
        let page = store.range(0, usize::MAX).unwrap();
        assert_eq!(page.len(), RANGE_RECORDS_MAX);
        assert!(page.iter().enumerate().all(|(i, r)| r.seq == i as u64));
        assert_eq!(store.range(RANGE_RECORDS_MAX as u64, usize::MAX).unwrap().len(), 5);
        assert_eq!(store.get_by_id(&format!("n{}", n - 1)).unwrap().unwrap().seq, n - 1);
        let last = store.get(n - 1).unwrap().unwrap();
        assert_eq!(last.envelope(), all[n as usize - 1].envelope.as_slice());
        assert_eq!(store.head(), last.chain_hash());
    });
}

/// Sizes at which proofs are compared after a reopen: tile and power-of-two edges.
const PROOF_SIZES: [u64; 14] = [1, 2, 3, 7, 8, 9, 127, 128, 129, 255, 256, 257, 300, 512];

fn proofs_verify_at_every_size(b: &mut Backend) {
    let store = b.open();
    // 608 records, about 1,200 stored hashes: proofs read full tiles and the last tile.
    for batch in [1usize, 2, 5, 30, 1, 70, 199, 300] {
        store.append(&entries(&format!("p{}", store.size()), batch)).unwrap();
    }
    let (tree, records) = check_log(&store);
    let mut naive = Naive::new(records.iter().map(Record::leaf_hash).collect());
    let n = store.size();
    assert_eq!(n, 608);
    for size in 1..=n {
        let root = store.root_at(size).unwrap();
        for index in (0..size).step_by(7).chain([size - 1]) {
            let leaf = records[index as usize].leaf_hash();
            let proof = store.inclusion_proof(index, size).unwrap();
            assert_eq!(proof, tree.inclusion_proof(index, size).unwrap());
            assert_eq!(proof, naive.path(index as usize, 0, size as usize), "inclusion {index} in {size}");
            merkle::verify_inclusion(index, size, &leaf, &proof, &root).unwrap();
            if size > 1 {
                let other = (index + 1) % size;
                assert!(merkle::verify_inclusion(other, size, &leaf, &proof, &root).is_err());
            }
        }
        for old in (0..=size).step_by(5).chain([size]) {
            let proof = store.consistency_proof(old, size).unwrap();
            assert_eq!(proof, naive.consistency(old as usize, size as usize), "consistency {old} -> {size}");
            let old_root = store.root_at(old).unwrap();
            merkle::verify_consistency(old, size, &old_root, &root, &proof).unwrap();
            if old > 0 && old < size {
                let wrong = store.root_at(old - 1).unwrap();
                assert!(merkle::verify_consistency(old, size, &wrong, &root, &proof).is_err());
            }
        }
    }
    let errors = |store: &Store| {
        // Beyond the log: typed errors.
        assert!(matches!(store.root_at(n + 1), Err(StoreError::Merkle(_))));
        assert!(matches!(store.inclusion_proof(n, n), Err(StoreError::Merkle(_))));
        assert!(matches!(store.inclusion_proof(0, n + 1), Err(StoreError::Merkle(_))));
        assert!(matches!(store.consistency_proof(3, n + 1), Err(StoreError::Merkle(_))));
        assert!(matches!(store.consistency_proof(4, 3), Err(StoreError::Merkle(_))));
        assert!(matches!(store.inclusion_proof(u64::MAX, u64::MAX), Err(StoreError::Merkle(_))));
    };
    errors(&store);
    drop(store);

    // After a reopen (and from a replica rebuilt from PostgreSQL): the same proofs.
    b.reopen(|store, _| {
        errors(store);
        for size in PROOF_SIZES.into_iter().chain([n - 1, n]) {
            let root = store.root_at(size).unwrap();
            assert_eq!(root, tree.root_at(size).unwrap());
            for index in [0, size / 2, size - 1] {
                let proof = store.inclusion_proof(index, size).unwrap();
                assert_eq!(proof, tree.inclusion_proof(index, size).unwrap());
                merkle::verify_inclusion(index, size, &records[index as usize].leaf_hash(), &proof, &root).unwrap();
            }
            for old in PROOF_SIZES.into_iter().filter(|&old| old <= size) {
                let proof = store.consistency_proof(old, size).unwrap();
                assert_eq!(proof, tree.consistency_proof(old, size).unwrap());
                merkle::verify_consistency(old, size, &tree.root_at(old).unwrap(), &root, &proof).unwrap();
            }
        }
    });
}

fn invalid_batches_write_nothing(b: &mut Backend) {
    let store = b.open();
    store.append(&[entry("first")]).unwrap();
    let tip = store.tip();
    let e = |id: &str, len: usize| Entry { id: id.into(), envelope: vec![b'x'; len], received_at_ms: 0 };
    let too_many = plain_entries("m", BATCH_ENTRIES_MAX + 1);
    assert!(matches!(store.append(&too_many), Err(StoreError::BatchTooLarge(n)) if n == BATCH_ENTRIES_MAX + 1));
    let big = [e("a", 1), e("b", ledger::record::LEAF_BYTES_MAX)];
    assert!(matches!(store.append(&big), Err(StoreError::Record(_))));
    assert!(matches!(store.append(&[e("ok", 1), e("", 1)]), Err(StoreError::InvalidEntry { index: 1, .. })));
    assert!(matches!(store.append(&[e(&"i".repeat(129), 1)]), Err(StoreError::InvalidEntry { index: 0, .. })));
    assert!(store.append(&[]).unwrap().is_empty());
    assert_eq!(store.tip(), tip);
    assert_eq!(store.get_by_id("a").unwrap(), None);
    assert_eq!(store.get_by_id("ok").unwrap(), None);
    b.check(&store);
    // The store is not poisoned by a refused batch.
    let out = store.append(&[e("a", 1), e("ok", 1)]).unwrap();
    assert_eq!(appended(&out).iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2]);
    b.check(&store);
    drop(store);
    b.reopen(|store, _| {
        assert_eq!(store.size(), 3);
        check_log(store);
    });
}

fn extreme_entries_round_trip(b: &mut Backend) {
    let store = b.open();
    // Nothing to catch up: a sled store has no log of record, a lone replica is current.
    assert_eq!(store.catch_up().unwrap(), 0);
    let largest = ledger::record::LEAF_BYTES_MAX - ledger::record::LEAF_HEADER_BYTES;
    let batch = [
        // The largest leaf, every byte value in it.
        Entry { id: "big".into(), envelope: (0..largest).map(|i| (i % 256) as u8).collect(), received_at_ms: i64::MAX },
        Entry { id: "i".repeat(ledger::statement::STATEMENT_ID_BYTES_MAX), envelope: vec![], received_at_ms: i64::MIN },
        Entry { id: "k:x.y_z-1".into(), envelope: b"\xff\x00\xfe".to_vec(), received_at_ms: -1 },
        Entry { id: "gr\u{fc}\u{df}e-\u{1f980}".into(), envelope: b"{}".to_vec(), received_at_ms: 0 },
        Entry { id: "A".into(), envelope: b"upper".to_vec(), received_at_ms: 1 },
        Entry { id: "a".into(), envelope: b"lower".to_vec(), received_at_ms: 2 },
        Entry { id: "a ".into(), envelope: b"trailing space".to_vec(), received_at_ms: 3 },
    ];
    let records = appended(&store.append(&batch).unwrap());
    assert_eq!(records.len(), batch.len(), "ids differing only in case or spaces are distinct");
    assert_eq!(store.catch_up().unwrap(), 0);
    b.check(&store);
    drop(store);
    b.reopen(|store, _| {
        for (e, r) in batch.iter().zip(&records) {
            let got = store.get_by_id(&e.id).unwrap().unwrap_or_else(|| panic!("id {:?} not found", e.id));
            assert_eq!(&got, r);
            assert_eq!(got.envelope(), e.envelope.as_slice());
            assert_eq!(got.received_at_ms, e.received_at_ms);
            assert_eq!(store.append(std::slice::from_ref(e)).unwrap(), vec![AppendOutcome::Duplicate(r.clone())]);
        }
        assert_eq!(store.get_by_id("\u{1f980}").unwrap(), None);
        check_log(store);
    });
}

fn meta_blobs(b: &mut Backend) {
    let kind = b.kind();
    let store = b.open();
    store.append(&[entry("a")]).unwrap();
    assert_eq!(store.get_meta("snapshot").unwrap(), None);
    store.put_meta("snapshot", b"state at 1").unwrap();
    store.put_meta("snapshot", b"state at 1, again").unwrap();
    store.put_meta("other", b"").unwrap();
    assert_eq!(store.get_meta("snapshot").unwrap().unwrap(), b"state at 1, again");
    assert_eq!(store.get_meta("other").unwrap().unwrap(), b"");
    assert!(matches!(store.put_meta("", b"x"), Err(StoreError::InvalidMetaKey(0))));
    assert!(matches!(store.get_meta(&"k".repeat(257)), Err(StoreError::InvalidMetaKey(257))));
    // Meta blobs are not part of the log.
    assert_eq!(store.size(), 1);
    b.check(&store);
    drop(store);
    let store = b.reopen(|store, how| {
        assert_eq!(store.size(), 1);
        check_log(store);
        match (kind, how) {
            (_, Reopened::SameDir) => {
                assert_eq!(store.get_meta("snapshot").unwrap().unwrap(), b"state at 1, again");
                assert_eq!(store.get_meta("other").unwrap().unwrap(), b"");
            }
            // Meta blobs (projection snapshots) are the node's own cache, kept in its local
            // replica and not in PostgreSQL: a new local directory starts without them.
            (Kind::Postgres, Reopened::NewDir) => assert_eq!(store.get_meta("snapshot").unwrap(), None),
            (Kind::Sled, Reopened::NewDir) => unreachable!("a sled store has one directory"),
        }
    });
    store.put_meta("snapshot", b"state at 1, third").unwrap();
    assert_eq!(store.get_meta("snapshot").unwrap().unwrap(), b"state at 1, third");
}

fn readers_see_whole_batches(b: &mut Backend) {
    let store = b.open();
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            for batch in 0..40 {
                store.append(&entries(&format!("c{batch}"), 5)).unwrap();
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
            let record = store.get(size - 1).unwrap().unwrap();
            let root = store.root_at(size).unwrap();
            let proof = store.inclusion_proof(size - 1, size).unwrap();
            merkle::verify_inclusion(size - 1, size, &record.leaf_hash(), &proof, &root).unwrap();
        }
        last = size;
    }
    writer.join().unwrap();
    assert_eq!(store.size(), 200);
    b.check(&store);
    check_log(&store);
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL only

/// A fresh database with the schema created, or None when PostgreSQL tests are skipped.
fn fresh_log(test: &str) -> Option<String> {
    let url = fresh_database(test)?;
    PgLog::create(&url).unwrap();
    Some(url)
}

fn raw_client(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls).unwrap()
}

#[test]
fn two_replicas_of_one_database_converge_through_catch_up() {
    let Some(url) = fresh_log("two_replicas_converge") else { return };
    let started = Instant::now();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = replica(dir_a.path(), &url).unwrap();
    let b = replica(dir_b.path(), &url).unwrap();
    assert_eq!(b.catch_up().unwrap(), 0);

    let mut n = 0;
    for (round, batch) in [3usize, 1, 300, 2].into_iter().enumerate() {
        a.append(&entries(&format!("a{round}"), batch)).unwrap();
        n += batch as u64;
        assert_eq!(b.size(), n - batch as u64, "B sees nothing before it catches up");
        assert_eq!(b.catch_up().unwrap(), batch as u64);
        assert_eq!(b.catch_up().unwrap(), 0);
        assert_same_log(&a, &b);
        assert_eq!(b.get_by_id(&format!("a{round}-0")).unwrap(), a.get_by_id(&format!("a{round}-0")).unwrap());
    }
    // Then B writes and A follows.
    let from_b = appended(&b.append(&entries("b", 4)).unwrap());
    assert_eq!(from_b[0].seq, n);
    assert_eq!(a.catch_up().unwrap(), 4);
    assert_same_log(&a, &b);
    let (_, records) = check_log(&a);
    let head = pg_head(&url);
    assert_eq!((head.size, head.root), (a.size(), a.root_at(a.size()).unwrap()));
    // Duplicates and conflicts are answered the same on both.
    assert_eq!(a.append(&[entry("b-1")]).unwrap(), vec![AppendOutcome::Duplicate(from_b[1].clone())]);
    let other = Entry { envelope: envelope("a0-0", "other"), ..entry("a0-0") };
    assert_eq!(b.append(&[other]).unwrap(), vec![AppendOutcome::Conflict { seq: 0 }]);
    // A third, brand-new replica rebuilds the same log.
    let dir_c = tempfile::tempdir().unwrap();
    let c = replica(dir_c.path(), &url).unwrap();
    assert_eq!(all_records(&c), records);
    assert_same_log(&a, &c);
    eprintln!("two_replicas_of_one_database_converge_through_catch_up: {:.2?}", started.elapsed());
}

#[test]
fn a_stale_writer_is_refused_by_the_head_compare_and_swap() {
    let Some(url) = fresh_log("stale_writer") else { return };
    let started = Instant::now();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = replica(dir_a.path(), &url).unwrap();
    let b = replica(dir_b.path(), &url).unwrap();
    a.append(&entries("base", 3)).unwrap();
    assert_eq!(b.catch_up().unwrap(), 3);

    // A appends; B, not caught up, tries to append at the size it knows.
    let from_a = appended(&a.append(&entries("a", 2)).unwrap());
    let (a_tip, b_tip) = (a.tip(), b.tip());
    let head_before = pg_head(&url);
    let refused = b.append(&entries("b", 2));
    assert!(refused.is_err(), "a writer behind the database must not commit: {refused:?}");
    eprintln!("stale writer refused with: {}", refused.unwrap_err());
    // Nothing written anywhere: not in the database, not in either replica.
    let head_after = pg_head(&url);
    assert_eq!((head_after.size, head_after.root), (head_before.size, head_before.root));
    assert_eq!(a.tip(), a_tip);
    assert_eq!(b.tip(), b_tip);
    assert_eq!(b.get_by_id("b-0").unwrap(), None);
    assert_eq!(a.catch_up().unwrap(), 0);
    // An id A already logged, offered to B before it caught up: refused too, not a second record.
    assert!(b.append(&[entry("a-0")]).is_err());
    assert_eq!(pg_head(&url).size, 5);

    // After catching up, B's retry succeeds right after A's records, and A follows.
    assert_eq!(b.catch_up().unwrap(), 2);
    assert_same_log(&a, &b);
    assert_eq!(b.append(&[entry("a-0")]).unwrap(), vec![AppendOutcome::Duplicate(from_a[0].clone())]);
    let from_b = appended(&b.append(&entries("b", 2)).unwrap());
    assert_eq!(from_b.iter().map(|r| r.seq).collect::<Vec<_>>(), [5, 6]);
    assert_eq!(from_b[0].prev, from_a[1].chain_hash());
    assert_eq!(a.catch_up().unwrap(), 2);
    assert_same_log(&a, &b);
    check_log(&a);
    // And A, now behind B, is refused in turn: whoever is behind loses, never the log.
    b.append(&entries("b2", 1)).unwrap();
    assert!(a.append(&entries("a2", 1)).is_err());
    assert_eq!(a.catch_up().unwrap(), 1);
    a.append(&entries("a2", 1)).unwrap();
    assert_eq!(b.catch_up().unwrap(), 1);
    assert_same_log(&a, &b);
    let head = pg_head(&url);
    assert_eq!((head.size, head.root), (9, a.root_at(9).unwrap()));
    eprintln!("a_stale_writer_is_refused_by_the_head_compare_and_swap: {:.2?}", started.elapsed());
}

#[test]
fn a_writer_whose_leader_epoch_is_old_cannot_commit() {
    let Some(url) = fresh_log("old_epoch") else { return };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (log_a, log_b) = (Arc::new(PgLog::connect(&url).unwrap()), Arc::new(PgLog::connect(&url).unwrap()));
    let a = Store::open_replica(dir_a.path(), log_a.clone()).unwrap();
    let b = Store::open_replica(dir_b.path(), log_b.clone()).unwrap();
    a.append(&entries("a", 2)).unwrap();
    assert_eq!(b.catch_up().unwrap(), 2);

    // B takes over: A, fully caught up but of the old epoch, is refused and writes nothing.
    let epoch = pg_head(&url).epoch;
    assert_eq!(log_b.lead("b").unwrap(), Some(epoch + 1));
    assert_eq!(pg_head(&url).epoch, epoch + 1);
    assert_eq!(log_a.lead("a").unwrap(), None, "one leader lock at a time");
    let tip = a.tip();
    let refused = a.append(&entries("late", 1));
    assert!(refused.is_err(), "a writer of an old epoch committed: {refused:?}");
    eprintln!("old epoch refused with: {}", refused.unwrap_err());
    assert_eq!(a.tip(), tip);
    assert_eq!(pg_head(&url).size, 2);
    // The new leader commits; A follows as a reader.
    b.append(&entries("b", 3)).unwrap();
    assert_eq!(a.catch_up().unwrap(), 3);
    assert_same_log(&a, &b);
    assert!(a.append(&entries("late", 1)).is_err(), "catching up does not make A a leader");

    // B resigns and A takes over: now B is the one refused.
    log_b.resign().unwrap();
    assert_eq!(log_a.lead("a").unwrap(), Some(epoch + 2));
    a.append(&entries("late", 1)).unwrap();
    assert!(b.append(&entries("b2", 1)).is_err());
    assert_eq!(b.catch_up().unwrap(), 1);
    assert_same_log(&a, &b);
    check_log(&a);
    let head = pg_head(&url);
    assert_eq!((head.size, head.epoch), (6, epoch + 2));
}

#[test]
fn a_lost_connection_costs_at_most_one_failed_append() {
    let Some(url) = fresh_log("lost_connection") else { return };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = replica(dir_a.path(), &url).unwrap();
    let b = replica(dir_b.path(), &url).unwrap();
    a.append(&entries("before", 3)).unwrap();
    assert_eq!(b.catch_up().unwrap(), 3);
    // The server ends every other session (as a PostgreSQL restart or failover would).
    let mut admin = raw_client(&url);
    let ended: i64 = admin
        .query_one(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()) t",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(ended >= 2, "both replicas' sessions ended ({ended})");
    // The writer reconnects: at most one append fails, and a retry is not a second record.
    let batch = entries("after", 2);
    let mut failures = 0;
    let out = loop {
        match a.append(&batch) {
            Ok(out) => break out,
            Err(e) => {
                failures += 1;
                assert!(failures < 2, "the store did not reconnect: {e}");
                a.catch_up().unwrap();
            }
        }
    };
    assert_eq!(appended(&out).len() + out.iter().filter(|o| matches!(o, AppendOutcome::Duplicate(_))).count(), 2);
    assert_eq!(a.size(), 5);
    eprintln!("appends that failed after the connection was lost: {failures}");
    // The reader reconnects too.
    let caught = b.catch_up().or_else(|_| b.catch_up()).unwrap();
    assert_eq!(caught, 2);
    assert_same_log(&a, &b);
    let head = pg_head(&url);
    assert_eq!((head.size, head.root), (5, a.root_at(5).unwrap()));
}

#[test]
fn concurrent_writers_on_two_replicas_keep_one_history() {
    let Some(url) = fresh_log("concurrent_writers") else { return };
    let started = Instant::now();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let stores: Vec<Store> = dirs.iter().map(|d| replica(d.path(), &url).unwrap()).collect();
    // Each replica appends 30 batches, catching up and retrying whenever the other won.
    let writers: Vec<_> = stores
        .iter()
        .enumerate()
        .map(|(w, store)| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut refused = 0;
                for batch in 0..30 {
                    let batch = entries(&format!("w{w}-{batch}"), 3);
                    loop {
                        match store.append(&batch) {
                            Ok(out) => {
                                assert_eq!(appended(&out).len(), 3);
                                break;
                            }
                            Err(_) => {
                                refused += 1;
                                assert!(refused < 10_000, "never got a turn");
                                store.catch_up().unwrap();
                            }
                        }
                    }
                }
                refused
            })
        })
        .collect();
    let refusals: Vec<u32> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    for store in &stores {
        store.catch_up().unwrap();
    }
    assert_eq!(stores[0].size(), 180);
    assert_same_log(&stores[0], &stores[1]);
    check_log(&stores[0]);
    let head = pg_head(&url);
    assert_eq!((head.size, head.root), (180, stores[0].root_at(180).unwrap()));
    // Every batch is whole and in one piece: 3 consecutive records per batch id.
    let records = all_records(&stores[0]);
    for chunk in records.chunks(3) {
        let ids: Vec<String> = chunk
            .iter()
            .map(|r| {
                let env = Envelope::parse(r.envelope()).unwrap();
                Statement::parse(&env.payload).unwrap().id
            })
            .collect();
        let prefix = ids[0].rsplit_once('-').unwrap().0.to_string();
        assert_eq!(ids, (0..3).map(|i| format!("{prefix}-{i}")).collect::<Vec<_>>());
    }
    eprintln!("concurrent_writers_on_two_replicas_keep_one_history: {:.2?}, refusals {refusals:?}", started.elapsed());
}

#[test]
fn a_replica_the_database_is_behind_or_disagrees_with_is_refused() {
    let Some(url) = fresh_log("replica_ahead") else { return };
    let Some(other_url) = fresh_log("replica_ahead_other") else { return };
    let dir = tempfile::tempdir().unwrap();
    {
        let store = replica(dir.path(), &url).unwrap();
        store.append(&entries("x", 5)).unwrap();
    }
    // An empty database (a restore from an old backup): behind this node's replica.
    let err = replica(dir.path(), &other_url).err().expect("a database behind the replica is refused");
    assert!(matches!(err, StoreError::UpstreamBehind { local: 5, upstream: 0 }), "{err}");
    // A database with another history of the same size and longer.
    {
        let other_dir = tempfile::tempdir().unwrap();
        let other = replica(other_dir.path(), &other_url).unwrap();
        other.append(&entries("y", 5)).unwrap();
    }
    let err = replica(dir.path(), &other_url).err().expect("another history is refused");
    assert!(matches!(err, StoreError::Diverged { .. }), "{err}");
    {
        let other_dir = tempfile::tempdir().unwrap();
        let other = replica(other_dir.path(), &other_url).unwrap();
        other.append(&entries("y2", 5)).unwrap();
    }
    let err = replica(dir.path(), &other_url).err().expect("another, longer history is refused");
    assert!(matches!(err, StoreError::Diverged { .. }), "{err}");
    // The replica itself is untouched and still opens on its own database.
    let store = replica(dir.path(), &url).unwrap();
    assert_eq!(store.size(), 5);
    check_log(&store);
    // A sled store written on its own (never a replica) is not silently adopted either.
    let alone = tempfile::tempdir().unwrap();
    Store::open(alone.path()).unwrap().append(&entries("alone", 2)).unwrap();
    let Some(empty_url) = fresh_log("replica_ahead_empty") else { return };
    assert!(replica(alone.path(), &empty_url).is_err());
}

#[test]
fn the_schema_version_is_checked() {
    let Some(url) = fresh_database("schema_version") else { return };
    // No schema yet: connect refuses, create makes it, connect then works.
    assert!(PgLog::connect(&url).is_err(), "connect must not accept a database without the schema");
    PgLog::create(&url).unwrap();
    let log = PgLog::connect(&url).unwrap();
    assert_eq!(log.head().unwrap().size, 0);
    drop(log);

    // Another schema version: both connect and create refuse it, and say so.
    let mut client = raw_client(&url);
    let version: i32 = client.query_one("SELECT version FROM grantline_schema", &[]).unwrap().get(0);
    assert_eq!(version, ledger::pg::SCHEMA_VERSION);
    client.execute("UPDATE grantline_schema SET version = version + 1", &[]).unwrap();
    let Err(err) = PgLog::connect(&url) else { panic!("a database of another schema version was accepted") };
    eprintln!("another schema version refused with: {err}");
    assert!(err.to_string().contains("schema version"), "{err}");
    assert!(PgLog::create(&url).is_err(), "create must not adopt a database of another schema version");
    // An older version too.
    client.execute("UPDATE grantline_schema SET version = 0", &[]).unwrap();
    assert!(PgLog::connect(&url).is_err());

    // A database holding some other application's tables is no ledger.
    let Some(foreign) = fresh_database("schema_foreign") else { return };
    raw_client(&foreign).batch_execute("CREATE TABLE accounts (id int primary key)").unwrap();
    assert!(PgLog::connect(&foreign).is_err());
}

#[test]
fn rows_cannot_be_updated_or_deleted() {
    let Some(url) = fresh_log("rows_immutable") else { return };
    let dir = tempfile::tempdir().unwrap();
    let store = replica(dir.path(), &url).unwrap();
    store.append(&entries("r", 300)).unwrap();
    PgLog::connect(&url).unwrap().put_checkpoint(300, "a checkpoint note\n").unwrap();
    let mut client = raw_client(&url);
    // Even the superuser the tests connect as is refused (by triggers, not privileges).
    for (table, column) in
        [("grantline_records", "leaf"), ("grantline_hashes", "hash"), ("grantline_checkpoints", "note")]
    {
        let rows: i64 = client.query_one(&format!("SELECT count(*) FROM {table}"), &[]).unwrap().get(0);
        assert!(rows > 0, "{table} has rows to refuse changes to");
        for sql in [
            format!("UPDATE {table} SET {column} = {column}"),
            format!("UPDATE {table} SET {column} = {column} WHERE ctid = (SELECT min(ctid) FROM {table})"),
            format!("DELETE FROM {table}"),
            format!("DELETE FROM {table} WHERE ctid = (SELECT max(ctid) FROM {table})"),
            format!("TRUNCATE {table}"),
        ] {
            let result = client.batch_execute(&sql);
            assert!(result.is_err(), "{sql} must fail");
        }
        let after: i64 = client.query_one(&format!("SELECT count(*) FROM {table}"), &[]).unwrap().get(0);
        assert_eq!(after, rows, "{table} unchanged");
    }
    // Nothing changed: the head, and a replica rebuilt from the database.
    let head = pg_head(&url);
    assert_eq!((head.size, head.root), (300, store.root_at(300).unwrap()));
    let fresh_dir = tempfile::tempdir().unwrap();
    let rebuilt = replica(fresh_dir.path(), &url).unwrap();
    assert_same_log(&store, &rebuilt);
}

#[test]
fn database_names_are_valid_identifiers_and_urls_keep_everything_but_the_name() {
    let long = common::pg::database_name(
        "Some::Test-Name with spaces and a very long tail that goes on and on",
        4_194_304,
        99,
    );
    assert!(long.len() <= common::pg::NAME_BYTES_MAX, "{long}");
    assert!(long.starts_with("gl_some__test_name_with_spaces"), "{long}");
    assert!(long.ends_with("_4194304_99"), "{long}");
    assert!(long.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'), "{long}");
    assert_eq!(common::pg::database_name("x", 1, 2), "gl_x_1_2");
    assert_eq!(
        common::pg::with_database("postgres://postgres@127.0.0.1:5/postgres", "d"),
        "postgres://postgres@127.0.0.1:5/d"
    );
    assert_eq!(common::pg::with_database("postgres://u:p@h:5", "d"), "postgres://u:p@h:5/d");
    assert_eq!(
        common::pg::with_database("postgresql://u@h/db?sslmode=disable", "d"),
        "postgresql://u@h/d?sslmode=disable"
    );
}
