"""CPython counterpart of pipe_bandwidth_1mib: 1 MiB send_bytes to a child
that recv_bytes, N=2000 (2 GiB), GB/s. CPython has only the socket path."""
import multiprocessing as mp
import time

import _common

SIZE = 1 << 20


def child(conn, other, placement):
    _common.pin_child(placement)
    other.close()  # the parent's end, inherited by fork: close it or EOF never comes
    total = 0
    while True:
        try:
            m = conn.recv_bytes()
        except EOFError:
            break
        if not m:
            conn.send(total)
        else:
            total += len(m)


def main():
    args = _common.parse()
    n = 200 if args.quick else 2000
    ctx = mp.get_context("fork")
    a, b = ctx.Pipe()
    p = ctx.Process(target=child, args=(b, a, args.placement))
    p.start()
    b.close()
    msg = b"\x5a" * SIZE
    for _ in range(50):
        a.send_bytes(msg)
    a.send_bytes(b"")
    a.recv()
    t0 = time.perf_counter()
    for _ in range(n):
        a.send_bytes(msg)
    a.send_bytes(b"")
    total = a.recv()
    el = time.perf_counter() - t0
    assert total == (n + 50) * SIZE, total
    a.close()
    p.join()
    _common.emit(n * SIZE / el / 1e9, "GB/s", "higher", metric="socket")


if __name__ == "__main__":
    main()
