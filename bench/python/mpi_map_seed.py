"""mpi_map_seed in CPython: the seed's map(lots_of_math, range(N)) on
MPIPoolExecutor (static mode, 2 worker ranks, chunks of len/(4*workers) as
Pool.map cuts them) vs the serial loop, speed-up, start-up included."""
import time

T_START = time.perf_counter()

from _mpi import relaunch  # noqa: E402

relaunch(3)

from mpi4py.futures import MPIPoolExecutor  # noqa: E402

from _common import emit, lots_of_math, parse, seed_serial  # noqa: E402


def main():
    args = parse()
    n, serial = seed_serial(args)
    t0 = time.perf_counter()
    with MPIPoolExecutor() as ex:
        workers = ex.num_workers
        startup = time.perf_counter() - t0
        t1 = time.perf_counter()
        for _ in ex.map(lots_of_math, range(n), chunksize=max(1, n // (4 * workers))):
            pass
        mapped = time.perf_counter() - t1
    total = time.perf_counter() - t0
    emit(serial / total, "x", "higher",
         note=f"serial {serial:.2f} s; executor start-up {startup * 1e3:.0f} ms + map {mapped:.2f} s")


if __name__ == "__main__":
    main()
