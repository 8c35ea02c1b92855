//! Batched puts and gets: [`Queue::put_many`] and [`Queue::get_many`] and
//! their `try_`/`_timeout`/`_deadline` forms.

use std::time::{Duration, Instant};

use super::{GetFailure, PutFailure, Queue};
use crate::codec::{Codec, with_scratch};
use crate::core::GetFail;
use crate::error::{
    EncodeError, GetError, GetTimeoutError, PutError, PutManyError, PutTimeoutError, TryGetError,
    TryPutError,
};
use crate::ring::{Batch, TakeMany};
use crate::wait::Deadline;

/// Why a batched put stopped: how many items it put, the item it could
/// not put, and why.
type Stop<T> = (usize, T, PutFailure);

impl<T, C: Codec<T>> Queue<T, C> {
    fn put_many_inner<I: IntoIterator<Item = T>>(
        &self,
        items: I,
        deadline: Deadline,
    ) -> Result<usize, Stop<T>> {
        let core = &*self.core;
        let (limit, item_max) = (core.batch_bytes(), core.batch_item_max());
        let mut batch = Batch::default();
        // The items whose records are in `batch`, to hand back the one that
        // was not put.
        let mut held: Vec<T> = Vec::new();
        let mut put = 0;
        let flush = |batch: &mut Batch, held: &mut Vec<T>, put: &mut usize| {
            if batch.pending() == 0 {
                return Ok(());
            }
            let r = core.put_batch(batch, deadline);
            let n = batch.published();
            *put += n;
            batch.clear();
            match r {
                Ok(()) => {
                    held.clear();
                    Ok(())
                }
                Err(f) => {
                    let t = held.drain(..=n).next_back().expect("an unpublished item");
                    held.clear();
                    Err((*put, t, PutFailure::Fail(f)))
                }
            }
        };
        for item in items {
            let r = C::encode_with(&item, |bytes| {
                if bytes.len() > self.max_item {
                    Err(EncodeError::too_large(bytes.len()))
                } else if bytes.len() > item_max {
                    Ok(false)
                } else {
                    batch.push(bytes);
                    Ok(true)
                }
            });
            match r.map_err(EncodeError::from).and_then(|r| r) {
                Ok(true) => {
                    held.push(item);
                    if batch.bytes() >= limit {
                        flush(&mut batch, &mut held, &mut put)?;
                    }
                }
                // Too large for the ring: a message of its own, in order.
                Ok(false) => {
                    flush(&mut batch, &mut held, &mut put)?;
                    self.put_inner(item, deadline)
                        .map_err(|(t, e)| (put, t, e))?;
                    put += 1;
                }
                Err(e) => {
                    flush(&mut batch, &mut held, &mut put)?;
                    return Err((put, item, PutFailure::Encode(e)));
                }
            }
        }
        flush(&mut batch, &mut held, &mut put)?;
        Ok(put)
    }

    /// Puts every item of `items`, in order, waiting while the queue is
    /// full; returns how many. Items are encoded in groups of up to 16 KiB
    /// (or a quarter of the ring) and each group is published with one
    /// exchange of the ring's header words, so many small items cost little
    /// more than one.
    ///
    /// Once it returns `Ok`, every item is in the queue, as after as many
    /// `put`s. A producer killed in the middle leaves a prefix of its items
    /// in the queue: whole items, in order, none after a missing one; never
    /// a torn one.
    ///
    /// # Errors
    /// As [`Queue::put`], for the first item that could not be put, which
    /// [`PutManyError`] hands back with the number put before it; the items
    /// after it are dropped (those encoded with it are not put either).
    pub fn put_many<I: IntoIterator<Item = T>>(
        &self,
        items: I,
    ) -> Result<usize, PutManyError<PutError<T>>> {
        self.put_many_inner(items, Deadline::Never)
            .map_err(|(n, t, e)| PutManyError::new(n, e.into_error(t, PutError::Closed)))
    }

    /// As [`Queue::put_many`], putting only while there is room right now.
    ///
    /// # Errors
    /// As [`Queue::try_put`], with the number put before it.
    pub fn try_put_many<I: IntoIterator<Item = T>>(
        &self,
        items: I,
    ) -> Result<usize, PutManyError<TryPutError<T>>> {
        self.put_many_inner(items, Deadline::Now)
            .map_err(|(n, t, e)| PutManyError::new(n, e.into_error(t, TryPutError::Full)))
    }

    /// As [`Queue::put_many`], waiting at most `timeout` in all for room.
    ///
    /// # Errors
    /// As [`Queue::put_timeout`], with the number put before it.
    pub fn put_many_timeout<I: IntoIterator<Item = T>>(
        &self,
        items: I,
        timeout: Duration,
    ) -> Result<usize, PutManyError<PutTimeoutError<T>>> {
        self.put_many_with(items, Deadline::after(timeout))
    }

