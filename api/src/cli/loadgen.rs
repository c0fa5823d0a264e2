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
use rayon::prelude::*;
use serde::Serialize;
use serde_json::{json, Value};

use super::error::{CliError, CliResult};
use super::signer::ServerOpt;
use crate::fold::{Fold, Signer};
use crate::json::LogInfo;
use crate::limits::{
    LOADGEN_ACTORS_MAX, LOADGEN_APPEND_RATE_MAX, LOADGEN_BACKGROUND_CONNECTIONS, LOADGEN_CONNECTIONS_MAX,
    LOADGEN_DURATION_S_MAX, LOADGEN_EVENTS_MAX, LOADGEN_REQUEST_TIMEOUT_MS, LOADGEN_RESPONSE_BODY_BYTES_MAX,
    LOADGEN_RESPONSE_HEAD_BYTES_MAX,
};

/// The unit of the resource the setup defines.
const RESOURCE_UNIT: &str = "runner-minutes";

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
    /// Offline: append events straight through the store of a stopped server's --data.
    #[value(hide = true)]
    Fill,
}

/// Drive a running server over HTTP and report throughput and latency (benchmarks).
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  grantline loadgen appends --admin-key grantline-data/admin.key --events 50000 --connections 64\n  grantline loadgen access-check --admin-key grantline-data/admin.key --duration-s 10 --append-rate 5000\n  grantline loadgen inclusion --duration-s 10 --json\n\nThe setup (actors, a resource, grants) is signed with --admin-key and uses fresh names each run."
)]
pub(crate) struct LoadgenArgs {
    /// What to measure.
    #[arg(value_enum)]
    pub mode: Mode,
    #[command(flatten)]
    pub server: ServerOpt,
    /// The admin's private key: signs the setup (needed by `appends`, `--append-rate` and
    /// `access-check`/`allocations`, which ask about a project with a grant).
    #[arg(long, value_name = "FILE")]
    pub admin_key: Option<PathBuf>,
    /// Envelopes to pre-sign and post (`appends`, `fill`).
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

    /// One request; its latency counts only if the answer has the `expected` status.
    async fn timed(&mut self, conn: &mut Conn, method: &str, path: &str, body: Option<&[u8]>, expected: u16) {
        let t0 = Instant::now();
        match conn.request(method, path, body).await {
            Ok(status) if status == expected => self.latencies_us.push(elapsed_us(t0)),
            Ok(status) => self.error(status.to_string()),
            Err(e) => self.error(format!("transport: {}", e.0)),
        }
    }
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
}

#[derive(Debug)]
struct ConnError(String);

impl Conn {
    fn new(base: &str) -> Conn {
        let hostport = base.trim_start_matches("http://").split('/').next().unwrap_or("").to_string();
        Conn { addr: hostport.clone(), host: hostport, stream: None, buf: Vec::with_capacity(8192) }
    }

