//! Bit rot and torn tails on a real disk: a flipped byte in a log record or
//! a checkpoint piece refuses the open with an error naming where; a torn
//! tail is cut back and the store opens.

use std::path::Path;

use super::*;
use crate::policy::HandlerPolicy;
use crate::store::conformance::helpers::{
    assert_found_and_ready, enqueue_n, handler_with, manual_clock,
};

async fn open_with_messages(dir: &Path, n: usize) -> (EmbeddedStore, Vec<MessageId>) {
    let s = EmbeddedStore::open(dir, StoreConfig::default(), Arc::new(manual_clock())).unwrap();
    handler_with(&s, "h", "t", HandlerPolicy::default()).await;
    let ids = enqueue_n(&s, "t", n).await;
    (s, ids)
}

/// The one log file holding records, and its content.
fn the_log(dir: &Path) -> (std::path::PathBuf, Vec<u8>) {
    let files = wal::files(&fs::OsFs, &dir.join("wal")).unwrap();
    files
        .into_iter()
        .map(|(_, p)| {
            let data = std::fs::read(&p).unwrap();
            (p, data)
        })
        .find(|(_, data)| !wal::decode(data).0.is_empty())
        .expect("a log file with records")
}

fn reopen(dir: &Path) -> StoreResult<EmbeddedStore> {
    EmbeddedStore::open(dir, StoreConfig::default(), Arc::new(manual_clock()))
}

/// Closes `s` with its checkpoint failing, so that the log alone holds
/// its batches (as after a crash).
fn close_keeping_the_log(s: EmbeddedStore) {
    s.inject_checkpoint_fault(true);
    drop(s);
}

#[tokio::test]
async fn a_flipped_byte_in_a_log_record_refuses_the_open_and_names_the_place() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = open_with_messages(dir.path(), 10).await;
    close_keeping_the_log(s);
    let (path, mut data) = the_log(dir.path());
    let (records, end) = wal::decode(&data);
    assert!(records.len() > 3);
    // A byte in the middle of the log's records.
    let at = end / 2;
    data[at] ^= 0x40;
    std::fs::write(&path, &data).unwrap();
    let err = reopen(dir.path()).expect_err("damage must refuse the open");
    let msg = err.to_string();
    assert!(matches!(err, StoreError::Corrupt(_)), "{msg}");
    assert!(
        msg.contains(&path.display().to_string()),
        "names the file: {msg}"
    );
    let (_, valid) = wal::decode(&data);
    assert!(
        msg.contains(&format!("byte {valid}")),
        "names the offset: {msg}"
    );
    assert!(msg.contains("backup"), "says how to recover: {msg}");
}

#[tokio::test]
async fn a_torn_tail_is_cut_back_and_the_rest_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (s, ids) = open_with_messages(dir.path(), 10).await;
    close_keeping_the_log(s);
    let (path, mut data) = the_log(dir.path());
    let (records, end) = wal::decode(&data);
    // What a power cut mid-write leaves: a record's first bytes, zeros after
    // (a record longer than a sector, so that a boundary falls inside it).
    let mut torn = Vec::new();
    let ops = vec![(b"k".to_vec(), Some(Bytes::from(vec![7u8; 2000])))];
    wal::encode(&mut torn, records.last().unwrap().0 + 1, &ops);
    // Its sectors up to the first boundary inside it.
    let cut = (end + 1).next_multiple_of(512) - end;
    assert!(cut < torn.len());
    data[end..end + cut].copy_from_slice(&torn[..cut]);
    std::fs::write(&path, &data).unwrap();
    let s = reopen(dir.path()).expect("a torn tail opens");
    assert_found_and_ready(&s, "h", &ids).await;
    drop(s);
    assert!(
        !path.exists() || std::fs::metadata(&path).unwrap().len() as usize == end,
        "the torn record is cut off (or the file deleted once checkpointed)"
    );
}

#[tokio::test]
async fn a_flipped_byte_in_a_checkpoint_piece_refuses_the_open() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = open_with_messages(dir.path(), 10).await;
    // A clean close checkpoints everything into sled.
    drop(s);
    {
        let db = image::tests_open_db(dir.path());
        let tree = db.open_tree("image").unwrap();
        let (k, v) = tree.scan_prefix([1u8]).next().unwrap().unwrap();
        let mut v = v.to_vec();
        let at = v.len() / 2;
        v[at] ^= 0x40;
        tree.insert(k, v).unwrap();
        db.flush().unwrap();
    }
    let err = reopen(dir.path()).expect_err("damage must refuse the open");
    let msg = err.to_string();
    assert!(matches!(err, StoreError::Corrupt(_)), "{msg}");
    assert!(msg.contains("piece 0"), "names the piece: {msg}");
    assert!(
        msg.contains(&dir.path().display().to_string()),
        "names the directory: {msg}"
    );
}
