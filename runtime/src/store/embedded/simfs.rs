//! A simulated disk for the power-loss tests: an [`Fs`] that keeps files in
//! memory, records every operation in order, and builds the disk a power cut
//! after any prefix of those operations could leave.
//!
//! # Fault model (what a power cut may do)
//! - A file's bytes are durable once the file is synced (`sync_data` or
//!   `sync_all`; `fdatasync` keeps the size a read needs). Writes and size
//!   changes after its last sync survive as any prefix of them, in order; the
//!   first one lost may be torn at a sector boundary (a prefix of its
//!   sectors reaches the disk).
//! - A directory entry (a file created or removed) is durable once its
//!   directory is synced; until then the cut may keep or lose it, per entry.
//! - Directories themselves always exist (the store syncs the parent of the
//!   one it creates; the data directory is the operator's).

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rand::Rng;

use super::fs::{Fs, FsFile};

/// Bytes per sector: the unit a power cut writes whole or not at all.
const SECTOR: u64 = 512;

/// Bytes of a write; a run of zeros (the log's zero fill) is kept as a length.
#[derive(Debug, Clone)]
enum Data {
    Bytes(Arc<[u8]>),
    Zeros(usize),
}

impl Data {
    fn of(buf: &[u8]) -> Data {
        if buf.iter().all(|b| *b == 0) {
            Data::Zeros(buf.len())
        } else {
            Data::Bytes(buf.into())
        }
    }

    fn len(&self) -> usize {
        match self {
            Data::Bytes(b) => b.len(),
            Data::Zeros(n) => *n,
        }
    }

    /// Writes the first `n` bytes of this data into `file` at `offset`.
    fn write_prefix(&self, file: &mut Vec<u8>, offset: usize, n: usize) {
        if file.len() < offset + n {
            file.resize(offset + n, 0);
        }
        match self {
            Data::Bytes(b) => file[offset..offset + n].copy_from_slice(&b[..n]),
            Data::Zeros(_) => file[offset..offset + n].fill(0),
        }
    }
}

/// A change to a file's content.
#[derive(Debug, Clone)]
enum Change {
    Write { offset: u64, data: Data },
    SetLen(u64),
}

impl Change {
    fn apply(&self, file: &mut Vec<u8>) {
        match self {
            Change::Write { offset, data } => data.write_prefix(file, *offset as usize, data.len()),
            Change::SetLen(len) => file.resize(*len as usize, 0),
        }
    }

    /// The change torn by a power cut: a prefix of its sectors (`None`: none
    /// of them).
    fn torn(&self, rng: &mut impl Rng) -> Option<Change> {
        let Change::Write { offset, data } = self else {
            return None;
        };
        let end = offset + data.len() as u64;
        // The sector boundaries strictly inside the write.
        let first = (offset / SECTOR + 1) * SECTOR;
        if first >= end {
            return None;
        }
        let boundaries = (end - 1 - first) / SECTOR + 1;
        let cut = first + SECTOR * rng.random_range(0..boundaries);
        let kept = (cut - offset) as usize;
        let data = match data {
            Data::Bytes(b) => Data::Bytes(b[..kept].into()),
            Data::Zeros(_) => Data::Zeros(kept),
        };
        Some(Change::Write {
            offset: *offset,
            data,
        })
    }
}

/// One operation, as recorded.
#[derive(Debug, Clone)]
enum Event {
    Mkdir {
        dir: PathBuf,
    },
    Create {
        dir: PathBuf,
        name: String,
        inode: u64,
    },
    Change {
        inode: u64,
        change: Change,
    },
    Sync {
        inode: u64,
    },
    Remove {
        dir: PathBuf,
        name: String,
    },
    SyncDir {
        dir: PathBuf,
    },
}

/// Files and directories as a running system sees them (the page cache).
#[derive(Debug, Default, Clone)]
struct View {
    files: HashMap<u64, Vec<u8>>,
    dirs: HashMap<PathBuf, Entries>,
    next_inode: u64,
}

#[derive(Default)]
struct Sim {
    view: View,
    events: Vec<Event>,
}

/// The simulated disk. Cheap to clone; clones share it.
#[derive(Clone, Default)]
pub(super) struct SimFs {
    sim: Arc<Mutex<Sim>>,
}

