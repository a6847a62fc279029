//! The Python binding (`vitrust._vitrust`): converts arrays, releases the
//! interpreter around every heavy call, and maps core errors to `ValueError`.
//! No algorithm lives here.

use crate::alloc::zeros;
use crate::cancel::{self, Cancel};
use crate::pool::with_pool;
use crate::{
    prune_to_rate, Error, ErrorKind, Expander, Layout, Score, Scores, Searcher, VdConfig, Weights,
};
use arrays::{by_width, u32_list, Floats, IntArg};
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1};
use pyo3::exceptions::{PyKeyboardInterrupt, PyMemoryError, PyOSError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

mod arrays;
// Zero-copy read-only numpy views of a memory-mapped checkpoint.
#[allow(unsafe_code)]
mod checkpoint;
mod format;

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

/// The VD configuration: register size, step widths, comparator and taps.
#[pyclass(
    name = "VDConfig",
    module = "vitrust",
    frozen,
    eq,
    hash,
    skip_from_py_object
)]
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PyConfig(VdConfig);

#[pymethods]
impl PyConfig {
    #[new]
    #[pyo3(signature = (
        flip_flops=IntArg::Default(10), n_in=IntArg::Default(1), n_out=IntArg::Default(5),
        comparator_bits=IntArg::Default(1), threshold=IntArg::Default(1), taps=None,
        seed=IntArg::Default(0),
    ), text_signature = "(flip_flops=10, n_in=1, n_out=5, comparator_bits=1, threshold=1, taps=None, seed=0)")]
    fn new(
        flip_flops: IntArg<'_>,
        n_in: IntArg<'_>,
        n_out: IntArg<'_>,
        comparator_bits: IntArg<'_>,
        threshold: IntArg<'_>,
        taps: Option<&Bound<'_, PyAny>>,
        seed: IntArg<'_>,
    ) -> PyResult<Self> {
        let (k, n_in, n_out) = (
            flip_flops.u32("flip_flops")?,
            n_in.u32("n_in")?,
            n_out.u32("n_out")?,
        );
        let (nc, th) = (
            comparator_bits.u32("comparator_bits")?,
            threshold.u32("threshold")?,
        );
        let seed = seed.u64("seed")?;
        let config = match taps {
            None => VdConfig::from_seed(k, n_in, n_out, nc, th, seed),
            Some(taps) => VdConfig::new(k, n_in, n_out, nc, th, u32_list("taps", taps)?),
        };
        config.map(Self).map_err(value_error)
    }

    #[getter]
    fn flip_flops(&self) -> u32 {
        self.0.flip_flops()
    }
    #[getter]
    fn n_in(&self) -> u32 {
        self.0.n_in()
    }
    #[getter]
    fn n_out(&self) -> u32 {
        self.0.n_out()
    }
    #[getter]
    fn comparator_bits(&self) -> u32 {
        self.0.comparator_bits()
    }
    #[getter]
    fn threshold(&self) -> u32 {
        self.0.threshold()
    }
    #[getter]
    fn taps(&self) -> Vec<u32> {
        self.0.taps().to_vec()
    }
    /// Index compression ratio `n_out / n_in`: weights per index bit.
    #[getter]
    fn ratio(&self) -> f64 {
        f64::from(self.0.n_out()) / f64::from(self.0.n_in())
    }
    /// Share of weights a random input keeps: `threshold / 2^comparator_bits`.
    #[getter]
    fn keep_fraction(&self) -> f64 {
        f64::from(self.0.threshold()) / f64::from(1u32 << self.0.comparator_bits())
    }

    fn __repr__(&self) -> String {
        let c = &self.0;
        format!(
            "VDConfig(flip_flops={}, n_in={}, n_out={}, comparator_bits={}, threshold={}, taps=[{} masks])",
            c.flip_flops(), c.n_in(), c.n_out(), c.comparator_bits(), c.threshold(), c.taps().len()
        )
    }

    fn __reduce__<'py>(
        slf: &Bound<'py, Self>,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyTuple>)> {
        let c = &slf.get().0;
        let args = (
            c.flip_flops(),
            c.n_in(),
            c.n_out(),
            c.comparator_bits(),
            c.threshold(),
            c.taps().to_vec(),
        );
        Ok((slf.get_type().into_any(), args.into_pyobject(slf.py())?))
    }
}

