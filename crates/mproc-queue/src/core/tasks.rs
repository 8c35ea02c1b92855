//! JoinableQueue's task counting: records published minus `task_done`
//! calls, and `join` waiting for them to meet.

use super::*;

impl Core {
    /// Unfinished tasks (JoinableQueue): records published minus `task_done` calls.
    pub(crate) fn unfinished(&self) -> u32 {
        // Acquire: pairs with the SeqCst RMW in `task_done`.
        self.records()
            .published()
            .wrapping_sub(self.ctl().tasks.done.load(Ordering::Acquire))
    }

    pub(crate) fn task_done(&self) -> Result<(), crate::TaskDoneError> {
        let t = &self.ctl().tasks;
        // Acquire: pairs with the publishing swap of `tail`, so items whose
        // put completed before this call count.
        let mut done = t.done.load(Ordering::Acquire);
        loop {
            let published = self.records().published();
            if published.wrapping_sub(done) == 0 || (published.wrapping_sub(done) as i32) < 0 {
                return Err(crate::TaskDoneError::TooManyCalls);
            }
            // SeqCst: ordered before the load of `all_done.waiters` in notify.
            match t.done.compare_exchange_weak(
                done,
                done.wrapping_add(1),
                Ordering::SeqCst,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(d) => done = d,
            }
        }
        if self.unfinished() == 0 {
            t.all_done.notify();
        }
        Ok(())
    }

    /// Waits until every published item was marked done.
    pub(crate) fn join(&self, deadline: Deadline) -> bool {
        let t = &self.ctl().tasks;
        block_on(
            &t.all_done,
            deadline,
            true,
            || self.unfinished() == 0,
            || (self.unfinished() == 0).then_some(()),
            || {
                // `done` changes without a lock: SeqCst registration pairs
                // with the SeqCst CAS in `task_done`.
                let seq = t.all_done.register_seqcst();
                if self.unfinished() == 0 {
                    t.all_done.unregister();
                    return Prepare::Ready;
                }
                Prepare::Sleep { seq, max: SLICE }
            },
        )
        .is_some()
    }
}
