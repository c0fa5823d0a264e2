//! Determinism (same records, same state) over random valid event sequences, and the
//! 1,000,000-record fold.

mod common;

use common::*;
use ledger::statement::{format_rfc3339_ms, Statement};
use projector::runner::{FinishedJob, Metering};
use projector::{Event, State};
use proptest::prelude::*;
use serde_json::json;

const PROJECTS: [&str; 3] = ["pytorch-cpu-feedstock", "jaxlib-feedstock", "numpy-feedstock"];
const RESOURCES: [&str; 3] = ["gpu", "cpu", "blacksmith-gpu"];
const REVIEWERS: [&str; 3] = ["rev1", "rev2", "rev3"];

#[derive(Debug, Clone)]
enum Op {
    Request {
        project: usize,
        resource: usize,
        credits: Option<u64>,
        days: Option<u64>,
        pr: bool,
    },
    Approve {
        reviewer: usize,
        request: usize,
        pool: bool,
        credits: Option<u64>,
    },
    Deny {
        request: usize,
    },
    Withdraw {
        request: usize,
    },
    Usage {
        project: usize,
        resource: usize,
        job: u8,
        amount: u64,
    },
    Revoke {
        grant: usize,
    },
    Advance {
        hours: i64,
    },
    Terms {
        user: u8,
        id: u64,
        accept: bool,
    },
    Migrate {
        from: usize,
        to: usize,
    },
    Deposit {
        amount: u64,
    },
    Retire {
        resource: usize,
    },
    /// A job finished on a runner: metered from its webhook and appended by the automation key.
    Job {
        project: usize,
        resource: usize,
        started_ago_min: i64,
        duration_min: i64,
    },
    Vouch {
        project: usize,
        user: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3usize, 0..3usize, proptest::option::of(1..500u64), proptest::option::of(1..5u64), any::<bool>())
            .prop_map(|(project, resource, credits, days, pr)| Op::Request { project, resource, credits, days, pr }),
        6 => (0..3usize, 0..6usize, any::<bool>(), proptest::option::of(1..400u64))
            .prop_map(|(reviewer, request, pool, credits)| Op::Approve { reviewer, request, pool, credits }),
        1 => (0..8usize).prop_map(|request| Op::Deny { request }),
        1 => (0..8usize).prop_map(|request| Op::Withdraw { request }),
        6 => (0..3usize, 0..3usize, 0..30u8, 1..150u64)
            .prop_map(|(project, resource, job, amount)| Op::Usage { project, resource, job, amount }),
        1 => (0..8usize).prop_map(|grant| Op::Revoke { grant }),
        2 => (0..60i64).prop_map(|hours| Op::Advance { hours }),
        2 => (0..4u8, 1..3u64, any::<bool>()).prop_map(|(user, id, accept)| Op::Terms { user, id, accept }),
        1 => (0..3usize, 0..3usize).prop_map(|(from, to)| Op::Migrate { from, to }),
        1 => (1..500u64).prop_map(|amount| Op::Deposit { amount }),
        1 => (0..3usize).prop_map(|resource| Op::Retire { resource }),
        4 => (0..3usize, 0..3usize, 0..3000i64, 0..120i64)
            .prop_map(|(project, resource, started_ago_min, duration_min)| Op::Job { project, resource, started_ago_min, duration_min }),
        1 => (0..3usize, 0..4u8).prop_map(|(project, user)| Op::Vouch { project, user }),
    ]
}

