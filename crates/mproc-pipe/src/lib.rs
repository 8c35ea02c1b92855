//! Pipes, connections and authenticated listeners, wire-compatible with CPython multiprocessing
