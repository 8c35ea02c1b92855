"""array_copy_64mib in CPython: copy 64 MiB into and out of a
multiprocessing.Array('B') under its lock, through a memoryview of the
shared ctypes buffer (the fastest pure-CPython path). GB/s, best of 5."""
import time
from multiprocessing import Array

from _common import emit, parse

BYTES = 64 << 20


def copy_rounds(view, lock, rounds):
    """Copies BYTES into `view` and back out under `lock`, warm, and emits
    the best of `rounds` each way (shared with raw_array_copy_64mib)."""
    src = bytes(i % 256 for i in range(256)) * (BYTES // 256)
    dst = bytearray(BYTES)
    with lock:  # warm both sides
        view[:] = src
        dst[:] = view
    best_in = best_out = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        with lock:
            view[:] = src
        best_in = min(best_in, time.perf_counter() - t0)
        t0 = time.perf_counter()
        with lock:
            dst[:] = view
        best_out = min(best_out, time.perf_counter() - t0)
    assert bytes(dst) == src
    emit(BYTES / best_in / 1e9, "GB/s", "higher", metric="in")
    emit(BYTES / best_out / 1e9, "GB/s", "higher", metric="out")


def main():
    args = parse()
    a = Array("B", BYTES)
    view = memoryview(a.get_obj()).cast("B")
    copy_rounds(view, a.get_lock(), 2 if args.quick else 5)


if __name__ == "__main__":
    main()
