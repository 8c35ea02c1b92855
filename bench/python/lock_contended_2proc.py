"""lock_contended_2proc in CPython: two processes each take one
multiprocessing.Lock N times, incrementing a shared counter under it; ops per
second together, and owner changes per 1000 ops."""
import time
from multiprocessing import Event, Lock, Process, RawValue

from _common import emit, parse, pin_child

N = 200_000


def hammer(lock, count, last, changes, me, n):
    acquire, release = lock.acquire, lock.release
    for _ in range(n):
        acquire()
        count.value += 1
        if last.value != me:
            last.value = me
            changes.value += 1
        release()


def child(lock, count, last, changes, ready, go, placement, n):
    pin_child(placement)
    ready.set()
    go.wait()
    hammer(lock, count, last, changes, 2, n)


def main():
    args = parse()
    n = 20_000 if args.quick else N
    lock = Lock()
    count, last, changes = RawValue("Q", 0), RawValue("Q", 0), RawValue("Q", 0)
    ready, go = Event(), Event()
    p = Process(target=child, args=(lock, count, last, changes, ready, go, args.placement, n))
    p.start()
    ready.wait()
    t0 = time.perf_counter()
    go.set()
    hammer(lock, count, last, changes, 1, n)
    p.join()
    t = time.perf_counter() - t0
    assert p.exitcode == 0 and count.value == 2 * n, (p.exitcode, count.value)
    per_1000 = changes.value * 1000 / (2 * n)
    emit(2 * n / t / 1e6, "M/s", "higher",
         note=f"{per_1000:.2f} owner changes per 1000 ops ({changes.value} in {2 * n})")


if __name__ == "__main__":
    main()
