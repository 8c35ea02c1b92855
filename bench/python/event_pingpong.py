"""event_pingpong in CPython: a round trip through two multiprocessing.Events
between two processes (set, wait, clear on each side), microseconds."""
import time
from multiprocessing import Event, Process

from _common import emit, parse, pin_child

N = 20_000


def pong(ping, pong_ev, placement, n):
    pin_child(placement)
    for _ in range(n):
        ping.wait()
        ping.clear()
        pong_ev.set()


def main():
    args = parse()
    n = 2_000 if args.quick else N
    warm = n // 10
    ping, pong_ev = Event(), Event()
    p = Process(target=pong, args=(ping, pong_ev, args.placement, n + warm))
    p.start()

    def round_trip():
        ping.set()
        pong_ev.wait()
        pong_ev.clear()

    for _ in range(warm):
        round_trip()
    t0 = time.perf_counter()
    for _ in range(n):
        round_trip()
    t = time.perf_counter() - t0
    p.join()
    assert p.exitcode == 0
    emit(t / n * 1e6, "us", "lower")


if __name__ == "__main__":
    main()
