//! `check` + `apply` per event type, on a state with a few hundred live grants.
//! Run with `cargo bench -p grantline-projector`; `-- --test` runs each once.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use ledger::keys::SigningKey;
use ledger::statement::{format_rfc3339_ms, Statement};
use projector::{Event, State};
use serde_json::{json, Value};

const ORIGIN: &str = "ledger.bench/ci";
const T0_MS: i64 = 1_795_910_400_000;
const PROJECTS: usize = 300;

struct Bench {
    state: State,
    keys: std::collections::BTreeMap<&'static str, SigningKey>,
    n: u64,
    now_ms: i64,
}

impl Bench {
    fn statement(&mut self, actor: &str, kind: &str, data: Value) -> Statement {
        self.n += 1;
        Statement {
            ledger: ORIGIN.into(),
            id: format!("b{}", self.n),
            actor: actor.into(),
            issued_at: format_rfc3339_ms(self.now_ms),
            kind: kind.into(),
            data,
        }
    }

    fn signers(&self, actor: &str) -> Vec<String> {
        vec![self.keys[actor].keyid()]
    }

    fn append(&mut self, actor: &str, kind: &str, data: Value) {
        let st = self.statement(actor, kind, data);
        let signers = self.signers(actor);
        fold(&mut self.state, &st, &signers, self.now_ms);
    }

    fn automate(&mut self) {
        for st in projector::automation(&self.state, self.now_ms) {
            let signers = self.signers("automation");
            fold(&mut self.state, &st, &signers, self.now_ms);
        }
    }
}

fn fold(state: &mut State, st: &Statement, signers: &[String], now_ms: i64) {
    if let Err(r) = projector::check(state, st, signers, now_ms) {
        panic!("{} rejected: {r}", st.kind);
    }
    let seq = state.size();
    projector::apply(state, &Event { seq, received_at_ms: now_ms, statement: st, signers });
}

fn setup() -> Bench {
    let mut keys = std::collections::BTreeMap::new();
    for (i, name) in ["admin", "automation", "rev1", "rev2", "bot", "meter", "quansight"].into_iter().enumerate() {
        keys.insert(name, SigningKey::from_seed(name, [i as u8 + 1; 32]).unwrap());
    }
    let log_key = SigningKey::from_seed(ORIGIN, [99; 32]).unwrap();
    let mut b = Bench { state: State::new(), keys, n: 0, now_ms: T0_MS };
    let genesis = json!({"admins": [b.keys["admin"].verifier().to_string()],
        "automation_key": b.keys["automation"].verifier().to_string(), "log_key": log_key.verifier().to_string()});
    b.append("admin", "ledger.genesis", genesis);
    for (name, role) in
        [("rev1", "reviewer"), ("rev2", "reviewer"), ("bot", "requester"), ("meter", "meter"), ("quansight", "sponsor")]
    {
        let key = b.keys[name].verifier().to_string();
        b.append("admin", "actor.registered", json!({"actor": name, "key": key, "roles": [role]}));
    }
    b.append(
        "admin",
        "resource.defined",
        json!({"resource": "gpu", "provider": "cirun", "unit": "runner-minutes", "approvals_required": 2}),
    );
    b.append(
        "admin",
        "resource.defined",
        json!({"resource": "gpu2", "provider": "ns", "unit": "runner-minutes", "approvals_required": 1}),
    );
    b.append("admin", "sponsor.registered", json!({"sponsor": "quansight", "name": "Quansight"}));
    b.append("quansight", "credits.deposited", json!({"pool": "qs", "sponsor": "quansight", "amount": 1_000_000_000u64, "unit": "runner-minutes", "resources": ["*"]}));
    for p in 0..PROJECTS {
        let request = format!("r{p}");
        b.append("bot", "access.requested", json!({"request": request, "project": format!("p{p}-feedstock"), "resource": "gpu", "justification": "x", "pull_request": false, "credits": 1_000_000}));
        b.append("rev1", "request.approved", json!({"request": request, "pool": "qs"}));
        b.append("rev2", "request.approved", json!({"request": request}));
        b.automate();
    }
    // Open requests for the approval/denial benches.
    for p in 0..10 {
        b.append("bot", "access.requested", json!({"request": format!("open{p}"), "project": format!("p{p}-feedstock"), "resource": "gpu", "justification": "x", "pull_request": false}));
    }
    b
}

