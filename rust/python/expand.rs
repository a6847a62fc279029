//! Expansion, the block starts, gather and scatter, and the products.

use super::*;

/// `stream` as is, or transposed into a new buffer when `transpose` gives
/// its `(rows, cols)` (the core refuses a shape that does not hold it).
fn in_tensor_order<T: crate::sys::Zeroable + Send + Sync>(
    stream: Vec<T>,
    transpose: Option<(usize, usize)>,
    what: &str,
) -> crate::Result<Vec<T>> {
    let Some((rows, cols)) = transpose else {
        return Ok(stream);
    };
    let mut out = zeros::<T>(stream.len(), what)?;
    crate::expand::order::transpose(&stream, rows, cols, &mut out)?;
    Ok(out)
}

/// The keep-mask (1-D bool) of `n_weights` weights, in stream order, or with
/// `transpose = (rows, cols)` the stream's `rows x cols` matrix transposed
/// (a column-major stream in the tensor's C order).
#[pyfunction]
#[pyo3(signature = (config, index, n_weights, block_steps, threads=None, thresholds=None, transpose=None))]
#[allow(clippy::too_many_arguments)]
pub(super) fn expand<'py>(
    py: Python<'py>,
    config: &PyConfig,
    index: PyReadonlyArray1<'py, u64>,
    n_weights: usize,
    block_steps: usize,
    threads: Option<usize>,
    thresholds: Option<PyReadonlyArray1<'py, u8>>,
    transpose: Option<(usize, usize)>,
) -> PyResult<Bound<'py, PyArray1<bool>>> {
    let layout = Layout::new(&config.0, n_weights, block_steps).map_err(value_error)?;
    layout.check_index(index.len()?).map_err(value_error)?;
    let idx = index.as_slice()?;
    let th = slice_arg(&thresholds)?;
    let mask = detached(py, threads, || {
        let e = Expander::with_thresholds(&config.0, layout, th)?;
        let mask = e.mask_vec(idx)?;
        in_tensor_order(mask, transpose, "the keep-mask")
    })?;
    Ok(mask.into_pyarray(py))
}

/// Where each block's kept values start, with the total last (`n_blocks + 1`).
#[pyfunction]
#[pyo3(signature = (config, index, n_weights, block_steps, threads=None, thresholds=None))]
pub(super) fn block_starts<'py>(
    py: Python<'py>,
    config: &PyConfig,
    index: PyReadonlyArray1<'py, u64>,
    n_weights: usize,
    block_steps: usize,
    threads: Option<usize>,
    thresholds: Option<PyReadonlyArray1<'py, u8>>,
) -> PyResult<Bound<'py, PyArray1<u64>>> {
    let layout = Layout::new(&config.0, n_weights, block_steps).map_err(value_error)?;
    let idx = index.as_slice()?;
    let th = slice_arg(&thresholds)?;
    let starts = detached(py, threads, || {
        Expander::with_thresholds(&config.0, layout, th)?.starts(idx)
    })?;
    starts_array(py, starts)
}

/// An optional array argument as a slice.
pub(super) fn slice_arg<'a, T: numpy::Element>(
    a: &'a Option<PyReadonlyArray1<'_, T>>,
) -> PyResult<Option<&'a [T]>> {
    Ok(match a {
        Some(a) => Some(a.as_slice()?),
        None => None,
    })
}

/// `v` converted element by element into a fallibly allocated vector.
pub(super) fn convert<A: Copy, B>(v: &[A], what: &str, f: impl Fn(A) -> B) -> PyResult<Vec<B>> {
    let mut out = crate::sys::with_capacity(v.len(), what).map_err(value_error)?;
    out.extend(v.iter().map(|&a| f(a)));
    Ok(out)
}

pub(super) fn starts_array(
    py: Python<'_>,
    starts: Vec<usize>,
) -> PyResult<Bound<'_, PyArray1<u64>>> {
    Ok(convert(&starts, "the block starts", |s| s as u64)?.into_pyarray(py))
}

