//! The benchmark harness: scenarios, placements, child roles and reporting.
//!
//! A [`Scenario`] is a named function that measures one thing and returns one
//! or more [`Measurement`]s. The harness runs it `--reps` times and reports the
//! median of each measurement, in text or as JSON lines, and with `--python`
//! also runs `bench/python/<scenario>.py` (CPython's multiprocessing doing the
//! same work) and prints the ratio.
//!
//! Scenarios that need a second process either use mproc's own `Process`, or
//! re-execute this binary in a [`Role`] with [`Ctx::spawn`], which pins the
//! child according to the placement and hands it descriptors.

use std::error::Error;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The error type scenarios return.
pub(crate) type BenchResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

/// Where the processes of a scenario run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placement {
    /// Wherever the scheduler puts them.
    Default,
    /// Parent and children pinned to the same CPU (CPU 0).
    Same,
    /// Parent pinned to CPU 0 and children to CPU 1.
    Split,
}

impl Placement {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "default" => Some(Self::Default),
            "same" => Some(Self::Same),
            "split" => Some(Self::Split),
            _ => None,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Default => "default",
            Self::Same => "same",
            Self::Split => "split",
        }
    }

    /// The CPU the parent (the measuring process) runs on.
    pub(crate) fn parent_cpu(self) -> Option<usize> {
        match self {
            Self::Default => None,
            Self::Same | Self::Split => Some(0),
        }
    }

    /// The CPU a child runs on.
    pub(crate) fn child_cpu(self) -> Option<usize> {
        match self {
            Self::Default => None,
            Self::Same => Some(0),
            Self::Split => Some(1),
        }
    }
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a larger or a smaller value is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Better {
    Higher,
    Lower,
}

impl Better {
    fn as_str(self) -> &'static str {
        match self {
            Self::Higher => "higher",
            Self::Lower => "lower",
        }
    }
}

/// One measured figure.
#[derive(Debug, Clone)]
pub(crate) struct Measurement {
    /// A sub-name when a scenario reports several figures (e.g. "in", "out"); empty otherwise.
    pub(crate) metric: &'static str,
    pub(crate) value: f64,
    pub(crate) unit: &'static str,
    pub(crate) better: Better,
    /// Extra facts shown beside the figure (e.g. how often a lock changed hands).
    pub(crate) note: String,
    /// A value the figure cannot honestly exceed (a speed-up above the CPUs
    /// at work); a median above it marks the row as a broken measurement.
    pub(crate) ceiling: Option<f64>,
}

impl Measurement {
    /// A figure where higher is better.
    pub(crate) fn higher(value: f64, unit: &'static str) -> Self {
        Self {
            metric: "",
            value,
            unit,
            better: Better::Higher,
            note: String::new(),
            ceiling: None,
        }
    }

    /// A figure where lower is better.
    pub(crate) fn lower(value: f64, unit: &'static str) -> Self {
        Self {
            metric: "",
            value,
            unit,
            better: Better::Lower,
            note: String::new(),
            ceiling: None,
        }
    }

    /// Names the figure within its scenario.
    pub(crate) fn metric(mut self, metric: &'static str) -> Self {
        self.metric = metric;
        self
    }

    /// Attaches a note.
    pub(crate) fn note(mut self, note: impl Into<String>) -> Self {
        self.note = note.into();
        self
    }

    /// Sets the value the figure cannot honestly exceed.
    pub(crate) fn ceiling(mut self, ceiling: f64) -> Self {
        self.ceiling = Some(ceiling);
        self
    }

    /// Whether the figure is above its ceiling: the measurement is broken.
    pub(crate) fn is_broken(&self) -> bool {
        self.ceiling.is_some_and(|c| self.value > c)
    }
}

/// A named benchmark scenario.
pub(crate) struct Scenario {
    pub(crate) name: &'static str,
    /// One line: what is measured, with N/T.
    pub(crate) about: &'static str,
    pub(crate) run: fn(&Ctx) -> BenchResult<Vec<Measurement>>,
}

