"""value_locked_2proc in CPython: two processes each increment one
multiprocessing.Value (lock=True) N times under its lock; increments per
second together, and how often the lock changed hands."""
import time
from multiprocessing import Event, Process, Value

from _common import emit, parse, pin_child

N = 200_000


def work(v, last, handovers, me, n):
    lock = v.get_lock()
    for _ in range(n):
        with lock:
            v.value += 1
            if last.value != me:
                last.value = me
                handovers.value += 1


def child(v, last, handovers, ready, go, placement, n):
    pin_child(placement)
    ready.set()
    go.wait()
    work(v, last, handovers, 2, n)


def main():
    args = parse()
    n = 20_000 if args.quick else N
    v = Value("Q", 0)
    # Protected by v's lock, like the Rust scenario's extra fields.
    last = Value("Q", 0, lock=False)
    handovers = Value("Q", 0, lock=False)
    ready, go = Event(), Event()
    p = Process(target=child, args=(v, last, handovers, ready, go, args.placement, n))
    p.start()
    ready.wait()
    t0 = time.perf_counter()
    go.set()
    work(v, last, handovers, 1, n)
    p.join()
    t = time.perf_counter() - t0
    assert p.exitcode == 0 and v.value == 2 * n, (p.exitcode, v.value)
    emit(2 * n / t / 1e6, "M/s", "higher", note=f"lock changed hands {handovers.value} times")


if __name__ == "__main__":
    main()
