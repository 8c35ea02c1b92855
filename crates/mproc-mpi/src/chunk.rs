//! How many items go into the next chunk, from the measured time per item.
//!
//! The local Pool has its own (engine-internal) version of this rule; this
//! one is a small pure function so it can be unit-tested and later unified.

/// Work per chunk the sizes aim at (per local process on the worker rank).
pub(crate) const TARGET_NS: f64 = 2_000_000.0;
/// No chunk holds more items than this.
pub(crate) const MAX_ITEMS: usize = 1 << 24;
/// Unmeasured chunks grow 1, 2, 4, … up to this.
const MAX_PROBE: usize = 1 << 10;

/// The size of the next chunk.
///
/// * `ns_per_item`: the measured wall time per item on a worker rank, if any
///   chunk of this function has come back yet;
/// * `probes`: how many chunks were cut before any measurement (the sizes
///   grow while the first results are on their way);
/// * `remaining`: the items left in the input, if known: no chunk takes more
///   than a fair share of them, so the workers finish together;
/// * `workers`: worker ranks; `local`: processes per worker rank.
pub(crate) fn chunk_size(
    ns_per_item: Option<f64>,
    probes: u32,
    remaining: Option<usize>,
    workers: usize,
    local: usize,
) -> usize {
    let n = match ns_per_item {
        None => (1usize << probes.min(30)).min(MAX_PROBE),
        Some(ns) => {
            let target = TARGET_NS * local.max(1) as f64;
            let n = target / ns.max(0.1);
            if n >= MAX_ITEMS as f64 {
                MAX_ITEMS
            } else {
                (n as usize).max(1)
            }
        }
    };
    match remaining {
        Some(r) => {
            // Two chunks per worker at most for what is left, but not below
            // a tenth of the target: a tail of tiny chunks is all round trips.
            let share = r.div_ceil(2 * workers.max(1)).max(1);
            let floor = if ns_per_item.is_some() { n / 10 } else { 1 };
            n.min(share.max(floor)).min(r.max(1))
        }
        None => n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_grow_until_measured() {
        assert_eq!(chunk_size(None, 0, None, 2, 1), 1);
        assert_eq!(chunk_size(None, 3, None, 2, 1), 8);
        assert_eq!(chunk_size(None, 40, None, 2, 1), MAX_PROBE);
    }

    #[test]
    fn measured_sizes_aim_at_the_target() {
        // 1 µs per item: 2 ms is 2000 items.
        assert_eq!(chunk_size(Some(1000.0), 9, None, 2, 1), 2000);
        // Twice the processes on the rank, twice the items.
        assert_eq!(chunk_size(Some(1000.0), 9, None, 2, 2), 4000);
        // Slow items: one at a time.
        assert_eq!(chunk_size(Some(1e9), 0, None, 2, 1), 1);
        // Free items: capped.
        assert_eq!(chunk_size(Some(0.0), 0, None, 2, 1), MAX_ITEMS);
    }

    #[test]
    fn the_tail_is_shared() {
        // 100 left over 2 workers: at most 25 per chunk.
        assert_eq!(chunk_size(Some(1e5), 0, Some(100), 2, 1), 20);
        assert_eq!(chunk_size(Some(1e6), 0, Some(100), 2, 1), 2);
        // ... but never below a tenth of the target.
        assert_eq!(chunk_size(Some(1000.0), 0, Some(3000), 2, 1), 750);
        assert_eq!(chunk_size(Some(1000.0), 0, Some(1000), 2, 1), 250);
        assert_eq!(chunk_size(Some(1000.0), 0, Some(100), 2, 1), 100);
        assert_eq!(chunk_size(Some(1.0), 0, Some(1), 4, 1), 1);
        assert_eq!(chunk_size(None, 5, Some(3), 1, 1), 2);
    }
}
