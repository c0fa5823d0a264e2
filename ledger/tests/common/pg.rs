//! A fresh PostgreSQL database per test, created in the server that `GRANTLINE_TEST_PG` names
//! (`.ci/run` starts a throwaway one and sets it).
//!
//! Without `GRANTLINE_TEST_PG` a PostgreSQL test skips with a notice, except under `CI=true`,
//! where it fails: CI must never pass by running none of them.

use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable naming the test server: `postgres://user@host:port/dbname`.
pub(crate) const TEST_PG_ENV: &str = "GRANTLINE_TEST_PG";

/// PostgreSQL's limit on identifiers (NAMEDATALEN - 1), database names included.
const NAME_BYTES_MAX: usize = 63;

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The URL of a new, empty database for `test` (named `gl_<test>_<pid>_<counter>`), or `None`
/// when no test server is configured (after printing why; under `CI=true` it panics instead).
pub(crate) fn fresh_database(test: &str) -> Option<String> {
    let base = match std::env::var(TEST_PG_ENV) {
        Ok(url) if !url.trim().is_empty() => url,
        _ => {
            let how = format!(
                "set {TEST_PG_ENV}=postgres://user@127.0.0.1:PORT/postgres (.ci/run starts a throwaway server)"
            );
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("PostgreSQL tests must run under CI=true: {how}");
            }
            eprintln!("NOTICE: {test}: PostgreSQL tests skipped: {how}");
            return None;
        }
    };
    let mut client = postgres::Client::connect(&base, postgres::NoTls)
        .unwrap_or_else(|e| panic!("cannot connect to {TEST_PG_ENV}={base}: {e}"));
    // A name left over from an earlier run with the same pid is skipped, not reused.
    for _ in 0..100 {
        let name = database_name(test, std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
        match client.batch_execute(&format!("CREATE DATABASE \"{name}\"")) {
            Ok(()) => return Some(with_database(&base, &name)),
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

#[test]
fn database_names_are_valid_identifiers_and_urls_keep_everything_but_the_name() {
    let long = database_name("Some::Test-Name with spaces and a very long tail that goes on and on", 4_194_304, 99);
    assert!(long.len() <= NAME_BYTES_MAX, "{long}");
    assert!(long.starts_with("gl_some__test_name_with_spaces"), "{long}");
    assert!(long.ends_with("_4194304_99"), "{long}");
    assert!(long.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'), "{long}");
    assert_eq!(database_name("x", 1, 2), "gl_x_1_2");
    assert_eq!(with_database("postgres://postgres@127.0.0.1:5/postgres", "d"), "postgres://postgres@127.0.0.1:5/d");
    assert_eq!(with_database("postgres://u:p@h:5", "d"), "postgres://u:p@h:5/d");
    assert_eq!(with_database("postgresql://u@h/db?sslmode=disable", "d"), "postgresql://u@h/d?sslmode=disable");
}
