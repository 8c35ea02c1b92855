//! The Linux-only system calls: memfd and its seals, shared futexes, pidfd,
//! the affinity mask, `close_range`, `prctl`, the auxiliary vector, `/proc`.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use super::Liveness;
use super::posix::{cvt, cvt_retry, process_exists};

/// Socket-type flag for an atomic close-on-exec socket.
pub(super) const SOCK_CLOEXEC: libc::c_int = libc::SOCK_CLOEXEC;
/// Socket-type flag for an atomic non-blocking socket.
pub(super) const SOCK_NONBLOCK: libc::c_int = libc::SOCK_NONBLOCK;
/// `recvmsg` flag making received descriptors close-on-exec atomically.
pub(super) const MSG_CMSG_CLOEXEC: libc::c_int = libc::MSG_CMSG_CLOEXEC;
/// Poll event for a peer that shut down writing.
pub(super) const POLLRDHUP: libc::c_short = libc::POLLRDHUP;

/// Creates an anonymous memory file (`memfd_create`, close-on-exec, sealing
/// allowed so that [`seal_size`] can pin its size).
pub(crate) fn memfd_create(name: &str) -> io::Result<OwnedFd> {
    let name = CString::new(name).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: `name` is a valid NUL-terminated string that outlives the call.
    let fd = cvt(unsafe {
        libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING)
    })?;
    // SAFETY: `memfd_create` just returned this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Seals a memfd against shrinking (and against further seals), so that no
/// process holding it can truncate it under another's mapping (which would
/// turn that process's accesses into `SIGBUS`).
pub(crate) fn seal_size(fd: BorrowedFd<'_>) -> io::Result<()> {
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_SEAL;
    // SAFETY: `fd` is a valid descriptor; F_ADD_SEALS takes an int argument.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) })?;
    Ok(())
}

/// The seals of a memfd (`F_GET_SEALS`); `None` for a file that cannot be
/// sealed (a POSIX named segment, a regular file).
pub(crate) fn seals(fd: BorrowedFd<'_>) -> io::Result<Option<libc::c_int>> {
    // SAFETY: `fd` is a valid descriptor; F_GET_SEALS takes no argument.
    match cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) }) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether a memfd is sealed against shrinking.
pub(crate) fn is_size_sealed(seals: libc::c_int) -> bool {
    seals & libc::F_SEAL_SHRINK != 0
}

/// Faults in every page of a shared mapping now (`MADV_POPULATE_WRITE`),
/// so that later accesses do not take page faults. Kernels before 5.14 do not
/// know the advice; then this does nothing.
pub(crate) fn populate(ptr: *mut u8, len: usize) -> io::Result<()> {
    // SAFETY: `ptr`/`len` describe a live mapping owned by the caller;
    // MADV_POPULATE_WRITE only faults pages in and never changes their contents.
    match cvt(unsafe { libc::madvise(ptr.cast(), len, libc::MADV_POPULATE_WRITE) }) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
        r => r.map(drop),
    }
}

/// `FUTEX_WAIT` on a shared (not process-private) futex word: sleeps while
/// `*word == expected`, until woken, interrupted or `timeout` passes.
///
/// Returns `false` on timeout and `true` otherwise (woken, value changed,
/// interrupted: the caller re-checks its condition in every case).
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> bool {
    let ts = timeout.map(|d| libc::timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a valid, aligned u32 for the duration of the call; a
    // shared futex on a MAP_SHARED page is keyed by the page, so other
    // processes mapping it wait on the same futex.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            ts_ptr,
        )
    };
    !(r == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::ETIMEDOUT))
}

/// `FUTEX_WAKE` on a shared futex word: wakes up to `n` waiters.
/// Returns how many were woken.
pub(crate) fn futex_wake(word: &AtomicU32, n: u32) -> usize {
    let n = n.min(i32::MAX as u32);
    // SAFETY: `word` is a valid, aligned u32; FUTEX_WAKE only reads the address as a key.
    let r = unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, n) };
    usize::try_from(r).unwrap_or(0)
}

