"""lock_uncontended in CPython: acquire + release of one multiprocessing.Lock
in a single process, ns per pair."""
import time
from multiprocessing import Lock

from _common import emit, parse

N = 2_000_000


def main():
    args = parse()
    n = 200_000 if args.quick else N
    lock = Lock()
    acquire, release = lock.acquire, lock.release
    for _ in range(10_000):
        acquire()
        release()
    t0 = time.perf_counter()
    for _ in range(n):
        acquire()
        release()
    t = time.perf_counter() - t0
    emit(t / n * 1e9, "ns/op", "lower")


if __name__ == "__main__":
    main()
