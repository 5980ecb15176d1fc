//! The in-memory image of the store's one ordered tree.
//!
//! Every verb reads and scans here; nothing on the hot path touches sled.
//! Durability comes from the write-ahead log ([`super::wal`]); sled holds the
//! checkpointed image, is loaded into this map on open, and receives the
//! changes since the last checkpoint in one batch per checkpoint.
//!
//! Scans are lazy and lock-free between chunks (like sled's iterators): each
//! chunk is copied out under the read lock, so a writer never waits for a slow
//! reader, and a scan sees every key that existed for its whole duration.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::RwLock;

use bytes::Bytes;

/// One key and its value.
pub(super) type Entry = (Vec<u8>, Bytes);

/// One blind write: set (`Some`) or remove (`None`) a key.
pub(super) type Op = (Vec<u8>, Option<Bytes>);

/// An ordered map of byte keys to byte values, shared by readers and the writer.
///
/// The whole store lives here, so entries are kept tight: keys as exact-size
/// boxed slices, values as given (see `Txn::put`, which sizes them exactly).
#[derive(Debug, Default)]
pub(super) struct MemTree {
    map: RwLock<BTreeMap<Box<[u8]>, Bytes>>,
}

/// First chunk of a scan; chunks double up to [`MAX_CHUNK`], so a scan that
/// takes a few entries copies a few and a long one takes the lock rarely.
const FIRST_CHUNK: usize = 8;
const MAX_CHUNK: usize = 1024;

impl MemTree {
    /// A tree holding `entries`.
    pub(super) fn from_entries(entries: impl IntoIterator<Item = Entry>) -> MemTree {
        MemTree {
            map: RwLock::new(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.into_boxed_slice(), v))
                    .collect(),
            ),
        }
    }

    pub(super) fn get(&self, k: impl AsRef<[u8]>) -> Option<Bytes> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(k.as_ref())
            .cloned()
    }

    /// Applies `ops` in order, atomically for readers.
    pub(super) fn apply(&self, ops: impl IntoIterator<Item = Op>) {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        for (k, v) in ops {
            match v {
                // Most writes rewrite a key (a delivery's record, a count):
                // replace the value in place rather than box a new key.
                Some(v) => match map.get_mut(k.as_slice()) {
                    Some(slot) => *slot = v,
                    None => {
                        map.insert(k.into_boxed_slice(), v);
                    }
                },
                None => {
                    map.remove(k.as_slice());
                }
            }
        }
    }

    /// Entries whose key starts with `prefix`, in key order.
    pub(super) fn scan_prefix(&self, prefix: impl AsRef<[u8]>) -> Scan<'_> {
        let prefix = prefix.as_ref().to_vec();
        self.scan(prefix.clone(), prefix)
    }

    /// Entries from `from` (inclusive) to the end, in key order.
    pub(super) fn range_from(&self, from: Vec<u8>) -> Scan<'_> {
        self.scan(from, Vec::new())
    }

    /// Up to `n` entries under `prefix` whose keys sort below `below` (the
    /// whole prefix when `None`), greatest key first: one chunk of a backward
    /// scan, copied out under the read lock.
    pub(super) fn rev_chunk(&self, prefix: &[u8], below: Option<&[u8]>, n: usize) -> Vec<Entry> {
        // The first key after every key under `prefix`: the prefix with its
        // last byte below 0xff incremented (none when it is all 0xff).
        let mut end = prefix.to_vec();
        while end.last() == Some(&0xff) {
            end.pop();
        }
        if let Some(last) = end.last_mut() {
            *last += 1;
        }
        let hi = match below {
            Some(k) if end.is_empty() || k < end.as_slice() => k,
            _ if !end.is_empty() => end.as_slice(),
            _ => &[][..],
        };
        if !hi.is_empty() && hi <= prefix {
            return Vec::new();
        }
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        let upper = if hi.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Excluded(hi)
        };
        map.range::<[u8], _>((Bound::Included(prefix), upper))
            .rev()
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(n)
            .map(|(k, v)| (k.to_vec(), v.clone()))
            .collect()
    }

    fn scan(&self, from: Vec<u8>, prefix: Vec<u8>) -> Scan<'_> {
        Scan {
            tree: self,
            from: Bound::Included(from),
            prefix,
            buf: VecDeque::new(),
            chunk: FIRST_CHUNK,
            done: false,
        }
    }
}

