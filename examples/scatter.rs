//! Seed "python-scatter / multiprocessing": the incident and scattered
//! fields of a wave hitting a row of scatterers, computed on a grid. Each
//! node `k = j * nx1 + i` is independent, so `computeField(k)` runs on a
//! Pool over the flat indices; the speed-up over the serial list is printed.
//!
//! ```sh
//! cargo run --release --example scatter [-- NX NPROC]
//! ```

use std::f64::consts::PI;
use std::time::Instant;

use mproc_pool::{Pool, cpu_count};

const WAVENUMBER: f64 = 2.0 * PI;
const SOURCES: usize = 96;
const XMIN: f64 = -4.0;
const XMAX: f64 = 4.0;

/// The incident and the scattered field at a node, as (real, imag) parts.
pub type Field = ((f64, f64), (f64, f64));

/// Incident (plane wave) and scattered (sum of point sources on a circle)
/// field at grid node `k` of an `nx1 x nx1` grid.
pub fn compute_field((k, nx1): (usize, usize)) -> Field {
    let (i, j) = (k % nx1, k / nx1);
    let h = (XMAX - XMIN) / (nx1 - 1) as f64;
    let (x, y) = (XMIN + i as f64 * h, XMIN + j as f64 * h);
    let phase = WAVENUMBER * x;
    let incident = (phase.cos(), phase.sin());
    let mut scat = (0.0, 0.0);
    for s in 0..SOURCES {
        let t = 2.0 * PI * s as f64 / SOURCES as f64;
        let (sx, sy) = (t.cos(), t.sin());
        let r = ((x - sx).powi(2) + (y - sy).powi(2)).sqrt().max(1e-3);
        // The source's strength follows the incident wave at its position.
        let a = WAVENUMBER * (r + sx);
        let amp = -1.0 / (SOURCES as f64 * r.sqrt());
        scat.0 += amp * a.cos();
        scat.1 += amp * a.sin();
    }
    (incident, scat)
}

/// The tasks' inputs: every node's flat index, with the grid's width.
pub fn nodes(nx1: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..nx1 * nx1).map(move |k| (k, nx1))
}

/// The largest magnitude of the scattered field over the grid's results.
pub fn peak(res: &[Field]) -> f64 {
    res.iter()
        .map(|(_, (re, im))| (re * re + im * im).sqrt())
        .fold(0.0, f64::max)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let nx1: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(256);
    let nproc: usize = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(cpu_count)
        .max(1);
    let ny1 = nx1;

    let t0 = Instant::now();
    let serial: Vec<_> = nodes(nx1).map(compute_field).collect();
    let t_serial = t0.elapsed();

    let pool = Pool::new(nproc)?;
    let t0 = Instant::now();
    // The seed's exercise: `res = pool.map(computeField, range(ny1 * nx1))`.
    let res = pool.map(compute_field, nodes(nx1))?;
    let t_pool = t0.elapsed();
    assert_eq!(res, serial);

    println!(
        "grid {nx1}x{ny1}, {SOURCES} sources; max |scattered field| = {:.4}",
        peak(&res)
    );
    println!(
        "serial: {:.3} s, Pool({nproc}): {:.3} s",
        t_serial.as_secs_f64(),
        t_pool.as_secs_f64()
    );
    println!(
        "speed-up: {:.2}x",
        t_serial.as_secs_f64() / t_pool.as_secs_f64()
    );
    Ok(())
}
