//! The VD config class, its tap generator and the layout figures.

use super::*;

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
pub struct PyConfig(pub(crate) VdConfig);

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

/// `(n_blocks, index_len, index_bits)` of a tensor of `n_weights` weights.
#[pyfunction]
pub(super) fn layout_info(
    config: &PyConfig,
    n_weights: usize,
    block_steps: usize,
) -> PyResult<(usize, usize, u64)> {
    let l = Layout::new(&config.0, n_weights, block_steps).map_err(value_error)?;
    Ok((l.n_blocks(), l.index_len(), l.index_bits()))
}

/// The pinned tap generator (see `vd::generate_taps`).
#[pyfunction]
pub(super) fn generate_taps(
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
pub(super) fn default_comparator(rate: f64) -> PyResult<(u32, u32)> {
    if !(0.0..1.0).contains(&rate) {
        return Err(PyValueError::new_err(format!(
            "rate = {rate}: must be in [0, 1)"
        )));
    }
    Ok(crate::default_comparator(rate))
}

/// Instruction-set levels this CPU runs, best last (the one used by default).
#[pyfunction]
pub(super) fn simd_levels() -> Vec<&'static str> {
    crate::Level::all()
        .into_iter()
        .filter(|l| l.available())
        .map(|l| l.name())
        .collect()
}

/// The number of threads work with `threads=None` runs on (`VITRUST_NUM_THREADS`
/// or one per core).
#[pyfunction]
pub(super) fn default_threads() -> PyResult<usize> {
    crate::pool::default_threads().map_err(value_error)
}
