//! The worker side: the process loop, and the monomorphized functions that
//! run a task's items (reached by reference, see `mproc_fnref`).

use std::borrow::Cow;
use std::cell::RefCell;
use std::os::fd::OwnedFd;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use mproc_pipe::Connection;
use mproc_shm::codec::{Codec, CodecError, Encode};
use mproc_shm::handle::{HandleFd, collect_fds, provide_fds};
use mproc_shm::{HEADER_SIZE, Layout, Segment, SharedSync, fingerprint_of};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::fast_path::{for_each_in_range, is_pod, pod_bytes};
use crate::sys;
use crate::wire::{
    Bytes, FromWorker, Kind, Msg, PANIC_OTHER, PANIC_STR, PANIC_STRING, Panic, Parsed, TaskOut,
    ToWorker, send_header, should_pack, unpack,
};

/// What a worker is doing, in shared memory the parent reads after the
/// worker died: which batch, and which item of it (counted across the
/// batch's tasks). This is how only the item that was running fails.
/// The parent also reads it to pick a worker to split work from, and asks
/// through `split`.
#[repr(C, align(64))]
pub(crate) struct Progress {
    pub(crate) seq: AtomicU64,
    /// The item running; or, with [`BLOCK`] set, the first of a block of
    /// range items running up to `end` (tiny items are not tracked one by
    /// one: a store per item would slow their loop by a tenth).
    pub(crate) item: AtomicU64,
    /// See `item`.
    pub(crate) end: AtomicU64,
    /// The parent asks the worker running batch `split` to give up part of
    /// what is left of that batch's last task, for an idle worker: the
    /// worker answers [`FromWorker::Split`] and stops there, or ignores the
    /// request. 0: no request.
    pub(crate) split: AtomicU64,
    /// With a split request: how long an item of the task takes the idle
    /// worker (nanoseconds, `f64` bits; 0: unknown). The busy worker gives
    /// away the share that makes both finish together (half if unknown).
    pub(crate) peer_ns: AtomicU64,
}

// SAFETY: repr(C), atomics only; all zeros is a valid state ("no batch").
unsafe impl SharedSync for Progress {}

/// How long a block of range items runs between looks at the clock, the
/// time budget and split requests.
const BLOCK_NS: f64 = 30_000.0;

/// Blocks of range items up to this many are tracked item by item.
const EXACT_BLOCK: u64 = 64;

/// Set in `Progress::item` when it names a block of items (see there).
pub(crate) const BLOCK: u64 = 1 << 62;

/// `Progress::item` before the first item of a batch started.
pub(crate) const NOT_STARTED: u64 = u64::MAX;
/// `Progress::item` once every item of the batch ran.
pub(crate) const FINISHED: u64 = u64::MAX - 1;

pub(crate) const PROGRESS_LAYOUT: Layout = Layout {
    kind: mproc_shm::kind::POOL_PROGRESS,
    fingerprint: fingerprint_of::<Progress>("mproc-pool progress v4"),
};

/// Where worker slot `slot`'s progress lives.
pub(crate) fn progress_offset(slot: usize) -> usize {
    HEADER_SIZE + slot * size_of::<Progress>()
}

/// The segment size for `n` worker slots.
pub(crate) fn progress_size(n: usize) -> usize {
    progress_offset(n)
}

/// The initializer a worker runs first.
#[derive(Serialize, Deserialize)]
pub(crate) struct InitSpec {
    pub(crate) entry: i64,
    pub(crate) args: Bytes,
    pub(crate) fds: Vec<HandleFd>,
}

/// The arguments of a worker process (the progress segment comes in the
/// first message, [`ToWorker::Setup`]).
#[derive(Serialize, Deserialize)]
pub(crate) struct WorkerArgs {
    pub(crate) conn: Connection,
    pub(crate) slot: u32,
    pub(crate) init: Option<InitSpec>,
    /// Exit after this many items (`max_tasks_per_child`).
    pub(crate) max_items: Option<u64>,
}

