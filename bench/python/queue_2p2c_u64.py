"""queue_2p2c_u64: two producer processes -> two consumer processes through
one multiprocessing.Queue, integer items; M msgs/s in all."""
import multiprocessing as mp
import time

from _common import emit, parse, pin_child

END = -1


def producer(q, start, n, placement):
    pin_child(placement)
    start.wait()
    for i in range(n):
        q.put(i)
    q.put(END)


def consumer(q, placement):
    pin_child(placement)
    while q.get() != END:
        pass


def main():
    args = parse()
    n = 20_000 if args.quick else 200_000
    per = n // 2
    q = mp.Queue()
    start = mp.Event()
    cs = [mp.Process(target=consumer, args=(q, args.placement)) for _ in range(2)]
    ps = [mp.Process(target=producer, args=(q, start, per, args.placement)) for _ in range(2)]
    for p in cs + ps:
        p.start()
    time.sleep(0.2)
    t0 = time.perf_counter()
    start.set()
    for c in cs:
        c.join()
    dt = time.perf_counter() - t0
    for p in ps:
        p.join()
    emit(n / dt / 1e6, "M msgs/s", "higher")


if __name__ == "__main__":
    main()
