"""Running a CPython counterpart as an MPI job with mpi4py (4.x, from PyPI:
`scripts/install-mpi.sh --bench`).

`relaunch(n)` re-runs the calling script as
`mpirun -n N python3 -m mpi4py.futures script --inner ...` (static mode: rank 0
runs the script, ranks >= 1 serve MPIPoolExecutor) with the Open MPI
settings of scripts/mpi-env.sh, relays its output, and exits; inside the job
it returns and the script goes on. `run_job(n, extra)` runs one such job
and returns, for scripts that run several.
"""
import os
import subprocess
import sys

ENV = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts", "mpi-env.sh")


def relaunch(n, timeout=600):
    if "--inner" in sys.argv:
        sys.argv.remove("--inner")
        return
    out = run_job(n, [], timeout)
    sys.exit(out.returncode)


def run_job(n, extra, timeout=600):
    """Runs the calling script as an MPI job of `n` ranks with `extra`
    arguments after `--inner`, relays its output, and returns the result."""
    args = " ".join(sys.argv[1:] + extra)
    script = os.path.abspath(sys.argv[0])
    cmd = f". {ENV} && exec timeout -k 5 {timeout} mpirun -n {n} {sys.executable} -m mpi4py.futures {script} --inner {args}"
    out = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True)
    sys.stdout.write(out.stdout)
    if out.returncode != 0:
        sys.stderr.write(out.stderr)
    return out
