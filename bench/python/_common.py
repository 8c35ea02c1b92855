"""Shared helpers for the CPython counterparts of mproc-bench scenarios.

Each script is run as `python3 bench/python/<scenario>.py --placement P [--quick]`
and prints one JSON object per figure:
{"value": float, "unit": str, "better": "higher"|"lower", "metric": str (optional)}.

Placement: "same" pins this process and every child to CPU 0; "split" pins
this process to CPU 0 and children (which call `pin_child`) to CPU 1.
"""
import argparse
import json
import os


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
