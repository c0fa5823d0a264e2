//! The public pages in a real browser: the real `grantline` binary seeded with the README
//! walkthrough through the CLI, then Debian's headless Chromium loads each page and we assert
//! on the DOM it rendered (`--dump-dom`).
//!
//! Without `/usr/bin/chromium` (or `GRANTLINE_CHROMIUM`) the tests print a notice and skip,
//! unless `CI=true`, where they fail. `.ci/run` installs Debian's `chromium`.
//!
//! The README screenshots are made by the ignored test `readme_screenshots`:
//! `cargo test -p grantline --test pages_browser -- --ignored readme_screenshots`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use ledger::statement::format_rfc3339_ms;

const CHROMIUM_DEFAULT: &str = "/usr/bin/chromium";
/// One page load in a cold headless browser.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(90);
const SCRIPT: &str = "<script>alert(1)</script>";
const SCRIPT_ESCAPED: &str = "&lt;script&gt;alert(1)&lt;/script&gt;";

/// The browser, or None (with a notice) when it is missing outside CI.
fn chromium() -> Option<PathBuf> {
    let path = PathBuf::from(std::env::var("GRANTLINE_CHROMIUM").unwrap_or_else(|_| CHROMIUM_DEFAULT.to_string()));
    if path.exists() {
        return Some(path);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{} is missing; .ci/run installs Debian's chromium", path.display());
    }
    eprintln!("NOTICE: {} not found; skipping the browser test (apt-get install chromium)", path.display());
    None
}

/// Runs headless Chromium with `extra` arguments on `url`; returns its stdout.
fn run_chromium(browser: &Path, extra: &[String], url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut out).unwrap();
        out
    });
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "chromium on {url} exited with {status}");
            break;
        }
        if started.elapsed() > BROWSER_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish {url} within {BROWSER_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    reader.join().unwrap()
}

/// The DOM Chromium built for `path`, serialised.
fn dom(browser: &Path, server: &Server, path: &str) -> String {
    let dom = run_chromium(browser, &["--dump-dom".to_string()], &format!("{}{path}", server.url));
    assert!(dom.contains("</html>"), "no document for {path}: {dom}");
    dom
}

