//! The child side: how a function reaches a child by reference, and how a
//! child process finds out that it is one (before `main`).
//!
//! # Functions by reference
//!
//! A child runs `F: Fn(A) -> R` where `F` is zero-sized (a `fn` item or a
//! non-capturing closure). The parent sends the distance between the
//! monomorphized [`entry::<F, A, R, C>`](entry) and the anchor of
//! [`mproc_fnref`]; the child, which runs the same executable, adds it to its
//! own anchor.
//! Under ASLR the whole image moves as one piece, so the distance holds. The
//! entry conjures the zero-sized `F` (it has no bytes), decodes `A`, calls it
//! and encodes `R`, both with the codec `C`.
//!
//! # Dispatch before `main`
//!
//! A spawned child and the fork server are new executions of the same binary,
//! marked by an environment variable naming an inherited socket. A function in
//! `.init_array` (run by the C runtime before `main`, in every kind of binary:
//! a program, an example, a libtest harness) sees the variable, serves the
//! request and exits, so `main` never runs in a child. [`crate::init`] does the
//! same for platforms without such constructors.

use std::cell::Cell;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicI32, Ordering};

use mproc_shm::codec::{Codec, Encode};
use mproc_shm::codec::{decode_with_fds, encode_with_fds};

use crate::method::StartMethod;
use crate::wire::{self, Request, Tag};
use crate::{state, sys};

/// Names the inherited socket of a spawned child.
pub(crate) const CHILD_ENV: &str = "MPROC_CHILD";
/// Names the inherited control socket of a fork server.
pub(crate) const SERVER_ENV: &str = "MPROC_FORKSERVER";
/// Exit code of a child whose bootstrap failed before it could report.
pub(crate) const BOOTSTRAP_EXIT: i32 = 70;

/// What an entry function returns: the encoded value and its descriptors, or
/// why it could not run.
pub(crate) type EntryResult = Result<(Vec<u8>, Vec<OwnedFd>), String>;
/// The monomorphized function a child calls.
pub(crate) type Entry = fn(&[u8], Vec<OwnedFd>) -> EntryResult;

/// The distance of `e` from the anchor.
pub(crate) fn entry_offset(e: Entry) -> i64 {
    mproc_fnref::offset_of(e as *const ())
}

/// The entry at `offset` from the anchor.
///
/// # Safety
/// `offset` must come from [`entry_offset`] in a process running the same
/// executable (the caller checks the executable identity first).
unsafe fn entry_at(offset: i64) -> Entry {
    // SAFETY: by the caller's contract the offset was made by `entry_offset`
    // in a process running this executable.
    let p = unsafe { mproc_fnref::address_at(offset) };
    // SAFETY: so `p` is the address of an `Entry` function in this very
    // image: the same executable puts every function at the same distance
    // from the anchor.
    unsafe { std::mem::transmute::<*const (), Entry>(p) }
}

/// The entry of a child that runs `F` on `A` and returns `R`, both encoded
/// with `C`.
pub(crate) fn entry<F, A, R, C>(args: &[u8], fds: Vec<OwnedFd>) -> EntryResult
where
    F: Fn(A) -> R + Copy + Send + 'static,
    C: Codec<A> + Encode<R>,
{
    mproc_fnref::assert_zst::<F>();
    let a: A = decode_with_fds(<C as Codec<A>>::decode, args, fds)
        .map_err(|e| format!("failed to decode the process arguments: {e}"))?;
    // SAFETY: `F` is zero-sized (checked at compile time above), so its one value
    // has no bytes, and it is `Copy`: conjuring it is what copying the parent's
    // would have done.
    let f: F = unsafe { std::mem::zeroed() };
    let r = f(a);
    encode_with_fds::<C, R>(&r).map_err(|e| format!("failed to encode the return value: {e}"))
}

/// The text of a panic payload (as std's hook shows a payload without one).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    crate::panic_text(payload)
        .unwrap_or("Box<dyn Any>")
        .to_owned()
}

