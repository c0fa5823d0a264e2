//! Helpers for the GitHub runner layer's end-to-end tests (SPEC.md section 13): a server started
//! with `--github-org` and webhook secrets, GitHub's real `workflow_job` payloads from npm
//! `@octokit/webhooks-examples`, and GitHub's own signing code (`@octokit/webhooks-methods`)
//! run by Node as an independent signer (tests/node/sign.mjs).
//!
//! The npm packages are installed by `.ci/run` (`npm ci --prefix tests/node`). A test that needs
//! them calls [`node_tools`], which prints a notice and returns `None` when Node or the packages
//! are missing, and fails instead under `CI=true`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ledger::dsse::Envelope;
use ledger::keys::VerifierKey;
use ledger::statement::format_rfc3339_ms;
use serde_json::{json, Value};

use super::{http, init_if_new, Server, BIN};

/// The organisation the test servers serve (`--github-org`).
pub(crate) const ORG: &str = "conda-forge";
/// The current webhook secret (written with a trailing newline, which is not part of it).
pub(crate) const SECRET: &str = "grantline-test-current-secret";
/// The previous webhook secret (`--github-webhook-secret-previous`), during a rotation.
pub(crate) const PREVIOUS_SECRET: &str = "grantline-test-previous-secret";
/// A secret the server does not know.
pub(crate) const WRONG_SECRET: &str = "not-the-webhook-secret";

/// tests/node: package.json, package-lock.json, sign.mjs and (once installed) node_modules.
pub(crate) const NODE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/node");
const EXAMPLES_INDEX: &str = "node_modules/@octokit/webhooks-examples/api.github.com/index.json";
const METHODS_PACKAGE: &str = "node_modules/@octokit/webhooks-methods/package.json";

/// Writes a secret file with mode 0600 (as `serve` requires).
pub(crate) fn write_secret(path: &Path, contents: &str) {
    std::fs::write(path, contents).unwrap();
    chmod(path, 0o600);
}

pub(crate) fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The secret files of a GitHub-enabled server, in `dir`: `SECRET` with a trailing newline (one
/// is ignored) and `PREVIOUS_SECRET` without one; plus a file of `WRONG_SECRET` for the signer.
pub(crate) struct Secrets {
    pub current: PathBuf,
    pub previous: PathBuf,
    pub wrong: PathBuf,
}

impl Secrets {
    pub(crate) fn write(dir: &Path) -> Secrets {
        let secrets = Secrets {
            current: dir.join("webhook-secret"),
            previous: dir.join("webhook-secret-previous"),
            wrong: dir.join("webhook-secret-wrong"),
        };
        write_secret(&secrets.current, &format!("{SECRET}\n"));
        write_secret(&secrets.previous, PREVIOUS_SECRET);
        write_secret(&secrets.wrong, WRONG_SECRET);
        secrets
    }

    /// The `serve` flags: `--github-org ORG --github-webhook-secret … --github-webhook-secret-previous …`.
    pub(crate) fn serve_flags(&self) -> Vec<OsString> {
        vec![
            "--github-org".into(),
            ORG.into(),
            "--github-webhook-secret".into(),
            self.current.clone().into_os_string(),
            "--github-webhook-secret-previous".into(),
            self.previous.clone().into_os_string(),
        ]
    }
}

/// Starts `grantline serve --addr 127.0.0.1:0 --data DATA EXTRA…` (DATA made with `init` when
/// new), like `Server::start` with extra serve flags. Restart a stopped server by calling it
/// again with the same DATA and flags.
pub(crate) fn start_with_flags(data: &Path, extra: &[OsString]) -> Server {
    let mut printed = init_if_new(data, &[]);
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--addr", "127.0.0.1:0", "--data"]).arg(data).args(extra);
    let mut server = Server::spawn(cmd, data, &[]);
    printed.append(&mut server.stdout);
    server.stdout = printed;
    server
}

/// A server for ORG with `Secrets` written next to DATA.
pub(crate) fn start_github(data: &Path) -> (Server, Secrets) {
    let dir = data.parent().unwrap();
    let secrets = Secrets::write(dir);
    let server = start_with_flags(data, &secrets.serve_flags());
    (server, secrets)
}

/// Runs `grantline serve … EXTRA` on an initialised DATA where it must refuse to start: returns
/// its exit code and stderr. Fails if it is still running after a minute.
pub(crate) fn serve_refused(data: &Path, extra: &[OsString]) -> (i32, String) {
    init_if_new(data, &[]);
    let mut child = Command::new(BIN)
        .args(["serve", "--addr", "127.0.0.1:0", "--data"])
        .arg(data)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("serve {extra:?} did not refuse to start");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (status.code().unwrap_or(-1), stderr)
}

/// Node with the npm packages of tests/node installed.
pub(crate) struct NodeTools {
    dir: PathBuf,
}

/// `Some` when `node` runs and tests/node/node_modules holds the packages; otherwise a notice
/// and `None`, or a failure under `CI=true`.
pub(crate) fn node_tools() -> Option<NodeTools> {
    let dir = PathBuf::from(NODE_DIR);
    let node = Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success());
    let packages = dir.join(EXAMPLES_INDEX).is_file() && dir.join(METHODS_PACKAGE).is_file();
    if node && packages {
        return Some(NodeTools { dir });
    }
    let why = format!(
        "node found: {node}; @octokit/webhooks-examples and @octokit/webhooks-methods in {}/node_modules: {packages}",
        dir.display()
    );
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "the GitHub webhook test's outside tools are missing under CI ({why}); run `npm ci --prefix tests/node`"
    );
    eprintln!(
        "NOTICE: skipping a GitHub webhook test ({why}); install Node (apt-get install nodejs npm) and run \
         `npm ci --prefix tests/node`"
    );
    None
}

