"""mpi_map_tiny in CPython: MPIPoolExecutor (static mode, 2 worker ranks)
map squaring 1M ints from a list, the best of several chunk sizes, M items/s."""
import time

from _mpi import relaunch

relaunch(3)

from mpi4py.futures import MPIPoolExecutor  # noqa: E402

from _common import emit, parse, square, tiny_input  # noqa: E402


def main():
    args = parse()
    data = tiny_input(args)
    n = len(data)
    rates = {}
    with MPIPoolExecutor() as ex:
        list(ex.map(square, range(1000), chunksize=100))
        for chunk in (1_000, 10_000, 100_000):
            t0 = time.perf_counter()
            out = list(ex.map(square, data, chunksize=chunk))
            rates[chunk] = n / (time.perf_counter() - t0) / 1e6
            assert out[12345] == 12345 * 12345
    best = max(rates, key=rates.get)
    note = ", ".join(f"chunksize {c}: {r:.2f}" for c, r in rates.items())
    emit(rates[best], "M items/s", "higher", note=f"best chunksize {best}; {note}")


if __name__ == "__main__":
    main()
