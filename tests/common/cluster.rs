//! A cluster of real `grantline serve` processes on one PostgreSQL database, for the end-to-end
//! cluster tests (tests/cluster_pg.rs; SPEC.md section 11).
//!
//! - [`Cluster`]: a fresh database per test in the server `GRANTLINE_TEST_PG` names, `init` on
//!   the first node's data directory, the other nodes' directories holding only copies of
//!   log.key and automation.key; every node on a fixed port, so it can be killed (SIGKILL),
//!   paused (SIGSTOP/SIGCONT) and restarted on the same directory and URL.
//! - [`Load`]: signing clients that post to every node in turn, retry a 503 or a lost
//!   connection with the identical envelope until it is acknowledged, and record every receipt;
//!   a poller records every checkpoint each node serves.
//! - [`check_history`]: what every test ends with: the nodes converge on one dense history,
//!   every receipt's record is at its seq on every node, every statement id is logged once,
//!   and every checkpoint any client saw is a prefix of the final log: checked by the `ledger`
//!   crate and, independently, by Go's sumdb/tlog (tests/go/tlogcheck) on the servers'
//!   consistency proofs.
//!
//! Without `GRANTLINE_TEST_PG` a test skips with a notice, except under `CI=true`, where it
//! fails. The PostgreSQL restart test also needs `GRANTLINE_TEST_PGDATA` (the server's data
//! directory) and `GRANTLINE_TEST_PG_CTL` (its pg_ctl); without them that one test skips.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use api::json::{ConsistencyProof, LogInfo, Receipt, RecordJson, RecordPage};
use ledger::checkpoint::Checkpoint;
use ledger::keys::{SigningKey, VerifierKey};
use ledger::merkle::MemoryTree;
use serde::Deserialize;
use serde_json::json;

use super::{envelope, BIN, PROJECT, RESOURCE};

// The ledger's own helpers for a fresh database per test, shared rather than copied.
#[path = "../../ledger/tests/common/pg.rs"]
mod pg;
/// A superuser URL of the test server: `postgres://postgres@127.0.0.1:PORT/postgres`.
pub(crate) const TEST_PG_ENV: &str = pg::TEST_PG_ENV;
/// The test server's data directory (for `pg_ctl restart`).
pub(crate) const PGDATA_ENV: &str = "GRANTLINE_TEST_PGDATA";
/// The test server's `pg_ctl`.
pub(crate) const PG_CTL_ENV: &str = "GRANTLINE_TEST_PG_CTL";
/// The origin of every cluster ledger.
pub(crate) const ORIGIN: &str = "localhost/cluster";
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// A node must exit this long after SIGTERM (its grace period for open connections is 10 s).
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// A client gives up on one request after this long (a paused node never answers) and tries
/// the next node with the same envelope.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Every envelope must be acknowledged within this long, whatever fails meanwhile.
pub(crate) const ACK_DEADLINE: Duration = Duration::from_secs(60);
/// `/healthz`, `/v1/checkpoint` probes: short, so a paused node does not stall a poll.
const PROBE_TIMEOUT: Duration = Duration::from_millis(1000);
/// Between two attempts of one envelope.
const RETRY_PAUSE: Duration = Duration::from_millis(25);
/// How often the poller reads every node's checkpoint.
const POLL_EVERY: Duration = Duration::from_millis(100);

static SERIAL: Mutex<()> = Mutex::new(());

/// The cluster tests run one at a time: they share the PostgreSQL server (one of them restarts
/// it) and 2 cores, and they measure failover times.
pub(crate) fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The test server's URL, or `None` (after a notice) when none is configured; under `CI=true`
/// a missing server fails the test instead.
pub(crate) fn test_pg(test: &str) -> Option<String> {
    pg::test_server(test)
}

pub(crate) fn elapsed_s(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

// ---------------------------------------------------------------------------------------------
// The database

/// A fresh database in the test server, dropped at the end unless the test failed.
pub(crate) struct Database {
    base: String,
    pub name: String,
    pub url: String,
}

impl Database {
    pub(crate) fn create(base: &str, test: &str) -> Database {
        let (name, url) = pg::create_database(base, test);
        Database { base: base.to_string(), name, url }
    }

    /// A new connection (a PostgreSQL restart breaks old ones).
    pub(crate) fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, postgres::NoTls).unwrap_or_else(|e| panic!("connect {}: {e}", self.url))
    }

    /// One bigint the query returns.
    pub(crate) fn query_i64(&self, sql: &str) -> i64 {
        self.client().query_one(sql, &[]).unwrap_or_else(|e| panic!("{sql}: {e}")).get(0)
    }

    /// The log head's size (what the database says is committed).
    pub(crate) fn head_size(&self) -> u64 {
        self.query_i64("SELECT size FROM grantline_head") as u64
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("the failed test's database is kept: {}", self.url);
            return;
        }
        if let Ok(mut client) = postgres::Client::connect(&self.base, postgres::NoTls) {
            let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name));
        }
    }
}