fn split(path: &Path) -> io::Result<(PathBuf, String)> {
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    Ok((dir, name.to_string()))
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, path.display().to_string())
}

impl SimFs {
    fn lock(&self) -> MutexGuard<'_, Sim> {
        self.sim.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Operations recorded so far: a cut point between two of them.
    pub(super) fn now(&self) -> usize {
        self.lock().events.len()
    }

    /// Every byte ever written to each file, deletions ignored: the full
    /// record stream of each log file the run wrote, by file name.
    pub(super) fn everything_written(&self) -> Vec<(String, Vec<u8>)> {
        let sim = self.lock();
        let mut names = HashMap::new();
        let mut files: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
        for event in &sim.events {
            match event {
                Event::Create { name, inode, .. } => {
                    names.insert(*inode, name.clone());
                    files.insert(*inode, Vec::new());
                }
                Event::Change {
                    inode,
                    change: change @ Change::Write { .. },
                } => change.apply(files.entry(*inode).or_default()),
                _ => {}
            }
        }
        files
            .into_iter()
            .map(|(inode, data)| (names.get(&inode).cloned().unwrap_or_default(), data))
            .collect()
    }

    /// Walks this disk's operations to build, cut by cut, the disks a power
    /// cut could leave.
    pub(super) fn cutter(&self) -> Cutter {
        Cutter {
            events: self.lock().events.clone(),
            at: 0,
            disk: Durable::default(),
        }
    }
}

/// Builds the disks power cuts leave, at cut points in ascending order.
pub(super) struct Cutter {
    events: Vec<Event>,
    at: usize,
    disk: Durable,
}

impl Cutter {
    /// One disk a power cut after the first `cut` operations could leave
    /// (`cut` not below the previous call's), drawn with `rng`.
    pub(super) fn cut(&mut self, cut: usize, rng: &mut impl Rng) -> SimFs {
        assert!(
            cut >= self.at || self.at == self.events.len(),
            "cuts in order"
        );
        while self.at < cut.min(self.events.len()) {
            self.disk.record(&self.events[self.at]);
            self.at += 1;
        }
        self.disk.cut(rng)
    }
}

/// A directory's entries: name → inode.
type Entries = BTreeMap<String, u64>;

/// What is on the platter, and what is still only in the page cache.
#[derive(Default)]
struct Durable {
    /// Per file: its synced content and the changes since.
    files: HashMap<u64, (Vec<u8>, Vec<Change>)>,
    /// Per directory: its synced entries and its entries now.
    dirs: HashMap<PathBuf, (Entries, Entries)>,
}

impl Durable {
    fn record(&mut self, event: &Event) {
        match event {
            Event::Mkdir { dir } => {
                self.dirs.entry(dir.clone()).or_default();
            }
            Event::Create { dir, name, inode } => {
                self.files.insert(*inode, (Vec::new(), Vec::new()));
                self.dirs
                    .entry(dir.clone())
                    .or_default()
                    .1
                    .insert(name.clone(), *inode);
            }
            Event::Change { inode, change } => {
                if let Some((_, changes)) = self.files.get_mut(inode) {
                    changes.push(change.clone());
                }
            }
            Event::Sync { inode } => {
                if let Some((synced, changes)) = self.files.get_mut(inode) {
                    for change in changes.drain(..) {
                        change.apply(synced);
                    }
                }
            }
            Event::Remove { dir, name } => {
                if let Some((_, now)) = self.dirs.get_mut(dir) {
                    now.remove(name);
                }
            }
            Event::SyncDir { dir } => {
                let (synced, now) = self.dirs.entry(dir.clone()).or_default();
                *synced = now.clone();
            }
        }
    }