/// Closes every descriptor above 2 except `keep`.
pub(crate) fn close_all_but_stdio_and(keep: RawFd) {
    let ranges = [(3, keep - 1), (keep + 1, libc::c_int::MAX)];
    let mut done = true;
    for (first, last) in ranges {
        if first <= last {
            // SAFETY: close_range takes plain integers; closing descriptors
            // nothing in this fresh process uses cannot break Rust ownership.
            let r = unsafe { libc::close_range(first as libc::c_uint, last as libc::c_uint, 0) };
            done &= r == 0;
        }
    }
    if done {
        return;
    }
    // Kernels before 5.9: close what /proc lists (collected first, as
    // closing while reading the directory would skip entries).
    let open: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    for fd in open.into_iter().filter(|&fd| fd > 2 && fd != keep) {
        // SAFETY: as above; the directory's own descriptor is already closed,
        // so this fails harmlessly with EBADF for it.
        unsafe { libc::close(fd) };
    }
}

/// Names this process as `ps` and `/proc/<pid>/comm` show it (15 bytes at most).
pub(crate) fn set_process_name(name: &std::ffi::CStr) {
    // SAFETY: `name` is NUL-terminated; PR_SET_NAME reads at most 16 bytes of it.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr() as libc::c_ulong, 0, 0, 0) };
}

/// Whether `addr` lies in the main executable rather than in a shared
/// library (for example a Python extension that links mproc-shm). Without
/// dynamic-linking information (a static binary), everything is the main
/// executable.
pub(crate) fn in_main_executable(addr: *const libc::c_void) -> bool {
    // SAFETY: getauxval only reads the auxiliary vector.
    let phdr = unsafe { libc::getauxval(libc::AT_PHDR) } as *const libc::c_void;
    let base_of = |a: *const libc::c_void| {
        let mut info = std::mem::MaybeUninit::<libc::Dl_info>::uninit();
        // SAFETY: `info` is writable; dladdr only inspects the address.
        let found = unsafe { libc::dladdr(a, info.as_mut_ptr()) } != 0;
        // SAFETY: dladdr filled `info` when it returned non-zero.
        found.then(|| unsafe { info.assume_init() }.dli_fbase)
    };
    match (base_of(phdr), base_of(addr)) {
        (Some(main), Some(ours)) => main == ours,
        _ => true,
    }
}

/// Starts `/proc/self/exe` (this very program) as a detached process that
/// is not our child: it is forked from a short-lived intermediate that exits
/// at once (reaped here), so it is reparented to init and nobody in this
/// program ever waits for it. It runs in a session of its own, with stdio on
/// `/dev/null`, an empty signal mask, `keep` inherited at the same number
/// and `var` added to the environment. Returns once it has been executed.
pub(crate) fn spawn_detached(
    arg0: &str,
    var: (&str, &str),
    keep: BorrowedFd<'_>,
) -> io::Result<()> {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};

    let keep = keep.as_raw_fd();
    if keep <= 2 {
        return Err(io::ErrorKind::InvalidInput.into());
    }
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg0(arg0)
        .env(var.0, var.1)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: the closure runs in the forked child before exec and makes only
    // async-signal-safe calls (fork, _exit, setsid, fcntl, sigemptyset,
    // sigprocmask) on values computed before the fork.
    unsafe {
        cmd.pre_exec(move || {
            match libc::fork() {
                -1 => return Err(io::Error::last_os_error()),
                // The grandchild goes on to exec.
                0 => {}
                // The intermediate ends here; its parent reaps it below.
                _ => libc::_exit(0),
            }
            libc::setsid();
            if libc::fcntl(keep, libc::F_SETFD, 0) == -1 {
                return Err(io::Error::last_os_error());
            }
            let mut empty = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
            libc::sigemptyset(empty.as_mut_ptr());
            libc::sigprocmask(libc::SIG_SETMASK, empty.as_ptr(), ptr::null_mut());
            Ok(())
        });
    }
    // `spawn` returns once the grandchild has executed the program (or with
    // its error): both keep the write end of std's close-on-exec error pipe.
    let mut intermediate = cmd.spawn()?;
    let _ = intermediate.wait();
    Ok(())
}

