//! `Dict<K, V>`: a shared dict.

use std::borrow::Borrow;
use std::collections::VecDeque;

use mproc_shm::codec::{Codec, Encode, Postcard};

use crate::code_ref;
use crate::error::Error;
use crate::list::DEFAULT_BATCH;
use crate::proto::{Kind, Op, Reply, Val};
use crate::proxy::{boolean, bytes, container_methods, proxy_type, run_update, unexpected, unit};

/// Fetches a dict's entries page by page, checking its size as CPython's
/// dict iterators do.
struct Pages<K, V, C> {
    dict: Dict<K, V, C>,
    /// The insertion slot to go on from.
    next: u64,
    /// The size at the first page; `None` before it.
    len: Option<u64>,
    batch: u32,
    values: bool,
    done: bool,
}

impl<K, V, C: Codec<K> + Codec<V>> Pages<K, V, C> {
    /// The next page, decoded at once (so the references granted with the
    /// values are adopted or given back now, whatever the caller takes);
    /// empty at the end. After an error, always empty (CPython's exhausted
    /// iterator).
    fn fetch(&mut self) -> Vec<Result<(K, Option<V>), Error>> {
        if self.done {
            return Vec::new();
        }
        let op = Op::DictPage {
            from: self.next,
            max: self.batch,
            len: self.len,
            values: self.values,
        };
        let raw = &self.dict.raw;
        match raw.call(op) {
            Ok(Reply::Page { items, next, len }) => {
                self.done = items.is_empty();
                self.next = next;
                self.len.get_or_insert(len);
                items
                    .iter()
                    .map(|(k, v)| {
                        let k = raw.dec_bytes::<C, K>(k)?;
                        let v = if self.values {
                            Some(raw.dec::<C, V>(v)?)
                        } else {
                            None
                        };
                        Ok((k, v))
                    })
                    .collect()
            }
            Ok(r) => {
                self.done = true;
                vec![Err(unexpected(r))]
            }
            Err(e) => {
                self.done = true;
                vec![Err(e)]
            }
        }
    }
}

impl<K, V, C> std::fmt::Debug for Pages<K, V, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pages")
            .field("dict", &self.dict)
            .field("next", &self.next)
            .field("len", &self.len)
            .field("batch", &self.batch)
            .finish_non_exhaustive()
    }
}

/// An iterator over a shared dict's pairs, in insertion order
/// ([`Dict::iter`]), fetching them in batches.
///
/// As in CPython, the dict must not change size while it is iterated: the
/// iterator then yields [`Error::ChangedSize`] ("dictionary changed size
/// during iteration") and ends. The size is checked at every batch (with a
/// batch of 1, at every item, as CPython does) and once more at the end;
/// it is taken at the first batch, not when the iterator is made. It holds
/// no state in the server (a cursor and the size travel with each
/// request), only a clone of the proxy, which keeps the dict alive.
#[derive(Debug)]
pub struct DictIter<K, V, C = Postcard> {
    pages: Pages<K, V, C>,
    buf: VecDeque<Result<(K, V), Error>>,
}

impl<K, V, C: Codec<K> + Codec<V>> Iterator for DictIter<K, V, C> {
    type Item = Result<(K, V), Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() {
            let page =
                self.pages.fetch().into_iter().map(|r| {
                    r.and_then(|(k, v)| Ok((k, v.ok_or_else(|| unexpected(Reply::Unit))?)))
                });
            self.buf.extend(page);
        }
        self.buf.pop_front()
    }
}

/// An iterator over a shared dict's keys ([`Dict::iter_keys`]; Python's
/// `for k in d`), with [`DictIter`]'s rules; values do not travel.
#[derive(Debug)]
pub struct DictKeys<K, V, C = Postcard> {
    pages: Pages<K, V, C>,
    buf: VecDeque<Result<K, Error>>,
}

