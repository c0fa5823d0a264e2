//! The portable archive: JSON Lines, one record per line in the SPEC.md section 8 record
//! shape, in seq order. `export` writes it from a data directory or a server; `import` reads
//! it into a new data directory, verifying it completely first.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ledger::pg::PgLog;

use ledger::dsse::Envelope;
use ledger::statement::Statement;
use ledger::store::{AppendOutcome, Entry, Store, BATCH_ENTRIES_MAX, RANGE_RECORDS_MAX};

use super::engine::{self, Report, VerifyJob};
use super::source::{ExportSource, RecordSource};
use super::statefile::SignedCheckpoint;
use super::AuditError;
use crate::client::Client;
use crate::json::RecordJson;
use crate::limits::EVENTS_PAGE_RECORDS_MAX;

fn write_line(out: &mut dyn Write, rj: &RecordJson) -> Result<(), AuditError> {
    serde_json::to_writer(&mut *out, rj).map_err(|e| AuditError::io("writing the export", e))?;
    out.write_all(b"\n").map_err(|e| AuditError::io("writing the export", e))
}

/// Writes every record of a data directory's store; returns how many.
pub(crate) fn export_store(store: &Store, out: &mut dyn Write) -> Result<u64, AuditError> {
    let size = store.size();
    let mut next = 0u64;
    while next < size {
        let page = store.range(next, RANGE_RECORDS_MAX).map_err(|e| AuditError::io(format!("record {next}"), e))?;
        if page.is_empty() {
            return Err(AuditError::Unreadable(format!("record {next} is missing from the store")));
        }
        for rec in &page {
            let rj = RecordJson::from_record(rec).map_err(|e| AuditError::io("the store", e))?;
            write_line(out, &rj)?;
        }
        next += page.len() as u64;
    }
    out.flush().map_err(|e| AuditError::io("writing the export", e))?;
    Ok(next)
}

/// Writes the first `size` records of a server (the size of the checkpoint fetched first, so
/// the export and that checkpoint go together); returns how many.
pub(crate) fn export_server(server: &Client, size: u64, out: &mut dyn Write) -> Result<u64, AuditError> {
    let mut next = 0u64;
    while next < size {
        let want = (size - next).min(EVENTS_PAGE_RECORDS_MAX as u64) as usize;
        let page = server.events(next, want)?;
        if page.is_empty() {
            return Err(AuditError::Unreadable(format!("the server has no record {next}, its checkpoint has {size}")));
        }
        for rj in page.into_iter().take(want) {
            if rj.seq != next {
                return Err(AuditError::Unreadable(format!("the server sent record {} for seq {next}", rj.seq)));
            }
            write_line(out, &rj)?;
            next += 1;
        }
    }
    out.flush().map_err(|e| AuditError::io("writing the export", e))?;
    Ok(next)
}

/// Imports an export into the new data directory `dir`: verifies it completely (all checks
/// of `verify`), builds the store in a temp directory next to it, checks the rebuilt store
/// has the same leaves and root, and only then renames it into place.
pub(crate) fn import(
    export: &Path,
    dir: &Path,
    database: Option<&str>,
    job: &VerifyJob<'_>,
) -> Result<Report, AuditError> {
    if dir.exists() && std::fs::read_dir(dir).map(|mut d| d.next().is_some()).unwrap_or(true) {
        return Err(AuditError::Usage(format!(
            "{}: exists and is not empty; import needs a new directory",
            dir.display()
        )));
    }
    let (report, replayed) = engine::verify(&mut ExportSource::open(export)?, job)?;

    let tmp = temp_dir_for(dir)?;
    let db = tmp.join("db");
    let store = match database {
        None => Store::open(&db).map_err(|e| AuditError::io(db.display(), e)),
        Some(url) => PgLog::create(url)
            .and_then(|log| Store::open_replica(&db, Arc::new(log)))
            .map_err(|e| AuditError::Unreadable(format!("the database: {e}"))),
    };
    let built = store
        .and_then(|store| build_store(export, &store, &db, replayed.size(), replayed.tree.root()))
        .and_then(|()| {
            // As `init` leaves it: the verifier key auditors pin, next to the log it signs.
            let log_pub = crate::datadir::DataDir::new(&tmp).log_pub();
            std::fs::write(&log_pub, format!("{}\n", job.log_key)).map_err(|e| AuditError::io(log_pub.display(), e))
        });
    if let Err(e) = built {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if dir.exists() {
        // An empty directory, checked above.
        std::fs::remove_dir(dir).map_err(|e| AuditError::io(dir.display(), e))?;
    }
    std::fs::rename(&tmp, dir).map_err(|e| AuditError::io(dir.display(), e))?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::File::open(parent).and_then(|f| f.sync_all()).map_err(|e| AuditError::io(parent.display(), e))?;
    }
    Ok(report)
}

fn temp_dir_for(dir: &Path) -> Result<PathBuf, AuditError> {
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = dir.file_name().ok_or_else(|| AuditError::Usage(format!("{}: not a directory name", dir.display())))?;
    let tmp = parent.join(format!(".{}.import-{}", name.to_string_lossy(), std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| AuditError::io(tmp.display(), e))?;
    }
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(&tmp).map_err(|e| AuditError::io(tmp.display(), e))?;
    Ok(tmp)
}

