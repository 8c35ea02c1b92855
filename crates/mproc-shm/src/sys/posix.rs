//! The POSIX system calls mproc uses on Linux and macOS alike.

use std::ffi::CString;
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;
use std::time::Duration;

use super::PeerGone;
use super::platform::{MSG_CMSG_CLOEXEC, POLLRDHUP, SOCK_CLOEXEC, SOCK_NONBLOCK};

/// Converts a `-1`-on-error return value into an `io::Result`.
///
/// # Errors
/// The calling thread's `errno` when `r` is `-1`.
pub fn cvt<T: Copy + PartialEq + From<i8>>(r: T) -> io::Result<T> {
    if r == T::from(-1) {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Like [`cvt`], retrying while the call fails with `EINTR`.
///
/// # Errors
/// As [`cvt`], except `EINTR`.
pub fn cvt_retry<T: Copy + PartialEq + From<i8>>(mut f: impl FnMut() -> T) -> io::Result<T> {
    loop {
        match cvt(f()) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

/// Opens a POSIX shared-memory object (`shm_open`; POSIX makes the new
/// descriptor close-on-exec).
pub(crate) fn shm_open(name: &str, flags: libc::c_int, mode: libc::mode_t) -> io::Result<OwnedFd> {
    let name = CString::new(name).map_err(|_| io::ErrorKind::InvalidInput)?;
    // The mode is a variadic argument on macOS, so it goes as a promoted `c_uint`.
    let mode = libc::c_uint::from(mode);
    // SAFETY: `name` is a valid NUL-terminated string; flags and mode are plain integers.
    let fd = cvt(unsafe { libc::shm_open(name.as_ptr(), flags, mode) })?;
    // SAFETY: `shm_open` just returned this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Removes a POSIX shared-memory name (`shm_unlink`).
pub(crate) fn shm_unlink(name: &str) -> io::Result<()> {
    let name = CString::new(name).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: `name` is a valid NUL-terminated string.
    cvt(unsafe { libc::shm_unlink(name.as_ptr()) })?;
    Ok(())
}

/// Sets the size of a file (`ftruncate`).
pub(crate) fn ftruncate(fd: BorrowedFd<'_>, len: u64) -> io::Result<()> {
    let len = libc::off_t::try_from(len).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: `fd` is a valid open descriptor for the duration of the call.
    cvt_retry(|| unsafe { libc::ftruncate(fd.as_raw_fd(), len) })?;
    Ok(())
}

/// Returns the size of a file (`fstat`).
///
/// # Errors
/// The OS error of `fstat`; `InvalidData` for a negative size.
pub fn file_size(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `fd` is valid and `st` points to writable memory of the right size.
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) })?;
    // SAFETY: `fstat` succeeded, so it initialised `st`.
    let st = unsafe { st.assume_init() };
    u64::try_from(st.st_size).map_err(|_| io::ErrorKind::InvalidData.into())
}

/// The (device, inode) pair that names the file behind `fd` system-wide.
///
/// # Errors
/// The OS error of `fstat`.
pub fn file_identity(fd: BorrowedFd<'_>) -> io::Result<(u64, u64)> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `fd` is valid and `st` points to writable memory of the right size.
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) })?;
    // SAFETY: `fstat` succeeded, so it initialised `st`.
    let st = unsafe { st.assume_init() };
    // `dev_t` is signed on macOS; any one-to-one mapping to u64 will do.
    #[allow(clippy::unnecessary_cast)]
    Ok((st.st_dev as u64, st.st_ino as u64))
}

/// Maps `len` bytes of `fd` shared and read-write.
///
/// # Errors
/// The OS error of `mmap`.
pub fn mmap_shared(fd: BorrowedFd<'_>, len: usize) -> io::Result<*mut u8> {
    // SAFETY: a fresh mapping chosen by the kernel (addr = NULL) aliases no Rust
    // object; `fd` is valid for the call.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(p.cast())
}

