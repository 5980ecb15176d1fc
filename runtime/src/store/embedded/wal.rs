//! The write-ahead log that makes the store's batches durable.
//!
//! Every batch applied to the in-memory image is also appended, in the same
//! order, to an in-memory buffer; the flusher writes the buffer to the current
//! log file and `fdatasync`s it (group commit). sled's own `flush` is not used
//! for this: it costs hundreds of microseconds of CPU per call (it waits for its
//! IO buffers by spinning). When a log file grows past
//! `EmbeddedSettings::checkpoint_bytes`, a checkpoint writes the changes to sled's
//! image ([`super::image`]) and the older files are deleted.
//!
//! # Recovery
//! Every batch carries a number; the checkpoint image stores the number of the
//! last batch it includes. On open, records with a higher number are
//! re-applied in order. Batches are blind writes (set or remove whole keys), so
//! applying them over the image reproduces the state.
//!
//! # Damage
//! Only the last flush's bytes can be torn by a power cut (every earlier one
//! was synced before the next began), and a torn write leaves a prefix of
//! its sectors with the file's zero fill after them. So a file whose records
//! end in a failed checksum is read as follows:
//! - zeros after the last intact record: the end of the log;
//! - an intact record further on: damage in the middle (bit rot, a bad
//!   sector): opening is refused with the file and offset ([`Damage::Corrupt`]);
//! - a record cut short with only zeros after the cut: a torn write, which
//!   can only hold unacknowledged batches; the file is cut back to the last
//!   intact record and it is reported ([`Damage::Torn`]). A record whose bytes
//!   are all there but whose checksum fails is corruption, not a tear.
//!
//! All file access goes through [`Fs`], so the power-loss tests can run the
//! log on a simulated disk.
//!
//! # Record format (little-endian)
//! `len: u32 | crc32(body): u32 | body`, where body is
//! `batch number: u64 | ops: u32 | (kind: u8 (1 set, 0 remove) | key len: u32 | key | [value len: u32 | value])*`.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::fs::{Fs, FsFile};
use super::memtree::Op;
use crate::store::{StoreError, StoreResult};

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
pub(super) fn files(fs: &dyn Fs, dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for path in fs.list(dir)? {
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

/// Calls `each` with the path and contents of every log file of `dir`
/// numbered below `below`, oldest first, one file in memory at a time.
fn each_file(
    fs: &dyn Fs,
    dir: &Path,
    below: u64,
    mut each: impl FnMut(&Path, &[u8]) -> StoreResult<()>,
) -> StoreResult<()> {
    let files = files(fs, dir).map_err(StoreError::from_io)?;
    for (_, path) in files.into_iter().filter(|(n, _)| *n < below) {
        let data = fs.read(&path).map_err(StoreError::from_io)?;
        each(&path, &data)?;
    }
    Ok(())
}

/// Bytes per sector: the unit a power cut writes or loses.
const SECTOR: usize = 512;

/// What follows the last intact record of a file.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Damage {
    /// Nothing: zeros, or the end of the file.
    None,
    /// A record cut short by a torn write at `at`; only zeros follow the cut.
    Torn {
        /// Where the torn record starts (the end of the intact ones).
        at: usize,
    },
    /// Damaged bytes at `at` that no torn write explains.
    Corrupt {
        /// Where the damaged record starts.
        at: usize,
        /// The batch number of the first intact record after the damage.
        next: Option<u64>,
    },
}

/// Classifies what follows `valid`, the end of `data`'s intact records.
pub(super) fn damage(data: &[u8], valid: usize) -> Damage {
    let rest = &data[valid..];
    let Some(last_nonzero) = rest.iter().rposition(|b| *b != 0) else {
        return Damage::None;
    };
    // An intact record further on: the damage is in the middle.
    if let Some((number, _, _)) = (valid + 1..=valid + last_nonzero).find_map(|at| frame(data, at))
    {
        return Damage::Corrupt {
            at: valid,
            next: Some(number),
        };
    }
    // A torn write keeps a prefix of sectors: the first zero sector after the
    // surviving bytes must start before the record's claimed end.
    let cut = (valid + last_nonzero + 1).next_multiple_of(SECTOR);
    let claimed_end = rest
        .get(..4)
        .map(|b| u32::from_le_bytes(b.try_into().expect("4")) as usize)
        .map_or(usize::MAX, |len| {
            valid.saturating_add(8).saturating_add(len)
        });
    if cut < claimed_end {
        Damage::Torn { at: valid }
    } else {
        Damage::Corrupt {
            at: valid,
            next: None,
        }
    }
}

/// What opening found at the end of a log file and put right.
#[derive(Debug)]
pub(super) struct TornTail {
    /// The file.
    pub(super) path: PathBuf,
    /// Where it was cut back to.
    pub(super) at: usize,
    /// Bytes of the torn record dropped (up to the last non-zero byte).
    pub(super) dropped: usize,
}

/// Calls `each` with every record of the log files of `dir`, oldest first,
/// after checking how each file ends: a torn tail is cut back (and
/// returned); damage in the middle is an error naming the file and offset,
/// unless every batch it can hold is in the checkpoint image already (its
/// batches numbered up to `image_batch`), when it is only reported.
pub(super) fn replay(
    fs: &dyn Fs,
    dir: &Path,
    image_batch: u64,
    mut each: impl FnMut(u64, Ops),
) -> StoreResult<Vec<TornTail>> {
    let mut torn = Vec::new();
    each_file(fs, dir, u64::MAX, |path, data| {
        let (records, valid) = decode(data);
        match damage(data, valid) {
            Damage::None => {}
            Damage::Corrupt {
                at,
                next: Some(next),
            } if next <= image_batch + 1 => {
                tracing::warn!(
                    file = %path.display(),
                    offset = at,
                    "write-ahead log damaged where the checkpoint image already holds every \
                     batch; the image is used"
                );
            }
            Damage::Corrupt { at, next } => {
                let why = if next.is_some() {
                    "intact records follow it"
                } else {
                    "all of its bytes are there"
                };
                return Err(StoreError::Corrupt(format!(
                    "write-ahead log {} is damaged at byte {at}: its record there fails its \
                     checksum and {why}, so this is not a torn write. Restore the data \
                     directory from a backup; or, accepting the loss of every batch from that \
                     record on, cut the file to its first {at} bytes and start again",
                    path.display()
                )));
            }
            Damage::Torn { at } => {
                let dropped = data[at..]
                    .iter()
                    .rposition(|b| *b != 0)
                    .map_or(0, |z| z + 1);
                let mut file = fs.open_write(path).map_err(StoreError::from_io)?;
                file.set_len(at as u64)
                    .and_then(|()| file.sync_all())
                    .map_err(StoreError::from_io)?;
                torn.push(TornTail {
                    path: path.to_path_buf(),
                    at,
                    dropped,
                });
            }
        }
        for (number, ops) in records {
            each(number, ops);
        }
        Ok(())
    })?;
    Ok(torn)
}

/// The records numbered above `after` in the log files of `dir` numbered
/// below `below`, verbatim and in order, and the number of the last one
/// (`after` if there is none): what a checkpoint adds to an image that holds
/// the batches up to `after`. Copied, not decoded: only each record's frame
/// and checksum are read.
pub(super) fn records_after(
    fs: &dyn Fs,
    dir: &Path,
    below: u64,
    after: u64,
) -> StoreResult<(Vec<u8>, u64)> {
    let mut out = Vec::new();
    let mut last = after;
    each_file(fs, dir, below, |_, data| {
        let mut at = 0;
        while let Some((number, _, next)) = frame(data, at) {
            if number > after {
                out.extend_from_slice(&data[at..next]);
                last = last.max(number);
            }
            at = next;
        }
        Ok(())
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
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    number: u64,
    file: Box<dyn FsFile>,
    /// Bytes of records.
    len: u64,
    /// Bytes zero-filled and synced (the file's size).
    allocated: u64,
}

impl LogFile {
    /// Starts a new, empty log file after the newest one in `dir`.
    pub(super) fn create_next(fs: Arc<dyn Fs>, dir: &Path) -> io::Result<LogFile> {
        let number = files(&*fs, dir)?.last().map_or(1, |(g, _)| g + 1);
        let path = dir.join(format!("wal-{number:016x}.log"));
        let file = fs.create_new(&path)?;
        fs.sync_dir(dir)?;
        Ok(LogFile {
            fs,
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
                .write_at(bytes, self.len)
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
            self.file.write_at(&zeros[..n], at)?;
            at += n as u64;
        }
        self.file.sync_all()?;
        self.allocated = target;
        Ok(())
    }

    /// A new, empty log file after this one.
    pub(super) fn create_next_after(&self) -> io::Result<LogFile> {
        LogFile::create_next(Arc::clone(&self.fs), &self.dir)
    }

    /// Bytes in this file.
    pub(super) fn len(&self) -> u64 {
        self.len
    }

    /// Deletes every log file older than this one (after a checkpoint).
    pub(super) fn delete_older(&self) -> io::Result<()> {
        delete_before(&*self.fs, &self.dir, self.number)
    }

    /// Where this file lives and its number, for [`delete_before`] elsewhere.
    pub(super) fn position(&self) -> LogPosition {
        LogPosition {
            fs: Arc::clone(&self.fs),
            dir: self.dir.clone(),
            number: self.number,
        }
    }
}

/// A log file's place: what a checkpoint reads and deletes up to.
#[derive(Clone)]
pub(super) struct LogPosition {
    pub(super) fs: Arc<dyn Fs>,
    pub(super) dir: PathBuf,
    pub(super) number: u64,
}

/// Deletes the log files of `dir` numbered below `number`.
pub(super) fn delete_before(fs: &dyn Fs, dir: &Path, number: u64) -> io::Result<()> {
    for (n, path) in files(fs, dir)? {
        if n < number {
            fs.remove(&path)?;
        }
    }
    fs.sync_dir(dir)
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
        let fs: Arc<dyn Fs> = Arc::new(super::super::fs::OsFs);
        let mut log = LogFile::create_next(Arc::clone(&fs), dir.path()).expect("create");
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
        let torn = replay(&*fs, dir.path(), 0, |n, ops| read.push((n, ops))).expect("read");
        assert!(torn.is_empty());
        assert_eq!(read, written, "the zeros after the records end the log");
    }

    /// Three records in zero fill, as a log file holds them.
    fn log_of_three() -> (Vec<u8>, [usize; 3]) {
        let ops: Ops = vec![(b"key".to_vec(), Some(Bytes::from(vec![5u8; 700])))];
        let mut buf = Vec::new();
        let mut ends = [0; 3];
        for (i, end) in ends.iter_mut().enumerate() {
            encode(&mut buf, i as u64 + 1, &ops);
            *end = buf.len();
        }
        buf.resize(8192, 0);
        (buf, ends)
    }

    #[test]
    fn damage_is_told_apart_from_a_torn_write() {
        let (clean, [first, second, third]) = log_of_three();
        let (_, valid) = decode(&clean);
        assert_eq!((valid, damage(&clean, valid)), (third, Damage::None));

        // A torn last write: a prefix of its sectors, zeros after.
        let mut torn = clean.clone();
        torn[(second + 1).next_multiple_of(SECTOR)..].fill(0);
        let (records, valid) = decode(&torn);
        assert_eq!(records.len(), 2);
        assert_eq!(damage(&torn, valid), Damage::Torn { at: second });

        // A flipped byte in the middle record: intact records follow.
        let mut rot = clean.clone();
        rot[first + 100] ^= 0x01;
        let (_, valid) = decode(&rot);
        assert_eq!(
            damage(&rot, valid),
            Damage::Corrupt {
                at: first,
                next: Some(3)
            }
        );

        // A flipped byte in the last record, all of whose bytes are there.
        let mut rot = clean;
        rot[third - 1] ^= 0x01;
        let (_, valid) = decode(&rot);
        assert_eq!(
            damage(&rot, valid),
            Damage::Corrupt {
                at: second,
                next: None
            }
        );
    }
}
