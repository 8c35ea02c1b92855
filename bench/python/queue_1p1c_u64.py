"""queue_1p1c_u64: one producer process -> one consumer process through
multiprocessing.Queue, integer items; M msgs/s."""
import time

from _common import emit, parse, pin_child, start_producer

END = -1


def producer(q, n, placement):
    pin_child(placement)
    q.put("ready")
    for i in range(n):
        q.put(i)
    q.put(END)


def main():
    args = parse()
    n = 20_000 if args.quick else 300_000
    q, p = start_producer(producer, n, args.placement, "ready")
    t0 = time.perf_counter()
    expect = 0
    while True:
        v = q.get()
        if v == END:
            break
        assert v == expect
        expect += 1
    dt = time.perf_counter() - t0
    p.join()
    assert expect == n
    emit(n / dt / 1e6, "M msgs/s", "higher")


if __name__ == "__main__":
    main()