fn score_kind(score: &str) -> PyResult<Score> {
    match score {
        "abs" => Ok(Score::Abs),
        "square" => Ok(Score::Square),
        "raw" => Ok(Score::Raw),
        _ => Err(PyValueError::new_err(format!(
            "score = {score:?}: expected 'abs', 'square' or 'raw'"
        ))),
    }
}

fn simd_level(name: Option<&str>) -> PyResult<crate::Level> {
    match name {
        None => Ok(crate::Level::best()),
        Some(n) => crate::Level::from_name(n).ok_or_else(|| {
            PyValueError::new_err(format!(
                "simd = {n:?}: expected 'portable', 'avx2' or 'avx512'"
            ))
        }),
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

/// Searches every block at multiplier `lam`: `(index, nnz, metric)`.
#[pyfunction]
#[pyo3(signature = (config, weights, score, lam, block_steps, threads=None, max_bytes=crate::DEFAULT_MAX_SEARCH_BYTES, simd=None))]
#[allow(clippy::too_many_arguments)]
fn search<'py>(
    py: Python<'py>,
    config: &PyConfig,
    weights: &Bound<'py, PyAny>,
    score: &str,
    lam: f64,
    block_steps: usize,
    threads: Option<usize>,
    max_bytes: usize,
    simd: Option<&str>,
) -> PyResult<(Bound<'py, PyArray1<u64>>, usize, f64)> {
    let level = simd_level(simd)?;
    if !lam.is_finite() {
        return Err(PyValueError::new_err(format!(
            "lam = {lam}: must be finite"
        )));
    }
    let arr = Floats::extract(weights, "weights")?;
    let w = arr.weights()?;
    let (kind, cfg) = (score_kind(score)?, &config.0);
    let (index, nnz, metric) = detached(py, threads, || {
        let layout = Layout::new(cfg, w.len(), block_steps)?;
        let s = Searcher::new(cfg, layout, Scores::new(w, kind), max_bytes)?.with_level(level)?;
        let mut index = zeros::<u64>(layout.index_len(), "the index")?;
        let res = s.run(lam, &mut index)?;
        Ok((
            index,
            res.iter().map(|b| b.kept).sum(),
            res.iter().map(|b| b.metric).sum(),
        ))
    })?;
    Ok((index.into_pyarray(py), nnz, metric))
}

/// Searches at the multiplier that prunes `rate`: `(index, nnz, lam, passes)`.
#[pyfunction]
#[pyo3(signature = (config, weights, score, rate, block_steps, threads=None, max_bytes=crate::DEFAULT_MAX_SEARCH_BYTES))]
#[allow(clippy::too_many_arguments)]
fn search_rate<'py>(
    py: Python<'py>,
    config: &PyConfig,
    weights: &Bound<'py, PyAny>,
    score: &str,
    rate: f64,
    block_steps: usize,
    threads: Option<usize>,
    max_bytes: usize,
) -> PyResult<(Bound<'py, PyArray1<u64>>, usize, f64, f64)> {
    if !(0.0..1.0).contains(&rate) {
        return Err(PyValueError::new_err(format!(
            "rate = {rate}: must be in [0, 1)"
        )));
    }
    let arr = Floats::extract(weights, "weights")?;
    let w = arr.weights()?;
    let (kind, cfg) = (score_kind(score)?, &config.0);
    let (index, r) = detached(py, threads, || {
        let layout = Layout::new(cfg, w.len(), block_steps)?;
        let s = Searcher::new(cfg, layout, Scores::new(w, kind), max_bytes)?;
        let mut index = zeros::<u64>(layout.index_len(), "the index")?;
        let r = prune_to_rate(&s, rate, &mut index)?;
        Ok((index, r))
    })?;
    Ok((index.into_pyarray(py), r.kept, r.lam, r.passes))
}

