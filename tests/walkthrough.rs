//! The README's five-minute walkthrough, step by step, through the real CLI, asserting each
//! answer. Commands run in a temp directory with the same relative paths as the README.

mod common;

use std::path::Path;
use std::process::Output;

use common::*;
use serde_json::Value;

const PROJECT_: &str = "pytorch-cpu-feedstock";
const RESOURCE_: &str = "cirun-openstack-gpu-large";

struct Shell<'a> {
    server: &'a Server,
    cwd: &'a Path,
}

impl Shell<'_> {
    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.server.cli_in(self.cwd, args, env)
    }

    /// A command that must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        self.ok_env(args, &[])
    }

    fn ok_env(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        let out = self.run(args, env);
        assert!(
            out.status.success(),
            "grantline {args:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `grantline check` for the walkthrough's project: (exit code, the verdict: the last line,
    /// after the checklist of steps).
    fn check(&self) -> (i32, String) {
        let out = self.run(&["check", PROJECT_, RESOURCE_], &[]);
        let stdout = String::from_utf8(out.stdout).unwrap();
        (out.status.code().unwrap(), stdout.lines().last().unwrap_or_default().to_string())
    }

    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }
}

#[test]
fn the_readme_walkthrough_works_step_by_step() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();

    // Terminal 1: `grantline serve` with no --data initialises ./grantline-data.
    let server = Server::start_default(cwd);
    let printed = server.stdout.join("\n");
    assert!(printed.contains("initialised ledger localhost/grantline in grantline-data"), "{printed}");
    assert!(printed.contains("grantline-data/admin.key"), "{printed}");
    let log = server.log();
    assert!(printed.contains(&format!("log verifier key (auditors pin this): {}", log.log_key)), "{printed}");
    assert!(!printed.contains("PRIVATE+KEY"), "a secret was printed");
    assert_eq!(log.origin, "localhost/grantline");
    assert_eq!(log.size, 1);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &str| std::fs::metadata(cwd.join(p)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("grantline-data"), 0o700);
        for key in ["grantline-data/admin.key", "grantline-data/log.key", "grantline-data/automation.key"] {
            assert_eq!(mode(key), 0o600, "{key}");
        }
    }
    let sh = Shell { server: &server, cwd };

    // Keys for a request bot and two reviewers.
    for (name, file) in [("conda-forge-bot", "bot.key"), ("alice", "alice.key"), ("bob", "bob.key")] {
        let vkey = sh.ok(&["keygen", name, "--out", file]);
        assert!(vkey.starts_with(&format!("{name}+")), "{vkey}");
        let pub_file = std::fs::read_to_string(cwd.join(format!("{file}.pub"))).unwrap();
        assert_eq!(pub_file.trim(), vkey.trim());
    }

    // The admin registers them, defines the resource, registers a sponsor and deposits.
    let admin = [("GRANTLINE_KEY", "grantline-data/admin.key")];
    let out = sh.ok_env(&["register-actor", "conda-forge-bot", "@bot.key.pub", "--roles", "requester,meter"], &admin);
    assert!(out.contains("actor conda-forge-bot registered with roles requester, meter"), "{out}");
    let out = sh.ok_env(&["register-actor", "alice", "@alice.key.pub", "--roles", "reviewer"], &admin);
    assert!(out.contains("actor alice registered with roles reviewer"), "{out}");
    assert!(out.contains("logged as record 2"), "{out}");
    sh.ok_env(&["register-actor", "bob", "@bob.key.pub", "--roles", "reviewer"], &admin);
    sh.ok_env(
        &[
            "define-resource",
            RESOURCE_,
            "--provider",
            "open-gpu-server",
            "--unit",
            "runner-minutes",
            "--approvals-required",
            "2",
            "--max-days",
            "365",
        ],
        &admin,
    );
    sh.ok_env(&["register-sponsor", "numfocus", "--name", "NumFOCUS"], &admin);
    sh.ok_env(
        &[
            "deposit",
            "--pool",
            "numfocus-2026",
            "--sponsor",
            "numfocus",
            "--amount",
            "100000",
            "--unit",
            "runner-minutes",
            "--resources",
            RESOURCE_,
        ],
        &admin,
    );
    let actors = server.get_json("/v1/actors");
    let names: Vec<&str> = actors["actors"].as_array().unwrap().iter().map(|a| a["actor"].as_str().unwrap()).collect();
    for name in ["admin", "conda-forge-bot", "alice", "bob"] {
        assert!(names.contains(&name), "{actors}");
    }

    // Request → two approvals → automatic grant.
    let out = sh.ok(&[
        "request",
        PROJECT_,
        RESOURCE_,
        "--request",
        "gpu-pytorch",
        "--justification",
        "CUDA builds time out on the free runners",
        "--days",
        "90",
        "--credits",
        "5000",
        "--key",
        "bot.key",
    ]);
    assert!(out.contains("request gpu-pytorch opened: pytorch-cpu-feedstock on cirun-openstack-gpu-large"), "{out}");
    assert_eq!(
        sh.check(),
        (3, "denied: pytorch-cpu-feedstock may not use cirun-openstack-gpu-large: awaiting_approvals (0 of 2)".into())
    );
    let out = sh.ok(&[
        "approve",
        "gpu-pytorch",
        "--pool",
        "numfocus-2026",
        "--note",
        "GPU tests are needed",
        "--key",
        "alice.key",
    ]);
    assert!(out.contains("request gpu-pytorch approved by alice"), "{out}");
    assert_eq!(
        sh.check(),
        (3, "denied: pytorch-cpu-feedstock may not use cirun-openstack-gpu-large: awaiting_approvals (1 of 2)".into())
    );
    sh.ok(&["approve", "gpu-pytorch", "--key", "bob.key"]);
    assert_eq!(
        sh.check(),
        (0, "allowed: pytorch-cpu-feedstock may use cirun-openstack-gpu-large (grant grant:gpu-pytorch)".into())
    );
    let requests = sh.ok(&["requests"]);
    let row = requests.lines().find(|l| l.starts_with("gpu-pytorch")).unwrap_or_else(|| panic!("{requests}"));
    assert!(row.contains("granted") && row.contains("2/2") && row.contains("grant:gpu-pytorch"), "{requests}");
    let allocations = sh.ok(&["allocations"]);
    let row = allocations.lines().find(|l| l.contains("grant:gpu-pytorch")).unwrap_or_else(|| panic!("{allocations}"));
    assert!(row.starts_with(RESOURCE_) && row.contains(PROJECT_) && row.contains("0/5000"), "{allocations}");
    // The grant was signed by the automation key.
    let grant = server.get_json("/v1/events/by-id/grant.issued:gpu-pytorch");
    assert!(grant["envelope"]["signatures"][0]["keyid"].as_str().unwrap().starts_with("automation+"), "{grant}");

    // Usage and the sponsor's report: a job that ran after the grant was issued.
    let (started_at, ended_at) = job_just_now();
    let out = sh.ok(&[
        "report-usage",
        "--usage",
        "job-1",
        "--project",
        PROJECT_,
        "--resource",
        RESOURCE_,
        "--amount",
        "42",
        "--started-at",
        &started_at,
        "--ended-at",
        &ended_at,
        "--key",
        "bot.key",
    ]);
    assert!(out.contains("usage job-1: 42 on cirun-openstack-gpu-large by pytorch-cpu-feedstock"), "{out}");
    let usage = sh.ok(&["usage", "numfocus"]);
    assert!(usage.starts_with("sponsor numfocus (NumFOCUS)"), "{usage}");
    let pool_row = usage.lines().find(|l| l.starts_with("numfocus-2026")).unwrap_or_else(|| panic!("{usage}"));
    let cells: Vec<&str> = pool_row.split_whitespace().collect();
    assert_eq!(cells, ["numfocus-2026", "runner-minutes", "100000", "5000", "42", "99958", RESOURCE_], "{usage}");
    let json = sh.json(&["usage", "numfocus", "--json"]);
    assert_eq!(json["projects"][0]["project"], PROJECT_);
    assert_eq!(json["projects"][0]["used"], 42);
    let allocations = sh.json(&["allocations", "--json"]);
    assert_eq!(allocations["resources"][0]["grants"][0]["used"], 42, "{allocations}");

    // Revoke.
    let out = sh.ok(&[
        "revoke",
        "grant:gpu-pytorch",
        "--reason",
        "project moved to another provider",
        "--key",
        "grantline-data/admin.key",
    ]);
    assert!(out.contains("grant grant:gpu-pytorch revoked"), "{out}");
    assert_eq!(
        sh.check(),
        (3, "denied: pytorch-cpu-feedstock may not use cirun-openstack-gpu-large: grant_revoked".into())
    );
    assert_eq!(sh.ok(&["allocations"]).trim(), "no active grants");

    // The curl lines: the log, the checkpoint, a page of events, the OpenAPI document.
    let log = server.log();
    // genesis, 3 actors, resource, sponsor, deposit, request, 2 approvals, grant, usage, revoke.
    assert_eq!(log.size, 13);
    let checkpoint = server.get("/v1/checkpoint").text().unwrap();
    assert!(checkpoint.starts_with(&format!("localhost/grantline\n{}\n", log.size)), "{checkpoint}");
    let page = server.get_json("/v1/events?from=0&limit=5");
    assert_eq!(page["records"].as_array().unwrap().len(), 5);
    assert_eq!(server.get_json("/healthz")["status"], "ok");
    let openapi = server.get_json("/openapi.json");
    assert_eq!(openapi["openapi"], "3.1.0");
    for path in ["/v1/events", "/v1/log", "/v1/checkpoint", "/v1/events/stream", "/v1/access/check", "/metrics"] {
        assert!(openapi["paths"].get(path).is_some(), "{path} missing from /openapi.json");
    }

    // A client error reads as plain words and exits non-zero.
    let out = sh.run(&["approve", "gpu-pytorch", "--key", "bob.key"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.starts_with("error: the server did not log request.approved"), "{stderr}");
    assert!(stderr.contains("HTTP 422"), "{stderr}");

    // Ctrl-C / SIGTERM stops the server cleanly; serving again resumes the same ledger.
    server.stop();
    let again = Server::start_default(cwd);
    assert!(again.stdout.is_empty(), "second start re-initialised: {:?}", again.stdout);
    assert_eq!(again.log(), log);
}

