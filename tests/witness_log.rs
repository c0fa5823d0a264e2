//! A log with real witnesses (DESIGN.md section 12): `grantline serve --witness URL=VKEY` asks
//! `grantline witness serve` processes for cosignatures over real sockets, serves the cosigned
//! checkpoint, and readers (`verify`, `monitor`, `prove` + `verify-receipt`) require them. A
//! witness that is down or hangs delays no write; a log that shows a second root for a size
//! (the `fork_checkpoint` fault) is refused by its witness and by readers that require it.
//!
//! No timing assertions: every wait polls with a generous deadline.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use common::{Server, BIN};
use ledger::checkpoint::Checkpoint;
use ledger::cosignature::{verified_cosigners, CosignerKey};
use ledger::keys::VerifierKey;
use serde_json::json;

/// How long a poll waits for something the log does on its own (a witness round, a backoff).
const POLL_DEADLINE: Duration = Duration::from_secs(90);
const POLL_EVERY: Duration = Duration::from_millis(100);
/// The exit code of a checkpoint failure (`api::testing::exit::CHECKPOINT`).
const CHECKPOINT_EXIT: i32 = api::testing::exit::CHECKPOINT as i32;

/// A witness key made with `grantline witness keygen`: the private key file and FILE.pub.
struct WitnessKey {
    key: PathBuf,
    public: PathBuf,
    verifier: CosignerKey,
}

fn witness_keygen(dir: &Path, name: &str) -> WitnessKey {
    let key = dir.join(format!("{}.key", name.replace('/', "_")));
    let out = Command::new(BIN).args(["witness", "keygen", name, "--out"]).arg(&key).output().unwrap();
    assert!(out.status.success(), "witness keygen: {}", String::from_utf8_lossy(&out.stderr));
    let verifier = CosignerKey::parse(String::from_utf8(out.stdout).unwrap().trim()).unwrap();
    let mut public = key.clone().into_os_string();
    public.push(".pub");
    WitnessKey { key, public: PathBuf::from(public), verifier }
}

/// A running `grantline witness serve`.
struct Witness {
    child: Option<Child>,
    url: String,
    data: PathBuf,
}

impl Witness {
    /// Starts a witness of the log in `log_data` on `addr` (`127.0.0.1:0` for any port).
    fn start(dir: &Path, key: &WitnessKey, log_data: &Path, addr: &str) -> Witness {
        let tag = key.verifier.name().replace('/', "_");
        let data = dir.join(format!("{tag}-data"));
        let log_path = dir.join(format!("{tag}.log"));
        let log_key = VerifierKey::parse(std::fs::read_to_string(log_data.join("log.pub")).unwrap().trim()).unwrap();
        let mut cmd = Command::new(BIN);
        cmd.args(["witness", "serve", "--addr", addr, "--key"]).arg(&key.key);
        cmd.arg("--log").arg(format!("{}={log_key}", log_key.name())).arg("--data").arg(&data);
        cmd.env("RUST_LOG", "warn").env_remove("GRANTLINE_FAULT");
        let (child, url) = common::witness::spawn(cmd, &log_path);
        Witness { child: Some(child), url, data }
    }

    /// The checkpoint the witness last cosigned, from its state file.
    fn state(&self) -> Option<Checkpoint> {
        let entries = std::fs::read_dir(&self.data).ok()?;
        for entry in entries.flatten() {
            if entry.path().extension().is_some_and(|e| e == "checkpoint") {
                let text = std::fs::read_to_string(entry.path()).ok()?;
                let note = text.split_once('\n')?.1;
                let body = note.split_once("\n\n")?.0;
                return Checkpoint::parse_text(&format!("{body}\n")).ok();
            }
        }
        None
    }
}

impl Drop for Witness {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A TCP listener that accepts connections and never answers (a witness that hangs).
fn hanging_listener() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            match conn {
                Ok(c) => held.push(c),
                Err(_) => return,
            }
        }
    });
    format!("http://{addr}")
}

/// An address nothing listens on (yet).
fn free_addr() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

fn poll<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + POLL_DEADLINE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(POLL_EVERY);
    }
}

/// The log's served checkpoint (`/checkpoint`, the tile API's).
fn served(server: &Server) -> String {
    let resp = server.get("/checkpoint");
    assert_eq!(resp.status().as_u16(), 200);
    resp.text().unwrap()
}

