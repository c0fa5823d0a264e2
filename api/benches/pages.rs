//! Server-side rendering time of the public pages with 10,000 grants.
//!
//! Run: `cargo bench -p grantline --bench pages` (quick check that it runs:
//! `cargo bench -p grantline --bench pages -- --test`). Figures are in BENCHMARKS.md.
//!
//! The state is built the way the server builds it: each statement passes `projector::check`
//! and is folded with `projector::apply` (signatures are not made; `check` is given the
//! signer's keyid as if it had verified).

use api::testing::{self as pages, LogFacts};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use ledger::keys::SigningKey;
use ledger::statement::{format_rfc3339_ms, Statement};
use projector::{Event, State};
use serde_json::{json, Value};

const GRANTS: usize = 10_000;
const RESOURCES: usize = 4;
const PENDING_REQUESTS: usize = 200;
const USAGE_DAYS: i64 = 60;
const ORIGIN: &str = "bench.example/ci";
const DAY_MS: i64 = 86_400_000;
/// 2026-03-01T00:00:00Z.
const T0_MS: i64 = 1_772_323_200_000;

struct Builder {
    state: State,
    keys: Vec<SigningKey>,
    now_ms: i64,
    next_id: u64,
}

impl Builder {
    fn keyid(&self, actor: &str) -> String {
        self.keys.iter().find(|k| k.name() == actor).map(|k| k.keyid()).unwrap()
    }

    fn ok(&mut self, actor: &str, kind: &str, data: Value) {
        self.next_id += 1;
        let st = Statement {
            ledger: ORIGIN.to_string(),
            id: format!("b-{}", self.next_id),
            actor: actor.to_string(),
            issued_at: format_rfc3339_ms(self.now_ms),
            kind: kind.to_string(),
            data,
        };
        let signers = vec![self.keyid(actor)];
        if let Err(r) = projector::check(&self.state, &st, &signers, self.now_ms) {
            panic!("{kind} rejected: {r}");
        }
        let seq = self.state.size();
        projector::apply(
            &mut self.state,
            &Event { seq, received_at_ms: self.now_ms, statement: &st, signers: &signers },
        );
    }
}

/// 10,000 active grants over 4 resources, all drawing on one sponsor's pool, each with one
/// usage report spread over 60 days, plus 200 pending requests.
fn state() -> State {
    let key = |name: &str| SigningKey::from_seed(name, [name.len() as u8; 32]).unwrap();
    let (admin, automation, log) = (key("admin"), key("automation"), key(ORIGIN));
    let mut b = Builder {
        state: State::new(),
        keys: vec![admin.clone(), automation.clone(), key("meter"), key("bot"), key("rev")],
        now_ms: T0_MS,
        next_id: 0,
    };
    b.ok(
        "admin",
        "ledger.genesis",
        json!({"admins": [admin.verifier().to_string()], "automation_key": automation.verifier().to_string(),
            "log_key": log.verifier().to_string()}),
    );
    for (name, role) in [("meter", "meter"), ("bot", "requester"), ("rev", "reviewer")] {
        let vkey = key(name).verifier().to_string();
        b.ok("admin", "actor.registered", json!({"actor": name, "key": vkey, "roles": [role]}));
    }
    for r in 0..RESOURCES {
        b.ok(
            "admin",
            "resource.defined",
            json!({"resource": format!("runner-{r}"), "provider": "cirun", "unit": "runner-minutes", "approvals_required": 2}),
        );
    }
    b.ok("admin", "sponsor.registered", json!({"sponsor": "numfocus", "name": "NumFOCUS"}));
    b.ok(
        "admin",
        "credits.deposited",
        json!({"pool": "numfocus-2026", "sponsor": "numfocus", "amount": 100_000_000u64, "unit": "runner-minutes", "resources": ["*"]}),
    );
    for i in 0..GRANTS {
        b.ok(
            "admin",
            "grant.issued",
            json!({"grant": format!("grant:{i}"), "project": format!("project-{i:05}-feedstock"),
                "resource": format!("runner-{}", i % RESOURCES), "pull_request": i % 3 == 0, "pool": "numfocus-2026",
                "credit_limit": 5000, "expires_at": format_rfc3339_ms(T0_MS + 365 * DAY_MS)}),
        );
    }
    b.now_ms = T0_MS + USAGE_DAYS * DAY_MS;
    for i in 0..GRANTS {
        let ended = T0_MS + (i as i64 % USAGE_DAYS) * DAY_MS + 3_600_000;
        b.ok(
            "meter",
            "usage.reported",
            json!({"usage": format!("job-{i}"), "project": format!("project-{i:05}-feedstock"),
                "resource": format!("runner-{}", i % RESOURCES), "amount": 1 + i % 97,
                "started_at": format_rfc3339_ms(ended - 1_800_000), "ended_at": format_rfc3339_ms(ended)}),
        );
    }
    for i in 0..PENDING_REQUESTS {
        b.ok(
            "bot",
            "access.requested",
            json!({"request": format!("req-{i}"), "project": format!("new-{i}-feedstock"), "resource": "runner-0",
                "justification": "GPU builds time out on the free runners", "pull_request": false}),
        );
        b.ok("rev", "request.approved", json!({"request": format!("req-{i}"), "note": "looks fine"}));
    }
    b.state
}

fn render(c: &mut Criterion) {
    let state = state();
    let facts = LogFacts {
        origin: ORIGIN.to_string(),
        size: state.size(),
        checkpoint: format!("{ORIGIN}\n{}\nAAAA\n\n— {ORIGIN} BBBB\n", state.size()),
        log_key: SigningKey::from_seed(ORIGIN, [3; 32]).unwrap().verifier().to_string(),
        now_ms: T0_MS + USAGE_DAYS * DAY_MS,
        witnesses: Vec::new(),
    };
    assert_eq!(state.stats(facts.now_ms).active_grants, GRANTS as u64);
    let mut group = c.benchmark_group("pages_10k_grants");
    group.bench_function("index", |b| b.iter(|| pages::index(black_box(&state), &facts, None, 1).unwrap()));
    group.bench_function("index_one_resource_page", |b| {
        b.iter(|| pages::index(black_box(&state), &facts, Some("runner-0"), 2).unwrap())
    });
    group.bench_function("sponsor", |b| b.iter(|| pages::sponsor(black_box(&state), &facts, "numfocus").unwrap()));
    group.bench_function("requests", |b| b.iter(|| pages::requests(black_box(&state), &facts, 1)));
    group.bench_function("project", |b| {
        b.iter(|| pages::project(black_box(&state), &facts, "project-04242-feedstock").unwrap())
    });
    group.finish();
    // For comparison: what `GET /v1/allocations` computes (every active grant's full view),
    // and the summary `/` uses instead.
    let mut group = c.benchmark_group("projector_10k_grants");
    group.bench_function("allocations_all", |b| b.iter(|| black_box(&state).allocations(None, None, facts.now_ms)));
    group.bench_function("runner_labels", |b| b.iter(|| black_box(&state).runner_labels(facts.now_ms)));
    group.finish();
    let sizes = [
        ("index", pages::index(&state, &facts, None, 1).unwrap().len()),
        ("sponsor", pages::sponsor(&state, &facts, "numfocus").unwrap().len()),
        ("requests", pages::requests(&state, &facts, 1).len()),
    ];
    for (page, bytes) in sizes {
        println!("{page}: {bytes} bytes of HTML");
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = render
}
criterion_main!(benches);
