"""pool_map_tiny in CPython: Pool(2).map squaring 1M ints from a list (pool
already running), M items/s; the serial loop is reported as a note."""
import time
from multiprocessing import Pool

from _common import emit, parse, square, tiny_input


def main():
    args = parse()
    data = tiny_input(args)
    n = len(data)
    with Pool(2) as p:
        p.map(square, range(1000))
        t0 = time.perf_counter()
        out = p.map(square, data)
        t = time.perf_counter() - t0
    assert out[12345] == 12345 * 12345
    t0 = time.perf_counter()
    _ = [square(x) for x in data]
    ts = time.perf_counter() - t0
    emit(n / t / 1e6, "M items/s", "higher", note=f"serial loop {n / ts / 1e6:.1f} M items/s")


if __name__ == "__main__":
    main()
