//! The worker side: ranks ≥ 1 of a static job, and spawned workers (which
//! are dispatched before `main`, like mproc's children).

use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::time::{Duration, Instant};

use mpi::datatype::Equivalence;
use mpi::point_to_point::{Destination, Source};
use mpi::topology::{Communicator, Rank};
use mproc_pool::__private::{ByteBlock, as_codec};
use mproc_pool::Pool;
use mproc_shm::codec::Codec;

use crate::decode::{Out, encode_values, is_unit, items_of, units, write_results};
use crate::posted::{self, Posted};
use crate::task;
use crate::wire::{self, Input};

/// What a worker rank runs its chunks with.
pub(crate) struct WorkerCtx {
    /// The local pool of a hybrid worker rank (`local_processes(k)`, k > 1),
    /// seen in each chunk's codec ([`as_codec`]).
    local: Option<Pool>,
}

/// A task's entry point in a worker: runs one chunk and appends its
/// encoded outcome to the reply (a result header), or says why the whole
/// chunk failed.
pub(crate) type RunFn = fn(&WorkerCtx, Input<'_>, Vec<u8>) -> Result<Vec<u8>, String>;

/// The entry of task `F` whose items and results travel in the codec `C`
/// (reached by reference on the worker ranks).
pub(crate) fn entry_of<C, F, A, R>() -> i64
where
    C: Codec<A> + Codec<R>,
    F: Fn(A) -> R + Copy + Send + 'static,
    R: Send + 'static,
{
    task::assert_zst::<F>();
    let f: RunFn = run_chunk::<C, F, A, R>;
    task::offset_of(f as *const ())
}

thread_local! {
    /// Set while a task runs under `catch_unwind`: the panic hook records
    /// the message instead of aborting the job.
    static IN_TASK: Cell<bool> = const { Cell::new(false) };
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Whether the current thread is running a task (for the panic hook).
pub(crate) fn in_task() -> bool {
    IN_TASK.with(Cell::get)
}

/// Records a task's panic message (from the panic hook).
pub(crate) fn record_panic(msg: String) {
    LAST_PANIC.with(|p| *p.borrow_mut() = Some(msg));
}

/// The message of a caught panic (the hook recorded it with its location).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    LAST_PANIC
        .with(|p| p.borrow_mut().take())
        .unwrap_or_else(|| {
            payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic with a non-string payload".to_string())
        })
}

/// Runs `step(from)` (which runs items from position `from` on, setting
/// `cur` before each) until it completes; a panic fails item `cur`, and the
/// run goes on after it. One `catch_unwind` per chunk, not per item.
fn run_guarded(failures: &mut Vec<(u64, String)>, mut step: impl FnMut(u64, &mut u64)) {
    IN_TASK.with(|t| t.set(true));
    let mut from = 0u64;
    loop {
        let mut cur = from;
        match panic::catch_unwind(AssertUnwindSafe(|| step(from, &mut cur))) {
            Ok(()) => break,
            Err(payload) => {
                failures.push((cur, panic_message(&*payload)));
                from = cur + 1;
            }
        }
    }
    IN_TASK.with(|t| t.set(false));
}

/// Runs a chunk of `F`, its items and values in the codec `C` (the
/// monomorphized entry a task message names).
fn run_chunk<C, F, A, R>(
    ctx: &WorkerCtx,
    input: Input<'_>,
    reply: Vec<u8>,
) -> Result<Vec<u8>, String>
where
    C: Codec<A> + Codec<R>,
    F: Fn(A) -> R + Copy + Send + 'static,
    R: Send + 'static,
{
    // SAFETY: `entry_of` asserted that `F` is zero-sized; it is `Copy`.
    let f: F = unsafe { task::conjure() };
    let out: Out<R> = match input {
        Input::Items(_) | Input::Plain(_) => {
            let items: Vec<A> = items_of::<C, A>(&input)?;
            match &ctx.local {
                Some(pool) if items.len() > 1 => {
                    let mut out: Out<R> = (Vec::with_capacity(items.len()), Vec::new());
                    let results = as_codec::<_, C>(pool)
                        .imap(f, items)
                        .map_err(|e| e.to_string())?;
                    for (k, r) in results.enumerate() {
                        match r {
                            Ok(v) => out.0.push(v),
                            Err(e) => out.1.push((k as u64, local_error(&e))),
                        }
                    }
                    out
                }
                _ => {
                    let mut values = Vec::with_capacity(items.len());
                    let mut failures = Vec::new();
                    let mut it = items.into_iter();
                    run_guarded(&mut failures, |from, cur| {
                        *cur = from;
                        for a in it.by_ref() {
                            values.push(f(a));
                            *cur += 1;
                        }
                    });
                    (values, failures)
                }
            }
        }
        Input::Range { start, len } => match &ctx.local {
            Some(pool) if len > 1 => {
                let parts = (pool.processes() as u64 * 4).min(len);
                let pieces: Vec<(i128, u64)> = (0..parts)
                    .map(|i| {
                        let a = len * i / parts;
                        let b = len * (i + 1) / parts;
                        (start + a as i128, b - a)
                    })
                    .collect();
                // Each piece comes back with its values encoded as the
                // reply holds them: the rank only copies them in.
                let piece = |p: (i128, u64)| run_range_encoded::<C, F, A, R>(p);
                let mut values = 0usize;
                let mut encoded = Vec::with_capacity(pieces.len());
                let mut failures = Vec::new();
                let mut base = 0u64;
                for (result, (_, n)) in pool
                    .map(piece, pieces.clone())
                    .map_err(|e| e.to_string())?
                    .into_iter()
                    .zip(pieces)
                {
                    let (k, bytes, failed) = result?;
                    values += k;
                    encoded.push(bytes.0);
                    failures.extend(failed.into_iter().map(|(k, m)| (base + k, m)));
                    base += n;
                }
                let mut reply = reply;
                reply.reserve(encoded.iter().map(Vec::len).sum::<usize>() + 8);
                return write_results::<R>(reply, values, &failures, |m| {
                    encoded.iter().for_each(|b| m.extend_from_slice(b));
                    Ok(())
                });
            }
            _ => run_range::<F, A, R>((start, len))?,
        },
    };
    let mut reply = reply;
    // Room for the values' bytes (their size in memory, a guess for an
    // encoding's) and the failures' length, if the guess above was short.
    reply.reserve(size_of_val(&out.0[..]) + 8);
    write_results::<R>(reply, out.0.len(), &out.1, |m| {
        encode_values::<C, R>(&out.0, m)
    })
}

/// A piece of a range chunk, run in a process of a hybrid rank's local
/// pool: how many items succeeded, their values as a reply holds them, and
/// the failures.
type Piece = (usize, ByteBlock, Vec<(u64, String)>);

/// [`run_range`] in a process of a hybrid rank's local pool, its values
/// encoded there in the codec `C` ([`encode_values`]).
fn run_range_encoded<C, F, A, R>(piece: (i128, u64)) -> Result<Piece, String>
where
    C: Codec<R>,
    F: Fn(A) -> R + Copy + Send + 'static,
    R: Send + 'static,
{
    let (values, failures) = run_range::<F, A, R>(piece)?;
    let mut bytes = Vec::with_capacity(size_of_val(&values[..]));
    encode_values::<C, R>(&values, &mut bytes)?;
    Ok((values.len(), ByteBlock(bytes), failures))
}

/// A local worker's error as the message rank 0 reports.
fn local_error(e: &mproc_pool::TaskError) -> String {
    match e {
        mproc_pool::TaskError::Panicked { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// Runs `f` over `len` integers from `start` (in the worker rank, or in a
/// process of its local pool, by reference too: see [`run_range_encoded`]).
fn run_range<F, A, R>((start, len): (i128, u64)) -> Result<Out<R>, String>
where
    F: Fn(A) -> R + Copy + Send + 'static,
    R: Send + 'static,
{
    // SAFETY: `entry_of::<C, F, ..>` asserted that `F` is zero-sized.
    let f: F = unsafe { task::conjure() };
    let mut failures = Vec::new();
    let mut is_int = true;
    if is_unit::<R>() {
        // `()` results: nothing to keep but how many succeeded, which is
        // every item that did not fail. (A push per item kept the Vec's
        // length in memory, reloaded after each call of `f`: that doubled
        // the cost of a cheap function's loop.)
        run_guarded(&mut failures, |from, cur| {
            is_int = mproc_pool::__private::for_each_in_range::<A>(start, from, len, |k, a| {
                *cur = k;
                f(a);
                true
            });
        });
        let ok = len - failures.len() as u64;
        return if is_int {
            Ok((units::<R>(ok), failures))
        } else {
            Err("a range chunk for a task whose argument is not an integer".to_string())
        };
    }
    let mut values = Vec::with_capacity(len.min(1 << 20) as usize);
    run_guarded(&mut failures, |from, cur| {
        is_int = mproc_pool::__private::for_each_in_range::<A>(start, from, len, |k, a| {
            *cur = k;
            values.push(f(a));
            true
        });
    });
    if is_int {
        Ok((values, failures))
    } else {
        Err("a range chunk for a task whose argument is not an integer".to_string())
    }
}

/// How long an idle worker polls without giving up its CPU: about the time
/// rank 0 takes to send the next task after a result (a `sched_yield`
/// between polls would add its own cost to every round trip).
const HOT: Duration = Duration::from_micros(50);
/// How long an idle worker keeps polling (yielding between polls) before it
/// starts to sleep.
const SPIN: Duration = Duration::from_micros(200);
/// The largest receive buffer a worker keeps between tasks (one large
/// chunk must not pin its memory for the rest of the job).
const KEEP_BUF: usize = 1 << 24;
/// The longest sleep between polls of an idle worker.
const MAX_NAP: Duration = Duration::from_millis(1);

/// Serves rank `master` of `comm` until it sends STOP. Never busy-waits for
/// long: an idle worker polls for [`HOT`], then yields between polls until
/// [`SPIN`], then sleeps in growing naps.
pub(crate) fn serve<C: Communicator>(comm: &C, master: Rank, local: usize) {
    let ctx = WorkerCtx {
        local: if local > 1 {
            match Pool::new(local) {
                Ok(p) => Some(p),
                Err(e) => {
                    eprintln!(
                        "mproc-mpi: worker rank could not start its local pool ({e}); running chunks in the rank"
                    );
                    None
                }
            }
        } else {
            None
        },
    };
    let host = mpi::environment::processor_name().unwrap_or_default();
    let hello = wire::Hello {
        probe: task::probe_offset(),
        local: ctx.local.as_ref().map_or(1, |p| p.processes() as u32),
        pid: std::process::id(),
        host,
    };
    let peer = comm.process_at_rank(master);
    peer.send_with_tag(&wire::hello(&hello)[..], wire::TAG_HELLO);
    // Runs a task and sends its reply (small ones to rank 0's posted
    // receive).
    let answer = |task: &[u8]| {
        let reply = run_message(&ctx, task);
        let tag = if reply.len() <= posted::SMALL {
            wire::TAG_RESULT_SMALL
        } else {
            wire::TAG_RESULT
        };
        peer.send_with_tag(&reply[..], tag);
        crate::buf::recycle(reply);
    };
    let mut small = Posted::new(&peer, wire::TAG_TASK_SMALL);
    let mut msg: Vec<u8> = Vec::new();
    let mut idle_since = Instant::now();
    let mut nap = Duration::from_micros(20);
    let mut polls = 0u32;
    loop {
        if let Some((task, _)) = small.take(&peer) {
            answer(&task);
            idle_since = Instant::now();
            nap = Duration::from_micros(20);
            continue;
        }
        // Everything else (large tasks, stop, echo) every few polls.
        polls = polls.wrapping_add(1);
        let probed = if polls % posted::PROBE_EVERY == 0 {
            peer.immediate_matched_probe()
        } else {
            None
        };
        let Some((message, probed)) = probed else {
            // The clock every few polls only: reading it is a fair part of
            // a poll, and so of the delay before a task is seen.
            if polls % posted::POLLS_PER_CLOCK != 0 {
                std::hint::spin_loop();
                continue;
            }
            let idle = idle_since.elapsed();
            if idle < HOT {
                std::hint::spin_loop();
            } else if idle < SPIN {
                std::thread::yield_now();
            } else {
                std::thread::sleep(nap);
                nap = (nap * 2).min(MAX_NAP);
            }
            continue;
        };
        // Into a buffer kept across messages: no allocation per task.
        let len = usize::try_from(probed.count(u8::equivalent_datatype())).unwrap_or(0);
        msg.resize(len, 0);
        let status = message.matched_receive_into(&mut msg[..]);
        match status.tag() {
            wire::TAG_STOP => break,
            wire::TAG_ECHO => {
                // Plain blocking MPI, as a raw rsmpi program would do it.
                let rounds = msg
                    .get(..8)
                    .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
                for _ in 0..rounds {
                    let (x, _) = peer.receive_with_tag::<u64>(wire::TAG_ECHO);
                    peer.send_with_tag(&x, wire::TAG_ECHO);
                }
            }
            // A small task only if it came before the receive was posted.
            wire::TAG_TASK | wire::TAG_TASK_SMALL => answer(&msg),
            t => eprintln!("mproc-mpi: worker ignored a message with unknown tag {t}"),
        }
        if msg.capacity() > KEEP_BUF {
            msg = Vec::new();
        }
        idle_since = Instant::now();
        nap = Duration::from_micros(20);
    }
    // Rank 0 sends STOP once every result is in: no task can come.
    small.cancel();
    drop(ctx);
    crate::buf::release();
}

/// Runs a task message; returns the result message.
fn run_message(ctx: &WorkerCtx, msg: &[u8]) -> Vec<u8> {
    let t0 = Instant::now();
    let (id, entry, input) = match wire::parse_task(msg) {
        Ok(t) => t,
        Err(e) => return wire::result(0, 0, 0, Err(&e)),
    };
    // The reply's room: about the input's size for items (a guess), and
    // a little more, so that one small result needs no second allocation.
    let (items, room) = match input {
        Input::Items(b) | Input::Plain(b) => (0, b.len() + 64),
        Input::Range { len, .. } => (len, 64),
    };
    // SAFETY: rank 0 made `entry` with `entry_of` (a `RunFn`) in the same
    // executable: the hello handshake compared `task::probe_offset` on both
    // sides, and rank 0 sends no task to a worker whose offset differs.
    let run: RunFn = unsafe { std::mem::transmute::<*const (), RunFn>(task::address_at(entry)) };
    let out = run(ctx, input, wire::result_header(id, items, false, room));
    let ns = t0.elapsed().as_nanos() as u64;
    match out {
        // The item count of an items chunk is in its payload; rank 0 knows it.
        Ok(mut reply) => {
            wire::set_result_ns(&mut reply, ns);
            reply
        }
        Err(e) => wire::result(id, ns, items, Err(&e)),
    }
}
