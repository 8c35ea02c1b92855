//! How many CPUs this process may use, and who decided.

use std::fmt;
use std::num::NonZeroUsize;

use crate::sys;

/// What decided [`cpu_count`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CpuSource {
    /// The scheduler affinity mask (`sched_getaffinity`, as `taskset` sets it).
    Affinity,
    /// A cgroup CPU quota (v2 `cpu.max`, v1 `cpu.cfs_quota_us`), rounded up,
    /// as container runtimes (`docker --cpus`) set it.
    CgroupQuota,
    /// SLURM's `SLURM_CPUS_PER_TASK`.
    Slurm,
    /// PBS/Torque's `NCPUS`.
    Pbs,
    /// `OMP_NUM_THREADS` (its first, outermost level).
    OpenMp,
    /// Nothing above was available: `std::thread::available_parallelism`,
    /// or 1.
    Fallback,
}

impl fmt::Display for CpuSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Affinity => "affinity mask",
            Self::CgroupQuota => "cgroup cpu quota",
            Self::Slurm => "SLURM_CPUS_PER_TASK",
            Self::Pbs => "NCPUS (PBS)",
            Self::OpenMp => "OMP_NUM_THREADS",
            Self::Fallback => "available parallelism",
        })
    }
}

/// The answer of [`cpu_count_source`]: how many CPUs, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuCount {
    /// The number of CPUs to use.
    pub count: NonZeroUsize,
    /// What decided it (the smallest limit wins; on a tie the scheduler's
    /// variable is named, since it states the allocation explicitly).
    pub source: CpuSource,
}

/// The number of CPUs this process may use.
///
/// Unlike Python's `os.cpu_count()` (every CPU of the machine), this is the
/// smallest of:
///
/// * the affinity mask (`taskset`, cpusets),
/// * the cgroup CPU quota, rounded up (containers, systemd `CPUQuota`),
/// * the scheduler's allocation when one is set, in this order of preference:
///   `SLURM_CPUS_PER_TASK`, PBS `NCPUS`, `OMP_NUM_THREADS`.
///
/// On a cluster node with 128 cores where the job was given 4, this is 4.
/// [`cpu_count_source`] says which limit decided.
///
/// # Examples
///
/// ```
/// let n = mproc_process::cpu_count();
/// assert!(n >= 1);
/// ```
pub fn cpu_count() -> usize {
    cpu_count_source().count.get()
}

/// [`cpu_count`] together with the limit that decided it.
pub fn cpu_count_source() -> CpuCount {
    decide(sys::affinity_count(), cgroup_quota(), |k| {
        std::env::var(k).ok()
    })
}

/// The scheduler variables, in order of preference.
const SCHEDULER_VARS: [(&str, CpuSource); 3] = [
    ("SLURM_CPUS_PER_TASK", CpuSource::Slurm),
    ("NCPUS", CpuSource::Pbs),
    ("OMP_NUM_THREADS", CpuSource::OpenMp),
];

/// Parses a positive CPU count (OpenMP lists one per nesting level: the
/// first is the outermost).
pub(crate) fn parse_count(v: &str) -> Option<NonZeroUsize> {
    let first = v.split(',').next()?.trim();
    first.parse::<usize>().ok().and_then(NonZeroUsize::new)
}

/// The decision, from its inputs (pure, so tests can feed it anything).
pub(crate) fn decide(
    affinity: Option<usize>,
    quota: Option<f64>,
    env: impl Fn(&str) -> Option<String>,
) -> CpuCount {
    let mut best: Option<CpuCount> = None;
    let mut offer = |n: Option<NonZeroUsize>, source: CpuSource| {
        if let Some(count) = n {
            // `<=`: a later (more specific) source wins a tie.
            if best.is_none_or(|b| count <= b.count) {
                best = Some(CpuCount { count, source });
            }
        }
    };
    offer(affinity.and_then(NonZeroUsize::new), CpuSource::Affinity);
    let quota = quota
        .filter(|q| q.is_finite() && *q > 0.0)
        .map(|q| q.ceil() as usize);
    offer(quota.and_then(NonZeroUsize::new), CpuSource::CgroupQuota);
    if let Some((n, source)) = SCHEDULER_VARS
        .iter()
        .find_map(|(k, s)| env(k).as_deref().and_then(parse_count).map(|n| (n, *s)))
    {
        offer(Some(n), source);
    }
    best.unwrap_or_else(|| CpuCount {
        count: std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN),
        source: CpuSource::Fallback,
    })
}

/// Parses cgroup v2 `cpu.max` ("max 100000" or "150000 100000").
pub(crate) fn parse_cpu_max(s: &str) -> Option<f64> {
    let mut it = s.split_whitespace();
    let quota = it.next()?;
    let period: f64 = it.next().map_or(Some(100_000.0), |p| p.parse().ok())?;
    if quota == "max" || period <= 0.0 {
        return None;
    }
    Some(quota.parse::<f64>().ok()? / period)
}

/// Parses cgroup v1 quota and period files (quota -1 means none).
pub(crate) fn parse_cfs(quota: &str, period: &str) -> Option<f64> {
    let q: i64 = quota.trim().parse().ok()?;
    let p: i64 = period.trim().parse().ok()?;
    if q <= 0 || p <= 0 {
        return None;
    }
    Some(q as f64 / p as f64)
}

/// The tightest CPU quota of this process's cgroup and its ancestors.
fn cgroup_quota() -> Option<f64> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let mut best: Option<f64> = None;
    let mut take = |q: Option<f64>| {
        if let Some(q) = q {
            best = Some(best.map_or(q, |b| b.min(q)));
        }
    };
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if id == "0" && ctrls.is_empty() {
            for dir in ancestors("/sys/fs/cgroup", path) {
                take(
                    std::fs::read_to_string(format!("{dir}/cpu.max"))
                        .ok()
                        .as_deref()
                        .and_then(parse_cpu_max),
                );
            }
        } else if ctrls.split(',').any(|c| c == "cpu") {
            for root in ["/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"] {
                for dir in ancestors(root, path) {
                    let q = std::fs::read_to_string(format!("{dir}/cpu.cfs_quota_us"));
                    let p = std::fs::read_to_string(format!("{dir}/cpu.cfs_period_us"));
                    if let (Ok(q), Ok(p)) = (q, p) {
                        take(parse_cfs(&q, &p));
                    }
                }
            }
        }
    }
    best
}

/// `root/path` and each of its ancestors up to `root`.
fn ancestors(root: &str, path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut p = path.trim_end_matches('/').to_owned();
    loop {
        out.push(format!("{root}{p}"));
        match p.rfind('/') {
            Some(i) => p.truncate(i),
            None => break,
        }
        if p.is_empty() {
            out.push(root.to_owned());
            break;
        }
    }
    out.dedup();
    out
}

#[cfg(test)]
mod tests;
