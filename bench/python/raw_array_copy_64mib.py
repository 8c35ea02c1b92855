"""raw_array_copy_64mib in CPython: copy 64 MiB into and out of a
multiprocessing.RawArray('B') (no lock), through a memoryview of the shared
ctypes buffer. GB/s, best of 5."""
import time
from multiprocessing.sharedctypes import RawArray

from _common import emit, parse

BYTES = 64 << 20


def main():
    args = parse()
    rounds = 2 if args.quick else 5
    a = RawArray("B", BYTES)
    src = bytes(i % 256 for i in range(256)) * (BYTES // 256)
    dst = bytearray(BYTES)
    view = memoryview(a).cast("B")
    view[:] = src  # warm both sides
    dst[:] = view
    best_in = best_out = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        view[:] = src
        best_in = min(best_in, time.perf_counter() - t0)
        t0 = time.perf_counter()
        dst[:] = view
        best_out = min(best_out, time.perf_counter() - t0)
    assert bytes(dst) == src
    emit(BYTES / best_in / 1e9, "GB/s", "higher", metric="in")
    emit(BYTES / best_out / 1e9, "GB/s", "higher", metric="out")


if __name__ == "__main__":
    main()
