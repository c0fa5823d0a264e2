//! Target `projector`: arbitrary event sequences through `check`, `apply` and `automation`.
//!
//! The input is read one byte per decision ([`Choices`]), so a scenario is easy to write down
//! by hand (`examples/make_seeds.rs` does). Each step builds one statement of any event type
//! of SPEC.md section 4 from small alphabets (actors with fixed keys, resources, projects,
//! requests, pools, amounts, times), signs it (as keyids) by the actor's key, another key of
//! the actor, another actor's key or nobody, and runs it through `check`; accepted statements
//! are applied with dense seqs, then (after the step, or after a batch of steps)
//! `automation` runs and its statements go through `check`/`apply` too. After every step the invariants hold ([`Harness::invariants`]); at
//! the end, replaying the log from scratch accepts every record and gives the same state.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use ledger::keys::{SigningKey, VerifierKey};
use ledger::statement::{format_rfc3339_ms, Statement};
use projector::data::EVENT_TYPES;
use projector::{apply, automation, check, Event, GrantStatus, State, AUTOMATION_STATEMENTS_MAX};
use serde_json::{json, Value};

use crate::keys::{fixed_key, log_key, ORIGIN};

/// Steps per input (automation's statements not counted).
pub const STEPS_MAX: usize = 64;
/// Keys per actor in the alphabet.
pub const KEYS_PER_ACTOR: usize = 3;
/// 2026-11-29T00:00:00Z: the clock at the first step.
pub const T0_MS: i64 = 1_795_910_400_000;

pub const ACTORS: &[&str] =
    &["admin", "rev1", "rev2", "rev3", "req1", "req2", "meter", "quansight", "admin2", "mallory", "automation"];
pub const RESOURCES: &[&str] = &["gpu-large", "gpu-xlarge", "cpu-long", "gpu"];
pub const PROJECTS: &[&str] = &["pytorch-cpu-feedstock", "numpy-feedstock", "PyTorch-cpu-feedstock", "pytorch-cpu"];
pub const REQUESTS: &[&str] = &["r1", "r2", "r3", "r4"];
pub const POOLS: &[&str] = &["p1", "p2", "p3"];
pub const SPONSORS: &[&str] = &["quansight", "nvidia"];
pub const UNITS: &[&str] = &["runner-minutes", "gpu-hours"];
pub const USERS: &[&str] = &["alice", "bob", "rev1", "REV1", "req1"];
pub const TERMS: &[&str] = &["v1", "v2"];
pub const AMOUNTS: &[u64] = &[0, 1, 2, 5, 10, 100, 400, 1000, u64::MAX / 2, u64::MAX - 1, u64::MAX];
pub const DAYS: &[u64] = &[0, 1, 2, 30, 36_500, 36_501];
pub const APPROVALS_REQUIRED: &[u64] = &[0, 1, 2, 3, u32::MAX as u64];
pub const ROLES: &[&str] = &["admin", "reviewer", "requester", "meter", "sponsor", "root"];
/// Step kinds past the event types only move the clock.
pub const OPS: usize = 24;
/// Signer choices of a step (see [`Harness::signers`]).
pub const SIGNER_CHOICES: usize = 6;

/// One decision per input byte: `pick(n)` is `byte % n`, and 0 once the input is used up.
pub struct Choices<'a> {
    data: &'a [u8],
}

impl Choices<'_> {
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn pick(&mut self, n: usize) -> usize {
        debug_assert!((1..=256).contains(&n));
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                usize::from(*b) % n
            }
            None => 0,
        }
    }

    fn one<'s>(&mut self, from: &[&'s str]) -> &'s str {
        from[self.pick(from.len())]
    }

    fn num(&mut self, from: &[u64]) -> u64 {
        from[self.pick(from.len())]
    }

    fn flag(&mut self) -> bool {
        self.pick(2) == 1
    }
}

