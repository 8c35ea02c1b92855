"""pool_apply_async in CPython: 10,000 trivial apply_async calls on Pool(2),
then get all; k calls/s."""
import time
from multiprocessing import Pool

from _common import emit, parse


def trivial(x):
    return x + 1


def main():
    args = parse()
    n = 10_000
    with Pool(2) as p:
        [r.get() for r in [p.apply_async(trivial, (i,)) for i in range(100)]]
        t0 = time.perf_counter()
        rs = [p.apply_async(trivial, (i,)) for i in range(n)]
        s = sum(r.get() for r in rs)
        t = time.perf_counter() - t0
    assert s == n * (n + 1) // 2
    emit(n / t / 1e3, "k calls/s", "higher")


if __name__ == "__main__":
    main()
