//! Inclusion and consistency proofs from the stored-hash tree against a naive recursive
//! RFC 6962 implementation (`common/naive.rs`, written from the RFC's definitions), for every index and
//! every size up to SIZE_MAX; and a flipped bit anywhere makes verification fail.

mod common;

use common::naive::Naive;
use ledger::merkle::{
    self, empty_root, leaf_hash, prove_consistency, prove_inclusion, verify_consistency, verify_inclusion, MemoryTree,
    ProofError,
};
use ledger::Hash;
use proptest::prelude::*;

const SIZE_MAX: u64 = 300;

fn leaf_of(i: u64) -> Vec<u8> {
    format!("leaf {i}").into_bytes()
}

fn memory_tree(n: u64) -> MemoryTree {
    let mut tree = MemoryTree::new();
    for i in 0..n {
        tree.push(leaf_hash(&leaf_of(i)));
    }
    tree
}

fn flip(h: &Hash, bit: usize) -> Hash {
    let mut h = *h;
    h[(bit / 8) % 32] ^= 1 << (bit % 8);
    h
}

#[test]
fn inclusion_proofs_match_naive_rfc6962_for_every_index_and_size() {
    let tree = memory_tree(SIZE_MAX);
    let mut naive = Naive::new((0..SIZE_MAX).map(leaf_of).map(|l| leaf_hash(&l)).collect());
    for size in 1..=SIZE_MAX {
        let root = naive.mth(0, size as usize);
        assert_eq!(tree.root_at(size).unwrap(), root, "root of size {size}");
        for index in 0..size {
            let proof = prove_inclusion(index, size, &tree).unwrap();
            assert_eq!(proof, naive.path(index as usize, 0, size as usize), "index {index} size {size}");
            let leaf = naive.leaves[index as usize];
            assert_eq!(verify_inclusion(index, size, &leaf, &proof, &root), Ok(()));
            // A flipped bit in the leaf, in any proof hash or in the root fails.
            let bit = (index * 31 + size) as usize;
            assert!(verify_inclusion(index, size, &flip(&leaf, bit), &proof, &root).is_err());
            assert!(verify_inclusion(index, size, &leaf, &proof, &flip(&root, bit)).is_err());
            for i in 0..proof.len() {
                let mut bad = proof.clone();
                bad[i] = flip(&bad[i], bit + i);
                assert_eq!(verify_inclusion(index, size, &leaf, &bad, &root), Err(ProofError::RootMismatch));
            }
            // The proof is bound to its index. (Not to its size alone: the root is what
            // pins the size, e.g. index 0 has the same proof shape in trees of 3 and 4.)
            if size > 1 {
                let other = (index + 1) % size;
                assert!(verify_inclusion(other, size, &leaf, &proof, &root).is_err());
            }
        }
    }
}

#[test]
fn consistency_proofs_match_naive_rfc6962_for_every_pair_of_sizes() {
    let tree = memory_tree(SIZE_MAX);
    let mut naive = Naive::new((0..SIZE_MAX).map(leaf_of).map(|l| leaf_hash(&l)).collect());
    let roots: Vec<Hash> = (0..=SIZE_MAX).map(|n| naive.mth(0, n as usize)).collect();
    for new in 1..=SIZE_MAX {
        for old in 1..=new {
            let proof = prove_consistency(old, new, &tree).unwrap();
            let want = if old == new { Vec::new() } else { naive.subproof(old as usize, 0, new as usize, true) };
            assert_eq!(proof, want, "{old} -> {new}");
            let (r_old, r_new) = (roots[old as usize], roots[new as usize]);
            assert_eq!(verify_consistency(old, new, &r_old, &r_new, &proof), Ok(()), "{old} -> {new}");
            let bit = (old * 17 + new) as usize;
            assert!(verify_consistency(old, new, &flip(&r_old, bit), &r_new, &proof).is_err());
            assert!(verify_consistency(old, new, &r_old, &flip(&r_new, bit), &proof).is_err());
            for i in 0..proof.len() {
                let mut bad = proof.clone();
                bad[i] = flip(&bad[i], bit + i);
                assert!(verify_consistency(old, new, &r_old, &r_new, &bad).is_err(), "{old} -> {new} hash {i}");
            }
            // Against the true roots of other sizes the proof fails.
            if old < new {
                let r_shorter = roots[new as usize - 1];
                assert!(verify_consistency(old, new - 1, &r_old, &r_shorter, &proof).is_err());
                let r_later = roots[old as usize + 1];
                assert!(verify_consistency(old + 1, new, &r_later, &r_new, &proof).is_err());
            }
        }
        // From the empty tree.
        assert_eq!(prove_consistency(0, new, &tree).unwrap(), Vec::<Hash>::new());
        assert_eq!(verify_consistency(0, new, &empty_root(), &roots[new as usize], &[]), Ok(()));
    }
}

