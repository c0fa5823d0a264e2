//! `grantline mirror` and `grantline verify --tiles` (DESIGN.md section 12), end to end: the
//! real server's tile API, mirrors on disk, served again by a plain static web server (Python's
//! `http.server`), extended, resumed after an interruption, tampered with, and refused when the
//! log shrank, forked or is signed by another key.
//!
//! The tests that serve a mirror need python3: without it they print a notice and skip,
//! unless CI=true.
#![cfg(unix)]

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use ledger::checkpoint::Checkpoint;
use ledger::keys::{SigningKey, VerifierKey};
use ledger::tile::{self, Tile};

// The auditor's exit codes.
use api::testing::exit;

/// How long a static server may take to accept connections.
const STATIC_START_TIMEOUT: Duration = Duration::from_secs(20);

fn grantline(args: &[&str]) -> Output {
    Command::new(BIN).args(args).env("RUST_LOG", "warn").output().unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = grantline(args);
    assert!(
        out.status.success(),
        "grantline {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a command that must fail with `code`; returns its stderr.
fn fails(args: &[&str], code: u8) -> String {
    let out = grantline(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(i32::from(code)),
        "grantline {args:?}:\nstdout: {}\nstderr: {stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    stderr
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Whether python3 is there to serve a directory; under CI=true it must be.
fn have_python() -> bool {
    let found = Command::new("python3").arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "python3 is required under CI=true");
        eprintln!("NOTICE: skipping the static-server part of this test: python3 is not installed");
    }
    found
}

/// `python3 -m http.server` over a directory: any static web server must do.
struct Static {
    child: Child,
    url: String,
}

impl Static {
    fn serve(dir: &Path) -> Static {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1", &port.to_string(), "--directory", s(dir)])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < STATIC_START_TIMEOUT, "python3 -m http.server did not start on port {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Static { child, url: format!("http://127.0.0.1:{port}") }
    }
}

impl Drop for Static {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A log of about `events` records: initialised, filled offline with `loadgen fill` (the
/// fastest honest way: the server's own checks and signing), then served.
fn filled_log(dir: &Path, name: &str, events: u64) -> (Server, String) {
    let data = dir.join(name);
    init_if_new(&data, &[]);
    fill(&data, events);
    let server = Server::start(&data);
    let key = server.log().log_key;
    (server, key)
}

fn fill(data: &Path, events: u64) {
    let out = ok(&["loadgen", "fill", "--data", s(data), "--events", &events.to_string(), "--actors", "4"]);
    assert!(out.contains(&format!("appended {events} events")), "{out}");
}

/// Appends `events` usage reports over HTTP, as clients would.
fn append(server: &Server, events: u64) {
    let out = ok(&[
        "loadgen",
        "appends",
        "--server",
        &server.url,
        "--admin-key",
        s(&server.admin_key),
        "--events",
        &events.to_string(),
        "--connections",
        "4",
        "--actors",
        "2",
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["main"]["ok"], events, "{out}");
}

/// `mirror` output's counts: (size, fetched, reused).
fn mirrored(out: &str) -> (u64, u64, u64) {
    let words: Vec<&str> = out.split_whitespace().collect();
    let number_before = |word: &str| -> u64 {
        let at = words.iter().position(|w| w.trim_end_matches([',', ':']) == word).unwrap_or_else(|| panic!("{out}"));
        words[at - 1].parse().unwrap_or_else(|_| panic!("{out}"))
    };
    let size = words[1].parse().unwrap_or_else(|_| panic!("{out}"));
    let fetched = words.iter().position(|w| *w == "fetched,").map(|at| words[at - 2].parse().unwrap()).unwrap();
    (size, fetched, number_before("reused"))
}

fn mirror(url: &str, key: &str, out: &Path) -> (u64, u64, u64) {
    let printed = ok(&["mirror", "--server", url, "--log-key", key, "--out", s(out)]);
    assert!(printed.starts_with("mirrored "), "{printed}");
    mirrored(&printed)
}

fn checkpoint_of(dir: &Path, key: &str) -> Checkpoint {
    let key = VerifierKey::parse(key).unwrap();
    Checkpoint::open(&std::fs::read(dir.join("checkpoint")).unwrap(), &key).unwrap()
}

/// Every file under `dir`, by relative path.
fn files(dir: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            if entry.file_type().unwrap().is_dir() {
                dirs.push(entry.path());
            } else {
                let rel = entry.path().strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.insert(rel, entry.path());
            }
        }
    }
    out
}

/// The tiles a checkpoint of `size` records names that are missing from `dir`.
fn missing_tiles(dir: &Path, size: u64) -> Vec<String> {
    tile::hash_tiles(size)
        .into_iter()
        .chain(tile::entry_bundles(size))
        .map(|t| t.path())
        .filter(|p| !dir.join(p).is_file())
        .collect()
}

/// If DIR has a checkpoint, every tile it names is there.
fn assert_complete(dir: &Path, key: &str) {
    if dir.join("checkpoint").exists() {
        let size = checkpoint_of(dir, key).size;
        let missing = missing_tiles(dir, size);
        assert!(missing.is_empty(), "{}/checkpoint names missing tiles: {missing:?}", dir.display());
    }
}

/// Copies a directory tree, modes included (a data directory's keys and the directory are 0600
/// and 0700).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    std::fs::set_permissions(to, std::fs::metadata(from).unwrap().permissions()).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

fn flip_byte(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = at % bytes.len();
    bytes[at] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

/// (inode, mtime in ns) of each full tile and bundle: a rewrite changes one or the other.
fn identities(dir: &Path) -> BTreeMap<String, (u64, i64)> {
    files(dir)
        .into_iter()
        .filter(|(rel, _)| Tile::parse_path(rel).is_ok_and(|t| t.is_full()))
        .map(|(rel, path)| {
            let meta = std::fs::metadata(path).unwrap();
            (rel, (meta.ino(), meta.mtime() * 1_000_000_000 + meta.mtime_nsec()))
        })
        .collect()
}

#[test]
fn a_mirror_verifies_is_served_statically_and_extends_without_rewriting_full_tiles() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, key) = filled_log(tmp.path(), "data", 1000);
    let dir = tmp.path().join("mirror");

    let (size1, fetched, reused) = mirror(&server.url, &key, &dir);
    assert!(size1 > 1000, "{size1}");
    let expected = (tile::hash_tiles(size1).len() + tile::entry_bundles(size1).len()) as u64;
    assert_eq!((fetched, reused), (expected, 0));
    assert_eq!(std::fs::read(dir.join("checkpoint")).unwrap(), server.get("/checkpoint").bytes().unwrap());
    assert_complete(&dir, &key);
    let out = ok(&["verify", "--tiles", s(&dir), "--log-key", &key]);
    assert!(out.contains(&format!("verified: {size1} events")), "{out}");

    // The copy is exactly what the server serves.
    for (rel, path) in files(&dir) {
        assert_eq!(std::fs::read(path).unwrap(), server.get(&format!("/{rel}")).bytes().unwrap(), "{rel}");
    }

    // Nothing new: everything is read back from disk and checked, nothing fetched or written.
    let before = identities(&dir);
    assert_eq!(mirror(&server.url, &key, &dir), (size1, 0, expected));

    // Grown, mirrored again while a reader watches: the checkpoint it sees never names a
    // missing tile, and the full tiles of the first run are not rewritten.
    append(&server, 700);
    let watching = std::sync::atomic::AtomicBool::new(true);
    let (size2, fetched, reused) = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            while watching.load(std::sync::atomic::Ordering::Relaxed) {
                assert_complete(&dir, &key);
            }
        });
        let result = mirror(&server.url, &key, &dir);
        watching.store(false, std::sync::atomic::Ordering::Relaxed);
        watcher.join().unwrap();
        result
    });
    assert!(size2 >= size1 + 700);
    assert!(reused > 0 && fetched > 0, "{fetched} fetched, {reused} reused");
    let after = identities(&dir);
    for (rel, identity) in &before {
        assert_eq!(after.get(rel), Some(identity), "{rel} was rewritten");
    }
    assert_complete(&dir, &key);
    // The partial tiles of the previous checkpoint stay for its readers.
    assert!(missing_tiles(&dir, size1).is_empty());

    // Served by a plain static web server, the mirror verifies and mirrors like the log.
    if have_python() {
        let web = Static::serve(&dir);
        let out = ok(&["verify", "--tiles", &web.url, "--log-key", &key]);
        assert!(out.contains(&format!("verified: {size2} events")), "{out}");
        let second = tmp.path().join("mirror-of-mirror");
        assert_eq!(mirror(&web.url, &key, &second).0, size2);
        let copied = files(&second);
        assert_eq!(copied.len(), tile::hash_tiles(size2).len() + tile::entry_bundles(size2).len() + 1);
        for (rel, path) in copied {
            assert_eq!(std::fs::read(path).unwrap(), std::fs::read(dir.join(&rel)).unwrap(), "{rel}");
        }
    }

    // Once more: the first run's partial tiles, needed by neither checkpoint, are removed.
    let previous = tmp.path().join("previous-checkpoint");
    std::fs::copy(dir.join("checkpoint"), &previous).unwrap();
    append(&server, 300);
    let (size3, _, _) = mirror(&server.url, &key, &dir);
    let partials = |size: u64| -> Vec<String> {
        tile::hash_tiles(size)
            .into_iter()
            .chain(tile::entry_bundles(size))
            .filter(|t| !t.is_full())
            .map(|t| t.path())
            .collect()
    };
    let needed: Vec<String> = partials(size2).into_iter().chain(partials(size3)).collect();
    for path in partials(size1).into_iter().filter(|p| !needed.contains(p)) {
        assert!(!dir.join(&path).exists(), "{path} should have been removed");
    }
    assert!(missing_tiles(&dir, size2).is_empty() && missing_tiles(&dir, size3).is_empty());
    let out = ok(&["verify", "--tiles", s(&dir), "--log-key", &key]);
    assert!(out.contains(&format!("verified: {size3} events")), "{out}");
    // The previous checkpoint verifies against the grown mirror too (its partial tiles stay).
    let out = ok(&["verify", "--tiles", s(&dir), "--checkpoint", s(&previous), "--log-key", &key]);
    assert!(out.contains(&format!("checkpoint: {size2} records")), "{out}");
}

