"""queue_1p1c_4kib: one producer process -> one consumer process through
multiprocessing.Queue, 4 KiB bytes items; M msgs/s."""
import time

from _common import emit, parse, pin_child, start_producer


def producer(q, n, placement):
    pin_child(placement)
    q.put(b"ready")
    item = b"\x5a" * 4096
    for _ in range(n):
        q.put(item)


def main():
    args = parse()
    n = 10_000 if args.quick else 100_000
    q, p = start_producer(producer, n, args.placement, b"ready")
    t0 = time.perf_counter()
    for _ in range(n):
        assert len(q.get()) == 4096
    dt = time.perf_counter() - t0
    p.join()
    emit(n / dt / 1e6, "M msgs/s", "higher")


if __name__ == "__main__":
    main()