/// The README's sections that a newcomer runs, in order, in one shell.
const README_SECTIONS_RUN: [&str; 3] =
    ["Five-minute walkthrough", "Why am I denied?", "Auditing without trusting the server"];
/// Commands that serve or follow forever: the test starts the server itself and skips these.
const README_COMMANDS_SKIPPED: [&str; 4] = ["cargo run", "grantline serve", "grantline monitor", "curl -sN"];

/// One command of a README block: its text (continuation lines joined) and the output lines the
/// README promises right below it (`# allowed: …`, `# denied: …`).
struct ReadmeCommand {
    text: String,
    expected: Vec<String>,
}

fn readme_commands() -> Vec<ReadmeCommand> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let mut commands: Vec<ReadmeCommand> = Vec::new();
    let mut section = String::new();
    let mut in_sh = false;
    let mut pending = String::new();
    for line in readme.lines() {
        if let Some(title) = line.strip_prefix("## ") {
            section = title.trim().to_string();
            continue;
        }
        if !README_SECTIONS_RUN.contains(&section.as_str()) {
            continue;
        }
        if line.starts_with("```") {
            in_sh = !in_sh && line.trim() == "```sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        let trimmed = line.trim();
        if let Some(comment) = trimmed.strip_prefix("# ") {
            let promised = comment.starts_with("allowed:") || comment.starts_with("denied:");
            if let (true, Some(last)) = (promised && pending.is_empty(), commands.last_mut()) {
                last.expected.push(comment.to_string());
            }
            continue;
        }
        if trimmed.is_empty() {
            continue;
        }
        pending.push_str(line);
        pending.push('\n');
        if !trimmed.ends_with('\\') {
            commands.push(ReadmeCommand { text: std::mem::take(&mut pending), expected: Vec::new() });
        }
    }
    commands
}

