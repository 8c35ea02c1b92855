//! Replays the corpus of the `segment_header` fuzz target on stable, so CI
//! exercises it without cargo-fuzz.

use std::path::PathBuf;

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/segment_header")
}

#[test]
fn segment_header_corpus_replays_without_panic() {
    let files = mproc_testkit::fuzz_corpus("segment_header");
    assert!(files.len() >= 8, "corpus too small: {} files", files.len());
    let mut valid = 0;
    for (name, data) in &files {
        let opened = mproc_shm::__private::segment_header(data);
        assert!(opened <= 1, "{name} opened as {opened} kinds");
        // Files named valid_* are well-formed headers and must open as exactly one kind.
        if name.starts_with("valid_") {
            assert_eq!(opened, 1, "{name} should open");
            valid += 1;
        } else {
            assert_eq!(opened, 0, "{name} should be rejected");
        }
    }
    assert!(valid >= 3);
}

/// Writes the seed corpus (run with MPROC_SHM_WRITE_CORPUS=1 and --ignored).
#[test]
#[ignore = "regenerates the fuzz corpus"]
fn write_segment_header_corpus() {
    use mproc_shm::{Array, RawValue, SharedAtomicU64, Value};
    if std::env::var_os("MPROC_SHM_WRITE_CORPUS").is_none() {
        return;
    }
    let dir = corpus();
    std::fs::create_dir_all(&dir).unwrap();
    let bytes = |seg: &mproc_shm::Segment| {
        let mut b = vec![0u8; seg.len()];
        seg.read(0, &mut b).unwrap();
        b
    };
    let arr = Array::<u64>::from_slice(&[1, 2, 3, 4]).unwrap();
    let val = Value::new(7u64).unwrap();
    let empty = Array::<f64>::new(0).unwrap();
    // SAFETY: one thread, no guard alive, so nothing uses the elements while
    // their bytes are read.
    let arr = bytes(unsafe { arr.segment() });
    // SAFETY: as above.
    let val = bytes(unsafe { val.segment() });
    let raw = bytes(RawValue::new(9u32).unwrap().segment());
    let atomic = bytes(SharedAtomicU64::new(3).unwrap().segment());
    // SAFETY: as above.
    let empty = bytes(unsafe { empty.segment() });
    let w = |name: &str, data: &[u8]| std::fs::write(dir.join(name), data).unwrap();
    w("valid_array_u64", &arr);
    w("valid_value_u64", &val);
    w("valid_raw_value_u32", &raw);
    w("valid_atomic_u64", &atomic);
    w("valid_empty_array_f64", &empty);
    w("truncated_array", &arr[..arr.len() - 8]);
    w("header_only", &arr[..128]);
    w("short", &arr[..40]);
    w("empty", &[]);
    w("zeros", &[0u8; 512]);
    let mut big_len = arr.clone();
    big_len[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
    w("huge_len", &big_len);
    let mut big_size = arr.clone();
    big_size[16..24].copy_from_slice(&(1u64 << 62).to_le_bytes());
    w("huge_recorded_size", &big_size);
    let mut bad_off = arr.clone();
    bad_off[56..64].copy_from_slice(&3u64.to_le_bytes());
    w("odd_data_offset", &bad_off);
    let mut bad_version = val.clone();
    bad_version[8] = 2;
    w("bad_version", &bad_version);
    let mut wrong_kind = val.clone();
    wrong_kind[12..16].copy_from_slice(&0x0201u32.to_le_bytes());
    w("sync_kind", &wrong_kind);
}