/// A lazy scan over a [`MemTree`]; see [`MemTree::scan_prefix`].
#[derive(Debug)]
pub(super) struct Scan<'a> {
    tree: &'a MemTree,
    from: Bound<Vec<u8>>,
    prefix: Vec<u8>,
    buf: VecDeque<Entry>,
    chunk: usize,
    done: bool,
}

impl Scan<'_> {
    fn refill(&mut self) {
        let map = self.tree.map.read().unwrap_or_else(|p| p.into_inner());
        let lo = match &self.from {
            Bound::Included(k) => Bound::Included(k.as_slice()),
            Bound::Excluded(k) => Bound::Excluded(k.as_slice()),
            Bound::Unbounded => Bound::Unbounded,
        };
        let range = map.range::<[u8], _>((lo, Bound::Unbounded));
        for (k, v) in range {
            if !k.starts_with(&self.prefix) || self.buf.len() == self.chunk {
                break;
            }
            self.buf.push_back((k.to_vec(), v.clone()));
        }
        drop(map);
        self.done = self.buf.len() < self.chunk;
        if let Some((k, _)) = self.buf.back() {
            self.from = Bound::Excluded(k.clone());
        }
        self.chunk = (self.chunk * 2).min(MAX_CHUNK);
    }
}

impl Iterator for Scan<'_> {
    type Item = Entry;

    fn next(&mut self) -> Option<Entry> {
        if self.buf.is_empty() && !self.done {
            self.refill();
        }
        self.buf.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(keys: &[&str]) -> MemTree {
        MemTree::from_entries(
            keys.iter()
                .map(|k| (k.as_bytes().to_vec(), Bytes::from(k.to_string()))),
        )
    }

    fn keys(scan: Scan<'_>) -> Vec<String> {
        scan.map(|(k, _)| String::from_utf8(k).expect("utf8"))
            .collect()
    }

    #[test]
    fn backward_chunks_stay_in_their_prefix() {
        let t = tree(&["a1", "b1", "b2", "b3", "c1"]);
        let ks = |v: Vec<Entry>| -> Vec<String> {
            v.into_iter()
                .map(|(k, _)| String::from_utf8(k).unwrap())
                .collect()
        };
        assert_eq!(ks(t.rev_chunk(b"b", None, 10)), ["b3", "b2", "b1"]);
        assert_eq!(ks(t.rev_chunk(b"b", Some(b"b3"), 1)), ["b2"]);
        assert!(t.rev_chunk(b"d", None, 10).is_empty());
        assert!(t.rev_chunk(b"b", Some(b"a"), 10).is_empty());
    }

    #[test]
    fn prefix_scans_cross_chunk_boundaries() {
        let names: Vec<String> = (0..3000).map(|i| format!("a{i:05}")).collect();
        let mut all: Vec<&str> = names.iter().map(String::as_str).collect();
        all.extend(["b1", "Z"]);
        let t = tree(&all);
        assert_eq!(keys(t.scan_prefix("a")), names);
        assert_eq!(keys(t.scan_prefix("b")), ["b1"]);
        assert!(keys(t.scan_prefix("c")).is_empty());
        assert_eq!(keys(t.range_from(b"a02999".to_vec())), ["a02999", "b1"]);
    }

    #[test]
    fn writes_apply_in_order_and_scans_copy_chunks() {
        let t = tree(&["a1", "a2"]);
        let mut scan = t.scan_prefix("a");
        assert_eq!(scan.next().map(|e| e.0), Some(b"a1".to_vec()));
        t.apply([(b"a3".to_vec(), Some(Bytes::new())), (b"a2".to_vec(), None)]);
        // The chunk holding a2 was copied before the write.
        assert_eq!(scan.next().map(|e| e.0), Some(b"a2".to_vec()));
        assert_eq!(t.get(b"a2"), None);
        assert_eq!(keys(t.scan_prefix("a")), ["a1", "a3"]);
    }
}
