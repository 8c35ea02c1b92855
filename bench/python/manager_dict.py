"""CPython counterpart of manager_dict: a child process does N set + get
pairs on a Manager dict (int -> int); ops/s, each set and each get one op."""
import multiprocessing as mp
import time

from _common import emit, parse, pin_child

N_PAIRS = 50_000


def client(d, out, placement, n):
    pin_child(placement)
    d[0] = 0
    t0 = time.perf_counter()
    for i in range(n):
        k = i & 1023
        d[k] = i
        if d[k] != i:
            raise SystemExit("wrong value")
    out.value = time.perf_counter() - t0


def main():
    args = parse()
    n = 5_000 if args.quick else N_PAIRS
    with mp.Manager() as m:
        d = m.dict()
        out = m.Value("d", 0.0)
        p = mp.Process(target=client, args=(d, out, args.placement, n))
        p.start()
        p.join()
        if p.exitcode != 0:
            raise SystemExit("client failed")
        secs = out.value
    ops = 2 * n / secs
    emit(ops, "ops/s", "higher", note=f"{1e6 / ops:.2f} us/op")


if __name__ == "__main__":
    main()
