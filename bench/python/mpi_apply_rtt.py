"""mpi_apply_rtt in CPython: MPIPoolExecutor (static mode, 1 worker rank)
submit(f, x).result() round trip, µs."""
import time

from _mpi import relaunch

relaunch(2)

from mpi4py.futures import MPIPoolExecutor  # noqa: E402

from _common import emit, median, parse, square  # noqa: E402


def main():
    args = parse()
    n = 200 if args.quick else 2000
    with MPIPoolExecutor() as ex:
        for i in range(n):
            ex.submit(square, i).result()
        per = []
        for _ in range(5):
            t0 = time.perf_counter()
            for i in range(n):
                ex.submit(square, i).result()
            per.append((time.perf_counter() - t0) / n * 1e6)
    emit(median(per), "µs", "lower")


if __name__ == "__main__":
    main()
