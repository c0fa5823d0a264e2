//! The log's witness client (DESIGN.md section 12; C2SP tlog-witness v1.0.0): `serve --witness
//! URL=VKEY … --witness-quorum K`.
//!
//! A task beside the sequencer, never on its path: on a beat of [`WITNESS_ROUND_INTERVAL_MS`],
//! when the published checkpoint has changed, it offers that checkpoint to every witness at
//! once (`POST <URL>/add-checkpoint` with `old` = the size the witness last cosigned and the
//! consistency proof from it). Each request runs in its own task with timeouts, so a witness
//! that is down or hangs holds up neither writes nor the other witnesses; it is backed off
//! exponentially and asked again on a later beat. Every cosignature line is checked with the
//! witness's key before it is kept.
//!
//! Readers (`/checkpoint`, `/v1/checkpoint`) get the newest checkpoint that reached K
//! cosignatures, with every cosignature line it got; until one has, the first checkpoint
//! offered (so the size they see never goes backwards). Receipts keep their own per-batch
//! checkpoint.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use ledger::cosignature::{add_lines, verified_cosigners, CosignerKey};
use ledger::note::SIGNATURE_PREFIX;
use ledger::store::Store;
use ledger::Hash;
use tokio::sync::watch;

use super::identity::Identities;
use super::metrics::WitnessMetric;
use super::snapshot::Snapshot;
use crate::limits::{
    lowered_by_env, WITNESSES_MAX, WITNESS_BACKOFF_MAX_ENV, WITNESS_BACKOFF_MAX_MS, WITNESS_BACKOFF_MIN_MS,
    WITNESS_CHECKPOINTS_PENDING_MAX, WITNESS_CONNECT_TIMEOUT_MS, WITNESS_FAILURE_LOG_INTERVAL_MS,
    WITNESS_REFUSAL_QUOTE_BYTES_MAX, WITNESS_REQUEST_TIMEOUT_MS, WITNESS_RESPONSE_BYTES_MAX, WITNESS_ROUND_INTERVAL_MS,
};
use crate::pages::WitnessFact;

/// The path the spec appends to a witness's submission prefix.
const ADD_CHECKPOINT_PATH: &str = "/add-checkpoint";

/// One witness of `serve --witness URL=VKEY`.
#[derive(Debug, Clone)]
pub(crate) struct WitnessSpec {
    /// The submission prefix, without a trailing `/`.
    pub url: String,
    pub key: CosignerKey,
}

impl WitnessSpec {
    /// Checks the URL (http or https) of a witness whose key is already parsed.
    pub(crate) fn new(url: &str, key: CosignerKey) -> Result<WitnessSpec, String> {
        let parsed =
            reqwest::Url::parse(url).map_err(|e| format!("--witness {url:?}: not a URL ({e}); give URL=VKEY"))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(format!(
                "--witness {url:?}: the URL must be an http or https prefix without query or fragment \
                 (/add-checkpoint is appended to it)"
            ));
        }
        Ok(WitnessSpec { url: url.trim_end_matches('/').to_string(), key })
    }
}

/// `serve --witness … --witness-quorum K`, checked.
#[derive(Debug, Clone)]
pub(crate) struct WitnessConfig {
    pub witnesses: Vec<WitnessSpec>,
    pub quorum: usize,
}

impl WitnessConfig {
    /// `quorum` defaults to every witness listed and must be between 1 and that number; a
    /// witness may be listed once.
    pub(crate) fn new(witnesses: Vec<WitnessSpec>, quorum: Option<usize>) -> Result<WitnessConfig, String> {
        if witnesses.len() > WITNESSES_MAX {
            return Err(format!("at most {WITNESSES_MAX} --witness flags"));
        }
        for (i, w) in witnesses.iter().enumerate() {
            if witnesses[..i].iter().any(|o| o.key.name() == w.key.name()) {
                return Err(format!("--witness: the witness {:?} is listed twice", w.key.name()));
            }
        }
        let quorum = quorum.unwrap_or(witnesses.len());
        if quorum == 0 || quorum > witnesses.len() {
            return Err(format!(
                "--witness-quorum {quorum} must be between 1 and the {} witnesses listed",
                witnesses.len()
            ));
        }
        Ok(WitnessConfig { witnesses, quorum })
    }
}

