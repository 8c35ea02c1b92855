"""proc_start_spawn in CPython: start + join of a trivial child with the
'spawn' start method (multiprocessing.get_context('spawn').Process), us per child."""
from _proc_start import run

if __name__ == "__main__":
    run("spawn", 40)
