//! The MPI thread. With Open MPI a communicator is not `Send`: this thread
//! initialises MPI, serves as a worker or runs rank 0's scheduler, and
//! finalises MPI when the pool is done; the pool talks to it through a
//! channel. On rank 0 the scheduler and its communicator sit behind one
//! lock, the [`Engine`]: whoever holds it drives MPI. That is the MPI thread,
//! or a caller that waits for a short result (`apply`) and would otherwise
//! pay two cross-thread wake-ups per round trip (MPI is then initialised
//! with `MPI_THREAD_SERIALIZED`, which allows calls from any thread, one at
//! a time).

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use mpi::collective::Root;
use mpi::environment::Threading;
use mpi::point_to_point::Source;
use mpi::topology::{Communicator, Rank, SimpleCommunicator};

use crate::error::MpiError;
use crate::job::{Sink, lock};
use crate::posted::{POLLS_PER_CLOCK, Posted};
pub(crate) use crate::sched::{Chunk, Cmd, DEPTH};
use crate::sched::{Drive, Estimates, Sched};
use crate::{task, wire, worker};

/// How the worker processes come to be.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Launch {
    /// `mpirun -n N prog`: ranks ≥ 1 are the workers.
    Static,
    /// `MPI_Comm_spawn` of this executable, this many times.
    Spawn(usize),
}

/// The argument that marks a spawned worker (followed by its local process
/// count).
pub(crate) const WORKER_ARG: &str = "--mproc-mpi-worker=";

/// Rank 0's scheduler and communicator, and who drives them.
pub(crate) struct Engine {
    /// The scheduler; `None` once the MPI thread has stopped the workers
    /// (before it finalises MPI).
    sched: Mutex<Option<Box<dyn Drive>>>,
    /// Callers driving MPI for their own result (`Master::submit_waiting`).
    /// While there are any, the MPI thread sleeps until a command comes: a
    /// third thread polling beside the caller and the worker would take a
    /// core from one of them on a small machine. The last caller to stop
    /// wakes it if work is still out.
    drivers: AtomicUsize,
}

impl Engine {
    fn new(sched: Box<dyn Drive>) -> Self {
        Self {
            sched: Mutex::new(Some(sched)),
            drivers: AtomicUsize::new(0),
        }
    }
}

/// How long a caller waiting for its own chunk drives MPI before it hands
/// over to the MPI thread and sleeps (a round trip here is a few µs; a
/// longer task is not worth a core of rank 0's host).
const DRIVE: Duration = Duration::from_micros(50);

/// Rank 0's handle on the MPI thread.
pub(crate) struct Master {
    tx: Mutex<Option<Sender<Cmd>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    engine: Arc<Engine>,
    /// Whether threads other than the MPI thread may drive MPI (MPI gave
    /// `MPI_THREAD_SERIALIZED`).
    shared: bool,
    pub(crate) workers: usize,
    /// The largest local process count of a worker rank.
    pub(crate) local: usize,
    pub(crate) est: Arc<Estimates>,
}

impl Master {
    /// Sends a command; `false` if the MPI thread is gone.
    pub(crate) fn send(&self, cmd: Cmd) -> bool {
        lock(&self.tx)
            .as_ref()
            .is_some_and(|tx| tx.send(cmd).is_ok())
    }

    /// Waits until the MPI thread has finished (MPI finalised).
    pub(crate) fn join(&self) {
        // Dropping the sender ends the thread's wait once it is idle.
        lock(&self.tx).take();
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
        // No more messages: the kept buffers go back to the allocator.
        crate::buf::release();
    }

    pub(crate) fn finished(&self) -> bool {
        lock(&self.thread).as_ref().is_none_or(|t| t.is_finished())
    }