/// A checkpoint offered to the witnesses: the log-signed note, without cosignatures.
#[derive(Debug, Clone)]
struct Offer {
    note: Arc<str>,
    size: u64,
    root: Hash,
}

/// What readers are given.
struct Served {
    /// The note with the cosignatures it got.
    note: String,
    offer: Offer,
    /// Whether it reached the quorum (the first offer is served before any did).
    cosigned: bool,
}

/// Cosignature lines collected for one offer, by witness index.
struct Collected {
    offer: Offer,
    lines: Vec<(usize, String)>,
}

struct Collecting {
    /// Recent offers, oldest first.
    pending: VecDeque<Collected>,
    /// The forked offer, once the `fork_checkpoint` fault made it.
    forked: Option<Offer>,
}

/// What this log knows of one witness.
#[derive(Default)]
struct WitnessState {
    /// The size the witness last cosigned, as far as this log knows: the `old` it is sent.
    old: u64,
    /// The largest size it cosigned for this log, with the cosignature's time (Unix seconds).
    cosigned: Option<(u64, u64)>,
    /// The offer it cosigned last (it is not asked again for the same one).
    last_note: Option<Arc<str>>,
    /// A request is in flight.
    busy: bool,
    /// The current backoff (0 while the witness answers).
    backoff_ms: u64,
    retry_at: Option<Instant>,
    /// Failures in a row.
    failing: u64,
    logged_at: Option<Instant>,
    /// Failures not logged since the last one that was (rate limit).
    unlogged: u64,
}

struct Witness {
    spec: WitnessSpec,
    endpoint: String,
    state: Mutex<WitnessState>,
    failures: AtomicU64,
}

/// A kept cosignature: its line (ending in `\n`) and time.
struct Cosignature {
    line: String,
    time: u64,
}

/// Why a witness did not cosign an offer.
enum Failure {
    Unreachable(String),
    Timeout,
    Refused {
        status: u16,
        body: String,
    },
    TooLarge,
    NoCosignature {
        body: String,
    },
    /// The witness has cosigned more than this log's checkpoint holds.
    Ahead {
        size: u64,
    },
    Proof(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Unreachable(e) => write!(f, "cannot reach it: {e}"),
            Failure::Timeout => write!(f, "no answer within {WITNESS_REQUEST_TIMEOUT_MS} ms"),
            Failure::Refused { status, body } => write!(f, "it answered {status}: {body:?}"),
            Failure::TooLarge => write!(f, "it answered more than {WITNESS_RESPONSE_BYTES_MAX} bytes"),
            Failure::NoCosignature { body } => {
                write!(f, "it answered 200 without a cosignature that verifies with its key: {body:?}")
            }
            Failure::Ahead { size } => write!(
                f,
                "it has cosigned {size} records of this log, more than this checkpoint holds (is this node behind, \
                 or was the log restored from an old backup?)"
            ),
            Failure::Proof(e) => write!(f, "cannot make the consistency proof: {e}"),
        }
    }
}

/// The log's witness client, shared by the router (what readers get, `/metrics`, the pages)
/// and its task.
pub(crate) struct Witnessing {
    witnesses: Vec<Witness>,
    quorum: usize,
    /// The `fork_checkpoint` test fault is on.
    fork: bool,
    served: ArcSwapOption<Served>,
    collecting: Mutex<Collecting>,
    backoff_max_ms: u64,
}

