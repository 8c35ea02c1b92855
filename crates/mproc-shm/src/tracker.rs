//! The resource tracker: named segments do not outlive a program that dies
//! without dropping them (SIGKILL, `abort`, `process::exit`).
//!
//! # Design
//!
//! The first named segment a process creates starts a tracker: a new
//! execution of the same executable (`/proc/self/exe`), which a constructor
//! in `.init_array` turns into the tracker before `main` ever runs, as
//! mproc-process does for its spawned children. Re-executing, rather than a
//! bare fork, gives the tracker an address space of its own: a forked one
//! would pin every page (heap, anonymous segments) its creator had at that
//! moment for as long as the program runs.
//!
//! Tracker and program hold the two ends of a `SOCK_SEQPACKET` socket pair.
//! The program's end is close-on-exec and is never closed, so it is held by
//! the starting process and by every process forked from it afterwards
//! (mproc's fork start method, or any `fork`), which inherit it and reuse the
//! same tracker. Each named create sends a `REGISTER` record, and each drop
//! that unlinks, [`persist`](crate::Segment::persist) or unlink sends
//! `UNREGISTER` first (so a crash in between leaks the name rather than
//! removing a name someone may create anew). When the last holder is gone,
//! however it ended, the tracker reads end-of-file, unlinks every name still
//! registered and exits.
//!
//! The tracker is nobody's child (a double fork: the intermediate process is
//! reaped at once), so nothing in the program ever waits for it or sees it
//! among its children. It runs in a session of its own, so a Ctrl-C or a
//! signal to the program's process group does not take it down before it
//! cleans up, and it ignores SIGINT, SIGTERM, SIGHUP and SIGQUIT; its stdio
//! is `/dev/null`, so it holds no pipe a test runner or shell waits on.
//!
//! # What is guaranteed
//!
//! A name is unlinked once every process that holds the connection to its
//! creator's tracker has exited: the creator, and the processes forked from
//! it (or from one another) after its tracker started. Processes started by
//! executing a program (mproc's spawn and fork-server start methods,
//! `std::process::Command`) do not hold it: names *they* create go to a
//! tracker of their own, tied to them and their forks; and a name created by
//! their parent may be unlinked while they still run once the parent's side
//! is gone, just as if the parent had dropped it. Their mappings stay valid
//! (only opening the name anew then fails).
//!
//! Tracking is best effort: if no tracker can be started (mproc-shm linked
//! into a shared library, `/proc` unavailable), named segments behave as
//! before, unlinked by their creator's drop only.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::error::SegmentError;
use crate::sys;

/// Checks that `name` can name a segment: one path component under
/// `/dev/shm` (not empty, at most 250 bytes, no `/` or NUL, not `.`/`..`).
pub(crate) fn check_name(name: &str) -> Result<(), SegmentError> {
    let bad = name.is_empty()
        || name.len() > 250
        || name.contains('/')
        || name.contains('\0')
        || name == "."
        || name == "..";
    if bad {
        Err(SegmentError::InvalidName(name.to_owned()))
    } else {
        Ok(())
    }
}

/// The environment variable that makes this executable a tracker; its value
/// is the number of the inherited socket.
const ENV: &str = "MPROC_SHM_TRACKER";
/// The tracker's process name, as `ps` shows it.
const NAME: &std::ffi::CStr = c"mproc-tracker";

/// Record kinds: one byte, then the name (without a leading slash).
const REGISTER: u8 = b'R';
const UNREGISTER: u8 = b'U';
/// The tracker's greeting, one byte.
const HELLO: u8 = b'H';
/// The longest record: a kind byte and a name of at most 250 bytes.
const RECORD_MAX: usize = 1 + 250;
/// How many names one tracker keeps at most; later registrations are dropped.
const MAX_NAMES: usize = 1 << 16;
/// How long a starting tracker may take to greet.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How many trackers one process starts at most (a tracker that died is
/// replaced, a broken setup is not retried forever).
const MAX_LAUNCHES: u32 = 3;
/// Descriptors below this are left to stdio and the program's own use.
const FD_FLOOR: RawFd = 10;

/// The program's end of the tracker connection, or -1. Once set, a
/// descriptor is never closed: the process holds it until it exits.
// Release/Acquire: publishes CONN_INODE (stored first) with the descriptor.
static CONN: AtomicI32 = AtomicI32::new(-1);
/// The inode of that socket: after a fork, user code may have closed the
/// number and reused it for another file.
static CONN_INODE: AtomicU64 = AtomicU64::new(0);
/// Serialises starting a tracker, and counts the starts.
static LAUNCH: Mutex<u32> = Mutex::new(0);

/// The constructor that turns this executable into a tracker when asked.
///
/// Linked only if something references it: the start path does (see
/// [`launch`]), so every executable that can start a tracker has it.
#[cfg_attr(target_os = "linux", used)]
#[cfg_attr(target_os = "linux", unsafe(link_section = ".init_array"))]
static CONSTRUCTOR: extern "C" fn() = constructor;

extern "C" fn constructor() {
    let Some(fd) = std::env::var(ENV)
        .ok()
        .and_then(|v| v.parse::<RawFd>().ok())
    else {
        return;
    };
    // Only the socket `launch` placed there: a stray variable is ignored.
    if fd < FD_FLOOR || !sys::is_seqpacket(fd) {
        return;
    }
    // SAFETY: `fd` is an open socket the starting process left us at this
    // number (checked above), and nothing else in this fresh process owns it.
    let conn = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    serve(conn)
}