/// The keep-mask (1-D bool) of `n_weights` weights.
#[pyfunction]
#[pyo3(signature = (config, index, n_weights, block_steps, threads=None))]
fn expand<'py>(
    py: Python<'py>,
    config: &PyConfig,
    index: PyReadonlyArray1<'py, u64>,
    n_weights: usize,
    block_steps: usize,
    threads: Option<usize>,
) -> PyResult<Bound<'py, PyArray1<bool>>> {
    let layout = Layout::new(&config.0, n_weights, block_steps).map_err(value_error)?;
    layout.check_index(index.len()?).map_err(value_error)?;
    let idx = index.as_slice()?;
    let mask = detached(py, threads, || {
        let e = Expander::new(&config.0, layout);
        let mut mask = zeros::<bool>(n_weights, "the keep-mask")?;
        e.mask(idx, &mut mask)?;
        Ok(mask)
    })?;
    Ok(mask.into_pyarray(py))
}

/// Where each block's kept values start, with the total last (`n_blocks + 1`).
#[pyfunction]
#[pyo3(signature = (config, index, n_weights, block_steps, threads=None))]
fn block_starts<'py>(
    py: Python<'py>,
    config: &PyConfig,
    index: PyReadonlyArray1<'py, u64>,
    n_weights: usize,
    block_steps: usize,
    threads: Option<usize>,
) -> PyResult<Bound<'py, PyArray1<u64>>> {
    let layout = Layout::new(&config.0, n_weights, block_steps).map_err(value_error)?;
    let idx = index.as_slice()?;
    let starts = detached(py, threads, || Expander::new(&config.0, layout).starts(idx))?;
    starts_array(py, starts)
}

/// `v` converted element by element into a fallibly allocated vector.
fn convert<A: Copy, B>(v: &[A], what: &str, f: impl Fn(A) -> B) -> PyResult<Vec<B>> {
    let mut out = crate::alloc::with_capacity(v.len(), what).map_err(value_error)?;
    out.extend(v.iter().map(|&a| f(a)));
    Ok(out)
}

fn starts_array(py: Python<'_>, starts: Vec<usize>) -> PyResult<Bound<'_, PyArray1<u64>>> {
    Ok(convert(&starts, "the block starts", |s| s as u64)?.into_pyarray(py))
}

/// Block starts handed back from Python, as the core takes them.
fn starts_arg(starts: Option<PyReadonlyArray1<'_, u64>>) -> PyResult<Option<Vec<usize>>> {
    starts
        .map(|s| convert(s.as_slice()?, "the block starts", |v| v as usize))
        .transpose()
}

/// The kept weights, in C order and their own dtype, and their block starts.
#[pyfunction]
#[pyo3(signature = (config, index, block_steps, weights, threads=None))]
fn gather<'py>(
    py: Python<'py>,
    config: &PyConfig,
    index: PyReadonlyArray1<'py, u64>,
    block_steps: usize,
    weights: &Bound<'py, PyAny>,
    threads: Option<usize>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyArray1<u64>>)> {
    let arr = Floats::extract(weights, "weights")?;
    let idx = index.as_slice()?;
    let layout = Layout::new(&config.0, arr.weights()?.len(), block_steps).map_err(value_error)?;
    macro_rules! run {
        ($w:expr, $t:ty) => {{
            let (values, starts) = detached(py, threads, || {
                Expander::new(&config.0, layout).gather::<$t>(idx, $w)
            })?;
            (
                values.into_pyarray(py).into_any(),
                starts_array(py, starts)?,
            )
        }};
    }
    let (values, starts) = by_width!(arr, run);
    Ok((arr.relabel(values)?, starts))
}