/// The fixed keys of the actor alphabet: `keys()[actor][n]`.
pub fn keys() -> &'static Vec<Vec<SigningKey>> {
    static KEYS: OnceLock<Vec<Vec<SigningKey>>> = OnceLock::new();
    KEYS.get_or_init(|| ACTORS.iter().map(|a| (0..KEYS_PER_ACTOR).map(|n| fixed_key(a, n as u8)).collect()).collect())
}

fn key(actor: &str, n: usize) -> &'static SigningKey {
    let i = ACTORS.iter().position(|a| *a == actor).expect("actor in the alphabet");
    &keys()[i][n % KEYS_PER_ACTOR]
}

fn vk(actor: &str, n: usize) -> String {
    key(actor, n).verifier().to_string()
}

/// What happened, for the seed generator and the tests.
#[derive(Debug, Default)]
pub struct Report {
    /// (seq, event type, actor) of every accepted statement, automation's included.
    pub accepted: Vec<(u64, String, String)>,
    /// (event type, rejection code) of every rejected statement.
    pub rejected: Vec<(String, String)>,
    /// Every pool at the end.
    pub pools: Vec<projector::PoolUsage>,
}

struct Logged {
    statement: Statement,
    signers: Vec<String>,
    received_at_ms: i64,
}

pub struct Harness {
    state: State,
    log: Vec<Logged>,
    now_ms: i64,
    step: usize,
    /// Request → reviewers whose approval `check` accepted, in order.
    approvals: BTreeMap<String, Vec<String>>,
    /// Request → status last seen; a closed request stays closed.
    request_status: BTreeMap<String, String>,
    /// Grant ids seen, for the fuzzer to name.
    grants_seen: BTreeSet<String>,
    pub report: Report,
}

/// Runs one input. Panics on a broken invariant.
pub fn run(data: &[u8]) {
    run_with_report(data);
}

pub fn run_with_report(data: &[u8]) -> Report {
    let mut c = Choices { data };
    let mut h = Harness {
        state: State::new(),
        log: Vec::new(),
        now_ms: T0_MS,
        step: 0,
        approvals: BTreeMap::new(),
        request_status: BTreeMap::new(),
        grants_seen: BTreeSet::new(),
        report: Report::default(),
    };
    h.bootstrap(c.pick(3));
    while !c.is_empty() && h.step < STEPS_MAX {
        h.step(&mut c);
    }
    h.views();
    h.replay();
    for sponsor in h.state.sponsors() {
        h.report.pools.extend(h.state.sponsor_usage(&sponsor.sponsor, None, None).into_iter().flat_map(|u| u.pools));
    }
    h.report
}

impl Harness {
    fn statement(&self, actor: &str, kind: &str, data: Value, issued_at_ms: i64, ledger: &str) -> Statement {
        Statement {
            ledger: ledger.to_string(),
            id: format!("s{}-{}", self.step, self.log.len()),
            actor: actor.to_string(),
            issued_at: format_rfc3339_ms(issued_at_ms),
            kind: kind.to_string(),
            data,
        }
    }

