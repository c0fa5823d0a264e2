//! Where the auditor reads records from, in seq order and in windows: a data directory (the
//! sled store, opened for reading only), an export file (JSON Lines of the SPEC.md section 8
//! record shape) or a running server (`GET /v1/events` pages).
//!
//! Sources only read. Decoding and every check happen in the engine, so a source hands over
//! raw items and a broken record is reported by the engine at its seq.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use ledger::store::{Store, RANGE_RECORDS_MAX};

use super::AuditError;
use crate::client::Client;
use crate::json::RecordJson;
use crate::limits::{EVENTS_PAGE_RECORDS_MAX, EXPORT_LINE_BYTES_MAX};

/// One record as read, not yet decoded or checked.
#[derive(Debug, Clone)]
pub enum Raw {
    /// Leaf bytes straight from the store.
    Leaf(Vec<u8>),
    /// One line of an export file (without its newline), with its 1-based line number.
    Line { number: u64, text: Vec<u8> },
    /// A record as served, already parsed from JSON.
    Json(Box<RecordJson>),
}

/// Records in seq order, in windows.
pub trait RecordSource: Send {
    /// Up to `max` next records; empty at the end.
    fn next_window(&mut self, max: usize) -> Result<Vec<Raw>, AuditError>;
    /// How many records there are, when known (for the progress bar).
    fn len_hint(&self) -> Option<u64>;
    /// For messages: where the records come from.
    fn describe(&self) -> String;
}

/// The records of a data directory's store.
pub struct DataDirSource {
    store: Store,
    next: u64,
    size: u64,
    dir: PathBuf,
}

impl DataDirSource {
    /// Opens `DIR/db` (with `db`, DIR's replica of that PostgreSQL database, caught up). The
    /// store is only read; a missing `db` without a database is an error, never created.
    pub fn open(dir: &Path, db: Option<&str>) -> Result<DataDirSource, AuditError> {
        let store = open_store(dir, db)?;
        let size = store.size();
        Ok(DataDirSource { store, next: 0, size, dir: dir.to_path_buf() })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }
}

/// Opens the store of an existing data directory (never creates one), or with `database` the
/// directory's replica of that PostgreSQL database.
pub(crate) fn open_store(dir: &Path, database: Option<&str>) -> Result<Store, AuditError> {
    if let Some(url) = database {
        let data = crate::datadir::DataDir::new(dir).with_database(Some(url.to_string()));
        return crate::datadir::open_store(&data)
            .map(|(store, _)| store)
            .map_err(|e| AuditError::Unreadable(format!("{}: {e}", dir.display())));
    }
    let db = dir.join("db");
    if !db.is_dir() {
        return Err(AuditError::Usage(format!("{}: not a data directory (no db inside)", dir.display())));
    }
    Store::open(&db).map_err(|e| {
        AuditError::Unreadable(format!(
            "{}: cannot open the store: {e} (a running server holds it locked: verify it with --server, or stop it)",
            db.display()
        ))
    })
}

impl RecordSource for DataDirSource {
    fn next_window(&mut self, max: usize) -> Result<Vec<Raw>, AuditError> {
        if self.next >= self.size {
            return Ok(Vec::new());
        }
        let limit = max.min(RANGE_RECORDS_MAX);
        let records = self
            .store
            .range(self.next, limit)
            .map_err(|e| AuditError::io(format!("{}: reading from seq {}", self.dir.display(), self.next), e))?;
        if records.is_empty() {
            return Err(AuditError::Unreadable(format!("{}: record {} is missing", self.dir.display(), self.next)));
        }
        self.next += records.len() as u64;
        Ok(records.into_iter().map(|r| Raw::Leaf(r.leaf().to_vec())).collect())
    }

    fn len_hint(&self) -> Option<u64> {
        Some(self.size)
    }

    fn describe(&self) -> String {
        format!("data directory {}", self.dir.display())
    }
}

/// The records of an export file (JSON Lines), or of any reader in that format.
pub(crate) struct ExportSource {
    reader: Box<dyn BufRead + Send>,
    line: u64,
    name: String,
    done: bool,
}

impl ExportSource {
    pub(crate) fn open(path: &Path) -> Result<ExportSource, AuditError> {
        let file = std::fs::File::open(path).map_err(|e| AuditError::io(path.display(), e))?;
        Ok(ExportSource::from_reader(BufReader::with_capacity(1 << 20, file), path.display().to_string()))
    }

    pub(crate) fn from_reader(reader: impl BufRead + Send + 'static, name: String) -> ExportSource {
        ExportSource { reader: Box::new(reader), line: 0, name, done: false }
    }

