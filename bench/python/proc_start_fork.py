"""proc_start_fork in CPython: start + join of a trivial child with the
'fork' start method (multiprocessing.get_context('fork').Process), us per child."""
from _proc_start import run

if __name__ == "__main__":
    run("fork", 300)