    /// 0: empty ledger; 1: genesis only; 2: genesis, actors of every role, resources, a
    /// sponsor and two pools. Every bootstrap statement must be accepted.
    fn bootstrap(&mut self, level: usize) {
        if level == 0 {
            return;
        }
        let genesis = json!({
            "admins": [vk("admin", 0)], "automation_key": vk("automation", 0),
            "log_key": log_key().verifier().to_string(),
        });
        let mut rows = vec![("admin", "ledger.genesis", genesis)];
        if level >= 2 {
            for (actor, roles) in [
                ("rev1", json!(["reviewer"])),
                ("rev2", json!(["reviewer"])),
                ("rev3", json!(["reviewer", "requester"])),
                ("req1", json!(["requester"])),
                ("req2", json!(["requester"])),
                ("meter", json!(["meter"])),
                ("quansight", json!(["sponsor"])),
                ("admin2", json!(["admin"])),
            ] {
                rows.push(("admin", "actor.registered", json!({"actor": actor, "key": vk(actor, 0), "roles": roles})));
            }
            for (resource, required, max_days) in
                [("gpu-large", 1, Some(30)), ("gpu-xlarge", 2, None), ("cpu-long", 3, None)]
            {
                rows.push((
                    "admin",
                    "resource.defined",
                    json!({"resource": resource, "provider": "cirun", "unit": "runner-minutes",
                           "approvals_required": required, "max_days": max_days, "terms": "v1"}),
                ));
            }
            rows.push(("admin", "sponsor.registered", json!({"sponsor": "quansight", "name": "Quansight"})));
            rows.push((
                "admin",
                "credits.deposited",
                json!({"pool": "p1", "sponsor": "quansight", "amount": 1000, "unit": "runner-minutes", "resources": ["*"]}),
            ));
            rows.push((
                "quansight",
                "credits.deposited",
                json!({"pool": "p2", "sponsor": "quansight", "amount": 500, "unit": "runner-minutes",
                       "resources": ["gpu-large"], "expires_at": format_rfc3339_ms(T0_MS + 10 * 86_400_000)}),
            ));
        }
        for (actor, kind, data) in rows {
            let st = self.statement(actor, kind, data, self.now_ms, ORIGIN);
            let signers = vec![key(actor, 0).keyid()];
            if let Err(e) = check(&self.state, &st, &signers, self.now_ms) {
                panic!("bootstrap statement {kind} rejected: {e}");
            }
            self.accept(st, signers);
        }
        self.after_step();
    }

    fn step(&mut self, c: &mut Choices) {
        self.step += 1;
        let op = c.pick(OPS);
        let amount = c.pick(256) as i64;
        self.now_ms += match c.pick(4) {
            0 => 0,
            1 => amount * 1000,
            2 => amount * 3_600_000,
            _ => amount * 86_400_000,
        };
        if op >= EVENT_TYPES.len() {
            self.after_step();
            return;
        }
        let kind = EVENT_TYPES[op];
        let actor = c.one(ACTORS);
        let signers = self.signers(c, actor);
        let issued_at_ms = match c.pick(4) {
            0 => self.now_ms,
            1 => self.now_ms - 60_000,
            2 => self.now_ms + 4 * 60_000,
            _ => self.now_ms + 6 * 60_000,
        };
        let flags = c.pick(256);
        let ledger = if flags % 16 == 15 { "other.example/ci" } else { ORIGIN };
        let data = self.data(c, kind);
        let st = self.statement(actor, kind, data, issued_at_ms, ledger);
        match check(&self.state, &st, &signers, self.now_ms) {
            Ok(()) => self.accept(st, signers),
            Err(rejection) => {
                self.report.rejected.push((kind.to_string(), rejection.code.clone()));
                if flags & 0x10 != 0 {
                    // `apply` promises never to panic, even on a record `check` rejected.
                    let mut scratch = self.state.clone();
                    let seq = scratch.size();
                    apply(&mut scratch, &Event { seq, received_at_ms: self.now_ms, statement: &st, signers: &signers });
                }
            }
        }
        if flags & 0x20 != 0 {
            // The server runs automation after each batch: this statement and the next
            // share one.
            self.invariants();
        } else {
            self.after_step();
        }
    }

    /// 0: the actor's first key; 1, 2: its other keys (maybe never added, maybe revoked);
    /// 3: another actor's key; 4: none; 5: the actor's second key and another actor's key.
    fn signers(&self, c: &mut Choices, actor: &str) -> Vec<String> {
        let choice = c.pick(SIGNER_CHOICES);
        let other = c.one(ACTORS);
        match choice {
            0..=2 => vec![key(actor, choice).keyid()],
            3 => vec![key(other, 0).keyid()],
            4 => Vec::new(),
            _ => vec![key(actor, 1).keyid(), key(other, 0).keyid()],
        }
    }

    fn time(&self, c: &mut Choices) -> String {
        let days = c.pick(64) as i64 - 16;
        format_rfc3339_ms(self.now_ms + days * 86_400_000)
    }