/// One task handed to a [`TaskFn`].
pub(crate) struct TaskIn<'a> {
    pub(crate) kind: Kind,
    pub(crate) count: u64,
    pub(crate) payload: &'a [u8],
    pub(crate) fds: Vec<OwnedFd>,
    pub(crate) progress: &'a AtomicU64,
    /// For the last task of a batch: how to see and answer split requests.
    pub(crate) split: Option<Split<'a>>,
    /// Index of the task's first item within its batch.
    pub(crate) base: u64,
    /// Nanoseconds after which a range task may stop early (0: never).
    pub(crate) budget: u64,
    /// Track every item, however small the blocks.
    pub(crate) careful: bool,
    /// Where a block of range items is published (`Progress::end`).
    pub(crate) end: &'a AtomicU64,
}

/// Split requests for the task running the last part of a batch.
pub(crate) struct Split<'a> {
    /// [`Progress::split`].
    pub(crate) req: &'a AtomicU64,
    /// [`Progress::peer_ns`].
    pub(crate) peer_ns: &'a AtomicU64,
    /// The batch's seq (a request names it).
    pub(crate) seq: u64,
    /// Tells the parent the task stops at item `at` (`false`: could not).
    pub(crate) answer: &'a mut dyn FnMut(u64) -> bool,
}

/// A task's outcome: header, value bytes, descriptors.
pub(crate) type TaskResult = (TaskOut, Vec<u8>, Vec<OwnedFd>);
/// The monomorphized runner of a function's items.
pub(crate) type TaskFn = fn(TaskIn<'_>) -> TaskResult;
/// The monomorphized runner of an initializer.
pub(crate) type InitFn = fn(&[u8], Vec<OwnedFd>) -> Result<(), String>;

thread_local! {
    /// Where the last panic on this thread happened, and its backtrace
    /// (when enabled).
    static PANIC_AT: RefCell<(Option<String>, Option<String>)> = const { RefCell::new((None, None)) };
}

/// A caught panic, with where it happened (see [`install_panic_hook`]).
fn panic_of(payload: &(dyn std::any::Any + Send)) -> Panic {
    let (message, kind) = if let Some(s) = payload.downcast_ref::<&str>() {
        ((*s).to_owned(), PANIC_STR)
    } else if let Some(s) = payload.downcast_ref::<String>() {
        (s.clone(), PANIC_STRING)
    } else {
        ("Box<dyn Any>".to_owned(), PANIC_OTHER)
    };
    let (location, backtrace) = PANIC_AT.with(|p| std::mem::take(&mut *p.borrow_mut()));
    Panic {
        message,
        payload: kind,
        location,
        backtrace,
    }
}

/// A caught panic as one line of text.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    let p = panic_of(payload);
    match p.location {
        Some(at) => format!("{} (at {at})", p.message),
        None => p.message,
    }
}

/// Collects the values a task produces.
struct Sink {
    out: Vec<u8>,
    pod: bool,
    pod_size: usize,
    failures: Vec<(u64, Panic)>,
    encode_failures: Vec<(u64, String)>,
}

impl Sink {
    /// Appends item `k`'s result. Inlined into the item loops (with the
    /// error path out of line): as a call per item it cost a tiny task as
    /// much as the task itself (the seed map ran no faster on two workers
    /// than serially).
    #[inline(always)]
    fn emit<C: Encode<R>, R>(&mut self, k: u64, r: R) {
        if self.pod {
            // SAFETY: `pod` is set only when `R` is a plain number.
            self.out
                .extend_from_slice(unsafe { pod_bytes(std::slice::from_ref(&r)) });
        } else if let Err(e) = C::encode_item(&r, &mut self.out) {
            // `encode_item` left `out` as it was.
            self.encode_failed(k, e);
        }
    }

    #[cold]
    #[inline(never)]
    fn encode_failed(&mut self, k: u64, e: CodecError) {
        self.encode_failures.push((k, e.to_string()));
    }

    fn fail(&mut self, k: u64, panic: Panic) {
        if self.pod {
            // A placeholder keeps plain values at fixed positions.
            self.out.resize(self.out.len() + self.pod_size, 0);
        }
        self.failures.push((k, panic));
    }
}