impl<K, V, C: Codec<K> + Codec<V>> Iterator for DictKeys<K, V, C> {
    type Item = Result<K, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() {
            let page = self.pages.fetch().into_iter().map(|r| r.map(|(k, _)| k));
            self.buf.extend(page);
        }
        self.buf.pop_front()
    }
}

proxy_type! {
    /// A proxy of a dict in the manager (CPython's `DictProxy`), keeping
    /// insertion order.
    ///
    /// Keys are compared by their encoded bytes (with the codec `C`), which
    /// the codecs mproc provides ([`Postcard`], `Pod`, `Bytes`) make
    /// deterministic for one type: use the same `K` and `C` everywhere (a
    /// float key `-0.0` is not `0.0`, as the bytes differ). Values come
    /// back as copies: `dict.get(k)?.unwrap().push(1)` changes your copy,
    /// not the shared value (CPython's nested-mutation trap, explicit here).
    /// To change a value in place, call [`Dict::update_with`] (the function
    /// runs inside the server, atomically) or store a nested proxy as the
    /// value.
    ///
    /// # Examples
    ///
    /// ```
    /// let m = mproc_manager::Manager::start()?;
    /// let d = m.dict::<String, u64>()?;
    /// d.insert(&"apples".to_string(), &3)?;
    /// d.update_or_insert_with(&"apples".to_string(), &0, |v: &mut u64, n: u64| *v += n, 2)?;
    /// assert_eq!(d.get("apples")?, Some(5));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    Dict<K, V; C>, Dict, Kind::Dict
}

impl<K, V, C: Codec<K> + Codec<V>> Dict<K, V, C> {
    fn key<Q: ?Sized>(&self, k: &Q) -> Result<Vec<u8>, Error>
    where
        C: Encode<Q>,
    {
        self.raw.enc_bytes::<C, Q>(k)
    }

    fn enc(&self, v: &V) -> Result<Val, Error> {
        self.raw.enc::<C, V>(v)
    }

    fn dec(&self, v: &Val) -> Result<V, Error> {
        self.raw.dec::<C, V>(v)
    }

    fn maybe(&self, r: Reply) -> Result<Option<V>, Error> {
        match r {
            Reply::MaybeBytes(Some(b)) => self.dec(&b).map(Some),
            Reply::MaybeBytes(None) => Ok(None),
            r => Err(unexpected(r)),
        }
    }

    /// A copy of the value at `key`, or `None` (Python's `d.get(k)`).
    ///
    /// `Q` may be any type that the codec encodes like `K` (`&str` for
    /// `String` with postcard, `&[u8]` for `Vec<u8>` with `Bytes`).
    ///
    /// # Errors
    /// [`Error::Disconnected`] if the server is gone; [`Error::Decode`] if
    /// the stored value is not a `V`.
    pub fn get<Q>(&self, key: &Q) -> Result<Option<V>, Error>
    where
        K: Borrow<Q>,
        Q: ?Sized,
        C: Encode<Q>,
    {
        let r = self.raw.call(Op::DictGet(self.key(key)?))?;
        self.maybe(r)
    }

    /// The value at `key`, or [`Error::KeyMissing`] (Python's `d[k]`).
    ///
    /// # Errors
    /// [`Error::KeyMissing`], and those of [`Dict::get`].
    pub fn get_item<Q>(&self, key: &Q) -> Result<V, Error>
    where
        K: Borrow<Q>,
        Q: ?Sized,
        C: Encode<Q>,
    {
        self.get(key)?.ok_or(Error::KeyMissing)
    }

    /// Sets `key` to `value`, returning the old value (Python's `d[k] = v`).
    ///
    /// # Errors
    /// [`Error::Disconnected`]; [`Error::Encode`] if a value does not serialize.
    pub fn insert(&self, key: &K, value: &V) -> Result<Option<V>, Error> {
        let r = self
            .raw
            .call(Op::DictInsert(self.key(key)?, self.enc(value)?))?;
        self.maybe(r)
    }

