use super::*;

/// The answer `n` CPUs, from `source`.
fn counted(n: usize, source: CpuSource) -> CpuCount {
    CpuCount {
        count: NonZeroUsize::new(n).unwrap(),
        source,
    }
}

fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |k| {
        vars.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| (*v).to_owned())
    }
}

#[test]
fn affinity_alone() {
    let c = decide(Some(8), None, env(&[]));
    assert_eq!(c, counted(8, CpuSource::Affinity));
}

#[test]
fn quota_rounds_up_and_wins_when_smaller() {
    let c = decide(Some(8), Some(1.5), env(&[]));
    assert_eq!(c, counted(2, CpuSource::CgroupQuota));
    let c = decide(Some(2), Some(3.0), env(&[]));
    assert_eq!(c, counted(2, CpuSource::Affinity));
}

#[test]
fn scheduler_variables_in_order() {
    let c = decide(
        Some(128),
        None,
        env(&[
            ("SLURM_CPUS_PER_TASK", "4"),
            ("NCPUS", "2"),
            ("OMP_NUM_THREADS", "1"),
        ]),
    );
    assert_eq!(c, counted(4, CpuSource::Slurm));
    let c = decide(
        Some(128),
        None,
        env(&[("NCPUS", "6"), ("OMP_NUM_THREADS", "3")]),
    );
    assert_eq!(c, counted(6, CpuSource::Pbs));
    let c = decide(Some(128), None, env(&[("OMP_NUM_THREADS", "3,2")]));
    assert_eq!(c, counted(3, CpuSource::OpenMp));
}

#[test]
fn scheduler_tie_names_the_scheduler_and_os_limit_caps_it() {
    let c = decide(Some(4), None, env(&[("SLURM_CPUS_PER_TASK", "4")]));
    assert_eq!(c.source, CpuSource::Slurm);
    let c = decide(Some(2), None, env(&[("SLURM_CPUS_PER_TASK", "16")]));
    assert_eq!(c, counted(2, CpuSource::Affinity));
}

#[test]
fn bad_variables_are_ignored() {
    for bad in ["", "0", "-3", "four", " ", "1e3"] {
        let c = decide(Some(8), None, env(&[("SLURM_CPUS_PER_TASK", bad)]));
        assert_eq!(c, counted(8, CpuSource::Affinity), "value {bad:?}");
    }
    // A bad SLURM value falls through to the next variable.
    let c = decide(
        Some(8),
        None,
        env(&[("SLURM_CPUS_PER_TASK", "x"), ("NCPUS", "3")]),
    );
    assert_eq!(c, counted(3, CpuSource::Pbs));
}

#[test]
fn nothing_known_falls_back() {
    let c = decide(None, None, env(&[]));
    assert_eq!(c.source, CpuSource::Fallback);
}

#[test]
fn cgroup_file_formats() {
    assert_eq!(parse_cpu_max("max 100000\n"), None);
    assert_eq!(parse_cpu_max("150000 100000\n"), Some(1.5));
    assert_eq!(parse_cpu_max("200000"), Some(2.0));
    assert_eq!(parse_cpu_max("garbage"), None);
    assert_eq!(parse_cpu_max(""), None);
    assert_eq!(parse_cfs("-1\n", "100000\n"), None);
    assert_eq!(parse_cfs("50000\n", "100000\n"), Some(0.5));
    assert_eq!(parse_cfs("x", "100000"), None);
    assert_eq!(parse_cfs("100", "0"), None);
}

#[test]
fn ancestors_walk_up_to_root() {
    assert_eq!(ancestors("/r", "/a/b"), vec!["/r/a/b", "/r/a", "/r"]);
    assert_eq!(ancestors("/r", "/"), vec!["/r"]);
}

#[test]
fn real_machine_answer_is_sane() {
    let c = cpu_count_source();
    assert!(c.count.get() >= 1);
    assert!(
        c.count.get()
            <= std::thread::available_parallelism()
                .map_or(usize::MAX, |n| n.get())
                .max(c.count.get())
    );
    assert_eq!(cpu_count(), c.count.get());
}
