//! What a new maintainer and a new operator hit, through the real binary: `grantline check`
//! on a grant that names its users fails closed without one and says which flags to pass;
//! names are quoted, with the name a typo or an owner prefix most likely meant; the reason of
//! a denial or revocation shows with its seq; a self-approval refusal says whose behalf the
//! request was filed on; and usage reports must fall inside their grant's life.

mod common;

use std::path::Path;

use common::*;
use serde_json::json;

const CPU: &str = "cirun-openstack-cpu-large";
const BLACKSMITH: &str = "blacksmith-linux-4vcpu";
const TERMS: &str = "blacksmith-tos-2026-01";
const USERS_JSON_URL: &str = "https://raw.githubusercontent.com/conda-forge/.cirun/main/conda-forge-users.json";

/// Runs a CLI command: (exit code, stdout, stderr).
fn run(server: &Server, args: &[&str]) -> (i32, String, String) {
    let out = server.cli(args);
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (out.status.code().unwrap(), text(out.stdout), text(out.stderr))
}

/// The checklist line of `step` ("  ✓ step  detail  (seq N)").
fn line<'a>(stdout: &'a str, step: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| {
            let rest = l.strip_prefix("  ✓ ").or_else(|| l.strip_prefix("  ✗ "));
            rest.is_some_and(|rest| rest.starts_with(&format!("{step} ")))
        })
        .unwrap_or_else(|| panic!("no {step} line in:\n{stdout}"))
}

fn define(server: &Server, resource: &str, terms: Option<&str>) {
    let mut data =
        json!({"resource": resource, "provider": "cirun", "unit": "runner-minutes", "approvals_required": 1});
    if let Some(t) = terms {
        data["terms"] = json!(t);
    }
    server.append(&server.admin(), &format!("define-{resource}"), "resource.defined", data);
}

/// Opens a request on a one-approval resource and approves it: the automation grants it.
fn grant(server: &Server, cast: &Cast, request: &str, project: &str, resource: &str, extra: serde_json::Value) {
    let mut data = json!({"request": request, "project": project, "resource": resource,
                          "justification": "CI needs it", "pull_request": false});
    for (k, v) in extra.as_object().unwrap() {
        data[k] = v.clone();
    }
    server.append(&cast.bot, &format!("open-{request}"), "access.requested", data);
    server.append(&cast.alice, &format!("alice-{request}"), "request.approved", json!({"request": request}));
    let view = server.get_json(&format!("/v1/requests/{request}"));
    assert_eq!(view["status"], "granted", "{view}");
}

