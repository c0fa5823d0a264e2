//! A test ledger: builds statements, runs `check` then `apply` exactly as the sequencer does,
//! and appends what `automation` asks for. Nothing is signed: signers are the keyids of
//! generated keys, as if their signatures had verified.
#![allow(dead_code)]

use std::collections::BTreeMap;

use ledger::keys::SigningKey;
use ledger::statement::{format_rfc3339_ms, Statement};
use projector::{Event, Rejection, State};
use serde_json::{json, Value};

pub(crate) const ORIGIN: &str = "ledger.test/ci";
/// 2026-11-29T00:00:00Z.
pub(crate) const T0_MS: i64 = 1_795_910_400_000;
pub(crate) const MINUTE_MS: i64 = 60_000;
pub(crate) const DAY_MS: i64 = 86_400_000;

/// One appended record: what an auditor replays.
#[derive(Debug, Clone)]
pub(crate) struct Logged {
    pub statement: Statement,
    pub signers: Vec<String>,
    pub received_at_ms: i64,
}

pub(crate) struct World {
    pub state: State,
    pub log: Vec<Logged>,
    pub now_ms: i64,
    pub keys: BTreeMap<String, SigningKey>,
    pub log_key: SigningKey,
    next_id: u64,
}

fn seed(name: &str, n: u64) -> [u8; 32] {
    let mut s = [0u8; 32];
    for (i, b) in name.bytes().chain(n.to_be_bytes()).enumerate() {
        s[i % 32] ^= b.wrapping_add(i as u8);
    }
    s
}

pub(crate) fn serialized(state: &State) -> String {
    serde_json::to_string(state).unwrap()
}

impl World {
    /// A ledger with its genesis appended: admin `admin`.
    pub(crate) fn new() -> World {
        let admin = SigningKey::from_seed("admin", seed("admin", 0)).unwrap();
        let automation = SigningKey::from_seed("automation", seed("automation", 0)).unwrap();
        let log_key = SigningKey::from_seed(ORIGIN, seed(ORIGIN, 0)).unwrap();
        let mut keys = BTreeMap::new();
        keys.insert("admin".to_string(), admin.clone());
        keys.insert("automation".to_string(), automation.clone());
        let mut w = World { state: State::new(), log: Vec::new(), now_ms: T0_MS, keys, log_key, next_id: 0 };
        w.ok("admin", "ledger.genesis", w.genesis_data());
        w
    }

    pub(crate) fn genesis_data(&self) -> Value {
        json!({
            "admins": [self.keys["admin"].verifier().to_string()],
            "automation_key": self.keys["automation"].verifier().to_string(),
            "log_key": self.log_key.verifier().to_string(),
        })
    }

    pub(crate) fn statement(&mut self, actor: &str, kind: &str, data: Value) -> Statement {
        self.next_id += 1;
        Statement {
            ledger: ORIGIN.to_string(),
            id: format!("s-{}", self.next_id),
            actor: actor.to_string(),
            issued_at: format_rfc3339_ms(self.now_ms),
            kind: kind.to_string(),
            data,
        }
    }

    pub(crate) fn signer(&self, actor: &str) -> Vec<String> {
        self.keys.get(actor).map(|k| vec![k.keyid()]).unwrap_or_default()
    }

    /// check, then apply on success. A rejection must leave the state exactly as it was.
    pub(crate) fn submit(&mut self, statement: Statement, signers: Vec<String>) -> Result<u64, Rejection> {
        let before = serialized(&self.state);
        match projector::check(&self.state, &statement, &signers, self.now_ms) {
            Ok(()) => {
                let seq = self.state.size();
                projector::apply(
                    &mut self.state,
                    &Event { seq, received_at_ms: self.now_ms, statement: &statement, signers: &signers },
                );
                self.log.push(Logged { statement, signers, received_at_ms: self.now_ms });
                Ok(seq)
            }
            Err(r) => {
                assert_eq!(before, serialized(&self.state), "a rejected statement changed the state");
                Err(r)
            }
        }
    }

    pub(crate) fn try_as(&mut self, actor: &str, kind: &str, data: Value) -> Result<u64, Rejection> {
        let st = self.statement(actor, kind, data);
        let signers = self.signer(actor);
        self.submit(st, signers)
    }

    #[track_caller]
    pub(crate) fn ok(&mut self, actor: &str, kind: &str, data: Value) -> u64 {
        match self.try_as(actor, kind, data) {
            Ok(seq) => seq,
            Err(r) => panic!("{kind} by {actor} rejected: {r}"),
        }
    }

    /// Submits, expects rejection `code`, and checks that nothing changed.
    #[track_caller]
    pub(crate) fn err(&mut self, actor: &str, kind: &str, data: Value, code: &str) -> Rejection {
        let before = serialized(&self.state);
        let size = self.state.size();
        match self.try_as(actor, kind, data) {
            Ok(seq) => panic!("{kind} by {actor} accepted at seq {seq}, expected {code}"),
            Err(r) => {
                assert_eq!(r.code, code, "{r}");
                assert_eq!(r.kind, projector::codes::kind_of(code));
                assert_eq!(self.state.size(), size);
                assert_eq!(before, serialized(&self.state));
                r
            }
        }
    }

