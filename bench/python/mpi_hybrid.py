"""mpi_hybrid in CPython: the same map with mpi4py's MPIPoolExecutor
(static mode) on 1 worker rank x 2 local processes (each chunk fanned out
over a multiprocessing Pool(2) on the rank, the hybrid pattern by hand) vs
2 worker ranks x 1, M items/s each."""
import multiprocessing
import os
import sys
import time

from _mpi import run_job

if "--inner" not in sys.argv:
    rc = 0
    for ranks, mode in ((2, "hybrid"), (3, "ranks")):
        rc |= run_job(ranks, ["--mode", mode]).returncode
    sys.exit(rc)
sys.argv.remove("--inner")
i = sys.argv.index("--mode")
MODE = sys.argv[i + 1]
del sys.argv[i : i + 2]
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from mpi4py.futures import MPIPoolExecutor  # noqa: E402

from _common import emit, parse  # noqa: E402
from _mpi_hybrid_work import field  # noqa: E402

_local = None


def run_chunk(bounds):
    """A chunk on a worker rank, fanned out over its local Pool(2). The pool
    forks: "spawn" and "forkserver" would re-run the rank's main module
    (mpi4py's worker server) in the new processes."""
    global _local
    if _local is None:
        _local = multiprocessing.get_context("fork").Pool(2)
    lo, hi = bounds
    return _local.map(field, range(lo, hi), chunksize=max(1, (hi - lo) // 8))


def main():
    args = parse()
    n = 20_000 if args.quick else 200_000
    with MPIPoolExecutor() as ex:
        workers = ex.num_workers
        if MODE == "hybrid":
            step = max(1, n // (4 * workers))

            def go(lo, hi):
                out = []
                for part in ex.map(run_chunk, [(a, min(a + step, hi)) for a in range(lo, hi, step)]):
                    out.extend(part)
                return out
        else:

            def go(lo, hi):
                return list(ex.map(field, range(lo, hi), chunksize=max(1, (hi - lo) // (4 * workers))))

        go(0, 10_000)
        t0 = time.perf_counter()
        out = go(0, n)
        t = time.perf_counter() - t0
    assert len(out) == n and abs(out[777] - field(777)) < 1e-12
    metric = "1 rank x 2 local" if MODE == "hybrid" else "2 ranks x 1"
    emit(n / t / 1e6, "M items/s", "higher", metric=metric, note=f"{workers} worker rank(s), {n} items")


if __name__ == "__main__":
    main()