/// A child role: code a re-executed copy of this binary runs.
pub(crate) struct Role {
    pub(crate) name: &'static str,
    /// Receives the argument string and the descriptors handed over (in order).
    pub(crate) run: fn(arg: &str, fds: Vec<OwnedFd>) -> BenchResult<()>,
}

/// What a scenario knows about its run.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    pub(crate) placement: Placement,
}

const ENV_ROLE: &str = "MPROC_BENCH_ROLE";
const ENV_ARG: &str = "MPROC_BENCH_ARG";
const ENV_NFDS: &str = "MPROC_BENCH_NFDS";
const ENV_CPU: &str = "MPROC_BENCH_CPU";
/// The first descriptor number a role child receives.
const FIRST_FD: i32 = 3;

impl Ctx {
    /// Starts a copy of this binary running `role` with `arg`, pinned to the
    /// placement's child CPU, with `fds` available as its descriptors 3, 4, …
    pub(crate) fn spawn(
        &self,
        role: &str,
        arg: &str,
        fds: &[BorrowedFd<'_>],
    ) -> BenchResult<RoleChild> {
        let exe = std::env::current_exe()?;
        let mut cmd = Command::new(exe);
        cmd.env(ENV_ROLE, role)
            .env(ENV_ARG, arg)
            .env(ENV_NFDS, fds.len().to_string());
        match self.placement.child_cpu() {
            Some(cpu) => cmd.env(ENV_CPU, cpu.to_string()),
            None => cmd.env_remove(ENV_CPU),
        };
        let raw: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
        mproc_testkit::pass_fds(&mut cmd, &raw, FIRST_FD);
        let child = cmd.spawn()?;
        Ok(RoleChild { child: Some(child) })
    }
}

impl Ctx {
    /// Starts `role` with `v` (which may hold mproc handles) handed over: its
    /// bytes as the argument (hex), its descriptors placed in the child. The
    /// child gets it back with [`unpack`].
    pub(crate) fn spawn_with<T: Serialize>(&self, role: &str, v: &T) -> BenchResult<RoleChild> {
        let (bytes, fds) = mproc_shm::handle::to_bytes_with_fds(v)?;
        let borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
        self.spawn(role, &mproc_testkit::hex(&bytes), &borrowed)
    }
}

/// In a role child started by [`Ctx::spawn_with`]: the value handed over.
pub(crate) fn unpack<T: DeserializeOwned>(arg: &str, fds: Vec<OwnedFd>) -> BenchResult<T> {
    let bytes = mproc_testkit::try_unhex(arg).ok_or("bad role argument")?;
    Ok(mproc_shm::handle::from_bytes_with_fds(&bytes, fds)?)
}

/// A running role child; killed and reaped if dropped before [`RoleChild::wait`].
pub(crate) struct RoleChild {
    child: Option<Child>,
}

impl RoleChild {
    /// Waits for the child and fails unless it exited successfully.
    pub(crate) fn wait(mut self) -> BenchResult<()> {
        let mut child = self.child.take().ok_or("child already waited for")?;
        let st: ExitStatus = child.wait()?;
        if st.success() {
            Ok(())
        } else {
            Err(format!("bench child failed: {st}").into())
        }
    }
}

impl Drop for RoleChild {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Pins the calling process (all its future threads and children) to `cpu`.
#[cfg(target_os = "linux")]
pub(crate) fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET writes inside `set`; `cpu` is bounds-checked by the macro's implementation.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Affinity masks are Linux's (macOS has only advisory affinity tags).
#[cfg(not(target_os = "linux"))]
pub(crate) fn pin_to_cpu(_cpu: usize) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

/// The number of CPUs this process may run on.
pub(crate) fn allowed_cpus() -> usize {
    mproc_shm::sys::allowed_cpus().map_or(1, |n| n as usize)
}

/// If this process was started as a role child, runs the role and returns
/// its exit code; otherwise `None`.
pub(crate) fn run_role_if_child(roles: &[Role]) -> Option<i32> {
    let name = std::env::var(ENV_ROLE).ok()?;
    let arg = std::env::var(ENV_ARG).unwrap_or_default();
    let nfds: usize = std::env::var(ENV_NFDS)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if let Some(cpu) = std::env::var(ENV_CPU).ok().and_then(|s| s.parse().ok()) {
        if let Err(e) = pin_to_cpu(cpu) {
            eprintln!("mproc-bench child: cannot pin to CPU {cpu}: {e}");
            return Some(2);
        }
    }
    // SAFETY: the parent's pre_exec placed exactly `nfds` open descriptors at
    // FIRST_FD.. for this process, and nothing else in it owns them.
    let fds = unsafe { mproc_testkit::take_passed_fds(FIRST_FD, nfds) };
    let Some(role) = roles.iter().find(|r| r.name == name) else {
        eprintln!("mproc-bench child: unknown role {name:?}");
        return Some(2);
    };
    match (role.run)(&arg, fds) {
        Ok(()) => Some(0),
        Err(e) => {
            eprintln!("mproc-bench child {name}: {e}");
            Some(1)
        }
    }
}

/// The median of `xs` (which must not be empty).
pub(crate) fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

/// Waits (yielding) until `counter` reaches `n`, a count another process
/// raises, or fails after `limit`.
pub(crate) fn await_at_least(counter: &AtomicU64, n: u64, limit: Duration) -> BenchResult<()> {
    let t0 = Instant::now();
    // Acquire: pairs with the other process's Release increments.
    while counter.load(Ordering::Acquire) < n {
        if t0.elapsed() > limit {
            return Err("bench child did not report in time".into());
        }
        std::thread::yield_now();
    }
    Ok(())
}

/// Times `f`, returning its result and the elapsed time.
pub(crate) fn timed<R>(f: impl FnOnce() -> R) -> (R, Duration) {
    let t0 = Instant::now();
    let r = f();
    (r, t0.elapsed())
}

/// Copy bandwidth of a `bytes`-long destination, best of `rounds`: fills a
/// source buffer, warms both sides (the figure is the copy, not page
/// faults), times `copy_in` (source into the destination) and `copy_out`
/// (back into a second buffer), checks the round trip, and reports GB/s as
/// metrics "in" and "out".
pub(crate) fn copy_bandwidth(
    bytes: usize,
    rounds: usize,
    mut copy_in: impl FnMut(&[u8]) -> BenchResult<()>,
    mut copy_out: impl FnMut(&mut [u8]) -> BenchResult<()>,
) -> BenchResult<Vec<Measurement>> {
    let src: Vec<u8> = (0..bytes).map(|i| i as u8).collect();
    let mut dst = vec![0u8; bytes];
    copy_in(&src)?;
    copy_out(&mut dst)?;
    let mut best_in = Duration::MAX;
    let mut best_out = Duration::MAX;
    for _ in 0..rounds {
        let (r, t) = timed(|| copy_in(std::hint::black_box(&src)));
        r?;
        best_in = best_in.min(t);
        let (r, t) = timed(|| copy_out(std::hint::black_box(&mut dst)));
        r?;
        best_out = best_out.min(t);
    }
    if dst != src {
        return Err("copy mismatch".into());
    }
    let gbs = |t: Duration| bytes as f64 / t.as_secs_f64() / 1e9;
    Ok(vec![
        Measurement::higher(gbs(best_in), "GB/s").metric("in"),
        Measurement::higher(gbs(best_out), "GB/s").metric("out"),
    ])
}

/// One line of the report.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) scenario: String,
    pub(crate) placement: Placement,
    pub(crate) implementation: &'static str,
    pub(crate) m: Measurement,
}

impl Row {
    /// This row as one JSON object, with the floors that bound it.
    pub(crate) fn to_json(&self, floors: &[&Row]) -> String {
        let mut obj = serde_json::json!({
            "scenario": self.scenario,
            "placement": self.placement.as_str(),
            "impl": self.implementation,
            "value": self.m.value,
            "unit": self.m.unit,
            "better": self.m.better.as_str(),
        });
        if !self.m.metric.is_empty() {
            obj["metric"] = self.m.metric.into();
        }
        if !self.m.note.is_empty() {
            obj["note"] = self.m.note.clone().into();
        }
        if self.m.is_broken() {
            obj["broken"] = true.into();
        }
        if !floors.is_empty() {
            obj["floors"] = floors
                .iter()
                .map(|f| {
                    serde_json::json!({
                        "scenario": f.scenario,
                        "metric": f.m.metric,
                        "value": f.m.value,
                        "unit": f.m.unit,
                        "vs_floor": vs_floor(&self.m, &f.m),
                    })
                })
                .collect();
        }
        obj.to_string()
    }

