//! A fresh PostgreSQL database per test, created in the server that `GRANTLINE_TEST_PG` names
//! (`.ci/run` starts a throwaway one and sets it).
//!
//! Without `GRANTLINE_TEST_PG` a PostgreSQL test skips with a notice, except under `CI=true`,
//! where it fails: CI must never pass by running none of them. The root package's cluster tests
//! use this file too (`tests/common/cluster.rs`).

use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable naming the test server: `postgres://user@host:port/dbname`.
pub(crate) const TEST_PG_ENV: &str = "GRANTLINE_TEST_PG";

/// PostgreSQL's limit on identifiers (NAMEDATALEN - 1), database names included.
pub(crate) const NAME_BYTES_MAX: usize = 63;

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The URL of a new, empty database for `test` (named `gl_<test>_<pid>_<counter>`), or `None`
/// when no test server is configured (after printing why; under `CI=true` it panics instead).
pub(crate) fn fresh_database(test: &str) -> Option<String> {
    let base = test_server(test)?;
    Some(create_database(&base, test).1)
}

/// The test server's URL, or `None` (after a notice) when none is configured; under `CI=true`
/// a missing server fails the test instead.
pub(crate) fn test_server(test: &str) -> Option<String> {
    match std::env::var(TEST_PG_ENV) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            let how = format!(
                "set {TEST_PG_ENV}=postgres://postgres@127.0.0.1:PORT/postgres (a superuser URL; .ci/run starts a \
                 throwaway server)"
            );
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("PostgreSQL tests must run under CI=true: {how}");
            }
            eprintln!("NOTICE: {test}: PostgreSQL tests skipped: {how}");
            None
        }
    }
}

/// Creates a new, empty database for `test` in the server at `base`; returns its name and URL.
pub(crate) fn create_database(base: &str, test: &str) -> (String, String) {
    let mut client = postgres::Client::connect(base, postgres::NoTls)
        .unwrap_or_else(|e| panic!("cannot connect to {TEST_PG_ENV}={base}: {e}"));
    // A name left over from an earlier run with the same pid is skipped, not reused.
    for _ in 0..100 {
        let name = database_name(test, std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
        match client.batch_execute(&format!("CREATE DATABASE \"{name}\"")) {
            Ok(()) => {
                let url = with_database(base, &name);
                return (name, url);
            }
            Err(e) if e.code() == Some(&postgres::error::SqlState::DUPLICATE_DATABASE) => continue,
            Err(e) => panic!("cannot create database {name} in {base}: {e}"),
        }
    }
    panic!("no free database name for {test} in {base}");
}

/// `gl_<test>_<pid>_<counter>`: lowercase letters, digits and `_` only, at most 63 bytes (the
/// test part is shortened to fit).
pub(crate) fn database_name(test: &str, pid: u32, counter: u64) -> String {
    let suffix = format!("_{pid}_{counter}");
    let room = NAME_BYTES_MAX - "gl_".len() - suffix.len();
    let test: String =
        test.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).take(room).collect();
    format!("gl_{test}{suffix}")
}

/// `url` with its database name replaced by `name` (user, host, port and parameters kept).
pub(crate) fn with_database(url: &str, name: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or_else(|| panic!("{TEST_PG_ENV} is not a URL: {url}"));
    let (rest, query) = match rest.split_once('?') {
        Some((rest, query)) => (rest, Some(query)),
        None => (rest, None),
    };
    let authority = rest.split_once('/').map_or(rest, |(authority, _)| authority);
    match query {
        Some(query) => format!("{scheme}://{authority}/{name}?{query}"),
        None => format!("{scheme}://{authority}/{name}"),
    }
}
