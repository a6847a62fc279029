//! Explicit thread control: `None` runs on vitrust's default pool, `Some(n)`
//! in a local pool of `n` threads (results never depend on the choice).
//!
//! The default pool has `VITRUST_NUM_THREADS` threads when that variable is
//! set (read once, at first use; anything but an integer in
//! `1..=MAX_THREADS` is an error naming it), else one per core. It is
//! vitrust's own pool rather than rayon's global one so that it can be
//! replaced after a `fork`: a forked child inherits the pool's bookkeeping but
//! none of its threads, so a job sent to it would wait forever. The pool
//! remembers the process id that built it; a process with another id (a
//! forked child) builds a fresh pool of its own on first use.

use crate::{bail, Error, ErrorKind, Result};
use rayon::{ThreadPool, ThreadPoolBuilder};
use std::sync::{Arc, Mutex, OnceLock};

/// The environment variable that sets the default pool's size.
pub const ENV_THREADS: &str = "VITRUST_NUM_THREADS";
/// The most threads a pool may have (explicit or from the environment).
pub const MAX_THREADS: usize = 1024;

pub fn with_threads<R: Send>(threads: Option<usize>, f: impl FnOnce() -> R + Send) -> Result<R> {
    with_pool(threads, |pool| pool.install(f))
}

/// Calls `op` on the calling thread with the pool that `threads` names (for
/// callers that spawn work into it and wait their own way).
pub fn with_pool<R>(threads: Option<usize>, op: impl FnOnce(&ThreadPool) -> R) -> Result<R> {
    match threads {
        None => Ok(op(&*default_pool()?)),
        Some(n) => Ok(op(&*explicit_pool(n)?)),
    }
}

/// The number of threads work with `threads = None` runs on.
pub fn default_threads() -> Result<usize> {
    Ok(default_pool()?.current_num_threads())
}

/// `VITRUST_NUM_THREADS` parsed: `None` when unset (or empty).
pub fn env_threads() -> Result<Option<usize>> {
    static PARSED: OnceLock<Result<Option<usize>>> = OnceLock::new();
    PARSED
        .get_or_init(|| parse_threads(std::env::var_os(ENV_THREADS).as_deref()))
        .clone()
}

/// Parses a value of `VITRUST_NUM_THREADS` (`None`: the variable is unset).
pub fn parse_threads(value: Option<&std::ffi::OsStr>) -> Result<Option<usize>> {
    let Some(raw) = value else { return Ok(None) };
    let Some(s) = raw.to_str() else {
        bail!("{ENV_THREADS}: not valid UTF-8; expected an integer from 1 to {MAX_THREADS}")
    };
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    match s.parse::<usize>() {
        Ok(n) if (1..=MAX_THREADS).contains(&n) => Ok(Some(n)),
        _ => bail!("{ENV_THREADS} = {s:?}: expected an integer from 1 to {MAX_THREADS}"),
    }
}

fn build(n: usize) -> Result<ThreadPool> {
    if n == 0 || n > MAX_THREADS {
        bail!("threads = {n}: must be 1..={MAX_THREADS}");
    }
    ThreadPoolBuilder::new()
        .num_threads(n)
        .thread_name(|i| format!("vitrust-{i}"))
        .build()
        // Starting threads fails for want of memory (or of a thread quota).
        .map_err(|e| {
            Error::new(
                ErrorKind::Memory,
                format!("could not start {n} threads: {e}"),
            )
        })
}

/// A pool kept for reuse: (process id, threads, pool).
type Slot = Mutex<Option<(u32, usize, Arc<ThreadPool>)>>;

/// The default pool of this process, built on first use (again after a fork).
fn default_pool() -> Result<Arc<ThreadPool>> {
    static POOL: Slot = Mutex::new(None);
    cached(&POOL, None)
}

/// A pool of `n` threads. The last one asked for is kept, since starting
/// threads costs more than expanding a large mask and callers that pass
/// `threads` tend to pass the same count every time.
fn explicit_pool(n: usize) -> Result<Arc<ThreadPool>> {
    static LAST: Slot = Mutex::new(None);
    cached(&LAST, Some(n))
}

/// The pool in `slot` when this process built it with `want` threads (any
/// count when `want` is `None`, the default pool), else a new one put there.
fn cached(slot: &Slot, want: Option<usize>) -> Result<Arc<ThreadPool>> {
    // The lock is held only to read or swap the entry, so a fork can't find
    // it held for long; building happens outside it.
    let pid = std::process::id();
    let current = |guard: &Option<(u32, usize, Arc<ThreadPool>)>| {
        guard
            .as_ref()
            .filter(|(p, n, _)| *p == pid && want.is_none_or(|w| w == *n))
            .map(|(_, _, pool)| pool.clone())
    };
    if let Some(pool) = current(&slot.lock().unwrap_or_else(|e| e.into_inner())) {
        return Ok(pool);
    }
    let n = match want.map_or_else(env_threads, |n| Ok(Some(n)))? {
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let fresh = Arc::new(build(n)?);
    let mut guard = slot.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(pool) = current(&guard) {
        return Ok(pool); // another thread of this process built one first
    }
    if let Some((p, _, old)) = guard.replace((pid, n, fresh.clone())) {
        if p != pid {
            // The parent's pool: its threads do not exist here, so dropping
            // it (which signals them) is pointless; leak it instead.
            std::mem::forget(old);
        }
    }
    Ok(fresh)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn parses_the_environment_variable() {
        assert_eq!(parse_threads(None), Ok(None));
        assert_eq!(parse_threads(Some(OsStr::new(""))), Ok(None));
        assert_eq!(parse_threads(Some(OsStr::new(" 3 "))), Ok(Some(3)));
        assert_eq!(parse_threads(Some(OsStr::new("1024"))), Ok(Some(1024)));
        for bad in ["0", "-1", "two", "1.5", "1025", "99999999999999999999999"] {
            let e = parse_threads(Some(OsStr::new(bad))).unwrap_err();
            assert!(e.msg.contains(ENV_THREADS) && e.msg.contains(bad), "{e}");
        }
    }

    #[test]
    fn pools_run_work_with_the_requested_threads() {
        assert_eq!(with_threads(Some(3), rayon::current_num_threads), Ok(3));
        let first = explicit_pool(3).unwrap();
        assert!(
            Arc::ptr_eq(&first, &explicit_pool(3).unwrap()),
            "kept for reuse"
        );
        assert_eq!(with_threads(Some(2), rayon::current_num_threads), Ok(2));
        assert_eq!(with_threads(Some(3), rayon::current_num_threads), Ok(3));
        assert!(with_threads(Some(0), || ()).is_err());
        assert!(with_threads(Some(MAX_THREADS + 1), || ()).is_err());
        let n = default_threads().unwrap();
        assert_eq!(with_threads(None, rayon::current_num_threads), Ok(n));
    }
}