impl NodeTools {
    /// Signs each (secret file, body) with `@octokit/webhooks-methods`'s `sign`, in one Node
    /// run: the `X-Hub-Signature-256` values, in order.
    pub(crate) fn sign(&self, items: &[(&Path, &[u8])]) -> Vec<String> {
        let tmp = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("node");
        cmd.arg(self.dir.join("sign.mjs")).current_dir(&self.dir);
        for (i, (secret, body)) in items.iter().enumerate() {
            let path = tmp.path().join(format!("body-{i}.json"));
            std::fs::write(&path, body).unwrap();
            cmd.arg(secret).arg(path);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "node sign.mjs: {}", String::from_utf8_lossy(&out.stderr));
        let signatures: Vec<String> = String::from_utf8(out.stdout).unwrap().lines().map(str::to_string).collect();
        assert_eq!(signatures.len(), items.len(), "{signatures:?}");
        for s in &signatures {
            let hex = s.strip_prefix("sha256=").unwrap_or_else(|| panic!("{s}"));
            assert!(hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()), "{s}");
        }
        signatures
    }

    /// The real example payloads of `event` (its entry in webhooks-examples' index.json).
    pub(crate) fn examples(&self, event: &str) -> Vec<Value> {
        static INDEX: OnceLock<Value> = OnceLock::new();
        let index = INDEX.get_or_init(|| {
            let text = std::fs::read(self.dir.join(EXAMPLES_INDEX)).unwrap();
            serde_json::from_slice(&text).unwrap()
        });
        let entry = index.as_array().unwrap().iter().find(|e| e["name"] == event);
        let examples = entry.unwrap_or_else(|| panic!("no {event} in webhooks-examples"))["examples"].clone();
        examples.as_array().unwrap().clone()
    }

    /// The one `workflow_job` example with this action and conclusion (`completed` has a
    /// `failure` and a `success` for the same job id).
    pub(crate) fn workflow_job(&self, action: &str, conclusion: Option<&str>) -> Value {
        let mut found: Vec<Value> = self
            .examples("workflow_job")
            .into_iter()
            .filter(|e| e["action"] == action && e["workflow_job"]["conclusion"].as_str() == conclusion)
            .collect();
        assert_eq!(found.len(), 1, "workflow_job {action} {conclusion:?}");
        found.remove(0)
    }
}

/// GitHub's time format (whole seconds, `Z`).
pub(crate) fn github_time(ms: i64) -> String {
    format_rfc3339_ms(ms - ms.rem_euclid(1000))
}

/// The next whole second from now, in ms: a job start after every grant issued so far.
pub(crate) fn next_second_ms() -> i64 {
    (api::now_ms() / 1000 + 1) * 1000
}

/// Rewrites what a test must in a GitHub payload: the repository (owner/org login, name,
/// full_name, id).
pub(crate) fn set_repository(payload: &mut Value, owner: &str, name: &str, id: u64) {
    let repo = &mut payload["repository"];
    repo["id"] = json!(id);
    repo["name"] = json!(name);
    repo["full_name"] = json!(format!("{owner}/{name}"));
    repo["owner"]["login"] = json!(owner);
    if payload.get("organization").is_some_and(Value::is_object) {
        payload["organization"]["login"] = json!(owner);
    }
}

/// A `workflow_job` example rewritten into a job of `ORG/project` (repository id `repo_id`)
/// on `labels`, started at `started_ms` and (when completed) lasting `seconds`.
pub(crate) fn job_payload(
    example: &Value,
    project: &str,
    repo_id: u64,
    labels: &[&str],
    started_ms: i64,
    seconds: i64,
) -> Value {
    let mut p = example.clone();
    set_repository(&mut p, ORG, project, repo_id);
    let job = &mut p["workflow_job"];
    job["labels"] = json!(labels);
    job["started_at"] = json!(github_time(started_ms));
    if !job["completed_at"].is_null() {
        job["completed_at"] = json!(github_time(started_ms + seconds * 1000));
    }
    p
}