/// Every `sh` block of the walkthrough, the denial and the audit sections, run as written by
/// bash in a fresh directory against a real server (its address in place of 127.0.0.1:8080),
/// one shell for all, so variables carry over as they do for a reader. Each command must
/// succeed (`check` may deny, exit 3) and print what the README promises below it.
#[test]
fn the_readme_runs_as_written() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let server = Server::start_default(cwd);
    let addr = server.url.trim_start_matches("http://").to_string();
    let commands = readme_commands();
    assert!(commands.len() > 30, "the README lost its walkthrough? {} commands", commands.len());

    let mut script = String::from("exec 2>&1\n");
    for (n, c) in commands.iter().enumerate() {
        let text = c.text.replace("127.0.0.1:8080", &addr).replace("localhost:8080", &addr);
        let skipped = README_COMMANDS_SKIPPED.iter().any(|s| text.trim_start().starts_with(s));
        script.push_str(&format!("echo '@@begin {n}'\n"));
        script.push_str(if skipped { ":\n" } else { &text });
        script.push_str(&format!("echo \"@@end {n} $?\"\n"));
    }
    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(cwd)
        .env("PATH", path)
        .env("GRANTLINE_SERVER", &server.url)
        .env_remove("GRANTLINE_KEY")
        .output()
        .unwrap();
    let transcript = String::from_utf8_lossy(&out.stdout).into_owned();

    for (n, c) in commands.iter().enumerate() {
        let begin = format!("@@begin {n}\n");
        let start =
            transcript.find(&begin).unwrap_or_else(|| panic!("command {n} never ran:\n{transcript}")) + begin.len();
        let end_marker = format!("@@end {n} ");
        let end = start + transcript[start..].find(&end_marker).unwrap_or_else(|| panic!("command {n} did not end"));
        let output = &transcript[start..end];
        let code: i32 = transcript[end + end_marker.len()..].lines().next().unwrap_or("").trim().parse().unwrap();
        let is_check = c.text.trim_start().starts_with("grantline check");
        let denied = c.expected.iter().any(|e| e.starts_with("denied:"));
        let code_ok = match (is_check, denied) {
            (true, true) => code == 3,
            (true, false) => code == 0 || (c.expected.is_empty() && code == 3),
            (false, _) => code == 0,
        };
        assert!(code_ok, "README command failed with exit code {code}:\n{}{output}", c.text);
        for expected in &c.expected {
            assert!(
                output.contains(expected.as_str()),
                "README promises {expected:?} after\n{}but it printed:\n{output}",
                c.text
            );
        }
    }
}
