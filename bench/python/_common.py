"""Shared helpers for the CPython counterparts of mproc-bench scenarios.

Each script is run as `python3 bench/python/<scenario>.py --placement P [--quick]`
and prints one JSON object per figure:
{"value": float, "unit": str, "better": "higher"|"lower", "metric": str (optional)}.

Placement: "same" pins this process and every child to CPU 0; "split" pins
this process to CPU 0 and children (which call `pin_child`) to CPU 1.
"""
import argparse
import json
import multiprocessing as mp
import os
import time


def parse():
    ap = argparse.ArgumentParser()
    ap.add_argument("--placement", default="default", choices=["default", "same", "split"])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.placement in ("same", "split"):
        os.sched_setaffinity(0, {0})
    return args


def child_cpu(placement):
    return {"default": None, "same": 0, "split": 1}[placement]


def pin_child(placement):
    cpu = child_cpu(placement)
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


def emit(value, unit, better, metric="", note=""):
    obj = {"value": float(value), "unit": unit, "better": better}
    if metric:
        obj["metric"] = metric
    if note:
        obj["note"] = note
    print(json.dumps(obj), flush=True)


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


# ----- tasks shared by counterparts, so that they measure the same work -----


def square(x):
    """The task of the *_map_tiny and *_apply_rtt scenarios."""
    return x * x


def tiny_input(args):
    """The input of the *_map_tiny scenarios: 1M ints in a list (100k with --quick)."""
    return list(range(100_000 if args.quick else 1_000_000))


def lots_of_math(n):
    """The seed's task (map_pool.py), for the *_map_seed scenarios."""
    m = n * n  # noqa: F841


def seed_serial(args):
    """The seed's input size (40M; 4M with --quick) and the seconds its
    serial loop takes."""
    n = 4_000_000 if args.quick else 40_000_000
    t0 = time.perf_counter()
    for i in range(n):
        lots_of_math(i)
    return n, time.perf_counter() - t0


# ----- children -----


def _pipe_child(body, conn, other, placement):
    pin_child(placement)
    other.close()  # the parent's end, inherited by fork: close it or EOF never comes
    body(conn)


def start_pipe_child(body, placement):
    """Forks a child that runs `body(conn)` on one end of a Pipe (pinned as
    `placement` says); returns the other end and the process."""
    ctx = mp.get_context("fork")
    a, b = ctx.Pipe()
    p = ctx.Process(target=_pipe_child, args=(body, b, a, placement))
    p.start()
    b.close()
    return a, p


def start_producer(producer, n, placement, ready):
    """Starts `producer(q, n, placement)` on a new Queue and waits for the
    `ready` item it puts first; returns the queue and the process."""
    q = mp.Queue()
    p = mp.Process(target=producer, args=(q, n, placement))
    p.start()
    assert q.get() == ready
    return q, p