/// A dense 1-D array: `values` on the mask, zero elsewhere.
#[pyfunction]
#[pyo3(signature = (config, index, block_steps, values, n_weights, threads=None, starts=None))]
#[allow(clippy::too_many_arguments)]
fn scatter<'py>(
    py: Python<'py>,
    config: &PyConfig,
    index: PyReadonlyArray1<'py, u64>,
    block_steps: usize,
    values: &Bound<'py, PyAny>,
    n_weights: usize,
    threads: Option<usize>,
    starts: Option<PyReadonlyArray1<'py, u64>>,
) -> PyResult<Bound<'py, PyAny>> {
    let arr = Floats::extract(values, "values")?;
    let idx = index.as_slice()?;
    let starts = starts_arg(starts)?;
    let layout = Layout::new(&config.0, n_weights, block_steps).map_err(value_error)?;
    macro_rules! fill {
        ($v:expr, $t:ty) => {{
            let dense = detached(py, threads, || {
                let e = Expander::new(&config.0, layout);
                let mut dense = zeros::<$t>(n_weights, "the dense array")?;
                e.scatter(idx, $v, starts.as_deref(), &mut dense)?;
                Ok(dense)
            })?;
            dense.into_pyarray(py).into_any()
        }};
    }
    let dense = by_width!(arr, fill);
    arr.relabel(dense)
}

/// `W @ x` for `W` (the pruned tensor as `rows` rows) and a C-order `x` of
/// `cols * batch` elements, or with `left` `x @ W` for `x` of `batch * rows`;
/// `x` (float32 or float64) sets the type computed in, and the values (of any
/// value dtype but float64 with a float32 `x`) are widened to it as read.
#[pyfunction]
#[pyo3(signature = (config, index, block_steps, values, n_weights, rows, x, batch, threads=None, starts=None, left=false))]
#[allow(clippy::too_many_arguments)]
fn matmul<'py>(
    py: Python<'py>,
    config: &PyConfig,
    index: PyReadonlyArray1<'py, u64>,
    block_steps: usize,
    values: &Bound<'py, PyAny>,
    n_weights: usize,
    rows: usize,
    x: &Bound<'py, PyAny>,
    batch: usize,
    threads: Option<usize>,
    starts: Option<PyReadonlyArray1<'py, u64>>,
    left: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let layout = Layout::new(&config.0, n_weights, block_steps).map_err(value_error)?;
    let idx = index.as_slice()?;
    let starts = starts_arg(starts)?;
    let out_rows = if left { n_weights / rows.max(1) } else { rows };
    let out_len =
        crate::alloc::product(batch, out_rows, "output elements (batch x rows or columns)")
            .map_err(value_error)?;
    let (v, xs) = (
        Floats::extract(values, "values")?,
        Floats::extract(x, "operand")?,
    );
    macro_rules! run {
        ($v:expr, $x:expr, $t:ty) => {{
            let s = starts.as_deref();
            let y = detached(py, threads, || {
                let e = Expander::new(&config.0, layout);
                // Sizes first: a bad batch is a ValueError, not a huge allocation.
                crate::products::shapes(&e, idx, rows, batch, $x.len(), out_len, left)?;
                let mut y = zeros::<$t>(out_len, "the product")?;
                if left {
                    crate::rmatmul(&e, idx, $v, s, rows, $x, batch, &mut y)?;
                } else {
                    crate::matmul(&e, idx, $v, s, rows, $x, batch, &mut y)?;
                }
                Ok(y)
            })?;
            y.into_pyarray(py).into_any()
        }};
    }
    Ok(match (v.weights()?, xs.weights()?) {
        (Weights::F16(v), Weights::F32(x)) => run!(v, x, f32),
        (Weights::BF16(v), Weights::F32(x)) => run!(v, x, f32),
        (Weights::F8E4M3(v), Weights::F32(x)) => run!(v, x, f32),
        (Weights::F8E5M2(v), Weights::F32(x)) => run!(v, x, f32),
        (Weights::F32(v), Weights::F32(x)) => run!(v, x, f32),
        (Weights::F16(v), Weights::F64(x)) => run!(v, x, f64),
        (Weights::BF16(v), Weights::F64(x)) => run!(v, x, f64),
        (Weights::F8E4M3(v), Weights::F64(x)) => run!(v, x, f64),
        (Weights::F8E5M2(v), Weights::F64(x)) => run!(v, x, f64),
        (Weights::F32(v), Weights::F64(x)) => run!(v, x, f64),
        (Weights::F64(v), Weights::F64(x)) => run!(v, x, f64),
        _ => {
            return Err(PyTypeError::new_err(
                "operand must be float32 or float64, and float64 for float64 values",
            ))
        }
    })
}