/// Unmaps a mapping made by [`mmap_shared`].
///
/// # Safety
/// `ptr`/`len` must be exactly a live mapping returned by [`mmap_shared`], and
/// no reference into it may be used afterwards.
pub unsafe fn munmap(ptr: *mut u8, len: usize) {
    // SAFETY: guaranteed by the caller.
    let r = unsafe { libc::munmap(ptr.cast(), len) };
    debug_assert_eq!(r, 0, "munmap failed");
}

/// The page size.
pub fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let r = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(r).unwrap_or(4096)
}

/// Sends bytes plus descriptors with `SCM_RIGHTS` (see
/// [`send_vectored_with_fds`]).
pub(crate) fn send_with_fds(
    sock: BorrowedFd<'_>,
    data: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<usize> {
    send_vectored_with_fds(sock, &[IoSlice::new(data)], fds)
}

/// One `sendmsg` of the concatenation of `bufs` on a socket, with `fds`
/// attached to its first byte (`SCM_RIGHTS`; none if `fds` is empty),
/// retrying on `EINTR` and never raising `SIGPIPE`. Returns the number of
/// bytes sent, which may be fewer than offered on a stream socket; the
/// descriptors went with the first of them.
///
/// # Errors
/// The OS error of `sendmsg`; `InvalidInput` for more than
/// [`MAX_FDS_PER_MESSAGE`] descriptors, or descriptors
/// without a byte to carry them.
pub fn send_vectored_with_fds(
    sock: BorrowedFd<'_>,
    bufs: &[IoSlice<'_>],
    fds: &[BorrowedFd<'_>],
) -> io::Result<usize> {
    if fds.len() > MAX_FDS_PER_MESSAGE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "too many descriptors for one message",
        ));
    }
    if !fds.is_empty() && bufs.iter().all(|b| b.is_empty()) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "descriptors need at least one byte of data",
        ));
    }
    let fd_bytes = std::mem::size_of_val(fds);
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE(fd_bytes as u32) } as usize;
    // u64 elements keep the control buffer aligned for `cmsghdr`. A few
    // descriptors (the usual case) fit on the stack: no allocation, which
    // matters right after a fork, where a heap write copies a shared page.
    let mut small = [0u64; 6];
    let mut large = Vec::new();
    let cbuf: &mut [u64] = if space <= size_of_val(&small) {
        &mut small
    } else {
        large.resize(space.div_ceil(8), 0u64);
        &mut large
    };
    // SAFETY: an all-zero msghdr is a valid value (null pointers, zero lengths).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    // `IoSlice` is ABI-compatible with `iovec` on Unix; sendmsg only reads them.
    msg.msg_iov = bufs.as_ptr().cast_mut().cast::<libc::iovec>();
    msg.msg_iovlen = bufs.len() as _;
    if !fds.is_empty() {
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: msg_control points to `space` writable, aligned bytes, enough for one header.
        let cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
        // SAFETY: `cmsg` is non-null (the buffer holds a header) and points into `cbuf`.
        unsafe {
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(fd_bytes as u32) as _;
        }
        // SAFETY: CMSG_DATA points at `fd_bytes` writable bytes inside `cbuf`,
        // room for exactly `fds.len()` c_ints (written unaligned).
        let slots = unsafe { libc::CMSG_DATA(cmsg) }.cast::<libc::c_int>();
        for (i, f) in fds.iter().enumerate() {
            // SAFETY: `i < fds.len()`: inside the room described above.
            unsafe { ptr::write_unaligned(slots.add(i), f.as_raw_fd()) };
        }
    }
    // SAFETY: `msg` points to the caller's iovecs and the control buffer, all
    // of which outlive the call.
    let n = cvt_retry(|| unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) })?;
    Ok(n as usize)
}

/// Receives bytes plus descriptors sent with `SCM_RIGHTS`.
pub(crate) fn recv_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> io::Result<usize> {
    // SAFETY: `buf` is a live, writable slice of `buf.len()` bytes.
    unsafe { recv_with_fds_raw(sock, buf.as_mut_ptr(), buf.len(), fds, 0) }
}

/// The largest number of descriptors one `SCM_RIGHTS` message may carry
/// (Linux's `SCM_MAX_FD`; the handle side table's limit too).
pub const MAX_FDS_PER_MESSAGE: usize = 253;

