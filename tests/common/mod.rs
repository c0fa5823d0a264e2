//! Shared helpers for the end-to-end tests: start the real `grantline` binary on an ephemeral
//! port over a temp data directory, run CLI commands against it, sign envelopes.
#![allow(dead_code)]

pub(crate) mod cluster;
pub(crate) mod github;
pub(crate) mod witness;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::Duration;

use api::json::{LogInfo, Receipt};
use ledger::dsse::Envelope;
use ledger::keys::SigningKey;
use ledger::statement::{format_rfc3339_ms, Statement};
use serde_json::Value;

/// The lines `child` prints on its piped stdout, read on a thread of their own, so a test can
/// wait for one (a listening line) with a timeout.
pub(crate) fn stdout_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    rx
}

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_grantline");
/// How long a server may take to print its listening line.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) struct Server {
    child: Option<Child>,
    pub url: String,
    pub data: PathBuf,
    pub admin_key: PathBuf,
    /// What `init` (for a new data directory) and the server printed before its listening line.
    pub stdout: Vec<String>,
}

impl Server {
    /// Starts `grantline serve` over `data` (made with `grantline init` when new) on 127.0.0.1:0.
    pub(crate) fn start(data: &Path) -> Server {
        Server::start_with_env(data, &[])
    }

    pub(crate) fn start_with_env(data: &Path, env: &[(&str, &str)]) -> Server {
        Server::start_with_args(data, &[], env)
    }

    /// Like [`Server::start_with_env`], with more `serve` arguments (`--witness URL=VKEY`, say).
    pub(crate) fn start_with_args(data: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        // `serve --data DIR` refuses a directory that is not a ledger yet: `init` it first, as
        // an operator would, with the defaults `serve` uses for ./grantline-data.
        let mut printed = init_if_new(data, env);
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--addr", "127.0.0.1:0", "--data"]).arg(data).args(args);
        let mut server = Server::spawn(cmd, data, env);
        printed.append(&mut server.stdout);
        server.stdout = printed;
        server
    }

    /// Starts `grantline serve --addr 127.0.0.1:0` in `cwd` with the default data directory.
    pub(crate) fn start_default(cwd: &Path) -> Server {
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--addr", "127.0.0.1:0"]).current_dir(cwd);
        Server::spawn(cmd, &cwd.join("grantline-data"), &[])
    }

