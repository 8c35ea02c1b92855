//! `Value<T>` and `Namespace`.

use mproc_shm::codec::Codec;

use crate::code_ref;
use crate::error::Error;
use crate::proto::{Kind, Op, Reply};
use crate::proxy::{bytes, proxy_type, run_update, unexpected, unit};
use crate::repr::NamespaceCodec;

proxy_type! {
    /// A proxy of one shared value of any serde type (CPython's
    /// `ValueProxy`, without the typecode).
    ///
    /// [`Value::get`] returns a copy. `v.set(v.get()? + 1)` is a race between
    /// processes; [`Value::update_with`] is not.
    ///
    /// # Examples
    ///
    /// ```
    /// let m = mproc_manager::Manager::start()?;
    /// let v = m.value(10u64)?;
    /// let after = v.update_with(|x: &mut u64, n: u64| { *x += n; *x }, 5)?;
    /// assert_eq!(after, 15);
    /// assert_eq!(v.get()?, 15);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    Value<T; C>, Value, Kind::Value
}

impl<T, C: Codec<T>> Value<T, C> {
    /// A copy of the value.
    ///
    /// # Errors
    /// [`Error::Disconnected`]; [`Error::Decode`] if it is not a `T`.
    pub fn get(&self) -> Result<T, Error> {
        let b = bytes(self.raw.call(Op::ValueGet)?)?;
        self.raw.dec::<C, T>(&b)
    }

    /// Replaces the value.
    ///
    /// # Errors
    /// [`Error::Disconnected`]; [`Error::Encode`].
    pub fn set(&self, value: &T) -> Result<(), Error> {
        unit(self.raw.call(Op::ValueSet(self.raw.enc::<C, T>(value)?))?)
    }

    /// Replaces the value and returns the old one, atomically.
    ///
    /// # Errors
    /// As for [`Value::get`] and [`Value::set`].
    pub fn swap(&self, value: &T) -> Result<T, Error> {
        let b = bytes(self.raw.call(Op::ValueSwap(self.raw.enc::<C, T>(value)?))?)?;
        self.raw.dec::<C, T>(&b)
    }

    /// Runs `f(&mut value, arg)` inside the server, atomically, and returns
    /// its result. See [`Dict::update_with`](crate::Dict::update_with) for
    /// the rules on `f`.
    ///
    /// # Errors
    /// [`Error::ForeignExecutable`], [`Error::Panicked`], [`Error::Update`].
    pub fn update_with<A, R, F>(&self, f: F, arg: A) -> Result<R, Error>
    where
        F: Fn(&mut T, A) -> R + Copy + Send + 'static,
        C: Codec<A> + Codec<R>,
    {
        let func = code_ref::Update::<F, C, T, A, R>::offset(f);
        run_update::<C, A, R>(&self.raw, func, &arg, |func, arg| Op::ValueApply {
            func,
            arg,
        })
    }
}

proxy_type! {
    /// A proxy of a namespace: named fields of any serde types (CPython's
    /// `NamespaceProxy`).
    ///
    /// Python reads `ns.name`; here fields are typed at each access:
    /// `ns.get::<String>("name")`. As in CPython, fields whose names start
    /// with `_` are local to the proxy and never reach the server: such
    /// names are refused here ([`Error::Remote`]) rather than silently kept
    /// apart.
    ///
    /// # Examples
    ///
    /// ```
    /// let m = mproc_manager::Manager::start()?;
    /// let ns = m.namespace()?;
    /// ns.set("name", &"Bob")?;
    /// ns.set("age", &42u32)?;
    /// assert_eq!(ns.get::<String>("name")?, "Bob");
    /// assert_eq!(ns.names()?, ["age", "name"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    Namespace<; C>, Namespace, Kind::Namespace
}

/// CPython's `str(ns)` ([`Namespace::repr`]); a round trip to the server.
/// If that fails, the error shows inside the parentheses. (`Debug` stays
/// local: the id and the address.)
impl<C> std::fmt::Display for Namespace<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.repr() {
            Ok(r) => f.write_str(&r),
            Err(e) => write!(f, "Namespace(<{e}>)"),
        }
    }
}

fn check_name(name: &str) -> Result<(), Error> {
    if name.starts_with('_') {
        Err(Error::Remote(format!(
            "namespace field {name:?} starts with '_': such fields are private to a proxy"
        )))
    } else {
        Ok(())
    }
}

