//! `grantline monitor` against live servers: it follows a growing log, and flags the second of
//! two inconsistent checkpoints signed by the same log key (a server forked from a copy of
//! another's data directory).

mod common;
mod common_audit;

use std::path::Path;

use api::testing::exit;
use common::*;
use common_audit::*;
use ledger::checkpoint::Checkpoint;
use ledger::keys::VerifierKey;

fn monitor(server: &Server, log_key: &str, state: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["monitor", "--server", &server.url, "--log-key", log_key, "--state", state.to_str().unwrap()];
    args.extend_from_slice(extra);
    grantline(&args)
}

fn saved_size(state: &Path, key: &str) -> u64 {
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(state).unwrap()).unwrap();
    let note = saved["checkpoint"].as_str().unwrap();
    Checkpoint::open(note.as_bytes(), &VerifierKey::parse(key).unwrap()).unwrap().size
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn the_monitor_follows_a_growing_log_and_verify_accepts_it() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"));
    let key = server.log().log_key;
    let cast = cast(&server, tmp.path());
    let state = tmp.path().join("monitor.json");
    assert_ok(&monitor(&server, &key, &state, &["--once"]));
    let first = saved_size(&state, &key);
    assert_eq!(first, server.log().size);

    // Events arrive while it watches.
    let out = std::thread::scope(|scope| {
        let watching = scope.spawn(|| monitor(&server, &key, &state, &["--duration-ms", "4000", "--poll-ms", "100"]));
        std::thread::sleep(std::time::Duration::from_millis(500));
        grant_many(&server, &cast, "live", 8);
        watching.join().unwrap()
    });
    let said = assert_ok(&out);
    let size = wait_for_size(&server, first + 32);
    assert!(saved_size(&state, &key) > first, "{said}");
    assert!(said.contains("records followed"), "{said}");

    // Its state is a verifier's state too.
    let verified = assert_ok(&grantline(&[
        "verify",
        "--server",
        &server.url,
        "--log-key",
        &key,
        "--state",
        state.to_str().unwrap(),
    ]));
    assert!(verified.contains(&format!("verified: {size} events")), "{verified}");
}

#[test]
fn the_monitor_flags_the_second_of_two_inconsistent_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let data_a = tmp.path().join("a");
    let server = Server::start(&data_a);
    let key = server.log().log_key;
    let cast = cast(&server, tmp.path());
    grant_many(&server, &cast, "shared", 4);
    wait_for_size(&server, 7 + 16);
    server.stop();

    // B starts from a copy of A's data directory: same history, same log key.
    let data_b = tmp.path().join("b");
    copy_dir(&data_a, &data_b);
    let a = Server::start(&data_a);
    let b = Server::start(&data_b);
    assert_eq!(a.log().root, b.log().root);
    // Then they diverge.
    open_pending(&a, &cast, "only-on-a");
    open_pending(&b, &cast, "only-on-b");
    assert_eq!(a.log().size, b.log().size);
    assert_ne!(a.log().root, b.log().root);

    let state = tmp.path().join("monitor.json");
    assert_ok(&monitor(&a, &key, &state, &["--once"]));
    let saved = std::fs::read(&state).unwrap();
    let out = monitor(&b, &key, &state, &["--once"]);
    assert_fails(&out, exit::CONSISTENCY.into(), None);
    assert!(stderr(&out).contains("ALERT") && stderr(&out).contains("inconsistent"), "{}", stderr(&out));
    assert_eq!(std::fs::read(&state).unwrap(), saved, "the bad checkpoint is not saved");

    // B grows past A: its proof from A's checkpoint still cannot verify.
    open_pending(&b, &cast, "more-on-b");
    let out = monitor(&b, &key, &state, &["--once"]);
    assert_fails(&out, exit::CONSISTENCY.into(), None);
    // And A keeps passing.
    open_pending(&a, &cast, "more-on-a");
    assert_ok(&monitor(&a, &key, &state, &["--once"]));
}