/// Answers a split request for the task running item `k` of `..end`, if
/// there is one: gives away part of what is left and returns the new end
/// (or `end` unchanged). `my_ns`: this worker's time per item of the task
/// so far (0: unknown).
fn take_split(split: &mut Option<Split<'_>>, k: u64, end: u64, my_ns: f64) -> u64 {
    if let Some(s) = split.as_mut() {
        // Relaxed load: a hint; Acquire on taking the request: pairs with
        // the parent's Release store of it, after `peer_ns`.
        if s.req.load(Ordering::Relaxed) == s.seq
            && s.req
                .compare_exchange(s.seq, 0, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        {
            let peer_ns = f64::from_bits(s.peer_ns.load(Ordering::Relaxed));
            let at = k + split_keep(end - k, my_ns, peer_ns);
            if at > k && at < end && (s.answer)(at) {
                return at;
            }
        }
    }
    end
}

/// How many of `left` items a busy worker keeps when an idle one takes
/// over the rest, so that both finish together: in proportion to their
/// speeds (half when either is unknown; never less than a tenth or more
/// than nine tenths, as speeds measured a moment ago are only a guess).
fn split_keep(left: u64, my_ns: f64, peer_ns: f64) -> u64 {
    let keep = if my_ns > 0.0 && peer_ns > 0.0 && my_ns.is_finite() && peer_ns.is_finite() {
        (peer_ns / (peer_ns + my_ns)).clamp(0.1, 0.9)
    } else {
        0.5
    };
    ((left as f64 * keep) as u64).clamp(1, left.saturating_sub(1).max(1))
}

/// Runs `count` items of `F` in this worker, their arguments decoded and
/// their values encoded with the codec `C`. Monomorphized per function and
/// codec; the parent sends its offset.
pub(crate) fn run_task<C, F, A, R>(inp: TaskIn<'_>) -> TaskResult
where
    C: Codec<A> + Encode<R>,
    F: Fn(A) -> R + Copy,
{
    let t0 = Instant::now();
    // SAFETY: `F` is zero-sized (asserted where its offset was taken, in
    // `Pool`), so it has no bytes and a zeroed value is its one value; it is
    // `Copy`, so conjuring a copy is what copying the parent's would do.
    let f: F = unsafe { std::mem::zeroed() };
    let pod = is_pod::<R>();
    let count = inp.count;
    let mut sink = Sink {
        out: Vec::with_capacity(if pod {
            (count as usize).saturating_mul(size_of::<R>())
        } else {
            0
        }),
        pod,
        pod_size: size_of::<R>(),
        failures: Vec::new(),
        encode_failures: Vec::new(),
    };
    let progress = inp.progress;
    let base = inp.base;
    let payload = inp.payload;
    let budget = inp.budget;
    let careful = inp.careful;
    let end_pg = inp.end;
    let mut split = inp.split;
    let mut cut = None;
    let (res, fds) = provide_fds(inp.fds, || {
        collect_fds(|| -> Result<(), String> {
            let mut k = 0u64;
            match inp.kind {
                Kind::Range => {
                    let start: i128 = postcard::from_bytes(payload)
                        .map_err(|e| format!("bad range task: {e}"))?;
                    // Items run in blocks between looks at the clock: one
                    // item, then blocks of about BLOCK_NS (at most doubling).
                    // Between blocks the worker may stop (time budget spent)
                    // or give half of the rest away (split request).
                    let mut end = count;
                    let mut block = 1u64;
                    while k < end {
                        let e = end.min(k.saturating_add(block));
                        let exact = careful || e - k <= EXACT_BLOCK;
                        let r = panic::catch_unwind(AssertUnwindSafe(|| {
                            // Fresh locals: the loop keeps them in registers
                            // instead of reloading captured ones after each
                            // store.
                            let (b, pg) = (base, progress);
                            if exact {
                                for_each_in_range::<A>(start, k, e, |i, a| {
                                    k = i;
                                    pg.store(b + i, Ordering::Relaxed);
                                    let r = f(a);
                                    sink.emit::<C, R>(i, r);
                                    true
                                })
                            } else {
                                // The block, not each item: `end` first, so
                                // that a reader seeing the new `item` sees it.
                                end_pg.store(b + e, Ordering::Relaxed);
                                pg.store((b + k) | BLOCK, Ordering::Release);
                                for_each_in_range::<A>(start, k, e, |i, a| {
                                    k = i;
                                    let r = f(a);
                                    sink.emit::<C, R>(i, r);
                                    true
                                })
                            }
                        }));
                        match r {
                            Ok(true) => k = e,
                            Ok(false) => {
                                return Err("a range task for a non-integer argument type".into());
                            }
                            Err(p) => {
                                sink.fail(k, panic_of(&*p));
                                k += 1;
                                continue;
                            }
                        }
                        if k >= end {
                            break;
                        }
                        let spent = t0.elapsed().as_nanos() as u64;
                        if budget > 0 && spent >= budget {
                            break;
                        }
                        let per = spent.max(1) as f64 / k as f64;
                        end = take_split(&mut split, k, end, per);
                        let mut next = BLOCK_NS / per;
                        if budget > 0 {
                            next = next.min((budget - spent) as f64 / per);
                        }
                        block = (next as u64).clamp(1, block.saturating_mul(2));
                    }
                }
                Kind::Pod => {
                    let size = size_of::<A>();
                    if !is_pod::<A>() || payload.len() as u64 != count.saturating_mul(size as u64) {
                        return Err("a plain-data task of the wrong size".into());
                    }
                    while k < count {
                        let r = panic::catch_unwind(AssertUnwindSafe(|| {
                            let (b, pg) = (base, progress);
                            while k < count {
                                pg.store(b + k, Ordering::Relaxed);
                                // SAFETY: `k < count`, the payload holds `count`
                                // `A`s (checked above), `A` is a plain number (any
                                // bits valid), and the read is unaligned.
                                let a: A = unsafe {
                                    std::ptr::read_unaligned(
                                        payload.as_ptr().add(k as usize * size).cast::<A>(),
                                    )
                                };
                                let r = f(a);
                                sink.emit::<C, R>(k, r);
                                k += 1;
                            }
                        }));
                        if let Err(p) = r {
                            sink.fail(k, panic_of(&*p));
                            k += 1;
                        }
                    }
                }
                Kind::Seq => {
                    let mut rest = payload;
                    let mut end = count;
                    while k < end {
                        let r = panic::catch_unwind(AssertUnwindSafe(|| -> Result<(), String> {
                            let (b, pg) = (base, progress);
                            while k < end {
                                // Items are worth a message each here: a
                                // split request is looked at before every one.
                                let per = match k {
                                    0 => 0.0,
                                    k => t0.elapsed().as_nanos() as f64 / k as f64,
                                };
                                end = take_split(&mut split, k, end, per);
                                if k >= end {
                                    break;
                                }
                                pg.store(b + k, Ordering::Relaxed);
                                let (a, tail) = C::decode_item(rest)
                                    .map_err(|e| format!("the argument did not decode: {e}"))?;
                                rest = tail;
                                let r = f(a);
                                sink.emit::<C, R>(k, r);
                                k += 1;
                            }
                            Ok(())
                        }));
                        match r {
                            Ok(r) => r?,
                            Err(p) => {
                                sink.fail(k, panic_of(&*p));
                                k += 1;
                            }
                        }
                    }
                }
            }
            if k < count {
                cut = Some(k);
            }
            Ok(())
        })
    });
    let mut out = TaskOut {
        nanos: t0.elapsed().as_nanos() as u64,
        ..TaskOut::default()
    };
    match res {
        Ok(()) => {
            out.failures = sink.failures;
            out.encode_failures = sink.encode_failures;
            out.len = sink.out.len() as u64;
            out.nfds = fds.len() as u32;
            out.cut = cut;
            (out, sink.out, fds)
        }
        Err(e) => {
            out.error = Some(e);
            (out, Vec::new(), Vec::new())
        }
    }
}

/// Runs an initializer `F(A)`.
pub(crate) fn run_init<F, A>(payload: &[u8], fds: Vec<OwnedFd>) -> Result<(), String>
where
    F: Fn(A) + Copy,
    A: DeserializeOwned,
{
    // SAFETY: as in `run_task`: `F` is a zero-sized `Copy` type.
    let f: F = unsafe { std::mem::zeroed() };
    let a: A = mproc_shm::handle::from_bytes_with_fds(payload, fds)
        .map_err(|e| format!("the initializer's arguments did not decode: {e}"))?;
    panic::catch_unwind(AssertUnwindSafe(|| f(a))).map_err(|p| panic_text(&*p))
}

/// The offset of `F`'s task runner (with the codec `C`) from the code
/// anchor: what a worker is told to run for a task of `F` (see
/// `mproc_fnref`).
pub(crate) fn entry_of<C, F, A, R>() -> i64
where
    C: Codec<A> + Encode<R>,
    F: Fn(A) -> R + Copy + Send + 'static,
{
    mproc_fnref::assert_zst::<F>();
    let f: TaskFn = run_task::<C, F, A, R>;
    mproc_fnref::offset_of(f as *const ())
}

/// [`entry_of`] for an initializer `F`.
pub(crate) fn init_entry<F, A>() -> i64
where
    F: Fn(A) + Copy + Send + 'static,
    A: DeserializeOwned,
{
    mproc_fnref::assert_zst::<F>();
    let run: InitFn = run_init::<F, A>;
    mproc_fnref::offset_of(run as *const ())
}

fn install_panic_hook() {
    panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
        // Captured only where RUST_BACKTRACE (or RUST_LIB_BACKTRACE) asks.
        let bt = std::backtrace::Backtrace::capture();
        let bt = (bt.status() == std::backtrace::BacktraceStatus::Captured).then(|| bt.to_string());
        PANIC_AT.with(|p| *p.borrow_mut() = (at, bt));
    }));
}