#[test]
fn an_interrupted_mirror_is_completed_and_altered_tiles_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    // 70,000+ records: tiles at levels 0, 1 and 2.
    let (server, key) = filled_log(tmp.path(), "data", 70_000);
    let dir = tmp.path().join("mirror");

    // Killed part-way: DIR never holds a checkpoint whose tiles are missing.
    let mut child = Command::new(BIN)
        .args(["mirror", "--server", &server.url, "--log-key", &key, "--out", s(&dir)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let mut killed_running = false;
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if dir.join("tile/entries").exists() {
            killed_running = child.try_wait().unwrap().is_none();
            if killed_running {
                child.kill().unwrap();
            }
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(300), "the mirror wrote no bundle");
        std::thread::sleep(Duration::from_millis(2));
    }
    child.wait().unwrap();
    assert_complete(&dir, &key);
    if killed_running {
        assert!(!dir.join("checkpoint").exists(), "a killed run wrote its checkpoint");
    }
    let (size, fetched, reused) = mirror(&server.url, &key, &dir);
    assert!(size > 70_000, "{size}");
    assert_complete(&dir, &key);
    let all = (tile::hash_tiles(size).len() + tile::entry_bundles(size).len()) as u64;
    assert_eq!(fetched + reused, all);
    if killed_running {
        assert!(reused > 0, "the second run fetched everything again");
    }
    eprintln!("after the kill: {fetched} tiles fetched, {reused} reused");

    // A mirror that lost its checkpoint and some tiles (and holds a temp file of a killed
    // run): the next run fetches exactly what is missing.
    let damaged = tmp.path().join("damaged");
    copy_dir(&dir, &damaged);
    let last_bundle = tile::entry_bundles(size).last().unwrap().path();
    for rel in ["checkpoint", "tile/0/010", "tile/1/000", "tile/entries/020", &last_bundle] {
        std::fs::remove_file(damaged.join(rel)).unwrap();
    }
    std::fs::write(damaged.join("tile/0/.011.mirror-tmp-1"), b"half a tile").unwrap();
    assert_eq!(checkpoint_of(&dir, &key).size, size, "the log grew: this part assumes it did not");
    assert_eq!(mirror(&server.url, &key, &damaged), (size, 4, all - 4));
    let (a, b) = (files(&dir), files(&damaged));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (rel, path) in &a {
        assert_eq!(std::fs::read(path).unwrap(), std::fs::read(&b[rel]).unwrap(), "{rel}");
    }
    let out = ok(&["verify", "--tiles", s(&damaged), "--log-key", &key]);
    assert!(out.contains(&format!("verified: {size} events")), "{out}");

    // Tampering: one byte flipped in a tile of each level and in a bundle. `verify --tiles`
    // names the tile; mirroring the tampered copy is refused and writes nothing unverified.
    let python = have_python();
    let tampered = tmp.path().join("tampered");
    copy_dir(&dir, &tampered);
    let web = python.then(|| Static::serve(&tampered));
    for (rel, named) in [
        ("tile/0/005", "tile/0/005 does not match its hash in tile/1/000"),
        ("tile/1/000", "tile/1/000 does not match its hash in tile/2/000.p/1"),
        ("tile/2/000.p/1", "tile/2/000.p/1 does not match the tiles below it"),
        ("tile/entries/001", "tile/entries/001: "),
    ] {
        let path = tampered.join(rel);
        let original = std::fs::read(&path).unwrap();
        flip_byte(&path, original.len() / 2 + 5);
        let err = fails(&["verify", "--tiles", s(&tampered), "--log-key", &key], exit::CHECKPOINT);
        assert!(err.contains(named), "{rel}: {err}");
        if let Some(web) = &web {
            let err = fails(&["verify", "--tiles", &web.url, "--log-key", &key], exit::CHECKPOINT);
            assert!(err.contains(named), "{rel} over HTTP: {err}");
            let fresh = tmp.path().join(format!("from-tampered-{}", rel.replace('/', "-")));
            let err = fails(&["mirror", "--server", &web.url, "--log-key", &key, "--out", s(&fresh)], exit::CHECKPOINT);
            assert!(err.contains(named), "{rel}: {err}");
            assert!(!fresh.join("checkpoint").exists());
            assert!(!fresh.join(rel).exists(), "the altered {rel} was written");
            let written = files(&fresh);
            if rel.starts_with("tile/entries/") {
                // Only what verified: the authenticated hash tiles and bundles checked before.
                for (name, path) in &written {
                    assert_eq!(std::fs::read(path).unwrap(), std::fs::read(dir.join(name)).unwrap(), "{name}");
                }
            } else {
                assert!(written.is_empty(), "{rel}: a refused run wrote {:?}", written.keys());
            }
            // Over an existing mirror, whose copy of the tile is good, nothing changes.
            let before = files(&damaged).into_iter().map(|(r, p)| (r, std::fs::read(p).unwrap())).collect::<Vec<_>>();
            ok(&["mirror", "--server", &web.url, "--log-key", &key, "--out", s(&damaged)]);
            let after = files(&damaged).into_iter().map(|(r, p)| (r, std::fs::read(p).unwrap())).collect::<Vec<_>>();
            assert!(before == after, "{rel}: the good mirror changed");
        }
        std::fs::write(&path, original).unwrap();
    }

    // The mirror's own copy altered on disk: reported, not silently replaced.
    let path = damaged.join("tile/0/007");
    flip_byte(&path, 100);
    let altered = std::fs::read(&path).unwrap();
    let err = fails(&["mirror", "--server", &server.url, "--log-key", &key, "--out", s(&damaged)], exit::CHECKPOINT);
    assert!(err.contains("tile/0/007") && err.contains("the mirror's own copy"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), altered);
}

