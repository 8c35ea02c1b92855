"""executor_submit in CPython: ProcessPoolExecutor(2), 10,000 trivial tasks,
submit + result one at a time (serial) and all submitted then collected
(pipelined); k tasks/s."""
import time
from concurrent.futures import ProcessPoolExecutor

from _common import emit, parse


def trivial(x):
    return x + 1


def main():
    parse()
    n = 10_000
    want = n * (n + 1) // 2
    with ProcessPoolExecutor(2) as ex:
        for i in range(100):
            ex.submit(trivial, i).result()
        t0 = time.perf_counter()
        s = 0
        for i in range(n):
            s += ex.submit(trivial, i).result()
        serial = time.perf_counter() - t0
        assert s == want
        t0 = time.perf_counter()
        fs = [ex.submit(trivial, i) for i in range(n)]
        s = sum(f.result() for f in fs)
        piped = time.perf_counter() - t0
        assert s == want
    emit(n / serial / 1e3, "k tasks/s", "higher", metric="serial")
    emit(n / piped / 1e3, "k tasks/s", "higher", metric="pipelined")


if __name__ == "__main__":
    main()
