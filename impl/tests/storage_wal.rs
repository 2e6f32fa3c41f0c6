//! The WAL's framing and recovery rules (`impl/src/storage/mod.rs`, "Recovery rules"): round
//! trips, torn tails at every offset, corruption named by file and offset, and property tests
//! that recovery only ever returns a prefix of what was written.

#![allow(clippy::unwrap_used)]

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use paxos_impl::storage::{Wal, WalError, WalOptions};
use proptest::prelude::*;

const HEADER: u64 = 8;

/// Deterministic payloads of varied length (0..=60 bytes) that never contain a valid record.
fn payload(i: u64) -> Vec<u8> {
    let len = (i * 7 % 61) as usize;
    (0..len)
        .map(|j| (i as u8).wrapping_mul(31) ^ j as u8 ^ 0xa5)
        .collect()
}

fn small_segments() -> WalOptions {
    WalOptions {
        segment_bytes_max: 256,
        ..WalOptions::default()
    }
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_str().unwrap();
            name.starts_with("wal-") && name.ends_with(".log")
        })
        .collect();
    files.sort();
    files
}

/// Writes `payloads` one batch each and syncs.
fn write_log(dir: &Path, options: WalOptions, payloads: &[Vec<u8>]) {
    let (mut wal, recovered) = Wal::open(dir, options).unwrap();
    assert!(recovered.records.is_empty());
    for p in payloads {
        wal.append(&[p.as_slice()]).unwrap();
    }
    wal.sync().unwrap();
}

fn records(dir: &Path, options: WalOptions) -> Vec<Vec<u8>> {
    Wal::open(dir, options).unwrap().1.records
}

fn flip_byte(path: &Path, offset: u64) {
    let mut data = fs::read(path).unwrap();
    data[offset as usize] ^= 0x5a;
    fs::write(path, data).unwrap();
}

fn truncate(path: &Path, len: u64) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

/// Byte offset of record `k` within a single-segment log of `payloads`.
fn offset_of(payloads: &[Vec<u8>], k: usize) -> u64 {
    payloads[..k].iter().map(|p| HEADER + p.len() as u64).sum()
}

#[test]
fn records_round_trip_across_segment_rotation_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let first: Vec<Vec<u8>> = (0..100).map(payload).collect();
    let (mut wal, recovered) = Wal::open(dir.path(), small_segments()).unwrap();
    assert_eq!((recovered.first_index, recovered.next_index()), (0, 0));
    for chunk in first.chunks(7) {
        let refs: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
        let before = wal.next_index();
        assert_eq!(
            wal.append(&refs).unwrap(),
            before..before + chunk.len() as u64
        );
    }
    wal.sync().unwrap();
    assert!(wal.segment_count() > 5, "{} segments", wal.segment_count());
    assert_eq!(wal.stats().records_appended, 100);
    drop(wal);

    let (mut wal, recovered) = Wal::open(dir.path(), small_segments()).unwrap();
    assert_eq!(recovered.records, first);
    assert_eq!(recovered.torn_tail, None);
    assert_eq!(wal.next_index(), 100);
    assert_eq!(wal.append(&[b"after reopen"]).unwrap(), 100..101);
    wal.sync().unwrap();
    drop(wal);

    let recovered = Wal::open(dir.path(), small_segments()).unwrap().1;
    assert_eq!(recovered.records.len(), 101);
    assert_eq!(recovered.records[100], b"after reopen");
    let indexed: Vec<u64> = recovered.iter().map(|(i, _)| i).collect();
    assert_eq!(indexed, (0..101).collect::<Vec<u64>>());
}

#[test]
fn a_record_larger_than_a_segment_gets_a_segment_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let big = vec![7u8; 1000];
    let (mut wal, _) = Wal::open(dir.path(), small_segments()).unwrap();
    wal.append(&[b"a", &big, b"b"]).unwrap();
    wal.sync().unwrap();
    assert_eq!(segments(dir.path()).len(), 3);
    drop(wal);
    assert_eq!(
        records(dir.path(), small_segments()),
        vec![b"a".to_vec(), big, b"b".to_vec()]
    );
}

