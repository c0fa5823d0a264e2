//! `grantline loadgen`: drives a running server over real HTTP connections and reports
//! throughput and latency. See BENCHMARKS.md.
//!
//! - `appends`: registers M actors, one resource and one grant per actor (signed with the
//!   admin key), pre-signs N `usage.reported` envelopes before the clock starts, then posts
//!   them over C kept-alive connections. Only 201 answers count.
//! - `access-check`, `allocations`, `inclusion`, `consistency`: C connections issue reads for
//!   `--duration-s`; proofs are at the log size when the run starts. With `--append-rate R`,
//!   pre-signed appends are posted at R per second meanwhile, and reported separately.
//! - `fill` (hidden): appends N events offline, straight through the store (the server must be
//!   stopped), with the same signing, checks and batches as the server; it builds the
//!   1,000,000-record log of the benchmarks in seconds instead of minutes.
//!
//! The GitHub runner layer (SPEC.md section 13; the server runs with `serve --github-org ORG
//! --github-webhook-secret FILE`, and the load generator is given the same `--github-org` and
//! the same secret file as `--github-secret`). Every body is built and signed (HMAC-SHA256,
//! `X-Hub-Signature-256`) before the clock starts; the payloads have the shape and the size of
//! GitHub's (about 9.5 KB with the full repository, organisation and sender objects; GitHub's
//! own examples in `@octokit/webhooks-examples` are 6.5 to 11 KB), since the server reads and
//! authenticates all of it.
//!
//! - `webhook-ignored`: N `push` deliveries, each with its own `X-GitHub-Delivery` id. The
//!   server verifies the signature, remembers the id in the store's database and answers 202
//!   `ignored`; only those answers count. No setup, no `--admin-key`.
//! - `webhook-metered`: the setup of `appends`, then N completed `workflow_job` deliveries,
//!   one distinct (repository id, job id, run attempt) each, of the M projects with a grant
//!   (repository = project, labels `<resource>--<run id>-linux_64` as conda-smithy writes
//!   them, started when the grants had begun). Each becomes a `usage.reported` record signed
//!   by the server's automation key; only 200 `metered` answers count. Compare with `appends`
//!   in the same run.
//! - `webhook-duplicate` (diagnostic): C `push` deliveries are delivered once before the
//!   clock, then re-delivered for `--duration-s` (answered 200 `duplicate_delivery`): all the
//!   work of `webhook-ignored` except remembering a new delivery id.
//! - `gate`: `POST /v1/access/job` for `--duration-s`, a pushed job of each of the M projects
//!   in turn (the setup of `access-check`); only 200 answers with `"allowed":true` count.
//!   Compare with `access-check` in the same run.
//!
//! Before the clock starts, each of these modes sends one request of its kind and stops with
//! the server's answer when it is not the expected one (a wrong secret or organisation, a
//! server without the runner layer).
//!
//! `usage.reported` is the event because it is the common one in production and the state
//! does not grow with it (usage adds to counters, not to a list of objects), so a long run measures the log,
//! not a growing projection.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use ledger::dsse::Envelope;
use ledger::keys::SigningKey;
use ledger::statement::{format_rfc3339_ms, Statement};
use ledger::store::{AppendOutcome, Entry, BATCH_ENTRIES_MAX};
use ledger::tile::{Kind, Tile, TILE_WIDTH};
use rayon::prelude::*;
use serde::Serialize;
use serde_json::{json, Value};

use super::error::{CliError, CliResult};
use super::signer::ServerOpt;
use crate::fold::{Fold, Signer};
use crate::json::LogInfo;
use crate::limits::{
    LOADGEN_ACTORS_MAX, LOADGEN_ANSWER_QUOTE_BYTES_MAX, LOADGEN_APPEND_RATE_MAX, LOADGEN_BACKGROUND_CONNECTIONS,
    LOADGEN_CONNECTIONS_MAX, LOADGEN_DELIVERIES_MAX, LOADGEN_DURATION_S_MAX, LOADGEN_EVENTS_MAX,
    LOADGEN_REQUEST_TIMEOUT_MS, LOADGEN_RESPONSE_BODY_BYTES_MAX, LOADGEN_RESPONSE_HEAD_BYTES_MAX,
};

/// The unit of the resource the setup defines.
const RESOURCE_UNIT: &str = "runner-minutes";
/// How long each metered job ran: 90 s, billed as 2 runner-minutes (rounded up). It ends in
/// the server's near future (the jobs start when the setup's grants began), well inside the
/// minutes of clock drift a usage report may have.
const JOB_DURATION_MS: i64 = 90_000;
/// Where GitHub posts deliveries.
const WEBHOOK_PATH: &str = "/v1/github/webhook";
/// The job gate.
const GATE_PATH: &str = "/v1/access/job";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Mode {
    /// Post pre-signed envelopes (`usage.reported`) as fast as the server takes them.
    Appends,
    /// `GET /v1/access/check` for a project with a grant.
    AccessCheck,
    /// `GET /v1/allocations` for one project.
    Allocations,
    /// `GET /v1/proofs/inclusion/{seq}?size=` at the log size when the run starts.
    Inclusion,
    /// `GET /v1/proofs/consistency?from=&to=` at the log size when the run starts.
    Consistency,
    /// `GET /tile/0/<N>`: random full level-0 hash tiles (C2SP tlog-tiles) of the log.
    Tiles,
    /// `GET /tile/entries/<N>`: random full entry bundles of the log.
    Entries,
    /// Post pre-signed GitHub `push` deliveries (202 ignored), each with a new delivery id.
    WebhookIgnored,
    /// Post pre-signed completed `workflow_job` deliveries that the server meters (200).
    WebhookMetered,
    /// Re-post `push` deliveries already seen (200 duplicate_delivery), for `--duration-s`.
    WebhookDuplicate,
    /// `POST /v1/access/job` for a pushed job of a project with a grant.
    Gate,
    /// Offline: append events straight through the store of a stopped server's --data.
    #[value(hide = true)]
    Fill,
}

