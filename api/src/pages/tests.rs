//! The pages against a real projected state: statements signed, checked, applied and chained
//! into records exactly as the sequencer does, with the automation's grants.

use crate::fold::Fold;
use ledger::dsse::Envelope;
use ledger::keys::SigningKey;
use ledger::record::Record;
use ledger::statement::{format_rfc3339_ms, parse_rfc3339_ms, Statement};
use ledger::Hash;
use serde_json::{json, Value};

use super::*;

const ORIGIN: &str = "ledger.test/ci";
const RESOURCE: &str = "cirun-openstack-gpu-large";
const PROJECT: &str = "pytorch-cpu-feedstock";
const SCRIPT: &str = "<script>alert(1)</script>";
const HOUR_MS: i64 = 3_600_000;

struct Ledger {
    fold: Fold,
    records: Vec<Record>,
    head: Hash,
    keys: std::collections::BTreeMap<String, SigningKey>,
    now_ms: i64,
    next_id: u64,
}

fn key(name: &str) -> SigningKey {
    let mut seed = [7u8; 32];
    for (i, b) in name.bytes().enumerate() {
        seed[i % 32] ^= b;
    }
    SigningKey::from_seed(name, seed).unwrap()
}

impl Ledger {
    fn new(now: &str) -> Ledger {
        let mut keys = std::collections::BTreeMap::new();
        for name in ["admin", "automation"] {
            keys.insert(name.to_string(), key(name));
        }
        let mut l = Ledger {
            fold: Fold::new(),
            records: Vec::new(),
            head: [0u8; 32],
            keys,
            now_ms: parse_rfc3339_ms(now).unwrap(),
            next_id: 0,
        };
        let data = json!({
            "admins": [l.keys["admin"].verifier().to_string()],
            "automation_key": l.keys["automation"].verifier().to_string(),
            "log_key": key(ORIGIN).verifier().to_string(),
        });
        l.ok("admin", "ledger.genesis", data);
        l
    }

    #[track_caller]
    fn ok(&mut self, actor: &str, kind: &str, data: Value) -> u64 {
        self.next_id += 1;
        let st = Statement {
            ledger: ORIGIN.to_string(),
            id: format!("s-{}", self.next_id),
            actor: actor.to_string(),
            issued_at: format_rfc3339_ms(self.now_ms),
            kind: kind.to_string(),
            data,
        };
        self.append(st);
        self.automate();
        self.fold.state().size() - 1
    }

    #[track_caller]
    fn append(&mut self, st: Statement) {
        let key = &self.keys[&st.actor];
        let signers = vec![(key.keyid(), key.verifier())];
        let seq = match self.fold.admit(&st, &signers, self.now_ms) {
            Ok(seq) => seq,
            Err(r) => panic!("{} by {} rejected: {r}", st.kind, st.actor),
        };
        let envelope = Envelope::sign(st.to_payload(), &[key]).canonical_json();
        let record = Record::new(seq, self.head, self.now_ms, &envelope).unwrap();
        self.head = record.chain_hash();
        self.records.push(record);
    }

    fn automate(&mut self) {
        loop {
            let statements = projector::automation(self.fold.state(), self.now_ms);
            if statements.is_empty() {
                return;
            }
            for st in statements {
                self.append(st);
            }
        }
    }

    fn register(&mut self, name: &str, roles: &[&str]) {
        let k = key(name);
        let data = json!({"actor": name, "key": k.verifier().to_string(), "roles": roles});
        self.keys.insert(name.to_string(), k);
        self.ok("admin", "actor.registered", data);
    }

    fn facts(&self) -> LogFacts {
        LogFacts {
            origin: ORIGIN.to_string(),
            size: self.fold.state().size(),
            checkpoint: format!("{ORIGIN}\n{}\nROOTHASH=\n\n— {ORIGIN} SIGNATURE=\n", self.fold.state().size()),
            log_key: key(ORIGIN).verifier().to_string(),
            now_ms: self.now_ms,
            witnesses: Vec::new(),
        }
    }
}

