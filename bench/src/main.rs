//! `mproc-bench`: named benchmark scenarios, side by side with CPython.
//!
//! ```text
//! cargo run --release -p mproc-bench -- [SCENARIO...] [--json] [--python]
//!     [--placement same|split|default] [--reps N] [--quick] [--list]
//! ```
//!
//! Without scenario names every scenario runs. Each runs `--reps` times
//! (default 5) and the median of each figure is reported, with the note (a
//! breakdown, for example) of the run nearest that median. `--python` also runs
//! the CPython counterpart in `bench/python/<scenario>.py` and prints the
//! ratio. `--json` prints one JSON object per line:
//! `{"scenario", "placement", "impl", "value", "unit", "better"}` (plus
//! `"metric"` when a scenario reports several figures, and `"note"`).
//! Placement `same` pins every process to CPU 0, `split` the measuring
//! process to CPU 0 and its partner to CPU 1.

#[allow(dead_code)] // not every helper is used by every set of scenarios
mod harness;
mod scenarios;

use std::process::ExitCode;

use harness::{Ctx, Measurement, Placement, Row};

struct Args {
    names: Vec<String>,
    json: bool,
    python: bool,
    placement: Placement,
    reps: usize,
    quick: bool,
    list: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        names: Vec::new(),
        json: false,
        python: false,
        placement: Placement::Default,
        reps: 5,
        quick: false,
        list: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--json" => a.json = true,
            "--python" => a.python = true,
            "--quick" => a.quick = true,
            "--list" => a.list = true,
            "--bench" => {} // passed by `cargo bench`; ignored
            "--placement" => {
                let p = it.next().ok_or("--placement needs same|split|default")?;
                a.placement = Placement::parse(&p).ok_or(format!("unknown placement {p:?}"))?;
            }
            "--reps" => {
                let n = it.next().ok_or("--reps needs a number")?;
                a.reps = n.parse().map_err(|_| format!("bad --reps {n:?}"))?;
                if a.reps == 0 {
                    return Err("--reps must be at least 1".into());
                }
            }
            s if s.starts_with("--") => return Err(format!("unknown option {s}")),
            s => a.names.push(s.to_owned()),
        }
    }
    if a.quick {
        a.reps = a.reps.min(1);
    }
    Ok(a)
}

fn main() -> ExitCode {
    #[cfg(feature = "mpi")]
    if let Some(code) = scenarios::mpi::run_job_if_asked() {
        return ExitCode::from(code);
    }
    if let Some(code) = harness::run_role_if_child(&scenarios::roles()) {
        return ExitCode::from(code as u8);
    }
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("mproc-bench: {e}");
            return ExitCode::from(2);
        }
    };
    let all = scenarios::all();
    if args.list {
        for s in &all {
            println!("{:<24} {}", s.name, s.about);
        }
        return ExitCode::SUCCESS;
    }
    for n in &args.names {
        if !all.iter().any(|s| s.name == n) {
            eprintln!("mproc-bench: unknown scenario {n:?} (see --list)");
            return ExitCode::from(2);
        }
    }
    if args.placement == Placement::Split && harness::allowed_cpus() < 2 {
        eprintln!("mproc-bench: placement split needs two CPUs");
        return ExitCode::from(2);
    }
    if let Some(cpu) = args.placement.parent_cpu() {
        if let Err(e) = harness::pin_to_cpu(cpu) {
            eprintln!("mproc-bench: cannot pin to CPU {cpu}: {e}");
            return ExitCode::from(2);
        }
    }
    let ctx = Ctx {
        placement: args.placement,
    };
    let mut failed = false;
    for s in all
        .iter()
        .filter(|s| args.names.is_empty() || args.names.iter().any(|n| n == s.name))
    {
        let mut runs: Vec<Vec<Measurement>> = Vec::new();
        for _ in 0..args.reps {
            match (s.run)(&ctx) {
                Ok(ms) => runs.push(ms),
                Err(e) => {
                    eprintln!("mproc-bench: {} failed: {e}", s.name);
                    failed = true;
                    break;
                }
            }
        }
        let Some(first) = runs.first() else { continue };
        let mproc_rows: Vec<Row> = first
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let vals: Vec<f64> = runs
                    .iter()
                    .filter_map(|r| r.get(i).map(|x| x.value))
                    .collect();
                let median = harness::median(vals);
                // The note (a breakdown, say) of the run nearest the median,
                // not of the first run, which also pays one-time costs.
                let nearest = runs.iter().filter_map(|r| r.get(i)).min_by(|a, b| {
                    (a.value - median)
                        .abs()
                        .total_cmp(&(b.value - median).abs())
                });
                let mut m = nearest.unwrap_or(m).clone();
                m.value = median;
                Row {
                    scenario: s.name.to_owned(),
                    placement: args.placement,
                    implementation: "mproc",
                    m,
                }
            })
            .collect();
        let py_rows: Vec<Row> = if args.python {
            match harness::run_python(s.name, args.placement, args.quick) {
                Ok(ms) => ms
                    .into_iter()
                    .map(|m| Row {
                        scenario: s.name.to_owned(),
                        placement: args.placement,
                        implementation: "cpython",
                        m,
                    })
                    .collect(),
                Err(e) => {
                    eprintln!("mproc-bench: CPython {}: {e}", s.name);
                    Vec::new()
                }
            }
        } else {
            Vec::new()
        };
        report(&mproc_rows, &py_rows, args.json);
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn report(mproc: &[Row], python: &[Row], json: bool) {
    for r in mproc {
        let py = python.iter().find(|p| p.m.metric == r.m.metric);
        if json {
            println!("{}", r.to_json());
            if let Some(p) = py {
                println!("{}", p.to_json());
            }
            continue;
        }
        let mut line = format!(
            "{:<28} {:<8} mproc {:>14} {:<8}",
            r.label(),
            r.placement.as_str(),
            fmt_value(r.m.value),
            r.m.unit
        );
        if let Some(p) = py {
            line.push_str(&format!(
                "  cpython {:>14} {:<8}  mproc {:.1}x better",
                fmt_value(p.m.value),
                p.m.unit,
                harness::speedup(&r.m, &p.m)
            ));
        }
        if !r.m.note.is_empty() {
            line.push_str(&format!("  ({})", r.m.note));
        }
        println!("{line}");
    }
    if !json {
        for p in python
            .iter()
            .filter(|p| !mproc.iter().any(|r| r.m.metric == p.m.metric))
        {
            println!(
                "{:<28} {:<8} cpython {:>14} {}",
                p.label(),
                p.placement.as_str(),
                fmt_value(p.m.value),
                p.m.unit
            );
        }
    }
}

fn fmt_value(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}
