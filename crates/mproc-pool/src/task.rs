//! The task model: `count` items of one job for one function, with their
//! encoded arguments, and how a task is cut into smaller ones (for a
//! worker's budget, a split, or around the item a dead worker was running).

use std::os::fd::OwnedFd;
use std::sync::Arc;

use crate::fast_path::ByteSource;
use crate::job::Sink;
use crate::wire::Kind;

/// A task's encoded bytes: its own, or a range of a shared source.
pub(crate) enum Data {
    Owned(Vec<u8>),
    Shared {
        src: Arc<dyn ByteSource>,
        start: usize,
        end: usize,
    },
}

impl Data {
    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            Self::Owned(v) => v,
            Self::Shared { src, start, end } => src.bytes().get(*start..*end).unwrap_or_default(),
        }
    }
}

/// A task's encoded items.
pub(crate) struct Payload {
    pub(crate) bytes: Data,
    pub(crate) fds: Vec<OwnedFd>,
    /// `Seq`: where each item starts (`count + 1` entries).
    pub(crate) offsets: Vec<usize>,
    /// `Pod`: bytes per item.
    pub(crate) elem: usize,
    /// `Range`: the first item.
    pub(crate) start: i128,
}

/// `count` items of one job for one function.
pub(crate) struct Task {
    pub(crate) job: Arc<dyn Sink>,
    pub(crate) entry: i64,
    pub(crate) kind: Kind,
    pub(crate) first: usize,
    pub(crate) count: usize,
    pub(crate) payload: Arc<Payload>,
    pub(crate) attempts: u32,
    /// Sized by the pool (no explicit chunk size): a range task may be
    /// split while it runs, to keep every worker busy.
    pub(crate) adaptive: bool,
    /// While its function is unmeasured, a range task travels with a time
    /// budget and the worker cuts it to size.
    pub(crate) probe: bool,
    /// Items among which a worker died: run one by one, so that if one
    /// kills its worker again, it is known (see `TaskDesc::careful`).
    pub(crate) careful: bool,
}

impl Task {
    /// A task of `count` items of `job` starting at item `first`, never
    /// attempted, sized by the caller (not adaptive).
    pub(crate) fn new(
        job: Arc<dyn Sink>,
        entry: i64,
        kind: Kind,
        first: usize,
        count: usize,
        payload: Payload,
    ) -> Self {
        Self {
            job,
            entry,
            kind,
            first,
            count,
            payload: Arc::new(payload),
            attempts: 0,
            adaptive: false,
            probe: false,
            careful: false,
        }
    }

    /// Whether the rest of this task may be split off for another worker
    /// while it runs: an adaptive range, or adaptive encoded items without
    /// descriptors (a slice of plain numbers would be cheap too, but their
    /// chunks are small).
    pub(crate) fn splittable(&self) -> bool {
        self.adaptive
            && match self.kind {
                Kind::Range => true,
                Kind::Seq => self.payload.fds.is_empty(),
                Kind::Pod => false,
            }
    }

    /// Items `a..b` of this task as a task of their own, if the encoding
    /// allows (items with descriptors cannot be split).
    pub(crate) fn slice(&self, a: usize, b: usize) -> Option<Task> {
        if a == 0 && b == self.count {
            return Some(self.clone_ref());
        }
        let p = &self.payload;
        if !p.fds.is_empty() {
            return None;
        }
        let payload = match self.kind {
            Kind::Range => {
                let start = p.start.wrapping_add(a as i128);
                Payload {
                    bytes: Data::Owned(postcard::to_stdvec(&start).ok()?),
                    fds: Vec::new(),
                    offsets: Vec::new(),
                    elem: 0,
                    start,
                }
            }
            Kind::Pod => Payload {
                bytes: Data::Owned(p.bytes.as_slice().get(a * p.elem..b * p.elem)?.to_vec()),
                fds: Vec::new(),
                offsets: Vec::new(),
                elem: p.elem,
                start: 0,
            },
            Kind::Seq => {
                let (s, e) = (*p.offsets.get(a)?, *p.offsets.get(b)?);
                Payload {
                    bytes: Data::Owned(p.bytes.as_slice().get(s..e)?.to_vec()),
                    fds: Vec::new(),
                    offsets: p.offsets[a..=b].iter().map(|o| o - s).collect(),
                    elem: 0,
                    start: 0,
                }
            }
        };
        Some(Task {
            job: self.job.clone(),
            entry: self.entry,
            kind: self.kind,
            first: self.first + a,
            count: b - a,
            payload: Arc::new(payload),
            attempts: self.attempts,
            adaptive: self.adaptive,
            probe: self.probe,
            careful: self.careful,
        })
    }

    fn clone_ref(&self) -> Task {
        Task {
            job: self.job.clone(),
            entry: self.entry,
            kind: self.kind,
            first: self.first,
            count: self.count,
            payload: self.payload.clone(),
            attempts: self.attempts,
            adaptive: self.adaptive,
            probe: self.probe,
            careful: self.careful,
        }
    }
}