/// The README walkthrough, plus a pending request whose justification is a script, by a
/// sponsor whose display name is markup.
fn walkthrough() -> Ledger {
    let mut l = Ledger::new("2026-03-01T09:00:00Z");
    l.register("conda-forge-bot", &["requester", "meter"]);
    l.register("alice", &["reviewer"]);
    l.register("bob", &["reviewer"]);
    l.ok(
        "admin",
        "resource.defined",
        json!({"resource": RESOURCE, "provider": "open-gpu-server", "unit": "runner-minutes",
            "approvals_required": 2, "max_days": 365, "description": "GPU runners <b>for CUDA</b> builds"}),
    );
    l.ok("admin", "sponsor.registered", json!({"sponsor": "numfocus", "name": "NumFOCUS"}));
    l.ok(
        "admin",
        "credits.deposited",
        json!({"pool": "numfocus-2026", "sponsor": "numfocus", "amount": 100000, "unit": "runner-minutes", "resources": [RESOURCE]}),
    );
    l.ok(
        "conda-forge-bot",
        "access.requested",
        json!({"request": "gpu-pytorch", "project": PROJECT, "resource": RESOURCE,
            "justification": "CUDA builds time out on the free runners", "pull_request": false,
            "credits": 5000, "days": 90}),
    );
    l.ok(
        "alice",
        "request.approved",
        json!({"request": "gpu-pytorch", "pool": "numfocus-2026", "note": "GPU tests are needed"}),
    );
    l.ok("bob", "request.approved", json!({"request": "gpu-pytorch"}));
    l.now_ms += 2 * HOUR_MS;
    l.ok(
        "conda-forge-bot",
        "usage.reported",
        json!({"usage": "job-1", "project": PROJECT, "resource": RESOURCE, "amount": 42,
            "started_at": "2026-03-01T10:00:00Z", "ended_at": "2026-03-01T10:42:00Z"}),
    );
    l.ok(
        "conda-forge-bot",
        "access.requested",
        json!({"request": "gpu-evil", "project": "evil-feedstock", "resource": RESOURCE,
            "justification": SCRIPT, "pull_request": true, "on_behalf_of": "mallory",
            "evidence_url": "javascript:alert(2)"}),
    );
    l.ok("alice", "request.approved", json!({"request": "gpu-evil", "note": "<img src=x onerror=alert(3)>"}));
    l.ok("admin", "sponsor.registered", json!({"sponsor": "acme", "name": "<i>ACME</i> & Sons"}));
    l
}

/// Every page of the walkthrough, with its name.
fn all_pages(l: &Ledger) -> Vec<(&'static str, String)> {
    let f = l.facts();
    let w = events_window(f.size, None, None);
    vec![
        ("index", index(l.fold.state(), &f, None, 1).unwrap()),
        ("index?resource", index(l.fold.state(), &f, Some(RESOURCE), 1).unwrap()),
        ("requests", requests(l.fold.state(), &f, 1)),
        ("project", project(l.fold.state(), &f, PROJECT).unwrap()),
        ("project evil", project(l.fold.state(), &f, "evil-feedstock").unwrap()),
        ("sponsor", sponsor(l.fold.state(), &f, "numfocus").unwrap()),
        ("sponsor acme", sponsor(l.fold.state(), &f, "acme").unwrap()),
        ("events", events(&f, &w, &l.records)),
        ("404", not_found(&f, "no project <x>")),
    ]
}