/// Runs a request in this (new) child process and exits with its code.
///
/// `expected_ppid` is the pid the child's parent had when it was created; a
/// daemon whose parent already changed (it died) exits at once.
///
/// The request is borrowed, not moved: it is large, and moving it would call
/// `memcpy` (a code page a forked child would fault in).
pub(crate) fn run_child(
    req: &mut Request,
    chan: OwnedFd,
    mut fds: Vec<OwnedFd>,
    expected_ppid: i32,
    method: StartMethod,
) -> ! {
    // The parent sentinel follows the argument descriptors.
    let sentinel = if req.parent_sentinel { fds.pop() } else { None };
    state::become_child(req, sentinel);
    if method == StartMethod::Spawn {
        // A Rust `main` would ignore SIGPIPE; a child never reaches `main`.
        // (The fork server ignores it already, and a forked child keeps its
        // parent's dispositions.)
        sys::ignore_signal(libc::SIGPIPE);
    }
    if method != StartMethod::Fork {
        // The fork server ignores SIGINT; a child takes Ctrl-C like any
        // program.
        sys::default_signal(libc::SIGINT);
    }
    if req.daemon {
        // Dies with its parent: the kernel sends SIGKILL when the parent
        // (thread) exits. If it exited before the signal was set up, our
        // parent pid changed: die the same way, so that how a daemon ends
        // does not depend on which of the two came first.
        if sys::set_parent_death_signal().is_err() {
            sys::exit_now(1);
        }
        if sys::getppid() != expected_ppid {
            sys::kill_self();
        }
    }
    if method != StartMethod::ForkServer {
        // The fork server installed it before forking us.
        install_panic_hook();
    }
    if cfg!(panic = "abort") {
        PANIC_CHAN.store(chan.as_raw_fd(), Ordering::Relaxed);
    }

    // A forked child is the parent's image by construction.
    let code = if method != StartMethod::Fork && mproc_fnref::exe_id().ok() != Some(req.exe) {
        let msg = "the parent runs a different executable (was the binary rebuilt or replaced?)";
        let _ = wire::send_result(chan.as_fd(), Tag::Error, msg.as_bytes(), &[]);
        1
    } else {
        // SAFETY: the executable is the parent's (checked just above, or
        // inherited by fork), so the offset names an `Entry` of this image.
        let entry = unsafe { entry_at(req.entry) };
        match panic::catch_unwind(AssertUnwindSafe(|| entry(&req.args, fds))) {
            Ok(Ok((bytes, rfds))) => {
                let sent = wire::send_result(chan.as_fd(), Tag::Ok, &bytes, &rfds);
                // The process ends next: freeing would only write (and, in a
                // forked child, copy) heap pages.
                std::mem::forget((bytes, rfds));
                if sent.is_ok() { 0 } else { 1 }
            }
            Ok(Err(msg)) => {
                let name = state::my_name().unwrap_or_default();
                let _ = writeln!(std::io::stderr().lock(), "process '{name}': {msg}");
                let _ = wire::send_result(chan.as_fd(), Tag::Error, msg.as_bytes(), &[]);
                1
            }
            Err(payload) => {
                let msg = panic_message(&*payload);
                let _ = wire::send_result(chan.as_fd(), Tag::Panic, msg.as_bytes(), &[]);
                1
            }
        }
    };
    let _ = std::io::stdout().lock().flush();
    sys::exit_now(code)
}

thread_local! {
    /// Set while a child's hook calls the hook it replaced: std's default
    /// hook (as wrapped by [`wrap_default_hook`]) and the hook of an mproc
    /// child this one was forked from then stay quiet.
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// Wraps std's default panic hook, before `main` runs, so that a child's
/// hook can tell it from a hook of the user's: the child chains to the
/// hook it finds (in a forked child, one `main` may have installed) and the
/// default one must not print the panic a second time.
pub(crate) fn wrap_default_hook() {
    let std_default = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        if !QUIET.try_with(Cell::get).unwrap_or(false) {
            std_default(info);
        }
    }));
}

