//! The C2SP tile API (DESIGN section 12) of the real server: one log grown through the sizes
//! 1, 255, 256, 257, 65,536 and 70,000, read at each through `/checkpoint` and `/tile/…` alone
//! by Go's golang.org/x/mod/sumdb/tlog (`tlogcheck tiles`, code this project did not write),
//! and checked here: the exact tile set (the spec's worked example at 70,000), its headers,
//! its 404s and 400s, and entry bundles that are exactly the stored records.
//!
//! The Go part needs `go` and the x/mod sources (Debian: golang-go, golang-golang-x-mod-dev).
//! Without them it prints a notice and only the Go part is skipped, except under CI=true,
//! where it fails.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;

use api::json::RecordPage;
use common::*;
use ledger::tile::{self, Kind, Tile};

/// The sizes the log is read at, in the order it grows through them.
const SIZES: [u64; 6] = [1, 255, 256, 257, 65_536, 70_000];
/// Records `loadgen fill --actors 1` appends before its events: the actor, a resource, a grant.
const FILL_SETUP_RECORDS: u64 = 3;
/// `Cache-Control` of a full tile or bundle (DESIGN section 12).
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// The checkpoint may be cached "a few seconds at most".
const CHECKPOINT_MAX_AGE_S_MAX: u64 = 5;
/// The events page size `/v1/events` allows.
const EVENTS_PAGE_RECORDS: u64 = 1000;

/// One GET: status, the headers tests look at, the body.
struct Got {
    status: u16,
    content_type: String,
    cache_control: String,
    body: Vec<u8>,
}

fn get(http: &reqwest::blocking::Client, server: &Server, path: &str) -> Got {
    let resp = http.get(format!("{}/{path}", server.url)).send().unwrap();
    let header = |name| resp.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let (content_type, cache_control) = (header("content-type"), header("cache-control"));
    Got { status: resp.status().as_u16(), content_type, cache_control, body: resp.bytes().unwrap().to_vec() }
}

/// `max-age` of a `public, max-age=N` Cache-Control without `immutable`.
fn short_max_age(path: &str, cache_control: &str) -> u64 {
    let age = cache_control.strip_prefix("public, max-age=").unwrap_or_else(|| panic!("{path}: {cache_control:?}"));
    age.parse().unwrap_or_else(|_| panic!("{path}: a short max-age without immutable, got {cache_control:?}"))
}

/// Appends `events` usage reports (after the fill's setup) offline to the stopped server's data.
fn fill(data: &Path, events: u64) {
    let out = Command::new(BIN)
        .args(["loadgen", "fill", "--actors", "1", "--events", &events.to_string(), "--data"])
        .arg(data)
        .output()
        .unwrap();
    assert!(out.status.success(), "loadgen fill: {}", String::from_utf8_lossy(&out.stderr));
}

/// Grows the log to `target` records: over HTTP for a step of one or two, offline with the
/// load generator's fill (restarting the server) for a larger one.
fn grow(server: Server, target: u64, step: u64) -> Server {
    let size = server.log().size;
    assert!(target > size, "the log already has {size} records");
    if target - size <= 2 {
        let admin = server.admin();
        for n in size..target {
            let key = ledger::keys::SigningKey::generate(&format!("actor{n}")).unwrap();
            server.append(
                &admin,
                &format!("register-{n}-{step}"),
                "actor.registered",
                serde_json::json!({"actor": key.name(), "key": key.verifier().to_string(), "roles": ["reviewer"]}),
            );
        }
        return server;
    }
    let data = server.data.clone();
    server.stop();
    fill(&data, target - size - FILL_SETUP_RECORDS);
    Server::start(&data)
}

/// The leaves `/v1/events` serves for `[from, from + count)`.
fn leaves_from_events(http: &reqwest::blocking::Client, server: &Server, from: u64, count: u64) -> Vec<Vec<u8>> {
    let mut leaves = Vec::new();
    while (leaves.len() as u64) < count {
        let at = from + leaves.len() as u64;
        let limit = (count - leaves.len() as u64).min(EVENTS_PAGE_RECORDS);
        let url = format!("{}/v1/events?from={at}&limit={limit}", server.url);
        let page: RecordPage = http.get(url).send().unwrap().json().unwrap();
        assert!(!page.records.is_empty(), "/v1/events has no record {at}");
        leaves.extend(page.records.iter().map(|r| ledger::b64::decode(&r.leaf).unwrap()));
    }
    leaves
}