/// Plays the ops; rejected ones leave no record, so the log holds only valid events.
fn play(ops: &[Op]) -> World {
    let mut w = World::standard();
    w.register("rev3", &["reviewer"]);
    w.ok("admin", "resource.defined", json!({"resource": "blacksmith-gpu", "provider": "blacksmith", "unit": "runner-minutes", "approvals_required": 1, "max_days": 3, "terms": "bs-1"}));
    let mut requests = 0usize;
    let mut jobs = 0u64;
    for op in ops {
        let _ = match op.clone() {
            Op::Request { project, resource, credits, days, pr } => {
                requests += 1;
                let mut data = json!({"request": format!("r{requests}"), "project": PROJECTS[project], "resource": RESOURCES[resource],
                    "justification": "x", "pull_request": pr, "users_from_json": "https://example.org/users.json"});
                if let Some(c) = credits { data["credits"] = json!(c); }
                if let Some(d) = days { data["days"] = json!(d); }
                w.try_as("bot", "access.requested", data)
            }
            Op::Approve { reviewer, request, pool, credits } => {
                let mut data = json!({"request": format!("r{}", request + 1)});
                if pool { data["pool"] = json!("qs-gpu"); }
                if let Some(c) = credits { data["credits"] = json!(c); }
                w.try_as(REVIEWERS[reviewer], "request.approved", data)
            }
            Op::Deny { request } => w.try_as("rev1", "request.denied", json!({"request": format!("r{}", request + 1), "reason": "no"})),
            Op::Withdraw { request } => w.try_as("bot", "request.withdrawn", json!({"request": format!("r{}", request + 1)})),
            Op::Usage { project, resource, job, amount } => w.usage(&format!("job-{job}"), PROJECTS[project], RESOURCES[resource], amount),
            Op::Revoke { grant } => {
                let grants: Vec<String> = PROJECTS.iter().flat_map(|p| w.state.project_grants(p, w.now_ms)).map(|g| g.grant).collect();
                match grants.get(grant) {
                    Some(g) => w.try_as("rev2", "grant.revoked", json!({"grant": g, "reason": "r"})),
                    None => Ok(0),
                }
            }
            Op::Advance { hours } => {
                w.advance(hours * 3_600_000);
                Ok(0)
            }
            Op::Terms { user, id, accept } => {
                let kind = if accept { "user.terms_accepted" } else { "user.terms_withdrawn" };
                w.try_as("bot", kind, json!({"user": format!("user{user}"), "github_id": id, "terms": "bs-1"}))
            }
            Op::Migrate { from, to } => w.try_as("admin", "grants.migrated", json!({"from_resource": RESOURCES[from], "to_resource": RESOURCES[to], "reason": "move"})),
            Op::Deposit { amount } => w.try_as("quansight", "credits.deposited", json!({"pool": "qs-gpu", "sponsor": "quansight", "amount": amount, "unit": "runner-minutes", "resources": ["*"]})),
            Op::Retire { resource } => w.try_as("admin", "resource.retired", json!({"resource": RESOURCES[resource]})),
            Op::Job { project, resource, started_ago_min, duration_min } => {
                jobs += 1;
                let started_ms = w.now_ms - started_ago_min * 60_000;
                let job = FinishedJob {
                    repository_id: 7,
                    owner: "conda-forge".into(),
                    project: PROJECTS[project].into(),
                    job_id: jobs,
                    run_attempt: 1,
                    labels: vec![format!("{}--{jobs}-linux_64", RESOURCES[resource])],
                    runner_name: Some("runner".into()),
                    conclusion: Some("success".into()),
                    started_at: format_rfc3339_ms(started_ms),
                    completed_at: format_rfc3339_ms((started_ms + duration_min * 60_000).min(w.now_ms)),
                    html_url: None,
                };
                match w.state.meter("conda-forge", &job) {
                    // What metering produces, check accepts: whatever happened to the grants.
                    Metering::Statement(st) => {
                        let signers = w.signer("automation");
                        let kind = st.kind.clone();
                        Ok(w.submit(st, signers).unwrap_or_else(|r| panic!("metered {kind} refused: {r}")))
                    }
                    _ => Ok(0),
                }
            }
            Op::Vouch { project, user } => w.try_as(
                "bot",
                "job.vouched",
                json!({"project": PROJECTS[project], "head_sha": "0123456789abcdef0123456789abcdef01234567", "user": format!("user{user}"), "github_id": 1}),
            ),
        };
        w.automate();
    }
    w
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn replaying_the_same_records_gives_the_same_state(ops in proptest::collection::vec(op(), 1..200)) {
        let w = play(&ops);
        let first = serialized(&w.replay());
        let second = serialized(&w.replay());
        prop_assert_eq!(&first, &second);
        prop_assert_eq!(&first, &serialized(&w.state));
        // A snapshot round trip keeps the state.
        let back: State = serde_json::from_str(&first).unwrap();
        prop_assert_eq!(serialized(&back), first);
        // Credits never go negative: allocations and usage stay consistent.
        for pool in w.state.sponsor_usage("quansight", None, None).unwrap().pools {
            prop_assert_eq!(pool.remaining, pool.deposited.saturating_sub(pool.used));
        }
    }
}

