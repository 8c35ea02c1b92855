//! Checks shared by the pool, executor and MPI pool tests, and the fuzz
//! corpora that the crates' replay tests read.

use std::fmt::Debug;

/// Checks the outcomes of a run in which only item `at` fails: every other
/// item `i` is `Ok(want(i))`, and item `at` is an error, which it returns
/// (for the caller to check that it is the expected one).
///
/// # Panics
/// If another item fails, an item's value differs from `want`, item `at`
/// succeeds, or the outcomes end before it.
#[track_caller]
pub fn only_failure_at<T, E>(
    outcomes: impl IntoIterator<Item = Result<T, E>>,
    at: usize,
    want: impl Fn(usize) -> T,
) -> E
where
    T: PartialEq + Debug,
    E: Debug,
{
    let mut failure = None;
    for (i, r) in outcomes.into_iter().enumerate() {
        match r {
            Err(e) if i == at => failure = Some(e),
            Err(e) => panic!("item {i} failed (only item {at} should): {e:?}"),
            Ok(v) => assert_eq!(v, want(i), "item {i}"),
        }
    }
    failure.unwrap_or_else(|| panic!("item {at} did not fail"))
}

/// A byte vector's bytes reversed, then its length (mod 256): the task of
/// the tests that carry byte vectors (the `Bytes` codec) through pools,
/// whose result tells an empty input from a lost one.
pub fn tag(mut v: Vec<u8>) -> Vec<u8> {
    let n = v.len() as u8;
    v.reverse();
    v.push(n);
    v
}

/// What [`tag`] returns for `v`.
pub fn tagged(v: &[u8]) -> Vec<u8> {
    tag(v.to_vec())
}

/// The files of the workspace's fuzz corpus `name` (`fuzz/corpus/<name>`),
/// sorted by file name: each file's name and bytes. The crates' replay
/// tests run them through their parsers on stable, without cargo-fuzz.
///
/// # Panics
/// If the directory is missing or a file cannot be read.
pub fn fuzz_corpus(name: &str) -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(name);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("fuzz corpus {} missing: {e}", dir.display()))
        .map(|e| e.expect("a corpus entry").path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let bytes = std::fs::read(&p)
                .unwrap_or_else(|e| panic!("corpus file {} unreadable: {e}", p.display()));
            (name, bytes)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_one_failure() {
        let outcomes = [Ok(0), Ok(2), Err("two"), Ok(6)];
        assert_eq!(only_failure_at(outcomes, 2, |i| i * 2), "two");
    }

    #[test]
    #[should_panic(expected = "item 1 failed")]
    fn refuses_another_failure() {
        only_failure_at([Ok(0), Err("one"), Err("two")], 2, |i| i);
    }

    #[test]
    #[should_panic(expected = "item 3 did not fail")]
    fn refuses_a_missing_failure() {
        only_failure_at([Ok::<_, ()>(0), Ok(1)], 3, |i| i);
    }
}
