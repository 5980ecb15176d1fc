//! The write-ahead log that makes the store's batches durable.
//!
//! Every batch applied to the in-memory image is also appended, in the same
//! order, to an in-memory buffer; the flusher writes the buffer to the current
//! log file and `fdatasync`s it (group commit). sled's own `flush` is not used
//! for this: it costs hundreds of microseconds of CPU per call (it waits for its
//! IO buffers by spinning). When a log file grows past
//! `StoreConfig::checkpoint_bytes`, a checkpoint writes the changes to sled's
//! image ([`super::image`]) and the older files are deleted.
//!
//! # Recovery
//! Every batch carries a number; the checkpoint image stores the number of the
//! last batch it includes. On open, records with a higher number are
//! re-applied in order. Batches are blind writes (set or remove whole keys), so
//! applying them over the image reproduces the state. A torn record (a crash
//! mid-write) ends that file's records.
//!
//! # Record format (little-endian)
//! `len: u32 | crc32(body): u32 | body`, where body is
//! `batch number: u64 | ops: u32 | (kind: u8 (1 set, 0 remove) | key len: u32 | key | [value len: u32 | value])*`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::memtree::Op;

/// One batch of blind writes.
pub(super) type Ops = Vec<Op>;

/// Appends one record for batch `number` to `buf`.
pub(super) fn encode(buf: &mut Vec<u8>, number: u64, ops: &[Op]) {
    encode_iter(
        buf,
        number,
        ops.iter().map(|(k, v)| (k.as_slice(), v.as_deref())),
    );
}

/// Appends one record of blind writes (`None`: remove) to `buf`.
pub(super) fn encode_iter<'a>(
    buf: &mut Vec<u8>,
    number: u64,
    ops: impl IntoIterator<Item = (&'a [u8], Option<&'a [u8]>)>,
) {
    let start = buf.len();
    buf.extend_from_slice(&[0; 8]);
    buf.extend_from_slice(&number.to_le_bytes());
    buf.extend_from_slice(&[0; 4]);
    let mut count: u32 = 0;
    for (k, v) in ops {
        buf.push(u8::from(v.is_some()));
        buf.extend_from_slice(&(k.len() as u32).to_le_bytes());
        buf.extend_from_slice(k);
        if let Some(v) = v {
            buf.extend_from_slice(&(v.len() as u32).to_le_bytes());
            buf.extend_from_slice(v);
        }
        count += 1;
    }
    buf[start + 16..start + 20].copy_from_slice(&count.to_le_bytes());
    let body = &buf[start + 8..];
    let len = body.len() as u32;
    let crc = crc32fast::hash(body);
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Decodes the records of one file; stops at the first torn or corrupt record.
/// Returns the records and the length of the valid prefix.
pub(super) fn decode(data: &[u8]) -> (Vec<(u64, Ops)>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some((record, next)) = decode_one(data, at) {
        out.push(record);
        at = next;
    }
    (out, at)
}

/// The record at `at`, if whole and intact: its batch number, its body and
/// where the next record starts.
fn frame(data: &[u8], at: usize) -> Option<(u64, &[u8], usize)> {
    let u32_at = |i: usize| {
        data.get(i..i + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4")))
    };
    let len = u32_at(at)? as usize;
    let crc = u32_at(at + 4)?;
    let body = data.get(at + 8..at + 8 + len)?;
    if crc32fast::hash(body) != crc {
        return None;
    }
    let number = u64::from_le_bytes(body.get(..8)?.try_into().ok()?);
    Some((number, body, at + 8 + len))
}

fn decode_one(data: &[u8], at: usize) -> Option<((u64, Ops), usize)> {
    let (number, body, next) = frame(data, at)?;
    let n = u32::from_le_bytes(body.get(8..12)?.try_into().ok()?) as usize;
    let mut i = 12;
    let mut ops = Vec::with_capacity(n);
    let take = |i: &mut usize| -> Option<Vec<u8>> {
        let l = u32::from_le_bytes(body.get(*i..*i + 4)?.try_into().ok()?) as usize;
        let v = body.get(*i + 4..*i + 4 + l)?.to_vec();
        *i += 4 + l;
        Some(v)
    };
    for _ in 0..n {
        let kind = *body.get(i)?;
        i += 1;
        let k = take(&mut i)?;
        let v = if kind == 1 {
            Some(Bytes::from(take(&mut i)?))
        } else {
            None
        };
        ops.push((k, v));
    }
    Some(((number, ops), next))
}

/// The log files of `dir`, oldest first.
pub(super) fn files(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if let Some(number) = name
            .strip_prefix("wal-")
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| u64::from_str_radix(n, 16).ok())
        {
            out.push((number, path));
        }
    }
    out.sort();
    Ok(out)
}

