//! Every committed seed runs through its target's harness without a finding, and the seed
//! directories stay within the corpus policy (at most 50 files of at most 64 KiB each).

use std::path::Path;

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds").join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(!files.is_empty() && files.len() <= 50, "{target}: {} seeds", files.len());
    files
        .iter()
        .map(|f| {
            let bytes = std::fs::read(f).unwrap();
            assert!(bytes.len() <= 64 * 1024, "{} is larger than 64 KiB", f.display());
            bytes
        })
        .collect()
}

#[test]
fn envelope_seeds_are_valid_signed_envelopes() {
    let all = seeds("envelope");
    let parsed = all.iter().filter(|s| ledger::dsse::Envelope::parse(s).is_ok()).count();
    assert!(parsed + 1 >= all.len(), "all seeds but the bare statement are envelopes");
    all.iter().for_each(|s| grantline_fuzz::envelope::run(s));
}

#[test]
fn leaf_seeds_decode() {
    for s in seeds("leaf") {
        assert!(ledger::record::Record::decode(&s).is_ok());
        grantline_fuzz::leaf::run(&s);
    }
}

#[test]
fn note_seeds_run() {
    let all = seeds("note");
    let key = grantline_fuzz::keys::log_key().verifier();
    let opened = all.iter().filter(|s| ledger::checkpoint::Checkpoint::open(s, &key).is_ok()).count();
    assert!(opened >= 5, "only {opened} seeds are checkpoints signed by the log key");
    all.iter().for_each(|s| grantline_fuzz::note::run(s));
}

#[test]
fn proof_seeds_run() {
    seeds("proofs").iter().for_each(|s| grantline_fuzz::proofs::run(s));
}

#[test]
fn projector_seeds_reach_automation() {
    let mut automated = 0;
    for s in seeds("projector") {
        let report = grantline_fuzz::projector::run_with_report(&s);
        automated += report.accepted.iter().filter(|(_, _, actor)| actor == "automation").count();
    }
    assert!(automated >= 5, "the projector seeds make automation act only {automated} times");
}