/// Whether `RUST_BACKTRACE` asks for a backtrace: `Some(full)` if so.
fn backtrace_wanted() -> Option<bool> {
    match std::env::var_os("RUST_BACKTRACE") {
        Some(v) if v == "full" => Some(true),
        Some(v) if !v.is_empty() && v != "0" => Some(false),
        _ => None,
    }
}

/// Writes panics to the real stderr descriptor (not to a test harness's
/// capture buffer, which a forked child would never print), with a
/// backtrace when `RUST_BACKTRACE` asks for one, then runs the hook it
/// replaced (a user's hook inherited by a forked child; std's default
/// stays quiet).
pub(crate) fn install_panic_hook() {
    let previous = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        if QUIET.try_with(Cell::get).unwrap_or(false) {
            // Chained from the hook of a child forked from this one: it
            // reported the panic; only the hooks beneath may still speak.
            previous(info);
            return;
        }
        let name = state::my_name().unwrap_or_default();
        let msg = panic_message(info.payload());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_default();
        let pid = sys::getpid();
        {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "process '{name}' (pid {pid}) panicked{at}:\n{msg}");
            let _ = match backtrace_wanted() {
                Some(full) => {
                    let bt = std::backtrace::Backtrace::force_capture();
                    if full {
                        writeln!(err, "stack backtrace:\n{bt:#}")
                    } else {
                        writeln!(err, "stack backtrace:\n{bt}")
                    }
                }
                None => writeln!(
                    err,
                    "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace"
                ),
            };
        }
        let _ = QUIET.try_with(|q| q.set(true));
        previous(info);
        let _ = QUIET.try_with(|q| q.set(false));
        if cfg!(panic = "abort") {
            // The process aborts right after this hook: report the panic now
            // (with unwinding, `run_child` reports it after catching it).
            let fd = PANIC_CHAN.swap(-1, Ordering::Relaxed);
            if fd >= 0 {
                // SAFETY: `run_child` stored the number of its result socket,
                // which stays open until the process exits.
                let chan = unsafe { BorrowedFd::borrow_raw(fd) };
                let _ = wire::send_result(chan, Tag::Panic, msg.as_bytes(), &[]);
            }
        }
    }));
}

/// The result socket, for a panic hook that must report before an abort.
// Relaxed: written and read by the child's only thread (or the thread that
// panics, which happens-after the store in program order for that thread).
static PANIC_CHAN: AtomicI32 = AtomicI32::new(-1);

/// A spawned child: read the request from the inherited socket and run it.
pub(crate) fn spawned_child(fd: RawFd) -> ! {
    // SAFETY: `parse_fd` checked that `fd` is open; the parent placed this
    // socket there for us and nothing else in this fresh process owns it.
    let chan = unsafe { sys::adopt(fd) };
    let _ = sys::set_cloexec(chan.as_fd());
    match wire::read_request(chan.as_fd()) {
        Ok(Some((mut req, fds))) if fds.len() == req.fd_count() => {
            let ppid = req.parent.pid;
            let method = StartMethod::from_u8(req.method).unwrap_or(StartMethod::Spawn);
            run_child(&mut req, chan, fds, ppid, method)
        }
        Ok(Some(_)) => {
            let msg = "the start request carried the wrong number of descriptors";
            let _ = wire::send_result(chan.as_fd(), Tag::Error, msg.as_bytes(), &[]);
            sys::exit_now(1)
        }
        Ok(None) => sys::exit_now(1),
        Err(e) => {
            let msg = format!("failed to read the start request: {e}");
            let _ = wire::send_result(chan.as_fd(), Tag::Error, msg.as_bytes(), &[]);
            sys::exit_now(1)
        }
    }
}