/// Resolves a code offset sent by the parent.
///
/// # Safety
/// `entry` must be an offset the parent took of a `T`-typed function.
unsafe fn resolve<T: Copy>(entry: i64) -> T {
    debug_assert_eq!(size_of::<T>(), size_of::<*const ()>());
    // mproc-process checked that this worker runs the parent's executable (or
    // forked it), so the offset names the same function here.
    // SAFETY: by the caller's contract that function has type `T`, a fn pointer type.
    unsafe {
        let p = mproc_fnref::address_at(entry);
        std::mem::transmute_copy::<*const (), T>(&p)
    }
}

/// The worker process: runs batches until told to exit, its connection
/// closes, or it reached its task budget.
pub(crate) fn worker_main(args: WorkerArgs) {
    sys::ignore_signal(libc::SIGINT);
    install_panic_hook();
    let conn = args.conn;
    let segment = match conn.recv::<Msg>().map(Parsed::<ToWorker>::new) {
        Ok(Ok(mut p)) if matches!(p.header, ToWorker::Setup) => {
            match p.take_fds(1).map(|mut f| f.pop().map(Segment::from_fd)) {
                Ok(Some(Ok(s))) => s,
                _ => std::process::exit(4),
            }
        }
        // The parent is gone before it could say more.
        Err(_) => return,
        Ok(_) => std::process::exit(4),
    };
    let progress = match segment.check_layout(PROGRESS_LAYOUT) {
        Ok([n, ..]) if u64::from(args.slot) < n => segment
            .get::<Progress>(progress_offset(args.slot as usize))
            .ok(),
        _ => None,
    };
    let Some(progress) = progress else {
        let _ = conn.send(FromWorker::InitFailed("bad progress segment".into()));
        std::process::exit(3)
    };
    if let Some(init) = args.init {
        // SAFETY: the parent took this offset of `run_init::<F, A>`, an `InitFn`.
        let run: InitFn = unsafe { resolve(init.entry) };
        let fds = init.fds.into_iter().map(HandleFd::into_inner).collect();
        match run(&init.args.0, fds) {
            Ok(()) => {
                if conn.send_ref(&reply_msg(&FromWorker::Ready)).is_err() {
                    return;
                }
            }
            Err(m) => {
                let _ = conn.send_ref(&reply_msg(&FromWorker::InitFailed(m)));
                std::process::exit(1)
            }
        }
    }
    let mut done = 0u64;
    while let Ok(msg) = conn.recv::<Msg>() {
        let Ok(mut parsed) = Parsed::<ToWorker>::new(msg) else {
            std::process::exit(4)
        };
        let (seq, tasks, packed) = match std::mem::replace(&mut parsed.header, ToWorker::Exit) {
            ToWorker::Exit => return,
            ToWorker::Setup => std::process::exit(4),
            ToWorker::Batch { seq, tasks, packed } => (seq, tasks, packed),
        };
        let packed = match &packed {
            Some(b) => match unpack(&b.0, tasks.iter().map(|t| t.len)) {
                Some(parts) => Some(parts.into_iter()),
                None => std::process::exit(4),
            },
            None => None,
        };
        let mut packed = packed;
        progress.item.store(NOT_STARTED, Ordering::Relaxed);
        // Release: the parent reading `seq` after our death also sees `item`.
        progress.seq.store(seq, Ordering::Release);
        let mut outs = Vec::with_capacity(tasks.len());
        let mut payloads = Vec::with_capacity(tasks.len());
        let mut all_fds = Vec::new();
        let mut base = 0u64;
        let last = tasks.len().saturating_sub(1);
        for (ti, t) in tasks.iter().enumerate() {
            let payload: Cow<'_, [u8]> = if let Some(p) = packed.as_mut() {
                Cow::Borrowed(p.next().unwrap_or_default())
            } else if t.len == 0 {
                Cow::Borrowed(&[])
            } else {
                match conn.recv_bytes() {
                    Ok(b) if b.len() as u64 == t.len => Cow::Owned(b),
                    // The parent is gone (or broke the protocol): stop.
                    _ => return,
                }
            };
            let Ok(fds) = parsed.take_fds(t.nfds) else {
                std::process::exit(4)
            };
            let payload = &payload[..];
            // SAFETY: the parent took this offset of `run_task::<C, F, A, R>`, a `TaskFn`.
            let run: TaskFn = unsafe { resolve(t.entry) };
            let mut answer =
                |at: u64| send_header(&conn, &FromWorker::Split { seq, at }, Vec::new()).is_ok();
            let (out, bytes, rfds) = run(TaskIn {
                kind: t.kind,
                count: t.count,
                payload,
                fds,
                progress: &progress.item,
                end: &progress.end,
                careful: t.careful,
                split: (ti == last).then_some(Split {
                    req: &progress.split,
                    peer_ns: &progress.peer_ns,
                    seq,
                    answer: &mut answer,
                }),
                base,
                budget: t.budget,
            });
            base += t.count;
            outs.push(out);
            payloads.push(bytes);
            all_fds.extend(rfds);
        }
        progress.item.store(FINISHED, Ordering::Relaxed);
        if should_pack(outs.iter().map(|o| o.len)) {
            let packed = Some(Bytes(payloads.concat()));
            let r = FromWorker::Results {
                seq,
                tasks: outs,
                packed,
            };
            if send_header(&conn, &r, all_fds).is_err() {
                return;
            }
        } else {
            let r = FromWorker::Results {
                seq,
                tasks: outs,
                packed: None,
            };
            if send_header(&conn, &r, all_fds).is_err() {
                return;
            }
            for p in payloads.iter().filter(|p| !p.is_empty()) {
                if conn.send_bytes(p).is_err() {
                    return;
                }
            }
        }
        done += base;
        if args.max_items.is_some_and(|m| done >= m) {
            return;
        }
    }
}

