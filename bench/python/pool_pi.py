"""pool_pi in CPython: Monte-Carlo pi with random.random(), Pool(2).map over 16
seeds against one serial loop; speed-up."""
import random
import time
from multiprocessing import Pool

from _common import emit, parse


def pi_hits(args):
    seed, n = args
    rnd = random.Random(seed)
    r = rnd.random
    hits = 0
    for _ in range(n):
        x, y = r(), r()
        if x * x + y * y <= 1.0:
            hits += 1
    return hits


def main():
    args = parse()
    n = 400_000 if args.quick else 4_000_000
    tasks = 16
    t0 = time.perf_counter()
    pi_hits((1, n))
    serial = time.perf_counter() - t0
    with Pool(2) as p:
        p.map(pi_hits, [(0, 10)])
        t0 = time.perf_counter()
        hits = sum(p.map(pi_hits, [(i + 1, n // tasks) for i in range(tasks)]))
        t = time.perf_counter() - t0
    emit(serial / t, "x vs serial", "higher", note=f"serial {serial * 1e3:.0f} ms, pool {t * 1e3:.0f} ms, pi ~ {4 * hits / n:.4f}")


if __name__ == "__main__":
    main()
