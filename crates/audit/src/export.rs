//! The export file: a whole log for offline verification.
//!
//! ```text
//! LAGESBILD-AUDIT-EXPORT 1\n
//! <origin>\n
//! records: 'C' u32 length, checkpoint note
//!          'E' u64 index, 32-byte stored leaf hash, u32 length, entry bytes
//! ```
//! Integers are big-endian. The leaf hash is what the log's tree held, so a
//! verifier can name an entry changed after it was logged.

use crate::checkpoint::MAX_NOTE_BYTES;
use crate::merkle::Hash;
use std::io::{self, BufRead, Read, Write};

/// First line of every export.
pub const MAGIC: &[u8] = b"LAGESBILD-AUDIT-EXPORT 1\n";

/// Largest entry accepted.
pub const MAX_ENTRY_BYTES: usize = 1024 * 1024;

/// One record of an export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A checkpoint the log kept.
    Checkpoint(String),
    /// An entry with the leaf hash the tree held for it.
    Entry {
        /// Its index.
        index: u64,
        /// The stored leaf hash.
        leaf: Hash,
        /// Its bytes.
        bytes: Vec<u8>,
    },
}

/// Writes an export.
#[derive(Debug)]
pub struct ExportWriter<W: Write> {
    out: W,
}

impl<W: Write> ExportWriter<W> {
    /// Starts an export of log `origin`.
    pub fn new(mut out: W, origin: &str) -> io::Result<Self> {
        out.write_all(MAGIC)?;
        out.write_all(origin.as_bytes())?;
        out.write_all(b"\n")?;
        Ok(Self { out })
    }

    /// Writes a checkpoint.
    pub fn checkpoint(&mut self, note: &str) -> io::Result<()> {
        self.out.write_all(b"C")?;
        self.out.write_all(&(note.len() as u32).to_be_bytes())?;
        self.out.write_all(note.as_bytes())
    }

    /// Writes an entry.
    pub fn entry(&mut self, index: u64, leaf: &Hash, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(b"E")?;
        self.out.write_all(&index.to_be_bytes())?;
        self.out.write_all(leaf)?;
        self.out.write_all(&(bytes.len() as u32).to_be_bytes())?;
        self.out.write_all(bytes)
    }

    /// Flushes and returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Reads an export record by record.
#[derive(Debug)]
pub struct ExportReader<R: BufRead> {
    input: R,
    origin: String,
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

impl<R: BufRead> ExportReader<R> {
    /// Reads the header.
    pub fn new(mut input: R) -> io::Result<Self> {
        let mut magic = vec![0u8; MAGIC.len()];
        input
            .read_exact(&mut magic)
            .map_err(|_| invalid("not an audit export (too short)".into()))?;
        if magic != MAGIC {
            return Err(invalid("not an audit export (bad first line)".into()));
        }
        let mut origin = Vec::new();
        input.by_ref().take(1024).read_until(b'\n', &mut origin)?;
        if origin.pop() != Some(b'\n') || origin.is_empty() {
            return Err(invalid("export has no origin line".into()));
        }
        let origin =
            String::from_utf8(origin).map_err(|_| invalid("export origin is not UTF-8".into()))?;
        Ok(Self { input, origin })
    }

    /// The log's origin.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The next record, or `None` at the end.
    pub fn next_record(&mut self) -> io::Result<Option<Record>> {
        let mut tag = [0u8; 1];
        if self.input.read(&mut tag)? == 0 {
            return Ok(None);
        }
        match tag[0] {
            b'C' => {
                let len = self.length(MAX_NOTE_BYTES, "checkpoint")?;
                let mut note = vec![0u8; len];
                self.input.read_exact(&mut note)?;
                let note = String::from_utf8(note)
                    .map_err(|_| invalid("checkpoint is not UTF-8".into()))?;
                Ok(Some(Record::Checkpoint(note)))
            }
            b'E' => {
                let mut index = [0u8; 8];
                self.input.read_exact(&mut index)?;
                let mut leaf = [0u8; 32];
                self.input.read_exact(&mut leaf)?;
                let len = self.length(MAX_ENTRY_BYTES, "entry")?;
                let mut bytes = vec![0u8; len];
                self.input.read_exact(&mut bytes)?;
                Ok(Some(Record::Entry {
                    index: u64::from_be_bytes(index),
                    leaf,
                    bytes,
                }))
            }
            other => Err(invalid(format!("unknown record tag {other:#04x}"))),
        }
    }

    fn length(&mut self, max: usize, what: &str) -> io::Result<usize> {
        let mut len = [0u8; 4];
        self.input.read_exact(&mut len)?;
        let len = u32::from_be_bytes(len) as usize;
        if len > max {
            return Err(invalid(format!("{what} of {len} bytes is too long")));
        }
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_round_trips() {
        let mut writer = ExportWriter::new(Vec::new(), "fed/org/audit").unwrap();
        writer.checkpoint("note\n").unwrap();
        writer.entry(0, &[4; 32], b"abc").unwrap();
        let bytes = writer.finish().unwrap();
        let mut reader = ExportReader::new(&bytes[..]).unwrap();
        assert_eq!(reader.origin(), "fed/org/audit");
        assert_eq!(
            reader.next_record().unwrap(),
            Some(Record::Checkpoint("note\n".into()))
        );
        assert_eq!(
            reader.next_record().unwrap(),
            Some(Record::Entry {
                index: 0,
                leaf: [4; 32],
                bytes: b"abc".to_vec()
            })
        );
        assert_eq!(reader.next_record().unwrap(), None);
        assert!(ExportReader::new(&b"garbage"[..]).is_err());
        let mut cut = ExportReader::new(&bytes[..bytes.len() - 1]).unwrap();
        assert!(cut.next_record().is_ok());
        assert!(
            cut.next_record().is_err(),
            "a cut entry is an error, not the end"
        );
    }
}
