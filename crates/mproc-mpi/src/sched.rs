//! Rank 0's scheduler: hands chunks to workers (at most [`DEPTH`] each,
//! the least loaded first), takes their results, completes the sends, and
//! watches the workers on this host. The MPI thread or a driving caller
//! runs it through [`Drive`], behind the engine's lock (see `comm`).

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mpi::datatype::Equivalence;
use mpi::point_to_point::{Destination, Source};
use mpi::topology::{Communicator, Rank};
use mproc_pool::TaskError;

use crate::decode::Bytes;
use crate::job::{Sink, lock};
use crate::lent::Lent;
use crate::posted::{self, PROBE_EVERY, Posted};
use crate::wire;

/// A chunk on its way to a worker rank.
pub(crate) struct Chunk {
    /// The task message (its id is written when it is sent).
    pub(crate) msg: Vec<u8>,
    pub(crate) sink: Arc<Sink>,
    /// Its position in its operation.
    pub(crate) seq: usize,
    pub(crate) entry: i64,
    pub(crate) items: usize,
}

pub(crate) enum Cmd {
    Submit(Vec<Chunk>),
    /// Run what is queued, then stop the workers and finalise.
    Close,
    /// Drop what is queued (those results fail with `Cancelled`), then as
    /// `Close`.
    Terminate,
    /// Once the pool is idle, time this many raw 8-byte MPI round trips
    /// with the first worker (after 200 unmeasured ones); reply with the
    /// whole duration.
    Echo(u64, Sender<Duration>),
    /// A caller that drove MPI stopped with work out: take over.
    Wake,
}

/// A cheap hash for integer keys made by this process (chunk ids, task
/// entry offsets): these maps are on `apply`'s round trip, where SipHash
/// (made for keys an adversary picks) costs more than it buys. A multiply
/// and two folds, so sequential ids and 16-byte-aligned offsets spread over
/// both the low bits (the bucket) and the high bits (the tag).
#[derive(Default)]
pub(crate) struct Ident(u64);

