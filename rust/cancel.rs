//! Cooperative cancellation: a flag that long work checks between blocks (an
//! atomic load), so another thread can make it stop early.
//!
//! [`scope`] runs work with a token as the current one. The
//! [`Searcher`](crate::Searcher) and [`Expander`](crate::Expander) pick the
//! current token up when they are built. Their parallel loops skip what is
//! left once it is cancelled (checked between blocks and steps), and the
//! serial code after each loop calls [`Cancel::checkpoint`], which unwinds
//! the work (silently: no panic message) up to `scope`, which returns
//! [`Error::interrupted`]. (Unwinding inside the loops would be slower:
//! rayon finishes every sibling job of one that panics, and each of those
//! would unwind on its own.) Unwinding rather than
//! returning early means no loop in between (rate control, products, file
//! checks) needs to know about cancellation, and a cancelled call never
//! produces a half-made result, only the error. Sequential code that must
//! clean up (a save removing its temporary file) calls [`check`] instead.

use crate::{Error, Result};
use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A cancel flag shared by the caller and the work; the default one is never
/// cancelled (and costs nothing to check).
#[derive(Clone, Debug, Default)]
pub struct Cancel(Option<Arc<AtomicBool>>);

/// The unwinding payloads: a cancelled checkpoint, or an error raised where
/// it cannot be returned (see [`fail`]).
struct Interrupted;
struct Failed(Error);

impl Cancel {
    /// A fresh token that [`cancel`](Self::cancel) can set.
    pub fn new() -> Self {
        Self(Some(Arc::new(AtomicBool::new(false))))
    }

    /// Asks every holder of this token to stop.
    pub fn cancel(&self) {
        if let Some(flag) = &self.0 {
            flag.store(true, Ordering::Relaxed);
        }
    }

    #[inline]
    pub fn is_cancelled(&self) -> bool {
        self.0.as_ref().is_some_and(|f| f.load(Ordering::Relaxed))
    }

    /// `Err(Error::interrupted())` once cancelled.
    #[inline]
    pub fn check(&self) -> Result<()> {
        if self.is_cancelled() {
            return Err(Error::interrupted());
        }
        Ok(())
    }

    /// Unwinds to the enclosing [`scope`] once cancelled. Only a token taken
    /// from [`current`] inside a scope can be cancelled, so this never
    /// unwinds outside one.
    #[inline]
    pub fn checkpoint(&self) {
        if self.is_cancelled() {
            throw()
        }
    }
}

/// `value.checked(token)`: the value, after a [`Cancel::checkpoint`] (for the
/// result of a parallel loop whose blocks were skipped once cancelled).
pub trait Checked: Sized {
    #[inline]
    fn checked(self, token: &Cancel) -> Self {
        token.checkpoint();
        self
    }
}
impl<T> Checked for T {}

#[cold]
fn throw() -> ! {
    // `resume_unwind` skips the panic hook: nothing is printed.
    panic::resume_unwind(Box::new(Interrupted))
}

/// Unwinds to the enclosing [`scope`], which returns `e`: for errors inside
/// parallel loops that have no way to return one (a workspace that cannot be
/// allocated). Outside a scope this is a panic (without a message).
#[cold]
pub fn fail(e: Error) -> ! {
    panic::resume_unwind(Box::new(Failed(e)))
}

thread_local! {
    static CURRENT: RefCell<Cancel> = RefCell::new(Cancel::default());
}

/// Runs `f` with `token` as this thread's current token (the previous one is
/// restored afterwards). Returns `Err(Error::interrupted())` if a checkpoint
/// unwound it, or the error given to [`fail`]; any other panic goes on
/// unwinding.
pub fn scope<R>(token: &Cancel, f: impl FnOnce() -> R) -> Result<R> {
    let prev = CURRENT.with(|c| c.replace(token.clone()));
    // The work's state is dropped with the unwinding; nothing half-made escapes.
    let out = panic::catch_unwind(AssertUnwindSafe(f));
    CURRENT.with(|c| *c.borrow_mut() = prev);
    match out {
        Ok(r) => Ok(r),
        Err(payload) if payload.is::<Interrupted>() => Err(Error::interrupted()),
        Err(payload) => match payload.downcast::<Failed>() {
            Ok(failed) => Err(failed.0),
            Err(payload) => panic::resume_unwind(payload),
        },
    }
}

/// This thread's current token (never cancelled outside a [`scope`]).
pub fn current() -> Cancel {
    CURRENT.with(|c| c.borrow().clone())
}

/// `Err(Error::interrupted())` when this thread's current token is cancelled.
pub fn check() -> Result<()> {
    CURRENT.with(|c| c.borrow().check())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn scopes_nest_restore_and_catch_checkpoints() {
        assert!(check().is_ok() && !current().is_cancelled());
        current().checkpoint(); // outside a scope: never cancelled
        let (outer, inner) = (Cancel::new(), Cancel::new());
        outer.cancel();
        let r = scope(&outer, || {
            assert_eq!(check().unwrap_err().kind, ErrorKind::Interrupted);
            assert_eq!(scope(&inner, || check().is_ok()), Ok(true));
            current().checkpoint();
            unreachable!("the checkpoint unwinds")
        });
        assert_eq!(r.unwrap_err().kind, ErrorKind::Interrupted);
        assert!(check().is_ok());
        let failed = scope(&inner, || fail(Error::memory("a test", 7)));
        assert_eq!(failed.unwrap_err(), Error::memory("a test", 7));
        let other = std::panic::catch_unwind(|| scope(&inner, || panic!("a real panic")));
        assert!(other.is_err() && check().is_ok());
    }

    #[test]
    fn skipped_parallel_loops_unwind_to_the_scope() {
        use rayon::prelude::*;
        let token = Cancel::new();
        let r = scope(&token, || {
            let t = current();
            (0..1_000_000u64)
                .into_par_iter()
                .map(|i| {
                    if i == 1000 {
                        t.cancel();
                    }
                    if t.is_cancelled() {
                        return 0;
                    }
                    i
                })
                .sum::<u64>()
                .checked(&t)
        });
        assert_eq!(r.unwrap_err().kind, ErrorKind::Interrupted);
    }
}