/// Drive a running server over HTTP and report throughput and latency (benchmarks).
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  grantline loadgen appends --admin-key grantline-data/admin.key --events 50000 --connections 64\n  grantline loadgen access-check --admin-key grantline-data/admin.key --duration-s 10 --append-rate 5000\n  grantline loadgen inclusion --duration-s 10 --json\n  grantline loadgen webhook-ignored --github-org conda-forge --github-secret webhook-secret --events 50000\n  grantline loadgen webhook-metered --github-org conda-forge --github-secret webhook-secret --admin-key grantline-data/admin.key --events 20000\n  grantline loadgen gate --github-org conda-forge --admin-key grantline-data/admin.key --duration-s 10\n\nThe setup (actors, a resource, grants) is signed with --admin-key and uses fresh names each run."
)]
pub(crate) struct LoadgenArgs {
    /// What to measure.
    #[arg(value_enum)]
    pub mode: Mode,
    #[command(flatten)]
    pub server: ServerOpt,
    /// The admin's private key: signs the setup (needed by `appends`, `--append-rate`,
    /// `webhook-metered`, and `access-check`/`allocations`/`gate`, which ask about a project
    /// with a grant).
    #[arg(long, value_name = "FILE")]
    pub admin_key: Option<PathBuf>,
    /// Envelopes to pre-sign and post (`appends`, `fill`), or deliveries (`webhook-ignored`,
    /// `webhook-metered`).
    #[arg(long, default_value_t = 20_000)]
    pub events: u64,
    /// Concurrent kept-alive connections.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Actors (each with its own key and grant) the events are signed by.
    #[arg(long, default_value_t = 16)]
    pub actors: usize,
    /// How long the read modes run.
    #[arg(long, default_value_t = 10)]
    pub duration_s: u64,
    /// Read modes: also post appends at this many per second meanwhile (0: none).
    #[arg(long, default_value_t = 0)]
    pub append_rate: u64,
    /// Worker threads of the load generator's runtime.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// `fill`: the data directory of a stopped server.
    #[arg(long, value_name = "DIR", hide = true)]
    pub data: Option<PathBuf>,
    /// `webhook-*` modes: the server's webhook secret file (`serve --github-webhook-secret`;
    /// mode 0600, a trailing newline is not part of it); every delivery is signed with it.
    #[arg(long, value_name = "FILE")]
    pub github_secret: Option<PathBuf>,
    /// `webhook-*` and `gate` modes: the organisation the server serves (`serve --github-org`);
    /// the repositories of the payloads are `ORG/<project>`.
    #[arg(long, value_name = "ORG")]
    pub github_org: Option<String>,
}

/// One measured phase.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Phase {
    pub what: String,
    pub ok: u64,
    /// Non-success answers and transport errors, by HTTP status or "transport".
    pub errors: BTreeMap<String, u64>,
    pub elapsed_s: f64,
    pub per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub connections: usize,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct Report {
    pub mode: Mode,
    pub log_size_before: u64,
    pub log_size_after: u64,
    pub main: Phase,
    /// The appends posted meanwhile (`--append-rate`).
    pub background: Option<Phase>,
    /// The mean body of the measured requests, in bytes (the GitHub modes; a delivery's
    /// signature covers all of it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_bytes_mean: Option<u64>,
}

impl Phase {
    fn line(&self) -> String {
        let errors: u64 = self.errors.values().sum();
        let mut line = format!(
            "{}: {} ok in {:.2} s = {:.0}/s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} connections, {} errors",
            self.what, self.ok, self.elapsed_s, self.per_s, self.p50_ms, self.p99_ms, self.max_ms, self.connections, errors
        );
        if errors > 0 {
            line.push_str(&format!(": {:?}", self.errors));
        }
        line.push(')');
        line
    }
}

/// Latencies and errors of one worker.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    errors: BTreeMap<String, u64>,
}

impl Tally {
    fn merge(tallies: Vec<Tally>, what: &str, elapsed: Duration, connections: usize) -> Phase {
        let mut latencies: Vec<u32> = Vec::new();
        let mut errors = BTreeMap::new();
        for t in tallies {
            latencies.extend(t.latencies_us);
            for (k, v) in t.errors {
                *errors.entry(k).or_insert(0) += v;
            }
        }
        latencies.sort_unstable();
        let pct = |p: f64| -> f64 {
            if latencies.is_empty() {
                return 0.0;
            }
            let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
            f64::from(latencies[i]) / 1000.0
        };
        let elapsed_s = elapsed.as_secs_f64();
        let ok = latencies.len() as u64;
        Phase {
            what: what.to_string(),
            ok,
            errors,
            elapsed_s,
            per_s: if elapsed_s > 0.0 { ok as f64 / elapsed_s } else { 0.0 },
            p50_ms: pct(0.50),
            p99_ms: pct(0.99),
            max_ms: latencies.last().map_or(0.0, |&v| f64::from(v) / 1000.0),
            connections,
        }
    }

    fn error(&mut self, what: impl Into<String>) {
        *self.errors.entry(what.into()).or_insert(0) += 1;
    }

    /// One request; its latency counts only if the answer is the `expected` one.
    async fn timed(&mut self, conn: &mut Conn, method: &str, path: &str, req: Req<'_>, expected: Expect) {
        let t0 = Instant::now();
        match conn.request(method, path, req).await {
            Ok(status) if expected.met(status, conn.body()) => self.latencies_us.push(elapsed_us(t0)),
            Ok(status) if status == expected.status => self.error(format!("{status} without {:?}", expected.holds)),
            Ok(status) => self.error(status.to_string()),
            Err(e) => self.error(format!("transport: {}", e.0)),
        }
    }
}

/// The answer that counts: a status and, for the GitHub modes, a piece of the JSON body (the
/// server answers a webhook in several ways with the same status).
#[derive(Debug, Clone, Copy)]
struct Expect {
    status: u16,
    holds: Option<&'static str>,
}

impl Expect {
    const fn status(status: u16) -> Expect {
        Expect { status, holds: None }
    }

    fn met(&self, status: u16, body: &[u8]) -> bool {
        status == self.status
            && self.holds.map_or(true, |needle| body.windows(needle.len()).any(|w| w == needle.as_bytes()))
    }
}

/// The extra header lines (each ending in CRLF) and the body of one request.
#[derive(Debug, Clone, Copy, Default)]
struct Req<'a> {
    headers: &'a str,
    body: Option<&'a [u8]>,
}

/// A prepared POST: header lines (CRLF-terminated, possibly none) and its body, both built
/// and signed before the clock starts.
#[derive(Debug, Clone)]
struct Post {
    headers: String,
    body: Vec<u8>,
}

impl Post {
    fn req(&self) -> Req<'_> {
        Req { headers: &self.headers, body: Some(&self.body) }
    }
}

/// The mean body length of `posts`, in bytes.
fn mean_body_bytes(posts: &[Post]) -> Option<u64> {
    let total: usize = posts.iter().map(|p| p.body.len()).sum();
    u64::try_from(total.checked_div(posts.len())?).ok()
}

/// The names a run's setup creates; fresh per run (`lg<8 hex>`), so runs can repeat on one log.
#[derive(Debug, Clone)]
pub(super) struct Cast {
    pub tag: String,
    pub resource: String,
    pub actors: Vec<SigningKey>,
}