/// A finished job: (usage id, project, amount, started_at, ended_at).
type Job = (String, &'static str, u64, String, String);

/// The README's job, then more jobs for the chart and the tables: pytorch and cupy. Usage must
/// fall inside its grant's life, so every job ran just now, after the grants were issued; the
/// chart shows today's bar.
fn usage_jobs(now_ms: i64) -> Vec<Job> {
    let now = format_rfc3339_ms(now_ms);
    let mut jobs: Vec<Job> = vec![("job-1".into(), PROJECT, 42, now.clone(), now.clone())];
    for n in 1..=14u64 {
        jobs.push((format!("job-pytorch-{n}"), PROJECT, 40 + n * 73 % 230, now.clone(), now.clone()));
        if n % 2 == 1 {
            jobs.push((format!("job-cupy-{n}"), "cupy-feedstock", 15 + n * 37 % 90, now.clone(), now.clone()));
        }
    }
    jobs
}

/// What the jobs used, per project.
fn used_by(jobs: &[Job], project: &str) -> u64 {
    jobs.iter().filter(|j| j.1 == project).map(|j| j.2).sum()
}

/// The README walkthrough through the CLI, plus a second granted project, a few more days of
/// usage, and a pending request whose justification is a script. Returns the temp dir (the
/// keys live there) and the server.
fn seeded() -> (tempfile::TempDir, Server) {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path().to_path_buf();
    let server = Server::start_default(&cwd);
    let admin = [("GRANTLINE_KEY", "grantline-data/admin.key")];
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let out = server.cli_in(&cwd, args, env);
        assert!(
            out.status.success(),
            "grantline {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    for (name, file) in [("conda-forge-bot", "bot.key"), ("alice", "alice.key"), ("bob", "bob.key")] {
        run(&["keygen", name, "--out", file], &[]);
    }
    run(&["register-actor", "conda-forge-bot", "@bot.key.pub", "--roles", "requester,meter"], &admin);
    run(&["register-actor", "alice", "@alice.key.pub", "--roles", "reviewer"], &admin);
    run(&["register-actor", "bob", "@bob.key.pub", "--roles", "reviewer"], &admin);
    run(
        &[
            "define-resource",
            RESOURCE,
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
    run(&["register-sponsor", SPONSOR, "--name", "NumFOCUS"], &admin);
    run(
        &[
            "deposit",
            "--pool",
            POOL,
            "--sponsor",
            SPONSOR,
            "--amount",
            "100000",
            "--unit",
            "runner-minutes",
            "--resources",
            RESOURCE,
        ],
        &admin,
    );
    run(
        &[
            "request",
            PROJECT,
            RESOURCE,
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
        ],
        &[],
    );
    run(&["approve", "gpu-pytorch", "--pool", POOL, "--note", "GPU tests are needed", "--key", "alice.key"], &[]);
    run(&["approve", "gpu-pytorch", "--key", "bob.key"], &[]);
    // A second project, allowed on pull requests.
    run(
        &[
            "request",
            "cupy-feedstock",
            RESOURCE,
            "--request",
            "gpu-cupy",
            "--pull-request",
            "--justification",
            "CuPy needs a GPU to run its test suite",
            "--days",
            "30",
            "--credits",
            "2000",
            "--key",
            "bot.key",
        ],
        &[],
    );
    run(&["approve", "gpu-cupy", "--pool", POOL, "--key", "alice.key"], &[]);
    run(&["approve", "gpu-cupy", "--key", "bob.key"], &[]);
    let jobs = usage_jobs(api::now_ms());
    for (job, project, amount, started, ended) in &jobs {
        run(
            &[
                "report-usage",
                "--usage",
                job,
                "--project",
                project,
                "--resource",
                RESOURCE,
                "--amount",
                &amount.to_string(),
                "--started-at",
                started,
                "--ended-at",
                ended,
                "--key",
                "bot.key",
            ],
            &[],
        );
    }
    // A hostile request: its justification must show as text.
    run(
        &[
            "request",
            "evil-feedstock",
            RESOURCE,
            "--request",
            "gpu-evil",
            "--justification",
            SCRIPT,
            "--on-behalf-of",
            "mallory",
            "--key",
            "bot.key",
        ],
        &[],
    );
    run(&["approve", "gpu-evil", "--note", "<img src=x onerror=alert(2)>", "--key", "alice.key"], &[]);
    (tmp, server)
}

/// `99318` → `99,318`, as the pages show numbers.
fn thousands(n: u64) -> String {
    let digits: Vec<char> = n.to_string().chars().collect();
    let groups: Vec<String> = digits.rchunks(3).rev().map(|g| g.iter().collect()).collect();
    groups.join(",")
}

/// No element was injected: no script, no img, in the whole DOM (the pages have none).
fn assert_no_injection(dom: &str, page: &str) {
    let lower = dom.to_ascii_lowercase();
    assert!(!lower.contains("<script"), "{page}: a <script> element in the DOM");
    assert!(!lower.contains("<img"), "{page}: an <img> element in the DOM");
}

/// Over plain HTTP (no browser needed): HTML with its charset and a policy that forbids
/// scripts; unknown projects, sponsors and resources are HTML 404 pages; `/events` pages.
#[test]
fn pages_answer_html_and_404_pages() {
    let (_tmp, server) = seeded();
    for path in ["/", "/requests", "/events", &format!("/projects/{PROJECT}"), &format!("/sponsors/{SPONSOR}")] {
        let resp = server.get(path);
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(resp.headers()["content-type"], "text/html; charset=utf-8", "{path}");
        let csp = resp.headers()["content-security-policy"].to_str().unwrap().to_string();
        assert!(csp.starts_with("default-src 'none'") && !csp.contains("script-src"), "{path}: {csp}");
        assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    }
    for path in ["/projects/numpy-feedstock", "/projects/NOT-A-NAME", "/sponsors/nobody", "/?resource=nothing"] {
        let resp = server.get(path);
        assert_eq!(resp.status(), 404, "{path}");
        assert_eq!(resp.headers()["content-type"], "text/html; charset=utf-8", "{path}");
        assert!(resp.text().unwrap().contains("<h1>Not found</h1>"), "{path}");
    }
    // A page number that does not parse shows the first page; paging back reaches the genesis.
    let size = server.log().size;
    let first = server.get("/events?page=oops").text().unwrap();
    assert!(first.contains(&format!("<th scope=\"row\" class=\"num\">{}</th>", size - 1)));
    let genesis = server.get("/events?before=1").text().unwrap();
    assert!(genesis.contains("<code>ledger.genesis</code>"));
    assert!(genesis.contains("Newer records") && !genesis.contains("Older records"));
    // The API routes are untouched by the pages.
    assert_eq!(server.get("/v1/allocations").headers()["content-type"], "application/json");
    server.stop();
}

#[test]
fn pages_show_the_seeded_ledger_in_a_real_browser() {
    let Some(browser) = chromium() else { return };
    let (_tmp, server) = seeded();
    let jobs = usage_jobs(api::now_ms());
    let (pytorch_used, cupy_used) = (used_by(&jobs, PROJECT), used_by(&jobs, "cupy-feedstock"));
    let log = server.log();
    let usage = server.get_json(&format!("/v1/sponsors/{SPONSOR}/usage"));
    let pool = &usage["pools"][0];

    // `/`: the resource, both granted projects with PR flag, expiry and credits; the log facts.
    let index = dom(&browser, &server, "/");
    assert_no_injection(&index, "/");
    assert!(index.contains(&format!(">{RESOURCE}")), "{index}");
    assert!(index.contains(&format!("<a href=\"/projects/{PROJECT}\">{PROJECT}</a>")));
    assert!(index.contains("<a href=\"/projects/cupy-feedstock\">cupy-feedstock</a>"));
    assert!(index.contains(&format!("{} / 5,000 runner-minutes", thousands(pytorch_used))), "{index}");
    assert!(index.contains(&format!("{} / 2,000 runner-minutes", thousands(cupy_used))));
    assert!(index.contains("in 89 days") && index.contains("in 29 days"), "expiry of both grants");
    assert!(index.contains("<span class=\"badge ok\">yes</span>"), "cupy's pull-request flag");
    assert!(index.contains(&format!("<dd>{}</dd>", log.size)), "log size");
    assert!(index.contains(&log.log_key));
    let checkpoint = server.get("/v1/checkpoint").text().unwrap();
    let first_lines: String = checkpoint.lines().take(3).collect::<Vec<_>>().join("\n");
    assert!(index.contains(&first_lines), "the latest checkpoint:\n{first_lines}");
    assert!(!index.contains("evil-feedstock"), "a pending request is not an allocation");

    // `/requests`: the pending request with its approvals against the quorum, shown as text.
    let requests = dom(&browser, &server, "/requests");
    assert_no_injection(&requests, "/requests");
    assert!(requests.contains(SCRIPT_ESCAPED), "the justification is shown as text");
    assert!(!requests.contains(SCRIPT));
    assert!(requests.contains("&lt;img src=x onerror=alert(2)&gt;"), "the note is shown as text");
    assert!(requests.contains("<strong>1 of 2</strong> needed"));
    assert!(requests.contains("Pending (1)") && requests.contains("Closed (2)"));
    let closed = requests.find("id=\"closed\"").unwrap();
    let granted = requests.find("<code>gpu-pytorch</code>").unwrap();
    assert!(granted > closed);
    assert!(requests.contains("<code>grant:gpu-pytorch</code>"));

    // `/projects/{project}`: every history event links to its record and inclusion proof.
    let project = dom(&browser, &server, &format!("/projects/{PROJECT}"));
    assert_no_injection(&project, "project");
    let history = server.get_json("/v1/allocations?project=pytorch-cpu-feedstock");
    let grant = &history["resources"][0]["grants"][0];
    assert_eq!(grant["grant"], "grant:gpu-pytorch");
    for seq in grant["history"].as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap()) {
        assert!(project.contains(&format!("href=\"/v1/events/{seq}\"")), "record link {seq}");
        assert!(project.contains(&format!("href=\"/v1/proofs/inclusion/{seq}\"")), "proof link {seq}");
    }
    for kind in ["access.requested", "request.approved", "grant.issued", "usage.reported"] {
        assert!(project.contains(&format!("<code>{kind}</code>")), "{kind} in the history");
    }
    // The links work: the record and the proof they point at exist.
    let seq = grant["issued_seq"].as_u64().unwrap();
    assert_eq!(server.get_json(&format!("/v1/events/{seq}"))["statement"]["type"], "grant.issued");
    assert_eq!(server.get_json(&format!("/v1/proofs/inclusion/{seq}"))["index"], seq);
    let evil = dom(&browser, &server, "/projects/evil-feedstock");
    assert_no_injection(&evil, "evil project");
    assert!(evil.contains(SCRIPT_ESCAPED));

    // `/sponsors/{sponsor}`: the pool's figures as the JSON API has them, the chart, the table.
    let sponsor = dom(&browser, &server, &format!("/sponsors/{SPONSOR}"));
    assert_no_injection(&sponsor, "sponsor");
    let num = |v: &serde_json::Value| thousands(v.as_u64().unwrap());
    assert_eq!(pool["deposited"], 100_000);
    assert_eq!(pool["allocated"], 7000);
    assert_eq!(pool["used"], pytorch_used + cupy_used);
    for field in ["deposited", "allocated", "used", "remaining"] {
        assert!(sponsor.contains(&format!("<td class=\"num\">{}</td>", num(&pool[field]))), "{field}");
    }
    assert!(sponsor.contains("<svg"), "the chart");
    assert!(sponsor.contains("role=\"img\""));
    assert!(sponsor.contains("<title id=\"chart-title\">Daily usage of NumFOCUS"));
    assert!(sponsor.contains("<a href=\"/projects/cupy-feedstock\">cupy-feedstock</a>"));
    assert!(sponsor.contains(&format!("<td class=\"num\">{}</td>", thousands(pytorch_used))), "pytorch's usage");
    let today = format_rfc3339_ms(api::now_ms());
    assert!(sponsor.contains(&format!("<time datetime=\"{}\">", &today[..10])), "today's usage in the table");

    // `/events`: newest first, the hostile text as text.
    let events = dom(&browser, &server, "/events");
    assert_no_injection(&events, "/events");
    let newest = events.find(&format!("<th scope=\"row\" class=\"num\">{}</th>", log.size - 1)).unwrap();
    let older = events.find(&format!("<th scope=\"row\" class=\"num\">{}</th>", log.size - 2)).unwrap();
    assert!(newest < older);
    assert!(events.contains("<code>grant.issued</code>"));
    assert!(events.contains("<code>automation+"), "the automation's signature");
    server.stop();
}

/// Regenerates the README screenshots in api/assets/ from the seeded scenario.
#[test]
#[ignore = "writes api/assets/screenshot-*.png; run with --ignored to refresh them"]
fn readme_screenshots() {
    let Some(browser) = chromium() else { return };
    let (_tmp, server) = seeded();
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("api/assets");
    std::fs::create_dir_all(&assets).unwrap();
    for (file, path) in
        [("screenshot-index.png", "/".to_string()), ("screenshot-sponsor.png", format!("/sponsors/{SPONSOR}"))]
    {
        let out = assets.join(file);
        let _ = std::fs::remove_file(&out);
        run_chromium(
            &browser,
            &[format!("--screenshot={}", out.display()), "--window-size=1200,900".to_string()],
            &format!("{}{path}", server.url),
        );
        let png = std::fs::read(&out).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{file} is not a PNG");
    }
    server.stop();
}