    /// Appends everything the automation asks for now; returns the seqs.
    pub(crate) fn automate(&mut self) -> Vec<u64> {
        let mut seqs = Vec::new();
        loop {
            let statements = projector::automation(&self.state, self.now_ms);
            if statements.is_empty() {
                return seqs;
            }
            for st in statements {
                let signers = self.signer("automation");
                let kind = st.kind.clone();
                match self.submit(st, signers) {
                    Ok(seq) => seqs.push(seq),
                    Err(r) => panic!("automation's {kind} rejected: {r}"),
                }
            }
        }
    }

    pub(crate) fn advance(&mut self, ms: i64) {
        self.now_ms += ms;
    }

    /// Registers an actor with a fresh key.
    pub(crate) fn register(&mut self, name: &str, roles: &[&str]) -> u64 {
        let key = SigningKey::from_seed(name, seed(name, self.next_id)).unwrap();
        let data = json!({"actor": name, "key": key.verifier().to_string(), "roles": roles});
        self.keys.insert(name.to_string(), key);
        self.ok("admin", "actor.registered", data)
    }

    pub(crate) fn new_key(&self, name: &str) -> SigningKey {
        static KEYS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1 << 32);
        let n = KEYS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        SigningKey::from_seed(name, seed(name, n)).unwrap()
    }

    pub(crate) fn define_resource(&mut self, resource: &str, approvals_required: u32) -> u64 {
        self.ok(
            "admin",
            "resource.defined",
            json!({"resource": resource, "provider": "cirun", "unit": "runner-minutes", "approvals_required": approvals_required}),
        )
    }

    /// A world with reviewers `rev1`, `rev2`, requester `bot`, meter `meter`, sponsor
    /// `quansight` (actor and sponsor) with pool `qs-gpu` of 1,000 runner-minutes, and resource
    /// `gpu` requiring 2 approvals, `cpu` requiring 1.
    pub(crate) fn standard() -> World {
        let mut w = World::new();
        w.register("rev1", &["reviewer"]);
        w.register("rev2", &["reviewer"]);
        w.register("bot", &["requester"]);
        w.register("meter", &["meter"]);
        w.register("quansight", &["sponsor"]);
        w.define_resource("gpu", 2);
        w.define_resource("cpu", 1);
        w.ok("admin", "sponsor.registered", json!({"sponsor": "quansight", "name": "Quansight"}));
        w.ok(
            "quansight",
            "credits.deposited",
            json!({"pool": "qs-gpu", "sponsor": "quansight", "amount": 1000, "unit": "runner-minutes", "resources": ["*"]}),
        );
        w
    }

    pub(crate) fn request(&mut self, request: &str, project: &str, resource: &str, extra: Value) -> u64 {
        let mut data = json!({"request": request, "project": project, "resource": resource,
            "justification": "builds need it", "pull_request": false});
        merge(&mut data, extra);
        self.ok("bot", "access.requested", data)
    }

    /// A request approved by enough reviewers, with the automation's grant appended;
    /// returns the grant id.
    pub(crate) fn granted(
        &mut self,
        request: &str,
        project: &str,
        resource: &str,
        extra: Value,
        approval: Value,
    ) -> String {
        self.request(request, project, resource, extra);
        let required = self.state.request(request).unwrap().approvals_required;
        for reviewer in ["rev1", "rev2"].iter().take(required as usize) {
            let mut data = json!({"request": request});
            merge(&mut data, approval.clone());
            self.ok(reviewer, "request.approved", data);
        }
        self.automate();
        self.state.request(request).unwrap().grant.expect("grant issued")
    }

    pub(crate) fn usage(&mut self, usage: &str, project: &str, resource: &str, amount: u64) -> Result<u64, Rejection> {
        let data = self.usage_data(usage, project, resource, amount);
        self.try_as("meter", "usage.reported", data)
    }

    /// A job that started and ended at the current clock: inside every grant issued so far.
    pub(crate) fn usage_data(&self, usage: &str, project: &str, resource: &str, amount: u64) -> Value {
        self.usage_data_at(usage, project, resource, amount, self.now_ms, self.now_ms)
    }

    pub(crate) fn usage_data_at(
        &self,
        usage: &str,
        project: &str,
        resource: &str,
        amount: u64,
        started_at_ms: i64,
        ended_at_ms: i64,
    ) -> Value {
        json!({"usage": usage, "project": project, "resource": resource, "amount": amount,
            "started_at": format_rfc3339_ms(started_at_ms), "ended_at": format_rfc3339_ms(ended_at_ms)})
    }

    /// Replays the log into a fresh state with check + apply, as an auditor does.
    pub(crate) fn replay(&self) -> State {
        replay(&self.log)
    }
}

pub(crate) fn replay(log: &[Logged]) -> State {
    let mut state = State::new();
    for (seq, rec) in log.iter().enumerate() {
        projector::check(&state, &rec.statement, &rec.signers, rec.received_at_ms)
            .unwrap_or_else(|r| panic!("replay rejects seq {seq}: {r}"));
        projector::apply(
            &mut state,
            &Event {
                seq: seq as u64,
                received_at_ms: rec.received_at_ms,
                statement: &rec.statement,
                signers: &rec.signers,
            },
        );
    }
    state
}

pub(crate) fn merge(base: &mut Value, extra: Value) {
    if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
        for (k, v) in e {
            b.insert(k, v);
        }
    }
}
