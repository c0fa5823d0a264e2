//! `grantline check PROJECT RESOURCE --user LOGIN --github-id N`: the explanation as a
//! ✓/✗ checklist with the seq behind each step, the verdict last, exit 0 or 3.

mod common;

use common::*;
use serde_json::{json, Value};

const BLACKSMITH: &str = "blacksmith-linux-8vcpu";
const TERMS: &str = "blacksmith-tos-2026-01";

/// Runs `grantline check`: (exit code, stdout lines).
fn check(server: &Server, args: &[&str]) -> (i32, Vec<String>) {
    let mut all = vec!["check", PROJECT, BLACKSMITH];
    all.extend_from_slice(args);
    let out = server.cli(&all);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap(), stdout.lines().map(str::to_string).collect())
}

/// The checklist line of `step`: "  ✓ step  detail  (seq N)".
fn line<'a>(lines: &'a [String], step: &str) -> &'a str {
    lines
        .iter()
        .find(|l| {
            let rest = l.strip_prefix("  ✓ ").or_else(|| l.strip_prefix("  ✗ "));
            rest.is_some_and(|rest| rest.starts_with(&format!("{step} ")))
        })
        .unwrap_or_else(|| panic!("no {step} line in {lines:#?}"))
}

#[test]
fn check_prints_a_checklist_with_seqs_and_exits_by_verdict() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"));
    let cast = cast(&server, tmp.path());
    let admin = server.admin();
    let defined = server
        .append(
            &admin,
            "define-blacksmith",
            "resource.defined",
            json!({"resource": BLACKSMITH, "provider": "blacksmith", "unit": "runner-minutes",
                   "approvals_required": 1, "terms": TERMS}),
        )
        .seq;
    let opened = server
        .append(
            &cast.bot,
            "open-bs",
            "access.requested",
            json!({"request": "pytorch-bs", "project": PROJECT, "resource": BLACKSMITH, "justification": "faster builds",
                   "pull_request": true, "credits": 900, "users_from_json": "https://example.org/users.json"}),
        )
        .seq;
    let approved = server.append(&cast.alice, "approve-bs", "request.approved", json!({"request": "pytorch-bs"})).seq;
    let issued = server.get_json("/v1/events/by-id/grant.issued:pytorch-bs")["seq"].as_u64().unwrap();

    // Denied: the triggering user never accepted the provider's terms.
    let user = ["--pull-request", "--user", "h-vetinari", "--github-id", "33001"];
    let (code, lines) = check(&server, &user);
    assert_eq!(code, 3, "{lines:#?}");
    assert_eq!(lines[0], format!("{PROJECT} on {BLACKSMITH} for h-vetinari (GitHub id 33001):"));
    assert_eq!(lines.last().unwrap(), &format!("denied: {PROJECT} may not use {BLACKSMITH}: terms_not_accepted"));
    let steps = &lines[1..lines.len() - 1];
    assert_eq!(steps.len(), 9, "{lines:#?}");
    for (step, seq) in [
        ("resource", Some(defined)),
        ("request", Some(opened)),
        ("approvals", Some(approved)),
        ("grant", Some(issued)),
        ("expiry", Some(issued)),
        ("credits", Some(issued)),
        ("pull_request", Some(issued)),
        ("project", None),
    ] {
        let l = line(steps, step);
        assert!(l.starts_with("  ✓ "), "{l}");
        match seq {
            Some(n) => assert!(l.ends_with(&format!("(seq {n})")), "{l}"),
            None => assert!(!l.contains("(seq "), "{l}"),
        }
    }
    let l = line(steps, "user");
    assert!(l.starts_with("  ✗ user"), "{l}");
    assert!(l.contains(r#""h-vetinari" has accepted no terms"#), "{l}");
    assert!(line(steps, "approvals").contains(r#"1 of 1 approval ("alice")"#), "{lines:#?}");
    assert!(line(steps, "credits").contains("0 of 900 credits used"));
    assert_eq!(steps.iter().filter(|l| l.starts_with("  ✗ ")).count(), 1, "{lines:#?}");

    // --json prints the raw explanation, and still exits 3.
    let out = server.cli(&["check", PROJECT, BLACKSMITH, "--json", user[0], user[1], user[2], user[3], user[4]]);
    assert_eq!(out.status.code(), Some(3));
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let served = server.get_json(&format!(
        "/v1/access/explain?project={PROJECT}&resource={BLACKSMITH}&pull_request=true&user=h-vetinari&github_id=33001"
    ));
    assert_eq!(printed, served);
    assert_eq!(printed["reason"], "terms_not_accepted");

    // Allowed once the acceptance is logged; the user step cites it.
    let accepted = server
        .append(
            &cast.bot,
            "hv-accepts",
            "user.terms_accepted",
            json!({"user": "h-vetinari", "github_id": 33001, "terms": TERMS}),
        )
        .seq;
    let (code, lines) = check(&server, &user);
    assert_eq!(code, 0, "{lines:#?}");
    assert_eq!(lines.last().unwrap(), &format!("allowed: {PROJECT} may use {BLACKSMITH} (grant grant:pytorch-bs)"));
    let steps = &lines[1..lines.len() - 1];
    assert!(steps.iter().all(|l| l.starts_with("  ✓ ")), "{lines:#?}");
    let l = line(steps, "user");
    assert!(
        l.contains(&format!("\"h-vetinari\" accepted terms {TERMS:?}")) && l.ends_with(&format!("(seq {accepted})")),
        "{l}"
    );

    // The same login under another GitHub account is denied.
    let (code, lines) = check(&server, &["--user", "h-vetinari", "--github-id", "4242"]);
    assert_eq!(code, 3);
    assert_eq!(lines.last().unwrap(), &format!("denied: {PROJECT} may not use {BLACKSMITH}: github_id_mismatch"));
    assert!(line(&lines, "user").starts_with("  ✗ user"), "{lines:#?}");

    // Without --user a grant that names its users fails closed, and says what to pass.
    let out = server.cli(&["check", PROJECT, BLACKSMITH, "--pull-request"]);
    assert_eq!(out.status.code(), Some(3));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.lines().any(|l| l.starts_with("  ✗ user")), "{stdout}");
    assert!(stdout.contains(&format!("denied: {PROJECT} may not use {BLACKSMITH}: user_required")), "{stdout}");
    assert!(stdout.contains("pass --user LOGIN --github-id ID"), "{stdout}");
    let out = server.cli(&["check", "numpy-feedstock", BLACKSMITH]);
    assert_eq!(out.status.code(), Some(3));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    let request = lines.iter().find(|l| l.starts_with("  ✗ request ")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(request.ends_with(&format!("no request for \"numpy-feedstock\" on {BLACKSMITH:?}")), "{stdout}");
    assert!(stdout.ends_with(&format!("denied: numpy-feedstock may not use {BLACKSMITH}: no_request\n")), "{stdout}");

    // The endpoints behind it are documented.
    let openapi = server.get_json("/openapi.json");
    for path in ["/v1/access/explain", "/v1/exports/users.json", "/v1/exports/runner-labels.json"] {
        assert!(openapi["paths"].get(path).is_some(), "{path} missing from /openapi.json");
    }
    let explain = &openapi["paths"]["/v1/access/explain"]["get"];
    let params: Vec<&str> =
        explain["parameters"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(params, ["project", "resource", "pull_request", "user", "github_id"]);
    assert!(openapi["components"]["schemas"]["Explanation"]["properties"].get("steps").is_some());

    // --github-id needs --user; --user alone is checked against the login only, and says so.
    let out = server.cli(&["check", PROJECT, BLACKSMITH, "--github-id", "33001"]);
    assert_eq!(out.status.code(), Some(2));
    let out = server.cli(&["check", PROJECT, BLACKSMITH, "--user", "h-vetinari"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
}
