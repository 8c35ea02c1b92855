//! Batched puts and gets on the untyped queue: many records per producer
//! lock and per claim (see `ring::batch` for the protocol).

use super::{Core, GetFail, PutFail};
use crate::ring::{Batch, Push, REC_INLINE, TakeMany};
use crate::wait::Deadline;

impl Core {
    /// The largest record a batch may hold (larger items go through
    /// [`Core::put_bytes`], as large messages).
    pub(crate) fn batch_item_max(&self) -> usize {
        self.inline_max()
    }

    /// How many bytes of records a batch gathers before it is published.
    pub(crate) fn batch_bytes(&self) -> usize {
        (self.cap / 4).clamp(64, 16 << 10)
    }

    /// Publishes every pending record of `b`, in order, as few groups as
    /// room allows, waiting until `deadline` for room; a record the ring
    /// has no room for goes to the overflow log when a single put's would.
    /// On failure, the records published so far stay published
    /// ([`Batch::published`] says how many).
    pub(crate) fn put_batch(&self, b: &mut Batch, deadline: Deadline) -> Result<(), PutFail> {
        let ctl = self.ctl();
        let recs = self.records();
        let b = std::cell::RefCell::new(b);
        self.put_with(
            deadline,
            |gate, g| {
                let mut b = b.borrow_mut();
                let (r, waiters) = {
                    // The producer lock, released at the end of this block.
                    let _g = g;
                    let max = self.maxcount();
                    let before = b.published();
                    let r = loop {
                        if b.pending() == 0 {
                            break Some(Ok(()));
                        }
                        // SAFETY: we hold the producer lock; records are at
                        // most a quarter of the ring (see `batch_item_max`).
                        match unsafe { recs.ring.publish_batch(&mut b, max, &self.head_cache) } {
                            Ok(Ok(_)) => continue,
                            Ok(Err(Push::NoRoom)) => {}
                            Ok(Err(_)) => break None,
                            Err(c) => break Some(Err(PutFail::Broken(c.into()))),
                        }
                        // No room in the ring: the next record may go to the
                        // log, as a single put's would.
                        // SAFETY: as above.
                        match unsafe {
                            recs.try_push(
                                REC_INLINE,
                                b.next_payload(),
                                max,
                                &self.head_cache,
                                || gate.open(),
                            )
                        } {
                            Ok(Push::Done) => b.skip_one(),
                            Ok(_) => break None,
                            Err(c) => break Some(Err(PutFail::Broken(c.into()))),
                        }
                    };
                    // Read under the producer lock, which sleeping consumers
                    // register under: see `wait`.
                    (
                        r,
                        (b.published() > before).then(|| ctl.wait.not_empty.waiters()),
                    )
                };
                match (r, waiters) {
                    (Some(Ok(())), Some(w)) => Some(Ok(w)),
                    (Some(Ok(())), None) => Some(Ok(0)),
                    (r, w) => {
                        // Consumers hear of what was published before we
                        // wait (or fail).
                        if let Some(w) = w {
                            ctl.wait.not_empty.notify_if(w);
                        }
                        r.map(|r| r.map(|()| 0))
                    }
                }
            },
            || {
                let b = b.borrow();
                let len = if b.pending() == 0 {
                    0
                } else {
                    b.next_payload().len()
                };
                (len, false)
            },
        )
    }

    /// Takes up to `max` inline records without waiting and without the
    /// consumer lock (see `Ring::take_many`), appending their payloads to
    /// `out` and where each ends to `ends`. `Empty` when there is none,
    /// `Locked` when the next record must be taken under the lock (a large
    /// message, or the overflow log holds records): a single get takes it.
    pub(crate) fn take_batch(
        &self,
        out: &mut Vec<u8>,
        ends: &mut Vec<usize>,
        max: usize,
    ) -> Result<TakeMany, GetFail> {
        let ctl = self.ctl();
        let ovf = self.overflow();
        match self.ring().take_many(out, ends, max, || ovf.has_record()) {
            Ok(t @ TakeMany::Taken(_)) => {
                // After the SeqCst swap that freed the room: see `wait`.
                ctl.wait
                    .not_full
                    .notify_if(ctl.wait.not_full.waiters_seqcst());
                Ok(t)
            }
            Ok(t) => Ok(t),
            Err(c) => Err(GetFail::Broken(c.into())),
        }
    }
}