#[test]
fn index_lists_each_resource_with_its_active_grants_and_the_log_facts() {
    let l = walkthrough();
    let f = l.facts();
    let html = index(l.fold.state(), &f, None, 1).unwrap();
    assert!(html.contains(&format!("<h2 id=\"resource-{RESOURCE}\">{RESOURCE}")), "{html}");
    assert!(html.contains("<a href=\"/projects/pytorch-cpu-feedstock\">pytorch-cpu-feedstock</a>"));
    // Credits used / limit, the pull-request flag and the expiry (issue time + 90 days).
    assert!(html.contains("42 / 5,000 runner-minutes"));
    assert!(html.contains("aria-label=\"42 of 5,000 runner-minutes used\""));
    assert!(html.contains("<span class=\"badge off\">no</span>"));
    assert!(html.contains("<time datetime=\"2026-05-30T09:00:00Z\">2026-05-30</time>"), "{html}");
    assert!(html.contains("in 89 days"));
    // The log: size, the checkpoint text, the verifier key; and the JSON behind the page.
    assert!(html.contains(&f.checkpoint));
    assert!(html.contains(&f.log_key));
    assert!(html.contains(&format!("<dd>{}</dd>", f.size)));
    assert!(html.contains("href=\"/v1/allocations\""));
    assert!(html.contains("href=\"/v1/checkpoint\""));
    // The evil request is pending: evil-feedstock holds no grant, so it is not listed.
    assert!(!html.contains("evil-feedstock"));
    assert!(html.contains("<a href=\"/sponsors/numfocus\">NumFOCUS</a>"));
}

#[test]
fn index_filtered_by_resource_pages_its_grants_and_refuses_unknown_resources() {
    let l = walkthrough();
    let f = l.facts();
    let html = index(l.fold.state(), &f, Some(RESOURCE), 1).unwrap();
    assert!(html.contains(&format!("<h1>Active grants on {RESOURCE}</h1>")));
    assert!(html.contains("pytorch-cpu-feedstock"));
    assert!(html.contains(&format!("href=\"/v1/allocations?resource={RESOURCE}\"")));
    // A page past the end renders an empty table, not a panic.
    let html = index(l.fold.state(), &f, Some(RESOURCE), PAGE_NUMBER_MAX).unwrap();
    assert!(!html.contains("/projects/pytorch-cpu-feedstock"));
    assert!(html.contains("Previous page"));
    assert!(index(l.fold.state(), &f, Some("no-such-runner"), 1).is_none());
}

#[test]
fn requests_show_pending_approvals_against_the_quorum_and_closed_below() {
    let l = walkthrough();
    let html = requests(l.fold.state(), &l.facts(), 1);
    let pending = html.find("id=\"pending\"").unwrap();
    let closed = html.find("id=\"closed\"").unwrap();
    let evil = html.find("gpu-evil").unwrap();
    let granted = html.find("<code>gpu-pytorch</code>").unwrap();
    assert!(pending < evil && evil < closed && closed < granted, "pending above closed");
    assert!(html.contains("Pending (1)") && html.contains("Closed (1)"));
    assert!(html.contains("<strong>1 of 2</strong> needed"));
    assert!(html.contains("alice"));
    assert!(html.contains("<span class=\"badge ok\">granted</span>"));
    assert!(html.contains("<code>grant:gpu-pytorch</code>"));
    assert!(html.contains("for mallory"));
    assert!(html.contains("href=\"/v1/requests?status=pending\""));
}

