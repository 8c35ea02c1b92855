//! Linux system calls used by mproc-process. Every `unsafe` OS call sits here.

use std::ffi::{CStr, CString};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;
use std::time::Duration;

/// Converts a `-1`-on-error return value into an `io::Result`.
pub(crate) fn cvt<T: Copy + PartialEq + From<i8>>(r: T) -> io::Result<T> {
    if r == T::from(-1) {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Like [`cvt`], retrying while the call fails with `EINTR`.
fn cvt_retry<T: Copy + PartialEq + From<i8>>(mut f: impl FnMut() -> T) -> io::Result<T> {
    loop {
        match cvt(f()) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

/// Takes ownership of a descriptor a system call just returned.
fn own(fd: RawFd) -> OwnedFd {
    // SAFETY: every caller passes a descriptor that a system call has just
    // created and that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// The process id type.
pub(crate) type RawPid = libc::pid_t;

/// A connected pair of close-on-exec Unix stream sockets.
pub(crate) fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a valid, writable array of two c_ints.
    cvt(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    Ok((own(fds[0]), own(fds[1])))
}

/// A connected pair of close-on-exec, non-blocking Unix stream sockets.
pub(crate) fn socketpair_nonblocking() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    let ty = libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK;
    // SAFETY: `fds` is a valid, writable array of two c_ints.
    cvt(unsafe { libc::socketpair(libc::AF_UNIX, ty, 0, fds.as_mut_ptr()) })?;
    Ok((own(fds[0]), own(fds[1])))
}

/// The number of bytes waiting to be read from a socket (`FIONREAD`).
pub(crate) fn pending_bytes(fd: BorrowedFd<'_>) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: `fd` is valid; FIONREAD writes one c_int to the pointer.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n) })?;
    Ok(usize::try_from(n).unwrap_or(0))
}

/// Waits until a descriptor can be written to.
pub(crate) fn wait_writable(fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut p = [libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    }];
    poll(&mut p, None).map(|_| ())
}

/// A close-on-exec, non-blocking pipe: (read end, write end).
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a valid, writable array of two c_ints.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) })?;
    Ok((own(fds[0]), own(fds[1])))
}

/// Sets or clears `O_NONBLOCK`.
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    // SAFETY: `fd` is a valid descriptor; F_GETFL takes no argument.
    let flags = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    let flags = if on {
        flags | libc::O_NONBLOCK
    } else {
        flags & !libc::O_NONBLOCK
    };
    // SAFETY: `fd` is a valid descriptor; F_SETFL takes an int argument.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags) })?;
    Ok(())
}

/// Sets `FD_CLOEXEC` on a descriptor.
pub(crate) fn set_cloexec(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: `fd` is a valid descriptor; F_SETFD takes an int argument.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) })?;
    Ok(())
}

/// Writes all of `data` to a descriptor, retrying on `EINTR` and short writes.
pub(crate) fn write_all(fd: BorrowedFd<'_>, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        // SAFETY: `data` is a valid readable buffer of `data.len()` bytes.
        let n =
            cvt_retry(|| unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) })?;
        data = &data[n as usize..];
    }
    Ok(())
}

/// Reads up to `buf.len()` bytes, retrying on `EINTR`. 0 means end of file.
pub(crate) fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is a valid writable buffer of `buf.len()` bytes.
    let n =
        cvt_retry(|| unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) })?;
    Ok(n as usize)
}

/// Waits until one of `fds` is ready or `timeout` passes (`None` = forever).
/// Returns the number of ready entries; `EINTR` counts as zero ready.
pub(crate) fn poll(fds: &mut [libc::pollfd], timeout: Option<Duration>) -> io::Result<usize> {
    let ms = match timeout {
        None => -1,
        // Round up so that a wait never returns before the deadline.
        Some(t) => i32::try_from(t.as_micros().div_ceil(1000)).unwrap_or(i32::MAX),
    };
    // SAFETY: `fds` is a valid array of `fds.len()` pollfd structs.
    match cvt(unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) }) {
        Ok(n) => Ok(n as usize),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
        Err(e) => Err(e),
    }
}

/// A pollfd asking for readability.
pub(crate) fn pollin(fd: BorrowedFd<'_>) -> libc::pollfd {
    libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }
}

