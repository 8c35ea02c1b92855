//! Linux system calls used by mproc-shm. Every `unsafe` call sits here.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;
use std::sync::atomic::AtomicU32;
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

/// Opens a POSIX shared-memory object (`shm_open`, close-on-exec).
pub(crate) fn shm_open(name: &str, flags: libc::c_int, mode: libc::mode_t) -> io::Result<OwnedFd> {
    let name = CString::new(name).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: `name` is a valid NUL-terminated string; flags and mode are plain integers.
    let fd = cvt(unsafe { libc::shm_open(name.as_ptr(), flags | libc::O_CLOEXEC, mode) })?;
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

/// Returns the size of a file (`fstat`).
pub(crate) fn file_size(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `fd` is valid and `st` points to writable memory of the right size.
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) })?;
    // SAFETY: `fstat` succeeded, so it initialised `st`.
    let st = unsafe { st.assume_init() };
    u64::try_from(st.st_size).map_err(|_| io::ErrorKind::InvalidData.into())
}

/// Maps `len` bytes of `fd` shared and read-write.
pub(crate) fn mmap_shared(fd: BorrowedFd<'_>, len: usize) -> io::Result<*mut u8> {
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
pub(crate) unsafe fn munmap(ptr: *mut u8, len: usize) {
    // SAFETY: guaranteed by the caller.
    let r = unsafe { libc::munmap(ptr.cast(), len) };
    debug_assert_eq!(r, 0, "munmap failed");
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

/// The page size.
#[allow(dead_code)]
pub(crate) fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let r = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(r).unwrap_or(4096)
}

/// Sends bytes plus descriptors with `SCM_RIGHTS`.
pub(crate) fn send_with_fds(
    sock: BorrowedFd<'_>,
    data: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<usize> {
    if fds.len() > crate::handle::MAX_FDS_PER_MESSAGE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "too many descriptors for one message",
        ));
    }
    if data.is_empty() && !fds.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "descriptors need at least one byte of data",
        ));
    }
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
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
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
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
    // SAFETY: `msg` points to a valid iovec and control buffer that outlive the call.
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
    let flags = libc::MSG_CMSG_CLOEXEC | flags;
    // SAFETY: `iov` covers memory the caller guarantees writable for `len`
    // bytes, and the control buffer is a live local array; both outlive the call.
    let n = cvt_retry(|| unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, flags) })?;
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
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        fds.clear();
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "too many descriptors in one message",
        ));
    }
    Ok(n as usize)
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

// The resource tracker's system calls (see `tracker.rs`).

/// A connected pair of `SOCK_SEQPACKET` Unix sockets, close-on-exec: each
/// `send` arrives as one whole record, and `recv` returns 0 once every
/// descriptor of the other end is closed.
pub(crate) fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    let ty = libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC;
    // SAFETY: `fds` is a writable array of two c_ints, as socketpair fills.
    cvt(unsafe { libc::socketpair(libc::AF_UNIX, ty, 0, fds.as_mut_ptr()) })?;
    // SAFETY: socketpair just returned both descriptors and nothing else owns them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

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

/// Ignores `sig` from now on.
pub(crate) fn ignore_signal(sig: libc::c_int) {
    // SAFETY: SIG_IGN is a valid disposition for every catchable signal.
    unsafe { libc::signal(sig, libc::SIG_IGN) };
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

/// Ends this process at once, without running exit handlers or `main`.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` is always safe to call; it does not return.
    unsafe { libc::_exit(code) }
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

/// Sets `O_NONBLOCK` on a descriptor (its open file description).
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: `fd` is valid for the call; F_GETFL takes no argument.
    let flags = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    if flags & libc::O_NONBLOCK == 0 {
        // SAFETY: `fd` is valid for the call; F_SETFL takes an int argument.
        cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) })?;
    }
    Ok(())
}

/// `poll(2)` on `fds` until one is ready or `deadline` (`None`: for ever)
/// passes; retries on `EINTR` and never returns before the deadline with
/// nothing ready. A descriptor that is not open is `EBADF`.
pub(crate) fn poll(
    fds: &mut [libc::pollfd],
    deadline: Option<std::time::Instant>,
) -> io::Result<usize> {
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
