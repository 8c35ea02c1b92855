"""raw_array_copy_64mib in CPython: copy 64 MiB into and out of a
multiprocessing.RawArray('B') (no lock), through a memoryview of the shared
ctypes buffer. GB/s, best of 5."""
import contextlib
from multiprocessing.sharedctypes import RawArray

from _common import parse
from array_copy_64mib import BYTES, copy_rounds


def main():
    args = parse()
    view = memoryview(RawArray("B", BYTES)).cast("B")
    copy_rounds(view, contextlib.nullcontext(), 2 if args.quick else 5)


if __name__ == "__main__":
    main()