/// What the task reads and signs with.
pub(crate) struct Context {
    pub published: Arc<ArcSwap<Snapshot>>,
    pub store: Store,
    pub identities: Arc<Identities>,
    pub shutdown: watch::Receiver<bool>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere leaves plain data behind; keep serving it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Witnessing {
    pub(crate) fn new(config: WitnessConfig, fork: bool) -> Witnessing {
        let witnesses = config
            .witnesses
            .into_iter()
            .map(|spec| Witness {
                endpoint: format!("{}{ADD_CHECKPOINT_PATH}", spec.url),
                spec,
                state: Mutex::new(WitnessState::default()),
                failures: AtomicU64::new(0),
            })
            .collect();
        Witnessing {
            witnesses,
            quorum: config.quorum,
            fork,
            served: ArcSwapOption::empty(),
            collecting: Mutex::new(Collecting { pending: VecDeque::new(), forked: None }),
            backoff_max_ms: lowered_by_env(WITNESS_BACKOFF_MAX_ENV, WITNESS_BACKOFF_MAX_MS).max(WITNESS_BACKOFF_MIN_MS),
        }
    }

    /// The checkpoint note readers get; `None` before the first offer.
    pub(crate) fn served_note(&self) -> Option<String> {
        self.served.load().as_ref().map(|s| s.note.clone())
    }

    /// The size of the newest checkpoint that reached the quorum (0 before one did).
    pub(crate) fn cosigned_size(&self) -> u64 {
        self.served.load().as_ref().filter(|s| s.cosigned).map_or(0, |s| s.offer.size)
    }

    pub(crate) fn metrics(&self) -> Vec<WitnessMetric> {
        self.witnesses
            .iter()
            .map(|w| WitnessMetric {
                name: w.spec.key.name().to_string(),
                url: w.spec.url.clone(),
                cosigned_size: lock(&w.state).cosigned.map_or(0, |(size, _)| size),
                failures: w.failures.load(Ordering::Relaxed),
            })
            .collect()
    }

    pub(crate) fn page_facts(&self) -> Vec<WitnessFact> {
        self.witnesses
            .iter()
            .map(|w| WitnessFact {
                name: w.spec.key.name().to_string(),
                url: w.spec.url.clone(),
                cosigned: lock(&w.state).cosigned,
            })
            .collect()
    }

    /// Offers the current checkpoint (served from now on) and starts the task.
    pub(crate) fn start(self: Arc<Self>, ctx: Context) -> Result<(), String> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(WITNESS_REQUEST_TIMEOUT_MS))
            .connect_timeout(Duration::from_millis(WITNESS_CONNECT_TIMEOUT_MS))
            .build()
            .map_err(|e| format!("cannot build the witness client: {e}"))?;
        let first = self.next_offer(&ctx, None);
        tokio::spawn(self.run(ctx, client, first));
        Ok(())
    }

    async fn run(self: Arc<Self>, mut ctx: Context, client: reqwest::Client, first: Offer) {
        let mut ticks = tokio::time::interval(Duration::from_millis(WITNESS_ROUND_INTERVAL_MS));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut offer = first;
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                changed = ctx.shutdown.changed() => {
                    if changed.is_err() || *ctx.shutdown.borrow() {
                        return;
                    }
                    continue;
                }
            }
            offer = self.next_offer(&ctx, Some(offer));
            let now = Instant::now();
            for (i, w) in self.witnesses.iter().enumerate() {
                if w.take_turn(&offer, now) {
                    tokio::spawn(self.clone().ask(i, offer.clone(), client.clone(), ctx.store.clone()));
                }
            }
        }
    }

    /// The checkpoint to offer this beat: the current one, unless the published checkpoint
    /// changed (or the fork fault fires).
    fn next_offer(&self, ctx: &Context, current: Option<Offer>) -> Offer {
        let mut c = lock(&self.collecting);
        if let Some(forked) = &c.forked {
            return forked.clone();
        }
        if self.fork {
            if let Some(forked) = self.fork_now(ctx) {
                c.forked = Some(forked.clone());
                return forked;
            }
        }
        let snapshot = ctx.published.load_full();
        if let Some(current) = current {
            if *current.note == *snapshot.checkpoint {
                return current;
            }
        }
        let offer = Offer { note: Arc::from(snapshot.checkpoint.as_str()), size: snapshot.size, root: snapshot.root };
        c.pending.push_back(Collected { offer: offer.clone(), lines: Vec::new() });
        while c.pending.len() > WITNESS_CHECKPOINTS_PENDING_MAX {
            c.pending.pop_front();
        }
        if self.served.load().is_none() {
            self.served.store(Some(Arc::new(Served {
                note: offer.note.to_string(),
                offer: offer.clone(),
                cosigned: false,
            })));
        }
        offer
    }

    /// The `fork_checkpoint` fault: once a checkpoint of size S reached the quorum, sign
    /// another of size S with a root one byte off, serve it and offer it to the witnesses.
    fn fork_now(&self, ctx: &Context) -> Option<Offer> {
        let served = self.served.load_full()?;
        if !served.cosigned {
            return None;
        }
        let mut root = served.offer.root;
        root[0] ^= 0x01;
        let origin = ctx.published.load().origin.clone();
        let note = match ctx.identities.sign_checkpoint(&origin, served.offer.size, root) {
            Ok(note) => note,
            Err(e) => {
                tracing::error!("fork_checkpoint fault: cannot sign the forked checkpoint: {e}");
                return None;
            }
        };
        tracing::warn!(size = served.offer.size, "fork_checkpoint fault: serving a second checkpoint of this size");
        let offer = Offer { note: Arc::from(note.as_str()), size: served.offer.size, root };
        self.served.store(Some(Arc::new(Served { note, offer: offer.clone(), cosigned: false })));
        Some(offer)
    }

    /// One request (and at most one retry after a 409) to witness `i`, then its bookkeeping.
    async fn ask(self: Arc<Self>, i: usize, offer: Offer, client: reqwest::Client, store: Store) {
        let w = &self.witnesses[i];
        // Two requests at most, each bounded by the client's timeout; this bounds the proofs too.
        let bound = Duration::from_millis(2 * WITNESS_REQUEST_TIMEOUT_MS);
        let result = match tokio::time::timeout(bound, w.add_checkpoint(&client, &store, &offer)).await {
            Ok(result) => result,
            Err(_) => Err(Failure::Timeout),
        };
        match result {
            Ok(cosignature) => {
                w.succeeded(&offer, cosignature.time);
                self.collect(i, &offer, cosignature.line);
            }
            Err(failure) => w.failed(&offer, &failure, self.backoff_max_ms),
        }
    }

    /// Keeps witness `i`'s line for `offer`; serves the offer once it has the quorum and is not
    /// older than what is served.
    fn collect(&self, i: usize, offer: &Offer, line: String) {
        let mut c = lock(&self.collecting);
        if let Some(forked) = &c.forked {
            // The forked view is served whatever the witnesses say; a cosignature on it (a
            // witness that failed to notice) is shown with it.
            if *forked.note == *offer.note {
                let note = add_lines(&self.served_note().unwrap_or_default(), &[line]);
                self.served.store(Some(Arc::new(Served { note, offer: offer.clone(), cosigned: false })));
            }
            return;
        }
        let entry = match c.pending.iter_mut().position(|e| *e.offer.note == *offer.note) {
            Some(at) => &mut c.pending[at],
            None => {
                c.pending.push_back(Collected { offer: offer.clone(), lines: Vec::new() });
                while c.pending.len() > WITNESS_CHECKPOINTS_PENDING_MAX {
                    c.pending.pop_front();
                }
                let Some(last) = c.pending.back_mut() else { return };
                last
            }
        };
        if !entry.lines.iter().any(|(w, _)| *w == i) {
            entry.lines.push((i, line));
        }
        if entry.lines.len() < self.quorum {
            return;
        }
        let newer = match self.served.load().as_ref() {
            Some(s) => !s.cosigned || s.offer.size <= entry.offer.size,
            None => true,
        };
        if newer {
            let lines: Vec<String> = entry.lines.iter().map(|(_, l)| l.clone()).collect();
            let note = add_lines(&entry.offer.note, &lines);
            self.served.store(Some(Arc::new(Served { note, offer: entry.offer.clone(), cosigned: true })));
        }
    }
}