fn reply_msg(r: &FromWorker) -> Msg {
    let body = postcard::to_stdvec(r).unwrap_or_default();
    Msg {
        body: Bytes(body),
        fds: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::split_keep;

    #[test]
    fn a_split_keeps_the_share_that_finishes_together() {
        // Same pace, or a pace unknown: half.
        assert_eq!(split_keep(100, 1.0, 1.0), 50);
        assert_eq!(split_keep(100, 1.0, 0.0), 50);
        assert_eq!(split_keep(100, 0.0, 3.0), 50);
        assert_eq!(split_keep(100, f64::NAN, 1.0), 50);
        // The busy worker is twice as slow: it keeps a third.
        assert_eq!(split_keep(90, 2.0, 1.0), 30);
        // Twice as fast: two thirds.
        assert_eq!(split_keep(90, 1.0, 2.0), 60);
        // Never below a tenth or above nine tenths.
        assert_eq!(split_keep(100, 100.0, 1.0), 10);
        assert_eq!(split_keep(100, 1.0, 100.0), 90);
        // At least one item stays, and one goes (when there are two).
        assert_eq!(split_keep(2, 100.0, 1.0), 1);
        assert_eq!(split_keep(2, 1.0, 100.0), 1);
        assert_eq!(split_keep(1, 1.0, 1.0), 1);
    }
}