/// Every hash tile and entry bundle of the tree of `size` leaves answers 200 with the right
/// length and headers, and nothing past them exists. Returns the bundles' entries in order.
fn check_tile_set(http: &reqwest::blocking::Client, server: &Server, size: u64) -> Vec<Vec<u8>> {
    let expect_headers = |path: &str, got: &Got, full: bool| {
        assert_eq!(got.status, 200, "{path}: {}", String::from_utf8_lossy(&got.body));
        assert_eq!(got.content_type, "application/octet-stream", "{path}");
        if full {
            assert_eq!(got.cache_control, IMMUTABLE, "{path}");
        } else {
            short_max_age(path, &got.cache_control);
        }
    };
    for t in tile::hash_tiles(size) {
        let path = t.path();
        let got = get(http, server, &path);
        expect_headers(&path, &got, t.is_full());
        assert_eq!(got.body.len(), tile::HASH_BYTES * usize::from(t.width), "{path}");
    }
    let mut entries = Vec::new();
    for b in tile::entry_bundles(size) {
        let path = b.path();
        let got = get(http, server, &path);
        expect_headers(&path, &got, b.is_full());
        let bundle = tile::decode_bundle(&got.body).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(bundle.len(), usize::from(b.width), "{path}");
        entries.extend(bundle.into_iter().map(<[u8]>::to_vec));
    }
    assert_eq!(entries.len() as u64, size);
    // Past the edge of each level: the next full tile and a partial one wider than the tree's.
    for kind in [Kind::Entries, Kind::Hash(0), Kind::Hash(1), Kind::Hash(2), Kind::Hash(3)] {
        let level = if let Kind::Hash(level) = kind { level } else { 0 };
        let count = tile::hashes_at_level(size, level);
        let index = count / tile::TILE_WIDTH;
        let width = tile::partial_width(size, level);
        let mut absent = vec![Tile { kind, index, width: tile::TILE_WIDTH as u16 }];
        if u64::from(width) + 1 < tile::TILE_WIDTH {
            absent.push(Tile { kind, index, width: width + 1 });
        }
        for t in absent {
            let got = get(http, server, &t.path());
            assert_eq!(got.status, 404, "{} at size {size}", t.path());
            assert_eq!(got.content_type, "application/problem+json", "{}", t.path());
        }
    }
    entries
}

/// Runs `tlogcheck tiles` against `url`: (success, what it printed).
fn go_check(bin: &Path, url: &str, log_key: &str, older: &[PathBuf]) -> (bool, String) {
    let out = Command::new(bin).arg("tiles").arg(url).arg(log_key).args(older).output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), said.trim().to_string())
}

/// A proxy in front of `upstream` that flips one byte of the body of `/{path}` and passes
/// everything else through; one request per connection. Returns its URL.
fn tampering_proxy(upstream: &str, path: &str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (upstream, target) = (upstream.to_string(), format!("/{path}"));
    std::thread::spawn(move || {
        let http = http();
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let _ = serve_one(&http, &mut conn, &upstream, &target);
        }
    });
    url
}

fn serve_one(http: &reqwest::blocking::Client, conn: &mut TcpStream, upstream: &str, target: &str) -> Option<()> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        conn.read_exact(&mut byte).ok()?;
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).ok()?;
    let path = head.split(' ').nth(1)?.to_string();
    let resp = http.get(format!("{upstream}{path}")).send().ok()?;
    let status = resp.status().as_u16();
    let mut body = resp.bytes().ok()?.to_vec();
    if path == target && !body.is_empty() {
        let at = body.len() / 2;
        body[at] ^= 1;
    }
    let answer = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    conn.write_all(answer.as_bytes()).ok()?;
    conn.write_all(&body).ok()
}

