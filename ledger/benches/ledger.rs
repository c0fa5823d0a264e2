//! Ledger micro-benchmarks. Quick check that they run: `cargo bench -p grantline-ledger -- --test`.

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion};
use ed25519_dalek::{Signer, SigningKey as DalekKey, VerifyingKey};
use ledger::dsse::Envelope;
use ledger::keys::SigningKey;
use ledger::merkle::{self, MemoryTree};
use ledger::record::Record;
use ledger::store::{Entry, Store};

const LEAVES: u64 = 1_000_000;
const ENVELOPE_BYTES: usize = 1024;
const BATCH_SIGNATURES: usize = 64;
const SLED_GROUP: usize = 256;
const STORE_FILL_BATCH: u64 = 4096;

/// `{group}/inclusion_proof_at_1m` and `{group}/consistency_proof_at_1m` over indexes spread
/// across the tree, the same sequence for every hash source.
fn proofs_at_1m(c: &mut Criterion, group: &str, source: &dyn merkle::HashReader) {
    let mut index = 0u64;
    c.bench_function(&format!("{group}/inclusion_proof_at_1m"), |b| {
        b.iter(|| {
            index = (index + 7919) % LEAVES;
            merkle::prove_inclusion(index, LEAVES, source).unwrap()
        })
    });
    let mut old = 1u64;
    c.bench_function(&format!("{group}/consistency_proof_at_1m"), |b| {
        b.iter(|| {
            old = (old + 7919) % LEAVES + 1;
            merkle::prove_consistency(old, LEAVES, source).unwrap()
        })
    });
}

fn records(c: &mut Criterion) {
    let envelope = vec![b'e'; ENVELOPE_BYTES];
    c.bench_function("record/encode_1k", |b| {
        b.iter(|| Record::new(black_box(42), [7; 32], 1_700_000_000_000, black_box(&envelope)).unwrap())
    });
    let record = Record::new(42, [7; 32], 0, &envelope).unwrap();
    c.bench_function("record/decode_1k", |b| b.iter(|| Record::decode(black_box(record.leaf())).unwrap()));
    c.bench_function("record/chain_hash_blake3_1k", |b| b.iter(|| black_box(&record).chain_hash()));
    c.bench_function("record/leaf_hash_sha256_1k", |b| b.iter(|| black_box(&record).leaf_hash()));
}

fn merkle_1m(c: &mut Criterion) {
    let mut tree = MemoryTree::new();
    for i in 0..LEAVES {
        tree.push(merkle::leaf_hash(&i.to_be_bytes()));
    }
    c.bench_function("merkle/append_at_1m", |b| {
        b.iter_batched(|| tree.clone(), |mut t| t.push([1; 32]), BatchSize::LargeInput)
    });
    c.bench_function("merkle/stored_hashes_at_1m", |b| {
        b.iter(|| merkle::stored_hashes_for_leaf(LEAVES - 1, [1; 32], &tree).unwrap())
    });
    c.bench_function("merkle/root_at_1m", |b| b.iter(|| tree.root_at(black_box(LEAVES - 3)).unwrap()));
    proofs_at_1m(c, "merkle", &tree);
    let root = tree.root();
    let proof = tree.inclusion_proof(123_456, LEAVES).unwrap();
    let leaf = merkle::leaf_hash(&123_456u64.to_be_bytes());
    c.bench_function("merkle/verify_inclusion_at_1m", |b| {
        b.iter(|| merkle::verify_inclusion(123_456, LEAVES, &leaf, black_box(&proof), &root).unwrap())
    });
}

fn signatures(c: &mut Criterion) {
    let keys: Vec<DalekKey> = (0..BATCH_SIGNATURES).map(|i| DalekKey::from_bytes(&[i as u8 + 1; 32])).collect();
    let msgs: Vec<Vec<u8>> = (0..BATCH_SIGNATURES).map(|i| format!("DSSEv1 message {i}").into_bytes()).collect();
    let sigs: Vec<ed25519_dalek::Signature> = keys.iter().zip(&msgs).map(|(k, m)| k.sign(m)).collect();
    let vks: Vec<VerifyingKey> = keys.iter().map(|k| k.verifying_key()).collect();
    c.bench_function("ed25519/verify_strict_single", |b| {
        b.iter(|| vks[0].verify_strict(black_box(&msgs[0]), &sigs[0]).unwrap())
    });
    let msg_refs: Vec<&[u8]> = msgs.iter().map(|m| m.as_slice()).collect();
    c.bench_function("ed25519/verify_batch_64", |b| {
        b.iter(|| ed25519_dalek::verify_batch(black_box(&msg_refs), &sigs, &vks).unwrap())
    });
    let key = SigningKey::from_seed("bot", [3; 32]).unwrap();
    let env = Envelope::sign(vec![b'{'; 512], &[&key]).canonical_json();
    c.bench_function("dsse/parse_and_verify_envelope", |b| {
        let vk = key.verifier();
        b.iter(|| {
            let e = Envelope::parse(black_box(&env)).unwrap();
            e.verify(|_| Some(vk.clone())).unwrap()
        })
    });
}

fn storage(c: &mut Criterion) {
    let value = vec![b'v'; ENVELOPE_BYTES];
    {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let mut n = 0u64;
        c.bench_function("sled/insert_flush_each", |b| {
            b.iter(|| {
                n += 1;
                db.insert(n.to_be_bytes(), value.as_slice()).unwrap();
                db.flush().unwrap();
            })
        });
    }
    {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let mut n = 0u64;
        c.bench_function("sled/insert_256_flush_once", |b| {
            b.iter(|| {
                for _ in 0..SLED_GROUP {
                    n += 1;
                    db.insert(n.to_be_bytes(), value.as_slice()).unwrap();
                }
                db.flush().unwrap();
            })
        });
    }
    {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut n = 0u64;
        c.bench_function("store/append_batch_256", |b| {
            b.iter_batched(
                || {
                    (0..SLED_GROUP)
                        .map(|_| {
                            n += 1;
                            Entry { id: format!("id-{n}"), envelope: value.clone(), received_at_ms: 0 }
                        })
                        .collect::<Vec<_>>()
                },
                |batch| store.append(&batch).unwrap(),
                BatchSize::SmallInput,
            )
        });
    }
}

/// Proofs as the server serves them: from a sled store of 1,000,000 records, which keeps the
/// last hash tile and the upper levels in memory and reads the lowest levels from sled tiles.
fn store_proofs_1m(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let envelope = vec![b'e'; 64];
    let mut n = 0u64;
    while n < LEAVES {
        let batch: Vec<Entry> = (n..(n + STORE_FILL_BATCH).min(LEAVES))
            .map(|i| Entry { id: format!("id-{i}"), envelope: envelope.clone(), received_at_ms: 0 })
            .collect();
        n += batch.len() as u64;
        store.append(&batch).unwrap();
    }
    proofs_at_1m(c, "store", &store);
    c.bench_function("store/root_at_1m", |b| b.iter(|| store.root_at(black_box(LEAVES - 3)).unwrap()));
}

criterion_group!(benches, records, merkle_1m, signatures, storage, store_proofs_1m);
criterion_main!(benches);