/// Size in u64 words of a control buffer that holds `MAX_FDS_PER_MESSAGE`
/// descriptors: CMSG_SPACE(253 * 4) = 16 + 1012, rounded up to 8 = 1032 bytes.
const CBUF_WORDS: usize = 130;

/// One `recvmsg` into raw memory collecting `SCM_RIGHTS` descriptors
/// (close-on-exec), retrying on `EINTR`; `flags` are added to the call's
/// (`MSG_DONTWAIT`, `MSG_PEEK`).
///
/// # Safety
/// `buf` must be valid for writes of `len` bytes.
pub(crate) unsafe fn recv_with_fds_raw(
    sock: BorrowedFd<'_>,
    buf: *mut u8,
    len: usize,
    fds: &mut Vec<OwnedFd>,
    flags: libc::c_int,
) -> io::Result<usize> {
    let mut iov = libc::iovec {
        iov_base: buf.cast(),
        iov_len: len,
    };
    let mut cbuf = [0u64; CBUF_WORDS];
    // SAFETY: an all-zero msghdr is a valid value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cbuf) as _;
    let flags = MSG_CMSG_CLOEXEC | flags;
    // SAFETY: `iov` covers memory the caller guarantees writable for `len`
    // bytes, and the control buffer is a live local array; both outlive the call.
    let n = cvt_retry(|| unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, flags) })?;
    let first_new = fds.len();
    if msg.msg_controllen > 0 {
        // SAFETY: after a successful recvmsg, the control buffer holds `msg_controllen` valid bytes.
        let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
        while !cmsg.is_null() {
            // SAFETY: `cmsg` is a header inside the control buffer, as CMSG_FIRSTHDR/NXTHDR guarantee.
            let (level, ty, clen) = unsafe {
                (
                    (*cmsg).cmsg_level,
                    (*cmsg).cmsg_type,
                    (*cmsg).cmsg_len as usize,
                )
            };
            if level == libc::SOL_SOCKET && ty == libc::SCM_RIGHTS {
                // SAFETY: CMSG_LEN(0) is a pure size computation.
                let header = unsafe { libc::CMSG_LEN(0) } as usize;
                let count = clen.saturating_sub(header) / std::mem::size_of::<libc::c_int>();
                // SAFETY: CMSG_DATA points at `count` c_ints the kernel wrote; they may be unaligned.
                let data = unsafe { libc::CMSG_DATA(cmsg) }.cast::<libc::c_int>();
                for i in 0..count {
                    // SAFETY: `i < count`, within the data the kernel wrote.
                    let raw = unsafe { data.add(i).read_unaligned() };
                    // SAFETY: the kernel installed this descriptor for us; nothing else owns it.
                    fds.push(unsafe { OwnedFd::from_raw_fd(raw) });
                }
            }
            // SAFETY: `cmsg` is a valid header of `msg`.
            cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
        }
    }
    if MSG_CMSG_CLOEXEC == 0 {
        // No atomic close-on-exec here: set it now (a concurrent fork+exec
        // in this window may leak these descriptors into that program).
        for fd in &fds[first_new..] {
            set_cloexec(fd.as_fd())?;
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        fds.clear();
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "too many descriptors in one message",
        ));
    }
    Ok(n as usize)
}

/// A connected pair of close-on-exec, blocking Unix stream sockets (see
/// [`socketpair_with`]).
///
/// # Errors
/// The OS error of `socketpair` or `fcntl`.
pub fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    socketpair_with(libc::SOCK_STREAM, false)
}