    pub(crate) fn label(&self) -> String {
        if self.m.metric.is_empty() {
            self.scenario.clone()
        } else {
            format!("{}/{}", self.scenario, self.m.metric)
        }
    }
}

/// Runs `bench/python/<name>.py --placement P` and parses its JSON lines.
pub(crate) fn run_python(
    name: &str,
    placement: Placement,
    quick: bool,
) -> BenchResult<Vec<Measurement>> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(format!("{name}.py"));
    if !script.exists() {
        return Err(format!("no CPython counterpart {}", script.display()).into());
    }
    let mut cmd = Command::new("python3");
    cmd.arg(&script).arg("--placement").arg(placement.as_str());
    if quick {
        cmd.arg("--quick");
    }
    let out = cmd.output()?;
    if !out.status.success() {
        return Err(format!(
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let mut ms = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let line = line.trim();
        if !line.starts_with('{') {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line)?;
        let value = v["value"].as_f64().ok_or("python result without a value")?;
        let unit: &'static str =
            Box::leak(v["unit"].as_str().unwrap_or("").to_owned().into_boxed_str());
        let metric: &'static str = Box::leak(
            v["metric"]
                .as_str()
                .unwrap_or("")
                .to_owned()
                .into_boxed_str(),
        );
        let better = if v["better"].as_str() == Some("lower") {
            Better::Lower
        } else {
            Better::Higher
        };
        let note = v["note"].as_str().unwrap_or("").to_owned();
        ms.push(Measurement {
            metric,
            value,
            unit,
            better,
            note,
            ceiling: None,
        });
    }
    Ok(ms)
}

/// How many times faster mproc is than CPython for this figure.
pub(crate) fn speedup(mproc: &Measurement, cpython: &Measurement) -> f64 {
    match mproc.better {
        Better::Higher => mproc.value / cpython.value,
        Better::Lower => cpython.value / mproc.value,
    }
}

/// How a figure compares with its floor: for a cost (lower is better) how
/// many times the floor it takes; for a rate, the fraction of the floor's
/// rate it reaches.
pub(crate) fn vs_floor(m: &Measurement, floor: &Measurement) -> f64 {
    m.value / floor.value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_figure_above_its_ceiling_is_broken() {
        assert!(!Measurement::higher(1.9, "x").ceiling(2.0).is_broken());
        assert!(!Measurement::higher(2.0, "x").ceiling(2.0).is_broken());
        assert!(Measurement::higher(2.9, "x").ceiling(2.0).is_broken());
        assert!(!Measurement::higher(2.9, "x").is_broken());
    }

    #[test]
    fn broken_rows_and_floors_show_in_json() {
        let row = |scenario: &str, m: Measurement| Row {
            scenario: scenario.to_owned(),
            placement: Placement::Default,
            implementation: "mproc",
            m,
        };
        let r = row("pool_map_seed", Measurement::higher(2.9, "x").ceiling(2.0));
        let v: serde_json::Value = serde_json::from_str(&r.to_json(&[])).unwrap();
        assert_eq!(v["broken"], true);
        let r = row("pipe_rtt", Measurement::lower(9.0, "us"));
        let f = row("floor_pipe_rtt", Measurement::lower(3.0, "us"));
        let v: serde_json::Value = serde_json::from_str(&r.to_json(&[&f])).unwrap();
        assert!(v.get("broken").is_none());
        assert_eq!(v["floors"][0]["scenario"], "floor_pipe_rtt");
        assert_eq!(v["floors"][0]["vs_floor"], 3.0);
    }
}