    /// Submits `chunk` for a caller that waits for it at once (`apply`):
    /// unless another thread is driving MPI, the caller sends it and polls
    /// for its result itself for up to [`DRIVE`], then leaves the rest to
    /// the MPI thread. `false` if the pool is gone.
    pub(crate) fn submit_waiting(&self, chunk: Chunk, sink: &Sink) -> bool {
        let mut chunk = Some(chunk);
        if self.shared {
            if let Ok(mut g) = self.engine.sched.try_lock() {
                match g.as_mut() {
                    Some(d) => {
                        // Registered before the chunk is out, so the MPI
                        // thread does not start polling for its result.
                        self.engine.drivers.fetch_add(1, Ordering::SeqCst);
                        d.send_now(chunk.take().expect("not sent yet"));
                    }
                    None => return false,
                }
            }
        }
        if let Some(chunk) = chunk {
            return self.send(Cmd::Submit(vec![chunk]));
        }
        let t0 = Instant::now();
        let mut gone = false;
        let mut polls = 0u32;
        while sink.delivered() == 0 {
            polls = polls.wrapping_add(1);
            if polls % POLLS_PER_CLOCK == 0 && t0.elapsed() >= DRIVE {
                break;
            }
            // Another thread holding the lock is driving: just watch.
            if let Ok(mut g) = self.engine.sched.try_lock() {
                match g.as_mut() {
                    Some(d) => {
                        d.step(&self.est);
                    }
                    None => {
                        gone = true;
                        break;
                    }
                }
            }
            std::hint::spin_loop();
        }
        // SeqCst, as the MPI thread's load: either it sees no driver left,
        // or this thread sees what is out (below) and wakes it.
        let last = self.engine.drivers.fetch_sub(1, Ordering::SeqCst) == 1;
        if gone {
            return sink.delivered() > 0;
        }
        // Work still out (this result after `DRIVE`, or other callers'
        // chunks): the MPI thread, asleep while this one drove, takes over.
        let out = sink.delivered() == 0
            || (last
                && match self.engine.sched.try_lock() {
                    Ok(g) => g.as_ref().is_some_and(|d| !d.idle()),
                    // The MPI thread holds it: it may have read the count
                    // before this thread's decrement, so it is woken anyway.
                    Err(_) => true,
                });
        if out {
            return self.send(Cmd::Wake) || sink.delivered() > 0;
        }
        true
    }
}

enum Ready {
    Master {
        workers: usize,
        local: usize,
        engine: Arc<Engine>,
        shared: bool,
    },
    Worker,
}

static USED: AtomicBool = AtomicBool::new(false);