/// Records per project cycle: request, 2 approvals, grant, `USAGE_PER_GRANT` reports, exhaustion.
const USAGE_PER_GRANT: u64 = 100;
const FOLD_RECORDS: u64 = 1_000_000;
const FOLD_PROJECTS: usize = 500;
/// The server publishes a snapshot after every batch; the fold clones this often.
const SNAPSHOT_EVERY_RECORDS: u32 = 100;

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Folds 1,000,000 generated records with check + apply (as the sequencer and the auditor
/// do), publishing an O(1) snapshot clone after every 100 records. Run with
/// `cargo test -p grantline-projector --release -- --ignored --nocapture`.
#[test]
#[ignore]
fn fold_a_million_records() {
    let mut w = World::standard();
    w.ok("quansight", "credits.deposited", json!({"pool": "qs-gpu", "sponsor": "quansight", "amount": 1_000_000_000_000u64, "unit": "runner-minutes", "resources": ["*"]}));
    let mut state = w.state.clone();
    let mut seq = state.size();
    let mut now_ms = w.now_ms;
    let signer = |name: &str| w.signer(name);
    let (bot, rev1, rev2, meter, automation) =
        (signer("bot"), signer("rev1"), signer("rev2"), signer("meter"), signer("automation"));
    // Per project: 0 = request next, 1/2 = approvals next, 3.. = usage.
    let mut phase = vec![0u64; FOLD_PROJECTS];
    let mut cycle = vec![0u64; FOLD_PROJECTS];
    let mut snapshot = state.clone();
    let started = std::time::Instant::now();
    let mut job = 0u64;
    let fold = |state: &mut State, st: Statement, signers: &[String], seq: &mut u64, now_ms: i64| {
        projector::check(state, &st, signers, now_ms).unwrap_or_else(|r| panic!("seq {seq}: {r}"));
        projector::apply(state, &Event { seq: *seq, received_at_ms: now_ms, statement: &st, signers });
        *seq += 1;
    };
    let mut p = 0usize;
    let mut since_snapshot = 0u32;
    while seq < FOLD_RECORDS {
        now_ms += 1_000;
        let project = format!("project-{p}-feedstock");
        let request = format!("req-{p}-{}", cycle[p]);
        let (actor, kind, data, signers) = match phase[p] {
            0 => (
                "bot",
                "access.requested",
                json!({"request": request, "project": project, "resource": "gpu", "justification": "x", "pull_request": false, "credits": USAGE_PER_GRANT}),
                &bot,
            ),
            1 => ("rev1", "request.approved", json!({"request": request, "pool": "qs-gpu"}), &rev1),
            2 => ("rev2", "request.approved", json!({"request": request}), &rev2),
            _ => {
                job += 1;
                (
                    "meter",
                    "usage.reported",
                    json!({"usage": format!("job-{job}"), "project": project, "resource": "gpu", "amount": 1,
                    "started_at": format_rfc3339_ms(now_ms - 60_000), "ended_at": format_rfc3339_ms(now_ms)}),
                    &meter,
                )
            }
        };
        let st = Statement {
            ledger: ORIGIN.into(),
            id: format!("s{seq}"),
            actor: actor.into(),
            issued_at: format_rfc3339_ms(now_ms),
            kind: kind.into(),
            data,
        };
        fold(&mut state, st, signers, &mut seq, now_ms);
        phase[p] += 1;
        if phase[p] == 3 || phase[p] == 3 + USAGE_PER_GRANT {
            for st in projector::automation(&state, now_ms) {
                fold(&mut state, st, &automation, &mut seq, now_ms);
            }
            if phase[p] == 3 + USAGE_PER_GRANT {
                phase[p] = 0;
                cycle[p] += 1;
            }
        }
        since_snapshot += 1;
        if since_snapshot == SNAPSHOT_EVERY_RECORDS {
            snapshot = state.clone();
            since_snapshot = 0;
        }
        p = (p + 1) % FOLD_PROJECTS;
    }
    let elapsed = started.elapsed();
    let stats = state.stats(now_ms);
    let state_bytes = serde_json::to_vec(&state).unwrap().len();
    println!(
        "folded {seq} records in {:.2} s ({:.0} records/s); peak RSS {} MiB; {} grants ({} active), {} requests; snapshot JSON {} MiB",
        elapsed.as_secs_f64(),
        seq as f64 / elapsed.as_secs_f64(),
        peak_rss_kib().unwrap_or(0) / 1024,
        stats.grants,
        stats.active_grants,
        stats.requests,
        state_bytes / (1024 * 1024),
    );
    assert!(seq >= FOLD_RECORDS);
    assert_eq!(snapshot.origin(), Some(ORIGIN));
    let pool = &state.sponsor_usage("quansight", None, None).unwrap().pools[0];
    assert_eq!(pool.used, job);
}
