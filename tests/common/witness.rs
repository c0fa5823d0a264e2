//! Starting `grantline witness serve` for the witness tests (`tests/witness.rs`, the log's
//! witness client in `tests/witness_log.rs`).

use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::START_TIMEOUT;

/// The one line a witness prints once it listens, before its URL.
pub(crate) const LISTENING: &str = "grantline witness listening on ";

/// Spawns `cmd` (a `grantline witness serve`, its stderr appended to `log_path`) and waits for
/// its listening line; returns the child and its URL. Panics with the witness's log if it does
/// not start.
pub(crate) fn spawn(mut cmd: Command, log_path: &Path) -> (Child, String) {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log_path).unwrap();
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::from(log));
    let mut child = cmd.spawn().expect("spawn grantline witness serve");
    let rx = super::stdout_lines(&mut child);
    // The first line printed is the listening line (it is the only one).
    match rx.recv_timeout(START_TIMEOUT) {
        Ok(line) => match line.strip_prefix(LISTENING) {
            Some(url) => (child, url.to_string()),
            None => panic!("the witness printed {line:?} instead of its listening line"),
        },
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("witness did not start; its log:\n{}", std::fs::read_to_string(log_path).unwrap_or_default());
        }
    }
}
