"""queue_rtt: round trip parent -> child -> parent through two
multiprocessing.Queues; microseconds per round trip."""
import multiprocessing as mp
import time

from _common import emit, parse, pin_child


def echo(ping, pong, n, placement):
    pin_child(placement)
    for _ in range(n):
        pong.put(ping.get() + 1)


def main():
    args = parse()
    n = 2_000 if args.quick else 20_000
    warm = 200
    ping, pong = mp.Queue(), mp.Queue()
    p = mp.Process(target=echo, args=(ping, pong, n + warm, args.placement))
    p.start()
    for i in range(warm):
        ping.put(i)
        pong.get()
    t0 = time.perf_counter()
    for i in range(n):
        ping.put(i)
        assert pong.get() == i + 1
    dt = time.perf_counter() - t0
    p.join()
    emit(dt * 1e6 / n, "us", "lower")


if __name__ == "__main__":
    main()
