"""proc_start_forkserver in CPython: start + join of a trivial child with the
'forkserver' start method (multiprocessing.get_context('forkserver').Process), us per child."""
from _proc_start import run

if __name__ == "__main__":
    run("forkserver", 100)
