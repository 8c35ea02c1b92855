"""array_sum_10m in CPython: a child process sums a multiprocessing.Array('d')
of 10M elements under its lock, by indexing (the plain multiprocessing way),
and with numpy when it is installed; the first pass in the child, ms."""
import time
from multiprocessing import Array, Process, Queue

from _common import emit, parse, pin_child

N = 10_000_000


def child(a, q, placement):
    pin_child(placement)
    out = {}
    with a.get_lock():
        raw = a.get_obj()
        t0 = time.perf_counter()
        s = 0.0
        for i in range(len(raw)):
            s += raw[i]
        out["indexing"] = (time.perf_counter() - t0, s)
        try:
            import numpy as np
        except ImportError:
            pass
        else:
            t0 = time.perf_counter()
            s2 = float(np.frombuffer(raw, dtype=np.float64).sum())
            out["numpy"] = (time.perf_counter() - t0, s2)
    q.put(out)


def main():
    args = parse()
    n = N // 10 if args.quick else N
    a = Array("d", n)
    raw = a.get_obj()
    for i in range(n):
        raw[i] = float(i % 1000)
    expect = (n // 1000) * (999 * 1000 / 2)
    q = Queue()
    p = Process(target=child, args=(a, q, args.placement))
    p.start()
    out = q.get()
    p.join()
    assert p.exitcode == 0
    t, s = out["indexing"]
    assert s == expect, (s, expect)
    emit(t * 1e3, "ms", "lower", note="by indexing")
    if "numpy" in out:
        t, s = out["numpy"]
        assert s == expect, (s, expect)
        emit(t * 1e3, "ms", "lower", metric="numpy", note="numpy.frombuffer(...).sum(), after the indexing pass")
    else:
        print("numpy is not installed: no numpy figure", flush=True)


if __name__ == "__main__":
    main()