#[test]
fn an_oversized_payload_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let options = WalOptions {
        record_bytes_max: 16,
        ..WalOptions::default()
    };
    let (mut wal, _) = Wal::open(dir.path(), options.clone()).unwrap();
    let error = wal.append(&[b"ok", &[0u8; 17]]).unwrap_err();
    assert!(
        matches!(error, WalError::RecordTooLarge { len: 17, max: 16 }),
        "{error}"
    );
    assert_eq!(wal.next_index(), 0);
    assert_eq!(wal.append(&[b"ok"]).unwrap(), 0..1);
}

/// Recovery rule "torn tail": cutting the last record at any byte recovers exactly the records
/// before it, and the log accepts appends again.
#[test]
fn a_torn_last_record_at_every_truncation_offset_recovers_the_prefix() {
    let written: Vec<Vec<u8>> = (1..=6).map(payload).collect();
    let last_start = offset_of(&written, 5);
    let end = offset_of(&written, 6);
    for cut in last_start..end {
        let dir = tempfile::tempdir().unwrap();
        write_log(dir.path(), WalOptions::default(), &written);
        let segment = &segments(dir.path())[0];
        truncate(segment, cut);

        let (mut wal, recovered) = Wal::open(dir.path(), WalOptions::default()).unwrap();
        assert_eq!(recovered.records, written[..5], "cut at {cut}");
        let torn = recovered.torn_tail.clone();
        assert_eq!(torn.is_some(), cut > last_start, "cut at {cut}");
        if let Some(torn) = torn {
            assert_eq!(
                (torn.offset, torn.bytes_discarded),
                (last_start, cut - last_start)
            );
        }
        assert_eq!(fs::metadata(segment).unwrap().len(), last_start);
        assert_eq!(wal.append(&[b"next"]).unwrap(), 5..6, "cut at {cut}");
        wal.sync().unwrap();
        drop(wal);
        let mut expected = written[..5].to_vec();
        expected.push(b"next".to_vec());
        assert_eq!(records(dir.path(), WalOptions::default()), expected);
    }
}

#[test]
fn a_torn_tail_in_the_last_of_many_segments_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let written: Vec<Vec<u8>> = (0..40).map(payload).collect();
    write_log(dir.path(), small_segments(), &written);
    let files = segments(dir.path());
    let last = files.last().unwrap();
    let len = fs::metadata(last).unwrap().len();
    truncate(last, len - 1);
    let recovered = Wal::open(dir.path(), small_segments()).unwrap().1;
    assert_eq!(recovered.records, written[..39]);
    assert!(recovered.torn_tail.is_some());
}

/// A crash after the file grew but before its blocks were written leaves zeros: no valid
/// record follows the damage, so it is a torn tail.
#[test]
fn zeros_after_the_last_good_record_are_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let written: Vec<Vec<u8>> = (1..=4).map(payload).collect();
    write_log(dir.path(), WalOptions::default(), &written);
    let segment = &segments(dir.path())[0];
    let good = fs::metadata(segment).unwrap().len();
    truncate(segment, good + 4096);
    let recovered = Wal::open(dir.path(), WalOptions::default()).unwrap().1;
    assert_eq!(recovered.records, written);
    let torn = recovered.torn_tail.unwrap();
    assert_eq!((torn.offset, torn.bytes_discarded), (good, 4096));
    assert_eq!(fs::metadata(segment).unwrap().len(), good);
}

fn expect_corrupt(dir: &Path, options: WalOptions) -> (PathBuf, u64, String) {
    match Wal::open(dir, options) {
        Err(error @ WalError::Corrupt { .. }) => {
            let shown = error.to_string();
            let WalError::Corrupt { file, offset, .. } = error else {
                unreachable!()
            };
            (file, offset, shown)
        }
        Err(other) => panic!("expected Corrupt, got {other}"),
        Ok((_, recovered)) => panic!("expected Corrupt, recovered {recovered:?}"),
    }
}