/// Records that this process created `name`: the tracker unlinks it if the
/// program ends without [`unregister`]. Starts the tracker on first use.
pub(crate) fn register(name: &str) {
    let Some(rec) = record(REGISTER, name) else {
        return;
    };
    if connection().is_some_and(|c| sys::send_record(c, &rec).is_ok()) {
        return;
    }
    // No tracker yet, or it died: start one, once across threads.
    let mut launches = LAUNCH.lock().unwrap_or_else(PoisonError::into_inner);
    if connection().is_some_and(|c| sys::send_record(c, &rec).is_ok()) {
        return;
    }
    if *launches >= MAX_LAUNCHES {
        return;
    }
    *launches += 1;
    if let Some(c) = launch() {
        let _ = sys::send_record(c, &rec);
    }
}

/// Withdraws a registration (the name is being unlinked, or persisted).
/// Never starts a tracker.
pub(crate) fn unregister(name: &str) {
    if let (Some(rec), Some(c)) = (record(UNREGISTER, name), connection()) {
        let _ = sys::send_record(c, &rec);
    }
}

fn record(kind: u8, name: &str) -> Option<Vec<u8>> {
    check_name(name).ok()?;
    let mut rec = Vec::with_capacity(1 + name.len());
    rec.push(kind);
    rec.extend_from_slice(name.as_bytes());
    (rec.len() <= RECORD_MAX).then_some(rec)
}

/// This process's end of its tracker connection, if it has a live one.
fn connection() -> Option<BorrowedFd<'static>> {
    let fd = CONN.load(Ordering::Acquire);
    if fd < 0 || sys::socket_inode(fd) != Some(CONN_INODE.load(Ordering::Relaxed)) {
        return None;
    }
    // SAFETY: `fd` was stored by `launch`, which never closes it, and it is
    // still the very socket stored (same inode), so it stays open as long as
    // the process (the 'static borrow).
    Some(unsafe { BorrowedFd::borrow_raw(fd) })
}

/// Starts a tracker and makes it this process's; `None` if that fails.
fn launch() -> Option<BorrowedFd<'static>> {
    // A process started as a tracker that did not become one (which cannot
    // happen when the constructor is linked, see below) must not start
    // another: that would be a chain of programs.
    if std::env::var_os(ENV).is_some() {
        return None;
    }
    // Re-executing this program makes a tracker only if the constructor is
    // in the executable itself (not in a shared library loaded by, say,
    // Python); referring to it also keeps it in the link.
    let ctor = std::hint::black_box(&raw const CONSTRUCTOR);
    if !sys::in_main_executable(ctor.cast()) {
        return None;
    }
    let (ours, theirs) = sys::socketpair_with(libc::SOCK_SEQPACKET, false).ok()?;
    // Clear of stdio, which the new process gets as /dev/null.
    let theirs = sys::dup_at_least(theirs.as_fd(), FD_FLOOR).ok()?;
    let value = theirs.as_raw_fd().to_string();
    sys::spawn_detached("mproc-tracker", (ENV, &value), theirs.as_fd()).ok()?;
    drop(theirs);
    // A tracker greets; anything else (a program without the constructor,
    // a crash) is no tracker.
    if !sys::wait_readable(ours.as_fd(), HELLO_TIMEOUT).unwrap_or(false) {
        return None;
    }
    let mut hello = [0u8; 2];
    if sys::recv_record(ours.as_fd(), &mut hello).ok() != Some(1) || hello[0] != HELLO {
        return None;
    }
    let inode = sys::socket_inode(ours.as_raw_fd())?;
    CONN_INODE.store(inode, Ordering::Relaxed);
    // Held until the process exits: dropping it would tell the tracker the
    // program is gone. A replaced connection (its tracker died) stays open
    // too, so that no thread still sending on it can reach a reused number.
    let fd = ours.into_raw_fd();
    CONN.store(fd, Ordering::Release);
    connection()
}

/// The tracker itself: collects registrations until every holder of the
/// other end is gone, then unlinks what is left and exits.
fn serve(conn: OwnedFd) -> ! {
    sys::set_process_name(NAME);
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
        sys::ignore_signal(sig);
    }
    sys::close_all_but_stdio_and(conn.as_raw_fd());
    // Pin no directory of the program's (a mount point, say).
    let _ = std::env::set_current_dir("/");
    let _ = sys::send_record(conn.as_fd(), &[HELLO]);

    let mut names: Vec<String> = Vec::new();
    let mut buf = [0u8; RECORD_MAX + 1];
    let mut errors = 0;
    loop {
        match sys::recv_record(conn.as_fd(), &mut buf) {
            Ok(0) => break,
            Ok(n) => apply(&mut names, &buf[..n]),
            // Nothing but end-of-file may trigger the cleanup, which would
            // pull names from under running processes; but do not spin on a
            // socket that keeps failing.
            Err(_) if errors < 100 => {
                errors += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(_) => sys::exit_now(1),
        }
    }
    for name in &names {
        let _ = sys::shm_unlink(name);
    }
    sys::exit_now(0)
}

/// Applies one record from the program. Malformed records are ignored.
fn apply(names: &mut Vec<String>, rec: &[u8]) {
    let Some((&kind, name)) = rec.split_first() else {
        return;
    };
    let Some(name) = std::str::from_utf8(name)
        .ok()
        .filter(|n| rec.len() <= RECORD_MAX && check_name(n).is_ok())
    else {
        return;
    };
    let path = format!("/{name}");
    match kind {
        REGISTER if names.len() < MAX_NAMES => names.push(path),
        UNREGISTER => {
            if let Some(i) = names.iter().rposition(|n| *n == path) {
                names.swap_remove(i);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests;