/// Calls `each` with the contents of every log file of `dir` numbered below
/// `below`, oldest first, one file in memory at a time.
fn each_file(dir: &Path, below: u64, mut each: impl FnMut(&[u8])) -> io::Result<()> {
    for (_, path) in files(dir)?.into_iter().filter(|(n, _)| *n < below) {
        let mut data = Vec::new();
        File::open(&path)?.read_to_end(&mut data)?;
        each(&data);
    }
    Ok(())
}

/// Calls `each` with every record of the log files of `dir` numbered below
/// `below`, oldest first.
pub(super) fn for_each(dir: &Path, below: u64, mut each: impl FnMut(u64, Ops)) -> io::Result<()> {
    each_file(dir, below, |data| {
        for (number, ops) in decode(data).0 {
            each(number, ops);
        }
    })
}

/// The records numbered above `after` in the log files of `dir` numbered
/// below `below`, verbatim and in order, and the number of the last one
/// (`after` if there is none): what a checkpoint adds to an image that holds
/// the batches up to `after`. Copied, not decoded: only each record's frame
/// and checksum are read.
pub(super) fn records_after(dir: &Path, below: u64, after: u64) -> io::Result<(Vec<u8>, u64)> {
    let mut out = Vec::new();
    let mut last = after;
    each_file(dir, below, |data| {
        let mut at = 0;
        while let Some((number, _, next)) = frame(data, at) {
            if number > after {
                out.extend_from_slice(&data[at..next]);
                last = last.max(number);
            }
            at = next;
        }
    })?;
    Ok((out, last))
}

/// Why an append failed.
#[derive(Debug)]
pub(super) enum Failure {
    /// Nothing was written (the file was cut back): the bytes may be retried.
    NotWritten(io::Error),
    /// Written, but the sync failed: durability unknown; never write them again.
    NotSynced(io::Error),
}

/// Bytes by which a log file is extended with zeros ahead of its records.
const PREALLOCATE: u64 = 4 << 20;

/// The file being appended to.
///
/// Records are written into space already extended with zeros and synced, so
/// the `fdatasync` of each group commit only flushes data: the file's size
/// and block map do not change, and ext4 skips the journal commit it would
/// otherwise make for every append (as PostgreSQL does with its zero-filled
/// WAL segments). Zeros end a file's records like a torn record does.
pub(super) struct LogFile {
    dir: PathBuf,
    number: u64,
    file: File,
    /// Bytes of records.
    len: u64,
    /// Bytes zero-filled and synced (the file's size).
    allocated: u64,
}