/// A connected pair of close-on-exec Unix sockets of type `ty`
/// (`SOCK_STREAM`, or `SOCK_SEQPACKET`: each `send` arrives as one whole
/// record), non-blocking if asked. `recv` returns 0 once every descriptor of
/// the other end is closed.
///
/// # Errors
/// The OS error of `socketpair` or `fcntl`.
pub fn socketpair_with(ty: libc::c_int, nonblocking: bool) -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    let nonblock = if nonblocking { SOCK_NONBLOCK } else { 0 };
    let ty = ty | SOCK_CLOEXEC | nonblock;
    // SAFETY: `fds` is a writable array of two c_ints, as socketpair fills.
    cvt(unsafe { libc::socketpair(libc::AF_UNIX, ty, 0, fds.as_mut_ptr()) })?;
    // SAFETY: socketpair just returned both descriptors and nothing else owns them.
    let pair = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    for fd in [&pair.0, &pair.1] {
        // Where the type cannot carry the flags, set them now (a concurrent
        // fork+exec in this window may leak the pair into that program).
        if SOCK_CLOEXEC == 0 {
            set_cloexec(fd.as_fd())?;
        }
        if nonblocking && SOCK_NONBLOCK == 0 {
            set_nonblocking(fd.as_fd(), true)?;
        }
    }
    Ok(pair)
}

/// Sets `FD_CLOEXEC` on a descriptor.
///
/// # Errors
/// The OS error of `fcntl`.
pub fn set_cloexec(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: `fd` is a valid descriptor; F_SETFD takes an int argument.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) })?;
    Ok(())
}

/// Sets or clears `O_NONBLOCK`.
///
/// # Errors
/// The OS error of `fcntl`.
pub fn set_nonblocking(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
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

/// Whether the other end of a socket is gone (see [`PeerGone`] for what
/// counts), without waiting and without consuming anything. A descriptor
/// that cannot be polled counts as gone.
pub fn peer_gone(fd: BorrowedFd<'_>, what: PeerGone) -> bool {
    let half = what == PeerGone::StoppedSending;
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: if half { POLLRDHUP } else { 0 },
        revents: 0,
    };
    // SAFETY: `p` is one valid pollfd; a zero timeout does not block.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    if n < 0 {
        return io::Error::last_os_error().kind() != io::ErrorKind::Interrupted;
    }
    let gone = libc::POLLHUP | libc::POLLERR | libc::POLLNVAL | p.events;
    if p.revents & gone != 0 {
        return true;
    }
    if half && POLLRDHUP == 0 {
        // No POLLRDHUP here: a peer that stopped sending makes a peek read
        // end of file at once.
        let mut b = 0u8;
        // SAFETY: `b` is one writable byte; MSG_PEEK leaves the data queued.
        let r = unsafe {
            libc::recv(
                fd.as_raw_fd(),
                (&raw mut b).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        return r == 0;
    }
    false
}

/// Fills `buf` from the OS random source.
///
/// # Errors
/// The random source failed (very old kernels, seccomp filters).
pub fn random(buf: &mut [u8]) -> io::Result<()> {
    getrandom::fill(buf).map_err(|e| io::Error::other(e.to_string()))
}

/// The calling process's id (a system call; [`crate::mutex::current_pid`]
/// caches it).
pub fn getpid() -> libc::pid_t {
    // SAFETY: getpid has no preconditions and cannot fail.
    unsafe { libc::getpid() }
}

/// Registers `child` to run in the child after every `fork()` made through
/// libc (`pthread_atfork`).
pub(crate) fn at_fork_child(child: extern "C" fn()) {
    // SAFETY: the handler is a plain `extern "C" fn` that only stores to
    // atomics (async-signal-safe), and the other two handlers are absent.
    let _ = unsafe { libc::pthread_atfork(None, None, Some(child)) };
}

/// The number of CPUs online; `None` when it cannot be read.
pub fn online_cpus() -> Option<u32> {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    u32::try_from(n).ok().filter(|&n| n > 0)
}

/// Whether a process with this id exists (`kill(pid, 0)`); a zombie does.
pub(crate) fn process_exists(pid: libc::pid_t) -> bool {
    // SAFETY: signal 0 only checks that the process exists; nothing is sent.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

// The resource tracker's system calls (see `tracker.rs`).

/// A close-on-exec duplicate of `fd` numbered `min` or above.
pub(crate) fn dup_at_least(fd: BorrowedFd<'_>, min: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: `fd` is open; F_DUPFD_CLOEXEC takes an int and returns a new descriptor.
    let r = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min) })?;
    // SAFETY: fcntl just returned this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