/// Appends the export's records to a new store; each must come out as the same leaf.
fn build_store(export: &Path, store: &Store, db: &Path, size: u64, root: ledger::Hash) -> Result<(), AuditError> {
    let mut source = ExportSource::open(export)?;
    loop {
        let raws = source.next_window(BATCH_ENTRIES_MAX)?;
        if raws.is_empty() {
            break;
        }
        let mut leaves = Vec::with_capacity(raws.len());
        let mut batch = Vec::with_capacity(raws.len());
        for raw in raws {
            let super::source::Raw::Line { number, text } = raw else {
                return Err(AuditError::Unreadable("internal: an export yields lines".into()));
            };
            let changed =
                || AuditError::Unreadable(format!("{}: line {number} changed during the import", export.display()));
            let rj: RecordJson = serde_json::from_slice(&text).map_err(|_| changed())?;
            let rec = engine::leaf_of(&rj).map_err(|_| changed())?;
            let env = Envelope::parse(rec.envelope()).map_err(|_| changed())?;
            let statement = Statement::parse(&env.payload).map_err(|_| changed())?;
            batch.push(Entry {
                id: statement.id,
                envelope: rec.envelope().to_vec(),
                received_at_ms: rec.received_at_ms,
            });
            leaves.push(rec);
        }
        let outcomes = store.append(&batch).map_err(|e| AuditError::io(db.display(), e))?;
        for (want, got) in leaves.iter().zip(&outcomes) {
            match got {
                AppendOutcome::Appended(rec) if rec == want => {}
                other => {
                    return Err(AuditError::Unreadable(format!(
                        "record {} did not import as itself: {other:?}",
                        want.seq
                    )));
                }
            }
        }
    }
    let root_now = store.root_at(store.size()).map_err(|e| AuditError::io(db.display(), e))?;
    if store.size() != size || root_now != root {
        return Err(AuditError::Unreadable(format!("{}: changed during the import", export.display())));
    }
    Ok(())
}

/// Opens a checkpoint note with the pinned key; a bad one is a checkpoint failure.
pub(crate) fn open_checkpoint(
    note: &str,
    log_key: &ledger::keys::VerifierKey,
    whence: &str,
) -> Result<SignedCheckpoint, AuditError> {
    SignedCheckpoint::open(note, log_key).map_err(|e| {
        AuditError::Failed(super::Failure::new(
            super::FailureKind::Checkpoint,
            None,
            format!("{whence} does not verify with the pinned log key {log_key}: {e}"),
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::source::ExportSource;
    use crate::audit::testlog::TestLog;
    use crate::audit::FailureKind;

    fn store_of(log: &TestLog, db: &Path) -> Store {
        let store = Store::open(db).unwrap();
        let entries: Vec<Entry> = log
            .records
            .iter()
            .map(|r| {
                let env = Envelope::parse(r.envelope()).unwrap();
                let id = Statement::parse(&env.payload).unwrap().id;
                Entry { id, envelope: r.envelope().to_vec(), received_at_ms: r.received_at_ms }
            })
            .collect();
        store.append(&entries).unwrap();
        store
    }

    #[test]
    fn export_then_import_round_trips_and_verifies() {
        let (log, _) = TestLog::typical(3);
        let dir = tempfile::tempdir().unwrap();
        let store = store_of(&log, &dir.path().join("a").join("db"));
        let mut out = Vec::new();
        assert_eq!(export_store(&store, &mut out).unwrap(), log.size());
        let lines: Vec<&[u8]> = out.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len() as u64, log.size());
        let first: RecordJson = serde_json::from_slice(lines[0]).unwrap();
        assert_eq!(first, RecordJson::from_record(&log.records[0]).unwrap());

        let file = dir.path().join("log.jsonl");
        std::fs::write(&file, &out).unwrap();
        let key = log.log_key.verifier();
        let cp = log.checkpoint();
        let job = VerifyJob { log_key: &key, checkpoint: &cp, state_path: None, progress: false };
        // Reading the export verifies it.
        let mut source = ExportSource::from_reader(std::io::Cursor::new(out.clone()), "mem".into());
        assert_eq!(engine::verify(&mut source, &job).unwrap().0.events, log.size());

        let new = dir.path().join("b");
        let report = import(&file, &new, None, &job).unwrap();
        assert_eq!(report.events, log.size());
        let imported = Store::open(&new.join("db")).unwrap();
        assert_eq!(imported.size(), log.size());
        assert_eq!(imported.root_at(log.size()).unwrap(), cp.checkpoint.root);
        assert_eq!(imported.head(), store.head());
        drop(imported);
        // Never into a directory that holds something.
        assert!(matches!(import(&file, &new, None, &job), Err(AuditError::Usage(_))));
    }

    #[test]
    fn a_tampered_export_is_not_imported() {
        let (log, _) = TestLog::typical(2);
        let dir = tempfile::tempdir().unwrap();
        let store = store_of(&log, &dir.path().join("a").join("db"));
        let mut out = Vec::new();
        export_store(&store, &mut out).unwrap();
        let mut lines: Vec<Vec<u8>> =
            out.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec).collect();
        lines.swap(3, 4);
        let file = dir.path().join("log.jsonl");
        std::fs::write(&file, lines.join(&b'\n')).unwrap();
        let key = log.log_key.verifier();
        let cp = log.checkpoint();
        let job = VerifyJob { log_key: &key, checkpoint: &cp, state_path: None, progress: false };
        let new = dir.path().join("b");
        let e = import(&file, &new, None, &job).unwrap_err();
        assert_eq!(e.failure().map(|f| (f.kind, f.seq)), Some((FailureKind::Chain, Some(3))), "{e}");
        assert!(!new.exists());
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 2, "no temp directory is left: {names:?}");
    }
}