    /// One disk a power cut now could leave.
    fn cut(&self, rng: &mut impl Rng) -> SimFs {
        let mut view = View::default();
        for (dir, (synced, now)) in &self.dirs {
            let mut entries = BTreeMap::new();
            let names: std::collections::BTreeSet<&String> =
                synced.keys().chain(now.keys()).collect();
            for name in names {
                let inode = match (synced.get(name), now.get(name)) {
                    (Some(a), Some(b)) if a == b => Some(*a),
                    // Created or removed since the directory's last sync.
                    (a, b) => {
                        if rng.random_bool(0.5) {
                            b.copied()
                        } else {
                            a.copied()
                        }
                    }
                };
                if let Some(inode) = inode {
                    entries.insert(name.clone(), inode);
                }
            }
            view.dirs.insert(dir.clone(), entries);
        }
        for (inode, (synced, changes)) in &self.files {
            let mut content = synced.clone();
            // Lose all, keep all, or keep a prefix: the extremes are where
            // the missing syncs show.
            let kept = match rng.random_range(0..4) {
                0 => 0,
                1 => changes.len(),
                _ => rng.random_range(0..=changes.len()),
            };
            for change in &changes[..kept] {
                change.apply(&mut content);
            }
            if let Some(torn) = changes.get(kept).and_then(|c| c.torn(rng)) {
                torn.apply(&mut content);
            }
            view.files.insert(*inode, content);
            view.next_inode = view.next_inode.max(inode + 1);
        }
        SimFs {
            sim: Arc::new(Mutex::new(Sim {
                view,
                events: Vec::new(),
            })),
        }
    }
}

impl Fs for SimFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut sim = self.lock();
        sim.view.dirs.entry(dir.to_path_buf()).or_default();
        sim.events.push(Event::Mkdir {
            dir: dir.to_path_buf(),
        });
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let sim = self.lock();
        let entries = sim.view.dirs.get(dir).ok_or_else(|| not_found(dir))?;
        Ok(entries.keys().map(|n| dir.join(n)).collect())
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let (dir, name) = split(path)?;
        let sim = self.lock();
        let inode = sim
            .view
            .dirs
            .get(&dir)
            .and_then(|d| d.get(&name))
            .ok_or_else(|| not_found(path))?;
        Ok(sim.view.files.get(inode).cloned().unwrap_or_default())
    }

    fn create_new(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        let (dir, name) = split(path)?;
        let mut sim = self.lock();
        let sim = &mut *sim;
        let entries = sim.view.dirs.get_mut(&dir).ok_or_else(|| not_found(&dir))?;
        if entries.contains_key(&name) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                path.display().to_string(),
            ));
        }
        let inode = sim.view.next_inode;
        sim.view.next_inode += 1;
        entries.insert(name.clone(), inode);
        sim.view.files.insert(inode, Vec::new());
        sim.events.push(Event::Create { dir, name, inode });
        Ok(Box::new(SimFile {
            fs: self.clone(),
            inode,
        }))
    }

    fn open_write(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        let (dir, name) = split(path)?;
        let sim = self.lock();
        let inode = *sim
            .view
            .dirs
            .get(&dir)
            .and_then(|d| d.get(&name))
            .ok_or_else(|| not_found(path))?;
        Ok(Box::new(SimFile {
            fs: self.clone(),
            inode,
        }))
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let (dir, name) = split(path)?;
        let mut sim = self.lock();
        sim.view
            .dirs
            .get_mut(&dir)
            .and_then(|d| d.remove(&name))
            .ok_or_else(|| not_found(path))?;
        sim.events.push(Event::Remove { dir, name });
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut sim = self.lock();
        sim.events.push(Event::SyncDir {
            dir: dir.to_path_buf(),
        });
        Ok(())
    }
}

/// A simulated file open for writing.
struct SimFile {
    fs: SimFs,
    inode: u64,
}

impl SimFile {
    fn change(&mut self, change: Change) {
        let mut sim = self.fs.lock();
        if let Some(file) = sim.view.files.get_mut(&self.inode) {
            change.apply(file);
        }
        sim.events.push(Event::Change {
            inode: self.inode,
            change,
        });
    }

    fn sync(&mut self) {
        let inode = self.inode;
        self.fs.lock().events.push(Event::Sync { inode });
    }
}

impl FsFile for SimFile {
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.change(Change::Write {
            offset,
            data: Data::of(buf),
        });
        Ok(())
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.change(Change::SetLen(len));
        Ok(())
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.sync();
        Ok(())
    }

    fn sync_all(&mut self) -> io::Result<()> {
        self.sync();
        Ok(())
    }
}
