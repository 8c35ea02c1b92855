//! The floors run, and a report prints each one under the figures it bounds.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Runs mproc-bench with `args`, killing it if it outlives `limit`; returns
/// its JSON lines.
fn bench(args: &[&str], limit: Duration) -> Vec<Value> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mproc-bench"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start mproc-bench");
    let t0 = Instant::now();
    while child.try_wait().expect("try_wait").is_none() {
        if t0.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("mproc-bench {args:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("collect output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "mproc-bench {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

fn row<'a>(rows: &'a [Value], scenario: &str, metric: Option<&str>) -> &'a Value {
    rows.iter()
        .find(|r| r["scenario"] == scenario && r["metric"].as_str() == metric)
        .unwrap_or_else(|| panic!("no row {scenario} {metric:?} in {rows:?}"))
}

#[test]
fn named_scenarios_bring_their_floors_and_report_them_beside() {
    let rows = bench(
        &[
            "pipe_rtt",
            "array_copy_64mib",
            "proc_start_fork",
            "floor_spsc_ring",
            "crossbeam_bounded_u64",
            "--quick",
            "--json",
        ],
        Duration::from_secs(300),
    );
    let floors = [
        ("floor_spin_rtt", None, "us"),
        ("floor_futex_rtt", None, "us"),
        ("floor_pipe_rtt", None, "us"),
        ("floor_pipe_rtt", Some("socketpair"), "us"),
        ("floor_memcpy_64mib", Some("in"), "GB/s"),
        ("floor_memcpy_64mib", Some("out"), "GB/s"),
        ("floor_fork", None, "us/child"),
        ("floor_spsc_ring", None, "M msgs/s"),
        ("crossbeam_bounded_u64", None, "M msgs/s"),
    ];
    for (name, metric, unit) in floors {
        let r = row(&rows, name, metric);
        assert_eq!(r["impl"], "floor", "{r}");
        assert_eq!(r["unit"], unit, "{r}");
        let v = r["value"].as_f64().expect("value");
        assert!(v.is_finite() && v > 0.0, "{r}");
    }

    let pipe = row(&rows, "pipe_rtt", None);
    assert_eq!(pipe["impl"], "mproc");
    let beside: Vec<(&str, Option<&str>)> = pipe["floors"]
        .as_array()
        .expect("pipe_rtt carries its floors")
        .iter()
        .map(|f| (f["scenario"].as_str().unwrap(), f["metric"].as_str()))
        .map(|(s, m)| (s, m.filter(|m| !m.is_empty())))
        .collect();
    assert_eq!(
        beside,
        [
            ("floor_spin_rtt", None),
            ("floor_futex_rtt", None),
            ("floor_pipe_rtt", None),
            ("floor_pipe_rtt", Some("socketpair")),
        ]
    );
    // The ratio is the figure over its floor's.
    for f in pipe["floors"].as_array().unwrap() {
        let want = pipe["value"].as_f64().unwrap() / f["value"].as_f64().unwrap();
        assert!(
            (f["vs_floor"].as_f64().unwrap() - want).abs() <= want * 1e-9,
            "{f}"
        );
    }

    let copy_in = row(&rows, "array_copy_64mib", Some("in"));
    assert_eq!(copy_in["floors"][0]["scenario"], "floor_memcpy_64mib");
    assert_eq!(copy_in["floors"][0]["metric"], "in");
    let fork = row(&rows, "proc_start_fork", None);
    assert_eq!(fork["floors"][0]["scenario"], "floor_fork");
}

#[test]
fn no_floors_leaves_them_out() {
    let rows = bench(
        &["proc_start_fork", "--quick", "--json", "--no-floors"],
        Duration::from_secs(120),
    );
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["scenario"], "proc_start_fork");
    assert!(rows[0].get("floors").is_none(), "{}", rows[0]);
}