#[test]
fn check_fails_closed_without_a_user_and_names_the_flags_to_pass() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"));
    let cast = cast(&server, tmp.path());
    define(&server, CPU, None);
    define(&server, BLACKSMITH, Some(TERMS));
    grant(&server, &cast, "cupy-cpu", "cupy-feedstock", CPU, json!({"users": ["leofang", "jakirkham"]}));
    grant(&server, &cast, "lgbm-bs", "lightgbm-feedstock", BLACKSMITH, json!({"users_from_json": USERS_JSON_URL}));
    grant(&server, &cast, "numpy-cpu", "numpy-feedstock", CPU, json!({}));

    // A users list: denied without --user, and told to pass one.
    let (code, stdout, _) = run(&server, &["check", "cupy-feedstock", CPU]);
    assert_eq!(code, 3, "{stdout}");
    assert!(line(&stdout, "user").starts_with("  ✗ user"), "{stdout}");
    assert!(stdout.contains(&format!("denied: cupy-feedstock may not use {CPU}: user_required\n")), "{stdout}");
    assert!(stdout.ends_with("this grant lists users: pass --user LOGIN\n"), "{stdout}");
    let answer = server.get_json(&format!("/v1/access/check?project=cupy-feedstock&resource={CPU}"));
    assert_eq!((answer["allowed"].as_bool(), answer["reason"].as_str()), (Some(false), Some("user_required")));
    // The hint works as given: a listed login alone is enough for a users list.
    let (code, stdout, stderr) = run(&server, &["check", "cupy-feedstock", CPU, "--user", "leofang"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let (code, _, _) = run(&server, &["check", "cupy-feedstock", CPU, "--user", "mallory"]);
    assert_eq!(code, 3);

    // users_from_json: the terms and both flags.
    let (code, stdout, _) = run(&server, &["check", "lightgbm-feedstock", BLACKSMITH]);
    assert_eq!(code, 3, "{stdout}");
    assert!(stdout.contains(": user_required\n"), "{stdout}");
    assert!(
        stdout.ends_with(&format!(
            "this grant takes users who accepted terms {TERMS:?}: pass --user LOGIN --github-id ID\n"
        )),
        "{stdout}"
    );
    server.append(
        &cast.bot,
        "carol-accepts",
        "user.terms_accepted",
        json!({"user": "carol", "github_id": 1003, "terms": TERMS}),
    );
    let (code, stdout, _) =
        run(&server, &["check", "lightgbm-feedstock", BLACKSMITH, "--user", "carol", "--github-id", "1003"]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.ends_with("(grant grant:lgbm-bs)\n"), "{stdout}");
    // Without the numeric id the login's acceptance admits, and the checklist says so.
    let (code, stdout, _) = run(&server, &["check", "lightgbm-feedstock", BLACKSMITH, "--user", "carol"]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("matched by login only: pass --github-id ID"), "{stdout}");

    // A grant that names no users still admits the project without a user.
    let (code, stdout, _) = run(&server, &["check", "numpy-feedstock", CPU]);
    assert_eq!(code, 0, "{stdout}");
    assert!(!stdout.contains("--user"), "{stdout}");
}

#[test]
fn check_quotes_names_and_says_what_a_near_miss_meant() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"));
    let cast = cast(&server, tmp.path());
    define(&server, CPU, None);
    grant(&server, &cast, "numpy-cpu", "numpy-feedstock", CPU, json!({}));

    // Allowed: every name in every step is quoted.
    let (code, stdout, _) = run(&server, &["check", "numpy-feedstock", CPU]);
    assert_eq!(code, 0, "{stdout}");
    assert!(line(&stdout, "project").contains(r#""numpy-feedstock" is a valid project name"#), "{stdout}");
    assert!(
        line(&stdout, "resource").contains(&format!("resource {CPU:?} is defined (provider \"cirun\"")),
        "{stdout}"
    );
    assert!(line(&stdout, "request").contains(r#"request "numpy-cpu" by "bot" is granted"#), "{stdout}");
    assert!(line(&stdout, "approvals").contains(r#"1 of 1 approval ("alice")"#), "{stdout}");
    assert!(line(&stdout, "grant").contains(r#"grant "grant:numpy-cpu" issued, now active"#), "{stdout}");

    // A typo in the resource: the nearest defined one.
    let (code, stdout, _) = run(&server, &["check", "numpy-feedstock", "cirun-openstack-gpu-larg"]);
    assert_eq!(code, 3);
    assert!(
        line(&stdout, "resource")
            .ends_with(r#"no resource "cirun-openstack-gpu-larg"; did you mean "cirun-openstack-gpu-large"?"#),
        "{stdout}"
    );
    // An owner prefix, capitals, a trailing space: the exact name to use.
    for (typed, advice) in [
        ("conda-forge/numpy-feedstock", r#"drop the owner prefix "conda-forge/": did you mean "numpy-feedstock"?"#),
        ("NumPy-feedstock", r#"use lowercase: did you mean "numpy-feedstock"?"#),
        ("numpy-feedstock ", r#"remove the spaces around it: did you mean "numpy-feedstock"?"#),
    ] {
        let (code, stdout, _) = run(&server, &["check", typed, CPU]);
        assert_eq!(code, 3, "{stdout}");
        let project = line(&stdout, "project");
        assert!(project.contains(&format!("{typed:?} does not match")), "{project}");
        assert!(project.ends_with(advice), "{project}");
        assert!(stdout.ends_with(": invalid_project_name\n"), "{stdout}");
    }
    // The same advice when a request names the project wrongly.
    let (bot_path, bot) = keygen(tmp.path(), "filer");
    server.append(
        &server.admin(),
        "register-filer",
        "actor.registered",
        json!({"actor": "filer", "key": bot.verifier().to_string(), "roles": ["requester"]}),
    );
    let (code, _, stderr) = run(
        &server,
        &[
            "request",
            "conda-forge/scipy-feedstock",
            CPU,
            "--justification",
            "tests",
            "--key",
            bot_path.to_str().unwrap(),
        ],
    );
    assert_ne!(code, 0);
    assert!(stderr.contains(r#"did you mean "scipy-feedstock"?"#), "{stderr}");
}

#[test]
fn check_shows_why_a_request_was_denied_or_a_grant_revoked() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"));
    let cast = cast(&server, tmp.path());
    define(&server, CPU, None);

    server.append(
        &cast.bot,
        "open-jax",
        "access.requested",
        json!({"request": "jax-cpu", "project": "jax-feedstock", "resource": CPU, "justification": "x", "pull_request": false}),
    );
    let denied =
        server.append(&cast.bob, "deny-jax", "request.denied", json!({"request": "jax-cpu", "reason": "no GPU code"}));
    let (code, stdout, _) = run(&server, &["check", "jax-feedstock", CPU]);
    assert_eq!(code, 3);
    assert!(
        line(&stdout, "request_closed")
            .ends_with(&format!(r#"request "jax-cpu" was denied by "bob": "no GPU code"  (seq {})"#, denied.seq)),
        "{stdout}"
    );

    grant(&server, &cast, "torch-cpu", "torch-feedstock", CPU, json!({}));
    let revoked = server.append(
        &server.admin(),
        "revoke-torch",
        "grant.revoked",
        json!({"grant": "grant:torch-cpu", "reason": "moved provider"}),
    );
    let (code, stdout, _) = run(&server, &["check", "torch-feedstock", CPU]);
    assert_eq!(code, 3);
    assert!(
        line(&stdout, "grant").ends_with(&format!(
            r#"grant "grant:torch-cpu" issued, now revoked by "admin": "moved provider"  (seq {})"#,
            revoked.seq
        )),
        "{stdout}"
    );
    assert!(stdout.ends_with(&format!("denied: torch-feedstock may not use {CPU}: grant_revoked\n")), "{stdout}");
}

#[test]
fn self_approval_refusal_says_the_request_was_filed_on_their_behalf() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"));
    let cast = cast(&server, tmp.path());
    let (hvet_path, hvet) = keygen(tmp.path(), "h-vetinari");
    server.append(
        &server.admin(),
        "register-hvet",
        "actor.registered",
        json!({"actor": "h-vetinari", "key": hvet.verifier().to_string(), "roles": ["reviewer"]}),
    );
    server.append(
        &cast.bot,
        "open-pytorch",
        "access.requested",
        json!({"request": "pytorch-gpu", "project": PROJECT, "resource": RESOURCE, "justification": "CUDA",
               "pull_request": false, "on_behalf_of": "H-Vetinari"}),
    );
    let size = server.log().size;
    let (code, _, stderr) = run(&server, &["approve", "pytorch-gpu", "--key", hvet_path.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(stderr.contains("self_approval"), "{stderr}");
    assert!(
        stderr.contains(r#""h-vetinari" may not approve request "pytorch-gpu": "bot" filed it on their behalf (on_behalf_of "H-Vetinari")"#),
        "{stderr}"
    );
    assert_eq!(server.log().size, size);
}

/// `grantline report-usage` for a job of `usage` that ran from `started_at` to `ended_at`.
fn report(server: &Server, key: &Path, usage: &str, started_at: &str, ended_at: &str) -> (i32, String, String) {
    run(
        server,
        &[
            "report-usage",
            "--usage",
            usage,
            "--project",
            "numpy-feedstock",
            "--resource",
            CPU,
            "--amount",
            "42",
            "--started-at",
            started_at,
            "--ended-at",
            ended_at,
            "--key",
            key.to_str().unwrap(),
        ],
    )
}

#[test]
fn usage_that_cannot_have_happened_is_refused_and_the_log_still_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"));
    let cast = cast(&server, tmp.path());
    let (meter_path, meter) = keygen(tmp.path(), "meter");
    server.append(
        &server.admin(),
        "register-meter",
        "actor.registered",
        json!({"actor": "meter", "key": meter.verifier().to_string(), "roles": ["meter"]}),
    );
    define(&server, CPU, None);
    grant(&server, &cast, "numpy-cpu", "numpy-feedstock", CPU, json!({}));
    let issued = server.get_json("/v1/events/by-id/grant.issued:numpy-cpu");
    let issued_ms = issued["received_at_ms"].as_i64().unwrap();
    let at = ledger::statement::format_rfc3339_ms;

    let size = server.log().size;
    for (usage, started_at, ended_at, why) in [
        ("job-2001", "2001-03-01T10:00:00Z".to_string(), "2001-03-01T10:42:00Z".to_string(), "before grant"),
        ("job-2030", "2030-03-01T10:00:00Z".to_string(), "2030-03-01T10:42:00Z".to_string(), "after the server clock"),
        ("job-early", at(issued_ms - 60_000), at(issued_ms + 1), "before grant"),
    ] {
        let (code, stdout, stderr) = report(&server, &meter_path, usage, &started_at, &ended_at);
        assert_eq!(code, 1, "{usage}: {stdout}{stderr}");
        assert!(stderr.contains("usage_outside_grant") && stderr.contains(why), "{usage}: {stderr}");
    }
    assert_eq!(server.log().size, size, "a refused report is not logged");

    // A job that ran while the grant was active is counted.
    let (started_at, ended_at) = (at(issued_ms), at(api::now_ms()));
    let (code, stdout, stderr) = report(&server, &meter_path, "job-1", &started_at, &ended_at);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let answer = server.get_json(&format!("/v1/access/check?project=numpy-feedstock&resource={CPU}"));
    assert_eq!(answer["grant"]["used"], 42, "{answer}");

    // The auditor's replay checks each record at its received_at_ms and accepts the log.
    let log_key = server.log().log_key;
    let (code, stdout, stderr) = run(&server, &["verify", "--server", &server.url, "--log-key", &log_key]);
    assert_eq!(code, 0, "{stdout}{stderr}");
}