impl Cast {
    pub(super) fn new(actors: usize) -> Result<Cast, CliError> {
        let tag = crate::client::random_id("lg").replace('-', "")[..10].to_string();
        let actors = (0..actors)
            .map(|i| SigningKey::generate(&format!("{tag}-a{i}")))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CliError::new(e.to_string()))?;
        Ok(Cast { resource: format!("{tag}-gpu"), tag, actors })
    }

    pub(super) fn project(&self, actor: usize) -> String {
        format!("{}-p{actor}-feedstock", self.tag)
    }

    /// (signer index: None = admin, id, kind, data) of the setup, in order.
    fn setup_statements(&self) -> Vec<(Option<usize>, String, &'static str, Value)> {
        let mut out = Vec::with_capacity(2 * self.actors.len() + 1);
        for key in &self.actors {
            out.push((
                None,
                format!("{}-register", key.name()),
                "actor.registered",
                json!({"actor": key.name(), "key": key.verifier().to_string(), "roles": ["meter", "requester"]}),
            ));
        }
        out.push((
            None,
            format!("{}-define", self.resource),
            "resource.defined",
            json!({"resource": self.resource, "provider": "loadgen", "unit": RESOURCE_UNIT, "approvals_required": 1}),
        ));
        for i in 0..self.actors.len() {
            out.push((
                None,
                format!("{}-grant-p{i}", self.tag),
                "grant.issued",
                json!({"grant": format!("{}-p{i}", self.tag), "project": self.project(i), "resource": self.resource,
                    "pull_request": false}),
            ));
        }
        out
    }

    /// The `n`th event: a usage report by actor `n % M` on its own grant, for a job that ran
    /// at `job_at_ms`: a time the ledger's clock has reached and the grants had begun by, so
    /// the report is inside its grant's life (`usage_outside_grant` otherwise).
    fn event(&self, n: u64, job_at_ms: i64) -> (usize, String, &'static str, Value) {
        let actor = (n % self.actors.len() as u64) as usize;
        let at = format_rfc3339_ms(job_at_ms);
        let usage = format!("{}-u{n}", self.tag);
        (
            actor,
            usage.clone(),
            "usage.reported",
            json!({"usage": usage, "project": self.project(actor), "resource": self.resource, "amount": 1,
                "started_at": at, "ended_at": at}),
        )
    }
}

/// The organisation's numeric id in the payloads (metering reads only its login).
const ORG_ID: u64 = 4_682_677;
/// The account that pushes and runs the jobs, in the payloads.
const SENDER_LOGIN: &str = "loadgen-dev";
const SENDER_ID: u64 = 1_000_001;
/// Job and run ids start here (GitHub's are about this large); the repository ids, derived
/// from the run's random number, make each run's jobs new.
const JOB_ID_BASE: u64 = 30_000_000_000;
const RUN_ID_BASE: u64 = 11_000_000_000;
/// The `…_url` fields of GitHub's repository object, after `https://api.github.com/repos/ORG/NAME`.
const REPOSITORY_URLS: &[(&str, &str)] = &[
    ("forks_url", "/forks"),
    ("keys_url", "/keys{/key_id}"),
    ("collaborators_url", "/collaborators{/collaborator}"),
    ("teams_url", "/teams"),
    ("hooks_url", "/hooks"),
    ("issue_events_url", "/issues/events{/number}"),
    ("events_url", "/events"),
    ("assignees_url", "/assignees{/user}"),
    ("branches_url", "/branches{/branch}"),
    ("tags_url", "/tags"),
    ("blobs_url", "/git/blobs{/sha}"),
    ("git_tags_url", "/git/tags{/sha}"),
    ("git_refs_url", "/git/refs{/sha}"),
    ("trees_url", "/git/trees{/sha}"),
    ("statuses_url", "/statuses/{sha}"),
    ("languages_url", "/languages"),
    ("stargazers_url", "/stargazers"),
    ("contributors_url", "/contributors"),
    ("subscribers_url", "/subscribers"),
    ("subscription_url", "/subscription"),
    ("commits_url", "/commits{/sha}"),
    ("git_commits_url", "/git/commits{/sha}"),
    ("comments_url", "/comments{/number}"),
    ("issue_comment_url", "/issues/comments{/number}"),
    ("contents_url", "/contents/{+path}"),
    ("compare_url", "/compare/{base}...{head}"),
    ("merges_url", "/merges"),
    ("archive_url", "/{archive_format}{/ref}"),
    ("downloads_url", "/downloads"),
    ("issues_url", "/issues{/number}"),
    ("pulls_url", "/pulls{/number}"),
    ("milestones_url", "/milestones{/number}"),
    ("notifications_url", "/notifications{?since,all,participating}"),
    ("labels_url", "/labels{/name}"),
    ("releases_url", "/releases{/id}"),
    ("deployments_url", "/deployments"),
];

/// The GitHub side of a run: the organisation the server serves, its webhook secret (the
/// webhook modes), and a random number that makes the run's delivery ids, repository ids and
/// commits new, so runs can repeat on one log.
struct GitHubSide {
    org: String,
    secret: Vec<u8>,
    run: u64,
}

/// The webhook secret as the server reads it: a 0600 file, trailing newlines not part of it.
fn read_webhook_secret(path: &std::path::Path) -> Result<Vec<u8>, CliError> {
    let mut secret =
        ledger::keys::read_secret_file(path).map_err(|e| CliError::new(format!("--github-secret: {e}")))?;
    while secret.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        secret.pop();
    }
    if secret.is_empty() {
        return Err(CliError::new(format!("--github-secret: {} is empty", path.display())));
    }
    Ok(secret)
}

/// splitmix64: a well-mixed 64-bit value of `x` (commit shas, the run's number).
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// All objects' fields in one object (`json!` keeps its objects small).
fn merged(parts: Vec<Value>) -> Value {
    let mut out = serde_json::Map::new();
    for part in parts {
        if let Value::Object(fields) = part {
            out.extend(fields);
        }
    }
    Value::Object(out)
}

/// GitHub's account object (an owner, a sender), with its URL fields.
fn account(login: &str, id: u64, kind: &str) -> Value {
    let api = format!("https://api.github.com/users/{login}");
    merged(vec![
        json!({"login": login, "id": id, "node_id": format!("MDQ6VXNlcj{id}"),
            "avatar_url": format!("https://avatars.githubusercontent.com/u/{id}?v=4"), "gravatar_id": "",
            "url": api, "html_url": format!("https://github.com/{login}")}),
        json!({"followers_url": format!("{api}/followers"), "following_url": format!("{api}/following{{/other_user}}"),
            "gists_url": format!("{api}/gists{{/gist_id}}"), "starred_url": format!("{api}/starred{{/owner}}{{/repo}}"),
            "subscriptions_url": format!("{api}/subscriptions"), "organizations_url": format!("{api}/orgs"),
            "repos_url": format!("{api}/repos"), "events_url": format!("{api}/events{{/privacy}}"),
            "received_events_url": format!("{api}/received_events"), "type": kind, "user_view_type": "public",
            "site_admin": false}),
    ])
}

impl GitHubSide {
    /// For the GitHub modes: `--github-org`, and `--github-secret` for the webhook modes.
    fn from_args(args: &LoadgenArgs) -> Result<Option<GitHubSide>, CliError> {
        let webhook = matches!(args.mode, Mode::WebhookIgnored | Mode::WebhookMetered | Mode::WebhookDuplicate);
        if !webhook && args.mode != Mode::Gate {
            return Ok(None);
        }
        let org = args.github_org.clone().ok_or_else(|| {
            CliError::new(
                "this mode needs --github-org ORG: the organisation the server runs with (serve --github-org)",
            )
        })?;
        let secret = match &args.github_secret {
            Some(path) => read_webhook_secret(path)?,
            None if webhook => return Err(CliError::new("the webhook modes need --github-secret FILE (the server's)")),
            None => Vec::new(),
        };
        let random = crate::client::random_id("gh");
        let run =
            u64::from_str_radix(random.trim_start_matches("gh-"), 16).unwrap_or_else(|_| mix(crate::now_ms() as u64));
        Ok(Some(GitHubSide { org, secret, run }))
    }

    /// A commit sha (40 hex digits), distinct for each `n` and each run.
    fn sha(&self, n: u64) -> String {
        let (a, b) = (mix(self.run ^ n), mix(self.run.rotate_left(17) ^ n));
        format!("{a:016x}{b:016x}{:08x}", mix(a ^ b) >> 32)
    }

