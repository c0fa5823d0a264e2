//! The whole access story, from genesis through requests, approvals, grants, usage and
//! revocation, checking every projection along the way, then an auditor's replay.

mod common;

use common::*;
use projector::{AccessQuery, GrantStatus};
use serde_json::json;

const PROJECT: &str = "pytorch-cpu-feedstock";
const GPU: &str = "cirun-openstack-gpu-large";

fn check(w: &World, project: &str, resource: &str) -> projector::AccessAnswer {
    let q = AccessQuery { project: project.into(), resource: resource.into(), ..Default::default() };
    w.state.access_check(&q, w.now_ms)
}

#[test]
fn the_whole_story() {
    let mut w = World::new();
    // An admin registers actors and resources.
    w.register("conda-forge-bot", &["requester"]);
    w.register("isuruf", &["reviewer"]);
    w.register("jaimergp", &["reviewer"]);
    w.register("h-vetinari", &["reviewer", "requester"]);
    w.register("cirun-meter", &["meter"]);
    w.register("quansight", &["sponsor"]);
    let gpu_seq = w.ok(
        "admin",
        "resource.defined",
        json!({"resource": GPU, "provider": "cirun", "unit": "runner-minutes", "approvals_required": 2, "max_days": 90}),
    );
    w.define_resource("cirun-openstack-cpu-large", 1);
    let resources = w.state.resources();
    assert_eq!(resources.iter().map(|r| r.resource.as_str()).collect::<Vec<_>>(), ["cirun-openstack-cpu-large", GPU]);
    assert_eq!(w.state.actors().len(), 8);
    assert_eq!(w.state.stats(w.now_ms).actors, 8);

    // A sponsor deposits 1,000 runner-minutes.
    w.ok("admin", "sponsor.registered", json!({"sponsor": "quansight", "name": "Quansight"}));
    w.ok(
        "quansight",
        "credits.deposited",
        json!({"pool": "qs-gpu", "sponsor": "quansight", "amount": 1000, "unit": "runner-minutes", "resources": [GPU]}),
    );
    assert_eq!(w.state.sponsors()[0].sponsor, "quansight");
    let usage = w.state.sponsor_usage("quansight", None, None).unwrap();
    assert_eq!(
        (usage.pools[0].deposited, usage.pools[0].allocated, usage.pools[0].used, usage.pools[0].remaining),
        (1000, 0, 0, 1000)
    );
    assert_eq!(check(&w, PROJECT, GPU).reason, "no_request");

    // The bot requests GPU access for pytorch-cpu-feedstock on behalf of h-vetinari.
    let req_seq = w.ok(
        "conda-forge-bot",
        "access.requested",
        json!({"request": "pytorch-gpu-1", "project": PROJECT, "resource": GPU, "justification": "CUDA builds time out",
               "pull_request": true, "on_behalf_of": "h-vetinari", "evidence_url": "https://github.com/conda-forge/admin-requests/pull/1",
               "credits": 400, "days": 30}),
    );
    assert_eq!(w.state.requests(Some("pending")).len(), 1);
    assert_eq!(check(&w, PROJECT, GPU).reason, "awaiting_approvals (0 of 2)");

    // Self-approval is rejected (h-vetinari is the person it is for).
    w.err("h-vetinari", "request.approved", json!({"request": "pytorch-gpu-1"}), "self_approval");
    // Two reviewers approve; the first names the pool.
    let a1 = w.ok("isuruf", "request.approved", json!({"request": "pytorch-gpu-1", "pool": "qs-gpu"}));
    assert_eq!(check(&w, PROJECT, GPU).reason, "awaiting_approvals (1 of 2)");
    let a2 = w.ok("jaimergp", "request.approved", json!({"request": "pytorch-gpu-1", "credits": 300}));
    assert_eq!(check(&w, PROJECT, GPU).reason, "awaiting_grant");

    // The grant is issued automatically.
    let issued = w.automate();
    assert_eq!(issued.len(), 1);
    let answer = check(&w, PROJECT, GPU);
    assert!(answer.allowed);
    assert_eq!(answer.reason, "ok");
    let grant = answer.grant.unwrap();
    assert_eq!((grant.credit_limit, grant.pool.as_deref(), grant.issued_seq), (Some(300), Some("qs-gpu"), issued[0]));
    let pr = AccessQuery { project: PROJECT.into(), resource: GPU.into(), pull_request: true, ..Default::default() };
    assert!(w.state.access_check(&pr, w.now_ms).allowed);
    // Names that are not exactly the project never match.
    for other in [
        "PyTorch-cpu-feedstock",
        "pytorch-cpu-feedstock-fork",
        "pytorch-cpu",
        "pytorch-cpu-feedstock/../x",
        "pytorch-cpu-feedstock ",
        "pytorch-cpu-feedstосk",
    ] {
        assert!(!check(&w, other, GPU).allowed, "{other:?} must not match");
    }
    let req = w.state.request("pytorch-gpu-1").unwrap();
    assert_eq!(
        (req.status.as_str(), req.grant.as_deref(), req.approvals.len()),
        ("granted", Some(grant.grant.as_str()), 2)
    );
    assert_eq!(req.timeline.iter().map(|t| t.seq).collect::<Vec<_>>(), [req_seq, a1, a2, issued[0]]);
    let alloc = w.state.allocations(None, None, w.now_ms);
    assert_eq!(alloc.resources.len(), 1);
    assert_eq!(alloc.resources[0].resource, GPU);
    assert_eq!(alloc.resources[0].grants[0].project, PROJECT);
    assert_eq!(w.state.allocations(None, Some("numpy-feedstock"), w.now_ms).resources.len(), 0);
    let pool = &w.state.sponsor_usage("quansight", None, None).unwrap().pools[0];
    assert_eq!((pool.allocated, pool.remaining), (300, 1000));
    assert_eq!(w.state.runner_labels(w.now_ms)[PROJECT], [GPU]);
    let explain =
        w.state.explain(&AccessQuery { project: PROJECT.into(), resource: GPU.into(), ..Default::default() }, w.now_ms);
    let seqs: Vec<(String, Option<u64>)> = explain.steps.iter().map(|s| (s.step.clone(), s.seq)).collect();
    assert_eq!(seqs[1], ("resource".to_string(), Some(gpu_seq)));
    assert_eq!(seqs[2], ("request".to_string(), Some(req_seq)));
    assert_eq!(seqs[3], ("approvals".to_string(), Some(a2)));
    assert_eq!(seqs[4], ("grant".to_string(), Some(issued[0])));
    assert!(explain.steps.iter().all(|s| s.ok));

    // Usage is reported until the grant is exhausted.
    let mut job = 0;
    while check(&w, PROJECT, GPU).allowed {
        job += 1;
        w.advance(60 * MINUTE_MS);
        w.usage_as("cirun-meter", &format!("job-{job}"), PROJECT, GPU, 70).unwrap();
    }
    assert_eq!(job, 5, "300 minutes in 70-minute jobs: the fifth overshoots");
    let g = &w.state.project_grants(PROJECT, w.now_ms)[0];
    assert_eq!((g.used, &g.status), (350, &GrantStatus::Exhausted));
    assert_eq!(check(&w, PROJECT, GPU).reason, "grant_exhausted");
    assert_eq!(w.usage_as("cirun-meter", "job-6", PROJECT, GPU, 1).unwrap_err().code, "no_active_grant");
    let exhausted = w.automate();
    assert_eq!(w.log[exhausted[0] as usize].statement.kind, "grant.exhausted");
    let usage = w.state.sponsor_usage("quansight", None, None).unwrap();
    assert_eq!((usage.pools[0].used, usage.pools[0].remaining, usage.pools[0].allocated), (350, 650, 350));
    assert_eq!(usage.projects[0].used, 350);
    assert_eq!(usage.series.iter().map(|d| d.amount).sum::<u64>(), 350);
    let history = w.state.project_history(PROJECT);
    assert!(history
        .iter()
        .any(|h| h.kind == "usage.reported" && h.detail.as_deref().unwrap().starts_with("5 reports")));
    assert_eq!(history.last().unwrap().kind, "grant.exhausted");

    // Another grant is revoked.
    w.ok("conda-forge-bot", "access.requested", json!({"request": "jaxlib-cpu", "project": "jaxlib-feedstock", "resource": "cirun-openstack-cpu-large", "justification": "slow", "pull_request": false}));
    w.ok("isuruf", "request.approved", json!({"request": "jaxlib-cpu"}));
    w.automate();
    assert!(check(&w, "jaxlib-feedstock", "cirun-openstack-cpu-large").allowed);
    let jax_grant = w.state.request("jaxlib-cpu").unwrap().grant.unwrap();
    w.ok("admin", "grant.revoked", json!({"grant": jax_grant, "reason": "moved to another provider"}));
    assert_eq!(check(&w, "jaxlib-feedstock", "cirun-openstack-cpu-large").reason, "grant_revoked");

    // A third expires.
    w.ok("conda-forge-bot", "access.requested", json!({"request": "tf-cpu", "project": "tensorflow-feedstock", "resource": "cirun-openstack-cpu-large", "justification": "slow", "pull_request": false, "days": 3}));
    w.ok("jaimergp", "request.approved", json!({"request": "tf-cpu"}));
    w.automate();
    assert!(check(&w, "tensorflow-feedstock", "cirun-openstack-cpu-large").allowed);
    assert_eq!(w.state.stats(w.now_ms).active_grants, 1);
    w.advance(3 * DAY_MS);
    assert_eq!(check(&w, "tensorflow-feedstock", "cirun-openstack-cpu-large").reason, "grant_expired");
    assert_eq!(w.state.stats(w.now_ms).active_grants, 0);
    let expired = w.automate();
    assert_eq!(w.log[expired[0] as usize].statement.kind, "grant.expired");
    assert!(w.state.allocations(None, None, w.now_ms).resources.is_empty());
    assert!(w.state.runner_labels(w.now_ms).is_empty());

    // A revoked key's later event is rejected.
    let old = w.keys["isuruf"].clone();
    w.ok(
        "admin",
        "key.revoked",
        json!({"actor": "isuruf", "key": old.verifier().to_string(), "reason": "laptop stolen"}),
    );
    w.ok("conda-forge-bot", "access.requested", json!({"request": "numpy-gpu", "project": "numpy-feedstock", "resource": GPU, "justification": "x", "pull_request": false}));
    w.err("isuruf", "request.approved", json!({"request": "numpy-gpu"}), "key_revoked");
    assert!(w.state.request("numpy-gpu").unwrap().approvals.is_empty());
    let isuruf = w.state.actors().into_iter().find(|a| a.actor == "isuruf").unwrap();
    assert!(isuruf.keys[0].revoked_seq.is_some());

    let stats = w.state.stats(w.now_ms);
    assert_eq!((stats.grants, stats.requests, stats.pending_requests, stats.events), (3, 4, 1, w.log.len() as u64));

    // The auditor's replay accepts every record and ends in the same state.
    let replayed = w.replay();
    assert_eq!(serialized(&replayed), serialized(&w.state));
}

trait UsageAs {
    fn usage_as(
        &mut self,
        meter: &str,
        usage: &str,
        project: &str,
        resource: &str,
        amount: u64,
    ) -> Result<u64, projector::Rejection>;
}

impl UsageAs for World {
    fn usage_as(
        &mut self,
        meter: &str,
        usage: &str,
        project: &str,
        resource: &str,
        amount: u64,
    ) -> Result<u64, projector::Rejection> {
        let data = self.usage_data(usage, project, resource, amount);
        self.try_as(meter, "usage.reported", data)
    }
}