/// Whether a polled entry is readable (or at end of file / in error).
pub(crate) fn ready(p: &libc::pollfd) -> bool {
    p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0
}

/// Opens a pidfd for a process (Linux 5.3+).
pub(crate) fn pidfd_open(pid: RawPid) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor.
    let fd = cvt(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })?;
    Ok(own(fd as RawFd))
}

/// Reaps `pid` if it has exited. Returns its raw wait status, or `None`
/// while it runs (with `block == false`).
pub(crate) fn waitpid(pid: RawPid, block: bool) -> io::Result<Option<libc::c_int>> {
    let mut status = 0;
    let flags = if block { 0 } else { libc::WNOHANG };
    // SAFETY: `status` is a valid writable c_int.
    let r = cvt_retry(|| unsafe { libc::waitpid(pid, &mut status, flags) })?;
    Ok(if r == 0 { None } else { Some(status) })
}

/// Reaps any exited child without blocking: `(pid, raw status)`.
pub(crate) fn waitpid_any() -> io::Result<Option<(RawPid, libc::c_int)>> {
    let mut status = 0;
    // SAFETY: `status` is a valid writable c_int.
    let r = cvt_retry(|| unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) })?;
    Ok(if r == 0 { None } else { Some((r, status)) })
}

/// Decodes a raw wait status into `(exited, code_or_signal)`.
pub(crate) fn decode_status(status: libc::c_int) -> (bool, i32) {
    if libc::WIFEXITED(status) {
        (true, libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        (false, libc::WTERMSIG(status))
    } else {
        // Stopped or continued: not reported by the waits above.
        (true, 255)
    }
}

/// Sends a signal to a process.
pub(crate) fn kill(pid: RawPid, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: kill takes plain integers.
    cvt(unsafe { libc::kill(pid, sig) })?;
    Ok(())
}

/// Sends a signal through a pidfd, which cannot hit a recycled pid.
pub(crate) fn pidfd_send_signal(fd: BorrowedFd<'_>, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: the syscall takes a valid pidfd, a signal number, a null siginfo and zero flags.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            sig,
            ptr::null::<libc::siginfo_t>(),
            0,
        )
    })?;
    Ok(())
}

/// This process's id.
pub(crate) fn getpid() -> RawPid {
    // SAFETY: getpid cannot fail.
    unsafe { libc::getpid() }
}

/// Names this process (`comm`, as `top` shows it) after `argv[0]`: a
/// process started through `/proc/self/exe` would otherwise be "exe".
pub(crate) fn set_name_from_argv0() {
    let Some(arg0) = std::env::args_os().next() else {
        return;
    };
    let base = std::path::Path::new(&arg0)
        .file_name()
        .map(|b| b.as_encoded_bytes().to_vec())
        .unwrap_or_default();
    let mut name = [0u8; 16];
    let n = base.len().min(15);
    name[..n].copy_from_slice(&base[..n]);
    // SAFETY: `name` is a NUL-terminated buffer of 16 bytes, as PR_SET_NAME reads.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr() as libc::c_ulong, 0, 0, 0) };
}

/// The calling thread's id.
pub(crate) fn gettid() -> RawPid {
    // SAFETY: gettid cannot fail.
    unsafe { libc::gettid() }
}

/// The parent process's id.
pub(crate) fn getppid() -> RawPid {
    // SAFETY: getppid cannot fail.
    unsafe { libc::getppid() }
}

/// Asks the kernel to send SIGKILL to this process when its parent thread
/// exits.
pub(crate) fn set_parent_death_signal() -> io::Result<()> {
    // SAFETY: PR_SET_PDEATHSIG takes a signal number.
    cvt(unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        )
    })?;
    Ok(())
}

/// The number of threads in this process (entries of `/proc/self/task`).
pub(crate) fn thread_count() -> io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")?.count())
}

/// This process's `/proc/self/task`, opened once: `(pid, directory)`. The pid
/// says whose it is: a forked child inherits its parent's descriptor, which
/// lists the *parent's* threads, and reopens its own.
static TASK_DIR: std::sync::Mutex<Option<(RawPid, OwnedFd)>> = std::sync::Mutex::new(None);