impl<C> Namespace<C> {
    /// A copy of the field `name`.
    ///
    /// # Errors
    /// [`Error::KeyMissing`] if there is no such field (Python's
    /// `AttributeError`); [`Error::Decode`] if it is not a `T`.
    pub fn get<T>(&self, name: &str) -> Result<T, Error>
    where
        C: Codec<T>,
    {
        check_name(name)?;
        let b = bytes(self.raw.call(Op::NsGet(name.to_owned()))?)?;
        self.raw.dec::<C, T>(&b)
    }

    /// Sets the field `name`.
    ///
    /// # Errors
    /// [`Error::Disconnected`]; [`Error::Encode`].
    pub fn set<T: ?Sized>(&self, name: &str, value: &T) -> Result<(), Error>
    where
        C: NamespaceCodec<T>,
    {
        check_name(name)?;
        let v = self.raw.enc::<C, T>(value)?;
        let repr = C::repr(value, &v.bytes);
        let op = Op::NsSet(name.to_owned(), v, repr);
        unit(self.raw.call(op)?)
    }

    /// Deletes the field `name`.
    ///
    /// # Errors
    /// [`Error::KeyMissing`] if there is no such field.
    pub fn remove(&self, name: &str) -> Result<(), Error> {
        check_name(name)?;
        unit(self.raw.call(Op::NsDel(name.to_owned()))?)
    }

    /// The field names, sorted (as CPython's `repr` lists them).
    ///
    /// # Errors
    /// [`Error::Disconnected`].
    pub fn names(&self) -> Result<Vec<String>, Error> {
        match self.raw.call(Op::NsNames)? {
            Reply::Names(n) => Ok(n),
            r => Err(unexpected(r)),
        }
    }

    /// Runs `f(&mut field, arg)` on the field `name` inside the server,
    /// atomically. See [`Dict::update_with`](crate::Dict::update_with).
    ///
    /// # Errors
    /// [`Error::KeyMissing`], [`Error::ForeignExecutable`],
    /// [`Error::Panicked`], [`Error::Update`].
    pub fn update_with<T, A, R, F>(&self, name: &str, f: F, arg: A) -> Result<R, Error>
    where
        F: Fn(&mut T, A) -> R + Copy + Send + 'static,
        C: NamespaceCodec<T> + Codec<T> + Codec<A> + Codec<R>,
    {
        check_name(name)?;
        // The server remakes the field's repr with the new value.
        let func = code_ref::Update::<F, C, T, A, R>::repr_offset(f);
        run_update::<C, A, R>(&self.raw, func, &arg, |func, arg| Op::NsApply {
            name: name.to_owned(),
            func,
            arg,
        })
    }

    /// CPython's `str(ns)`: `Namespace(age=42, name='Bob')`, fields sorted
    /// by name, in one round trip. Each value reads as Python's `repr`
    /// would show its serde form (strings quoted, numbers plain, `True`,
    /// `None`, `[…]`, `(…)`, `{…}`, structs as `Point(x=1, y=2)`); the
    /// repr is made by the client that set the field (or the server-side
    /// update that changed it) and kept with it, since the server cannot
    /// decode the value itself. `Display` shows the same.
    ///
    /// # Examples
    ///
    /// ```
    /// let m = mproc_manager::Manager::start()?;
    /// let ns = m.namespace()?;
    /// ns.set("name", "Bob")?;
    /// ns.set("age", &42)?;
    /// assert_eq!(ns.repr()?, "Namespace(age=42, name='Bob')");
    /// assert_eq!(ns.to_string(), "Namespace(age=42, name='Bob')");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Disconnected`].
    pub fn repr(&self) -> Result<String, Error> {
        match self.raw.call(Op::NsRepr)? {
            Reply::Names(fields) => Ok(format!("Namespace({})", fields.join(", "))),
            r => Err(unexpected(r)),
        }
    }

    /// `Namespace(age=…, name=…)` with each field shown by `show`, for a
    /// rendering of your own (see [`Namespace::repr`] for CPython's).
    ///
    /// # Errors
    /// [`Error::Disconnected`], or what `show` returns.
    pub fn describe(
        &self,
        mut show: impl FnMut(&str, &Self) -> Result<String, Error>,
    ) -> Result<String, Error> {
        let mut out = String::from("Namespace(");
        for (i, n) in self.names()?.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(n);
            out.push('=');
            out.push_str(&show(n, self)?);
        }
        out.push(')');
        Ok(out)
    }
}