thread_local! {
    static MPI_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Starts MPI on its own thread. On rank 0 (or in a process that spawned
/// its workers) returns the handle; on a static worker rank, serves until
/// the pool closes and then exits the process.
pub(crate) fn start(launch: Launch, local: usize) -> Result<Master, MpiError> {
    if USED.swap(true, Ordering::SeqCst) || mpi::environment::is_initialized() {
        return Err(MpiError::AlreadyInitialized);
    }
    let (ready_tx, ready_rx) = mpsc::channel();
    let (cmd_tx, cmd_rx) = mpsc::channel();
    let est = Arc::new(Estimates::default());
    let est2 = est.clone();
    let thread = thread::Builder::new()
        .name("mproc-mpi".into())
        .spawn(move || mpi_thread(launch, local, ready_tx, cmd_rx, est2))
        .map_err(|e| MpiError::Thread(e.to_string()))?;
    match ready_rx.recv() {
        Ok(Ok(Ready::Master {
            workers,
            local,
            engine,
            shared,
        })) => Ok(Master {
            tx: Mutex::new(Some(cmd_tx)),
            thread: Mutex::new(Some(thread)),
            engine,
            shared,
            workers,
            local,
            est,
        }),
        Ok(Ok(Ready::Worker)) => {
            let _ = thread.join();
            std::process::exit(0)
        }
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => {
            let _ = thread.join();
            Err(MpiError::Thread(
                "the MPI thread ended during start-up".into(),
            ))
        }
    }
}

type ReadyTx = Sender<Result<Ready, MpiError>>;

fn mpi_thread(
    launch: Launch,
    local: usize,
    ready: ReadyTx,
    rx: Receiver<Cmd>,
    est: Arc<Estimates>,
) {
    MPI_THREAD.with(|t| t.set(true));
    // Serialized lets a waiting caller on rank 0 drive MPI itself (under the
    // engine's lock); Funneled is enough for everything else.
    let Some((universe, level)) = mpi::initialize_with_threading(Threading::Serialized) else {
        let _ = ready.send(Err(MpiError::Init("MPI_Init_thread failed".into())));
        return;
    };
    if level < Threading::Funneled {
        let _ = ready.send(Err(MpiError::Init(format!(
            "MPI gave threading level {level:?}, the pool needs Funneled"
        ))));
        return;
    }
    install_panic_hook();
    let world = universe.world();
    match launch {
        Launch::Static => {
            if world.size() < 2 {
                let _ = ready.send(Err(MpiError::NoWorkers));
                return;
            }
            if world.rank() != 0 {
                let _ = ready.send(Ok(Ready::Worker));
                worker::serve(&world, 0, local);
                return;
            }
            let workers: Vec<Rank> = (1..world.size()).collect();
            run_master(world, workers, level, ready, rx, &est);
        }
        Launch::Spawn(n) => {
            if n == 0 {
                let _ = ready.send(Err(MpiError::NoWorkers));
                return;
            }
            let exe = match std::env::current_exe() {
                Ok(e) => e,
                Err(e) => {
                    let _ = ready.send(Err(MpiError::Spawn(format!("no current executable: {e}"))));
                    return;
                }
            };
            let mut cmd = Command::new(exe);
            cmd.arg(format!("{WORKER_ARG}{local}"));
            let me = SimpleCommunicator::self_comm();
            let inter = match me.process_at_rank(0).spawn(&cmd, n as Rank) {
                Ok(c) => c,
                Err(e) => {
                    let _ = ready.send(Err(MpiError::Spawn(format!("{e:?}"))));
                    return;
                }
            };
            let workers: Vec<Rank> = (0..n as Rank).collect();
            drop(world);
            run_master(inter, workers, level, ready, rx, &est);
        }
    }
    drop(universe);
}

/// Collects every worker's hello, then schedules until closed.
fn run_master<C: Communicator + 'static>(
    comm: C,
    workers: Vec<Rank>,
    level: Threading,
    ready: ReadyTx,
    rx: Receiver<Cmd>,
    est: &Estimates,
) {
    let mine = task::probe_offset();
    let my_host = mpi::environment::processor_name().unwrap_or_default();
    let mut max_local = 1usize;
    let mut pids = Vec::with_capacity(workers.len());
    for &w in &workers {
        let (msg, _) = comm
            .process_at_rank(w)
            .receive_vec_with_tag::<u8>(wire::TAG_HELLO);
        match wire::parse_hello(&msg) {
            Ok(h) if h.probe == mine => {
                max_local = max_local.max(h.local as usize);
                pids.push((h.host == my_host).then_some(h.pid));
            }
            Ok(h) => {
                eprintln!(
                    "mproc-mpi: worker rank {w} (pid {} on {}) runs a different executable; \
                     every rank must run the same binary (at the same path on every node)",
                    h.pid, h.host
                );
                comm.abort(2);
            }
            Err(e) => {
                eprintln!("mproc-mpi: worker rank {w} sent a bad hello: {e}");
                comm.abort(2);
            }
        }
    }
    let n_workers = workers.len();
    let small = Posted::new(&comm.any_process(), wire::TAG_RESULT_SMALL);
    let sched = Sched::new(comm, small, workers.into_iter().zip(pids).collect());
    let engine = Arc::new(Engine::new(Box::new(sched)));
    let _ = ready.send(Ok(Ready::Master {
        workers: n_workers,
        local: max_local,
        engine: engine.clone(),
        shared: level >= Threading::Serialized,
    }));
    run(&engine, &rx, est);
    // Stop the workers and drop the communicator here, before MPI_Finalize;
    // no caller can reach the engine after this.
    let last = lock(&engine.sched).take();
    if let Some(mut d) = last {
        d.stop();
    }
}

/// The MPI thread's loop on rank 0: takes commands, drives MPI while work
/// is out (polling briefly after activity, then napping), sleeps while
/// there is none, and returns once closed and drained.
fn run(engine: &Engine, rx: &Receiver<Cmd>, est: &Estimates) {
    let mut last_activity = Instant::now();
    let mut last_watch = Instant::now();
    let mut nap = Duration::from_micros(20);
    loop {
        if engine.drivers.load(Ordering::SeqCst) > 0 {
            // A caller drives MPI for its own result: keep out of its way
            // until a command comes (the last such caller sends `Wake` if
            // it leaves work out).
            let cmd = rx.recv().unwrap_or(Cmd::Close);
            lock(&engine.sched)
                .as_mut()
                .expect("the engine lives until this loop ends")
                .on_cmd(cmd);
            last_activity = Instant::now();
            continue;
        }
        let (busy, idle) = {
            let mut g = lock(&engine.sched);
            let d = g.as_mut().expect("the engine lives until this loop ends");
            let mut busy = false;
            loop {
                match rx.try_recv() {
                    Ok(cmd) => {
                        busy = true;
                        d.on_cmd(cmd);
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        d.on_cmd(Cmd::Close);
                        break;
                    }
                }
            }
            busy |= d.step(est);
            if d.finished() {
                return;
            }
            let idle = d.idle();
            if !busy && !idle && last_watch.elapsed() >= WATCH {
                last_watch = Instant::now();
                d.watch();
            }
            (busy, idle)
        };
        if busy {
            last_activity = Instant::now();
            nap = Duration::from_micros(20);
            continue;
        }
        if last_activity.elapsed() < SPIN {
            thread::yield_now();
            continue;
        }
        let cmd = if idle {
            // Nothing can arrive from the workers: sleep until told.
            rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            rx.recv_timeout(nap)
        };
        match cmd {
            Ok(cmd) => {
                lock(&engine.sched)
                    .as_mut()
                    .expect("the engine lives until this loop ends")
                    .on_cmd(cmd);
                last_activity = Instant::now();
            }
            Err(RecvTimeoutError::Timeout) => nap = (nap * 2).min(MAX_NAP),
            Err(RecvTimeoutError::Disconnected) => {
                lock(&engine.sched)
                    .as_mut()
                    .expect("the engine lives until this loop ends")
                    .on_cmd(Cmd::Close);
            }
        }
    }
}

/// How long the MPI thread polls after activity before it naps.
const SPIN: Duration = Duration::from_micros(50);
/// Its longest nap while work is out (a command wakes it at once). Short:
/// a worker whose result is large waits in its send (MPI's rendezvous)
/// until this thread takes it, and a worker with both its chunks done
/// waits for the next; at this period the naps cost rank 0 a few per cent
/// of a core.
const MAX_NAP: Duration = Duration::from_micros(200);
/// How often rank 0 checks that the workers on its host with work out are
/// alive.
const WATCH: Duration = Duration::from_millis(100);

/// Makes a panic outside a task on the MPI thread (a worker rank's loop, or
/// rank 0's scheduler) end the whole job through `MPI_Abort` instead of
/// leaving the other ranks waiting for ever. A task's panic is recorded for
/// its result instead.
fn install_panic_hook() {
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if worker::in_task() {
            let msg = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic with a non-string payload".into());
            let msg = match info.location() {
                Some(l) => format!("{msg} (at {}:{})", l.file(), l.line()),
                None => msg,
            };
            worker::record_panic(msg);
            return;
        }
        prev(info);
        if MPI_THREAD.with(|t| t.get()) && !mpi::environment::is_finalized() {
            eprintln!("mproc-mpi: panic on the MPI thread; aborting the MPI job");
            // SAFETY: MPI is initialised (this thread initialised it) and not
            // finalised; MPI_Abort takes any communicator and never returns.
            unsafe {
                mpi::ffi::MPI_Abort(mpi::ffi::RSMPI_COMM_WORLD, 101);
            }
        }
    }));
}