    /// The run's repository id of the project of actor `i` (actors are at most 1024).
    fn repository_id(&self, i: usize) -> u64 {
        (self.run % 1_000_000_000) * 1024 + i as u64
    }

    /// A GUID-shaped `X-GitHub-Delivery` id, distinct for each (kind, n) and each run.
    fn delivery_id(&self, kind: u16, n: u64) -> String {
        let r = self.run;
        format!(
            "{:08x}-{:04x}-{:04x}-{kind:04x}-{:012x}",
            r >> 32,
            (r >> 16) & 0xffff,
            r & 0xffff,
            n & 0xffff_ffff_ffff
        )
    }

    /// A signed delivery: GitHub's headers and the body.
    fn delivery(&self, event: &str, id: &str, body: Vec<u8>) -> Post {
        let signature = crate::github::signature::sign(&self.secret, &body);
        let headers = format!(
            "User-Agent: GitHub-Hookshot/loadgen\r\nX-GitHub-Event: {event}\r\nX-GitHub-Delivery: {id}\r\n\
             X-GitHub-Hook-ID: 1\r\nX-Hub-Signature-256: {signature}\r\n"
        );
        Post { headers, body }
    }

    fn organization(&self) -> Value {
        let org = &self.org;
        let api = format!("https://api.github.com/orgs/{org}");
        json!({"login": org, "id": ORG_ID, "node_id": format!("MDEyOk9yZ2FuaXphdGlvbj{ORG_ID}"), "url": api,
            "repos_url": format!("{api}/repos"), "events_url": format!("{api}/events"), "hooks_url": format!("{api}/hooks"),
            "issues_url": format!("{api}/issues"), "members_url": format!("{api}/members{{/member}}"),
            "public_members_url": format!("{api}/public_members{{/member}}"),
            "avatar_url": format!("https://avatars.githubusercontent.com/u/{ORG_ID}?v=4"),
            "description": "A community-led collection of recipes, build infrastructure and distributions"})
    }

    /// GitHub's repository object of `ORG/name`, with its URL fields.
    fn repository(&self, name: &str, id: u64) -> Value {
        let org = &self.org;
        let api = format!("https://api.github.com/repos/{org}/{name}");
        let urls: serde_json::Map<String, Value> = REPOSITORY_URLS
            .iter()
            .map(|(field, suffix)| (field.to_string(), Value::from(format!("{api}{suffix}"))))
            .collect();
        merged(vec![
            json!({"id": id, "node_id": format!("R_kgDO{id}"), "name": name, "full_name": format!("{org}/{name}"),
                "private": false, "owner": account(org, ORG_ID, "Organization"),
                "html_url": format!("https://github.com/{org}/{name}"),
                "description": "A conda-smithy repository for a conda-forge package.", "fork": false, "url": api}),
            Value::Object(urls),
            json!({"created_at": "2016-03-14T18:30:05Z", "updated_at": "2025-11-02T09:12:44Z",
                "pushed_at": "2025-11-28T17:01:09Z", "git_url": format!("git://github.com/{org}/{name}.git"),
                "ssh_url": format!("git@github.com:{org}/{name}.git"), "clone_url": format!("https://github.com/{org}/{name}.git"),
                "svn_url": format!("https://github.com/{org}/{name}"), "homepage": null, "size": 1234,
                "stargazers_count": 12, "watchers_count": 12, "language": "Shell", "has_issues": true}),
            json!({"has_projects": true, "has_downloads": true, "has_wiki": false, "has_pages": false,
                "has_discussions": false, "forks_count": 31, "mirror_url": null, "archived": false, "disabled": false,
                "open_issues_count": 4, "license": {"key": "bsd-3-clause", "name": "BSD 3-Clause \"New\" or \"Revised\" License",
                "spdx_id": "BSD-3-Clause", "url": "https://api.github.com/licenses/bsd-3-clause", "node_id": "MDc6TGljZW5zZTU="},
                "allow_forking": true, "is_template": false, "web_commit_signoff_required": false, "topics": [],
                "visibility": "public", "forks": 31, "open_issues": 4, "watchers": 12, "default_branch": "main",
                "custom_properties": {}}),
        ])
    }

    /// The `n`th `push` delivery's body: one re-rendering commit to the main branch.
    fn push_payload(&self, n: u64) -> Value {
        let (org, name) = (&self.org, "loadgen-feedstock");
        let (before, after) = (self.sha(2 * n), self.sha(2 * n + 1));
        let person = json!({"name": "Loadgen Dev", "email": format!("{SENDER_ID}+{SENDER_LOGIN}@users.noreply.github.com"),
            "username": SENDER_LOGIN});
        let commit = json!({"id": after, "tree_id": self.sha(u64::MAX - n), "distinct": true,
            "message": "MNT: Re-rendered with conda-build 25.1.2, conda-smithy 3.45.1, and conda-forge-pinning 2025.11.28",
            "timestamp": "2025-11-28T17:01:09Z", "url": format!("https://github.com/{org}/{name}/commit/{after}"),
            "author": person, "committer": person, "added": [], "removed": [],
            "modified": [".azure-pipelines/azure-pipelines-linux.yml", ".ci_support/linux_64_.yaml", "README.md"]});
        json!({"ref": "refs/heads/main", "before": before, "after": after,
            "repository": self.repository(name, self.repository_id(LOADGEN_ACTORS_MAX - 1)),
            "pusher": {"name": SENDER_LOGIN, "email": person["email"]}, "organization": self.organization(),
            "sender": account(SENDER_LOGIN, SENDER_ID, "User"), "created": false, "deleted": false, "forced": false,
            "base_ref": null, "compare": format!("https://github.com/{org}/{name}/compare/{}...{}", &before[..12], &after[..12]),
            "commits": [commit], "head_commit": commit})
    }

    /// `count` signed `push` deliveries, each with its own delivery id (built on all cores).
    fn pushes(&self, count: u64) -> Vec<Post> {
        (0..count)
            .into_par_iter()
            .map(|n| {
                let body = serde_json::to_vec(&self.push_payload(n)).unwrap_or_default();
                self.delivery("push", &self.delivery_id(1, n), body)
            })
            .collect()
    }

