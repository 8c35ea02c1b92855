"""CPython counterpart of manager_start: Manager() start + shutdown, median
of 30 (the first, which warms up, not counted); ms."""
import multiprocessing as mp
import time

from _common import emit, median, parse


def main():
    args = parse()
    reps = 5 if args.quick else 30
    m = mp.Manager()
    m.shutdown()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        m = mp.Manager()
        m.shutdown()
        times.append((time.perf_counter() - t0) * 1e3)
    emit(median(times), "ms", "lower")


if __name__ == "__main__":
    main()