/// Recovery rule "corruption": a bad checksum with valid records after it is not a torn write.
#[test]
fn a_flipped_byte_in_a_middle_record_is_corruption_naming_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let written: Vec<Vec<u8>> = (1..=5).map(payload).collect();
    write_log(dir.path(), WalOptions::default(), &written);
    let segment = segments(dir.path())[0].clone();
    let damaged = offset_of(&written, 2);
    flip_byte(&segment, damaged + HEADER + 3);

    let (file, offset, shown) = expect_corrupt(dir.path(), WalOptions::default());
    assert_eq!((file, offset), (segment.clone(), damaged));
    assert!(shown.contains(&segment.display().to_string()), "{shown}");
    assert!(shown.contains(&format!("byte offset {damaged}")), "{shown}");
    assert!(shown.contains("refuses to start"), "{shown}");
    assert!(shown.contains("checksum mismatch"), "{shown}");
    // Nothing was truncated: the evidence is still there for an operator.
    assert_eq!(
        fs::metadata(&segment).unwrap().len(),
        offset_of(&written, 5)
    );
}

#[test]
fn a_damaged_length_in_a_middle_record_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let written: Vec<Vec<u8>> = (1..=5).map(payload).collect();
    write_log(dir.path(), WalOptions::default(), &written);
    let segment = segments(dir.path())[0].clone();
    let damaged = offset_of(&written, 1);
    flip_byte(&segment, damaged + 1); // the length now reaches past the end of the file
    let (file, offset, shown) = expect_corrupt(dir.path(), WalOptions::default());
    assert_eq!((file, offset), (segment, damaged));
    assert!(shown.contains("a valid record follows"), "{shown}");
}

/// The documented choice: a checksum failure in the final record that reaches the end of the
/// file is indistinguishable from a torn write, so it is truncated, not fatal.
#[test]
fn a_flipped_byte_in_the_final_record_payload_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let written: Vec<Vec<u8>> = (1..=5).map(payload).collect();
    write_log(dir.path(), WalOptions::default(), &written);
    let segment = segments(dir.path())[0].clone();
    flip_byte(&segment, offset_of(&written, 4) + HEADER + 1);
    let recovered = Wal::open(dir.path(), WalOptions::default()).unwrap().1;
    assert_eq!(recovered.records, written[..4]);
    let torn = recovered.torn_tail.unwrap();
    assert!(torn.reason.contains("checksum mismatch"), "{}", torn.reason);
}

#[test]
fn damage_at_the_end_of_a_segment_that_is_not_the_last_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let written: Vec<Vec<u8>> = (0..40).map(payload).collect();
    write_log(dir.path(), small_segments(), &written);
    let first = segments(dir.path())[0].clone();
    let len = fs::metadata(&first).unwrap().len();
    truncate(&first, len - 2);
    let (file, offset, shown) = expect_corrupt(dir.path(), small_segments());
    assert_eq!(file, first);
    assert!(offset < len - 2);
    assert!(shown.contains("not the last"), "{shown}");
}

#[test]
fn a_garbage_length_is_damage_not_an_allocation() {
    let garbage = [0xf0u8, 0xff, 0xff, 0xff, 1, 2, 3, 4, 5, 6, 7, 8];
    // At the tail: a torn header, truncated.
    let dir = tempfile::tempdir().unwrap();
    let written: Vec<Vec<u8>> = (1..=3).map(payload).collect();
    write_log(dir.path(), WalOptions::default(), &written);
    let segment = segments(dir.path())[0].clone();
    let mut data = fs::read(&segment).unwrap();
    data.extend_from_slice(&garbage);
    fs::write(&segment, &data).unwrap();
    let recovered = Wal::open(dir.path(), WalOptions::default()).unwrap().1;
    assert_eq!(recovered.records, written);
    assert!(recovered
        .torn_tail
        .unwrap()
        .reason
        .contains("exceeds record_bytes_max"));

    // In the middle, with a valid record after it: corruption.
    let mut middle = fs::read(&segment).unwrap();
    let tail = middle.split_off(offset_of(&written, 1) as usize);
    middle.extend_from_slice(&garbage[..8]);
    middle.extend_from_slice(&tail);
    fs::write(&segment, &middle).unwrap();
    let (_, offset, shown) = expect_corrupt(dir.path(), WalOptions::default());
    assert_eq!(offset, offset_of(&written, 1));
    assert!(shown.contains("exceeds record_bytes_max"), "{shown}");
}

#[test]
fn a_missing_middle_segment_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let written: Vec<Vec<u8>> = (0..60).map(payload).collect();
    write_log(dir.path(), small_segments(), &written);
    let files = segments(dir.path());
    assert!(files.len() >= 4);
    fs::remove_file(&files[1]).unwrap();
    let (file, offset, shown) = expect_corrupt(dir.path(), small_segments());
    assert_eq!((file, offset), (files[2].clone(), 0));
    assert!(shown.contains("missing"), "{shown}");
}