#[test]
fn a_wrong_key_a_shrunk_log_and_a_fork_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    // Two logs with one log key: B starts as a copy of A's new data directory.
    let a_data = tmp.path().join("a");
    let b_data = tmp.path().join("b");
    init_if_new(&a_data, &[]);
    copy_dir(&a_data, &b_data);
    fill(&a_data, 300);
    fill(&b_data, 300);
    let a = Server::start(&a_data);
    let b = Server::start(&b_data);
    let key = a.log().log_key;
    assert_eq!(b.log().log_key, key);
    let (a_cp, b_cp) = (a.get("/checkpoint").text().unwrap(), b.get("/checkpoint").text().unwrap());
    assert_ne!(a_cp, b_cp);

    let dir = tmp.path().join("mirror");
    mirror(&a.url, &key, &dir);
    let snapshot = |dir: &Path| -> Vec<(String, Vec<u8>)> {
        files(dir).into_iter().map(|(r, p)| (r, std::fs::read(p).unwrap())).collect()
    };
    let before = snapshot(&dir);

    // Another key, even for the same origin.
    let stranger = SigningKey::generate(&a.log().origin).unwrap().verifier().to_string();
    let err = fails(&["mirror", "--server", &a.url, "--log-key", &stranger, "--out", s(&dir)], exit::CHECKPOINT);
    assert!(err.contains("does not verify with the pinned log key"), "{err}");
    let err = fails(&["verify", "--tiles", s(&dir), "--log-key", &stranger], exit::CHECKPOINT);
    assert!(err.contains("does not verify with the pinned log key"), "{err}");
    let err = fails(
        &["mirror", "--server", &a.url, "--log-key", &stranger, "--out", s(&tmp.path().join("new"))],
        exit::CHECKPOINT,
    );
    assert!(err.contains("does not verify"), "{err}");
    assert!(!tmp.path().join("new").join("checkpoint").exists());

    // B has as many records as A, another root: a fork.
    assert_eq!(checkpoint_of(&dir, &key).size, b.log().size);
    let err = fails(&["mirror", "--server", &b.url, "--log-key", &key, "--out", s(&dir)], exit::CONSISTENCY);
    assert!(err.contains("forked"), "{err}");
    assert!(snapshot(&dir) == before, "a refused run changed the mirror");

    // B grown past A: larger, but not an extension of A.
    drop(b);
    fill(&b_data, 200);
    let b = Server::start(&b_data);
    let err = fails(&["mirror", "--server", &b.url, "--log-key", &key, "--out", s(&dir)], exit::CONSISTENCY);
    assert!(err.contains("does not extend this mirror"), "{err}");
    assert!(snapshot(&dir) == before, "a refused run changed the mirror");

    // A mirror of B, then A: the log shrank.
    let of_b = tmp.path().join("mirror-b");
    mirror(&b.url, &key, &of_b);
    let before = snapshot(&of_b);
    let err = fails(&["mirror", "--server", &a.url, "--log-key", &key, "--out", s(&of_b)], exit::CONSISTENCY);
    assert!(err.contains("the log shrank"), "{err}");
    assert!(snapshot(&of_b) == before, "a refused run changed the mirror");

    // A mirror of another log entirely: its checkpoint does not verify with this key.
    let other = tmp.path().join("other");
    let (c, c_key) = filled_log(tmp.path(), "c", 10);
    mirror(&c.url, &c_key, &other);
    let err = fails(&["mirror", "--server", &a.url, "--log-key", &key, "--out", s(&other)], exit::CHECKPOINT);
    assert!(err.contains("a mirror of another log"), "{err}");
}
