# Open MPI settings for mproc's MPI tests, examples and CI on a single host.
# Source it:  . scripts/mpi-env.sh
# Used by .ci/run, the MPI launcher tests (crates/mproc-mpi/tests) and the README.

# CI and these sandboxes run as root; Open MPI refuses that without both variables.
export OMPI_ALLOW_RUN_AS_ROOT=1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# More ranks than cores (and a singleton that spawns workers) need oversubscription;
# it also makes Open MPI yield when idle instead of spinning.
export OMPI_MCA_rmaps_base_oversubscribe=1
export PRTE_MCA_rmaps_default_mapping_policy=:oversubscribe   # the same for Open MPI 5
# TCP only on loopback (spawned workers talk to their parent over the tcp BTL).
export OMPI_MCA_btl_tcp_if_include=lo
export OMPI_MCA_oob_tcp_if_include=lo
# Shared memory without ptrace-based single copy (works in containers; free here).
export OMPI_MCA_btl_vader_single_copy_mechanism=none