    fn spawn(mut cmd: Command, data: &Path, env: &[(&str, &str)]) -> Server {
        let log_path = data.with_extension("server.log");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).unwrap();
        cmd.env("RUST_LOG", "warn").stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::from(log));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn grantline serve");
        let rx = stdout_lines(&mut child);
        let mut stdout = Vec::new();
        let url = loop {
            match rx.recv_timeout(START_TIMEOUT) {
                Ok(line) => match line.strip_prefix("grantline listening on ") {
                    Some(url) => break url.to_string(),
                    None => stdout.push(line),
                },
                Err(_) => {
                    let _ = child.kill();
                    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    panic!("server did not start; its log:\n{log}");
                }
            }
        };
        Server { child: Some(child), url, data: data.to_path_buf(), admin_key: data.join("admin.key"), stdout }
    }

    /// SIGTERM, then wait for a clean exit.
    pub(crate) fn stop(mut self) {
        let mut child = self.child.take().unwrap();
        let status = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
        assert!(status.success());
        let status = child.wait().unwrap();
        assert!(status.success(), "server exited with {status}");
    }

    /// Runs a CLI command against this server.
    pub(crate) fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN).args(args).env("GRANTLINE_SERVER", &self.url).env_remove("GRANTLINE_KEY").output().unwrap()
    }

    /// Runs a CLI command in `cwd` (relative paths as in the README).
    pub(crate) fn cli_in(&self, cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(BIN);
        cmd.args(args).current_dir(cwd).env("GRANTLINE_SERVER", &self.url).env_remove("GRANTLINE_KEY");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }

    /// Runs a CLI command that must succeed; returns its stdout.
    pub(crate) fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "grantline {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub(crate) fn get(&self, path: &str) -> reqwest::blocking::Response {
        http().get(format!("{}{path}", self.url)).send().unwrap()
    }

    pub(crate) fn get_json(&self, path: &str) -> Value {
        let resp = self.get(path);
        assert!(resp.status().is_success(), "GET {path}: {}", resp.status());
        resp.json().unwrap()
    }

    pub(crate) fn log(&self) -> LogInfo {
        serde_json::from_value(self.get_json("/v1/log")).unwrap()
    }

    pub(crate) fn post(&self, body: Vec<u8>) -> reqwest::blocking::Response {
        http()
            .post(format!("{}/v1/events", self.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .unwrap()
    }

    /// Signs and posts; returns the HTTP status and the JSON body.
    pub(crate) fn submit(&self, key: &SigningKey, id: &str, kind: &str, data: Value) -> (u16, Value) {
        let origin = self.log().origin;
        let resp = self.post(envelope(key, &origin, id, kind, data));
        let status = resp.status().as_u16();
        (status, resp.json().unwrap())
    }

    /// Submits an event that must be appended; returns the receipt.
    pub(crate) fn append(&self, key: &SigningKey, id: &str, kind: &str, data: Value) -> Receipt {
        let (status, body) = self.submit(key, id, kind, data);
        assert_eq!(status, 201, "{kind} {id}: {body}");
        serde_json::from_value(body).unwrap()
    }

    pub(crate) fn admin(&self) -> SigningKey {
        SigningKey::read_file(&self.admin_key).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `grantline init --data DATA` (origin `localhost/grantline`, admin `admin`, admin key
/// `DATA/admin.key`) unless DATA already holds a ledger; returns what init printed. Its
/// stderr goes to the server's log file, with the same environment as the server.
pub(crate) fn init_if_new(data: &Path, env: &[(&str, &str)]) -> Vec<String> {
    if data.join("log.key").exists() || data.join("db").exists() {
        return Vec::new();
    }
    let log_path = data.with_extension("server.log");
    let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["init", "--origin", "localhost/grantline", "--admin", "admin", "--data"]).arg(data);
    cmd.arg("--admin-key-out").arg(data.join("admin.key"));
    cmd.env("RUST_LOG", "warn").env_remove("GRANTLINE_FAULT").stdin(Stdio::null()).stderr(Stdio::from(log));
    for (k, v) in env.iter().filter(|(k, _)| *k != "GRANTLINE_FAULT") {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("spawn grantline init");
    assert!(
        out.status.success(),
        "grantline init failed; its log:\n{}",
        std::fs::read_to_string(&log_path).unwrap_or_default()
    );
    String::from_utf8(out.stdout).unwrap().lines().map(str::to_string).collect()
}

pub(crate) fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(60)).build().unwrap()
}

/// A signed envelope's canonical JSON, made with the project's own DSSE code.
pub(crate) fn envelope(key: &SigningKey, origin: &str, id: &str, kind: &str, data: Value) -> Vec<u8> {
    let st = Statement {
        ledger: origin.to_string(),
        id: id.to_string(),
        actor: key.name().to_string(),
        issued_at: format_rfc3339_ms(api::now_ms()),
        kind: kind.to_string(),
        data,
    };
    Envelope::sign(st.to_payload(), &[key]).canonical_json()
}

/// `started_at` and `ended_at` of a job that ran just now (both the current time): inside
/// every grant issued before the call, as a usage report must be (`usage_outside_grant`).
pub(crate) fn job_just_now() -> (String, String) {
    let now = format_rfc3339_ms(api::now_ms());
    (now.clone(), now)
}

/// A key for `name`, written to `<dir>/<name>.key` with `grantline keygen`.
pub(crate) fn keygen(dir: &Path, name: &str) -> (PathBuf, SigningKey) {
    let path = dir.join(format!("{name}.key"));
    let out = Command::new(BIN).args(["keygen", name, "--out"]).arg(&path).output().unwrap();
    assert!(out.status.success(), "keygen: {}", String::from_utf8_lossy(&out.stderr));
    let key = SigningKey::read_file(&path).unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), key.verifier().to_string());
    (path, key)
}

/// A ledger with a requester/meter bot, two reviewers, a resource needing two approvals, a
/// sponsor and a pool: the README's cast.
pub(crate) struct Cast {
    pub bot: SigningKey,
    pub alice: SigningKey,
    pub bob: SigningKey,
}

pub(crate) const RESOURCE: &str = "cirun-openstack-gpu-large";
pub(crate) const PROJECT: &str = "pytorch-cpu-feedstock";
pub(crate) const POOL: &str = "numfocus-2026";
pub(crate) const SPONSOR: &str = "numfocus";

pub(crate) fn cast(server: &Server, dir: &Path) -> Cast {
    let admin = server.admin();
    let bot = SigningKey::generate("bot").unwrap();
    let alice = SigningKey::generate("alice").unwrap();
    let bob = SigningKey::generate("bob").unwrap();
    let _ = dir;
    for (key, roles) in [(&bot, vec!["requester", "meter"]), (&alice, vec!["reviewer"]), (&bob, vec!["reviewer"])] {
        server.append(
            &admin,
            &format!("register-{}", key.name()),
            "actor.registered",
            serde_json::json!({"actor": key.name(), "key": key.verifier().to_string(), "roles": roles}),
        );
    }
    server.append(
        &admin,
        "define-gpu",
        "resource.defined",
        serde_json::json!({"resource": RESOURCE, "provider": "open-gpu-server", "unit": "runner-minutes", "approvals_required": 2}),
    );
    server.append(
        &admin,
        "sponsor-numfocus",
        "sponsor.registered",
        serde_json::json!({"sponsor": SPONSOR, "name": "NumFOCUS"}),
    );
    server.append(
        &admin,
        "deposit-1",
        "credits.deposited",
        serde_json::json!({"pool": POOL, "sponsor": SPONSOR, "amount": 100000, "unit": "runner-minutes", "resources": [RESOURCE]}),
    );
    Cast { bot, alice, bob }
}

