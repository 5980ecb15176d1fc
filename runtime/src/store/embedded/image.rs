//! sled as the store's checkpoint: the image stored as a stream of blind writes.
//!
//! sled 0.34 costs 10–36 µs of CPU and ~2.7 KiB of resident memory per key
//! written (docs/store.md), so a checkpoint does not write the store's keys one
//! by one. It copies the write-ahead log's records since the previous
//! checkpoint, in their own format, and stores that byte stream as pieces of
//! [`PIECE_BYTES`] under `(generation, sequence)` keys, with the number of the
//! last batch they cover, in one atomic sled batch, then flushes sled. Pieces
//! stay small because sled 0.34 stores large values as separate blobs, and a
//! database holding blobs written with `flush_every_ms(None)` hung in its drop
//! in our tests.
//!
//! Loading concatenates the current generation's pieces in order and applies
//! the records. When the pieces written since the last compaction outgrow the
//! rest (and at least `compact_min` bytes), a compaction reads the generation,
//! writes its net content as the next generation, switches the generation key
//! and deletes the older pieces. A crash before the switch leaves a partial
//! generation that nothing reads; the next compaction deletes it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;

use super::fs::Fs;
use super::wal;
use crate::store::{StoreError, StoreResult};

/// The image's entries as loaded.
pub(super) type Entries = BTreeMap<Vec<u8>, Bytes>;

/// Number of the last batch the stored image includes.
const META_BATCH: &[u8] = b"\x00batch";
/// Generation being read and appended to.
const META_GENERATION: &[u8] = b"\x00generation";
/// Prefix of piece keys: `SEGMENT | generation u64 | sequence u64` (big-endian).
const SEGMENT: u8 = 1;
/// Writes per log record in the stream.
const RECORD_ENTRIES: usize = 4096;
/// Bytes per sled value.
const PIECE_BYTES: usize = 8 << 10;
/// Pieces per sled batch while a compaction writes a generation.
const COMPACT_GROUP: usize = 1024;
/// Name of the sled tree.
const TREE: &str = "image";

/// The checkpoint store. Used by one checkpoint at a time.
pub(super) struct SledImage {
    // Dropped before `db`: a tree that outlives its database hangs in its drop.
    tree: sled::Tree,
    db: sled::Db,
    /// sled's directory, to name it in errors.
    dir: std::path::PathBuf,
    compact_min: u64,
    state: Mutex<Position>,
    /// Set by fault tests: every write fails before touching sled.
    fault: AtomicBool,
    /// Told of every sled write and flush (the power-loss tests).
    #[cfg(test)]
    pub(super) observer: std::sync::OnceLock<Observer>,
}

/// A step of the image's writes, as the power-loss tests observe them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// A sled write (one atomic batch or insert) is about to be applied.
    Begin,
    /// It was applied (in sled's memory; durable at the next flush).
    Applied,
    /// sled was flushed: every write applied so far is durable.
    Flushed,
}

/// Sees each [`Step`] with the database it happened to.
#[cfg(test)]
pub(super) type Observer = Box<dyn Fn(&sled::Db, Step) + Send + Sync>;

/// Where the next piece goes, and the sizes that decide a compaction.
struct Position {
    generation: u64,
    next: u64,
    /// Bytes of the generation as compacted (or as loaded).
    base: u64,
    /// Bytes of pieces appended since.
    appended: u64,
    /// Number of the last batch the image includes.
    batch: u64,
}

/// A sled error as the store's error.
pub(super) fn sled_error(e: sled::Error) -> StoreError {
    match e {
        sled::Error::Io(io) => StoreError::from_io(io),
        sled::Error::Corruption { .. } => StoreError::Corrupt(e.to_string()),
        other => StoreError::Io(std::io::Error::other(other.to_string())),
    }
}

fn segment_prefix(generation: u64) -> Vec<u8> {
    let mut k = vec![SEGMENT];
    k.extend_from_slice(&generation.to_be_bytes());
    k
}

fn segment_key(generation: u64, sequence: u64) -> Vec<u8> {
    let mut k = segment_prefix(generation);
    k.extend_from_slice(&sequence.to_be_bytes());
    k
}

fn u64_value(v: Option<sled::IVec>) -> u64 {
    v.and_then(|v| v.as_ref().try_into().ok().map(u64::from_be_bytes))
        .unwrap_or(0)
}