fn open_task_dir() -> io::Result<OwnedFd> {
    // SAFETY: the path is NUL-terminated.
    let fd = cvt(unsafe {
        libc::open(
            c"/proc/self/task".as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    })?;
    Ok(own(fd))
}

/// Whether this process has exactly one thread: one `lseek` and one
/// `getdents64` of a cached `/proc/self/task` (cheaper than
/// [`thread_count`], which opens the directory and reads it to the end).
pub(crate) fn single_threaded() -> io::Result<bool> {
    let me = getpid();
    // The descriptor's offset is shared state: only the holder of the lock
    // may rewind and read it. A busy lock (another thread is checking, so
    // this process is not single-threaded anyway) or one poisoned falls back
    // to a private descriptor.
    let mut cached = TASK_DIR.try_lock().ok();
    let private;
    let dir = match cached.as_deref_mut() {
        Some(slot) => {
            let fd: &OwnedFd = match slot {
                Some((pid, fd)) if *pid == me => fd,
                _ => &slot.insert((me, open_task_dir()?)).1,
            };
            // SAFETY: `fd` is a valid descriptor; lseek takes plain integers.
            cvt(unsafe { libc::lseek(fd.as_raw_fd(), 0, libc::SEEK_SET) })?;
            fd.as_fd()
        }
        None => {
            private = open_task_dir()?;
            private.as_fd()
        }
    };
    // u64 elements keep the buffer aligned for `linux_dirent64`.
    let mut buf = [0u64; 128];
    let bytes = size_of_val(&buf);
    // SAFETY: `buf` is writable for `bytes` bytes.
    let n = cvt(unsafe {
        libc::syscall(
            libc::SYS_getdents64,
            dir.as_raw_fd(),
            buf.as_mut_ptr(),
            bytes,
        )
    })? as usize;
    let raw: &[u8] = bytemuck_bytes(&buf);
    // Count entries other than "." and ".."; a full buffer means many threads.
    let mut entries = 0;
    let mut off = 0;
    while off + 19 < n {
        let reclen = u16::from_ne_bytes([raw[off + 16], raw[off + 17]]) as usize;
        if reclen == 0 {
            break;
        }
        let name = raw[off + 19];
        if name != b'.' {
            entries += 1;
        }
        off += reclen;
    }
    Ok(entries == 1)
}

fn bytemuck_bytes(buf: &[u64]) -> &[u8] {
    // SAFETY: any initialised u64 slice is valid as bytes of the same total
    // length; u8 has no alignment requirement.
    unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), size_of_val(buf)) }
}

/// Blocks until `pid` (our child) has exited, without reaping it
/// (`waitid(WEXITED | WNOWAIT)`), so that the reaping stays in one place.
pub(crate) fn wait_exited_nowait(pid: RawPid) -> io::Result<()> {
    let mut info = MaybeUninit::<libc::siginfo_t>::zeroed();
    // SAFETY: `info` is writable; the id type and flags are plain integers.
    cvt_retry(|| unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            info.as_mut_ptr(),
            libc::WEXITED | libc::WNOWAIT,
        )
    })?;
    Ok(())
}

/// A close-on-exec memory file holding `data` (for results too large to
/// leave in a socket buffer).
pub(crate) fn memfd_with(data: &[u8]) -> io::Result<OwnedFd> {
    // SAFETY: the name is NUL-terminated.
    let fd = own(cvt(unsafe {
        libc::memfd_create(c"mproc-result".as_ptr(), libc::MFD_CLOEXEC)
    })?);
    write_all(fd.as_fd(), data)?;
    Ok(fd)
}

/// Reads `len` bytes from the start of a file (a memfd from a child),
/// failing if it holds fewer.
pub(crate) fn read_file_prefix(fd: BorrowedFd<'_>, len: usize) -> io::Result<Vec<u8>> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `fd` is valid and `st` points to writable memory of the right size.
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) })?;
    // SAFETY: `fstat` succeeded, so it initialised `st`.
    let size = unsafe { st.assume_init() }.st_size;
    if usize::try_from(size).map_or(true, |s| s < len) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the result file is shorter than announced",
        ));
    }
    let mut out = vec![0u8; len];
    let mut got = 0;
    while got < len {
        // SAFETY: `out[got..]` is writable for `len - got` bytes.
        let n = cvt_retry(|| unsafe {
            libc::pread(
                fd.as_raw_fd(),
                out[got..].as_mut_ptr().cast(),
                len - got,
                got as libc::off_t,
            )
        })? as usize;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the result file ended early",
            ));
        }
        got += n;
    }
    Ok(out)
}

