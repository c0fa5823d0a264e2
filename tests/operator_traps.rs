//! What a new operator and a new auditor hit on their first day, through the real binary:
//! `serve` never makes up a ledger in a directory it was pointed at, says when another server
//! holds the directory, and says which key files a restored directory lacks; private key
//! files readable by others are refused with the `chmod` to run; a key whose id does not match
//! says so; `prove` takes a seq; the `log.pub` of the help exists.

mod common;
mod common_audit;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use api::testing::exit;
use common::*;
use common_audit::*;

/// A `serve` that must fail has this long to do it (it waits up to 5 s for a held lock).
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `grantline ARGS` in `cwd`; a command that does not exit in time is killed and fails
/// the test, so a `serve` that wrongly starts cannot hang it.
fn run_bounded(cwd: &Path, args: &[&str]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .env_remove("GRANTLINE_SERVER")
        .env_remove("GRANTLINE_KEY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + REFUSAL_TIMEOUT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("grantline {args:?} did not exit; stdout: {}", String::from_utf8_lossy(&out.stdout));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// `serve --addr 127.0.0.1:0 --data DIR`, which must be refused.
fn serve_refused(cwd: &Path, data: &Path) -> String {
    let out = run_bounded(cwd, &["serve", "--addr", "127.0.0.1:0", "--data", data.to_str().unwrap()]);
    assert_ne!(code(&out), 0, "serve started over {}: {}", data.display(), stdout(&out));
    assert!(!stdout(&out).contains("listening"), "{}", stdout(&out));
    stderr(&out)
}

#[cfg(unix)]
fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn serve_never_makes_up_a_ledger_in_a_directory_it_was_given() {
    let tmp = tempfile::tempdir().unwrap();
    // A directory that does not exist (a typo) stays that way.
    let typo = tmp.path().join("grantline-dta");
    let said = serve_refused(tmp.path(), &typo);
    assert!(said.contains("grantline init --data") && said.contains("grantline-dta"), "{said}");
    assert!(!typo.exists(), "serve created {}", typo.display());
    // An empty directory is not a ledger either.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let said = serve_refused(tmp.path(), &empty);
    assert!(said.contains("not an initialised data directory") && said.contains("grantline init"), "{said}");
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0, "serve wrote into {}", empty.display());

    // With no --data, the walkthrough's ./grantline-data is made, and it says so.
    let server = Server::start_default(tmp.path());
    let printed = server.stdout.join("\n");
    assert!(printed.contains("no --data given and ./grantline-data holds no ledger yet"), "{printed}");
    assert!(printed.contains("initialised ledger localhost/grantline in grantline-data"), "{printed}");
    // init leaves the log's verifier key where the help's examples read it.
    let log = server.log();
    let log_pub = std::fs::read_to_string(tmp.path().join("grantline-data/log.pub")).unwrap();
    assert_eq!(log_pub, format!("{}\n", log.log_key));
    assert!(printed.contains("grantline-data/log.pub"), "{printed}");
    let pinned = tmp.path().join("grantline-data/log.pub");
    let report = assert_ok(&grantline(&["verify", "--server", &server.url, "--log-key", pinned.to_str().unwrap()]));
    assert!(report.contains("verified: 1 events"), "{report}");

    // A second server on the same directory is told who holds it.
    let data = tmp.path().join("grantline-data");
    let started = Instant::now();
    let said = serve_refused(tmp.path(), &data);
    assert!(said.contains("another grantline server") && said.contains("grantline-data"), "{said}");
    assert!(!said.contains("WouldBlock"), "{said}");
    assert!(started.elapsed() < REFUSAL_TIMEOUT);
    // The running server is unharmed.
    assert_eq!(server.log(), log);
    server.stop();
}

#[test]
fn a_restored_directory_names_the_missing_key_files_and_serves_once_they_are_back() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let server = Server::start(&data);
    let cast = cast(&server, tmp.path());
    grant_many(&server, &cast, "restore", 2);
    let size = wait_for_size(&server, 7 + 8);
    let log = server.log();
    let (export, checkpoint) = export_server(&server, tmp.path());
    server.stop();

    // The help's restore, step by step: import with the log.pub init wrote.
    let restored = tmp.path().join("restored");
    let out = grantline(&[
        "import",
        export.to_str().unwrap(),
        "--data",
        restored.to_str().unwrap(),
        "--checkpoint",
        checkpoint.to_str().unwrap(),
        "--log-key",
        data.join("log.pub").to_str().unwrap(),
    ]);
    let said = assert_ok(&out);
    assert!(said.contains("copy log.key and automation.key from the backup of the old data directory"), "{said}");
    assert_eq!(std::fs::read_to_string(restored.join("log.pub")).unwrap(), format!("{}\n", log.log_key));

    let said = serve_refused(tmp.path(), &restored);
    assert!(said.contains("private key files log.key and automation.key"), "{said}");
    assert!(said.contains("backup of the old data directory"), "{said}");
    assert!(said.contains("cp OLD-DATA/log.key OLD-DATA/automation.key"), "{said}");

    // One back: only the other is named.
    std::fs::copy(data.join("log.key"), restored.join("log.key")).unwrap();
    let said = serve_refused(tmp.path(), &restored);
    assert!(said.contains("private key file automation.key:"), "{said}");
    assert!(!said.contains("log.key and"), "{said}");

    std::fs::copy(data.join("automation.key"), restored.join("automation.key")).unwrap();
    let again = Server::start(&restored);
    assert!(again.stdout.is_empty(), "the restored directory was initialised anew: {:?}", again.stdout);
    let restored_log = again.log();
    assert_eq!((restored_log.size, restored_log.root), (size, log.root));
    assert_eq!(restored_log.log_key, log.log_key);
    again.stop();
}

