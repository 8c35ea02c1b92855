//! Fuzz entry for the lease table (also replayed by ordinary tests on the
//! corpus): operation streams on a small lease queue checked against a
//! model, and, with the mode bit set, bytes scribbled over the table
//! between operations, which must never cause a panic or an access
//! outside the segment.

use std::collections::{BTreeMap, VecDeque};

use super::{Lease, LeaseQueue, LeaseQueueBuilder};
use crate::Pod;
use crate::error::TryGetError;

const SLOTS: usize = 4;

/// See the module docs. `data[0] & 1`: scribble mode.
pub(crate) fn lease_table(data: &[u8]) {
    let Some((&mode, ops)) = data.split_first() else {
        return;
    };
    let scribble = mode & 1 == 1;
    let q: LeaseQueue<u32, Pod> = LeaseQueueBuilder::new()
        .max_leases(SLOTS)
        .max_item_size(8)
        .capacity(4096)
        .build()
        .expect("a small lease queue");
    let seg = q.shared.table.segment();
    let mut next = 0u32;
    let mut queued: VecDeque<u32> = VecDeque::new();
    // Items waiting for redelivery by first-delivery order: (item, deliveries).
    let mut waiting: BTreeMap<u64, (u32, u32)> = BTreeMap::new();
    let mut order = 0u64;
    let mut held: Vec<(Lease<'_, u32, Pod>, u64)> = Vec::new();
    let mut it = ops.iter().copied();
    while let Some(op) = it.next() {
        let arg = usize::from(op >> 3);
        match op & 7 {
            0 | 1 => {
                q.put(next).expect("room in the ring");
                queued.push_back(next);
                next += 1;
            }
            2 | 3 => {
                let got = q.try_get_lease();
                if scribble {
                    if let Ok(l) = got {
                        if held.len() < SLOTS {
                            held.push((l, 0));
                        } else {
                            let _ = l.ack();
                        }
                    }
                    continue;
                }
                if let Some((&o, &(item, n))) = waiting.iter().next() {
                    let l = got.expect("a waiting item");
                    assert_eq!((*l, l.delivery_count()), (item, n + 1));
                    waiting.remove(&o);
                    held.push((l, o));
                } else if held.len() < SLOTS && !queued.is_empty() {
                    let l = got.expect("a queued item");
                    assert_eq!((*l, l.delivery_count()), (queued.pop_front().unwrap(), 1));
                    held.push((l, order));
                    order += 1;
                } else {
                    assert!(matches!(got, Err(TryGetError::Empty)));
                }
            }
            4 | 5 if !held.is_empty() => {
                let (l, _) = held.swap_remove(arg % held.len());
                let r = l.ack();
                assert!(scribble || r.is_ok());
            }
            6 if !held.is_empty() => {
                let (l, o) = held.swap_remove(arg % held.len());
                if !scribble {
                    waiting.insert(o, (*l, l.delivery_count()));
                }
                l.nack();
            }
            7 if scribble => {
                // Write a byte pattern over the control line or a slot head.
                let off = 128 + (arg * 8) % (128 + SLOTS * 64);
                let v = u64::from_le_bytes(std::array::from_fn(|_| it.next().unwrap_or(0xff)));
                let _ = seg.write(off, &v.to_le_bytes());
            }
            _ => {}
        }
    }
    if !scribble {
        // Everything held gives back, and the model agrees at the end.
        for (l, o) in held.drain(..) {
            waiting.insert(o, (*l, l.delivery_count()));
        }
        assert_eq!(q.leased(), waiting.len());
        assert_eq!(q.qsize(), queued.len());
    }
}