/// Sends `record` as one message, blocking while the socket buffer is full;
/// a peer that is gone is `EPIPE` (never `SIGPIPE`).
pub(crate) fn send_record(sock: BorrowedFd<'_>, record: &[u8]) -> io::Result<()> {
    // SAFETY: `record` is a live buffer of `record.len()` bytes.
    let n = cvt_retry(|| unsafe {
        libc::send(
            sock.as_raw_fd(),
            record.as_ptr().cast(),
            record.len(),
            libc::MSG_NOSIGNAL,
        )
    })?;
    debug_assert_eq!(n as usize, record.len(), "a record is sent whole");
    Ok(())
}

/// Receives one record into `buf` (cut to its length); `Ok(0)` once every
/// holder of the other end is gone.
pub(crate) fn recv_record(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is a live, writable buffer of `buf.len()` bytes.
    let n = cvt_retry(|| unsafe {
        libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0)
    })?;
    Ok(n as usize)
}

/// Waits until `fd` is readable (or its peer is gone); `false` if `timeout`
/// passed first.
pub(crate) fn wait_readable(fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: `p` is one valid pollfd for the duration of the call.
    let n = cvt_retry(|| unsafe { libc::poll(&mut p, 1, ms) })?;
    Ok(n > 0)
}

/// The inode of a socket, which tells it apart from any other open file
/// (sockets share one device); `None` if `fd` is not an open socket.
pub(crate) fn socket_inode(fd: RawFd) -> Option<u64> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `st` points to writable memory of the right size; a closed or
    // foreign `fd` is only an error (EBADF) or someone else's file.
    cvt(unsafe { libc::fstat(fd, st.as_mut_ptr()) }).ok()?;
    // SAFETY: `fstat` succeeded, so it initialised `st`.
    let st = unsafe { st.assume_init() };
    (st.st_mode & libc::S_IFMT == libc::S_IFSOCK).then_some(st.st_ino)
}

/// Whether `fd` is an open `SOCK_SEQPACKET` socket.
pub(crate) fn is_seqpacket(fd: RawFd) -> bool {
    let mut ty: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `ty` and `len` are writable and `len` holds the size of `ty`.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&raw mut ty).cast(),
            &mut len,
        )
    };
    r == 0 && ty == libc::SOCK_SEQPACKET
}

/// Ignores `sig` from now on (`SIG_IGN`).
pub fn ignore_signal(sig: libc::c_int) {
    // SAFETY: SIG_IGN is a valid disposition for every catchable signal.
    unsafe { libc::signal(sig, libc::SIG_IGN) };
}

/// Gives `sig` its default action back (`SIG_DFL`).
pub fn default_signal(sig: libc::c_int) {
    // SAFETY: SIG_DFL is a valid disposition for every signal.
    unsafe { libc::signal(sig, libc::SIG_DFL) };
}

/// Ends this process at once with `code`, without running exit handlers,
/// destructors or the rest of `main` (`_exit`).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` is always safe to call; it does not return.
    unsafe { libc::_exit(code) }
}

/// `poll(2)` on `fds` until one is ready or `deadline` (`None`: for ever)
/// passes; retries on `EINTR` and never returns before the deadline with
/// nothing ready.
///
/// # Errors
/// The OS error of `poll`; `EBADF` for a descriptor that is not open
/// (`POLLNVAL`).
pub fn poll(fds: &mut [libc::pollfd], deadline: Option<std::time::Instant>) -> io::Result<usize> {
    loop {
        let timeout = match deadline {
            None => -1,
            Some(d) => {
                let left = d.saturating_duration_since(std::time::Instant::now());
                // Round up so that a wait never ends before the deadline.
                left.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as libc::c_int
            }
        };
        // SAFETY: `fds` is a valid, writable array of `fds.len()` pollfd structures.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        let n = match cvt(r) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => r?,
        };
        if n == 0 && deadline.is_some_and(|d| std::time::Instant::now() < d) {
            // poll's millisecond clock may wake a little early.
            continue;
        }
        if n > 0 && fds.iter().any(|p| p.revents & libc::POLLNVAL != 0) {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        }
        return Ok(n as usize);
    }
}