/// The result of [`fork`].
pub(crate) enum Forked {
    /// In the parent, with the child's pid.
    Parent(RawPid),
    /// In the child.
    Child,
}

/// Forks this process.
///
/// # Safety
/// If the process has other threads, the child may only call
/// async-signal-safe functions until it execs or exits: locks another
/// thread held (allocator, stdout, environment) stay locked in the child.
pub(crate) unsafe fn fork() -> io::Result<Forked> {
    // SAFETY: the caller upholds the multi-threading contract above.
    let pid = cvt(unsafe { libc::fork() })?;
    Ok(if pid == 0 {
        Forked::Child
    } else {
        Forked::Parent(pid)
    })
}

/// Ends this process at once, without running exit handlers.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` is always safe to call; it does not return.
    unsafe { libc::_exit(code) }
}

/// Fills `buf` from the kernel's random source (`getrandom(2)`).
pub(crate) fn random(buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        // SAFETY: `rest` is a valid, writable buffer of `rest.len()` bytes.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        match cvt(n) {
            Ok(n) => done += n as usize,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Ends this process by SIGKILL, as the parent-death signal would have.
pub(crate) fn kill_self() -> ! {
    // SAFETY: kill takes plain integers; SIGKILL cannot be caught, blocked
    // or ignored, so the process ends here.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    exit_now(1)
}

/// Replaces descriptor 0 with `/dev/null`.
pub(crate) fn stdin_to_devnull() -> io::Result<()> {
    // SAFETY: the path is NUL-terminated.
    let fd = own(cvt(unsafe {
        libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC)
    })?);
    if fd.as_raw_fd() != 0 {
        // SAFETY: both descriptors are valid; dup2 onto 0 clears close-on-exec on the copy.
        cvt_retry(|| unsafe { libc::dup2(fd.as_raw_fd(), 0) })?;
    } else {
        // `/dev/null` landed on 0 itself: keep it and make it inheritable.
        // SAFETY: 0 is a valid descriptor; F_SETFD takes an int argument.
        cvt(unsafe { libc::fcntl(0, libc::F_SETFD, 0) })?;
        std::mem::forget(fd);
    }
    Ok(())
}

/// Duplicates `fd` onto number `target` (close-on-exec clear on the copy).
pub(crate) fn dup_onto(fd: BorrowedFd<'_>, target: RawFd) -> io::Result<()> {
    // SAFETY: `fd` is valid; dup2 replaces whatever `target` was atomically.
    cvt_retry(|| unsafe { libc::dup2(fd.as_raw_fd(), target) })?;
    Ok(())
}

/// Sends `head` then `body` on a socket without allocating (two iovecs),
/// retrying on `EINTR` and short writes.
pub(crate) fn send_two(sock: BorrowedFd<'_>, head: &[u8], body: &[u8]) -> io::Result<()> {
    let (mut head, mut body) = (head, body);
    while !head.is_empty() || !body.is_empty() {
        let mut iov = [
            libc::iovec {
                iov_base: head.as_ptr() as *mut libc::c_void,
                iov_len: head.len(),
            },
            libc::iovec {
                iov_base: body.as_ptr() as *mut libc::c_void,
                iov_len: body.len(),
            },
        ];
        // SAFETY: an all-zero msghdr is valid (null pointers, zero lengths).
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = iov.as_mut_ptr();
        msg.msg_iovlen = 2;
        // SAFETY: `msg` points at two iovecs over live slices for the call.
        let n = match cvt_retry(|| unsafe {
            libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL)
        }) {
            Ok(n) => n as usize,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                wait_writable(sock)?;
                continue;
            }
            Err(e) => return Err(e),
        };
        let from_head = n.min(head.len());
        head = &head[from_head..];
        body = &body[(n - from_head).min(body.len())..];
    }
    Ok(())
}

