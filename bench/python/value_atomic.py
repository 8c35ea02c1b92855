"""value_atomic in CPython: CPython has no shared atomic integers, so the
nearest equivalent of an uncontended fetch_add is a locked increment of a
multiprocessing.Value (`with v.get_lock(): v.value += 1`). ns per op."""
import time
from multiprocessing import Value

from _common import emit, parse


def main():
    args = parse()
    n = 200_000 if args.quick else 2_000_000
    v = Value("Q", 0)
    lock = v.get_lock()
    t0 = time.perf_counter()
    for _ in range(n):
        with lock:
            v.value += 1
    t = time.perf_counter() - t0
    assert v.value == n
    emit(t / n * 1e9, "ns/op", "lower", note="no atomics in CPython: locked Value increment")


if __name__ == "__main__":
    main()