#[test]
fn go_tlog_reads_the_log_through_the_tile_api() {
    let go = tlogcheck();
    let tmp = tempfile::tempdir().unwrap();
    let http = http();
    let mut server = Server::start(&tmp.path().join("data"));
    let log_key = server.log().log_key;
    let mut older: Vec<PathBuf> = Vec::new();
    let mut entries = Vec::new();
    for (step, &size) in SIZES.iter().enumerate() {
        if step > 0 {
            server = grow(server, size, step as u64);
        }
        assert_eq!(server.log().size, size);

        // /checkpoint is /v1/checkpoint, briefly cacheable.
        let checkpoint = get(&http, &server, "checkpoint");
        assert_eq!(checkpoint.status, 200);
        assert_eq!(checkpoint.content_type, "text/plain; charset=utf-8");
        assert!(short_max_age("checkpoint", &checkpoint.cache_control) <= CHECKPOINT_MAX_AGE_S_MAX);
        let note = String::from_utf8(checkpoint.body).unwrap();
        assert_eq!(note, server.get("/v1/checkpoint").text().unwrap());
        assert!(note.starts_with(&format!("localhost/grantline\n{size}\n")), "{note}");

        entries = check_tile_set(&http, &server, size);
        if size <= 257 {
            assert_eq!(entries, leaves_from_events(&http, &server, 0, size), "bundles at size {size}");
        }

        if let Some(bin) = &go {
            let (ok, said) = go_check(bin, &server.url, &log_key, &older);
            assert!(ok, "Go's tlog cannot read the log of {size} records through its tiles: {said}");
            assert_eq!(said, format!("ok tiles {size} {size} {}", older.len()));
        }
        let file = tmp.path().join(format!("checkpoint-{size}"));
        std::fs::write(&file, &note).unwrap();
        older.push(file);

        // The checker is not a rubber stamp: one flipped byte in a tile, a bundle or the
        // checkpoint fails it.
        if let (Some(bin), 257) = (&go, size) {
            for (path, expected) in [
                ("tile/entries/000", "tile/entries/000: entry"),
                ("tile/entries/001.p/1", "tile/entries/001.p/1: entry 0 (record 256)"),
                ("tile/0/000", "downloaded inconsistent tile"),
                ("tile/1/000.p/1", "downloaded inconsistent tile"),
                ("checkpoint", "note.Open"),
            ] {
                let proxy = tampering_proxy(&server.url, path);
                let (ok, said) = go_check(bin, &proxy, &log_key, &older[..older.len() - 1]);
                assert!(!ok && said.contains(expected), "flipped a byte in {path}: {said}");
            }
        }
    }

    // At 70,000 the tile set is the spec's worked example; these neighbours do not exist.
    let paths: Vec<String> = tile::hash_tiles(70_000).iter().map(Tile::path).collect();
    assert_eq!(paths.len(), 273 + 4);
    for edge in ["tile/0/273.p/112", "tile/1/000", "tile/1/001.p/17", "tile/2/000.p/1"] {
        assert!(paths.iter().any(|p| p == edge), "{edge}");
    }
    for path in [
        "tile/0/274",
        "tile/0/273.p/113",
        "tile/1/002",
        "tile/1/001.p/18",
        "tile/2/000.p/2",
        "tile/2/001",
        "tile/3/000.p/1",
        "tile/entries/274",
        "tile/entries/273.p/113",
    ] {
        let got = get(&http, &server, path);
        assert_eq!(got.status, 404, "{path}");
        let problem: serde_json::Value = serde_json::from_slice(&got.body).unwrap();
        assert_eq!(problem["code"], "not_found", "{path}: {problem}");
        assert!(problem["detail"].as_str().unwrap().contains(path), "{path}: {problem}");
    }
    // Malformed paths are 400 problems, not 404s.
    for path in
        ["tile/0/1", "tile/9/000", "tile/0/000.p/256", "tile/0/x000/001", "tile/entries/000.p/0", "tile/tile/0/000"]
    {
        let got = get(&http, &server, path);
        assert_eq!(got.status, 400, "{path}");
        assert_eq!(got.content_type, "application/problem+json", "{path}");
        let problem: serde_json::Value = serde_json::from_slice(&got.body).unwrap();
        assert_eq!(problem["code"], "invalid_path", "{path}: {problem}");
        assert!(problem["detail"].as_str().unwrap().contains(path), "{path}: {problem}");
    }
    // A reader of an older checkpoint gets the narrower partial tiles of its size.
    let narrow = get(&http, &server, "tile/0/273.p/5");
    let full_edge = get(&http, &server, "tile/0/273.p/112");
    assert_eq!(narrow.status, 200);
    assert_eq!(narrow.body, full_edge.body[..5 * tile::HASH_BYTES]);
    let openapi = server.get_json("/openapi.json");
    for path in ["/checkpoint", "/tile/{level}/{index}", "/tile/entries/{index}"] {
        assert!(openapi["paths"].get(path).is_some(), "{path} missing from /openapi.json");
    }
    // The partial bundle as /v1/events serves it, then every bundle against the store itself.
    assert_eq!(entries[69_888..], leaves_from_events(&http, &server, 69_888, 112)[..]);
    let data = server.data.clone();
    server.stop();
    let store = ledger::store::Store::open(&data.join("db")).unwrap();
    assert_eq!(store.size(), 70_000);
    let mut seq = 0;
    while seq < 70_000 {
        for record in store.range(seq, ledger::store::RANGE_RECORDS_MAX).unwrap() {
            assert_eq!(entries[record.seq as usize], record.leaf(), "record {} in its bundle", record.seq);
            seq += 1;
        }
    }
}
