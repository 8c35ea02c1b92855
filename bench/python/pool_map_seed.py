"""pool_map_seed in CPython: the seed's map_pool.py (Pool(2) + map(lots_of_math,
range(40M)) + close/join) against its serial loop; speed-up (below 1 = slower)."""
import time
import multiprocessing

from _common import emit, parse


def lots_of_math(n):
    m = n * n


def main():
    args = parse()
    n = 4_000_000 if args.quick else 40_000_000
    t0 = time.perf_counter()
    for i in range(n):
        lots_of_math(i)
    serial = time.perf_counter() - t0
    t0 = time.perf_counter()
    p = multiprocessing.Pool(processes=2)
    p.map(lots_of_math, range(0, n))
    p.close()
    p.join()
    t = time.perf_counter() - t0
    emit(serial / t, "x vs serial", "higher", note=f"serial {serial * 1e3:.0f} ms, pool {t * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