    /// Sends one request and reads the whole response; returns the status. Reconnects when
    /// the server closed the connection.
    async fn request(&mut self, method: &str, path: &str, body: Option<&[u8]>) -> Result<u16, ConnError> {
        use tokio::io::AsyncWriteExt;
        if self.stream.is_none() {
            let stream = tokio::net::TcpStream::connect(&self.addr).await.map_err(|e| ConnError(e.to_string()))?;
            stream.set_nodelay(true).map_err(|e| ConnError(e.to_string()))?;
            self.stream = Some(stream);
        }
        let Some(stream) = self.stream.as_mut() else { return Err(ConnError("not connected".into())) };
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.host);
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
            Ok((status, close))
        }
        .await;
        match result {
            Ok((status, close)) => {
                if close {
                    self.stream = None;
                }
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

async fn drive(args: &LoadgenArgs) -> Result<Report, CliError> {
    let http = Arc::new(Http::new(&args.server.server, args.connections)?);
    let log = http.log().await?;
    let admin = read_admin(args)?;
    let needs_setup = args.mode == Mode::Appends
        || args.append_rate > 0
        || matches!(args.mode, Mode::AccessCheck | Mode::Allocations);
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
    let size_before = http.log().await?.size;

    let (main, background) = if args.mode == Mode::Appends {
        let (cast, job_at_ms) = cast.as_ref().ok_or_else(|| CliError::new("no setup"))?;
        let bodies: Vec<Vec<u8>> =
            presign(cast, &log.origin, 0, args.events, *job_at_ms).into_iter().map(|(_, b, _)| b).collect();
        (post_all(&http, bodies, args.connections, None).await, None)
    } else {
        let bg_bodies = match (&cast, args.append_rate) {
            (Some((cast, job_at_ms)), rate) if rate > 0 => {
                let n = rate.saturating_mul(args.duration_s);
                Some(presign(cast, &log.origin, 0, n, *job_at_ms).into_iter().map(|(_, b, _)| b).collect::<Vec<_>>())
            }
            _ => None,
        };
        let bg = bg_bodies.map(|bodies| {
            let http = http.clone();
            let rate = args.append_rate;
            tokio::spawn(async move { post_all(&http, bodies, LOADGEN_BACKGROUND_CONNECTIONS, Some(rate)).await })
        });
        let main = read_all(&http, args, cast.as_ref().map(|(c, _)| c), size_before).await;
        let bg = match bg {
            Some(handle) => Some(handle.await.map_err(|e| CliError::new(e.to_string()))?),
            None => None,
        };
        (main, bg)
    };
    let size_after = http.log().await?.size;
    Ok(Report { mode: args.mode, log_size_before: size_before, log_size_after: size_after, main, background })
}

/// Posts every body over `connections` kept-alive connections; with `rate`, body k is sent no
/// earlier than k/rate seconds after the start (open loop: a late one is sent at once).
async fn post_all(http: &Arc<Http>, bodies: Vec<Vec<u8>>, connections: usize, rate: Option<u64>) -> Phase {
    let mut shares: Vec<Vec<(usize, Vec<u8>)>> = (0..connections).map(|_| Vec::new()).collect();
    for (k, body) in bodies.into_iter().enumerate() {
        shares[k % connections].push((k, body));
    }
    let started = Instant::now();
    let tasks: Vec<_> = shares
        .into_iter()
        .map(|share| {
            let http = http.clone();
            tokio::spawn(async move {
                let mut tally = Tally { latencies_us: Vec::with_capacity(share.len()), ..Tally::default() };
                let mut conn = Conn::new(&http.base);
                for (k, body) in share {
                    if let Some(rate) = rate {
                        let due = started + Duration::from_secs_f64(k as f64 / rate.max(1) as f64);
                        tokio::time::sleep_until(due.into()).await;
                    }
                    tally.timed(&mut conn, "POST", "/v1/events", Some(&body), 201).await;
                }
                tally
            })
        })
        .collect();
    let tallies = join_tallies(tasks).await;
    let what = if rate.is_some() { "background appends" } else { "appends" };
    Tally::merge(tallies, what, started.elapsed(), connections)
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

async fn read_all(http: &Arc<Http>, args: &LoadgenArgs, cast: Option<&Cast>, size: u64) -> Phase {
    let deadline = Instant::now() + Duration::from_secs(args.duration_s);
    let (project, resource) = match cast {
        Some(c) => (c.project(0), c.resource.clone()),
        None => ("numpy-feedstock".to_string(), "gpu".to_string()),
    };
    let started = Instant::now();
    let tasks: Vec<_> = (0..args.connections)
        .map(|task| {
            let http = http.clone();
            let (mode, project, resource) = (args.mode, project.clone(), resource.clone());
            tokio::spawn(async move {
                let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (task as u64 + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9));
                let mut tally = Tally::default();
                let mut conn = Conn::new(&http.base);
                while Instant::now() < deadline {
                    let path = match mode {
                        Mode::AccessCheck => format!("/v1/access/check?project={project}&resource={resource}"),
                        Mode::Allocations => format!("/v1/allocations?project={project}"),
                        Mode::Inclusion => format!("/v1/proofs/inclusion/{}?size={size}", rng.below(size)),
                        Mode::Consistency => format!("/v1/proofs/consistency?from={}&to={size}", 1 + rng.below(size)),
                        Mode::Appends | Mode::Fill => return tally,
                    };
                    tally.timed(&mut conn, "GET", &path, None, 200).await;
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
        Mode::Appends | Mode::Fill => "none",
    };
    Tally::merge(tallies, what, started.elapsed(), args.connections)
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