    /// The `n`th completed `workflow_job` delivery's body: job n of the project of actor
    /// `n % M`, on the setup's resource, started at `job_at_ms` (rounded up to GitHub's whole
    /// seconds, so after the grants began) and run for [`JOB_DURATION_MS`].
    fn finished_job_payload(&self, cast: &Cast, n: u64, job_at_ms: i64) -> Value {
        let actor = (n % cast.actors.len() as u64) as usize;
        let (org, project) = (&self.org, cast.project(actor));
        let (job_id, run_id) = (JOB_ID_BASE + n, RUN_ID_BASE + n);
        let started_ms = (job_at_ms + 999) / 1000 * 1000;
        let at = |offset_ms: i64| format_rfc3339_ms(started_ms + offset_ms);
        let step = |number: u64, name: &str, from_ms: i64, to_ms: i64| {
            json!({"name": name, "status": "completed", "conclusion": "success", "number": number,
                "started_at": at(from_ms), "completed_at": at(to_ms)})
        };
        let api = format!("https://api.github.com/repos/{org}/{project}/actions");
        let job = merged(vec![
            json!({"id": job_id, "run_id": run_id, "workflow_name": "Build conda package", "head_branch": "main",
                "run_url": format!("{api}/runs/{run_id}"), "run_attempt": 1, "node_id": format!("CR_kwDO{job_id}"),
                "head_sha": self.sha(n), "url": format!("{api}/jobs/{job_id}"),
                "html_url": format!("https://github.com/{org}/{project}/actions/runs/{run_id}/job/{job_id}"),
                "status": "completed", "conclusion": "success"}),
            json!({"created_at": at(-5_000), "started_at": at(0), "completed_at": at(JOB_DURATION_MS),
                "name": "linux_64_", "steps": [
                    step(1, "Set up job", 0, 2_000),
                    step(2, "Run actions/checkout@v4", 2_000, 4_000),
                    step(3, "Build on Linux", 4_000, JOB_DURATION_MS - 2_000),
                    step(4, "Complete job", JOB_DURATION_MS - 2_000, JOB_DURATION_MS)],
                "check_run_url": format!("https://api.github.com/repos/{org}/{project}/check-runs/{job_id}"),
                "labels": [format!("{}--{run_id}-linux_64", cast.resource)], "runner_id": 100_000 + n,
                "runner_name": format!("cirun-{}--{run_id}-linux_64-{n}", cast.resource), "runner_group_id": 1,
                "runner_group_name": "Default"}),
        ]);
        json!({"action": "completed", "workflow_job": job,
            "repository": self.repository(&project, self.repository_id(actor)),
            "organization": self.organization(), "sender": account(SENDER_LOGIN, SENDER_ID, "User")})
    }

    /// `count` signed completed `workflow_job` deliveries (built on all cores).
    fn finished_jobs(&self, cast: &Cast, count: u64, job_at_ms: i64) -> Vec<Post> {
        (0..count)
            .into_par_iter()
            .map(|n| {
                let body = serde_json::to_vec(&self.finished_job_payload(cast, n, job_at_ms)).unwrap_or_default();
                self.delivery("workflow_job", &self.delivery_id(2, n), body)
            })
            .collect()
    }

    /// One job gate question per project of the setup: a pushed job on its resource, by a
    /// user (the setup's grants name no users, so any user passes).
    fn gate_questions(&self, cast: &Cast) -> Vec<Post> {
        (0..cast.actors.len())
            .map(|i| {
                let repository = format!("{}/{}", self.org, cast.project(i));
                let user = json!({"login": format!("{}-dev{i}", cast.tag), "id": 2_000_000 + i as u64, "type": "User"});
                let question = json!({"repository": repository, "labels": [format!("{}--{}-linux_64", cast.resource, RUN_ID_BASE + i as u64)],
                    "event": "push", "head_repository": repository, "head_sha": self.sha(i as u64),
                    "actor": user, "triggering_actor": user});
                Post { headers: String::new(), body: serde_json::to_vec(&question).unwrap_or_default() }
            })
            .collect()
    }
}

fn statement(origin: &str, actor: &str, id: String, kind: &str, data: Value) -> Statement {
    Statement {
        ledger: origin.to_string(),
        id,
        actor: actor.to_string(),
        issued_at: format_rfc3339_ms(crate::now_ms()),
        kind: kind.to_string(),
        data,
    }
}

/// Signs events `from..from + count` in parallel: (statement, canonical envelope, signer keyid).
fn presign(cast: &Cast, origin: &str, from: u64, count: u64, job_at_ms: i64) -> Vec<(Statement, Vec<u8>, Signer)> {
    (from..from + count)
        .into_par_iter()
        .map(|n| {
            let (actor, id, kind, data) = cast.event(n, job_at_ms);
            let key = &cast.actors[actor];
            let st = statement(origin, key.name(), id, kind, data);
            let env = Envelope::sign(st.to_payload(), &[key]).canonical_json();
            (st, env, (key.keyid(), key.verifier()))
        })
        .collect()
}

pub(super) fn run(args: LoadgenArgs) -> CliResult {
    if args.connections == 0 || args.connections > LOADGEN_CONNECTIONS_MAX {
        return Err(CliError::new(format!("--connections must be 1 to {LOADGEN_CONNECTIONS_MAX}")));
    }
    if args.events == 0 || args.events > LOADGEN_EVENTS_MAX {
        return Err(CliError::new(format!("--events must be 1 to {LOADGEN_EVENTS_MAX}")));
    }
    if args.actors == 0 || args.actors > LOADGEN_ACTORS_MAX {
        return Err(CliError::new(format!("--actors must be 1 to {LOADGEN_ACTORS_MAX}")));
    }
    if args.duration_s == 0 || args.duration_s > LOADGEN_DURATION_S_MAX {
        return Err(CliError::new(format!("--duration-s must be 1 to {LOADGEN_DURATION_S_MAX}")));
    }
    if args.append_rate > LOADGEN_APPEND_RATE_MAX {
        return Err(CliError::new(format!("--append-rate must be at most {LOADGEN_APPEND_RATE_MAX}")));
    }
    if matches!(args.mode, Mode::WebhookIgnored | Mode::WebhookMetered) && args.events > LOADGEN_DELIVERIES_MAX {
        return Err(CliError::new(format!(
            "--events must be at most {LOADGEN_DELIVERIES_MAX} for the webhook modes (each delivery is held in memory)"
        )));
    }
    if args.mode == Mode::Fill {
        return fill(&args);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.clamp(1, 64))
        .enable_all()
        .build()
        .map_err(|e| CliError::new(format!("cannot start the runtime: {e}")))?;
    let report = runtime.block_on(drive(&args))?;
    if args.json {
        println!("{}", serde_json::to_string(&report).map_err(|e| CliError::new(e.to_string()))?);
    } else {
        println!("{}", report.main.line());
        if let Some(bg) = &report.background {
            println!("{}", bg.line());
        }
    }
    Ok(())
}

struct Http {
    base: String,
    client: reqwest::Client,
}

impl Http {
    fn new(server: &str, connections: usize) -> Result<Http, CliError> {
        let base = server.trim_end_matches('/').to_string();
        if !base.starts_with("http://") {
            return Err(CliError::new(format!("--server {server:?} must be an http:// URL")));
        }
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(connections + LOADGEN_BACKGROUND_CONNECTIONS)
            .tcp_nodelay(true)
            .timeout(Duration::from_millis(LOADGEN_REQUEST_TIMEOUT_MS))
            .build()
            .map_err(|e| CliError::new(e.to_string()))?;
        Ok(Http { base, client })
    }

    /// GET a JSON document from the server (setup only; measured requests use [`Conn`]).
    async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, CliError> {
        let resp = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .map_err(|e| CliError::new(format!("cannot reach {}: {e}", self.base)))?;
        resp.json().await.map_err(|e| CliError::new(format!("{path}: {e}")))
    }

    async fn log(&self) -> Result<LogInfo, CliError> {
        self.get_json("/v1/log").await
    }

