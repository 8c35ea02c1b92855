"""pool_map_seed in CPython: the seed's map_pool.py (Pool(2) + map(lots_of_math,
range(40M)) + close/join) against its serial loop; speed-up (below 1 = slower)."""
import time
import multiprocessing

from _common import emit, lots_of_math, parse, seed_serial


def main():
    args = parse()
    n, serial = seed_serial(args)
    t0 = time.perf_counter()
    p = multiprocessing.Pool(processes=2)
    p.map(lots_of_math, range(0, n))
    p.close()
    p.join()
    t = time.perf_counter() - t0
    emit(serial / t, "x vs serial", "higher", note=f"serial {serial * 1e3:.0f} ms, pool {t * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