/// Opens a request for PROJECT on RESOURCE by the bot.
pub(crate) fn open_request(server: &Server, cast: &Cast, request: &str) -> Receipt {
    server.append(
        &cast.bot,
        &format!("open-{request}"),
        "access.requested",
        serde_json::json!({"request": request, "project": PROJECT, "resource": RESOURCE,
            "justification": "GPU builds", "pull_request": false, "credits": 5000, "days": 90}),
    )
}

/// What a rejected submission must not change: the log (size, root, checkpoint) and the
/// projections read from `views` (paths of JSON endpoints).
#[derive(Debug, PartialEq)]
pub(crate) struct Fingerprint {
    pub size: u64,
    pub root: String,
    pub checkpoint: String,
    pub views: Vec<(String, Value)>,
}

pub(crate) fn fingerprint_of(s: &Server, views: &[&str]) -> Fingerprint {
    let log = s.log();
    Fingerprint {
        size: log.size,
        root: log.root,
        checkpoint: s.get("/v1/checkpoint").text().unwrap(),
        views: views.iter().map(|path| (path.to_string(), s.get_json(path))).collect(),
    }
}

/// POSTs `body` to `path` over a raw socket, with `Content-Length` (`declared`) or chunked and
/// the extra header lines `headers` ("Name: value"), stopping early when the server answers
/// before the whole body is sent (a refusal by size): the status and the answer's body.
pub(crate) fn post_raw(s: &Server, path: &str, headers: &[String], body: &[u8], declared: bool) -> (u16, String) {
    use std::io::{Read, Write};
    const CHUNK_BYTES: usize = 16 * 1024;
    let mut tcp = std::net::TcpStream::connect(s.url.trim_start_matches("http://")).unwrap();
    tcp.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    let length = if declared {
        format!("Content-Length: {}\r\n", body.len())
    } else {
        "Transfer-Encoding: chunked\r\n".to_string()
    };
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    let head =
        format!("POST {path} HTTP/1.1\r\nHost: grantline\r\nContent-Type: application/json\r\n{extra}{length}\r\n");
    tcp.write_all(head.as_bytes()).unwrap();
    let answered = |tcp: &std::net::TcpStream| {
        tcp.set_nonblocking(true).unwrap();
        let ready = tcp.peek(&mut [0u8; 1]).is_ok_and(|n| n > 0);
        tcp.set_nonblocking(false).unwrap();
        ready
    };
    for chunk in body.chunks(CHUNK_BYTES) {
        std::thread::sleep(Duration::from_millis(1));
        if answered(&tcp) {
            break;
        }
        let sent = if declared {
            tcp.write_all(chunk)
        } else {
            tcp.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .and_then(|()| tcp.write_all(chunk))
                .and_then(|()| tcp.write_all(b"\r\n"))
        };
        if sent.is_err() {
            break;
        }
    }
    if !declared && !answered(&tcp) {
        let _ = tcp.write_all(b"0\r\n\r\n");
    }
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    // Read the head and the Content-Length body; the server may close right after.
    loop {
        match tcp.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
        if let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if answer.len() >= end + 4 + length {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&answer).to_string();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("no answer: {text:?}"));
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// Where Debian's golang-golang-x-mod-dev puts the x/mod sources.
const GOPATH: &str = "/usr/share/gocode";

/// The Go checker (tests/go/tlogcheck), built once; `None` (with a notice) when Go or x/mod is
/// missing outside CI.
pub(crate) fn tlogcheck() -> Option<PathBuf> {
    static BUILT: OnceLock<Option<PathBuf>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let have_go = Command::new("go").arg("version").output().is_ok_and(|o| o.status.success());
            let have_mod = Path::new(GOPATH).join("src/golang.org/x/mod/sumdb/tlog").is_dir();
            if !have_go || !have_mod {
                let why = format!("go found: {have_go}; {GOPATH}/src/golang.org/x/mod present: {have_mod}");
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "the independent Go tlog check cannot run under CI: {why}"
                );
                eprintln!(
                    "NOTICE: skipping the independent Go sumdb check ({why}); install golang-go and \
                     golang-golang-x-mod-dev"
                );
                return None;
            }
            let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go");
            std::fs::create_dir_all(&out_dir).unwrap();
            let bin = out_dir.join(format!("tlogcheck-{}", std::process::id()));
            let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/go/tlogcheck");
            let out = Command::new("go")
                .args(["build", "-o"])
                .arg(&bin)
                .arg(".")
                .current_dir(&src)
                .env("GO111MODULE", "off")
                .env("GOPATH", GOPATH)
                .env("GOCACHE", out_dir.join("cache"))
                .env("GOFLAGS", "")
                .output()
                .unwrap();
            assert!(out.status.success(), "go build tlogcheck: {}", String::from_utf8_lossy(&out.stderr));
            Some(bin)
        })
        .clone()
}