/// Encodes `entries` as log records, a stream to be cut into pieces.
fn stream<'a>(
    entries: impl IntoIterator<Item = (&'a [u8], Option<&'a [u8]>)>,
    batch: u64,
) -> Vec<u8> {
    let entries: Vec<_> = entries.into_iter().collect();
    let mut buf = Vec::new();
    for c in entries.chunks(RECORD_ENTRIES) {
        wal::encode_iter(&mut buf, batch, c.iter().copied());
    }
    buf
}

/// The sled tree of the layout before the checkpoint image (one sled key per
/// store key), refused on open.
const LEGACY_TREE: &str = "queue";

/// Opens sled. A store dropped a moment ago in this process may still hold
/// its file lock while sled's IO threads finish; wait up to 5 s for it.
fn open_db(dir: &Path) -> StoreResult<sled::Db> {
    let config = sled::Config::new()
        .path(dir)
        .mode(sled::Mode::HighThroughput)
        // Read only on open and written at checkpoints: the image serves reads.
        .cache_capacity(64 << 20)
        .flush_every_ms(None);
    let mut tries = 0;
    loop {
        match config.open() {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock") && tries < 500 =>
            {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return other.map_err(sled_error),
        }
    }
}

/// Opens sled in `dir` as the store does, waiting for a dropped store's lock.
#[cfg(test)]
pub(super) fn tests_open_db(dir: &Path) -> sled::Db {
    open_db(dir).expect("sled")
}

impl SledImage {
    /// Opens the image kept in sled in `dir`; returns it, its entries and the
    /// number of the last batch they include. Refuses a directory of the
    /// layout before the image.
    pub(super) fn open_dir(dir: &Path, compact_min: u64) -> StoreResult<(SledImage, Entries, u64)> {
        let db = open_db(dir)?;
        if db
            .tree_names()
            .iter()
            .any(|n| n.as_ref() == LEGACY_TREE.as_bytes())
        {
            return Err(StoreError::Corrupt(format!(
                "{} was written by an older sluice (one sled key per store key); \
                 this version reads only its checkpoint image: drain it with the older \
                 version or start with an empty data directory",
                dir.display()
            )));
        }
        SledImage::open(db, dir, compact_min)
    }

    /// Opens the image in `db`; returns it, its entries and the number of the
    /// last batch they include.
    fn open(db: sled::Db, dir: &Path, compact_min: u64) -> StoreResult<(SledImage, Entries, u64)> {
        let tree = db.open_tree(TREE).map_err(sled_error)?;
        let batch = u64_value(tree.get(META_BATCH).map_err(sled_error)?);
        let generation = u64_value(tree.get(META_GENERATION).map_err(sled_error)?);
        let mut entries = Entries::new();
        let (next, bytes) = read_generation(dir, &tree, generation, &mut entries)?;
        let image = SledImage {
            tree,
            db,
            dir: dir.to_path_buf(),
            compact_min,
            state: Mutex::new(Position {
                generation,
                next,
                base: bytes,
                appended: 0,
                batch,
            }),
            fault: AtomicBool::new(false),
            #[cfg(test)]
            observer: std::sync::OnceLock::new(),
        };
        Ok((image, entries, batch))
    }

    /// Adds what the log files of `dir` numbered below `below` hold beyond the
    /// image (their records numbered above its own batch), copied as they
    /// are, and makes it durable; returns the bytes added. Copying records
    /// costs no decoding and no map of keys (a map of the net writes took half
    /// of the CPU behind a 1,000,000-message prefill); compaction makes the
    /// image net again.
    pub(super) fn write_log(&self, fs: &dyn Fs, dir: &Path, below: u64) -> StoreResult<usize> {
        let after = self.state.lock().unwrap_or_else(|p| p.into_inner()).batch;
        let (records, last) = wal::records_after(fs, dir, below, after)?;
        if last == after {
            return Ok(0);
        }
        self.write_stream(&records, last)?;
        Ok(records.len())
    }

    /// Writes `dirty` as the writes of the batches up to `batch` (tests).
    #[cfg(test)]
    fn write(&self, dirty: &Dirty, batch: u64) -> StoreResult<()> {
        let bytes = stream(
            dirty.iter().map(|(k, v)| (k.as_slice(), v.as_deref())),
            batch,
        );
        self.write_stream(&bytes, batch)
    }

    /// Appends `bytes` (whole log records, up to batch `batch`) to the image
    /// and makes it durable; compacts when due.
    fn write_stream(&self, bytes: &[u8], batch: u64) -> StoreResult<()> {
        if self.fault.load(Ordering::Relaxed) {
            return Err(StoreError::Io(std::io::Error::other(
                "injected checkpoint fault",
            )));
        }
        let mut pos = self.state.lock().unwrap_or_else(|p| p.into_inner());
        // The first records of an empty generation become its base, instead
        // of a compaction at once; the next compaction makes it net.
        let first = pos.base == 0 && pos.appended == 0;
        let mut b = sled::Batch::default();
        for piece in bytes.chunks(PIECE_BYTES) {
            pos.appended += piece.len() as u64;
            b.insert(segment_key(pos.generation, pos.next), piece);
            pos.next += 1;
        }
        b.insert(META_BATCH, &batch.to_be_bytes());
        self.apply(b)?;
        self.flush()?;
        pos.batch = batch;
        if first {
            pos.base = std::mem::take(&mut pos.appended);
        }
        if pos.appended > pos.base.max(self.compact_min) {
            self.compact(&mut pos, batch)?;
        }
        Ok(())
    }

    /// Makes every write fail while `on` (fault tests).
    pub(super) fn set_fault(&self, on: bool) {
        self.fault.store(on, Ordering::Relaxed);
    }

    /// Rewrites the current generation's net content as the next generation.
    fn compact(&self, pos: &mut Position, batch: u64) -> StoreResult<()> {
        let mut entries = Entries::new();
        read_generation(&self.dir, &self.tree, pos.generation, &mut entries)?;
        let generation = pos.generation + 1;
        // Leftovers of a compaction that crashed before its switch.
        self.remove_segments(|g| g == generation)?;
        let written = stream(
            entries
                .iter()
                .map(|(k, v)| (k.as_slice(), Some(v.as_ref()))),
            batch,
        );
        drop(entries);
        let mut sequence = 0;
        for group in written.chunks(PIECE_BYTES * COMPACT_GROUP) {
            let mut b = sled::Batch::default();
            for piece in group.chunks(PIECE_BYTES) {
                b.insert(segment_key(generation, sequence), piece);
                sequence += 1;
            }
            self.apply(b)?;
        }
        let bytes = written.len() as u64;
        let mut b = sled::Batch::default();
        b.insert(META_GENERATION, &generation.to_be_bytes());
        self.apply(b)?;
        self.flush()?;
        *pos = Position {
            generation,
            next: sequence,
            base: bytes,
            appended: 0,
            batch,
        };
        self.remove_segments(|g| g != generation)?;
        tracing::debug!(generation, bytes, "checkpoint image compacted");
        Ok(())
    }

    /// Removes the pieces of every generation `which` selects.
    fn remove_segments(&self, which: impl Fn(u64) -> bool) -> StoreResult<()> {
        let mut b = sled::Batch::default();
        for kv in self.tree.scan_prefix([SEGMENT]) {
            let (k, _) = kv.map_err(sled_error)?;
            let generation = k
                .get(1..9)
                .and_then(|g| g.try_into().ok())
                .map_or(u64::MAX, u64::from_be_bytes);
            if which(generation) {
                b.remove(k);
            }
        }
        self.apply(b)
    }

    /// Applies one atomic sled batch (durable at the next [`Self::flush`]).
    fn apply(&self, b: sled::Batch) -> StoreResult<()> {
        self.observe(Step::Begin);
        self.tree.apply_batch(b).map_err(sled_error)?;
        self.observe(Step::Applied);
        Ok(())
    }

    /// Makes every write applied so far durable.
    fn flush(&self) -> StoreResult<()> {
        self.db.flush().map_err(sled_error)?;
        self.observe(Step::Flushed);
        Ok(())
    }

    #[cfg(test)]
    fn observe(&self, step: Step) {
        if let Some(observer) = self.observer.get() {
            observer(&self.db, step);
        }
    }

    #[cfg(not(test))]
    fn observe(&self, _: Step) {}
}

/// Applies the records of `generation`'s pieces, in order, to `entries`;
/// returns the next sequence number and the stream's length.
fn read_generation(
    dir: &Path,
    tree: &sled::Tree,
    generation: u64,
    entries: &mut Entries,
) -> StoreResult<(u64, u64)> {
    let mut next = 0;
    let mut bytes = Vec::new();
    // Where each piece starts in the stream, to name a damaged one.
    let mut starts = Vec::new();
    for kv in tree.scan_prefix(segment_prefix(generation)) {
        let (k, v) = kv.map_err(sled_error)?;
        let sequence = k
            .get(9..17)
            .and_then(|s| s.try_into().ok())
            .map_or(next, u64::from_be_bytes);
        starts.push((bytes.len(), sequence));
        bytes.extend_from_slice(&v);
        next = sequence + 1;
    }
    let (records, valid) = wal::decode(&bytes);
    if valid != bytes.len() {
        let (start, sequence) = starts
            .iter()
            .rev()
            .find(|(start, _)| *start <= valid)
            .copied()
            .unwrap_or((0, 0));
        return Err(StoreError::Corrupt(format!(
            "the checkpoint image in {} is damaged: generation {generation}, piece {sequence}, \
             byte {} of the piece (byte {valid} of {} in the generation) fails its record's \
             checksum. The log files it was made from were deleted after the checkpoint, so \
             it cannot be rebuilt: restore the data directory from a backup",
            dir.display(),
            valid - start,
            bytes.len()
        )));
    }
    for (_, ops) in records {
        for (key, value) in ops {
            match value {
                Some(value) => entries.insert(key, value),
                None => entries.remove(&key),
            };
        }
    }
    Ok((next, bytes.len() as u64))
}

/// Writes by key (`None`: removed), for tests.
#[cfg(test)]
type Dirty = std::collections::HashMap<Vec<u8>, Option<Bytes>>;

#[cfg(test)]
mod tests {
    use super::*;

    fn dirty(pairs: &[(&str, Option<&str>)]) -> Dirty {
        pairs
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.map(|v| Bytes::from(v.to_string()))))
            .collect()
    }

    /// Opens the image the way the store does, waiting for the previous
    /// handle's lock: sled's threads may still hold it just after a drop.
    fn open(dir: &std::path::Path) -> (SledImage, Entries, u64) {
        let db = open_db(dir).expect("sled");
        SledImage::open(db, dir, 1).expect("open image")
    }

    #[test]
    fn checkpoints_and_compactions_keep_the_net_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (image, entries, batch) = open(dir.path());
            assert!(entries.is_empty());
            assert_eq!(batch, 0);
            image
                .write(&dirty(&[("a", Some("1")), ("b", Some("2"))]), 3)
                .expect("write");
            // compact_min 1: every write that outgrows the base compacts.
            image
                .write(&dirty(&[("a", None), ("c", Some("3"))]), 5)
                .expect("write");
            image.write(&dirty(&[("b", Some("4"))]), 9).expect("write");
            assert_eq!(
                image.state.lock().expect("lock").generation,
                1,
                "the first write is the base; the third outgrows it and compacts"
            );
        }
        let (image, entries, batch) = open(dir.path());
        assert_eq!(batch, 9);
        let got: Vec<_> = entries
            .iter()
            .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), v.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("b".to_string(), Bytes::from("4")),
                ("c".to_string(), Bytes::from("3"))
            ]
        );
        let generations: std::collections::BTreeSet<u8> = image
            .tree
            .scan_prefix([SEGMENT])
            .map(|kv| kv.expect("kv").0[8])
            .collect();
        assert_eq!(generations.len(), 1, "older generations are deleted");
    }

    #[test]
    fn a_generation_left_by_a_crashed_compaction_is_ignored_then_deleted() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (image, _, _) = open(dir.path());
            image.write(&dirty(&[("a", Some("1"))]), 1).expect("write");
            // What a compaction that crashed before its switch leaves: pieces
            // of the next generation, never named current.
            let (generation, sequence) = {
                let pos = image.state.lock().expect("lock");
                (pos.generation + 1, pos.next)
            };
            let garbage = stream([(b"a".as_slice(), Some(b"stale".as_slice()))], 1);
            image
                .tree
                .insert(segment_key(generation, sequence), garbage)
                .expect("insert");
        }
        let (image, entries, _) = open(dir.path());
        let generation = image.state.lock().expect("lock").generation + 1;
        assert_eq!(entries.get(b"a".as_slice()), Some(&Bytes::from("1")));
        // The next compaction (compact_min 1: once the appended pieces
        // outgrow the first write's) replaces the leftover.
        image.write(&dirty(&[("b", Some("2"))]), 2).expect("write");
        image.write(&dirty(&[("c", Some("3"))]), 3).expect("write");
        assert_eq!(image.state.lock().expect("lock").generation, generation);
        drop(image);
        let (_, entries, _) = open(dir.path());
        assert_eq!(entries.get(b"a".as_slice()), Some(&Bytes::from("1")));
        assert_eq!(entries.get(b"b".as_slice()), Some(&Bytes::from("2")));
        assert_eq!(entries.get(b"c".as_slice()), Some(&Bytes::from("3")));
    }
}
