//! Stand-ins for platforms other than Linux: the crate compiles, and starting
//! a process returns an `Unsupported` error. `cpu_count` falls back to
//! `std::thread::available_parallelism`.

use std::ffi::CString;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};
use std::time::Duration;

fn unsupported<T>() -> io::Result<T> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "mproc-process supports Linux only",
    ))
}

pub(crate) type RawPid = libc::pid_t;

pub(crate) fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    unsupported()
}

pub(crate) fn socketpair_nonblocking() -> io::Result<(OwnedFd, OwnedFd)> {
    unsupported()
}

pub(crate) fn pending_bytes(_fd: BorrowedFd<'_>) -> io::Result<usize> {
    unsupported()
}

pub(crate) fn wait_writable(_fd: BorrowedFd<'_>) -> io::Result<()> {
    unsupported()
}

pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    unsupported()
}

pub(crate) fn set_nonblocking(_fd: BorrowedFd<'_>, _on: bool) -> io::Result<()> {
    unsupported()
}

pub(crate) fn set_cloexec(_fd: BorrowedFd<'_>) -> io::Result<()> {
    unsupported()
}

pub(crate) fn write_all(_fd: BorrowedFd<'_>, _data: &[u8]) -> io::Result<()> {
    unsupported()
}

pub(crate) fn read(_fd: BorrowedFd<'_>, _buf: &mut [u8]) -> io::Result<usize> {
    unsupported()
}

pub(crate) fn poll(_fds: &mut [libc::pollfd], _timeout: Option<Duration>) -> io::Result<usize> {
    unsupported()
}

pub(crate) fn pollin(fd: BorrowedFd<'_>) -> libc::pollfd {
    use std::os::fd::AsRawFd;
    libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }
}

pub(crate) fn ready(p: &libc::pollfd) -> bool {
    p.revents != 0
}

pub(crate) fn pidfd_open(_pid: RawPid) -> io::Result<OwnedFd> {
    unsupported()
}

pub(crate) fn waitpid(_pid: RawPid, _block: bool) -> io::Result<Option<libc::c_int>> {
    unsupported()
}

pub(crate) fn waitpid_any() -> io::Result<Option<(RawPid, libc::c_int)>> {
    unsupported()
}

pub(crate) fn decode_status(status: libc::c_int) -> (bool, i32) {
    (true, status)
}

pub(crate) fn kill(_pid: RawPid, _sig: libc::c_int) -> io::Result<()> {
    unsupported()
}

pub(crate) fn pidfd_send_signal(_fd: BorrowedFd<'_>, _sig: libc::c_int) -> io::Result<()> {
    unsupported()
}

pub(crate) fn getpid() -> RawPid {
    std::process::id() as RawPid
}

pub(crate) fn set_name_from_argv0() {}

pub(crate) fn gettid() -> RawPid {
    getpid()
}

pub(crate) fn getppid() -> RawPid {
    0
}

pub(crate) fn set_parent_death_signal() -> io::Result<()> {
    unsupported()
}

pub(crate) fn thread_count() -> io::Result<usize> {
    unsupported()
}

pub(crate) fn single_threaded() -> io::Result<bool> {
    unsupported()
}

pub(crate) fn wait_exited_nowait(_pid: RawPid) -> io::Result<()> {
    unsupported()
}

pub(crate) fn memfd_with(_data: &[u8]) -> io::Result<OwnedFd> {
    unsupported()
}

pub(crate) fn read_file_prefix(_fd: BorrowedFd<'_>, _len: usize) -> io::Result<Vec<u8>> {
    unsupported()
}

/// The result of [`fork`] (never produced here).
#[allow(dead_code)]
pub(crate) enum Forked {
    /// In the parent, with the child's pid.
    Parent(RawPid),
    /// In the child.
    Child,
}

/// # Safety
/// Never forks here; always safe.
pub(crate) unsafe fn fork() -> io::Result<Forked> {
    unsupported()
}

pub(crate) fn exit_now(code: i32) -> ! {
    std::process::exit(code)
}

pub(crate) fn random(_buf: &mut [u8]) -> io::Result<()> {
    unsupported()
}

pub(crate) fn kill_self() -> ! {
    std::process::abort()
}

pub(crate) fn stdin_to_devnull() -> io::Result<()> {
    unsupported()
}

pub(crate) fn dup_onto(_fd: BorrowedFd<'_>, _target: RawFd) -> io::Result<()> {
    unsupported()
}

pub(crate) fn send_two(_sock: BorrowedFd<'_>, _head: &[u8], _body: &[u8]) -> io::Result<()> {
    unsupported()
}

pub(crate) fn set_signal(_sig: libc::c_int, _ignore: bool) {}

pub(crate) fn block_sigchld(_block: bool) -> io::Result<()> {
    unsupported()
}

pub(crate) fn signalfd_sigchld() -> io::Result<OwnedFd> {
    unsupported()
}

pub(crate) fn drain(_fd: BorrowedFd<'_>) {}

pub(crate) fn affinity_count() -> Option<usize> {
    None
}

/// Options for [`spawn_self`].
pub(crate) struct SpawnSelf<'a> {
    pub(crate) keep: BorrowedFd<'a>,
    pub(crate) env: &'a [CString],
}

pub(crate) fn spawn_self(opts: &SpawnSelf<'_>) -> io::Result<RawPid> {
    let _ = (opts.keep, opts.env);
    unsupported()
}

/// Closes a descriptor that is owned by a value that will never drop (it
/// is forgotten).
///
/// # Safety
/// `fd` must not be used or closed again by anything in this process.
pub(crate) unsafe fn close_unowned(fd: RawFd) {
    let _ = fd;
}

/// # Safety
/// `fd` must be open and owned by nothing else in this process.
pub(crate) unsafe fn adopt(fd: RawFd) -> OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: guaranteed by the caller.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

pub(crate) fn fd_is_open(_fd: RawFd) -> bool {
    false
}

/// # Safety
/// No other thread may read or write the environment concurrently.
pub(crate) unsafe fn remove_env(name: &str) {
    // SAFETY: guaranteed by the caller.
    unsafe { std::env::remove_var(name) };
}
