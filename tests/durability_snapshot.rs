//! Projection snapshots never change the state a restart produces: the state restored from a
//! snapshot plus the records after it equals a full replay of the log, and a snapshot that
//! does not belong to the log is ignored.

mod common;

use std::process::Command;

use api::testing::{self as datadir, DataDir};
use api::testing::{self as state_snapshot, Fold, STATE_SNAPSHOT_META_KEY};
use common::*;

fn run(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "grantline {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn state_json(state: &projector::State) -> serde_json::Value {
    serde_json::to_value(state).unwrap()
}

#[test]
fn snapshot_plus_tail_equals_full_replay() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let data_s = data.to_str().unwrap();
    // Initialise, then fill offline: the fill saves a snapshot at its end.
    let server = Server::start(&data);
    drop(server);
    let out = run(&["loadgen", "fill", "--data", data_s, "--events", "12000", "--actors", "4"]);
    assert!(out.contains("appended 12000 events"), "{out}");

    // A tail after the snapshot, posted over HTTP by the load generator; then SIGKILL, so no
    // shutdown snapshot is written.
    let server = Server::start(&data);
    let admin_key = data.join("admin.key");
    let out = run(&[
        "loadgen",
        "appends",
        "--server",
        &server.url,
        "--admin-key",
        admin_key.to_str().unwrap(),
        "--events",
        "500",
        "--connections",
        "8",
        "--actors",
        "3",
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["main"]["ok"], 500, "{out}");
    drop(server);

    let dir = DataDir::new(&data);
    let opened = datadir::open(&dir).unwrap();
    let snapshot = opened.store.get_meta(STATE_SNAPSHOT_META_KEY).unwrap().expect("the fill saved a snapshot");
    let snapshot: serde_json::Value = serde_json::from_slice(&snapshot).unwrap();
    let snapshot_size = snapshot["size"].as_u64().unwrap();
    assert!(snapshot_size > 12000 && snapshot_size < opened.store.size(), "the restore must replay a tail");

    // The sequential fold: every record through `apply_logged`, one by one.
    let mut sequential = Fold::new();
    let mut warnings = 0;
    for rec in (0..opened.store.size()).map(|seq| opened.store.get(seq).unwrap().unwrap()) {
        warnings += u64::from(sequential.apply_logged(&rec).is_err());
    }
    let full = sequential.into_state();
    assert_eq!(warnings, 0);
    assert_eq!(full.size(), opened.store.size());
    assert_eq!(opened.fold.state().size(), full.size());
    assert_eq!(state_json(opened.fold.state()), state_json(&full));
    // The parallel-verifying replay from scratch (the fill's events after the first page reuse
    // signatures checked against the page's starting state) equals the sequential one.
    let (parallel, warnings) = Fold::new().replay(&opened.store).unwrap();
    assert_eq!(warnings, 0);
    assert_eq!(state_json(parallel.state()), state_json(&full));

    // A snapshot of another log (its head does not match, its state differs) is ignored.
    let mut foreign = snapshot.clone();
    foreign["head"] = serde_json::Value::String(ledger::b64::encode([7u8; 32]));
    foreign["state"]["actors"] = serde_json::json!({});
    opened.store.put_meta(STATE_SNAPSHOT_META_KEY, &serde_json::to_vec(&foreign).unwrap()).unwrap();
    let (restored, _) = state_snapshot::restore(&opened.store).unwrap();
    assert_eq!(state_json(restored.state()), state_json(&full));

    // Undecodable bytes too.
    opened.store.put_meta(STATE_SNAPSHOT_META_KEY, b"not json").unwrap();
    let (restored, _) = state_snapshot::restore(&opened.store).unwrap();
    assert_eq!(state_json(restored.state()), state_json(&full));

    // A snapshot saved now is used as is (no tail) and gives the same state.
    state_snapshot::save(&opened.store, &full, 0).unwrap();
    let (restored, _) = state_snapshot::restore(&opened.store).unwrap();
    assert_eq!(state_json(restored.state()), state_json(&full));
    let size = opened.store.size();
    opened.store.put_meta(STATE_SNAPSHOT_META_KEY, b"stale").unwrap();
    drop(opened);

    // A clean shutdown saves a snapshot at the last record.
    let server = Server::start(&data);
    server.stop();
    let store = ledger::store::Store::open(&data.join("db")).unwrap();
    let saved: serde_json::Value =
        serde_json::from_slice(&store.get_meta(STATE_SNAPSHOT_META_KEY).unwrap().unwrap()).unwrap();
    assert_eq!(saved["size"].as_u64(), Some(size));
}
