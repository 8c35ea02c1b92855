//! The Linux-only calls of mproc-process: pidfd, `PR_SET_PDEATHSIG`,
//! `/proc/self/task`, memfd, signalfd, `pipe2`, `prctl`.

use std::ffi::CString;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::ptr;

use mproc_shm::sys::{cvt, getpid};

use super::posix::{RawPid, own, write_all};

/// The running executable, as `posix_spawn` can start it again.
pub(crate) fn self_exe() -> io::Result<CString> {
    Ok(c"/proc/self/exe".into())
}

/// A close-on-exec, non-blocking pipe: (read end, write end).
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a valid, writable array of two c_ints.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) })?;
    Ok((own(fds[0]), own(fds[1])))
}

/// Opens a pidfd for a process (Linux 5.3+).
pub(crate) fn pidfd_open(pid: RawPid) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor.
    let fd = cvt(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })?;
    Ok(own(fd as RawFd))
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
