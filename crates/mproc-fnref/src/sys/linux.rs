//! The operating-system calls of this crate (Linux).

use std::io;
use std::mem::MaybeUninit;

use super::Range;
use crate::ExeId;

/// Identifies the running executable (device, inode, size, mtime).
pub(crate) fn exe_id() -> io::Result<ExeId> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    let path = c"/proc/self/exe";
    // SAFETY: `path` is NUL-terminated and `st` points to writable memory of the right size.
    if unsafe { libc::stat(path.as_ptr(), st.as_mut_ptr()) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `stat` succeeded, so it initialised `st`.
    let st = unsafe { st.assume_init() };
    Ok(ExeId {
        dev: st.st_dev,
        ino: st.st_ino,
        size: st.st_size as u64,
        mtime: st.st_mtime,
        mtime_nsec: st.st_mtime_nsec,
    })
}

struct Search {
    anchor: usize,
    found: Vec<Range>,
}

const PF_X: u32 = 1;
const PF_R: u32 = 4;

unsafe extern "C" fn visit(
    info: *mut libc::dl_phdr_info,
    _size: libc::size_t,
    data: *mut libc::c_void,
) -> libc::c_int {
    // SAFETY: `data` is the `&mut Search` passed to dl_iterate_phdr below,
    // alive for the whole iteration; `info` is valid during this callback.
    let (search, info) = unsafe { (&mut *data.cast::<Search>(), &*info) };
    let base = info.dlpi_addr as usize;
    let mut ranges = Vec::new();
    for i in 0..info.dlpi_phnum as usize {
        // SAFETY: `dlpi_phdr` points to `dlpi_phnum` program headers.
        let ph = unsafe { &*info.dlpi_phdr.add(i) };
        if ph.p_type == libc::PT_LOAD && ph.p_flags & PF_R != 0 {
            let start = base.wrapping_add(ph.p_vaddr as usize);
            ranges.push(Range {
                start,
                end: start.saturating_add(ph.p_memsz as usize),
                exec: ph.p_flags & PF_X != 0,
            });
        }
    }
    if ranges
        .iter()
        .any(|r| r.exec && search.anchor >= r.start && search.anchor < r.end)
    {
        search.found = ranges;
        return 1;
    }
    0
}

/// The loaded, readable segments of the object (the executable) that
/// contains `anchor`.
pub(crate) fn image_segments(anchor: usize) -> Vec<Range> {
    let mut search = Search {
        anchor,
        found: Vec::new(),
    };
    // SAFETY: `visit` matches the callback type and only reads the headers it
    // is given; `search` outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(visit), (&mut search as *mut Search).cast()) };
    search.found
}