    /// Removes `key`, returning its value if it was there.
    ///
    /// # Errors
    /// As for [`Dict::get`].
    pub fn remove<Q>(&self, key: &Q) -> Result<Option<V>, Error>
    where
        K: Borrow<Q>,
        Q: ?Sized,
        C: Encode<Q>,
    {
        let r = self.raw.call(Op::DictRemove(self.key(key)?))?;
        self.maybe(r)
    }

    /// Removes `key` and returns its value, or [`Error::KeyMissing`]
    /// (Python's `d.pop(k)`).
    ///
    /// # Errors
    /// [`Error::KeyMissing`], and those of [`Dict::get`].
    pub fn pop<Q>(&self, key: &Q) -> Result<V, Error>
    where
        K: Borrow<Q>,
        Q: ?Sized,
        C: Encode<Q>,
    {
        let b = bytes(self.raw.call(Op::DictPop(self.key(key)?))?)?;
        self.dec(&b)
    }

    /// Removes and returns the most recently inserted pair (Python's
    /// `popitem`), or `None` when empty.
    ///
    /// # Errors
    /// As for [`Dict::get`].
    pub fn pop_item(&self) -> Result<Option<(K, V)>, Error> {
        match self.raw.call(Op::DictPopItem)? {
            Reply::MaybePair(Some((k, v))) => {
                Ok(Some((self.raw.dec_bytes::<C, K>(&k)?, self.dec(&v)?)))
            }
            Reply::MaybePair(None) => Ok(None),
            r => Err(unexpected(r)),
        }
    }

    /// Whether `key` is present (Python's `k in d`).
    ///
    /// # Errors
    /// As for [`Dict::get`].
    pub fn contains_key<Q>(&self, key: &Q) -> Result<bool, Error>
    where
        K: Borrow<Q>,
        Q: ?Sized,
        C: Encode<Q>,
    {
        boolean(self.raw.call(Op::DictContains(self.key(key)?))?)
    }

    /// The value at `key`, inserting `default` first if it is missing
    /// (Python's `setdefault`), atomically.
    ///
    /// # Errors
    /// As for [`Dict::insert`].
    pub fn setdefault(&self, key: &K, default: &V) -> Result<V, Error> {
        let b = bytes(
            self.raw
                .call(Op::DictSetDefault(self.key(key)?, self.enc(default)?))?,
        )?;
        self.dec(&b)
    }

    container_methods!("entries");

    fn list<T>(&self, op: Op) -> Result<Vec<T>, Error>
    where
        C: Codec<T>,
    {
        match self.raw.call(op)? {
            Reply::List(items) => items.iter().map(|b| self.raw.dec::<C, T>(b)).collect(),
            r => Err(unexpected(r)),
        }
    }

    /// A snapshot of the keys, in insertion order.
    ///
    /// # Errors
    /// As for [`Dict::get`].
    pub fn keys(&self) -> Result<Vec<K>, Error> {
        self.list(Op::DictKeys)
    }

    /// A snapshot of the values, in insertion order.
    ///
    /// # Errors
    /// As for [`Dict::get`].
    pub fn values(&self) -> Result<Vec<V>, Error> {
        self.list(Op::DictValues)
    }

    /// A snapshot of the pairs, in insertion order, in one round trip (a
    /// copy: later changes do not matter to it; [`Dict::iter`] goes
    /// through the dict itself).
    ///
    /// # Errors
    /// As for [`Dict::get`].
    pub fn items(&self) -> Result<Vec<(K, V)>, Error> {
        match self.raw.call(Op::DictItems)? {
            Reply::Pairs(p) => p
                .iter()
                .map(|(k, v)| Ok((self.raw.dec_bytes::<C, K>(k)?, self.dec(v)?)))
                .collect(),
            r => Err(unexpected(r)),
        }
    }

