//! A receive kept posted for the small messages of one tag.
//!
//! A message that arrives before its receive is posted waits in MPI's queue
//! of unexpected messages (allocated and copied there), and taking it takes
//! a probe and a matched receive. One that finds its receive posted is
//! copied once, straight into it, and a test completes it. Small task and
//! result messages, `apply`'s round trip among them, travel this way: with
//! their own tags, since a message longer than the posted buffer would be
//! an error (larger ones keep the probe).

use mpi::point_to_point::{Source, Status};
use mpi::request::{Request, StaticScope};
use mpi::topology::Rank;

use crate::lent::Lent;

/// Polls (of rank 0 and of a worker) per probe for large messages; the
/// small ones, `apply`'s among them, are tested for at every poll.
pub(crate) const PROBE_EVERY: u32 = 4;
/// Polls between two looks at the clock while a poller (a driving caller,
/// an idle worker) waits.
pub(crate) const POLLS_PER_CLOCK: u32 = 8;

/// The largest message a posted receive takes (and so the largest a sender
/// may give a small tag): well under the eager limit of Open MPI's
/// shared-memory and TCP transports (4 KiB and 64 KiB by default).
pub(crate) const SMALL: usize = 1024;

/// A receive posted into a buffer of [`SMALL`] bytes, posted again as soon
/// as a message is taken out of it.
pub(crate) struct Posted {
    req: Option<Request<'static, [u8], StaticScope>>,
    /// The buffer, lent to the request; freed in `Drop` once no request
    /// uses it.
    buf: Lent,
    tag: i32,
}

impl Posted {
    /// Posts a receive of `tag` from `source`.
    pub(crate) fn new<S: Source>(source: &S, tag: i32) -> Self {
        let mut p = Self {
            req: None,
            buf: Lent::new(vec![0u8; SMALL]),
            tag,
        };
        p.post(source);
        p
    }

    fn post<S: Source>(&mut self, source: &S) {
        // SAFETY: no request uses the buffer (this is the only place that
        // posts one), `take` copied out of it before posting again, and it is
        // taken back only in `Drop`, once no request uses it.
        let buf = unsafe { self.buf.bytes_mut() };
        self.req = Some(source.immediate_receive_into_with_tag(StaticScope, buf, self.tag));
    }

    /// The message that arrived, if one did (its bytes and where it came
    /// from), after posting the receive again on `source`.
    pub(crate) fn take<S: Source>(&mut self, source: &S) -> Option<(Vec<u8>, Rank)> {
        let req = self.req.take()?;
        match req.test() {
            Ok(status) => {
                let len = count(&status);
                // SAFETY: the request completed: MPI no longer writes the
                // buffer, and the slice is dropped before it is posted again.
                let msg = unsafe { self.buf.bytes() }[..len].to_vec();
                let from = status.source_rank();
                self.post(source);
                Some((msg, from))
            }
            Err(req) => {
                self.req = Some(req);
                None
            }
        }
    }

    /// Withdraws the receive (before MPI is finalised). A message that
    /// matched it in the meantime is dropped: callers do this only once no
    /// message of its tag can come.
    pub(crate) fn cancel(&mut self) {
        if let Some(req) = self.req.take() {
            req.cancel();
            let _ = req.wait();
        }
    }
}

impl Drop for Posted {
    fn drop(&mut self) {
        if self.req.is_some() {
            // Still posted: MPI may write the buffer, so it must not be
            // freed; leak it rather (and the request, whose own drop would
            // panic). Every owner cancels before it lets go.
            std::mem::forget(self.req.take());
            return;
        }
        // SAFETY: no request uses the buffer any more (completed, or
        // cancelled and waited for), and no slice of it is alive.
        drop(unsafe { self.buf.take_back() });
    }
}

// SAFETY: the request and buffer are plain MPI handles and memory; a
// `Posted` is used by one thread at a time (inside the rank 0 engine's
// mutex, or on a worker's MPI thread), as `Sched` itself.
unsafe impl Send for Posted {}

/// The byte length of a received message.
fn count(status: &Status) -> usize {
    use mpi::datatype::Equivalence;
    usize::try_from(status.count(u8::equivalent_datatype()))
        .unwrap_or(0)
        .min(SMALL)
}
