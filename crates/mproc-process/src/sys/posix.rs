//! The POSIX calls of mproc-process, shared by Linux and macOS: waiting for
//! and signalling children, `fork`, `posix_spawn`, descriptor plumbing.

use std::ffi::CString;
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;
use std::time::Duration;

use mproc_shm::sys::{cvt, cvt_retry, exit_now};

/// Takes ownership of a descriptor a system call just returned.
pub(super) fn own(fd: RawFd) -> OwnedFd {
    // SAFETY: every caller passes a descriptor that a system call has just
    // created and that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// The process id type.
pub(crate) type RawPid = libc::pid_t;

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

/// The parent process's id.
pub(crate) fn getppid() -> RawPid {
    // SAFETY: getppid cannot fail.
    unsafe { libc::getppid() }
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
    let mut iov = [IoSlice::new(head), IoSlice::new(body)];
    let mut bufs = &mut iov[..];
    while bufs.iter().any(|b| !b.is_empty()) {
        let n = match mproc_shm::sys::send_vectored_with_fds(sock, bufs, &[]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                wait_writable(sock)?;
                continue;
            }
            Err(e) => return Err(e),
        };
        IoSlice::advance_slices(&mut bufs, n);
    }
    Ok(())
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

/// Reads and discards everything pending on a non-blocking descriptor.
pub(crate) fn drain(fd: BorrowedFd<'_>) {
    let mut buf = [0u8; 1024];
    while matches!(read(fd, &mut buf), Ok(n) if n > 0) {}
}

/// Options for [`spawn_self`].
pub(crate) struct SpawnSelf<'a> {
    /// The descriptor the child finds at the same number (close-on-exec is
    /// cleared in the child only).
    pub(crate) keep: BorrowedFd<'a>,
    /// The complete environment of the child.
    pub(crate) env: &'a [CString],
}

/// Starts a new copy of the running executable ([`super::self_exe`]) with
/// `posix_spawn` (a `vfork`-speed clone in glibc), stdin on `/dev/null`, an
/// empty signal mask and the given environment. Returns the child's pid.
pub(crate) fn spawn_self(opts: &SpawnSelf<'_>) -> io::Result<RawPid> {
    let exe = super::self_exe()?;
    let argv0 = std::env::args_os()
        .next()
        .and_then(|a| CString::new(a.into_encoded_bytes()).ok());
    let argv0 = argv0.unwrap_or_else(|| CString::from(c"mproc-child"));
    let argv: [*mut libc::c_char; 2] = [argv0.as_ptr().cast_mut(), ptr::null_mut()];
    let mut envp: Vec<*mut libc::c_char> = opts.env.iter().map(|e| e.as_ptr().cast_mut()).collect();
    envp.push(ptr::null_mut());

    // SAFETY: init and destroy functions of the same type.
    let mut actions = unsafe {
        SpawnObject::new(
            libc::posix_spawn_file_actions_init,
            libc::posix_spawn_file_actions_destroy,
        )
    }?;
    let keep = opts.keep.as_raw_fd();
    // SAFETY: `actions` is initialised; dup2 of a descriptor onto itself
    // clears FD_CLOEXEC in the child (POSIX 2017, glibc >= 2.29).
    check(unsafe { libc::posix_spawn_file_actions_adddup2(&mut actions.value, keep, keep) })?;
    // SAFETY: `actions` is initialised and the path is NUL-terminated.
    check(unsafe {
        libc::posix_spawn_file_actions_addopen(
            &mut actions.value,
            0,
            c"/dev/null".as_ptr(),
            libc::O_RDONLY,
            0,
        )
    })?;
    // SAFETY: init and destroy functions of the same type.
    let mut attr =
        unsafe { SpawnObject::new(libc::posix_spawnattr_init, libc::posix_spawnattr_destroy) }?;
    let mut empty = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: `empty` is writable; sigemptyset initialises it.
    unsafe { libc::sigemptyset(empty.as_mut_ptr()) };
    // SAFETY: `attr` is initialised; `empty` was initialised above.
    check(unsafe { libc::posix_spawnattr_setsigmask(&mut attr.value, empty.as_ptr()) })?;
    // SAFETY: `attr` is initialised.
    check(unsafe {
        libc::posix_spawnattr_setflags(
            &mut attr.value,
            libc::POSIX_SPAWN_SETSIGMASK as libc::c_short,
        )
    })?;

    let mut pid: libc::pid_t = 0;
    // SAFETY: every pointer is valid for the call: the path, argv and envp are
    // NUL-terminated arrays of NUL-terminated strings that outlive it, and
    // `actions`/`attr` are initialised.
    check(unsafe {
        libc::posix_spawn(
            &mut pid,
            exe.as_ptr(),
            &actions.value,
            &attr.value,
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

/// A `posix_spawn` attributes or file-actions object, destroyed on drop.
struct SpawnObject<T> {
    value: T,
    destroy: unsafe extern "C" fn(*mut T) -> libc::c_int,
}

impl<T> SpawnObject<T> {
    /// Initialises a `T` with `init`; `destroy` runs on drop.
    ///
    /// # Safety
    /// `init` must fully initialise a `T` when it returns 0, and `destroy`
    /// must be its matching destroy function.
    unsafe fn new(
        init: unsafe extern "C" fn(*mut T) -> libc::c_int,
        destroy: unsafe extern "C" fn(*mut T) -> libc::c_int,
    ) -> io::Result<Self> {
        let mut a = MaybeUninit::<T>::uninit();
        // SAFETY: `a` is writable; `init` initialises it (this fn's contract).
        check(unsafe { init(a.as_mut_ptr()) })?;
        // SAFETY: initialised just above.
        let value = unsafe { a.assume_init() };
        Ok(Self { value, destroy })
    }
}

impl<T> Drop for SpawnObject<T> {
    fn drop(&mut self) {
        // SAFETY: `value` was initialised in `new` and is destroyed once, by
        // its matching function.
        unsafe { (self.destroy)(&mut self.value) };
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
