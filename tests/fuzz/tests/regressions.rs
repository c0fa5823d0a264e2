//! Minimal reproductions of what the fuzz targets found (tests/fuzz/regressions.md). A test
//! of an open finding is `#[ignore]`d with its number: it fails until the crate owning the
//! code is fixed. Run them with `cargo test --manifest-path tests/fuzz/Cargo.toml -- --include-ignored`.

use ledger::merkle::{empty_root, verify_consistency, ProofError};

/// Finding 1 (target `proofs`): between two empty trees, the new root is not checked, so a
/// "tree of size 0" with any root passes as consistent with the empty tree.
#[test]
fn consistency_between_empty_trees_checks_the_new_root() {
    let empty = empty_root();
    assert_eq!(verify_consistency(0, 0, &empty, &empty, &[]), Ok(()));
    let mut other = empty;
    other[9] ^= 1;
    assert_eq!(verify_consistency(0, 0, &empty, &other, &[]), Err(ProofError::RootMismatch));
}

/// The fuzzer's own input for finding 1 runs through the harness (with
/// `proofs::SKIP_FINDING_1` off, this fails until the finding is fixed).
#[test]
fn finding_1_fuzzer_input() {
    // mode 0x61 (mutated), 45 leaves, salt 0, consistency 0..0, flip bit 0 of byte 9 of the new root.
    grantline_fuzz::proofs::run(&[0x61, 0x2c, 0x00, 0x00, 0x00, 0x02, 0x09]);
}

/// Observation 2 (fixed; see regressions.md): two requests that reach their quorum in one
/// batch, before automation runs, used to be checked against the same unallocated credits.
/// Credits of requests awaiting their grant now count as taken.
#[test]
fn quorums_in_one_batch_cannot_over_allocate_a_pool() {
    use grantline_fuzz::projector::{run_with_report, ACTORS, AMOUNTS, RESOURCES};
    use projector::data::EVENT_TYPES;
    let op = |kind: &str| EVENT_TYPES.iter().position(|k| *k == kind).unwrap() as u8;
    let actor = |name: &str| ACTORS.iter().position(|a| *a == name).unwrap() as u8;
    let xlarge = RESOURCES.iter().position(|r| *r == "gpu-xlarge").unwrap() as u8;
    let thousand = AMOUNTS.iter().position(|a| *a == 1000).unwrap() as u8;
    // Header: event type, clock +1 s, actor, own first key, (other), issued now, flags
    // 0x20 = automation waits for the end of the batch.
    let step = |kind: &str, who: &str, fields: &[u8]| {
        let mut s = vec![op(kind), 1, 1, actor(who), 0, 0, 0, 0x20];
        s.extend_from_slice(fields);
        s
    };
    let mut input = vec![2];
    for (request, who) in [(0u8, "req1"), (1, "req2")] {
        // users none, request, project 0, gpu-xlarge, justification, no PRs, no on_behalf_of,
        // credits 1000, no days.
        input.extend(step("access.requested", who, &[0, request, 0, xlarge, 1, 0, 0, 1, thousand, 0]));
    }
    for reviewer in ["rev1", "rev2"] {
        for request in [0u8, 1] {
            // request, no note, pool p1, no credits, no days.
            input.extend(step("request.approved", reviewer, &[request, 0, 1, 0, 0, 0]));
        }
    }
    input.extend([23, 1, 1]); // a clock step: the batch ends, automation runs.
    let report = run_with_report(&input);
    let grants = report.accepted.iter().filter(|(_, kind, _)| kind == "grant.issued").count();
    assert_eq!(grants, 1, "{report:?}");
    let p1 = report.pools.iter().find(|p| p.pool == "p1").unwrap();
    assert_eq!((p1.deposited, p1.allocated), (1000, 1000));
}
