use super::*;

/// A word-aligned buffer with a border, so copies that stray are seen.
fn buffer() -> Vec<usize> {
    vec![usize::MAX; 8]
}

fn bytes(buf: &mut [usize]) -> *mut u8 {
    buf.as_mut_ptr().cast::<u8>()
}

/// Every start and length within three words: a store then a load return
/// the data, and the bytes around the range keep their value.
#[test]
fn every_alignment_round_trips_and_stays_in_range() {
    type Load = unsafe fn(*const u8, &mut [u8]);
    type Store = unsafe fn(*mut u8, &[u8]);
    let kinds: [(Load, Store); 2] = [(load_bytes, store_bytes), (load_words, store_words)];
    for (load, store) in kinds {
        for start in WORD..2 * WORD {
            for len in 0..3 * WORD {
                let mut buf = buffer();
                let p = bytes(&mut buf);
                let data: Vec<u8> = (0..len as u8).collect();
                // SAFETY: `start + len <= 5 * WORD`, inside the 8-word buffer
                // (whose words are all inside it too); one thread only.
                unsafe { store(p.add(start), &data) };
                let mut back = vec![0u8; len];
                // SAFETY: as above.
                unsafe { load(p.add(start), &mut back) };
                assert_eq!(back, data, "start {start}, len {len}");
                let mut all = vec![0u8; 8 * WORD];
                // SAFETY: the whole buffer.
                unsafe { load_bytes(p, &mut all) };
                for (i, &b) in all.iter().enumerate() {
                    if i < start || i >= start + len {
                        assert_eq!(b, 0xff, "byte {i} outside [{start}, +{len}) changed");
                    }
                }
            }
        }
    }
}
