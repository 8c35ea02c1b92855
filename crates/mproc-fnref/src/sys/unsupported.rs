//! Stubs for platforms other than Linux: everything is `Unsupported`.

use std::io;

use crate::ExeId;

pub(crate) fn exe_id() -> io::Result<ExeId> {
    Err(io::ErrorKind::Unsupported.into())
}

/// The loaded segments of this executable: none known here, so no
/// reference resolves.
pub(crate) fn image_segments(_anchor: usize) -> Vec<super::Range> {
    Vec::new()
}
