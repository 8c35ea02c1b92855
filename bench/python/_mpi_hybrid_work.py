"""The work of mpi_hybrid.py, in a module of its own so that the local
multiprocessing processes of a worker rank import it by name."""
import math


def field(k):
    """The scatter-like work of mproc-bench's mpi_hybrid (32 sin*cos)."""
    acc = 0.0
    for s in range(32):
        t = (k * 31 + s) * 1e-3
        acc += math.sin(t) * math.cos(t)
    return acc