    /// The `received_at_ms` of the record with statement id `id`.
    async fn received_at_ms(&self, id: &str) -> Result<i64, CliError> {
        let path = format!("/v1/events/by-id/{}", crate::client::encode_path_segment(id));
        let record: Value = self.get_json(&path).await?;
        record["received_at_ms"].as_i64().ok_or_else(|| CliError::new(format!("{path}: no received_at_ms")))
    }

    async fn post(&self, body: Vec<u8>) -> Result<u16, reqwest::Error> {
        let resp = self
            .client
            .post(format!("{}/v1/events", self.base))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await?;
        let status = resp.status().as_u16();
        resp.bytes().await?;
        Ok(status)
    }
}

/// One kept-alive HTTP/1.1 connection for the measured requests. A minimal client (one request
/// at a time, `Content-Length` framing, which is what the server sends) costs the load
/// generator a fraction of a general client's CPU, and the load generator shares the cores
/// with the server it measures.
struct Conn {
    addr: String,
    host: String,
    stream: Option<tokio::net::TcpStream>,
    buf: Vec<u8>,
    /// Where the last response's body is in `buf`.
    body: std::ops::Range<usize>,
}

#[derive(Debug)]
struct ConnError(String);

impl Conn {
    fn new(base: &str) -> Conn {
        let hostport = base.trim_start_matches("http://").split('/').next().unwrap_or("").to_string();
        Conn { addr: hostport.clone(), host: hostport, stream: None, buf: Vec::with_capacity(8192), body: 0..0 }
    }

    /// The body of the last response (empty after an error).
    fn body(&self) -> &[u8] {
        self.buf.get(self.body.clone()).unwrap_or_default()
    }

    /// Sends one request (with `req`'s extra header lines and body) and reads the whole
    /// response; returns the status, and [`Conn::body`] gives the body. Reconnects when the
    /// server closed the connection.
    async fn request(&mut self, method: &str, path: &str, req: Req<'_>) -> Result<u16, ConnError> {
        let body = req.body;
        self.body = 0..0;
        use tokio::io::AsyncWriteExt;
        if self.stream.is_none() {
            let stream = tokio::net::TcpStream::connect(&self.addr).await.map_err(|e| ConnError(e.to_string()))?;
            stream.set_nodelay(true).map_err(|e| ConnError(e.to_string()))?;
            self.stream = Some(stream);
        }
        let Some(stream) = self.stream.as_mut() else { return Err(ConnError("not connected".into())) };
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n{}", self.host, req.headers);
        if let Some(body) = body {
            head.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        if let Some(body) = body {
            out.extend_from_slice(body);
        }
        let result = async {
            stream.write_all(&out).await.map_err(|e| ConnError(e.to_string()))?;
            self.buf.clear();
            let head_end = loop {
                if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
                if self.buf.len() > LOADGEN_RESPONSE_HEAD_BYTES_MAX {
                    return Err(ConnError("response head too large".into()));
                }
                read_more(stream, &mut self.buf).await?;
            };
            let head = std::str::from_utf8(&self.buf[..head_end]).map_err(|_| ConnError("bad head".into()))?;
            let status = head
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse::<u16>().ok())
                .ok_or_else(|| ConnError("bad status line".into()))?;
            let mut length = None;
            let mut close = false;
            for line in head.split("\r\n").skip(1) {
                let Some((name, value)) = line.split_once(':') else { continue };
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.parse::<usize>().ok();
                } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
                    close = true;
                }
            }
            let length = length.ok_or_else(|| ConnError("response without Content-Length".into()))?;
            if length > LOADGEN_RESPONSE_BODY_BYTES_MAX {
                return Err(ConnError("response body too large".into()));
            }
            while self.buf.len() < head_end + length {
                read_more(stream, &mut self.buf).await?;
            }
            Ok((status, close, head_end..head_end + length))
        }
        .await;
        match result {
            Ok((status, close, body)) => {
                if close {
                    self.stream = None;
                }
                self.body = body;
                Ok(status)
            }
            Err(e) => {
                self.stream = None;
                Err(e)
            }
        }
    }
}