impl LogFile {
    /// Starts a new, empty log file after the newest one in `dir`.
    pub(super) fn create_next(dir: &Path) -> io::Result<LogFile> {
        let number = files(dir)?.last().map_or(1, |(g, _)| g + 1);
        let path = dir.join(format!("wal-{number:016x}.log"));
        let file = OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&path)?;
        File::open(dir)?.sync_all()?;
        Ok(LogFile {
            dir: dir.to_path_buf(),
            number,
            file,
            len: 0,
            allocated: 0,
        })
    }

    /// Appends `bytes` and makes them durable. A failed write leaves the
    /// record count where it was: retrying writes the same bytes at the same
    /// offset, over whatever part of them reached the file.
    pub(super) fn append_durable(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        if !bytes.is_empty() {
            let end = self.len + bytes.len() as u64;
            if end > self.allocated {
                self.zero_fill(end).map_err(Failure::NotWritten)?;
            }
            self.file
                .write_all_at(bytes, self.len)
                .map_err(Failure::NotWritten)?;
            self.len = end;
        }
        self.file.sync_data().map_err(Failure::NotSynced)
    }

    /// Extends the file with zeros to at least `end` (in steps of
    /// [`PREALLOCATE`]) and syncs it with its new size.
    fn zero_fill(&mut self, end: u64) -> io::Result<()> {
        let target = end.div_ceil(PREALLOCATE) * PREALLOCATE;
        let zeros = vec![0u8; (target - self.allocated).min(1 << 20) as usize];
        let mut at = self.allocated;
        while at < target {
            let n = (target - at).min(zeros.len() as u64) as usize;
            self.file.write_all_at(&zeros[..n], at)?;
            at += n as u64;
        }
        self.file.sync_all()?;
        self.allocated = target;
        Ok(())
    }

    /// A new, empty log file after this one.
    pub(super) fn create_next_after(&self) -> io::Result<LogFile> {
        LogFile::create_next(&self.dir)
    }

    /// Bytes in this file.
    pub(super) fn len(&self) -> u64 {
        self.len
    }

    /// Deletes every log file older than this one (after a checkpoint).
    pub(super) fn delete_older(&self) -> io::Result<()> {
        delete_before(&self.dir, self.number)
    }

    /// Where this file lives and its number, for [`delete_before`] elsewhere.
    pub(super) fn position(&self) -> (PathBuf, u64) {
        (self.dir.clone(), self.number)
    }
}

/// Deletes the log files of `dir` numbered below `number`.
pub(super) fn delete_before(dir: &Path, number: u64) -> io::Result<()> {
    for (n, path) in files(dir)? {
        if n < number {
            fs::remove_file(path)?;
        }
    }
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_a_torn_tail_ends_the_log() {
        let ops: Ops = vec![
            (b"a".to_vec(), Some(Bytes::from_static(b"1"))),
            (b"b".to_vec(), None),
        ];
        let mut buf = Vec::new();
        encode(&mut buf, 7, &ops);
        encode(&mut buf, 8, &ops);
        let whole = buf.len();
        let (records, valid) = decode(&buf);
        assert_eq!(records, vec![(7, ops.clone()), (8, ops.clone())]);
        assert_eq!(valid, whole);
        let (records, valid) = decode(&buf[..whole - 3]);
        assert_eq!(records, vec![(7, ops.clone())]);
        assert!(valid < whole);
        buf[whole - 1] ^= 0xff;
        assert_eq!(decode(&buf).0.len(), 1, "a corrupt record ends the log");
    }

    #[test]
    fn appends_go_into_zero_filled_space_and_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ops: Ops = vec![(b"k".to_vec(), Some(Bytes::from(vec![7u8; 3000])))];
        let mut log = LogFile::create_next(dir.path()).expect("create");
        let mut written = Vec::new();
        // Enough records to cross a preallocation step.
        for number in 1..=1500 {
            let mut buf = Vec::new();
            encode(&mut buf, number, &ops);
            log.append_durable(&buf).expect("append");
            written.push((number, ops.clone()));
        }
        let size = std::fs::metadata(dir.path().join("wal-0000000000000001.log"))
            .expect("metadata")
            .len();
        assert!(
            size > log.len() && size.is_multiple_of(PREALLOCATE),
            "zero-filled ahead"
        );
        let mut read = Vec::new();
        for_each(dir.path(), u64::MAX, |n, ops| read.push((n, ops))).expect("read");
        assert_eq!(read, written, "the zeros after the records end the log");
    }
}
