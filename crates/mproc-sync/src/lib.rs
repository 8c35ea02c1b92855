//! Cross-process Lock, RLock, Semaphore, Condition, Event and Barrier in shared memory