async fn read_more(stream: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> Result<(), ConnError> {
    use tokio::io::AsyncReadExt;
    let mut chunk = [0u8; 8192];
    let n = stream.read(&mut chunk).await.map_err(|e| ConnError(e.to_string()))?;
    if n == 0 {
        return Err(ConnError("connection closed".into()));
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

/// Posts the setup; returns the server clock of its last record (`received_at_ms`), when every
/// grant had begun: the time of the jobs the usage reports describe. The server's clock, not
/// this machine's, so the reports hold whatever the drift between them.
async fn setup(http: &Http, origin: &str, admin: &SigningKey, cast: &Cast) -> Result<i64, CliError> {
    let mut last_id = None;
    for (_, id, kind, data) in cast.setup_statements() {
        let st = statement(origin, admin.name(), id.clone(), kind, data);
        let env = Envelope::sign(st.to_payload(), &[admin]).canonical_json();
        let status = http.post(env).await.map_err(|e| CliError::new(format!("setup {id}: {e}")))?;
        if status != 201 && status != 200 {
            return Err(CliError::new(format!(
                "setup {kind} {id} was refused with HTTP {status} (is --admin-key the admin's?)"
            )));
        }
        last_id = Some(id);
    }
    let id = last_id.ok_or_else(|| CliError::new("the setup is empty"))?;
    http.received_at_ms(&id).await
}

fn read_admin(args: &LoadgenArgs) -> Result<Option<SigningKey>, CliError> {
    args.admin_key.as_deref().map(|p| SigningKey::read_file(p).map_err(CliError::from)).transpose()
}

/// What a run measures, prepared before the clock starts.
enum Plan {
    /// Post each body once, over `--connections`, as fast as the server answers.
    Posts { posts: Vec<Post>, target: Target },
    /// Read (or ask the gate) for `--duration-s`.
    Reads(Reads),
}

async fn drive(args: &LoadgenArgs) -> Result<Report, CliError> {
    let http = Arc::new(Http::new(&args.server.server, args.connections)?);
    let log = http.log().await?;
    let admin = read_admin(args)?;
    let github = GitHubSide::from_args(args)?;
    let needs_setup = args.append_rate > 0
        || matches!(
            args.mode,
            Mode::Appends | Mode::AccessCheck | Mode::Allocations | Mode::WebhookMetered | Mode::Gate
        );
    let cast = match (&admin, needs_setup) {
        (Some(admin), true) => {
            let cast = Cast::new(args.actors)?;
            let job_at_ms = setup(&http, &log.origin, admin, &cast).await?;
            Some((cast, job_at_ms))
        }
        (None, true) => {
            return Err(CliError::new("this mode needs --admin-key FILE (the setup is signed by an admin)"))
        }
        (_, false) => None,
    };
    let plan = match (args.mode, &cast, &github) {
        (Mode::Appends, Some((cast, job_at_ms)), _) => {
            let posts = presign(cast, &log.origin, 0, args.events, *job_at_ms)
                .into_iter()
                .map(|(_, body, _)| Post { headers: String::new(), body })
                .collect();
            Plan::Posts { posts, target: Target::APPENDS }
        }
        (Mode::WebhookIgnored, _, Some(gh)) => {
            let mut posts = gh.pushes(args.events + 1);
            let target = Target { path: WEBHOOK_PATH, expect: IGNORED, what: "webhook deliveries (push, ignored)" };
            probe(&http, target.path, posts.pop(), target.expect).await?;
            Plan::Posts { posts, target }
        }
        (Mode::WebhookMetered, Some((cast, job_at_ms)), Some(gh)) => {
            let mut posts = gh.finished_jobs(cast, args.events + 1, *job_at_ms);
            let target = Target { path: WEBHOOK_PATH, expect: METERED, what: "webhook deliveries (workflow_job, metered)" };
            probe(&http, target.path, posts.pop(), target.expect).await?;
            Plan::Posts { posts, target }
        }
        (Mode::WebhookDuplicate, _, Some(gh)) => {
            let posts = gh.pushes(args.connections as u64);
            for post in &posts {
                probe(&http, WEBHOOK_PATH, Some(post.clone()), IGNORED).await?;
            }
            Plan::Reads(Reads::Posts { path: WEBHOOK_PATH, posts: Arc::new(posts), expect: DUPLICATE })
        }
        (Mode::Gate, Some((cast, _)), Some(gh)) => {
            let posts = gh.gate_questions(cast);
            probe(&http, GATE_PATH, posts.first().cloned(), ALLOWED).await?;
            Plan::Reads(Reads::Posts { path: GATE_PATH, posts: Arc::new(posts), expect: ALLOWED })
        }
        (
            Mode::AccessCheck | Mode::Allocations | Mode::Inclusion | Mode::Consistency | Mode::Tiles | Mode::Entries,
            _,
            _,
        ) => Plan::Reads(Reads::Gets),
        (Mode::WebhookIgnored | Mode::WebhookMetered | Mode::WebhookDuplicate | Mode::Gate, _, None) => {
            return Err(CliError::new(
                "this mode needs --github-org ORG (and --github-secret FILE for the webhook modes): those the server runs with",
            ))
        }
        (Mode::Appends | Mode::WebhookMetered | Mode::Gate | Mode::Fill, _, _) => {
            return Err(CliError::new("no setup for this mode"))
        }
    };
    let size_before = http.log().await?.size;

    let (main, background, body_bytes_mean) = match plan {
        Plan::Posts { posts, target } => {
            let mean = if target.path == WEBHOOK_PATH { mean_body_bytes(&posts) } else { None };
            (post_all(&http, posts, args.connections, None, target).await, None, mean)
        }
        Plan::Reads(reads) => {
            let mean = match &reads {
                Reads::Posts { posts, .. } => mean_body_bytes(posts),
                Reads::Gets => None,
            };
            let bg_bodies = match (&cast, args.append_rate) {
                (Some((cast, job_at_ms)), rate) if rate > 0 => {
                    let n = rate.saturating_mul(args.duration_s);
                    let bodies = presign(cast, &log.origin, 0, n, *job_at_ms);
                    Some(bodies.into_iter().map(|(_, body, _)| Post { headers: String::new(), body }).collect())
                }
                _ => None,
            };
            let bg = bg_bodies.map(|posts: Vec<Post>| {
                let http = http.clone();
                let (rate, target) = (args.append_rate, Target::BACKGROUND_APPENDS);
                tokio::spawn(
                    async move { post_all(&http, posts, LOADGEN_BACKGROUND_CONNECTIONS, Some(rate), target).await },
                )
            });
            let main = read_all(&http, args, cast.as_ref().map(|(c, _)| c), size_before, reads).await;
            let bg = match bg {
                Some(handle) => Some(handle.await.map_err(|e| CliError::new(e.to_string()))?),
                None => None,
            };
            (main, bg, mean)
        }
    };
    let size_after = http.log().await?.size;
    Ok(Report {
        mode: args.mode,
        log_size_before: size_before,
        log_size_after: size_after,
        main,
        background,
        body_bytes_mean,
    })
}

/// Where the posts of a run go, what answer counts, and the phase's name.
#[derive(Debug, Clone, Copy)]
struct Target {
    path: &'static str,
    expect: Expect,
    what: &'static str,
}

impl Target {
    const APPENDS: Target = Target { path: "/v1/events", expect: Expect::status(201), what: "appends" };
    const BACKGROUND_APPENDS: Target = Target { what: "background appends", ..Target::APPENDS };
}

/// A delivery GitHub would see as accepted and not metered.
const IGNORED: Expect = Expect { status: 202, holds: Some("\"outcome\":\"ignored\"") };
/// A job logged as `usage.reported`.
const METERED: Expect = Expect { status: 200, holds: Some("\"outcome\":\"metered\"") };
/// A delivery id seen before.
const DUPLICATE: Expect = Expect { status: 200, holds: Some("\"outcome\":\"duplicate_delivery\"") };
/// The gate lets the job run.
const ALLOWED: Expect = Expect { status: 200, holds: Some("\"allowed\":true") };

/// Sends `post` once (not measured) and stops the run with the server's answer unless it is
/// the `expected` one: a wrong secret, organisation or setup shows before the clock starts.
async fn probe(http: &Http, path: &str, post: Option<Post>, expected: Expect) -> Result<(), CliError> {
    let post = post.ok_or_else(|| CliError::new("nothing to send"))?;
    let mut conn = Conn::new(&http.base);
    let status =
        conn.request("POST", path, post.req()).await.map_err(|e| CliError::new(format!("POST {path}: {}", e.0)))?;
    if expected.met(status, conn.body()) {
        return Ok(());
    }
    let body = String::from_utf8_lossy(conn.body());
    let mut end = body.len().min(LOADGEN_ANSWER_QUOTE_BYTES_MAX);
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    Err(CliError::new(format!(
        "POST {path} was answered HTTP {status} {}, not HTTP {}{} (does the server run with the same --github-org \
         and webhook secret?)",
        &body[..end],
        expected.status,
        expected.holds.map(|h| format!(" with {h}")).unwrap_or_default()
    )))
}

/// Posts every body over `connections` kept-alive connections; with `rate`, body k is sent no
/// earlier than k/rate seconds after the start (open loop: a late one is sent at once).
async fn post_all(http: &Arc<Http>, posts: Vec<Post>, connections: usize, rate: Option<u64>, target: Target) -> Phase {
    let mut shares: Vec<Vec<(usize, Post)>> = (0..connections).map(|_| Vec::new()).collect();
    for (k, post) in posts.into_iter().enumerate() {
        shares[k % connections].push((k, post));
    }
    let started = Instant::now();
    let tasks: Vec<_> = shares
        .into_iter()
        .map(|share| {
            let http = http.clone();
            tokio::spawn(async move {
                let mut tally = Tally { latencies_us: Vec::with_capacity(share.len()), ..Tally::default() };
                let mut conn = Conn::new(&http.base);
                for (k, post) in share {
                    if let Some(rate) = rate {
                        let due = started + Duration::from_secs_f64(k as f64 / rate.max(1) as f64);
                        tokio::time::sleep_until(due.into()).await;
                    }
                    tally.timed(&mut conn, "POST", target.path, post.req(), target.expect).await;
                }
                tally
            })
        })
        .collect();
    let tallies = join_tallies(tasks).await;
    Tally::merge(tallies, target.what, started.elapsed(), connections)
}

fn elapsed_us(t0: Instant) -> u32 {
    u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX)
}

/// The tallies of the tasks that finished (a panicked task's requests are not counted).
async fn join_tallies(tasks: Vec<tokio::task::JoinHandle<Tally>>) -> Vec<Tally> {
    let mut tallies = Vec::with_capacity(tasks.len());
    for t in tasks {
        if let Ok(tally) = t.await {
            tallies.push(tally);
        }
    }
    tallies
}

/// A small per-task PRNG (xorshift64*) for proof indexes: no shared state, no allocation.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}

/// The requests of a read mode.
enum Reads {
    /// GETs whose paths the mode builds per request (proof indexes are random).
    Gets,
    /// POSTs of prepared bodies: connection t sends `posts[t]`, `posts[t + C]`, ... (modulo
    /// their number), so C connections over C posts each repeat their own.
    Posts { path: &'static str, posts: Arc<Vec<Post>>, expect: Expect },
}

async fn read_all(http: &Arc<Http>, args: &LoadgenArgs, cast: Option<&Cast>, size: u64, reads: Reads) -> Phase {
    let deadline = Instant::now() + Duration::from_secs(args.duration_s);
    let (project, resource) = match cast {
        Some(c) => (c.project(0), c.resource.clone()),
        None => ("numpy-feedstock".to_string(), "gpu".to_string()),
    };
    let reads = Arc::new(reads);
    let connections = args.connections;
    // The tile modes read full tiles only (a log of fewer than 256 records has none to read).
    let full_tiles = (size / TILE_WIDTH).max(1);
    let started = Instant::now();
    let tasks: Vec<_> = (0..connections)
        .map(|task| {
            let http = http.clone();
            let (mode, project, resource, reads) = (args.mode, project.clone(), resource.clone(), reads.clone());
            tokio::spawn(async move {
                let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (task as u64 + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9));
                let mut tally = Tally::default();
                let mut conn = Conn::new(&http.base);
                let mut next = task;
                while Instant::now() < deadline {
                    if let Reads::Posts { path, posts, expect } = reads.as_ref() {
                        let Some(post) = posts.get(next % posts.len().max(1)) else { return tally };
                        next = next.wrapping_add(connections);
                        tally.timed(&mut conn, "POST", path, post.req(), *expect).await;
                        continue;
                    }
                    let path = match mode {
                        Mode::AccessCheck => format!("/v1/access/check?project={project}&resource={resource}"),
                        Mode::Allocations => format!("/v1/allocations?project={project}"),
                        Mode::Inclusion => format!("/v1/proofs/inclusion/{}?size={size}", rng.below(size)),
                        Mode::Consistency => format!("/v1/proofs/consistency?from={}&to={size}", 1 + rng.below(size)),
                        Mode::Tiles => format!("/{}", Tile::full(0, rng.below(full_tiles)).path()),
                        Mode::Entries => {
                            let index = rng.below(full_tiles);
                            format!("/{}", Tile { kind: Kind::Entries, index, width: TILE_WIDTH as u16 }.path())
                        }
                        _ => return tally,
                    };
                    tally.timed(&mut conn, "GET", &path, Req::default(), Expect::status(200)).await;
                }
                tally
            })
        })
        .collect();
    let tallies = join_tallies(tasks).await;
    let what = match args.mode {
        Mode::AccessCheck => "access checks",
        Mode::Allocations => "allocations",
        Mode::Inclusion => "inclusion proofs",
        Mode::Consistency => "consistency proofs",
        Mode::Tiles => "hash tiles (full, level 0)",
        Mode::Entries => "entry bundles (full)",
        Mode::WebhookDuplicate => "webhook deliveries (push, duplicate_delivery)",
        Mode::Gate => "job gate decisions (allowed)",
        Mode::Appends | Mode::WebhookIgnored | Mode::WebhookMetered | Mode::Fill => "none",
    };
    Tally::merge(tallies, what, started.elapsed(), connections)
}

/// Appends the setup and `--events` usage reports to a stopped server's data directory,
/// through the store, with the server's checks, in batches of the store's maximum; then saves
/// a projection snapshot (as a server that ran would have).
fn fill(args: &LoadgenArgs) -> CliResult {
    let data = args.data.as_ref().ok_or_else(|| CliError::new("fill needs --data DIR (of a stopped server)"))?;
    let dir = crate::datadir::DataDir::new(data);
    let admin_path = args.admin_key.clone().unwrap_or_else(|| dir.default_admin_key());
    let admin = SigningKey::read_file(&admin_path)?;
    let opened = crate::datadir::open(&dir)?;
    let origin = opened.fold.state().origin().ok_or_else(|| CliError::new("the log has no genesis"))?.to_string();
    let (store, mut fold) = (opened.store, opened.fold);
    let cast = Cast::new(args.actors)?;
    let started = Instant::now();
    let mut last_ms = match store.size().checked_sub(1).map(|s| store.get(s)) {
        Some(Ok(Some(rec))) => rec.received_at_ms,
        _ => 0,
    };
    let admin_signer: Signer = (admin.keyid(), admin.verifier());
    let setup: Vec<(Statement, Vec<u8>, Signer)> = cast
        .setup_statements()
        .into_iter()
        .map(|(_, id, kind, data)| {
            let st = statement(&origin, admin.name(), id, kind, data);
            let env = Envelope::sign(st.to_payload(), &[&admin]).canonical_json();
            (st, env, admin_signer.clone())
        })
        .collect();
    append_admitted(&store, &mut fold, setup, &mut last_ms)?;
    // The grants began at the setup's clock; every later batch's clock is at least that.
    let job_at_ms = last_ms;
    let mut next = 0u64;
    while next < args.events {
        let count = (args.events - next).min(BATCH_ENTRIES_MAX as u64);
        let batch = presign(&cast, &origin, next, count, job_at_ms);
        append_admitted(&store, &mut fold, batch, &mut last_ms)?;
        next += count;
    }
    crate::state_snapshot::save(&store, fold.state(), opened.replay_warnings)
        .map_err(|e| CliError::new(format!("cannot save the projection snapshot: {e}")))?;
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "fill: appended {} events in {elapsed:.1} s ({:.0}/s); the log has {} records",
        args.events,
        args.events as f64 / elapsed.max(1e-9),
        store.size()
    );
    Ok(())
}

/// Admits each statement like the sequencer does, then appends them as one batch.
fn append_admitted(
    store: &ledger::store::Store,
    fold: &mut Fold,
    batch: Vec<(Statement, Vec<u8>, Signer)>,
    last_ms: &mut i64,
) -> CliResult {
    let now = crate::now_ms().max(*last_ms);
    let mut entries = Vec::with_capacity(batch.len());
    for (st, envelope, signer) in batch {
        fold.admit(&st, &[signer], now).map_err(|r| CliError::new(format!("{}: {r}", st.id)))?;
        entries.push(Entry { id: st.id, envelope, received_at_ms: now });
    }
    let outcomes = store.append(&entries).map_err(|e| CliError::new(e.to_string()))?;
    if !outcomes.iter().all(|o| matches!(o, AppendOutcome::Appended(_))) {
        return Err(CliError::new("the store did not append every entry as new"));
    }
    debug_assert_eq!(store.size(), fold.size());
    *last_ms = now;
    Ok(())
}
