//! Starts a child with each start method from an ordinary program's `main`.
//!
//! Run with `cargo run -p mproc-process --example start_methods`. Nothing in
//! `main` is needed for the children: they are dispatched before `main` runs.

use mproc_process::{Process, StartMethod, cpu_count_source, current_process};

fn describe(tag: String) -> String {
    let me = current_process();
    let parent = mproc_process::parent_process()
        .map(|p| p.name().to_owned())
        .unwrap_or_default();
    format!("{tag}: {} (child of {parent})", me.name())
}

fn say(word: String) {
    println!("{word}");
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Buffered output is flushed before a fork, so it is printed once.
    print!("before fork, ");
    Process::new(say, "in the child".to_owned())
        .start_method(StartMethod::Fork)
        .start()?
        .join()?;
    // Fork first: it needs this process to be single-threaded, and it is.
    for m in [
        StartMethod::Fork,
        StartMethod::ForkServer,
        StartMethod::Spawn,
    ] {
        let mut child = Process::new(describe, m.name().to_owned())
            .start_method(m)
            .start()?;
        println!("{}", child.join()?);
    }
    let cpus = cpu_count_source();
    println!(
        "{} may use {} CPUs ({})",
        current_process().name(),
        cpus.count,
        cpus.source
    );
    Ok(())
}