impl Witness {
    fn name(&self) -> &str {
        self.spec.key.name()
    }

    /// Whether this witness is asked for `offer` now (and marks it busy if so).
    fn take_turn(&self, offer: &Offer, now: Instant) -> bool {
        let mut st = lock(&self.state);
        if st.busy || st.retry_at.is_some_and(|at| now < at) {
            return false;
        }
        if st.last_note.as_deref() == Some(&*offer.note) || offer.size < st.old {
            return false;
        }
        st.busy = true;
        true
    }

    async fn add_checkpoint(
        &self,
        client: &reqwest::Client,
        store: &Store,
        offer: &Offer,
    ) -> Result<Cosignature, Failure> {
        let mut old = lock(&self.state).old;
        let mut retried = false;
        loop {
            let mut body = format!("old {old}\n");
            for hash in proof(store, old, offer.size).await? {
                body.push_str(&ledger::b64::encode(hash));
                body.push('\n');
            }
            body.push('\n');
            body.push_str(&offer.note);
            let resp = client.post(&self.endpoint).body(body).send().await.map_err(|e| {
                if e.is_timeout() {
                    Failure::Timeout
                } else {
                    Failure::Unreachable(error_chain(&e))
                }
            })?;
            let status = resp.status().as_u16();
            let text = read_limited(resp).await?;
            match status {
                200 => return self.cosignature_in(&text, offer),
                // `old` is not the witness's size: adopt the one it says, prove from it once.
                409 if !retried => {
                    let size = text
                        .strip_suffix('\n')
                        .and_then(|s| s.parse::<u64>().ok())
                        .ok_or_else(|| Failure::Refused { status, body: quote(&text) })?;
                    lock(&self.state).old = size;
                    if size > offer.size {
                        return Err(Failure::Ahead { size });
                    }
                    tracing::debug!(witness = self.name(), size, "the witness's last cosigned size");
                    old = size;
                    retried = true;
                }
                _ => return Err(Failure::Refused { status, body: quote(&text) }),
            }
        }
    }