    fn grant_id(&self, c: &mut Choices) -> String {
        let seen: Vec<&String> = self.grants_seen.iter().collect();
        let i = c.pick(256);
        match seen.get(i % (seen.len() + 2)) {
            Some(g) => (*g).clone(),
            None if i & 1 == 0 => "g1".to_string(),
            None => projector::grant_id_for_request(REQUESTS[i % REQUESTS.len()]),
        }
    }

    fn roles(c: &mut Choices) -> Value {
        let mask = c.pick(256);
        Value::from(ROLES.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, r)| *r).collect::<Vec<_>>())
    }

    fn opt(c: &mut Choices, v: impl FnOnce(&mut Choices) -> Value) -> Value {
        if c.flag() {
            v(c)
        } else {
            Value::Null
        }
    }

    /// The `data` of one event type; optional fields are null when absent (the decoders
    /// treat null as absent).
    fn data(&self, c: &mut Choices, kind: &str) -> Value {
        let mut d = match kind {
            "ledger.genesis" => {
                let mut admins = vec![vk("admin", c.pick(2))];
                if c.flag() {
                    admins.push(vk(c.one(ACTORS), 0));
                }
                let log = if c.flag() { log_key().verifier().to_string() } else { vk("admin2", 0) };
                json!({"admins": admins, "automation_key": vk("automation", c.pick(2)), "log_key": log})
            }
            "actor.registered" => {
                let actor = c.one(ACTORS);
                let key_of = c.one(ACTORS);
                json!({"actor": actor, "key": vk(key_of, c.pick(KEYS_PER_ACTOR)), "roles": Self::roles(c)})
            }
            "actor.roles_set" => json!({"actor": c.one(ACTORS), "roles": Self::roles(c)}),
            "key.added" | "key.revoked" => {
                let actor = c.one(ACTORS);
                let key_of = if c.pick(4) == 0 { c.one(ACTORS) } else { actor };
                let n = c.pick(KEYS_PER_ACTOR);
                json!({"actor": actor, "key": vk(key_of, n), "reason": Self::opt(c, |_| json!("rotated"))})
            }
            "resource.defined" => json!({
                "resource": c.one(RESOURCES), "provider": "cirun", "unit": c.one(UNITS),
                "approvals_required": c.num(APPROVALS_REQUIRED),
                "max_days": Self::opt(c, |c| json!(c.num(DAYS))),
                "terms": Self::opt(c, |c| json!(c.one(TERMS))),
            }),
            "resource.retired" => json!({"resource": c.one(RESOURCES)}),
            "sponsor.registered" => json!({"sponsor": c.one(SPONSORS), "name": "A sponsor"}),
            "credits.deposited" => {
                let resources = match c.pick(4) {
                    0 => json!(["*"]),
                    1 => json!([c.one(RESOURCES)]),
                    2 => json!([c.one(RESOURCES), c.one(RESOURCES)]),
                    _ => json!(["*", c.one(RESOURCES)]),
                };
                json!({
                    "pool": c.one(POOLS), "sponsor": c.one(SPONSORS), "amount": c.num(AMOUNTS),
                    "unit": c.one(UNITS), "resources": resources,
                    "expires_at": Self::opt(c, |c| json!(self.time(c))),
                })
            }
            "access.requested" => {
                let users = match c.pick(4) {
                    0 => json!({}),
                    1 => json!({"users": [c.one(USERS)]}),
                    2 => json!({"users_from_json": "https://example.org/users.json"}),
                    _ => json!({"users": [c.one(USERS)], "users_from_json": "https://example.org/users.json"}),
                };
                let mut d = json!({
                    "request": c.one(REQUESTS), "project": c.one(PROJECTS), "resource": c.one(RESOURCES),
                    "justification": if c.pick(8) == 0 { " " } else { "CUDA builds time out" },
                    "pull_request": c.flag(),
                    "on_behalf_of": Self::opt(c, |c| json!(c.one(USERS))),
                    "credits": Self::opt(c, |c| json!(c.num(AMOUNTS))),
                    "days": Self::opt(c, |c| json!(c.num(DAYS))),
                });
                if let (Some(d), Value::Object(u)) = (d.as_object_mut(), users) {
                    d.extend(u);
                }
                d
            }
            "request.approved" => json!({
                "request": c.one(REQUESTS),
                "note": Self::opt(c, |_| json!("lgtm")),
                "pool": Self::opt(c, |c| json!(c.one(POOLS))),
                "credits": Self::opt(c, |c| json!(c.num(AMOUNTS))),
                "days": Self::opt(c, |c| json!(c.num(DAYS))),
            }),
            "request.denied" => json!({"request": c.one(REQUESTS), "reason": "no budget"}),
            "request.withdrawn" => json!({"request": c.one(REQUESTS)}),
            "grant.issued" => json!({
                "grant": self.grant_id(c), "project": c.one(PROJECTS), "resource": c.one(RESOURCES),
                "pull_request": c.flag(),
                "request": Self::opt(c, |c| json!(c.one(REQUESTS))),
                "pool": Self::opt(c, |c| json!(c.one(POOLS))),
                "credit_limit": Self::opt(c, |c| json!(c.num(AMOUNTS))),
                "expires_at": Self::opt(c, |c| json!(self.time(c))),
                "users": Self::opt(c, |c| json!([c.one(USERS)])),
                "roles": Self::opt(c, |_| json!(["admin", "maintain"])),
            }),
            "grant.revoked" => json!({"grant": self.grant_id(c), "reason": "abuse"}),
            "grant.expired" | "grant.exhausted" => json!({"grant": self.grant_id(c)}),
            "usage.reported" => {
                let usage = if c.pick(4) == 0 { format!("job-{}", self.step) } else { format!("job-{}", c.pick(4)) };
                let started = self.now_ms - c.pick(256) as i64 * 60_000;
                json!({
                    "usage": usage, "project": c.one(PROJECTS), "resource": c.one(RESOURCES),
                    "amount": c.num(AMOUNTS), "started_at": format_rfc3339_ms(started),
                    "ended_at": format_rfc3339_ms(self.now_ms),
                    "run_url": Self::opt(c, |_| json!("https://github.com/x/y/actions/runs/1")),
                })
            }
            "user.terms_accepted" | "user.terms_withdrawn" => json!({
                "user": c.one(USERS), "github_id": c.pick(3), "terms": c.one(TERMS),
                "evidence_url": Self::opt(c, |_| json!("https://github.com/x/y/pull/2")),
            }),
            "grants.migrated" => {
                json!({"from_resource": c.one(RESOURCES), "to_resource": c.one(RESOURCES), "reason": "provider change"})
            }
            _ => json!({}),
        };
        // Absent optional fields: drop the nulls, so the statement is what a client sends.
        if let Some(obj) = d.as_object_mut() {
            obj.retain(|_, v| !v.is_null());
        }
        d
    }

    /// Applies an accepted statement as the next record, after checking the rules that the
    /// accepted statement must satisfy.
    fn accept(&mut self, st: Statement, signers: Vec<String>) {
        let seq = self.state.size();
        assert_eq!(seq, self.log.len() as u64, "seqs are not dense");
        match st.kind.as_str() {
            "request.approved" => self.accepted_approval(&st),
            "grant.issued" if st.actor == projector::AUTOMATION_ACTOR => self.accepted_quorum_grant(&st),
            _ => {}
        }
        let event = Event { seq, received_at_ms: self.now_ms, statement: &st, signers: &signers };
        apply(&mut self.state, &event);
        assert_eq!(self.state.size(), seq + 1, "apply did not advance the size to seq + 1");
        self.report.accepted.push((seq, st.kind.clone(), st.actor.clone()));
        self.log.push(Logged { statement: st, signers, received_at_ms: self.now_ms });
    }

    /// An accepted approval is a vote by a reviewer who did not ask for the request.
    fn accepted_approval(&mut self, st: &Statement) {
        let request = st.data["request"].as_str().unwrap_or_default().to_string();
        let req = self.state.request(&request).unwrap_or_else(|| panic!("approval of unknown request {request}"));
        assert_eq!(req.status, "pending", "approval of closed request {request}");
        let actor = self.state.actors().into_iter().find(|a| a.actor == st.actor).expect("approver is registered");
        assert!(actor.roles.iter().any(|r| r == "reviewer"), "approval by {} without the reviewer role", st.actor);
        assert_ne!(req.requester, st.actor, "self-approval of {request}");
        assert!(
            !req.on_behalf_of.as_deref().is_some_and(|o| o.eq_ignore_ascii_case(&st.actor)),
            "approval of {request} by the person it was made for"
        );
        let votes = self.approvals.entry(request.clone()).or_default();
        assert!(!votes.contains(&st.actor), "{} approved {request} twice", st.actor);
        votes.push(st.actor.clone());
    }

    /// Automation issues a grant only for a pending request with a quorum of distinct,
    /// accepted approvals.
    fn accepted_quorum_grant(&mut self, st: &Statement) {
        let request = st.data["request"].as_str().unwrap_or_else(|| panic!("automation grant without a request"));
        let req = self.state.request(request).unwrap_or_else(|| panic!("automation grant for unknown {request}"));
        assert_eq!(req.status, "pending", "automation grant for closed request {request}");
        let votes = self.approvals.get(request).cloned().unwrap_or_default();
        let reviewers: Vec<String> = req.approvals.iter().map(|a| a.reviewer.clone()).collect();
        assert_eq!(reviewers, votes, "request {request} shows other approvals than were accepted");
        let distinct: BTreeSet<&String> = votes.iter().collect();
        assert!(req.approvals_required >= 1);
        assert!(
            distinct.len() as u64 >= u64::from(req.approvals_required),
            "automation granted {request} with {} of {} approvals",
            distinct.len(),
            req.approvals_required
        );
    }

    /// Runs automation until it has nothing to do; each statement must be accepted.
    fn after_step(&mut self) {
        for _round in 0..4 {
            let statements = automation(&self.state, self.now_ms);
            if statements.is_empty() {
                break;
            }
            let full = statements.len() >= AUTOMATION_STATEMENTS_MAX;
            let signer = self.state.automation_key().map(VerifierKey::keyid).expect("automation runs after genesis");
            for st in statements {
                let signers = vec![signer.clone()];
                if let Err(e) = check(&self.state, &st, &signers, self.now_ms) {
                    panic!("automation's own {} {} was rejected: {e}", st.kind, st.data);
                }
                self.accept(st, signers);
            }
            if !full {
                let again = automation(&self.state, self.now_ms);
                assert!(
                    again.is_empty(),
                    "automation repeats itself: {:?}",
                    again.iter().map(|s| &s.id).collect::<Vec<_>>()
                );
                break;
            }
        }
        self.invariants();
    }

    fn invariants(&mut self) {
        let now = self.now_ms;
        assert_eq!(self.state.size(), self.log.len() as u64, "seqs are not dense");
        // Requests: a closed request stays closed; a granted one names its grant.
        for req in self.state.requests(None) {
            if let Some(before) = self.request_status.get(&req.request) {
                if before != "pending" {
                    assert_eq!(&req.status, before, "closed request {} changed status", req.request);
                }
            }
            if req.status == "granted" {
                assert!(req.grant.is_some(), "granted request {} names no grant", req.request);
            }
            self.request_status.insert(req.request.clone(), req.status.clone());
        }
        // Grants, per pool: the shares they hold and the credits they used.
        let mut shares: BTreeMap<String, u128> = BTreeMap::new();
        let mut used: BTreeMap<String, u128> = BTreeMap::new();
        for project in PROJECTS {
            for g in self.state.project_grants(project, now) {
                self.grants_seen.insert(g.grant.clone());
                if g.history.first().is_some_and(|e| e.actor == projector::AUTOMATION_ACTOR) {
                    let request = g.request.as_deref().expect("automation grants name their request");
                    let req = self.state.request(request).expect("the grant's request exists");
                    assert_eq!(
                        req.status, "granted",
                        "request {request} of automation grant {} is not granted",
                        g.grant
                    );
                    let distinct: BTreeSet<&str> = req.approvals.iter().map(|a| a.reviewer.as_str()).collect();
                    assert!(distinct.len() as u64 >= u64::from(req.approvals_required));
                    assert!(!distinct.contains(req.requester.as_str()));
                }
                let Some(pool) = &g.pool else { continue };
                let share = match (g.ended_seq, &g.status) {
                    (None, _) => g.credit_limit.unwrap_or(0).max(g.used),
                    (Some(_), GrantStatus::Migrated) => 0,
                    (Some(_), _) => g.used,
                };
                *shares.entry(pool.clone()).or_default() += u128::from(share);
                if g.status != GrantStatus::Migrated {
                    *used.entry(pool.clone()).or_default() += u128::from(g.used);
                }
            }
        }
        let cap = |v: u128| u64::try_from(v).unwrap_or(u64::MAX);
        for sponsor in self.state.sponsors() {
            let usage = self.state.sponsor_usage(&sponsor.sponsor, None, None).expect("a listed sponsor has usage");
            for p in &usage.pools {
                assert_eq!(p.remaining, p.deposited.saturating_sub(p.used), "pool {} remaining", p.pool);
                assert_eq!(
                    p.used,
                    cap(used.get(&p.pool).copied().unwrap_or(0)),
                    "pool {} used != its grants' usage",
                    p.pool
                );
                assert_eq!(
                    p.allocated,
                    cap(shares.get(&p.pool).copied().unwrap_or(0)),
                    "pool {} allocated != its grants' shares",
                    p.pool
                );
                let per_project: u128 =
                    usage.projects.iter().filter(|u| u.pool == p.pool).map(|u| u128::from(u.used)).sum();
                assert_eq!(p.used, cap(per_project), "pool {} used != its per-project usage", p.pool);
            }
        }
        let stats = self.state.stats(now);
        assert!(stats.active_grants <= stats.grants && stats.pending_requests <= stats.requests);
    }

    /// Every view, for panics.
    fn views(&self) {
        let now = self.now_ms;
        let _ = self.state.allocations(None, None, now);
        for project in PROJECTS {
            for resource in RESOURCES {
                for user in [None, Some("alice".to_string()), Some("REV1".to_string())] {
                    let query = projector::AccessQuery {
                        project: project.to_string(),
                        resource: resource.to_string(),
                        pull_request: user.is_some(),
                        user,
                        github_id: Some(1),
                    };
                    let answer = self.state.access_check(&query, now);
                    let explained = self.state.explain(&query, now);
                    assert_eq!(answer.allowed, explained.allowed, "access check and explain disagree");
                    assert_eq!(answer.reason, explained.reason, "access check and explain disagree");
                }
            }
            let _ = self.state.project_history(project);
        }
        let _ = self.state.resources();
        let _ = self.state.users_json();
        let _ = self.state.runner_labels(now);
        let _ = projector::interop::cirun_access_yaml(&self.state, now);
    }

    /// Replaying the log from scratch: `check` accepts every record at its own time and the
    /// state is the same.
    fn replay(&self) {
        let mut replayed = State::new();
        for (seq, l) in self.log.iter().enumerate() {
            if let Err(e) = check(&replayed, &l.statement, &l.signers, l.received_at_ms) {
                panic!("replay rejects seq {seq} ({}): {e}", l.statement.kind);
            }
            let event = Event {
                seq: seq as u64,
                received_at_ms: l.received_at_ms,
                statement: &l.statement,
                signers: &l.signers,
            };
            apply(&mut replayed, &event);
        }
        let live = serde_json::to_string(&self.state).expect("state serialises");
        let again = serde_json::to_string(&replayed).expect("state serialises");
        assert!(live == again, "replaying the log gives another state");
    }
}