/// A PostgreSQL client program (`pg_dump`, `psql`): next to GRANTLINE_TEST_PG_CTL, else the
/// newest /usr/lib/postgresql/*/bin, else on PATH. `None` when there is none.
pub(crate) fn pg_program(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Ok(pg_ctl) = std::env::var(PG_CTL_ENV) {
        if let Some(dir) = Path::new(&pg_ctl).parent() {
            dirs.push(dir.to_path_buf());
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .collect();
    versions.sort();
    dirs.extend(versions.into_iter().rev().map(|(_, dir)| dir));
    if let Some(found) = dirs.iter().map(|d| d.join(name)).find(|p| p.is_file()) {
        return Some(found);
    }
    let on_path = Command::new(name).arg("--version").output().is_ok_and(|o| o.status.success());
    on_path.then(|| PathBuf::from(name))
}

// ---------------------------------------------------------------------------------------------
// Nodes

/// What `/healthz` answers.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Health {
    pub status: String,
    pub role: String,
    pub size: u64,
    #[serde(default)]
    pub detail: Option<String>,
    /// The HTTP status (not part of the body).
    #[serde(skip)]
    pub http: u16,
}

fn client_with(timeout: Duration) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(timeout).build().unwrap()
}

/// A port free now (the node binds it itself, and again after every restart).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One `grantline serve --data DIR --db URL --addr 127.0.0.1:PORT` process, restartable.
pub(crate) struct Node {
    pub index: usize,
    pub data: PathBuf,
    pub url: String,
    pub log_path: PathBuf,
    addr: String,
    db_url: String,
    child: Option<Child>,
    paused: bool,
    probe: reqwest::blocking::Client,
}

impl Node {
    fn new(index: usize, data: PathBuf, db_url: &str) -> Node {
        let addr = format!("127.0.0.1:{}", free_port());
        Node {
            index,
            log_path: data.with_extension("server.log"),
            url: format!("http://{addr}"),
            data,
            addr,
            db_url: db_url.to_string(),
            child: None,
            paused: false,
            probe: client_with(PROBE_TIMEOUT),
        }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--data"]).arg(&self.data).args(["--db", &self.db_url, "--addr", &self.addr]);
        cmd.env("RUST_LOG", "warn").env_remove("GRANTLINE_DB").env_remove("GRANTLINE_FAULT").stdin(Stdio::null());
        cmd
    }