    /// The first line of `text` that is this witness's valid cosignature on `offer`.
    fn cosignature_in(&self, text: &str, offer: &Offer) -> Result<Cosignature, Failure> {
        for line in text.lines().filter(|l| l.starts_with(SIGNATURE_PREFIX)) {
            let line = format!("{line}\n");
            let note = add_lines(&offer.note, std::slice::from_ref(&line));
            let verified = verified_cosigners(note.as_bytes(), std::slice::from_ref(&self.spec.key));
            if let Some(c) = verified.ok().and_then(|found| found.into_iter().next()) {
                return Ok(Cosignature { line, time: c.time });
            }
        }
        Err(Failure::NoCosignature { body: quote(text) })
    }

    fn succeeded(&self, offer: &Offer, time: u64) {
        let mut st = lock(&self.state);
        if st.failing > 0 {
            tracing::info!(witness = self.name(), url = %self.spec.url, "the witness cosigns again after {} failures", st.failing);
        }
        st.busy = false;
        st.old = offer.size;
        st.last_note = Some(offer.note.clone());
        if st.cosigned.map_or(true, |(size, _)| size <= offer.size) {
            st.cosigned = Some((offer.size, time));
        }
        st.backoff_ms = 0;
        st.retry_at = None;
        st.failing = 0;
    }

    fn failed(&self, offer: &Offer, failure: &Failure, backoff_max_ms: u64) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let mut st = lock(&self.state);
        st.busy = false;
        st.failing += 1;
        st.backoff_ms = if st.backoff_ms == 0 {
            WITNESS_BACKOFF_MIN_MS
        } else {
            st.backoff_ms.saturating_mul(2).min(backoff_max_ms)
        };
        st.retry_at = Some(now + Duration::from_millis(st.backoff_ms));
        let due = st
            .logged_at
            .map_or(true, |at| now.duration_since(at) >= Duration::from_millis(WITNESS_FAILURE_LOG_INTERVAL_MS));
        if !due {
            st.unlogged += 1;
            return;
        }
        tracing::warn!(
            witness = self.name(),
            url = %self.spec.url,
            retry_in_ms = st.backoff_ms,
            not_logged_since_last = st.unlogged,
            "witness {} did not cosign the checkpoint of {} records: {failure}",
            self.name(),
            offer.size
        );
        st.logged_at = Some(now);
        st.unlogged = 0;
    }
}

/// The consistency proof from `old` to `size` (none from 0, nor to the same size).
async fn proof(store: &Store, old: u64, size: u64) -> Result<Vec<Hash>, Failure> {
    if old == 0 || old == size {
        return Ok(Vec::new());
    }
    let store = store.clone();
    // A proof may read the store's lower tiles from disk: off the async workers.
    tokio::task::spawn_blocking(move || store.consistency_proof(old, size))
        .await
        .map_err(|e| Failure::Proof(e.to_string()))?
        .map_err(|e| Failure::Proof(e.to_string()))
}

/// The answer's body, at most [`WITNESS_RESPONSE_BYTES_MAX`] bytes.
async fn read_limited(mut resp: reqwest::Response) -> Result<String, Failure> {
    let mut out = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if out.len() + chunk.len() > WITNESS_RESPONSE_BYTES_MAX {
                    return Err(Failure::TooLarge);
                }
                out.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(String::from_utf8_lossy(&out).into_owned()),
            Err(e) if e.is_timeout() => return Err(Failure::Timeout),
            Err(e) => return Err(Failure::Unreachable(error_chain(&e))),
        }
    }
}