impl std::hash::Hasher for Ident {
    fn finish(&self) -> u64 {
        let x = (self.0 ^ (self.0 >> 29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        x ^ (x >> 32)
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not reached for integer keys; a plain fold for anything else.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    fn write_i64(&mut self, n: i64) {
        self.0 = n as u64;
    }
}

/// A map keyed by chunk id or task entry.
pub(crate) type IdMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<Ident>>;

/// Measured time per item, per task function.
#[derive(Default)]
pub(crate) struct Estimates(Mutex<IdMap<i64, (f64, f64)>>);

impl Estimates {
    /// Adds a chunk's measurement: a moving average of the time per item,
    /// weighted by items, that forgets old chunks (a chunk slowed down by
    /// preemption must not shrink the chunks for the rest of the run).
    pub(crate) fn add(&self, entry: i64, ns: u64, items: usize) {
        if items == 0 {
            return;
        }
        let mut m = lock(&self.0);
        let e = m.entry(entry).or_insert((0.0, 0.0));
        let (ns, items) = (ns as f64, items as f64);
        // Keep the weight of the past at most 4 chunks' worth of this one.
        let keep = (4.0 * items / e.1.max(items)).min(1.0);
        e.0 = e.0 * keep + ns;
        e.1 = e.1 * keep + items;
    }

    /// Nanoseconds per item, once something was measured.
    pub(crate) fn get(&self, entry: i64) -> Option<f64> {
        lock(&self.0)
            .get(&entry)
            .filter(|e| e.1 > 0.0)
            .map(|e| e.0 / e.1)
    }
}

/// What rank 0's MPI work looks like from outside, so the engine does not
/// depend on the communicator's type (a world or a spawn's
/// inter-communicator).
pub(crate) trait Drive: Send {
    fn on_cmd(&mut self, cmd: Cmd);
    /// Queues one chunk (`Cmd::Submit` without its `Vec`) and hands out
    /// what is queued, without looking for results first (a caller about to
    /// wait for this chunk's: the probe would only delay its send).
    fn send_now(&mut self, chunk: Chunk);
    /// Takes results, hands out queued chunks, completes sends, answers an
    /// echo once idle; whether anything happened.
    fn step(&mut self, est: &Estimates) -> bool;
    /// Nothing queued and nothing out.
    fn idle(&self) -> bool;
    /// Closed, and everything done.
    fn finished(&self) -> bool;
    /// Ends the job if a worker on this host with work out has died.
    fn watch(&self);
    /// Completes the sends and stops the workers.
    fn stop(&mut self);
}

struct Slot {
    rank: Rank,
    inflight: usize,
    /// The worker's pid if it runs on this host (then rank 0 can see it die).
    pid: Option<u32>,
}

struct Outstanding {
    /// `None` once cancelled: the result is received and dropped.
    sink: Option<Arc<Sink>>,
    seq: usize,
    entry: i64,
    items: usize,
    slot: usize,
}

/// A task message on its way out (`MPI_Isend`): the request and the
/// message lent to it, reused once the send completed.
struct Sending {
    req: mpi::request::Request<'static, [u8], mpi::request::StaticScope>,
    msg: Lent,
}

impl Sending {
    fn start<C: Communicator>(comm: &C, rank: Rank, msg: Vec<u8>) -> Self {
        let msg = Lent::new(msg);
        // SAFETY: only this send reads the message, and it is taken back
        // only after the request completed.
        let bytes = unsafe { msg.bytes() };
        let req = comm.process_at_rank(rank).immediate_send_with_tag(
            mpi::request::StaticScope,
            bytes,
            wire::TAG_TASK,
        );
        Self { req, msg }
    }

    /// Completes the send if it is done (then its buffer is reused).
    fn try_finish(self) -> Option<Self> {
        let Self { req, mut msg } = self;
        match req.test() {
            Ok(_) => {
                // SAFETY: the send completed; no slice of the message is left.
                crate::buf::recycle(unsafe { msg.take_back() });
                None
            }
            Err(req) => Some(Self { req, msg }),
        }
    }

    fn finish(self) {
        let Self { req, mut msg } = self;
        req.wait();
        // SAFETY: as in `try_finish`.
        crate::buf::recycle(unsafe { msg.take_back() });
    }
}

pub(crate) struct Sched<C> {
    comm: C,
    /// The receive posted for small results (from any worker).
    small: Posted,
    /// Steps so far: large results are probed for every
    /// [`PROBE_EVERY`]th only.
    steps: u32,
    workers: Vec<Slot>,
    sending: Vec<Sending>,
    queue: VecDeque<Chunk>,
    out: IdMap<u64, Outstanding>,
    next_id: u64,
    closing: bool,
    echo: Option<(u64, Sender<Duration>)>,
}

// MPI handles (the communicator, the send requests) are plain handles
// valid in every thread of the process; MPI itself only requires that calls
// from different threads do not overlap, unless it runs at
// MPI_THREAD_MULTIPLE. Threads other than the MPI thread take the engine's
// lock only when `Master::shared` says MPI was initialised with
// MPI_THREAD_SERIALIZED or more, and the MPI thread takes the `Sched` out of
// the engine and drops it before it finalises MPI.
// SAFETY: a `Sched` is only ever reached through the `Engine`'s mutex, so
// one thread at a time calls MPI through it (see above).
unsafe impl<C: Communicator> Send for Sched<C> {}

/// Chunks per worker at once: one running and two waiting in its receive
/// queue, so a worker never idles for a round trip, nor while rank 0 waits
/// for a core (with as many busy workers as cores, a waking rank 0 can wait
/// for a scheduler time slice).
pub(crate) const DEPTH: usize = 3;

impl<C: Communicator> Sched<C> {
    /// A scheduler for `workers` (their ranks, and pids where they run on
    /// this host), taking small results through `small`.
    pub(crate) fn new(comm: C, small: Posted, workers: Vec<(Rank, Option<u32>)>) -> Self {
        Self {
            comm,
            small,
            steps: 0,
            sending: Vec::new(),
            workers: workers
                .into_iter()
                .map(|(rank, pid)| Slot {
                    rank,
                    inflight: 0,
                    pid,
                })
                .collect(),
            queue: VecDeque::new(),
            out: IdMap::default(),
            next_id: 1,
            closing: false,
            echo: None,
        }
    }

    fn on_cmd(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Submit(chunks) => self.queue.extend(chunks),
            Cmd::Close => self.closing = true,
            Cmd::Echo(rounds, reply) => self.echo = Some((rounds, reply)),
            Cmd::Wake => {}
            Cmd::Terminate => {
                self.closing = true;
                for c in self.queue.drain(..) {
                    c.sink.deliver(c.seq, Err(TaskError::Cancelled));
                }
                for o in self.out.values_mut() {
                    if let Some(s) = o.sink.take() {
                        s.deliver(o.seq, Err(TaskError::Cancelled));
                    }
                }
            }
        }
    }

    /// Hands queued chunks to free workers (the least loaded first).
    fn dispatch(&mut self) -> bool {
        let mut sent = false;
        for depth in 0..DEPTH {
            for i in 0..self.workers.len() {
                if self.queue.is_empty() {
                    return sent;
                }
                if self.workers[i].inflight != depth {
                    continue;
                }
                let mut c = self.queue.pop_front().expect("checked above");
                let id = self.next_id;
                self.next_id += 1;
                wire::set_id(&mut c.msg, id);
                let msg = std::mem::take(&mut c.msg);
                let rank = self.workers[i].rank;
                if msg.len() <= posted::SMALL {
                    // Small: MPI copies it out at once (the eager protocol),
                    // so a plain send returns without waiting for the
                    // worker, and costs no request to test later; at most
                    // `DEPTH` of them wait per worker, which the eager
                    // buffers hold. The worker's posted receive takes it.
                    self.comm
                        .process_at_rank(rank)
                        .send_with_tag(&msg[..], wire::TAG_TASK_SMALL);
                    crate::buf::recycle(msg);
                } else {
                    // Non-blocking: a large chunk for a busy worker must not
                    // stop this thread from taking the other workers' results.
                    self.sending.push(Sending::start(&self.comm, rank, msg));
                }
                self.workers[i].inflight += 1;
                self.out.insert(
                    id,
                    Outstanding {
                        sink: Some(c.sink),
                        seq: c.seq,
                        entry: c.entry,
                        items: c.items,
                        slot: i,
                    },
                );
                sent = true;
            }
        }
        sent
    }

    /// Raw MPI round trips with the first worker (idle pool only).
    fn echo_rounds(&self, rounds: u64) -> Duration {
        const WARM: u64 = 200;
        let peer = self.comm.process_at_rank(self.workers[0].rank);
        peer.send_with_tag(&(rounds + WARM).to_le_bytes()[..], wire::TAG_ECHO);
        let mut t0 = Instant::now();
        for i in 0..rounds + WARM {
            if i == WARM {
                t0 = Instant::now();
            }
            peer.send_with_tag(&i, wire::TAG_ECHO);
            let _: (u64, _) = peer.receive_with_tag(wire::TAG_ECHO);
        }
        t0.elapsed()
    }

    /// Ends the job if a worker on this host with work out has died: MPI
    /// cannot replace a rank, and the MPI runtime does not always end a job
    /// whose spawned process died (Open MPI 4 leaves the parent waiting).
    fn check_workers(&self) {
        for w in &self.workers {
            let Some(pid) = w.pid else { continue };
            if w.inflight > 0 && !alive(pid) {
                eprintln!(
                    "mproc-mpi: worker rank {} (pid {pid}) died with work out; an MPI job cannot \
                     replace a rank, so the job is aborted",
                    w.rank
                );
                self.comm.abort(1);
            }
        }
    }

    fn on_result(&mut self, from: Rank, msg: Vec<u8>, est: &Estimates) {
        let (id, ns, failure) = match wire::parse_result(&msg) {
            Ok(r) => (r.id, r.ns, r.out.err()),
            Err(e) => {
                eprintln!("mproc-mpi: rank {from} sent a bad result message: {e}");
                return;
            }
        };
        let Some(o) = self.out.remove(&id) else {
            eprintln!("mproc-mpi: rank {from} sent a result for unknown chunk {id}: {failure:?}");
            return;
        };
        self.workers[o.slot].inflight -= 1;
        est.add(o.entry, ns, o.items);
        if let Some(sink) = o.sink {
            let out = match failure {
                None => Ok(Bytes {
                    buf: msg,
                    start: wire::RESULT_HEADER,
                }),
                Some(e) => Err(TaskError::Decode(e)),
            };
            sink.deliver(o.seq, out);
        }
    }
}

impl<C: Communicator> Drive for Sched<C> {
    fn on_cmd(&mut self, cmd: Cmd) {
        Sched::on_cmd(self, cmd);
    }

    fn send_now(&mut self, chunk: Chunk) {
        self.queue.push_back(chunk);
        self.dispatch();
    }

    fn step(&mut self, est: &Estimates) -> bool {
        let mut busy = false;
        while let Some((msg, from)) = self.small.take(&self.comm.any_process()) {
            busy = true;
            self.on_result(from, msg, est);
        }
        self.steps = self.steps.wrapping_add(1);
        // Large results: a probe costs about as much as the test above, and
        // a few polls' delay is nothing beside moving a large result.
        while self.steps % PROBE_EVERY == 0
            && let Some(matched) = self
                .comm
                .any_process()
                .immediate_matched_probe_with_tag(wire::TAG_RESULT)
        {
            busy = true;
            // Into a reused buffer (see `buf`): results of a tiny map are
            // megabytes per chunk.
            let (message, probed) = matched;
            let len = usize::try_from(probed.count(u8::equivalent_datatype())).unwrap_or(0);
            let mut msg = crate::buf::with_len(len);
            let status = message.matched_receive_into(&mut msg[..]);
            self.on_result(status.source_rank(), msg, est);
        }
        busy |= self.dispatch();
        if !self.sending.is_empty() {
            self.sending = std::mem::take(&mut self.sending)
                .into_iter()
                .filter_map(Sending::try_finish)
                .collect();
        }
        if self.idle() {
            if let Some((rounds, reply)) = self.echo.take() {
                let _ = reply.send(self.echo_rounds(rounds));
                busy = true;
            }
        }
        busy
    }

    fn idle(&self) -> bool {
        self.out.is_empty() && self.queue.is_empty()
    }

    fn finished(&self) -> bool {
        self.closing && self.idle() && self.sending.is_empty()
    }

    fn watch(&self) {
        self.check_workers();
    }

    fn stop(&mut self) {
        for s in self.sending.drain(..) {
            s.finish();
        }
        // Every result is in: no small one can come any more.
        self.small.cancel();
        for w in &self.workers {
            self.comm
                .process_at_rank(w.rank)
                .send_with_tag(&[0u8; 0][..], wire::TAG_STOP);
        }
    }
}

/// Whether process `pid` (on this host) is alive: it exists and is not a
/// zombie.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_none_or(|(_, rest)| !rest.starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}