/// Block starts handed back from Python, as the core takes them.
pub(super) fn starts_arg(
    starts: Option<PyReadonlyArray1<'_, u64>>,
) -> PyResult<Option<Vec<usize>>> {
    starts
        .map(|s| convert(s.as_slice()?, "the block starts", |v| v as usize))
        .transpose()
}

/// The kept weights, in C order and their own dtype, and their block starts.
#[pyfunction]
#[pyo3(signature = (config, index, block_steps, weights, threads=None, thresholds=None))]
pub(super) fn gather<'py>(
    py: Python<'py>,
    config: &PyConfig,
    index: PyReadonlyArray1<'py, u64>,
    block_steps: usize,
    weights: &Bound<'py, PyAny>,
    threads: Option<usize>,
    thresholds: Option<PyReadonlyArray1<'py, u8>>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyArray1<u64>>)> {
    let arr = Floats::extract(weights, "weights")?;
    let idx = index.as_slice()?;
    let th = slice_arg(&thresholds)?;
    let layout = Layout::new(&config.0, arr.weights()?.len(), block_steps).map_err(value_error)?;
    macro_rules! run {
        ($w:expr, $t:ty) => {{
            let (values, starts) = detached(py, threads, || {
                Expander::with_thresholds(&config.0, layout, th)?.gather::<$t>(idx, $w)
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

/// A dense 1-D array: `values` on the mask, zero elsewhere, in stream order
/// or, with `transpose`, the stream's matrix transposed (as [`expand`]).
#[pyfunction]
#[pyo3(signature = (config, index, block_steps, values, n_weights, threads=None, starts=None, thresholds=None, transpose=None))]
#[allow(clippy::too_many_arguments)]
pub(super) fn scatter<'py>(
    py: Python<'py>,
    config: &PyConfig,
    index: PyReadonlyArray1<'py, u64>,
    block_steps: usize,
    values: &Bound<'py, PyAny>,
    n_weights: usize,
    threads: Option<usize>,
    starts: Option<PyReadonlyArray1<'py, u64>>,
    thresholds: Option<PyReadonlyArray1<'py, u8>>,
    transpose: Option<(usize, usize)>,
) -> PyResult<Bound<'py, PyAny>> {
    let arr = Floats::extract(values, "values")?;
    let idx = index.as_slice()?;
    let th = slice_arg(&thresholds)?;
    let starts = starts_arg(starts)?;
    let layout = Layout::new(&config.0, n_weights, block_steps).map_err(value_error)?;
    macro_rules! fill {
        ($v:expr, $t:ty) => {{
            let dense = detached(py, threads, || {
                let e = Expander::with_thresholds(&config.0, layout, th)?;
                let dense = e.scatter_vec(idx, $v, starts.as_deref())?;
                in_tensor_order(dense, transpose, "the dense array")
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
#[pyo3(signature = (config, index, block_steps, values, n_weights, rows, x, batch, threads=None, starts=None, left=false, thresholds=None))]
#[allow(clippy::too_many_arguments)]
pub(super) fn matmul<'py>(
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
    thresholds: Option<PyReadonlyArray1<'py, u8>>,
) -> PyResult<Bound<'py, PyAny>> {
    let layout = Layout::new(&config.0, n_weights, block_steps).map_err(value_error)?;
    let idx = index.as_slice()?;
    let th = slice_arg(&thresholds)?;
    let starts = starts_arg(starts)?;
    let out_rows = if left { n_weights / rows.max(1) } else { rows };
    let out_len = crate::sys::product(batch, out_rows, "output elements (batch x rows or columns)")
        .map_err(value_error)?;
    let (v, xs) = (
        Floats::extract(values, "values")?,
        Floats::extract(x, "operand")?,
    );
    macro_rules! run {
        ($v:expr, $x:expr, $t:ty) => {{
            let s = starts.as_deref();
            let y = detached(py, threads, || {
                let e = Expander::with_thresholds(&config.0, layout, th)?;
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