/// The start of a witness's answer, for the log.
fn quote(text: &str) -> String {
    let mut end = text.len().min(WITNESS_REFUSAL_QUOTE_BYTES_MAX);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].trim_end().to_string()
}

/// An error with its causes (reqwest's own message omits the interesting part).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger::cosignature::Cosigner;

    fn spec(name: &str) -> WitnessSpec {
        WitnessSpec::new("http://127.0.0.1:1/w/", Cosigner::from_seed(name, [1; 32]).unwrap().verifier()).unwrap()
    }

    #[test]
    fn witness_urls_and_quorums_are_checked() {
        assert_eq!(spec("w1").url, "http://127.0.0.1:1/w");
        let key = Cosigner::from_seed("w", [2; 32]).unwrap().verifier();
        for bad in ["127.0.0.1:1", "ftp://x/", "http://x/?a=b", "nonsense"] {
            assert!(WitnessSpec::new(bad, key.clone()).is_err(), "{bad}");
        }
        assert_eq!(WitnessConfig::new(vec![spec("a"), spec("b")], None).unwrap().quorum, 2);
        assert_eq!(WitnessConfig::new(vec![spec("a"), spec("b")], Some(1)).unwrap().quorum, 1);
        for q in [0, 3] {
            let e = WitnessConfig::new(vec![spec("a"), spec("b")], Some(q)).unwrap_err();
            assert!(e.contains("between 1 and the 2 witnesses"), "{e}");
        }
        assert!(WitnessConfig::new(vec![spec("a"), spec("a")], None).unwrap_err().contains("listed twice"));
    }

    #[test]
    fn only_lines_that_verify_with_the_witness_key_are_kept() {
        let log = ledger::keys::SigningKey::generate("log.example").unwrap();
        let body = "log.example\n3\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n";
        let note = ledger::note::sign(body, &log).unwrap();
        let offer = Offer { note: Arc::from(note.as_str()), size: 3, root: [7; 32] };
        let w1 = Cosigner::from_seed("w1", [1; 32]).unwrap();
        let other = Cosigner::from_seed("w1", [9; 32]).unwrap();
        let witness = Witness {
            endpoint: String::new(),
            spec: spec("w1"),
            state: Mutex::new(WitnessState::default()),
            failures: AtomicU64::new(0),
        };
        // A line by another key with the same name, then the good one.
        let answer = format!("{}{}", other.cosign(body, 5), w1.cosign(body, 6));
        let kept = witness.cosignature_in(&answer, &offer).ok().unwrap();
        assert_eq!((kept.line, kept.time), (w1.cosign(body, 6), 6));
        assert!(witness.cosignature_in(&other.cosign(body, 5), &offer).is_err());
        let other_body = "log.example\n4\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n";
        assert!(witness.cosignature_in(&w1.cosign(other_body, 5), &offer).is_err());
        assert!(witness.cosignature_in("garbage\n", &offer).is_err());
    }

    #[test]
    fn backoff_doubles_up_to_the_max_and_ends_on_success() {
        let witness = Witness {
            endpoint: String::new(),
            spec: spec("w1"),
            state: Mutex::new(WitnessState::default()),
            failures: AtomicU64::new(0),
        };
        let offer = Offer { note: Arc::from("x"), size: 3, root: [0; 32] };
        let mut seen = Vec::new();
        let mut now = Instant::now();
        for _ in 0..5 {
            assert!(witness.take_turn(&offer, now));
            assert!(!witness.take_turn(&offer, now), "one request at a time");
            witness.failed(&offer, &Failure::Timeout, 5_000);
            seen.push(lock(&witness.state).backoff_ms);
            assert!(!witness.take_turn(&offer, Instant::now()), "backed off");
            now = lock(&witness.state).retry_at.unwrap();
        }
        assert_eq!(seen, [1_000, 2_000, 4_000, 5_000, 5_000]);
        assert_eq!(witness.failures.load(Ordering::Relaxed), 5);
        assert!(witness.take_turn(&offer, Instant::now() + Duration::from_secs(10)));
        witness.succeeded(&offer, 9);
        assert_eq!(lock(&witness.state).backoff_ms, 0);
        assert_eq!(lock(&witness.state).cosigned, Some((3, 9)));
        // Not asked again for an offer it cosigned.
        assert!(!witness.take_turn(&offer, Instant::now()));
    }
}
