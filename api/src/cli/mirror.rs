//! `grantline mirror`: a verified static copy of a log's checkpoint and tiles. The work is done
//! by [`crate::tiles::mirror`]; this module parses arguments, draws progress and prints.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle, TermLike};

use super::error::{CliError, CliResult};
use crate::audit::{exit, read_log_key};
use crate::limits::MIRROR_PROGRESS_LINE_INTERVAL_MS;
use crate::tiles::mirror::{mirror, MirrorError};
use crate::tiles::read::HttpTiles;

const MIRROR_HELP: &str = "\
Examples:
  grantline mirror --server https://ledger.example.org --log-key log.pub --out /srv/www/ledger
  python3 -m http.server --directory /srv/www/ledger 8000   # any static web server will do
  grantline verify --tiles http://127.0.0.1:8000 --log-key log.pub

Writes OUT/checkpoint and OUT/tile/... exactly as the server serves them (C2SP tlog-tiles), after
authenticating every hash tile against the server's checkpoint, signed by the pinned log key,
and every entry bundle against the level-0 hashes. A later run extends the copy: it refuses a
log that shrank or forked, reads the tiles it already has instead of fetching them again (they
are checked like the others; one that fails is reported, never replaced), writes each file
atomically and OUT/checkpoint last, and removes the partial tiles that neither the new nor the
previous checkpoint needs. An interrupted run is completed by the next one.

--log-key is the log's verifier key, or a file holding it (`grantline init` prints it).

Exit codes: 0 mirrored; 1 the server or OUT unreadable or unwritable; 2 usage; 12 the server's
checkpoint or a tile does not verify, or a file of OUT was altered; 13 the log shrank or forked.";

/// Copy a log's checkpoint and tiles into a directory any static web server can serve.
#[derive(Args, Debug)]
#[command(after_help = MIRROR_HELP)]
pub(crate) struct MirrorArgs {
    /// The log's tile API: a grantline server, or any static host of a mirror (its URL prefix).
    #[arg(long, value_name = "URL")]
    pub server: String,
    /// The log's verifier key (or a file holding it): the only thing trusted.
    #[arg(long, value_name = "VKEY")]
    pub log_key: String,
    /// The mirror directory (created if missing; an earlier mirror of the same log is extended).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Show progress even when stderr is not a terminal (one plain line a second).
    #[arg(long)]
    pub progress: bool,
}

pub(super) fn run(a: MirrorArgs) -> CliResult {
    let key = read_log_key(&a.log_key)?;
    let server = HttpTiles::new(&a.server)?;
    let bar = progress_bar(a.progress);
    let result = mirror(&server, &key, &a.out, &bar);
    bar.finish_and_clear();
    let report = result.map_err(|e| {
        let code = match e {
            MirrorError::Unverified(_) | MirrorError::Damaged(_) => exit::CHECKPOINT,
            MirrorError::Inconsistent(_) => exit::CONSISTENCY,
            MirrorError::Io(_) => exit::IO,
        };
        CliError::with_code(format!("MIRROR REFUSED: {e}"), code)
    })?;
    for warning in &report.warnings {
        eprintln!("warning: {warning}");
    }
    let previous = match report.previous_size {
        Some(size) if size == report.size => format!(" (unchanged: {size} records before)"),
        Some(size) => format!(" (extended from {size} records)"),
        None => String::new(),
    };
    println!(
        "mirrored {} records into {}{previous}: {} tiles fetched, {} reused, {} stale removed in {:.1} s \
         ({:.0} records/s)",
        report.size,
        a.out.display(),
        report.fetched,
        report.reused,
        report.removed,
        report.elapsed_ms as f64 / 1000.0,
        report.records_per_s()
    );
    Ok(())
}

/// The bar on stderr when it is a terminal; with `--progress` elsewhere, plain lines.
fn progress_bar(asked: bool) -> ProgressBar {
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else if asked {
        ProgressDrawTarget::term_like(Box::new(PlainLines { last: Mutex::new(None) }))
    } else {
        return ProgressBar::hidden();
    };
    let bar = ProgressBar::with_draw_target(None, target);
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} mirroring [{bar:40}] {pos}/{len} tiles ({per_sec}, eta {eta})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Progress for a log file: a redraw is a new line on stderr (at most one per
/// `MIRROR_PROGRESS_LINE_INTERVAL_MS`), nothing is erased.
#[derive(Debug)]
struct PlainLines {
    last: Mutex<Option<Instant>>,
}

impl TermLike for PlainLines {
    fn width(&self) -> u16 {
        100
    }
    fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn write_line(&self, line: &str) -> std::io::Result<()> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let interval = Duration::from_millis(MIRROR_PROGRESS_LINE_INTERVAL_MS);
        if line.trim().is_empty() || last.is_some_and(|at| at.elapsed() < interval) {
            return Ok(());
        }
        *last = Some(Instant::now());
        eprintln!("{line}");
        Ok(())
    }
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        self.write_line(s)
    }
    fn clear_line(&self) -> std::io::Result<()> {
        Ok(())
    }
    fn flush(&self) -> std::io::Result<()> {
        Ok(())
    }
}
