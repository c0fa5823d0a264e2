//! A naive RFC 6962 (section 2.1) implementation over leaf hashes, MTH memoised by range: the
//! independent reference the store's and the tree's proofs are compared with.

use std::collections::HashMap;

use ledger::merkle;
use ledger::Hash;

/// The tree over `leaves`.
pub(crate) struct Naive {
    pub(crate) leaves: Vec<Hash>,
    memo: HashMap<(usize, usize), Hash>,
}

/// The largest power of two smaller than n (n > 1).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

impl Naive {
    pub(crate) fn new(leaves: Vec<Hash>) -> Naive {
        Naive { leaves, memo: HashMap::new() }
    }

    /// MTH(D[lo:hi]).
    pub(crate) fn mth(&mut self, lo: usize, hi: usize) -> Hash {
        if let Some(h) = self.memo.get(&(lo, hi)) {
            return *h;
        }
        let h = match hi - lo {
            0 => merkle::empty_root(),
            1 => self.leaves[lo],
            n => {
                let k = split(n);
                let left = self.mth(lo, lo + k);
                let right = self.mth(lo + k, hi);
                merkle::node_hash(&left, &right)
            }
        };
        self.memo.insert((lo, hi), h);
        h
    }

    /// PATH(m, D[lo:hi]): the inclusion proof.
    pub(crate) fn path(&mut self, m: usize, lo: usize, hi: usize) -> Vec<Hash> {
        let n = hi - lo;
        if n == 1 {
            return Vec::new();
        }
        let k = split(n);
        let mut p = if m < k { self.path(m, lo, lo + k) } else { self.path(m - k, lo + k, hi) };
        p.push(if m < k { self.mth(lo + k, hi) } else { self.mth(lo, lo + k) });
        p
    }

    /// PROOF(m, D[0:n]): the consistency proof (empty for m = 0 and m = n).
    pub(crate) fn consistency(&mut self, m: usize, n: usize) -> Vec<Hash> {
        if m == 0 || m == n {
            return Vec::new();
        }
        self.subproof(m, 0, n, true)
    }

    /// SUBPROOF(m, D[lo:hi], b).
    pub(crate) fn subproof(&mut self, m: usize, lo: usize, hi: usize, b: bool) -> Vec<Hash> {
        let n = hi - lo;
        if m == n {
            return if b { Vec::new() } else { vec![self.mth(lo, hi)] };
        }
        let k = split(n);
        if m <= k {
            let mut p = self.subproof(m, lo, lo + k, b);
            p.push(self.mth(lo + k, hi));
            p
        } else {
            let mut p = self.subproof(m - k, lo + k, hi, false);
            p.push(self.mth(lo, lo + k));
            p
        }
    }
}