/// The number of CPUs this process may run on, per its affinity mask; `None`
/// when the mask cannot be read.
pub fn allowed_cpus() -> Option<u32> {
    // SAFETY: an all-zero cpu_set_t is a valid, empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable cpu_set_t of the size passed; pid 0
    // means the calling thread.
    let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if r != 0 {
        return None;
    }
    // SAFETY: `set` was filled in by the kernel.
    Some(unsafe { libc::CPU_COUNT(&set) } as u32)
}

/// Whether `pid` names a process that has not exited yet.
///
/// A killed process that its parent has not reaped yet is a zombie: it still
/// answers `kill(pid, 0)`, but it can never release anything, so it counts as
/// dead here. A pidfd becomes readable exactly when the process exits, zombie
/// or not; without pidfds (kernels before 5.3, seccomp filters) the state
/// letter in `/proc/<pid>/stat` decides.
pub(crate) fn liveness(pid: u32) -> Liveness {
    let Ok(raw) = libc::pid_t::try_from(pid) else {
        return Liveness::Dead;
    };
    if raw <= 0 {
        return Liveness::Dead;
    }
    match pidfd_open(raw) {
        Ok(fd) => {
            if pidfd_exited(&fd) {
                Liveness::Dead
            } else {
                Liveness::Alive
            }
        }
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Liveness::Dead,
        Err(_) => liveness_fallback(raw),
    }
}

fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags by value and returns a new
    // descriptor or -1; no memory is passed.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(r as libc::c_int) })
}

fn pidfd_exited(fd: &OwnedFd) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `p` is one valid pollfd; a zero timeout never blocks.
    let r = unsafe { libc::poll(&mut p, 1, 0) };
    r > 0 && p.revents & libc::POLLIN != 0
}

fn liveness_fallback(pid: libc::pid_t) -> Liveness {
    if !process_exists(pid) {
        return Liveness::Dead;
    }
    match std::fs::read(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // The state letter follows the last ')' (the command name may contain one).
            let state = stat
                .iter()
                .rposition(|&b| b == b')')
                .and_then(|i| stat.get(i + 2).copied());
            match state {
                Some(b'Z' | b'X' | b'x') => Liveness::Dead,
                _ => Liveness::Alive,
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Liveness::Dead,
        // Unknown: never steal a lock on a guess.
        Err(_) => Liveness::Alive,
    }
}

/// A fresh eventfd (counter 0), non-blocking and close-on-exec.
pub(crate) fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: plain integer arguments; the call creates a new descriptor.
    let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
    // SAFETY: `eventfd` just returned this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Whether `fd` is an eventfd (its `/proc/self/fd` link names one).
pub(crate) fn is_eventfd(fd: BorrowedFd<'_>) -> bool {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .is_ok_and(|p| p.as_os_str() == "anon_inode:[eventfd]")
}

/// Adds 1 to an eventfd's counter; a full counter (`EAGAIN`) already
/// reads as rung, so it is not an error.
pub(crate) fn eventfd_add(fd: BorrowedFd<'_>) {
    let one = 1u64.to_ne_bytes();
    // SAFETY: `fd` is valid for the call and `one` is 8 readable bytes.
    let _ = cvt_retry(|| unsafe { libc::write(fd.as_raw_fd(), one.as_ptr().cast(), 8) });
}

/// Resets a non-blocking eventfd's counter; returns whether it was non-zero.
pub(crate) fn eventfd_take(fd: BorrowedFd<'_>) -> bool {
    let mut buf = [0u8; 8];
    // SAFETY: `fd` is valid for the call and `buf` is 8 writable bytes.
    cvt_retry(|| unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), 8) }).is_ok()
}