fn bench_apply(c: &mut Criterion) {
    let mut b = setup();
    let new_key = SigningKey::from_seed("carol", [7; 32]).unwrap().verifier().to_string();
    let bot_key2 = SigningKey::from_seed("bot", [8; 32]).unwrap().verifier().to_string();
    let window = format_rfc3339_ms(T0_MS);
    let cases: Vec<(&str, &str, Value)> = vec![
        ("admin", "actor.registered", json!({"actor": "carol", "key": new_key, "roles": ["reviewer"]})),
        ("admin", "actor.roles_set", json!({"actor": "bot", "roles": ["requester", "meter"]})),
        ("bot", "key.added", json!({"actor": "bot", "key": bot_key2})),
        ("admin", "key.revoked", json!({"actor": "rev2", "key": b.keys["rev2"].verifier().to_string()})),
        (
            "admin",
            "resource.defined",
            json!({"resource": "tpu", "provider": "x", "unit": "runner-minutes", "approvals_required": 1}),
        ),
        ("admin", "resource.retired", json!({"resource": "gpu2"})),
        ("admin", "sponsor.registered", json!({"sponsor": "nvidia", "name": "NVIDIA"})),
        (
            "quansight",
            "credits.deposited",
            json!({"pool": "qs", "sponsor": "quansight", "amount": 5, "unit": "runner-minutes", "resources": ["*"]}),
        ),
        (
            "bot",
            "access.requested",
            json!({"request": "new", "project": "numpy-feedstock", "resource": "gpu", "justification": "x", "pull_request": false}),
        ),
        ("rev1", "request.approved", json!({"request": "open1", "pool": "qs", "credits": 10})),
        ("rev1", "request.denied", json!({"request": "open2", "reason": "no"})),
        ("bot", "request.withdrawn", json!({"request": "open3"})),
        (
            "admin",
            "grant.issued",
            json!({"grant": "direct", "project": "numpy-feedstock", "resource": "gpu", "pull_request": true, "users": ["wolfv"]}),
        ),
        ("rev1", "grant.revoked", json!({"grant": "grant:r7", "reason": "x"})),
        (
            "meter",
            "usage.reported",
            json!({"usage": "job-x", "project": "p5-feedstock", "resource": "gpu", "amount": 3, "started_at": window, "ended_at": window}),
        ),
        ("bot", "user.terms_accepted", json!({"user": "wolfv", "github_id": 885054, "terms": "t1"})),
        (
            "admin",
            "grants.migrated",
            json!({"from_resource": "gpu", "to_resource": "gpu2", "reason": "provider change"}),
        ),
    ];
    let mut group = c.benchmark_group("check_apply");
    for (actor, kind, data) in cases {
        let st = b.statement(actor, kind, data);
        let signers = b.signers(actor);
        let now_ms = b.now_ms;
        group.bench_function(kind, |bench| {
            bench.iter_batched(
                || b.state.clone(),
                |mut state| {
                    fold(&mut state, &st, &signers, now_ms);
                    state
                },
                BatchSize::SmallInput,
            )
        });
    }
    // The automation's own events, on a state where they are due.
    b.append("bot", "access.requested", json!({"request": "quorum", "project": "scipy-feedstock", "resource": "gpu", "justification": "x", "pull_request": false, "days": 1}));
    b.append("rev1", "request.approved", json!({"request": "quorum"}));
    b.append("rev2", "request.approved", json!({"request": "quorum"}));
    let issued = projector::automation(&b.state, b.now_ms);
    let signers = b.signers("automation");
    let now_ms = b.now_ms;
    group.bench_function("grant.issued (automation)", |bench| {
        bench.iter_batched(
            || b.state.clone(),
            |mut state| {
                fold(&mut state, &issued[0], &signers, now_ms);
                state
            },
            BatchSize::SmallInput,
        )
    });
    b.automate();
    b.now_ms += 2 * 86_400_000;
    let expired = projector::automation(&b.state, b.now_ms);
    let now_ms = b.now_ms;
    group.bench_function("grant.expired", |bench| {
        bench.iter_batched(
            || b.state.clone(),
            |mut state| {
                fold(&mut state, &expired[0], &signers, now_ms);
                state
            },
            BatchSize::SmallInput,
        )
    });
    b.automate();
    b.append("bot", "access.requested", json!({"request": "small", "project": "small-feedstock", "resource": "gpu", "justification": "x", "pull_request": false, "credits": 1}));
    b.append("rev1", "request.approved", json!({"request": "small"}));
    b.append("rev2", "request.approved", json!({"request": "small"}));
    b.automate();
    let window = format_rfc3339_ms(b.now_ms);
    b.append("meter", "usage.reported", json!({"usage": "job-small", "project": "small-feedstock", "resource": "gpu", "amount": 1, "started_at": window, "ended_at": window}));
    let exhausted = projector::automation(&b.state, b.now_ms);
    assert_eq!(exhausted[0].kind, "grant.exhausted");
    group.bench_function("grant.exhausted", |bench| {
        bench.iter_batched(
            || b.state.clone(),
            |mut state| {
                fold(&mut state, &exhausted[0], &signers, now_ms);
                state
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
    c.bench_function("state_clone", |bench| bench.iter(|| b.state.clone()));
    c.bench_function("automation_scan", |bench| bench.iter(|| projector::automation(&b.state, T0_MS)));
}

criterion_group!(benches, bench_apply);
criterion_main!(benches);
