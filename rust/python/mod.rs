//! The Python binding (`vitrust._vitrust`): converts arrays, releases the
//! interpreter around every heavy call, and maps core errors to `ValueError`.
//! No algorithm lives here; one module per area (config, search, expand and
//! products, the file format, checkpoints).

use crate::cancel::{self, Cancel};
use crate::pool::with_pool;
use crate::sys::zeros;
use crate::{
    prune_to_rate, Error, ErrorKind, Expander, Layout, Score, Scores, Searcher, VdConfig, Weights,
};
use arrays::{by_width, u32_list, Floats, IntArg};
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1};
use pyo3::exceptions::{PyKeyboardInterrupt, PyMemoryError, PyOSError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

mod arrays;
#[allow(unsafe_code)] // zero-copy read-only numpy views of a memory-mapped file
mod checkpoint;
mod config;
mod expand;
mod format;
mod search;
mod values;

use config::PyConfig;

pyo3::create_exception!(
    vitrust,
    FormatError,
    PyValueError,
    "A file (or bytes claiming to be one) that is damaged, truncated or hostile."
);

/// The Python exception for a core error: its kind picks the class.
fn value_error(e: Error) -> PyErr {
    match e.kind {
        ErrorKind::Invalid => PyValueError::new_err(e.msg),
        ErrorKind::Format => FormatError::new_err(e.msg),
        ErrorKind::Memory => PyMemoryError::new_err(e.msg),
        ErrorKind::Interrupted => PyKeyboardInterrupt::new_err(e.msg),
        ErrorKind::Io => PyOSError::new_err(e.msg),
    }
}

/// How often a thread waiting for the core runs pending signal handlers.
const SIGNAL_POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// Runs `f` without the interpreter, in `threads` threads, mapping errors.
///
/// The work runs in the pool while this thread waits in slices of
/// [`SIGNAL_POLL`], re-attaching each time to run pending signal handlers.
/// When one raises (Ctrl-C's `KeyboardInterrupt`), the work is cancelled
/// (it checks between blocks), and the exception is returned once the work
/// has stopped; its partial result is dropped.
fn detached<R: Send>(
    py: Python<'_>,
    threads: Option<usize>,
    f: impl FnOnce() -> crate::Result<R> + Send,
) -> PyResult<R> {
    use std::sync::mpsc::{channel, RecvTimeoutError};
    let token = Cancel::new();
    let mut raised: Option<PyErr> = None;
    let outcome = py.detach(|| {
        with_pool(threads, |pool| {
            pool.in_place_scope(|scope| {
                let (tx, rx) = channel();
                let token = &token;
                scope.spawn(move |_| {
                    let _ = tx.send(cancel::scope(token, f).and_then(|r| r));
                });
                loop {
                    match rx.recv_timeout(SIGNAL_POLL) {
                        Ok(r) => return Some(r),
                        // The work panicked; the scope re-raises the panic here.
                        Err(RecvTimeoutError::Disconnected) => return None,
                        Err(RecvTimeoutError::Timeout) if raised.is_none() => {
                            if let Err(e) = Python::attach(|py| py.check_signals()) {
                                token.cancel();
                                raised = Some(e);
                            }
                        }
                        Err(RecvTimeoutError::Timeout) => {}
                    }
                }
            })
        })
    });
    if let Some(e) = raised {
        return Err(e);
    }
    match outcome.map_err(value_error)? {
        Some(r) => r.map_err(value_error),
        None => unreachable!("a panicking job is re-raised by its scope"),
    }
}

/// rust-numpy finds NumPy's C API on first use by running Python code (a
/// version check) and panics if that fails, so a Ctrl-C landing there became
/// a `PanicException`. Signal handlers run only on the main thread: the first
/// lookup is done here, at import, on a thread of its own.
fn load_numpy_api(py: Python<'_>) -> PyResult<()> {
    let loaded = py.detach(|| {
        std::thread::spawn(|| {
            Python::attach(|py| {
                let _ = PyArray1::<f64>::zeros(py, 0, false);
            })
        })
        .join()
    });
    loaded.map_err(|_| {
        pyo3::exceptions::PyImportError::new_err("vitrust: could not load NumPy's C API")
    })
}

#[pymodule]
fn _vitrust(m: &Bound<'_, PyModule>) -> PyResult<()> {
    load_numpy_api(m.py())?;
    checkpoint::register(m)?;
    m.add_class::<config::PyConfig>()?;
    m.add("FormatError", m.py().get_type::<FormatError>())?;
    m.add_function(wrap_pyfunction!(search::search, m)?)?;
    m.add_function(wrap_pyfunction!(search::search_rate, m)?)?;
    m.add_function(wrap_pyfunction!(search::integer_blocks, m)?)?;
    m.add_function(wrap_pyfunction!(expand::expand, m)?)?;
    m.add_function(wrap_pyfunction!(expand::block_starts, m)?)?;
    m.add_function(wrap_pyfunction!(expand::gather, m)?)?;
    m.add_function(wrap_pyfunction!(expand::scatter, m)?)?;
    m.add_function(wrap_pyfunction!(expand::transposed, m)?)?;
    m.add_function(wrap_pyfunction!(config::generate_taps, m)?)?;
    m.add_function(wrap_pyfunction!(config::layout_info, m)?)?;
    m.add_function(wrap_pyfunction!(expand::matmul, m)?)?;
    m.add_function(wrap_pyfunction!(config::simd_levels, m)?)?;
    m.add_function(wrap_pyfunction!(config::default_comparator, m)?)?;
    m.add_function(wrap_pyfunction!(config::default_threads, m)?)?;
    m.add("DEFAULT_MAX_SEARCH_BYTES", crate::DEFAULT_MAX_SEARCH_BYTES)?;
    m.add("MAX_BLOCK_STEPS", crate::layout::MAX_BLOCK_STEPS)?;
    // Every limit the Python layer checks before calling in, from the one
    // place the core defines it.
    m.add("MAX_THREADS", crate::pool::MAX_THREADS)?;
    m.add("MAX_FLIP_FLOPS", crate::vd::MAX_FLIP_FLOPS)?;
    m.add("MAX_N_IN", crate::vd::MAX_N_IN)?;
    m.add("MAX_N_OUT", crate::vd::MAX_N_OUT)?;
    m.add("MAX_COMPARATOR_BITS", crate::vd::MAX_COMPARATOR_BITS)?;
    m.add("MAX_BLOCK_THRESHOLD", crate::vd::MAX_BLOCK_THRESHOLD)?;
    m.add("MAX_TAPS", crate::format::meta::MAX_TAPS)?;
    m.add("MAX_DIMS", crate::format::MAX_DIMS)?;
    format::register(m)?;
    values::register(m)?;
    Ok(())
}
