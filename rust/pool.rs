//! Explicit thread control: `None` runs on rayon's global pool, `Some(n)` in a
//! local pool of `n` threads (results never depend on the choice).

use crate::{bail, Result};

pub fn with_threads<R: Send>(threads: Option<usize>, f: impl FnOnce() -> R + Send) -> Result<R> {
    match threads {
        None => Ok(f()),
        Some(0) => bail!("threads = 0: need at least one thread"),
        Some(n) => match rayon::ThreadPoolBuilder::new().num_threads(n).build() {
            Ok(pool) => Ok(pool.install(f)),
            Err(e) => bail!("could not start {n} threads: {e}"),
        },
    }
}
