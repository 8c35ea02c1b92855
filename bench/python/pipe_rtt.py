"""CPython counterpart of pipe_rtt: 8-byte send_bytes/recv_bytes round trip
to a child over multiprocessing.Pipe(), N=20000, microseconds."""
import time

import _common


def echo(conn):
    while True:
        try:
            m = conn.recv_bytes()
        except EOFError:
            break
        conn.send_bytes(m)


def main():
    args = _common.parse()
    n = 2000 if args.quick else 20000
    a, p = _common.start_pipe_child(echo, args.placement)
    msg = b"\x07" * 8
    for _ in range(1000):
        a.send_bytes(msg)
        a.recv_bytes()
    t0 = time.perf_counter()
    for _ in range(n):
        a.send_bytes(msg)
        a.recv_bytes()
    el = time.perf_counter() - t0
    a.close()
    p.join()
    _common.emit(el / n * 1e6, "us", "lower")


if __name__ == "__main__":
    main()