#[test]
fn requests_show_a_revoked_grant_as_revoked_not_granted() {
    let mut l = walkthrough();
    l.ok("alice", "grant.revoked", json!({"grant": "grant:gpu-pytorch", "reason": "project archived"}));
    let html = requests(l.fold.state(), &l.facts(), 1);
    let row = &html[html.find("<code>gpu-pytorch</code>").unwrap()..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(row.contains("<span class=\"badge bad\">revoked</span>"), "{row}");
    assert!(!row.contains(">granted</span>"), "{row}");
    assert!(row.contains("<code>grant:gpu-pytorch</code>"), "{row}");
}

#[test]
fn requests_show_expired_and_exhausted_grants_as_such() {
    let mut l = walkthrough();
    // Past the 90 days: the page, at its clock, shows the grant expired.
    let mut later = l.facts();
    later.now_ms += 91 * 24 * HOUR_MS;
    let html = requests(l.fold.state(), &later, 1);
    assert!(html.contains("<span class=\"badge off\">expired</span>"), "{html}");
    assert!(!html.contains(">granted</span>"), "{html}");
    // Credits used up: the automation ends it as exhausted.
    l.ok(
        "conda-forge-bot",
        "usage.reported",
        json!({"usage": "job-2", "project": PROJECT, "resource": RESOURCE, "amount": 4958,
            "started_at": "2026-03-01T10:00:00Z", "ended_at": "2026-03-01T10:50:00Z"}),
    );
    let html = requests(l.fold.state(), &l.facts(), 1);
    assert!(html.contains("<span class=\"badge warn\">exhausted</span>"), "{html}");
    assert!(!html.contains(">granted</span>"), "{html}");
}

#[test]
fn user_text_is_escaped_everywhere_and_no_page_carries_a_script() {
    let l = walkthrough();
    let requests_html = requests(l.fold.state(), &l.facts(), 1);
    assert!(requests_html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(requests_html.contains("&lt;img src=x onerror=alert(3)&gt;"));
    // A javascript: evidence URL is shown as text, never as a link.
    assert!(requests_html.contains("javascript:alert(2)"));
    assert!(!requests_html.contains("href=\"javascript:"));
    for (name, html) in all_pages(&l) {
        assert!(!html.to_ascii_lowercase().contains("<script"), "{name} has a script element");
        assert!(!html.contains("<img"), "{name} has injected markup");
        assert!(!html.contains("<i>ACME"), "{name} has injected markup");
        assert!(!html.contains("<b>for CUDA"), "{name} has injected markup");
    }
    let index_html = index(l.fold.state(), &l.facts(), None, 1).unwrap();
    assert!(index_html.contains("GPU runners &lt;b&gt;for CUDA&lt;/b&gt; builds"));
    assert!(index_html.contains("&lt;i&gt;ACME&lt;/i&gt; &amp; Sons"));
    let not_found_html = not_found(&l.facts(), "no project <x>");
    assert!(not_found_html.contains("no project &lt;x&gt;"));
}

#[test]
fn every_page_is_a_complete_accessible_document() {
    let l = walkthrough();
    for (name, html) in all_pages(&l) {
        assert!(html.starts_with("<!DOCTYPE html><html lang=\"en\">"), "{name}");
        assert!(html.contains("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"), "{name}");
        assert!(html.contains("<meta charset=\"utf-8\">"), "{name}");
        assert_eq!(html.matches("<h1>").count(), 1, "{name}: one h1");
        assert!(html.contains("<main") && html.contains("id=\"main\""), "{name}");
        // Every header cell says what it heads.
        let header_cells = html.matches("<th>").count() + html.matches("<th ").count();
        assert_eq!(header_cells, html.matches("<th scope=").count(), "{name}: <th> without scope");
        // Every table says what it is.
        assert_eq!(html.matches("<table>").count(), html.matches("<caption>").count(), "{name}");
        assert!(html.ends_with("</html>"), "{name}");
        if name != "404" {
            assert!(html.contains("JSON API for this page"), "{name}: no JSON link");
        }
    }
}

#[test]
fn project_history_links_every_event_to_its_record_and_inclusion_proof() {
    let l = walkthrough();
    let f = l.facts();
    let html = project(l.fold.state(), &f, PROJECT).unwrap();
    let history = l.fold.state().project_history(PROJECT);
    // request, two approvals, grant issued, the usage summary.
    assert!(history.len() >= 5, "{history:?}");
    for e in &history {
        assert!(html.contains(&format!("href=\"/v1/events/{}\"", e.seq)), "no record link for {}", e.seq);
        assert!(html.contains(&format!("href=\"/v1/proofs/inclusion/{}\"", e.seq)), "no proof link for {}", e.seq);
        assert!(html.contains(&format!("<code>{}</code>", e.kind)));
    }
    assert!(html.contains("<code>grant:gpu-pytorch</code>"));
    assert!(html.contains("<span class=\"badge ok\">active</span>"));
    assert!(html.contains("42 / 5,000 runner-minutes"));
    assert!(html.contains("href=\"/v1/allocations?project=pytorch-cpu-feedstock\""));
    // The evil project has only a pending request; its page shows it, escaped.
    let evil = project(l.fold.state(), &f, "evil-feedstock").unwrap();
    assert!(evil.contains("<strong>1 of 2</strong> approvals"));
    assert!(evil.contains("&lt;script&gt;"));
    // Unknown and invalid names are 404s.
    assert!(project(l.fold.state(), &f, "numpy-feedstock").is_none());
    assert!(project(l.fold.state(), &f, "../etc/passwd").is_none());
    assert!(project(l.fold.state(), &f, "PyTorch-CPU-Feedstock").is_none());
}

#[test]
fn sponsor_page_shows_pools_projects_and_the_daily_chart_with_a_table() {
    let l = walkthrough();
    let f = l.facts();
    let html = sponsor(l.fold.state(), &f, "numfocus").unwrap();
    assert!(html.contains("<h1>NumFOCUS</h1>"));
    // Deposited, allocated (the grant's credit limit), used, remaining.
    for figure in ["100,000", "5,000", "42", "99,958"] {
        assert!(html.contains(&format!("<td class=\"num\">{figure}</td>")), "pool figure {figure}");
        assert!(html.contains(&format!("<dd>{figure}</dd>")), "total {figure}");
    }
    // Per project.
    assert!(
        html.contains("<th scope=\"row\"><a href=\"/projects/pytorch-cpu-feedstock\">pytorch-cpu-feedstock</a></th>")
    );
    // The chart: an SVG image with its name and summary, the bar's tooltip, and the table.
    assert!(html.contains("role=\"img\" aria-labelledby=\"chart-title chart-desc\""));
    assert!(
        html.contains("<title id=\"chart-title\">Daily usage of NumFOCUS&#39;s credits")
            || html.contains("<title id=\"chart-title\">Daily usage of NumFOCUS's credits")
    );
    assert!(html.contains("busiest day was 2026-03-01 with 42 runner-minutes"));
    assert!(html.contains("<title>2026-03-01, numfocus-2026: 42 runner-minutes</title>"));
    assert!(html
        .contains("<th scope=\"row\"><time datetime=\"2026-03-01\">2026-03-01</time></th><td class=\"num\">42</td>"));
    assert!(html.contains("href=\"/v1/sponsors/numfocus/usage?bucket=day\""));
    // A sponsor without deposits renders, with its (escaped) name.
    let acme = sponsor(l.fold.state(), &f, "acme").unwrap();
    assert!(acme.contains("<h1>&lt;i&gt;ACME&lt;/i&gt; &amp; Sons</h1>"));
    assert!(acme.contains("has not deposited credits yet"));
    assert!(sponsor(l.fold.state(), &f, "nobody").is_none());
}

#[test]
fn events_page_lists_the_log_newest_first_and_pages_back() {
    let mut l = walkthrough();
    // Enough records for three pages.
    for i in 0..(2 * EVENTS_PAGE_RECORDS) {
        l.ok("admin", "sponsor.registered", json!({"sponsor": format!("s{i}"), "name": format!("Sponsor {i}")}));
    }
    let f = l.facts();
    let size = f.size;
    let w = events_window(size, None, None);
    let html = events(&f, &w, &l.records);
    let newest = html.find(&format!("<th scope=\"row\" class=\"num\">{}</th>", size - 1)).unwrap();
    let older = html.find(&format!("<th scope=\"row\" class=\"num\">{}</th>", size - 2)).unwrap();
    assert!(newest < older, "newest first");
    assert!(!html.contains(&format!("<th scope=\"row\" class=\"num\">{}</th>", w.from - 1)));
    assert!(html.contains(&format!("href=\"/events?before={}\"", w.from)));
    assert!(!html.contains("Newer records"));
    assert!(html.contains("<code>sponsor.registered</code>"));
    assert!(html.contains(&format!(
        "sponsor: s{}, name: Sponsor {}",
        2 * EVENTS_PAGE_RECORDS - 1,
        2 * EVENTS_PAGE_RECORDS - 1
    )));
    assert!(html.contains(&format!("<code>{}</code>", key("admin").keyid())));
    assert!(html.contains(&format!("href=\"/v1/events?from={}&amp;limit={}\"", w.from, EVENTS_PAGE_RECORDS)));

    // The last page starts at the genesis and links back to newer records.
    let w = events_window(size, None, Some(3));
    assert_eq!(w.from, 0);
    let html = events(&f, &w, &l.records[..w.len()]);
    assert!(html.contains("<code>ledger.genesis</code>"));
    assert!(html.contains("<code>access.requested</code>"));
    assert!(!html.contains("justification: "), "free text is not summarised");
    assert!(html.contains("Newer records"));
    assert!(!html.contains("Older records"));
}

#[test]
fn index_lists_the_witnesses_and_how_far_each_cosigned() {
    let l = walkthrough();
    let mut f = l.facts();
    let html = index(l.fold.state(), &f, None, 1).unwrap();
    assert!(!html.contains("Witnesses"), "no section without witnesses");
    f.witnesses = vec![
        WitnessFact {
            name: "witness.example/w1".into(),
            url: "https://w1.example/prefix".into(),
            // 2026-03-01T09:00:00Z
            cosigned: Some((1234, 1_772_355_600)),
        },
        WitnessFact { name: "witness.example/w2".into(), url: "http://w2.example:8081".into(), cosigned: None },
    ];
    let html = index(l.fold.state(), &f, None, 1).unwrap();
    assert!(html.contains("<h3 id=\"witnesses\">Witnesses</h3>"), "{html}");
    let w1 = concat!(
        "<th scope=\"row\"><code>witness.example/w1</code></th><td><code>https://w1.example/prefix</code></td>",
        "<td>1,234</td><td><time datetime=\"2026-03-01T09:00:00Z\">2026-03-01 09:00</time></td>"
    );
    assert!(html.contains(w1), "{html}");
    assert!(
        html.contains("<code>http://w2.example:8081</code></td><td><span class=\"muted\">none yet</span></td>"),
        "{html}"
    );
}

#[test]
fn index_of_an_empty_ledger_renders() {
    let l = Ledger::new("2026-03-01T09:00:00Z");
    let f = l.facts();
    let html = index(l.fold.state(), &f, None, 1).unwrap();
    assert!(html.contains("No resources are defined yet."));
    assert!(html.contains("No sponsors are registered yet."));
    let html = requests(l.fold.state(), &f, 1);
    assert!(html.contains("No request is waiting for review."));
}

#[test]
fn expired_and_exhausted_grants_leave_the_index_but_stay_in_the_project_history() {
    let mut l = walkthrough();
    // Use up the grant: it is exhausted (the automation appends grant.exhausted).
    l.ok(
        "conda-forge-bot",
        "usage.reported",
        json!({"usage": "job-2", "project": PROJECT, "resource": RESOURCE, "amount": 4958,
            "started_at": "2026-03-01T10:00:00Z", "ended_at": "2026-03-01T10:50:00Z"}),
    );
    let f = l.facts();
    let html = index(l.fold.state(), &f, None, 1).unwrap();
    assert!(!html.contains("/projects/pytorch-cpu-feedstock"));
    assert!(html.contains("No project holds an active grant on this resource."));
    let html = project(l.fold.state(), &f, PROJECT).unwrap();
    assert!(html.contains("<span class=\"badge warn\">exhausted</span>"));
    assert!(html.contains("<code>grant.exhausted</code>"));
}

#[test]
fn formatting_helpers() {
    use super::layout::{fmt_num, plural};
    assert_eq!(fmt_num(0), "0");
    assert_eq!(fmt_num(999), "999");
    assert_eq!(fmt_num(1000), "1,000");
    assert_eq!(fmt_num(99_958), "99,958");
    assert_eq!(fmt_num(u64::MAX), "18,446,744,073,709,551,615");
    assert_eq!(plural(1, "day"), "1 day");
    assert_eq!(plural(2, "day"), "2 days");
    assert_eq!(url_encode("grant:a b/c"), "grant%3Aa%20b%2Fc");
    assert_eq!(page_number(None), 1);
    assert_eq!(page_number(Some(0)), 1);
    assert_eq!(page_number(Some(usize::MAX)), PAGE_NUMBER_MAX);
}

#[test]
fn index_summarises_a_crowded_resource_and_pages_the_rest() {
    let mut l = walkthrough();
    let imported = INDEX_PROJECTS_PER_RESOURCE_MAX + 20;
    for i in 0..imported {
        l.ok(
            "admin",
            "grant.issued",
            json!({"grant": format!("import-{i}"), "project": format!("p{i:03}-feedstock"), "resource": RESOURCE,
                "pull_request": false, "pool": "numfocus-2026", "credit_limit": 10}),
        );
    }
    let f = l.facts();
    let projects = imported + 1;
    // The JSON API agrees on how many projects hold a grant.
    assert_eq!(l.fold.state().allocations(Some(RESOURCE), None, f.now_ms).resources[0].grants.len(), projects);
    let html = index(l.fold.state(), &f, None, 1).unwrap();
    assert!(html.contains(&format!("Projects with an active grant on {RESOURCE}: {projects} (showing 1–100)")));
    assert_eq!(html.matches("<a href=\"/projects/").count(), INDEX_PROJECTS_PER_RESOURCE_MAX);
    assert!(html.contains(&format!("href=\"/?resource={RESOURCE}&amp;page=1\">All {projects} projects on {RESOURCE}")));
    // Sorted by project: p000.. first, pytorch-cpu-feedstock (after p119) is on the resource page.
    assert!(html.contains("/projects/p000-feedstock"));
    assert!(!html.contains("/projects/pytorch-cpu-feedstock"));
    let html = index(l.fold.state(), &f, Some(RESOURCE), 1).unwrap();
    assert_eq!(html.matches("<a href=\"/projects/").count(), projects);
    assert!(html.contains("/projects/pytorch-cpu-feedstock"));
    assert!(html.contains("0 / 10 runner-minutes"));
    assert!(!html.contains("Next page"));
}

#[test]
fn grants_nobody_uses_are_flagged_after_30_days() {
    let mut l = walkthrough();
    let flag = "title=\"A grant nobody uses may be revoked";
    let html = index(l.fold.state(), &l.facts(), None, 1).unwrap();
    // Used today: its last use is shown, and it is not flagged.
    assert!(html.contains("<time datetime=\"2026-03-01T10:42:00Z\">2026-03-01 10:42</time>"), "{html}");
    assert!(!html.contains(flag));
    l.now_ms += 29 * projector::data::DAY_MS;
    let html = index(l.fold.state(), &l.facts(), None, 1).unwrap();
    assert!(!html.contains(flag), "{html}");
    l.now_ms += 2 * projector::data::DAY_MS;
    let html = index(l.fold.state(), &l.facts(), None, 1).unwrap();
    assert!(html.contains(flag) && html.contains("unused 31 days"), "{html}");
    assert!(project(l.fold.state(), &l.facts(), PROJECT).unwrap().contains("unused 31 days"));
}

#[test]
fn jobs_that_ran_without_access_are_listed_and_their_links_escaped() {
    let mut l = walkthrough();
    let html = index(l.fold.state(), &l.facts(), None, 1).unwrap();
    assert!(html.contains("Jobs that ran without access") && html.contains("No job has run on a gated runner"));
    l.ok(
        "automation",
        "usage.unauthorized",
        json!({"usage": "gh:1:2:1", "project": "evil-feedstock", "resource": RESOURCE,
            "started_at": "2026-03-01T10:00:00Z", "ended_at": "2026-03-01T10:05:00Z",
            "reason": "awaiting_approvals (1 of 2)", "run_url": "javascript:alert(4)"}),
    );
    let f = l.facts();
    for html in [index(l.fold.state(), &f, None, 1).unwrap(), project(l.fold.state(), &f, "evil-feedstock").unwrap()] {
        let section = &html[html.find("Jobs that ran without access").unwrap()..];
        assert!(section.contains("evil-feedstock") && section.contains("awaiting_approvals (1 of 2)"), "{section}");
        assert!(section.contains("/v1/usage/unauthorized"));
        // Only http(s) links become links.
        assert!(!html.contains("href=\"javascript:alert(4)"));
    }
    // A project without such jobs shows no such section.
    assert!(!project(l.fold.state(), &f, PROJECT).unwrap().contains("Jobs that ran without access"));
}