    fn pages(&self, batch: usize, values: bool) -> Pages<K, V, C> {
        Pages {
            dict: self.clone(),
            next: 0,
            len: None,
            batch: batch.clamp(1, 4096) as u32,
            values,
            done: false,
        }
    }

    /// Iterates over the pairs in insertion order, 64 per round trip,
    /// without a full copy; a change of the dict's size meanwhile is an
    /// error, as in CPython (see [`DictIter`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use mproc_manager::Error;
    ///
    /// let m = mproc_manager::Manager::start()?;
    /// let d = m.dict_from([("a".to_string(), 1), ("b".to_string(), 2)])?;
    /// let pairs: Vec<(String, i32)> = d.iter().collect::<Result<_, _>>()?;
    /// assert_eq!(pairs, [("a".to_string(), 1), ("b".to_string(), 2)]);
    ///
    /// // Python: RuntimeError("dictionary changed size during iteration").
    /// let mut keys = d.iter_keys_batched(1);
    /// assert_eq!(keys.next().transpose()?, Some("a".to_string()));
    /// d.insert(&"c".to_string(), &3)?;
    /// assert!(matches!(keys.next(), Some(Err(Error::ChangedSize))));
    /// assert!(keys.next().is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn iter(&self) -> DictIter<K, V, C> {
        self.iter_batched(DEFAULT_BATCH as usize)
    }

    /// [`Dict::iter`] fetching `batch` pairs per round trip (at least 1, at
    /// most 4096).
    pub fn iter_batched(&self, batch: usize) -> DictIter<K, V, C> {
        DictIter {
            pages: self.pages(batch, true),
            buf: VecDeque::new(),
        }
    }

    /// Iterates over the keys in insertion order (see [`Dict::iter`]).
    pub fn iter_keys(&self) -> DictKeys<K, V, C> {
        self.iter_keys_batched(DEFAULT_BATCH as usize)
    }

    /// [`Dict::iter_keys`] fetching `batch` keys per round trip.
    pub fn iter_keys_batched(&self, batch: usize) -> DictKeys<K, V, C> {
        DictKeys {
            pages: self.pages(batch, false),
            buf: VecDeque::new(),
        }
    }

    /// Inserts every pair, in one round trip (Python's `update`).
    ///
    /// # Errors
    /// As for [`Dict::insert`].
    pub fn update<'a, I>(&self, pairs: I) -> Result<(), Error>
    where
        I: IntoIterator<Item = (&'a K, &'a V)>,
        K: 'a,
        V: 'a,
    {
        let enc: Result<Vec<_>, Error> = pairs
            .into_iter()
            .map(|(k, v)| Ok((self.key(k)?, self.enc(v)?)))
            .collect();
        unit(self.raw.call(Op::DictUpdate(enc?))?)
    }

    /// Copies of the values at several keys, in one round trip.
    ///
    /// # Errors
    /// As for [`Dict::get`].
    pub fn get_many<'a, I>(&self, keys: I) -> Result<Vec<Option<V>>, Error>
    where
        I: IntoIterator<Item = &'a K>,
        K: 'a,
    {
        let enc: Result<Vec<_>, Error> = keys.into_iter().map(|k| self.key(k)).collect();
        match self.raw.call(Op::DictGetMany(enc?))? {
            Reply::MaybeList(vs) => vs
                .iter()
                .map(|v| v.as_ref().map(|b| self.dec(b)).transpose())
                .collect(),
            r => Err(unexpected(r)),
        }
    }

    /// Runs `f(&mut value, arg)` on the value at `key` **inside the server**,
    /// atomically with respect to every other operation on this dict, and
    /// returns what `f` returns. This is the way to update shared values
    /// without racing a `get` and an `insert`.
    ///
    /// `f` is a `fn` item or a non-capturing closure (a capturing one does
    /// not compile): pass data through `arg`. It runs in the server process,
    /// so the client and the server must run the same executable (true for a
    /// manager started by this program; checked when connecting).
    ///
    /// # Errors
    /// [`Error::KeyMissing`] if `key` is absent; [`Error::ForeignExecutable`]
    /// if the server runs another executable; [`Error::Panicked`] if `f`
    /// panicked (the value is then unchanged); [`Error::Update`] if the
    /// stored value is not a `V`.
    pub fn update_with<A, R, F>(&self, key: &K, f: F, arg: A) -> Result<R, Error>
    where
        F: Fn(&mut V, A) -> R + Copy + Send + 'static,
        C: Codec<A> + Codec<R>,
    {
        self.apply(key, None, f, arg)
    }

    /// Like [`Dict::update_with`], inserting `default` first when `key` is
    /// missing (a counter: `update_or_insert_with(&k, &0, |v, n| *v += n, 1)`).
    /// If `f` then fails, the default stays inserted.
    ///
    /// # Errors
    /// As for [`Dict::update_with`], without [`Error::KeyMissing`].
    pub fn update_or_insert_with<A, R, F>(
        &self,
        key: &K,
        default: &V,
        f: F,
        arg: A,
    ) -> Result<R, Error>
    where
        F: Fn(&mut V, A) -> R + Copy + Send + 'static,
        C: Codec<A> + Codec<R>,
    {
        let d = self.enc(default)?;
        self.apply(key, Some(d), f, arg)
    }

    /// [`Dict::update_or_insert_with`] for many keys in one round trip: for
    /// each `(key, arg)`, inserts `default` if the key is missing, then runs
    /// `f(&mut value, arg)` in the server. Each update is atomic on its own;
    /// they run in order. Returns each result (a counter of words:
    /// `d.update_or_insert_many_with(&0, |n, k| *n += k, words.iter().map(|w| (w, 1)))`).
    ///
    /// # Errors
    /// As for [`Dict::update_with`]; the first failed update's error (the
    /// updates before it took effect, those after it too).
    pub fn update_or_insert_many_with<'a, I, A, R, F>(
        &self,
        default: &V,
        f: F,
        items: I,
    ) -> Result<Vec<R>, Error>
    where
        I: IntoIterator<Item = (&'a K, A)>,
        K: 'a,
        F: Fn(&mut V, A) -> R + Copy + Send + 'static,
        C: Codec<A> + Codec<R>,
    {
        if !self.raw.session.same_exe()? {
            return Err(Error::ForeignExecutable);
        }
        let func = code_ref::Update::<F, C, V, A, R>::offset(f);
        let d = self.enc(default)?;
        let ops: Result<Vec<_>, Error> = items
            .into_iter()
            .map(|(k, a)| {
                let op = Op::DictApply {
                    key: self.key(k)?,
                    default: Some(d.clone()),
                    func,
                    arg: self.raw.enc_bytes::<C, A>(&a)?,
                };
                Ok((self.raw.id, op))
            })
            .collect();
        match self.raw.session.call(&crate::proto::Request::Batch(ops?))? {
            Reply::Batch(replies) => replies
                .into_iter()
                .map(|r| match r {
                    Reply::Bytes(b) => self.raw.dec::<C, R>(&b),
                    Reply::Err(e) => Err(Error::from_remote(e)),
                    r => Err(unexpected(r)),
                })
                .collect(),
            r => Err(unexpected(r)),
        }
    }

    fn apply<A, R, F>(&self, key: &K, default: Option<Val>, f: F, arg: A) -> Result<R, Error>
    where
        F: Fn(&mut V, A) -> R + Copy + Send + 'static,
        C: Codec<A> + Codec<R>,
    {
        let func = code_ref::Update::<F, C, V, A, R>::offset(f);
        let key = self.key(key)?;
        run_update::<C, A, R>(&self.raw, func, &arg, |func, arg| Op::DictApply {
            key,
            default,
            func,
            arg,
        })
    }
}
