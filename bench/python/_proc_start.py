"""Shared body of the proc_start_* CPython counterparts: start + join of a
trivial child with one start method, microseconds per child."""
import multiprocessing as mp
import time

from _common import child_cpu, emit, parse


def trivial(cpu):
    if cpu is not None:
        import os
        os.sched_setaffinity(0, {cpu})


def run(method, n):
    args = parse()
    ctx = mp.get_context(method)
    cpu = child_cpu(args.placement)
    if cpu == 0 and args.placement == "same":
        cpu = None
    n = n // 4 if args.quick else n
    for _ in range(3):
        p = ctx.Process(target=trivial, args=(cpu,))
        p.start()
        p.join()
    t0 = time.perf_counter()
    for _ in range(n):
        p = ctx.Process(target=trivial, args=(cpu,))
        p.start()
        p.join()
        assert p.exitcode == 0
    emit((time.perf_counter() - t0) / n * 1e6, "us/child", "lower")