/// The compact JSON bytes of a payload (key order kept as GitHub sent it).
pub(crate) fn body(payload: &Value) -> Vec<u8> {
    serde_json::to_vec(payload).unwrap()
}

/// `gh:<repository.id>:<workflow_job.id>:<run_attempt>`: the usage id of a job attempt.
pub(crate) fn usage_id(payload: &Value) -> String {
    let job = &payload["workflow_job"];
    format!("gh:{}:{}:{}", payload["repository"]["id"], job["id"], job["run_attempt"])
}

/// A webhook answer: status, content type and the JSON body (`Null` when not JSON).
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: u16,
    pub content_type: String,
    pub json: Value,
    pub text: String,
}

impl Answer {
    pub(crate) fn outcome(&self) -> &str {
        self.json["outcome"].as_str().unwrap_or("")
    }
}

/// POSTs a delivery to `/v1/github/webhook`, with `X-Hub-Signature-256: signature` when given.
pub(crate) fn deliver(s: &Server, event: &str, delivery: &str, signature: Option<&str>, body: &[u8]) -> Answer {
    let mut req = http()
        .post(format!("{}/v1/github/webhook", s.url))
        .header("content-type", "application/json")
        .header("user-agent", "GitHub-Hookshot/grantline-test")
        .header("x-github-event", event)
        .header("x-github-delivery", delivery)
        .header("x-github-hook-id", "424242");
    if let Some(sig) = signature {
        req = req.header("x-hub-signature-256", sig);
    }
    let resp = req.body(body.to_vec()).send().unwrap();
    answer(resp)
}

pub(crate) fn answer(resp: reqwest::blocking::Response) -> Answer {
    let status = resp.status().as_u16();
    let content_type =
        resp.headers().get("content-type").map(|v| v.to_str().unwrap_or("").to_string()).unwrap_or_default();
    let text = resp.text().unwrap();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Answer { status, content_type, json, text }
}

/// Delivery id number `n` in GitHub's form (a GUID): the same `n` gives the same id.
pub(crate) fn delivery_id(n: u64) -> String {
    format!("72d3162e-cc78-11e3-81ab-{n:012x}")
}

/// `grantline_github_deliveries_total{outcome="…"}` by outcome (absent outcomes are 0).
pub(crate) fn delivery_counts(s: &Server) -> BTreeMap<String, u64> {
    let text = s.get("/metrics").text().unwrap();
    let prefix = "grantline_github_deliveries_total{outcome=\"";
    text.lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .map(|rest| {
            let (outcome, value) = rest.split_once("\"}").unwrap_or_else(|| panic!("{rest}"));
            (outcome.to_string(), value.trim().parse::<f64>().unwrap() as u64)
        })
        .collect()
}

/// How much each outcome's counter moved between two readings (only those that moved).
pub(crate) fn counts_moved(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after.iter().map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0))).filter(|(_, d)| *d > 0).collect()
}

/// Every record of the log, in seq order.
pub(crate) fn all_records(s: &Server) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let page = s.get_json(&format!("/v1/events?from={}&limit=1000", out.len()));
        let records = page["records"].as_array().unwrap();
        if records.is_empty() {
            return out;
        }
        out.extend(records.iter().cloned());
    }
}

/// The statements of the records of `kind`.
pub(crate) fn records_of_type(s: &Server, kind: &str) -> Vec<Value> {
    all_records(s).into_iter().filter(|r| r["statement"]["type"] == kind).collect()
}

/// Asserts that a record was signed by the automation key alone, as the automation actor.
pub(crate) fn assert_signed_by_automation(s: &Server, record: &Value) {
    let automation = VerifierKey::parse(&s.log().automation_key).unwrap();
    assert_eq!(record["statement"]["actor"], "automation", "{record}");
    let env = Envelope::parse(&serde_json::to_vec(&record["envelope"]).unwrap()).unwrap();
    let keyids = env.verify(|keyid| (keyid == automation.keyid()).then(|| automation.clone())).unwrap();
    assert_eq!(keyids, [automation.keyid()], "{record}");
}

/// POSTs a delivery over a raw socket, with `Content-Length` (`declared`) or chunked, stopping
/// early when the server answers before the whole body is sent (a refusal by size): the
/// status and the answer's body. GitHub's own deliveries declare their length.
pub(crate) fn deliver_raw(
    s: &Server,
    event: &str,
    delivery: &str,
    signature: &str,
    body: &[u8],
    declared: bool,
) -> (u16, String) {
    let headers = [
        "User-Agent: GitHub-Hookshot/grantline-test".to_string(),
        format!("X-GitHub-Event: {event}"),
        format!("X-GitHub-Delivery: {delivery}"),
        format!("X-Hub-Signature-256: {signature}"),
    ];
    super::post_raw(s, "/v1/github/webhook", &headers, body, declared)
}