/// Sets a signal's disposition to ignore or default.
pub(crate) fn set_signal(sig: libc::c_int, ignore: bool) {
    let handler = if ignore { libc::SIG_IGN } else { libc::SIG_DFL };
    // SAFETY: installing SIG_IGN/SIG_DFL for a valid signal number has no
    // memory-safety preconditions.
    unsafe { libc::signal(sig, handler) };
}

/// Blocks (`block == true`) or unblocks SIGCHLD for the calling thread.
pub(crate) fn block_sigchld(block: bool) -> io::Result<()> {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: `set` is writable; sigemptyset initialises it.
    unsafe { libc::sigemptyset(set.as_mut_ptr()) };
    // SAFETY: `set` was initialised by sigemptyset.
    unsafe { libc::sigaddset(set.as_mut_ptr(), libc::SIGCHLD) };
    let how = if block {
        libc::SIG_BLOCK
    } else {
        libc::SIG_UNBLOCK
    };
    // SAFETY: `set` is initialised; the old set is not requested.
    let r = unsafe { libc::pthread_sigmask(how, set.as_ptr(), ptr::null_mut()) };
    if r != 0 {
        Err(io::Error::from_raw_os_error(r))
    } else {
        Ok(())
    }
}

/// A non-blocking, close-on-exec signalfd for SIGCHLD (which must be blocked).
pub(crate) fn signalfd_sigchld() -> io::Result<OwnedFd> {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: `set` is writable; sigemptyset initialises it.
    unsafe { libc::sigemptyset(set.as_mut_ptr()) };
    // SAFETY: `set` was initialised by sigemptyset.
    unsafe { libc::sigaddset(set.as_mut_ptr(), libc::SIGCHLD) };
    // SAFETY: `set` is initialised; -1 asks for a new descriptor.
    let fd =
        cvt(unsafe { libc::signalfd(-1, set.as_ptr(), libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) })?;
    Ok(own(fd))
}

/// Reads and discards everything pending on a non-blocking descriptor.
pub(crate) fn drain(fd: BorrowedFd<'_>) {
    let mut buf = [0u8; 1024];
    while matches!(read(fd, &mut buf), Ok(n) if n > 0) {}
}

/// The number of CPUs in this process's affinity mask.
pub(crate) fn affinity_count() -> Option<usize> {
    let mut set = MaybeUninit::<libc::cpu_set_t>::zeroed();
    // SAFETY: `set` is a writable cpu_set_t of the size passed.
    let r = unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), set.as_mut_ptr()) };
    if r != 0 {
        return None;
    }
    // SAFETY: sched_getaffinity succeeded and initialised the set (it was zeroed before).
    let set = unsafe { set.assume_init() };
    // SAFETY: CPU_COUNT reads an initialised set.
    let n = unsafe { libc::CPU_COUNT(&set) };
    usize::try_from(n).ok().filter(|&n| n > 0)
}

/// Options for [`spawn_self`].
pub(crate) struct SpawnSelf<'a> {
    /// The descriptor the child finds at the same number (close-on-exec is
    /// cleared in the child only).
    pub(crate) keep: BorrowedFd<'a>,
    /// The complete environment of the child.
    pub(crate) env: &'a [CString],
}

