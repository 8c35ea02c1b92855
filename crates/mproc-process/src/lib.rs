//! Processes with safe start methods (forkserver, spawn, fork) for mproc