    fn note_in_log(&self, what: &str) {
        let mut log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log_path).unwrap();
        let _ = writeln!(log, "=== cluster test: node {} {what} at {} ms", self.index, api::now_ms());
    }

    /// Starts the node and waits for its listening line (on its fixed port).
    pub(crate) fn start(&mut self) {
        if let Err(e) = self.try_start() {
            panic!("{e}");
        }
    }

    /// Starts the node; `Err` (saying why, with its log) when it exits or does not listen.
    pub(crate) fn try_start(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "node {} is already running", self.index);
        self.note_in_log("starts");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log_path).unwrap();
        let mut child =
            self.command().stdout(Stdio::piped()).stderr(Stdio::from(log)).spawn().expect("spawn grantline serve");
        let rx = super::stdout_lines(&mut child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(url) = line.strip_prefix("grantline listening on ") {
                        assert_eq!(url, self.url, "node {} listens elsewhere", self.index);
                        break;
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let status = child.wait().unwrap();
                    return Err(format!("node {} did not start ({status}); its log:\n{}", self.index, self.log_text()));
                }
            }
        }
        self.child = Some(child);
        self.paused = false;
        Ok(())
    }

    fn pid(&self) -> String {
        self.child.as_ref().unwrap_or_else(|| panic!("node {} is not running", self.index)).id().to_string()
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill").arg(format!("-{signal}")).arg(self.pid()).status().unwrap();
        assert!(status.success(), "kill -{signal} node {}", self.index);
    }

    /// SIGKILL, then reap; returns when the process is gone.
    pub(crate) fn kill9(&mut self) -> Instant {
        let mut child = self.child.take().unwrap_or_else(|| panic!("node {} is not running", self.index));
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success());
        self.paused = false;
        let at = Instant::now();
        self.note_in_log("was killed (SIGKILL)");
        at
    }

    /// SIGTERM, then wait for the exit (at most a minute; then SIGKILL).
    pub(crate) fn stop(&mut self) -> std::process::ExitStatus {
        self.signal("TERM");
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.note_in_log("stopped (SIGTERM)");
                return status;
            }
            if Instant::now() > deadline {
                let stacks = Command::new("gdb")
                    .args(["-p", &child.id().to_string(), "-batch", "-ex", "thread apply all bt 30"])
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .unwrap_or_default();
                let _ = child.kill();
                panic!(
                    "node {} did not stop on SIGTERM; its log:\n{}\nits threads:\n{stacks}",
                    self.index,
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGSTOP: the process stays, answers nothing, keeps its sockets.
    pub(crate) fn pause(&mut self) -> Instant {
        self.signal("STOP");
        self.paused = true;
        Instant::now()
    }

    /// SIGCONT.
    pub(crate) fn resume(&mut self) -> Instant {
        self.signal("CONT");
        self.paused = false;
        Instant::now()
    }

    pub(crate) fn running(&self) -> bool {
        self.child.is_some()
    }

    /// Running and not paused: it should answer.
    pub(crate) fn live(&self) -> bool {
        self.child.is_some() && !self.paused
    }

    /// `/healthz`, or `None` when the node does not answer.
    pub(crate) fn health(&self) -> Option<Health> {
        let resp = self.probe.get(format!("{}/healthz", self.url)).send().ok()?;
        let http = resp.status().as_u16();
        let mut health: Health = resp.json().ok()?;
        health.http = http;
        Some(health)
    }

    pub(crate) fn log_info(&self) -> LogInfo {
        let resp = self.probe.get(format!("{}/v1/log", self.url)).send().unwrap();
        assert!(resp.status().is_success(), "node {} /v1/log: {}", self.index, resp.status());
        resp.json().unwrap()
    }

    /// `/v1/checkpoint` if the node serves one.
    pub(crate) fn try_checkpoint(&self) -> Option<String> {
        let resp = self.probe.get(format!("{}/v1/checkpoint", self.url)).send().ok()?;
        resp.status().is_success().then(|| resp.text().ok()).flatten()
    }

    pub(crate) fn checkpoint(&self) -> String {
        let resp = self.probe.get(format!("{}/v1/checkpoint", self.url)).send().unwrap();
        assert!(resp.status().is_success(), "node {} /v1/checkpoint: {}", self.index, resp.status());
        resp.text().unwrap()
    }

    pub(crate) fn metrics(&self) -> String {
        self.probe.get(format!("{}/metrics", self.url)).send().unwrap().text().unwrap()
    }

    /// One metric's value (the first line that starts with `name`, labels included).
    pub(crate) fn metric(&self, name: &str) -> Option<f64> {
        self.metrics().lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    }

    /// Posts a body once; the status and the text (`None` when no answer came).
    pub(crate) fn post_once(&self, body: &[u8]) -> Option<(u16, String)> {
        let resp = client_with(REQUEST_TIMEOUT)
            .post(format!("{}/v1/events", self.url))
            .header("content-type", "application/json")
            .body(body.to_vec())
            .send()
            .ok()?;
        let status = resp.status().as_u16();
        Some((status, resp.text().ok()?))
    }

    /// Every record the node serves, paged through `/v1/events` up to its `/v1/log` size.
    pub(crate) fn records(&self) -> Vec<RecordJson> {
        let size = self.log_info().size;
        let http = client_with(Duration::from_secs(60));
        let mut records: Vec<RecordJson> = Vec::with_capacity(size as usize);
        while (records.len() as u64) < size {
            let page: RecordPage = http
                .get(format!("{}/v1/events?from={}&limit=1000", self.url, records.len()))
                .send()
                .unwrap()
                .json()
                .unwrap();
            assert!(
                !page.records.is_empty(),
                "node {}: the log ends at {} below its size {size}",
                self.index,
                records.len()
            );
            records.extend(page.records);
        }
        records.truncate(size as usize);
        records
    }

    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Runs `serve` on this node's directory where it must refuse to start: its exit code and
    /// stderr. Fails if it is still running after a minute.
    pub(crate) fn serve_refused(&self) -> (Option<i32>, String) {
        assert!(self.child.is_none(), "node {} is running", self.index);
        let mut child = self.command().stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                panic!("node {}: serve did not refuse to start: {}", self.index, String::from_utf8_lossy(&out.stderr));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if self.paused {
                let _ = Command::new("kill").arg("-CONT").arg(child.id().to_string()).status();
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The cluster

/// Nodes serving one fresh database. Dropped in order: the nodes (SIGKILL), then the database.
pub(crate) struct Cluster {
    pub nodes: Vec<Node>,
    pub db: Database,
    pub admin: SigningKey,
    pub log_key: VerifierKey,
    pub dir: PathBuf,
    tmp: Option<tempfile::TempDir>,
}

/// What [`Cluster::converge`] found.
#[derive(Debug, Clone)]
pub(crate) struct Converged {
    pub size: u64,
    pub root: String,
    pub leader: usize,
    pub took: Duration,
}

impl Cluster {
    /// `nodes` nodes on a fresh database, node 0 made with `init --db`; `None` (with a notice)
    /// when no test server is configured outside CI.
    pub(crate) fn start(test: &str, nodes: usize) -> Option<Cluster> {
        let base = test_pg(test)?;
        Some(Cluster::start_on(&base, test, nodes))
    }

    pub(crate) fn start_on(base: &str, test: &str, count: usize) -> Cluster {
        let db = Database::create(base, test);
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let first = dir.join("n0");
        let admin_path = dir.join("admin.key");
        let out = Command::new(BIN)
            .args(["init", "--origin", ORIGIN, "--admin", "admin", "--data"])
            .arg(&first)
            .args(["--db", &db.url, "--admin-key-out"])
            .arg(&admin_path)
            .env("RUST_LOG", "warn")
            .env_remove("GRANTLINE_DB")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "grantline init --db: {}", String::from_utf8_lossy(&out.stderr));
        let mut nodes = vec![Node::new(0, first.clone(), &db.url)];
        for index in 1..count {
            nodes.push(Node::new(index, joining_dir(&dir, index), &db.url));
        }
        let log_pub = std::fs::read_to_string(first.join("log.pub")).unwrap();
        let mut cluster = Cluster {
            nodes,
            db,
            admin: SigningKey::read_file(&admin_path).unwrap(),
            log_key: VerifierKey::parse(log_pub.trim()).unwrap(),
            dir,
            tmp: Some(tmp),
        };
        for node in &mut cluster.nodes {
            node.start();
        }
        cluster.wait_for_leader(None, Duration::from_secs(30));
        cluster
    }

    /// A new node (not started) whose directory holds only copies of the two keys.
    pub(crate) fn add_node(&mut self) -> usize {
        let index = self.nodes.len();
        self.nodes.push(Node::new(index, joining_dir(&self.dir, index), &self.db.url));
        index
    }

    pub(crate) fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.url.clone()).collect()
    }

    /// Every live node's `/healthz` (`None` for a node not running, paused or not answering).
    pub(crate) fn healths(&self) -> Vec<Option<Health>> {
        self.nodes.iter().map(|n| if n.live() { n.health() } else { None }).collect()
    }

    /// Waits until exactly one live node reports `leader` and it is not `except`; returns it.
    pub(crate) fn wait_for_leader(&self, except: Option<usize>, timeout: Duration) -> usize {
        let started = Instant::now();
        loop {
            let healths = self.healths();
            let leaders: Vec<usize> =
                (0..healths.len()).filter(|&i| healths[i].as_ref().is_some_and(|h| h.role == "leader")).collect();
            if let [leader] = leaders[..] {
                if Some(leader) != except {
                    return leader;
                }
            }
            assert!(
                started.elapsed() < timeout,
                "no single leader (other than {except:?}) within {timeout:?}: {healths:?}\n{}",
                self.logs_tail(40)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until every live node is healthy (`ok`), exactly one leads, and all serve the same
    /// size and root, which is the database's head.
    pub(crate) fn converge(&self, timeout: Duration) -> Converged {
        let started = Instant::now();
        loop {
            let healths = self.healths();
            let live: Vec<usize> = (0..self.nodes.len()).filter(|&i| self.nodes[i].live()).collect();
            let answered: Vec<&Health> = live.iter().filter_map(|&i| healths[i].as_ref()).collect();
            let leaders: Vec<usize> =
                live.iter().copied().filter(|&i| healths[i].as_ref().is_some_and(|h| h.role == "leader")).collect();
            if answered.len() == live.len()
                && answered.iter().all(|h| h.status == "ok" && h.size == answered[0].size)
                && leaders.len() == 1
                && answered.iter().all(|h| h.role == "leader" || h.role == "follower")
            {
                let infos: Vec<LogInfo> = live.iter().map(|&i| self.nodes[i].log_info()).collect();
                let head = self.db.head_size();
                // /metrics agrees: the role /healthz names, no lag, the database's epoch.
                let epoch = self.db.query_i64("SELECT epoch FROM grantline_head") as f64;
                let metrics_agree = live.iter().all(|&i| {
                    let metrics = self.nodes[i].metrics();
                    let value = |name: &str| {
                        metrics
                            .lines()
                            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<f64>().ok())
                    };
                    let role = &healths[i].as_ref().unwrap().role;
                    value(&format!("grantline_role{{role=\"{role}\"}}")) == Some(1.0)
                        && value("grantline_follower_lag_records") == Some(0.0)
                        && value("grantline_epoch") == Some(epoch)
                });
                if metrics_agree && infos.iter().all(|l| l.size == head && l.root == infos[0].root) {
                    return Converged {
                        size: head,
                        root: infos[0].root.clone(),
                        leader: leaders[0],
                        took: started.elapsed(),
                    };
                }
            }
            assert!(
                started.elapsed() < timeout,
                "the nodes did not converge within {timeout:?}: {healths:?} (database head {})\n{}",
                self.db.head_size(),
                self.logs_tail(40)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last `lines` lines of every node's log.
    pub(crate) fn logs_tail(&self, lines: usize) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            let text = node.log_text();
            let all: Vec<&str> = text.lines().collect();
            out.push_str(&format!("--- node {} ({}) log, last {lines} lines:\n", node.index, node.url));
            for line in &all[all.len().saturating_sub(lines)..] {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    /// Lines of any node's log that say a thread panicked: always a bug.
    pub(crate) fn panics(&self) -> Vec<String> {
        self.nodes
            .iter()
            .flat_map(|n| {
                n.log_text()
                    .lines()
                    .filter(|l| l.contains("panicked"))
                    .map(|l| format!("node {}: {l}", n.index))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Registers `n` requester actors `<prefix>-<i>` (and the resource they request, once).
    pub(crate) fn register_clients(&self, n: usize, prefix: &str) -> Vec<SigningKey> {
        let mut poster = Poster::new(&self.urls());
        let define = envelope(
            &self.admin,
            ORIGIN,
            "define-gpu",
            "resource.defined",
            json!({"resource": RESOURCE, "provider": "open-gpu-server", "unit": "runner-minutes", "approvals_required": 2}),
        );
        poster.post(0, "define-gpu", &define);
        (0..n)
            .map(|i| {
                let key = SigningKey::generate(&format!("{prefix}-{i}")).unwrap();
                let id = format!("register-{prefix}-{i}");
                let body = envelope(
                    &self.admin,
                    ORIGIN,
                    &id,
                    "actor.registered",
                    json!({"actor": key.name(), "key": key.verifier().to_string(), "roles": ["requester"]}),
                );
                poster.post(i, &id, &body);
                key
            })
            .collect()
    }
}

/// `<dir>/n<index>` (mode 0700) with copies of `<dir>/n0`'s log.key and automation.key (0600):
/// all a node needs to join.
fn joining_dir(dir: &Path, index: usize) -> PathBuf {
    let data = dir.join(format!("n{index}"));
    std::fs::DirBuilder::new().mode(0o700).create(&data).unwrap();
    for key in ["log.key", "automation.key"] {
        std::fs::copy(dir.join("n0").join(key), data.join(key)).unwrap();
        std::fs::set_permissions(data.join(key), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    data
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs_tail(80));
            if let Some(tmp) = self.tmp.take() {
                eprintln!("the failed test's node directories and logs are kept: {}", tmp.keep().display());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Clients

/// An `access.requested` envelope with request id `id`, signed by `key`.
pub(crate) fn request_body(key: &SigningKey, id: &str) -> Vec<u8> {
    let data = json!({"request": id, "project": PROJECT, "resource": RESOURCE,
        "justification": "cluster test", "pull_request": false});
    envelope(key, ORIGIN, id, "access.requested", data)
}

/// One acknowledged envelope.
#[derive(Debug, Clone)]
pub(crate) struct Sent {
    pub id: String,
    /// 201, or 200 for a resubmission the log already held.
    pub status: u16,
    pub receipt: Receipt,
    /// The node that answered.
    pub node: usize,
    pub attempts: usize,
    /// Nodes where an attempt got no answer (down, paused, or the answer broke off).
    pub unanswered: Vec<usize>,
    pub acked_at: Instant,
}

/// A client of every node. It posts an envelope to the nodes in turn until one acknowledges it
/// (201 or 200): a 503 or a lost connection is retried with the identical envelope on the next
/// node. A node that gave no answer is passed over for [`QUIET`] (as a load balancer would),
/// unless every node is. Any other answer, or no acknowledgement within [`ACK_DEADLINE`], fails
/// the test.
pub(crate) struct Poster {
    http: reqwest::blocking::Client,
    urls: Vec<String>,
    quiet_until: Vec<Instant>,
}

/// How long a client passes over a node that gave no answer.
const QUIET: Duration = Duration::from_secs(2);

impl Poster {
    pub(crate) fn new(urls: &[String]) -> Poster {
        Poster {
            http: client_with(REQUEST_TIMEOUT),
            urls: urls.to_vec(),
            quiet_until: vec![Instant::now(); urls.len()],
        }
    }

    /// The first node from `k` on that is not passed over (`k` itself when all are).
    fn pick(&self, k: usize) -> usize {
        let now = Instant::now();
        let n = self.urls.len();
        (k..k + n).map(|j| j % n).find(|&j| self.quiet_until[j] <= now).unwrap_or(k % n)
    }

    pub(crate) fn post(&mut self, first: usize, id: &str, body: &[u8]) -> Sent {
        let started = Instant::now();
        let mut attempts = 0;
        let mut last: String;
        let mut unanswered = Vec::new();
        let mut k = first;
        loop {
            let node = self.pick(k);
            attempts += 1;
            let answer = self
                .http
                .post(format!("{}/v1/events", self.urls[node]))
                .header("content-type", "application/json")
                .body(body.to_vec())
                .send()
                .and_then(|resp| {
                    let status = resp.status().as_u16();
                    resp.text().map(|text| (status, text))
                });
            match answer {
                Ok((status @ (200 | 201), text)) => {
                    let receipt: Receipt = serde_json::from_str(&text)
                        .unwrap_or_else(|e| panic!("{id}: a receipt that does not parse: {e}: {text}"));
                    assert_eq!(receipt.id, id, "a receipt for another id");
                    return Sent {
                        id: id.to_string(),
                        status,
                        receipt,
                        node,
                        attempts,
                        unanswered,
                        acked_at: Instant::now(),
                    };
                }
                Ok((503, text)) => last = format!("503 from node {node}: {text}"),
                Ok((status, text)) => panic!("{id}: unexpected answer {status} from node {node}: {text}"),
                Err(e) => {
                    unanswered.push(node);
                    self.quiet_until[node] = Instant::now() + QUIET;
                    last = format!("no answer from node {node}: {e}");
                }
            }
            assert!(
                started.elapsed() < ACK_DEADLINE,
                "{id}: not acknowledged within {ACK_DEADLINE:?} ({attempts} attempts; last: {last})"
            );
            k = node + 1;
            std::thread::sleep(RETRY_PAUSE);
        }
    }
}

/// An acknowledgement as it came (for failover times).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ack {
    pub at: Instant,
    pub node: usize,
    pub seq: u64,
    pub status: u16,
}

/// A checkpoint a node served (`GET /v1/checkpoint`), in the order the poller saw them.
#[derive(Debug, Clone)]
pub(crate) struct Served {
    pub node: usize,
    pub text: String,
}

/// What a finished [`Load`] recorded.
pub(crate) struct LoadResult {
    pub sent: Vec<Sent>,
    pub served: Vec<Served>,
}

/// Signing clients posting to every node, and a poller of every node's checkpoint.
pub(crate) struct Load {
    stop: Arc<AtomicBool>,
    clients: Vec<JoinHandle<Vec<Sent>>>,
    poller: Option<JoinHandle<Vec<Served>>>,
    acks: Arc<Mutex<Vec<Ack>>>,
}

impl Load {
    /// One client thread per key, each posting fresh `access.requested` envelopes (ids
    /// `<tag>-<key name>-<n>`) one after another, each to the next node in turn.
    pub(crate) fn start(urls: Vec<String>, keys: Vec<SigningKey>, tag: &str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acks = Arc::new(Mutex::new(Vec::new()));
        let clients = keys
            .into_iter()
            .enumerate()
            .map(|(i, key)| {
                let (urls, stop, acks, tag) = (urls.clone(), stop.clone(), acks.clone(), tag.to_string());
                std::thread::spawn(move || {
                    let mut poster = Poster::new(&urls);
                    let mut sent = Vec::new();
                    for n in 0.. {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let id = format!("{tag}-{}-{n}", key.name());
                        let body = request_body(&key, &id);
                        let s = poster.post(i + n, &id, &body);
                        acks.lock().unwrap().push(Ack {
                            at: s.acked_at,
                            node: s.node,
                            seq: s.receipt.seq,
                            status: s.status,
                        });
                        sent.push(s);
                    }
                    sent
                })
            })
            .collect();
        let poller = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let http = client_with(PROBE_TIMEOUT);
                let mut served: Vec<Served> = Vec::new();
                let mut last: Vec<Option<String>> = vec![None; urls.len()];
                while !stop.load(Ordering::SeqCst) {
                    for (node, url) in urls.iter().enumerate() {
                        let Ok(resp) = http.get(format!("{url}/v1/checkpoint")).send() else { continue };
                        if !resp.status().is_success() {
                            continue;
                        }
                        let Ok(text) = resp.text() else { continue };
                        if last[node].as_ref() != Some(&text) {
                            last[node] = Some(text.clone());
                            served.push(Served { node, text });
                        }
                    }
                    std::thread::sleep(POLL_EVERY);
                }
                served
            })
        };
        Load { stop, clients, poller: Some(poller), acks }
    }

    pub(crate) fn acked(&self) -> usize {
        self.acks.lock().unwrap().len()
    }

    /// Waits until `n` more envelopes than now are acknowledged.
    pub(crate) fn wait_for_more(&self, n: usize, timeout: Duration) {
        let target = self.acked() + n;
        let started = Instant::now();
        while self.acked() < target {
            assert!(started.elapsed() < timeout, "fewer than {n} acknowledgements in {timeout:?}");
            assert!(self.clients.iter().all(|c| !c.is_finished()), "a client stopped (it failed)");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The first acknowledgement that came after `after` for a record at seq `min_seq` or
    /// later (one committed after that moment), if any yet.
    pub(crate) fn first_ack_after(&self, after: Instant, min_seq: u64) -> Option<Ack> {
        self.acks.lock().unwrap().iter().filter(|a| a.at > after && a.seq >= min_seq).min_by_key(|a| a.at).copied()
    }

    /// Stops the clients (each finishes its envelope in hand) and the poller.
    pub(crate) fn finish(mut self) -> LoadResult {
        self.stop.store(true, Ordering::SeqCst);
        let mut sent = Vec::new();
        for c in self.clients.drain(..) {
            sent.extend(c.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
        }
        let served = self.poller.take().unwrap().join().unwrap();
        LoadResult { sent, served }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------------------------------------
// The end-of-test checks

/// Runs tlogcheck on one job: (success, what it printed).
pub(crate) fn run_tlogcheck(bin: &Path, job: &serde_json::Value) -> (bool, String) {
    let mut child = Command::new(bin).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(job.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// What [`check_history`] established.
#[derive(Debug)]
pub(crate) struct History {
    pub size: u64,
    pub root: String,
    pub receipts: usize,
    /// Receipts that were 200 (the log already held the envelope: an earlier attempt committed
    /// but its answer was lost).
    pub duplicates: usize,
    /// Distinct checkpoints seen in receipts and served by the nodes.
    pub checkpoints: usize,
    /// Of those, how many Go's tlog checked against the final one (`None` without Go).
    pub go_checked: Option<usize>,
    pub converged_in: Duration,
}

/// The final checks of a cluster test, on the live nodes, after the load has finished:
///
/// 1. they converge (healthy, one leader, the same size and root as the database's head);
/// 2. every live node serves the same records: seqs dense from 0, each linked to the one
///    before, statement ids unique, leaf hashes whose Merkle root is the served root;
/// 3. every receipt's record is at its seq with the receipt's id, leaf and chain hash, and the
///    receipt's inclusion proof verifies against its own checkpoint;
/// 4. every checkpoint seen (`checkpoints`: in receipts and served) is signed by the log key
///    and its root is the root of that prefix of the final log; a node never served a smaller
///    checkpoint after a larger one;
/// 5. Go's sumdb/tlog checks each of them against the final checkpoint with the servers'
///    consistency proofs.
pub(crate) fn check_history(cluster: &Cluster, sent: &[Sent], served: &[Served]) -> History {
    let converged = cluster.converge(Duration::from_secs(20));
    let live: Vec<&Node> = cluster.nodes.iter().filter(|n| n.live()).collect();

    // 2. One history on every node.
    let records = live[0].records();
    assert_eq!(records.len() as u64, converged.size);
    let mut ids: HashMap<String, u64> = HashMap::new();
    let mut tree = MemoryTree::new();
    let mut prev = ledger::b64::encode([0u8; 32]);
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.seq, i as u64, "seqs are not dense at {i}");
        assert_eq!(r.prev, prev, "record {i} does not link to record {}", i.wrapping_sub(1));
        prev = r.chain_hash.clone();
        let leaf = ledger::b64::decode(&r.leaf).unwrap();
        assert_eq!(ledger::b64::encode(ledger::merkle::leaf_hash(&leaf)), r.leaf_hash, "record {i}: leaf hash");
        tree.push(ledger::b64::decode_hash(&r.leaf_hash).unwrap());
        let id = r.statement["id"].as_str().unwrap_or_else(|| panic!("record {i} has no statement id")).to_string();
        if let Some(first) = ids.insert(id.clone(), r.seq) {
            panic!("statement {id} is logged twice: at {first} and {}", r.seq);
        }
    }
    assert_eq!(ledger::b64::encode(tree.root()), converged.root, "the served root is not the root of the records");
    for node in &live[1..] {
        let theirs = node.records();
        assert_eq!(theirs.len(), records.len(), "node {} serves another size", node.index);
        for (a, b) in records.iter().zip(&theirs) {
            assert_eq!(
                (a.seq, &a.leaf_hash, &a.chain_hash),
                (b.seq, &b.leaf_hash, &b.chain_hash),
                "node {} differs",
                node.index
            );
        }
    }

    // 3. Every receipt.
    let mut seen_ids = HashSet::new();
    let mut checkpoints: BTreeMap<String, ()> = BTreeMap::new();
    for s in sent {
        assert!(seen_ids.insert(&s.id), "envelope {} was sent twice by the clients", s.id);
        let r = &s.receipt;
        let logged = records
            .get(r.seq as usize)
            .unwrap_or_else(|| panic!("receipt of {} names seq {} past the log's end {}", s.id, r.seq, records.len()));
        assert_eq!(
            (logged.statement["id"].as_str(), &logged.leaf_hash, &logged.chain_hash),
            (Some(s.id.as_str()), &r.leaf_hash, &r.chain_hash),
            "the record at the seq of {}'s receipt ({}, answered {} by node {}) is another",
            s.id,
            r.seq,
            s.status,
            s.node
        );
        let cp = Checkpoint::open(r.checkpoint.as_bytes(), &cluster.log_key)
            .unwrap_or_else(|e| panic!("{}: the receipt's checkpoint does not open: {e}", s.id));
        let proof = api::json::hashes_from_b64(&r.inclusion.hashes).unwrap();
        assert_eq!((r.inclusion.index, r.inclusion.tree_size), (r.seq, cp.size), "{}: the proof's sizes", s.id);
        ledger::merkle::verify_inclusion(
            r.seq,
            cp.size,
            &ledger::b64::decode_hash(&r.leaf_hash).unwrap(),
            &proof,
            &cp.root,
        )
        .unwrap_or_else(|e| panic!("{}: the receipt's inclusion proof: {e}", s.id));
        checkpoints.insert(r.checkpoint.clone(), ());
    }

    // 4. Every checkpoint seen is a prefix of the final log; a node never goes back.
    let mut last_size: HashMap<usize, u64> = HashMap::new();
    for s in served {
        let cp = Checkpoint::open(s.text.as_bytes(), &cluster.log_key)
            .unwrap_or_else(|e| panic!("node {} served a checkpoint that does not open: {e}:\n{}", s.node, s.text));
        let last = last_size.entry(s.node).or_insert(0);
        assert!(cp.size >= *last, "node {} served a checkpoint of {} records after one of {}", s.node, cp.size, last);
        *last = cp.size;
        checkpoints.insert(s.text.clone(), ());
    }
    let mut opened: Vec<(String, Checkpoint)> = Vec::new();
    for text in checkpoints.keys() {
        let cp = Checkpoint::open(text.as_bytes(), &cluster.log_key).unwrap();
        assert!(
            cp.size <= converged.size,
            "a checkpoint of {} records, past the final log of {}",
            cp.size,
            converged.size
        );
        assert_eq!(
            cp.root,
            tree.root_at(cp.size).unwrap(),
            "a checkpoint of {} records is not a prefix of the final log:\n{text}",
            cp.size
        );
        opened.push((text.clone(), cp));
    }

    // 5. Go's tlog, on the servers' consistency proofs.
    let go_checked = super::tlogcheck().map(|bin| {
        let final_text = live[0].checkpoint();
        let final_cp = Checkpoint::open(final_text.as_bytes(), &cluster.log_key).unwrap();
        assert_eq!(final_cp.size, converged.size);
        let log_key = live[0].log_info().log_key;
        let http = client_with(Duration::from_secs(60));
        let jobs: Vec<serde_json::Value> = opened
            .iter()
            .enumerate()
            .map(|(k, (text, cp))| {
                let node = live[k % live.len()];
                let proof: ConsistencyProof = http
                    .get(format!("{}/v1/proofs/consistency?from={}&to={}", node.url, cp.size, final_cp.size))
                    .send()
                    .unwrap()
                    .json()
                    .unwrap();
                json!({"log_key": log_key, "checkpoint": final_text, "old_checkpoint": text, "consistency": proof.hashes})
            })
            .collect();
        let failures: Vec<String> = std::thread::scope(|scope| {
            let halves: Vec<_> = jobs
                .chunks(jobs.len().div_ceil(2).max(1))
                .map(|chunk| {
                    let bin = &bin;
                    scope.spawn(move || {
                        chunk
                            .iter()
                            .filter_map(|job| {
                                let (ok, said) = run_tlogcheck(bin, job);
                                (!ok).then(|| format!("{said}\n{}", job["old_checkpoint"]))
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            halves.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        assert!(failures.is_empty(), "Go's tlog rejects {} checkpoints against the final one:\n{}", failures.len(), failures.join("\n"));
        jobs.len()
    });

    History {
        size: converged.size,
        root: converged.root,
        receipts: sent.len(),
        duplicates: sent.iter().filter(|s| s.status == 200).count(),
        checkpoints: opened.len(),
        go_checked,
        converged_in: converged.took,
    }
}
