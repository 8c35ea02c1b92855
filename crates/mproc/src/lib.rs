//! Python's multiprocessing model for Rust: processes, pipes, queues, locks, shared memory, pools and managers