    /// As [`Queue::put_many`], waiting until `deadline` at most for room.
    ///
    /// # Errors
    /// As [`Queue::put_many_timeout`].
    pub fn put_many_deadline<I: IntoIterator<Item = T>>(
        &self,
        items: I,
        deadline: Instant,
    ) -> Result<usize, PutManyError<PutTimeoutError<T>>> {
        self.put_many_with(items, Deadline::At(deadline))
    }

    fn put_many_with<I: IntoIterator<Item = T>>(
        &self,
        items: I,
        deadline: Deadline,
    ) -> Result<usize, PutManyError<PutTimeoutError<T>>> {
        self.put_many_inner(items, deadline)
            .map_err(|(n, t, e)| PutManyError::new(n, e.into_error(t, PutTimeoutError::Timeout)))
    }

    /// Takes every item that is ready at once, up to `max`: runs of small
    /// ring items claimed together, and one at a time (under the consumer
    /// lock) those that must be (large messages, and every item while the
    /// overflow log holds some); waits until `deadline` for the first one
    /// only. Undecodable items count as taken (they are lost).
    fn get_many_inner(
        &self,
        out: &mut Vec<T>,
        max: usize,
        deadline: Deadline,
    ) -> Result<usize, GetFailure> {
        let core = &*self.core;
        let mut got = 0;
        let mut bad = None;
        while got < max {
            let t = with_scratch(|buf| {
                let mut ends = Vec::new();
                let t = core
                    .take_batch(buf, &mut ends, max - got)
                    .map_err(GetFailure::Fail)?;
                out.reserve(ends.len());
                let mut at = 0;
                for &e in &ends {
                    // Claimed: an item that does not decode is lost, as in `get`.
                    match C::decode(&buf[at..e]) {
                        Ok(v) => out.push(v),
                        Err(e) => {
                            bad.get_or_insert(e.into());
                        }
                    }
                    at = e;
                }
                Ok(t)
            })?;
            match t {
                TakeMany::Taken(n) => got += n,
                TakeMany::Empty if got > 0 => break,
                // None ready (wait for one), or the next must be taken under
                // the lock: one item the single way.
                TakeMany::Empty | TakeMany::Locked => {
                    let d = if got == 0 { deadline } else { Deadline::Now };
                    match self.get_inner(d) {
                        Ok(v) => out.push(v),
                        Err(GetFailure::Decode(e)) => {
                            bad.get_or_insert(e);
                        }
                        Err(GetFailure::Fail(GetFail::Empty | GetFail::Closed)) if got > 0 => {
                            break;
                        }
                        Err(e) => return Err(e),
                    }
                    got += 1;
                }
            }
        }
        match bad {
            Some(e) => Err(GetFailure::Decode(e)),
            None => Ok(got),
        }
    }

    /// Takes at least one item, waiting while the queue is empty, and then
    /// every item ready at once, up to `max` in all, appending them to
    /// `out` in queue order; returns how many. Consecutive small items are
    /// claimed together, with one exchange of the ring's header words.
    ///
    /// # Errors
    /// As [`Queue::get`]. [`GetError::Decode`] comes after the other items
    /// taken with the undecodable one were appended to `out` (it is lost).
    pub fn get_many(&self, out: &mut Vec<T>, max: usize) -> Result<usize, GetError> {
        self.get_many_inner(out, max, Deadline::Never)
            .map_err(|e| e.into_error(GetError::Closed))
    }

    /// As [`Queue::get_many`], if an item is there right now.
    ///
    /// # Errors
    /// As [`Queue::try_get`] (and [`Queue::get_many`] for decoding).
    pub fn try_get_many(&self, out: &mut Vec<T>, max: usize) -> Result<usize, TryGetError> {
        self.get_many_inner(out, max, Deadline::Now)
            .map_err(|e| e.into_error(TryGetError::Empty))
    }

    /// As [`Queue::get_many`], waiting at most `timeout` for the first item.
    ///
    /// # Errors
    /// As [`Queue::get_timeout`] (and [`Queue::get_many`] for decoding).
    pub fn get_many_timeout(
        &self,
        out: &mut Vec<T>,
        max: usize,
        timeout: Duration,
    ) -> Result<usize, GetTimeoutError> {
        self.get_many_with(out, max, Deadline::after(timeout))
    }

    /// As [`Queue::get_many`], waiting until `deadline` at most for the
    /// first item.
    ///
    /// # Errors
    /// As [`Queue::get_many_timeout`].
    pub fn get_many_deadline(
        &self,
        out: &mut Vec<T>,
        max: usize,
        deadline: Instant,
    ) -> Result<usize, GetTimeoutError> {
        self.get_many_with(out, max, Deadline::At(deadline))
    }

    fn get_many_with(
        &self,
        out: &mut Vec<T>,
        max: usize,
        deadline: Deadline,
    ) -> Result<usize, GetTimeoutError> {
        self.get_many_inner(out, max, deadline)
            .map_err(|e| e.into_error(GetTimeoutError::Timeout))
    }
}