fn size_of(note: &str) -> u64 {
    let body = note.split_once("\n\n").unwrap().0;
    Checkpoint::parse_text(&format!("{body}\n")).unwrap().size
}

/// Waits until the served checkpoint covers `size` records and carries a valid cosignature by
/// each of `witnesses`; returns it.
fn cosigned(server: &Server, size: u64, witnesses: &[&CosignerKey]) -> String {
    let keys: Vec<CosignerKey> = witnesses.iter().map(|k| (*k).clone()).collect();
    poll(&format!("a checkpoint of at least {size} records cosigned by {} witnesses", keys.len()), || {
        let note = served(server);
        let found = verified_cosigners(note.as_bytes(), &keys).unwrap();
        (size_of(&note) >= size && found.len() == keys.len()).then_some(note)
    })
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).env_remove("GRANTLINE_SERVER").output().unwrap()
}

fn text(out: &Output) -> String {
    format!("stdout: {}\nstderr: {}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(out.status.success(), "grantline {args:?} failed ({}):\n{}", out.status, text(&out));
    String::from_utf8(out.stdout).unwrap()
}

fn fails(args: &[&str], code: i32) -> String {
    let out = run(args);
    assert_eq!(out.status.code(), Some(code), "grantline {args:?}:\n{}", text(&out));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn register(server: &Server, name: &str) {
    let key = ledger::keys::SigningKey::generate(name).unwrap();
    server.append(
        &server.admin(),
        &format!("register-{name}"),
        "actor.registered",
        json!({"actor": name, "key": key.verifier().to_string(), "roles": ["requester"]}),
    );
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn two_witnesses_cosign_the_served_checkpoint_and_readers_require_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("log");
    common::init_if_new(&data, &[]);
    let log_pub = data.join("log.pub");
    let (k1, k2, k3) = (
        witness_keygen(dir.path(), "witness.test/w1"),
        witness_keygen(dir.path(), "witness.test/w2"),
        witness_keygen(dir.path(), "witness.test/never"),
    );
    let w1 = Witness::start(dir.path(), &k1, &data, "127.0.0.1:0");
    let w2 = Witness::start(dir.path(), &k2, &data, "127.0.0.1:0");
    // The second witness by its key file (FILE.pub), the first by its key text.
    let flag1 = format!("{}={}", w1.url, k1.verifier);
    let flag2 = format!("{}/={}", w2.url, p(&k2.public));
    let server = Server::start_with_args(&data, &["--witness", &flag1, "--witness", &flag2], &[]);

    // The first checkpoint gets both cosignatures (the default quorum: all listed).
    let first = cosigned(&server, 1, &[&k1.verifier, &k2.verifier]);
    for name in ["a", "b", "c"] {
        register(&server, name);
    }
    let size = server.log().size;
    let note = cosigned(&server, size, &[&k1.verifier, &k2.verifier]);
    assert!(size_of(&note) >= size_of(&first));
    // The JSON API serves the same note (read once the log is quiet: no round changes it).
    poll("/v1/checkpoint to serve the note /checkpoint serves", || {
        (server.get("/v1/checkpoint").text().unwrap() == served(&server)).then_some(())
    });
    for w in [&w1, &w2] {
        let state = w.state().expect("the witness keeps the last checkpoint it cosigned");
        assert!(state.size >= size, "{} holds {} records", w.url, state.size);
    }

    // verify: one listed witness, both, and a quorum the log cannot meet.
    let url = server.url.as_str();
    let key = p(&log_pub);
    let (v1, v2, never) = (k1.verifier.to_string(), p(&k2.public).to_string(), k3.verifier.to_string());
    ok(&["verify", "--server", url, "--log-key", key, "--witness", &v1]);
    ok(&["verify", "--server", url, "--log-key", key, "--witness", &v1, "--witness", &v2]);
    ok(&["verify", "--server", url, "--log-key", key, "--witness", &v1, "--witness", &never, "--witness-quorum", "1"]);
    let err =
        fails(&["verify", "--server", url, "--log-key", key, "--witness", &v1, "--witness", &never], CHECKPOINT_EXIT);
    assert!(err.contains("has 1 of the 2 witness cosignatures required (valid from: witness.test/w1)"), "{err}");
    let err = fails(&["verify", "--server", url, "--log-key", key, "--witness", &never], CHECKPOINT_EXIT);
    assert!(err.contains("0 of the 1 witness cosignatures required (valid from: none)"), "{err}");
    let err = fails(&["verify", "--server", url, "--log-key", key, "--witness", &v1, "--witness-quorum", "2"], 2);
    assert!(err.contains("--witness-quorum 2 must be between 1 and the 1 witnesses listed"), "{err}");

    // monitor: the current checkpoint and the records up to it, cosigned.
    let state = dir.path().join("monitor.json");
    let out = ok(&["monitor", "--server", url, "--log-key", key, "--state", p(&state), "--once", "--witness", &v1]);
    assert!(out.contains("checkpoints verified"), "{out}");
    let err = fails(
        &[
            "monitor",
            "--server",
            url,
            "--log-key",
            key,
            "--state",
            p(&dir.path().join("m2.json")),
            "--once",
            "--witness",
            &never,
        ],
        CHECKPOINT_EXIT,
    );
    assert!(err.contains("witness cosignatures required"), "{err}");

    // prove right after a write: it waits for a cosigned checkpoint that covers the event.
    register(&server, "d");
    let receipt = dir.path().join("receipt.json");
    ok(&["prove", "--id", "register-d", "--server", url, "--log-key", key, "--out", p(&receipt)]);
    let out = ok(&["verify-receipt", p(&receipt), "--log-key", key, "--witness", &v1, "--witness", &v2]);
    assert!(out.contains("cosigned by at least 2 of the 2 witnesses listed"), "{out}");
    let err = fails(&["verify-receipt", p(&receipt), "--log-key", key, "--witness", &never], CHECKPOINT_EXIT);
    assert!(err.contains("the receipt's checkpoint"), "{err}");

    // /metrics and the public page.
    let metrics = server.get("/metrics").text().unwrap();
    for (w, k) in [(&w1, &k1), (&w2, &k2)] {
        let line = metrics
            .lines()
            .find(|l| {
                l.starts_with("grantline_witness_cosigned_size{")
                    && l.contains(&format!("witness=\"{}\"", k.verifier.name()))
            })
            .unwrap_or_else(|| panic!("no cosigned size for {} in:\n{metrics}", w.url));
        let cosigned_size: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(cosigned_size >= size, "{line}");
    }
    assert!(metrics.contains("grantline_witness_failures_total{witness=\"witness.test/w1\""), "{metrics}");
    let page = server.get("/").text().unwrap();
    assert!(page.contains("Witnesses"), "{page}");
    for (w, k) in [(&w1, &k1), (&w2, &k2)] {
        assert!(page.contains(k.verifier.name()) && page.contains(&w.url), "{page}");
    }
    server.stop();
}

#[test]
fn a_witness_that_is_down_or_hangs_delays_no_write_and_is_asked_again_when_back() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("log");
    common::init_if_new(&data, &[]);
    let (k1, k2) = (witness_keygen(dir.path(), "witness.test/down"), witness_keygen(dir.path(), "witness.test/hangs"));
    let down = free_addr();
    let hangs = hanging_listener();
    let flag1 = format!("http://{down}={}", k1.verifier);
    let flag2 = format!("{hangs}={}", k2.verifier);
    let server = Server::start_with_args(
        &data,
        &["--witness", &flag1, "--witness", &flag2, "--witness-quorum", "1"],
        // A short longest backoff, so the witness that comes back is asked again soon.
        &[("GRANTLINE_WITNESS_BACKOFF_MAX_MS", "2000")],
    );
    let first = served(&server);
    poll("a failed request to the witness that is down", || {
        let metrics = server.get("/metrics").text().unwrap();
        metrics
            .lines()
            .any(|l| {
                l.starts_with("grantline_witness_failures_total{witness=\"witness.test/down\"") && !l.ends_with(" 0")
            })
            .then_some(())
    });

    // A burst of writes while one witness is down and the other hangs: every one succeeds.
    for i in 0..40 {
        register(&server, &format!("actor-{i}"));
    }
    let size = server.log().size;
    assert!(size > size_of(&first));
    // Nothing reached the quorum: readers still get the first checkpoint offered, uncosigned.
    let note = served(&server);
    assert_eq!(note, first);
    assert!(verified_cosigners(note.as_bytes(), &[k1.verifier.clone(), k2.verifier.clone()]).unwrap().is_empty());
    let page = server.get("/").text().unwrap();
    assert!(page.contains("witness.test/down") && page.contains("none yet"), "{page}");

    // The witness comes up where the log expects it: the backoff ends and it cosigns.
    let w1 = Witness::start(dir.path(), &k1, &data, &down);
    let note = cosigned(&server, size, &[&k1.verifier]);
    assert!(verified_cosigners(note.as_bytes(), std::slice::from_ref(&k2.verifier)).unwrap().is_empty());
    assert_eq!(w1.state().map(|c| c.size), Some(size_of(&note)));
    // The witness that hangs is given up on (its request times out) and counted as failing.
    let server_log = data.with_extension("server.log");
    poll("the log's record of the hanging witness's timeout", || {
        let log = std::fs::read_to_string(&server_log).unwrap_or_default();
        log.lines().find(|l| l.contains("witness.test/hangs") && l.contains("no answer within")).map(str::to_string)
    });
    let metrics = server.get("/metrics").text().unwrap();
    let hangs =
        metrics.lines().find(|l| l.starts_with("grantline_witness_failures_total{witness=\"witness.test/hangs\""));
    assert!(hangs.is_some_and(|l| !l.ends_with(" 0")), "{metrics}");
    ok(&[
        "verify",
        "--server",
        &server.url,
        "--log-key",
        p(&data.join("log.pub")),
        "--witness",
        &k1.verifier.to_string(),
        "--witness",
        &k2.verifier.to_string(),
        "--witness-quorum",
        "1",
    ]);
    server.stop();
}

#[test]
fn a_forked_checkpoint_is_refused_by_the_witness_and_by_readers_that_require_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("log");
    common::init_if_new(&data, &[]);
    let k1 = witness_keygen(dir.path(), "witness.test/w1");
    let w1 = Witness::start(dir.path(), &k1, &data, "127.0.0.1:0");
    let flag = format!("{}={}", w1.url, k1.verifier);
    let server = Server::start_with_args(&data, &["--witness", &flag], &[("GRANTLINE_FAULT", "fork_checkpoint")]);
    let log_key = VerifierKey::parse(std::fs::read_to_string(data.join("log.pub")).unwrap().trim()).unwrap();

    // The witness cosigns the log's first checkpoint...
    let honest = poll("the witness's first cosignature", || w1.state());
    // ...then the log serves a second checkpoint of that size with another root.
    let forked = poll("the forked view", || {
        let note = served(&server);
        let cp = Checkpoint::open(note.as_bytes(), &log_key).unwrap();
        (cp.root != honest.root).then_some((note, cp))
    });
    let (note, cp) = forked;
    assert_eq!(cp.size, honest.size, "the fork is of the same size");
    assert!(verified_cosigners(note.as_bytes(), std::slice::from_ref(&k1.verifier)).unwrap().is_empty());

    // The witness refuses it (422: same size, another root), keeps the first root, and the log
    // says so in its log.
    let server_log = data.with_extension("server.log");
    poll("the log's record of the witness's refusal", || {
        let log = std::fs::read_to_string(&server_log).unwrap_or_default();
        log.lines().find(|l| l.contains("witness.test/w1") && l.contains("answered 422")).map(str::to_string)
    });
    let state = w1.state().unwrap();
    assert_eq!((state.size, state.root), (honest.size, honest.root));
    let metrics = server.get("/metrics").text().unwrap();
    let failures =
        metrics.lines().find(|l| l.starts_with("grantline_witness_failures_total{witness=\"witness.test/w1\""));
    assert!(failures.is_some_and(|l| !l.ends_with(" 0")), "{metrics}");

    // A reader that requires the witness rejects the forked view.
    let err = fails(
        &[
            "verify",
            "--server",
            &server.url,
            "--log-key",
            p(&data.join("log.pub")),
            "--witness",
            &k1.verifier.to_string(),
        ],
        CHECKPOINT_EXIT,
    );
    assert!(err.contains("0 of the 1 witness cosignatures required"), "{err}");
    server.stop();
}