/// Starts a new copy of the running executable (`/proc/self/exe`) with
/// `posix_spawn` (a `vfork`-speed clone in glibc), stdin on `/dev/null`, an
/// empty signal mask and the given environment. Returns the child's pid.
pub(crate) fn spawn_self(opts: &SpawnSelf<'_>) -> io::Result<RawPid> {
    let exe: &CStr = c"/proc/self/exe";
    let argv0 = std::env::args_os()
        .next()
        .and_then(|a| CString::new(a.into_encoded_bytes()).ok());
    let argv0 = argv0.unwrap_or_else(|| CString::from(c"mproc-child"));
    let argv: [*mut libc::c_char; 2] = [argv0.as_ptr().cast_mut(), ptr::null_mut()];
    let mut envp: Vec<*mut libc::c_char> = opts.env.iter().map(|e| e.as_ptr().cast_mut()).collect();
    envp.push(ptr::null_mut());

    let mut actions = FileActions::new()?;
    let keep = opts.keep.as_raw_fd();
    // SAFETY: `actions` is initialised; dup2 of a descriptor onto itself
    // clears FD_CLOEXEC in the child (POSIX 2017, glibc >= 2.29).
    check(unsafe { libc::posix_spawn_file_actions_adddup2(&mut actions.0, keep, keep) })?;
    // SAFETY: `actions` is initialised and the path is NUL-terminated.
    check(unsafe {
        libc::posix_spawn_file_actions_addopen(
            &mut actions.0,
            0,
            c"/dev/null".as_ptr(),
            libc::O_RDONLY,
            0,
        )
    })?;
    let mut attr = SpawnAttr::new()?;
    let mut empty = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: `empty` is writable; sigemptyset initialises it.
    unsafe { libc::sigemptyset(empty.as_mut_ptr()) };
    // SAFETY: `attr` is initialised; `empty` was initialised above.
    check(unsafe { libc::posix_spawnattr_setsigmask(&mut attr.0, empty.as_ptr()) })?;
    // SAFETY: `attr` is initialised.
    check(unsafe {
        libc::posix_spawnattr_setflags(&mut attr.0, libc::POSIX_SPAWN_SETSIGMASK as libc::c_short)
    })?;

    let mut pid: libc::pid_t = 0;
    // SAFETY: every pointer is valid for the call: the path, argv and envp are
    // NUL-terminated arrays of NUL-terminated strings that outlive it, and
    // `actions`/`attr` are initialised.
    check(unsafe {
        libc::posix_spawn(
            &mut pid,
            exe.as_ptr(),
            &actions.0,
            &attr.0,
            argv.as_ptr(),
            envp.as_ptr(),
        )
    })?;
    Ok(pid)
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(r))
    }
}

struct FileActions(libc::posix_spawn_file_actions_t);

impl FileActions {
    fn new() -> io::Result<Self> {
        let mut a = MaybeUninit::<libc::posix_spawn_file_actions_t>::uninit();
        // SAFETY: `a` is writable; init initialises it.
        check(unsafe { libc::posix_spawn_file_actions_init(a.as_mut_ptr()) })?;
        // SAFETY: initialised just above.
        Ok(Self(unsafe { a.assume_init() }))
    }
}

impl Drop for FileActions {
    fn drop(&mut self) {
        // SAFETY: the actions were initialised in `new` and are destroyed once.
        unsafe { libc::posix_spawn_file_actions_destroy(&mut self.0) };
    }
}

struct SpawnAttr(libc::posix_spawnattr_t);

impl SpawnAttr {
    fn new() -> io::Result<Self> {
        let mut a = MaybeUninit::<libc::posix_spawnattr_t>::uninit();
        // SAFETY: `a` is writable; init initialises it.
        check(unsafe { libc::posix_spawnattr_init(a.as_mut_ptr()) })?;
        // SAFETY: initialised just above.
        Ok(Self(unsafe { a.assume_init() }))
    }
}

impl Drop for SpawnAttr {
    fn drop(&mut self) {
        // SAFETY: the attributes were initialised in `new` and are destroyed once.
        unsafe { libc::posix_spawnattr_destroy(&mut self.0) };
    }
}

/// Closes a descriptor that is owned by a value that will never drop (it
/// is forgotten).
///
/// # Safety
/// `fd` must not be used or closed again by anything in this process.
pub(crate) unsafe fn close_unowned(fd: RawFd) {
    // SAFETY: guaranteed by the caller.
    let _ = unsafe { libc::close(fd) };
}

/// Adopts a descriptor number inherited from the parent process.
///
/// # Safety
/// `fd` must be open and owned by nothing else in this process.
pub(crate) unsafe fn adopt(fd: RawFd) -> OwnedFd {
    // SAFETY: guaranteed by the caller.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Whether a descriptor number is open.
pub(crate) fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD on any number is harmless; it fails with EBADF if closed.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

/// Removes a variable from the environment.
///
/// # Safety
/// No other thread may read or write the environment concurrently.
pub(crate) unsafe fn remove_env(name: &str) {
    // SAFETY: guaranteed by the caller.
    unsafe { std::env::remove_var(name) };
}