    /// The next line without its newline; `None` at the end. A line longer than
    /// [`EXPORT_LINE_BYTES_MAX`] is returned cut at the limit (it fails to parse as a record).
    fn read_line(&mut self) -> Result<Option<Vec<u8>>, AuditError> {
        let mut buf = Vec::new();
        let n = (&mut self.reader)
            .take(EXPORT_LINE_BYTES_MAX as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|e| AuditError::io(&self.name, e))?;
        if n == 0 {
            return Ok(None);
        }
        self.line += 1;
        if buf.last() == Some(&b'\n') {
            buf.pop();
        } else if buf.len() > EXPORT_LINE_BYTES_MAX {
            // Skip the rest of the overlong line.
            let mut rest = Vec::new();
            loop {
                rest.clear();
                let m = (&mut self.reader)
                    .take(EXPORT_LINE_BYTES_MAX as u64)
                    .read_until(b'\n', &mut rest)
                    .map_err(|e| AuditError::io(&self.name, e))?;
                if m == 0 || rest.last() == Some(&b'\n') {
                    break;
                }
            }
        }
        Ok(Some(buf))
    }
}

impl RecordSource for ExportSource {
    fn next_window(&mut self, max: usize) -> Result<Vec<Raw>, AuditError> {
        let mut out = Vec::with_capacity(max.min(4096));
        while !self.done && out.len() < max {
            match self.read_line()? {
                None => self.done = true,
                // Blank lines hold no record (the chain decides whether records are missing).
                Some(text) if text.iter().all(u8::is_ascii_whitespace) => {}
                Some(text) => out.push(Raw::Line { number: self.line, text }),
            }
        }
        Ok(out)
    }

    fn len_hint(&self) -> Option<u64> {
        None
    }

    fn describe(&self) -> String {
        format!("export {}", self.name)
    }
}

/// The records of a running server, paging `GET /v1/events` up to `size` (the size of the
/// checkpoint being verified: records past it are not covered by it).
pub(crate) struct ServerSource<'a> {
    server: &'a Client,
    next: u64,
    size: u64,
}

impl<'a> ServerSource<'a> {
    pub(crate) fn new(server: &'a Client, size: u64) -> ServerSource<'a> {
        ServerSource { server, next: 0, size }
    }
}

impl RecordSource for ServerSource<'_> {
    fn next_window(&mut self, max: usize) -> Result<Vec<Raw>, AuditError> {
        let mut out = Vec::with_capacity(max.min(4096));
        while self.next < self.size && out.len() < max {
            let want =
                (self.size - self.next).min(EVENTS_PAGE_RECORDS_MAX as u64).min((max - out.len()) as u64) as usize;
            let page = self.server.events(self.next, want)?;
            if page.is_empty() {
                // Fewer records than the checkpoint commits to: the engine reports it.
                self.size = self.next;
                break;
            }
            for rec in page.into_iter().take(want) {
                out.push(Raw::Json(Box::new(rec)));
                self.next += 1;
            }
        }
        Ok(out)
    }

    fn len_hint(&self) -> Option<u64> {
        Some(self.size)
    }

    fn describe(&self) -> String {
        format!("server {}", self.server.base())
    }
}

/// Records already in memory (tests, import).
#[cfg(test)]
pub(crate) struct MemorySource {
    items: std::vec::IntoIter<Raw>,
    len: u64,
}

#[cfg(test)]
impl MemorySource {
    pub(crate) fn new(items: Vec<Raw>) -> MemorySource {
        let len = items.len() as u64;
        MemorySource { items: items.into_iter(), len }
    }
}

#[cfg(test)]
impl RecordSource for MemorySource {
    fn next_window(&mut self, max: usize) -> Result<Vec<Raw>, AuditError> {
        Ok(self.items.by_ref().take(max).collect())
    }

    fn len_hint(&self) -> Option<u64> {
        Some(self.len)
    }

    fn describe(&self) -> String {
        "records in memory".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(source: &mut ExportSource) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        loop {
            let w = source.next_window(2).unwrap();
            if w.is_empty() {
                return out;
            }
            for raw in w {
                match raw {
                    Raw::Line { number, text } => out.push((number, text)),
                    other => panic!("{other:?}"),
                }
            }
        }
    }

    #[test]
    fn export_lines_are_numbered_blank_lines_skipped_and_a_final_newline_is_optional() {
        let mut s = ExportSource::from_reader(std::io::Cursor::new(b"a\nb\n\nc".to_vec()), "t".into());
        assert_eq!(lines(&mut s), vec![(1, b"a".to_vec()), (2, b"b".to_vec()), (4, b"c".to_vec())]);
        let mut s = ExportSource::from_reader(std::io::Cursor::new(b"a\n\n".to_vec()), "t".into());
        assert_eq!(lines(&mut s), vec![(1, b"a".to_vec())]);
    }

    #[test]
    fn overlong_lines_are_cut_and_skipped() {
        let mut text = vec![b'x'; EXPORT_LINE_BYTES_MAX * 2 + 7];
        text.extend_from_slice(b"\nnext\n");
        let mut s = ExportSource::from_reader(std::io::Cursor::new(text), "t".into());
        let got = lines(&mut s);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].1.len(), EXPORT_LINE_BYTES_MAX + 1);
        assert_eq!(got[1], (2, b"next".to_vec()));
    }

    #[test]
    fn a_missing_data_directory_is_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nothing");
        assert!(matches!(DataDirSource::open(&missing, None), Err(AuditError::Usage(_))));
        assert!(!missing.exists());
    }
}