#[test]
fn unrelated_files_in_the_directory_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), WalOptions::default(), &[b"x".to_vec()]);
    fs::write(dir.path().join("README"), b"notes").unwrap();
    fs::write(dir.path().join("wal-7.log"), b"not canonical").unwrap();
    assert_eq!(
        records(dir.path(), WalOptions::default()),
        vec![b"x".to_vec()]
    );
}

#[test]
fn invalid_options_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let options = WalOptions {
        segment_bytes_max: 0,
        ..WalOptions::default()
    };
    assert!(matches!(
        Wal::open(dir.path(), options),
        Err(WalError::InvalidArgument(_))
    ));
}

fn arbitrary_payloads() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..80), 1..40)
}

/// Writes `payloads` in batches of `batch` into 256-byte segments.
fn write_in_batches(dir: &Path, payloads: &[Vec<u8>], batch: usize) {
    let (mut wal, _) = Wal::open(dir, small_segments()).unwrap();
    for chunk in payloads.chunks(batch) {
        let refs: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
        wal.append(&refs).unwrap();
    }
    wal.sync().unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any truncation of the last segment (plus optional zero fill) recovers a prefix that
    /// keeps every record fully before the cut, and nothing else.
    #[test]
    fn truncating_the_last_segment_recovers_a_prefix(
        payloads in arbitrary_payloads(),
        batch in 1usize..8,
        cut_fraction in 0.0f64..=1.0,
        zero_fill in prop::option::of(1u64..600),
    ) {
        let dir = tempfile::tempdir().unwrap();
        write_in_batches(dir.path(), &payloads, batch);
        let files = segments(dir.path());
        let last = files.last().unwrap();
        let len = fs::metadata(last).unwrap().len();
        let cut = (len as f64 * cut_fraction) as u64;
        truncate(last, cut);
        if let Some(zeros) = zero_fill {
            truncate(last, cut + zeros);
        }
        let recovered = Wal::open(dir.path(), small_segments()).unwrap().1;
        let n = recovered.records.len();
        prop_assert_eq!(&recovered.records[..], &payloads[..n]);
        // Every record of the earlier segments survives, and in the last one every record
        // that ended at or before the cut.
        let first_in_last = first_index_of(last);
        let mut end = 0;
        let mut complete = first_in_last as usize;
        for p in &payloads[first_in_last as usize..] {
            end += HEADER + p.len() as u64;
            if end > cut { break; }
            complete += 1;
        }
        prop_assert_eq!(n, complete);
    }

    /// Flipping any single byte never yields records that were not written: recovery either
    /// refuses (Corrupt) or returns a prefix that loses only the damaged record and what
    /// follows it in the last segment.
    #[test]
    fn a_flipped_byte_never_yields_wrong_records(
        payloads in arbitrary_payloads(),
        position in 0.0f64..1.0,
        segment_choice in 0.0f64..1.0,
    ) {
        let dir = tempfile::tempdir().unwrap();
        write_in_batches(dir.path(), &payloads, 3);
        let files = segments(dir.path());
        let chosen = ((files.len() as f64 * segment_choice) as usize).min(files.len() - 1);
        let file = &files[chosen];
        let len = fs::metadata(file).unwrap().len();
        prop_assume!(len > 0);
        let offset = ((len as f64 * position) as u64).min(len - 1);
        flip_byte(file, offset);
        match Wal::open(dir.path(), small_segments()) {
            Ok((_, recovered)) => {
                let n = recovered.records.len();
                prop_assert_eq!(&recovered.records[..], &payloads[..n]);
                prop_assert_eq!(chosen, files.len() - 1, "damage outside the last segment");
                let before = first_index_of(file) as usize;
                prop_assert!(n >= before);
            }
            Err(WalError::Corrupt { .. }) => {}
            Err(other) => prop_assert!(false, "unexpected error {}", other),
        }
    }
}

/// A segment's name is the index of its first record.
fn first_index_of(file: &Path) -> u64 {
    let name = file.file_name().unwrap().to_str().unwrap();
    name["wal-".len()..name.len() - ".log".len()]
        .parse()
        .unwrap()
}
