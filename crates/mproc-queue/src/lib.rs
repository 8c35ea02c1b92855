//! Multi-producer multi-consumer queues in shared memory for mproc