/// `(n_blocks, index_len, index_bits)` of a tensor of `n_weights` weights.
#[pyfunction]
fn layout_info(
    config: &PyConfig,
    n_weights: usize,
    block_steps: usize,
) -> PyResult<(usize, usize, u64)> {
    let l = Layout::new(&config.0, n_weights, block_steps).map_err(value_error)?;
    Ok((l.n_blocks(), l.index_len(), l.index_bits()))
}

/// The pinned tap generator (see `vd::generate_taps`).
#[pyfunction]
fn generate_taps(
    flip_flops: IntArg<'_>,
    n_in: IntArg<'_>,
    n_out: IntArg<'_>,
    comparator_bits: IntArg<'_>,
    seed: IntArg<'_>,
) -> PyResult<Vec<u32>> {
    let one = IntArg::Default(1);
    let c = PyConfig::new(flip_flops, n_in, n_out, comparator_bits, one, None, seed)?;
    Ok(c.0.taps().to_vec())
}

/// `(comparator_bits, threshold)` with `threshold / 2^bits` close to `1 - rate`.
#[pyfunction]
fn default_comparator(rate: f64) -> PyResult<(u32, u32)> {
    if !(0.0..1.0).contains(&rate) {
        return Err(PyValueError::new_err(format!(
            "rate = {rate}: must be in [0, 1)"
        )));
    }
    Ok(crate::default_comparator(rate))
}

/// Instruction-set levels this CPU runs, best last (the one used by default).
#[pyfunction]
fn simd_levels() -> Vec<&'static str> {
    crate::Level::all()
        .into_iter()
        .filter(|l| l.available())
        .map(|l| l.name())
        .collect()
}

/// The number of threads work with `threads=None` runs on (`VITRUST_NUM_THREADS`
/// or one per core).
#[pyfunction]
fn default_threads() -> PyResult<usize> {
    crate::pool::default_threads().map_err(value_error)
}

#[pymodule]
fn _vitrust(m: &Bound<'_, PyModule>) -> PyResult<()> {
    load_numpy_api(m.py())?;
    checkpoint::register(m)?;
    m.add_class::<PyConfig>()?;
    m.add("FormatError", m.py().get_type::<FormatError>())?;
    m.add_function(wrap_pyfunction!(search, m)?)?;
    m.add_function(wrap_pyfunction!(search_rate, m)?)?;
    m.add_function(wrap_pyfunction!(expand, m)?)?;
    m.add_function(wrap_pyfunction!(block_starts, m)?)?;
    m.add_function(wrap_pyfunction!(gather, m)?)?;
    m.add_function(wrap_pyfunction!(scatter, m)?)?;
    m.add_function(wrap_pyfunction!(generate_taps, m)?)?;
    m.add_function(wrap_pyfunction!(layout_info, m)?)?;
    m.add_function(wrap_pyfunction!(matmul, m)?)?;
    m.add_function(wrap_pyfunction!(simd_levels, m)?)?;
    m.add_function(wrap_pyfunction!(default_comparator, m)?)?;
    m.add_function(wrap_pyfunction!(default_threads, m)?)?;
    m.add("DEFAULT_MAX_SEARCH_BYTES", crate::DEFAULT_MAX_SEARCH_BYTES)?;
    m.add("MAX_BLOCK_STEPS", crate::layout::MAX_BLOCK_STEPS)?;
    // Every limit the Python layer checks before calling in, from the one
    // place the core defines it.
    m.add("MAX_THREADS", crate::pool::MAX_THREADS)?;
    m.add("MAX_FLIP_FLOPS", crate::vd::MAX_FLIP_FLOPS)?;
    m.add("MAX_N_IN", crate::vd::MAX_N_IN)?;
    m.add("MAX_N_OUT", crate::vd::MAX_N_OUT)?;
    m.add("MAX_COMPARATOR_BITS", crate::vd::MAX_COMPARATOR_BITS)?;
    m.add("MAX_TAPS", crate::format::meta::MAX_TAPS)?;
    m.add("MAX_DIMS", crate::format::MAX_DIMS)?;
    format::register(m)?;
    Ok(())
}