/// Serves as a spawned worker if this process was started as one by
/// [`Launch::Spawn`] (and then exits); returns at once otherwise.
pub(crate) fn dispatch_spawned() {
    let Some(local) = spawned_marker() else {
        return;
    };
    if std::env::var_os("MPROC_CHILD").is_some() || std::env::var_os("MPROC_FORKSERVER").is_some() {
        return;
    }
    USED.store(true, Ordering::SeqCst);
    MPI_THREAD.with(|t| t.set(true));
    let Some((universe, _)) = mpi::initialize_with_threading(Threading::Funneled) else {
        eprintln!("mproc-mpi: a spawned worker could not initialise MPI");
        std::process::exit(1)
    };
    install_panic_hook();
    let Some(parent) = universe.world().parent() else {
        eprintln!(
            "mproc-mpi: {WORKER_ARG} given but this process has no MPI parent; do not pass it by hand"
        );
        drop(universe);
        std::process::exit(1)
    };
    worker::serve(&parent, 0, local);
    drop(parent);
    drop(universe);
    std::process::exit(0)
}

/// The local process count of a spawned worker, from its last argument.
fn spawned_marker() -> Option<usize> {
    let cmdline = std::fs::read("/proc/self/cmdline").ok()?;
    let last = cmdline.split(|&b| b == 0).rfind(|a| !a.is_empty())?;
    let last = std::str::from_utf8(last).ok()?;
    last.strip_prefix(WORKER_ARG)?.parse().ok()
}
