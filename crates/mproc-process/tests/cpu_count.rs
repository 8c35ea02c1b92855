//! cpu_count follows the scheduler variables of a real process environment.

#![cfg(target_os = "linux")] // needs Linux: processes, memfd segments, Linux-only calls

mod common;

use mproc_process::{CpuSource, cpu_count, cpu_count_source};

/// Runs in a re-executed copy of this test binary, with variables set.
#[test]
#[ignore = "child role of run_with_env"]
fn child_report_cpu_count() {
    let c = cpu_count_source();
    println!("CPUS={} SOURCE={:?}", c.count, c.source);
}

fn run_with_env(vars: &[(&str, &str)]) -> String {
    let mut cmd = mproc_testkit::test_command("child_report_cpu_count");
    for k in ["SLURM_CPUS_PER_TASK", "NCPUS", "OMP_NUM_THREADS"] {
        cmd.env_remove(k);
    }
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = common::watchdog(60, move || cmd.output().unwrap());
    assert!(out.status.success(), "{out:?}");
    let s = String::from_utf8_lossy(&out.stdout).into_owned();
    // With --nocapture the line may follow libtest's "test … ... " prefix.
    let at = s
        .find("CPUS=")
        .unwrap_or_else(|| panic!("no report in {s:?}"));
    s[at..].lines().next().unwrap_or_default().to_owned()
}

#[test]
fn scheduler_allocation_is_used() {
    // One CPU is always within the OS limit.
    assert_eq!(
        run_with_env(&[("SLURM_CPUS_PER_TASK", "1")]),
        "CPUS=1 SOURCE=Slurm"
    );
    assert_eq!(run_with_env(&[("NCPUS", "1")]), "CPUS=1 SOURCE=Pbs");
    assert_eq!(
        run_with_env(&[("OMP_NUM_THREADS", "1,4")]),
        "CPUS=1 SOURCE=OpenMp"
    );
    // An allocation larger than the machine is capped by the OS limit.
    let line = run_with_env(&[("SLURM_CPUS_PER_TASK", "100000")]);
    assert!(!line.ends_with("Slurm"), "{line}");
    let plain = run_with_env(&[]);
    assert!(
        plain.ends_with("Affinity") || plain.ends_with("CgroupQuota"),
        "{plain}"
    );
}

#[test]
fn cpu_count_is_within_the_affinity_mask() {
    let n = cpu_count();
    assert!(n >= 1);
    if let Ok(p) = std::thread::available_parallelism() {
        assert!(n <= p.get().max(1), "{n} > {p}");
    }
    let src = cpu_count_source().source;
    assert!(
        matches!(
            src,
            CpuSource::Affinity
                | CpuSource::CgroupQuota
                | CpuSource::Slurm
                | CpuSource::Pbs
                | CpuSource::OpenMp
        ),
        "{src:?}"
    );
}