/// Every bit of every hash, for a few sizes (the exhaustive loops above flip one bit each).
#[test]
fn every_single_bit_flip_fails() {
    let tree = memory_tree(13);
    let root = tree.root();
    let leaf = leaf_hash(&leaf_of(6));
    let proof = prove_inclusion(6, 13, &tree).unwrap();
    let old_root = tree.root_at(6).unwrap();
    let cproof = prove_consistency(6, 13, &tree).unwrap();
    for bit in 0..256 {
        assert!(verify_inclusion(6, 13, &flip(&leaf, bit), &proof, &root).is_err());
        for i in 0..proof.len() {
            let mut bad = proof.clone();
            bad[i] = flip(&bad[i], bit);
            assert!(verify_inclusion(6, 13, &leaf, &bad, &root).is_err());
        }
        for i in 0..cproof.len() {
            let mut bad = cproof.clone();
            bad[i] = flip(&bad[i], bit);
            assert!(verify_consistency(6, 13, &old_root, &root, &bad).is_err());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Larger trees: proofs verify, and any flipped bit in the proof or leaf fails.
    #[test]
    fn random_proofs_in_larger_trees(size in 1u64..5_000, index_seed: u64, old_seed: u64, bit in 0usize..256, pos_seed: usize) {
        let tree = memory_tree(size);
        let root = tree.root();
        let index = index_seed % size;
        let leaf = leaf_hash(&leaf_of(index));
        let proof = prove_inclusion(index, size, &tree).unwrap();
        prop_assert_eq!(verify_inclusion(index, size, &leaf, &proof, &root), Ok(()));
        prop_assert!(verify_inclusion(index, size, &flip(&leaf, bit), &proof, &root).is_err());
        if !proof.is_empty() {
            let mut bad = proof.clone();
            let pos = pos_seed % bad.len();
            bad[pos] = flip(&bad[pos], bit);
            prop_assert!(verify_inclusion(index, size, &leaf, &bad, &root).is_err());
        }
        let old = 1 + old_seed % size;
        let old_root = tree.root_at(old).unwrap();
        let cproof = prove_consistency(old, size, &tree).unwrap();
        prop_assert_eq!(verify_consistency(old, size, &old_root, &root, &cproof), Ok(()));
        if !cproof.is_empty() {
            let mut bad = cproof.clone();
            let pos = pos_seed % bad.len();
            bad[pos] = flip(&bad[pos], bit);
            prop_assert!(verify_consistency(old, size, &old_root, &root, &bad).is_err());
        }
    }

    /// Verification never panics on arbitrary input.
    #[test]
    fn verification_of_garbage_is_an_error_not_a_panic(
        index: u64, size: u64, old: u64, len in 0usize..70, seed: u8,
    ) {
        let proof: Vec<Hash> = (0..len).map(|i| [seed.wrapping_add(i as u8); 32]).collect();
        let h = [seed; 32];
        let _ = verify_inclusion(index, size, &h, &proof, &h);
        let _ = verify_consistency(old, size, &h, &h, &proof);
        let tree = memory_tree(3);
        let _ = merkle::prove_inclusion(index, size, &tree);
        let _ = merkle::prove_consistency(old, size, &tree);
        let _ = merkle::tree_hash(size, &tree);
    }
}

/// Fuzzing finding 1 (tests/fuzz/regressions.md): between two empty trees the new root must
/// be checked too; size 0 has exactly one root.
#[test]
fn consistency_between_empty_trees_checks_the_new_root() {
    use ledger::merkle::{empty_root, verify_consistency, ProofError};
    let empty = empty_root();
    assert_eq!(verify_consistency(0, 0, &empty, &empty, &[]), Ok(()));
    let mut other = empty;
    other[9] ^= 1;
    assert_eq!(verify_consistency(0, 0, &empty, &other, &[]), Err(ProofError::RootMismatch));
    assert_eq!(verify_consistency(0, 0, &other, &other, &[]), Err(ProofError::RootMismatch));
}
