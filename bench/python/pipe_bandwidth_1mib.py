"""CPython counterpart of pipe_bandwidth_1mib: 1 MiB send_bytes to a child
that recv_bytes, N=2000 (2 GiB), GB/s. CPython has only the socket path."""
import time

import _common

SIZE = 1 << 20


def sink(conn):
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
    a, p = _common.start_pipe_child(sink, args.placement)
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
