//! `grantline prove` and `grantline verify-receipt`: a receipt verifies with no server at all,
//! and fails when any byte of it changes.

mod common;
mod common_audit;

use api::testing::exit;
use common::*;
use common_audit::*;

#[test]
fn receipts_verify_offline_and_fail_when_any_byte_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"));
    let key = server.log().log_key;
    let cast = cast(&server, tmp.path());
    open_request(&server, &cast, "gpu-1");
    grant_many(&server, &cast, "more", 3);

    let receipt = tmp.path().join("receipt.json");
    let out = grantline(&["prove", "open-gpu-1", "--server", &server.url, "--out", receipt.to_str().unwrap()]);
    assert_ok(&out);
    // On stdout too, pinned to the key.
    let printed = assert_ok(&grantline(&["prove", "genesis", "--server", &server.url, "--log-key", &key]));
    let genesis = tmp.path().join("genesis.json");
    std::fs::write(&genesis, printed).unwrap();
    let unknown = grantline(&["prove", "no-such-event", "--server", &server.url]);
    assert_fails(&unknown, exit::USAGE.into(), None);
    server.stop();

    // No server from here on.
    let verify = |path: &std::path::Path| grantline(&["verify-receipt", path.to_str().unwrap(), "--log-key", &key]);
    let said = assert_ok(&verify(&receipt));
    assert!(said.contains("open-gpu-1") && said.contains("access.requested"), "{said}");
    assert!(assert_ok(&verify(&genesis)).contains("ledger.genesis"));

    let bytes = std::fs::read(&receipt).unwrap();
    let changed = tmp.path().join("changed.json");
    let offsets = [
        0,
        1,
        9,
        bytes.len() / 7,
        bytes.len() / 3,
        bytes.len() / 2,
        bytes.len() * 3 / 4,
        bytes.len() - 60,
        bytes.len() - 2,
        bytes.len() - 1,
    ];
    for at in offsets {
        let mut b = bytes.clone();
        b[at] ^= 0x01;
        std::fs::write(&changed, &b).unwrap();
        let out = verify(&changed);
        assert_ne!(code(&out), 0, "byte {at} changed and the receipt still verifies");
    }
    // Another log's key does not vouch for it.
    let other = ledger::keys::SigningKey::generate("localhost/grantline").unwrap().verifier().to_string();
    let out = grantline(&["verify-receipt", receipt.to_str().unwrap(), "--log-key", &other]);
    assert_fails(&out, exit::CHECKPOINT.into(), None);
}