#[cfg(unix)]
#[test]
fn private_key_files_readable_by_others_are_refused_with_the_chmod_to_run() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let server = Server::start(&data);
    let url = server.url.clone();
    let (alice_key, _) = keygen(tmp.path(), "alice");
    let alice = alice_key.to_str().unwrap();

    chmod(&alice_key, 0o644);
    let out = grantline(&["approve", "gpu-1", "--key", alice, "--server", &url]);
    assert_ne!(code(&out), 0);
    let said = stderr(&out);
    assert!(said.contains("permissions 0644") && said.contains(&format!("chmod 600 {alice}")), "{said}");
    // Group-readable is as bad; after the chmod the key is read (the server then judges).
    chmod(&alice_key, 0o640);
    assert!(stderr(&grantline(&["approve", "gpu-1", "--key", alice, "--server", &url])).contains("chmod 600"));
    chmod(&alice_key, 0o600);
    let said = stderr(&grantline(&["approve", "gpu-1", "--key", alice, "--server", &url]));
    assert!(!said.contains("chmod") && said.contains("the server did not log"), "{said}");
    server.stop();

    // The server's own keys too.
    let log_key = data.join("log.key");
    chmod(&log_key, 0o644);
    let said = serve_refused(tmp.path(), &data);
    assert!(said.contains(&format!("chmod 600 {}", log_key.display())), "{said}");
    chmod(&log_key, 0o600);
    Server::start(&data).stop();
}

#[test]
fn a_key_whose_id_does_not_match_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let (key_path, key) = keygen(tmp.path(), "carol");
    // Renamed by hand: the id no longer matches the name and key.
    let text = std::fs::read_to_string(&key_path).unwrap().replacen("+carol+", "+carla+", 1);
    let renamed = tmp.path().join("carla.key");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    std::io::Write::write_all(&mut opts.open(&renamed).unwrap(), text.as_bytes()).unwrap();
    let out = grantline(&["approve", "gpu-1", "--key", renamed.to_str().unwrap(), "--server", "http://127.0.0.1:1"]);
    assert_ne!(code(&out), 0);
    let said = stderr(&out);
    assert!(said.contains("key id mismatch") && said.contains("carla.key"), "{said}");
    assert!(said.contains(&format!("{:08x}", key.id())), "{said}");
}

#[test]
fn prove_takes_a_seq_or_an_id() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"));
    let key = server.log().log_key;
    let cast = cast(&server, tmp.path());
    let opened = open_request(&server, &cast, "gpu-1");
    wait_for_size(&server, opened.seq + 1);
    let prove = |args: &[&str]| {
        let mut all = vec!["prove"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--server", server.url.as_str(), "--log-key", key.as_str()]);
        grantline(&all)
    };
    let seq = opened.seq.to_string();
    let by_id = assert_ok(&prove(&["open-gpu-1"]));
    let by_seq = assert_ok(&prove(&[seq.as_str()]));
    assert_eq!(by_seq, by_id);
    assert_eq!(assert_ok(&prove(&["--seq", seq.as_str()])), by_id);
    assert_eq!(assert_ok(&prove(&["--id", "open-gpu-1"])), by_id);
    let receipt: serde_json::Value = serde_json::from_str(&by_seq).unwrap();
    assert_eq!(receipt["record"]["seq"], opened.seq);
    assert_eq!(receipt["record"]["statement"]["id"], "open-gpu-1");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&assert_ok(&prove(&["0"]))).unwrap()["record"]["statement"]["id"],
        "genesis"
    );

    let out = prove(&["999"]);
    assert_fails(&out, exit::USAGE.into(), None);
    assert!(stderr(&out).contains("no event at seq 999"), "{}", stderr(&out));
    // Naming the event twice is a usage error.
    assert_eq!(code(&prove(&["0", "--seq", "1"])), 2);
    server.stop();
}

#[test]
fn private_keys_and_the_walkthrough_data_are_ignored_by_git() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("git")
        .args(["check-ignore", "--no-index", "-v", "alice.key", "some/dir/bot.key", "grantline-data/log.key"])
        .current_dir(root)
        .output();
    let out = match out {
        Ok(out) if out.status.code() != Some(128) => out,
        _ => {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "git is needed under CI");
            eprintln!("NOTICE: not a git work tree or no git; skipping the .gitignore check");
            return;
        }
    };
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(said.lines().count(), 3, "not every private key path is ignored:\n{said}");
    assert!(said.lines().all(|line| line.starts_with(".gitignore:")), "{said}");
}
