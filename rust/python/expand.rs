//! Expansion, the block starts, gather and scatter, and the products.

use super::values::Kept;
use super::*;
use crate::format::DType;
use crate::{Real, Source, Widen, F8E4M3, F8E5M2};
use half::vec::HalfFloatVecExt;
use half::{bf16, f16};

/// `stream` as is, or transposed into a new buffer when `transpose` gives
/// its `(rows, cols)` (the core refuses a shape that does not hold it).
fn in_tensor_order<T: crate::sys::Zeroable + Send + Sync>(
    stream: Vec<T>,
    transpose: Option<(usize, usize)>,
    what: &str,
) -> crate::Result<Vec<T>> {
    match transpose {
        Some((rows, cols)) => transposed_copy(&stream, rows, cols, what),
        None => Ok(stream),
    }
}

/// A new buffer holding the transpose of `src` read as `rows x cols`.
fn transposed_copy<T: crate::sys::Zeroable + Send + Sync>(
    src: &[T],
    rows: usize,
    cols: usize,
    what: &str,
) -> crate::Result<Vec<T>> {
    let mut out = zeros::<T>(src.len(), what)?;
    crate::expand::order::transpose(src, rows, cols, &mut out)?;
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
        match transpose {
            Some((rows, cols)) => e.mask_transposed(idx, rows, cols),
            None => e.mask_vec(idx),
        }
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
/// Encoded `values` ([`Kept`]) decode as they are scattered, into their
/// dtype (bfloat16 as its bits).
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
    let kept = Kept::extract(values, "values")?;
    let idx = index.as_slice()?;
    let th = slice_arg(&thresholds)?;
    let starts = starts_arg(starts)?;
    let layout = Layout::new(&config.0, n_weights, block_steps).map_err(value_error)?;
    macro_rules! fill {
        ($v:expr, $t:ty) => {{
            detached(py, threads, || {
                let e = Expander::with_thresholds(&config.0, layout, th)?;
                let dense = e.scatter_vec::<$t, _>(idx, $v, starts.as_deref())?;
                in_tensor_order(dense, transpose, "the dense array")
            })?
        }};
    }
    // Plain values in order F are placed in tensor order straight away.
    macro_rules! plain {
        ($v:expr, $t:ty) => {
            match transpose {
                Some((rows, cols)) => detached(py, threads, || {
                    Expander::with_thresholds(&config.0, layout, th)?
                        .scatter_transposed::<$t>(idx, $v, rows, cols)
                })?,
                None => fill!($v, $t),
            }
            .into_pyarray(py)
            .into_any()
        };
    }
    let arr = match &kept {
        Kept::Plain(arr) => return arr.relabel(by_width!(arr, plain)),
        Kept::Encoded(e, dt) => {
            let v = &e.checked(*dt)?;
            match dt {
                DType::F16 => fill!(v, f16).into_pyarray(py).into_any(),
                DType::BF16 => fill!(v, bf16)
                    .reinterpret_into()
                    .into_pyarray(py)
                    .into_any(),
                DType::F32 => fill!(v, f32).into_pyarray(py).into_any(),
                _ => fill!(v, f64).into_pyarray(py).into_any(),
            }
        }
    };
    Ok(arr)
}

/// The transpose of `a` read as a `rows x cols` C-order matrix, flattened
/// (a tensor's weights in the stream order of order "F"), in `a`'s dtype:
/// tiled and parallel, where NumPy's strided copy of a 4096x4096 float32
/// transpose takes 13x a plain copy.
#[pyfunction]
#[pyo3(signature = (a, rows, cols, threads=None))]
pub(super) fn transposed<'py>(
    py: Python<'py>,
    a: &Bound<'py, PyAny>,
    rows: usize,
    cols: usize,
    threads: Option<usize>,
) -> PyResult<Bound<'py, PyAny>> {
    let arr = Floats::extract(a, "a")?;
    macro_rules! run {
        ($v:expr, $t:ty) => {
            detached(py, threads, || {
                transposed_copy::<$t>($v, rows, cols, "the transposed array")
            })?
            .into_pyarray(py)
            .into_any()
        };
    }
    arr.relabel(by_width!(arr, run))
}

/// `W @ x` (or with `left`, `x @ W`) from the index and `values` (the
/// values themselves or encoded, decoded as they are read), in `R`.
#[allow(clippy::too_many_arguments)]
fn product<R: Real, V: Widen<R>, S: Source<V> + ?Sized>(
    e: &Expander,
    idx: &[u64],
    values: &S,
    starts: Option<&[usize]>,
    rows: usize,
    x: &[R],
    batch: usize,
    out_len: usize,
    left: bool,
) -> crate::Result<Vec<R>> {
    // Sizes first: a bad batch is a ValueError, not a huge allocation.
    crate::products::shapes(e, idx, rows, batch, x.len(), out_len, left)?;
    let mut y = zeros::<R>(out_len, "the product")?;
    if left {
        crate::rmatmul(e, idx, values, starts, rows, x, batch, &mut y)?;
    } else {
        crate::matmul(e, idx, values, starts, rows, x, batch, &mut y)?;
    }
    Ok(y)
}

/// `W @ x` for `W` (the pruned tensor as `rows` rows) and a C-order `x` of
/// `cols * batch` elements, or with `left` `x @ W` for `x` of `batch * rows`;
/// `x` (float32 or float64) sets the type computed in, and the values (of any
/// value dtype but float64 with a float32 `x`, or encoded as [`Kept`]) are
/// widened to it as read.
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
    let (kept, xs) = (
        Kept::extract(values, "values")?,
        Floats::extract(x, "operand")?,
    );
    macro_rules! run {
        ($v:expr, $x:expr, $r:ty, $t:ty) => {{
            let s = starts.as_deref();
            let y = detached(py, threads, || {
                let e = Expander::with_thresholds(&config.0, layout, th)?;
                product::<$r, $t, _>(&e, idx, $v, s, rows, $x, batch, out_len, left)
            })?;
            y.into_pyarray(py).into_any()
        }};
    }
    let refused = || {
        PyTypeError::new_err("operand must be float32 or float64, and float64 for float64 values")
    };
    Ok(match (&kept, xs.weights()?) {
        (Kept::Encoded(e, dt), x) => {
            let v = &e.checked(*dt)?;
            match (dt, x) {
                (DType::F16, Weights::F32(x)) => run!(v, x, f32, f16),
                (DType::BF16, Weights::F32(x)) => run!(v, x, f32, bf16),
                (DType::F32, Weights::F32(x)) => run!(v, x, f32, f32),
                (DType::F16, Weights::F64(x)) => run!(v, x, f64, f16),
                (DType::BF16, Weights::F64(x)) => run!(v, x, f64, bf16),
                (DType::F32, Weights::F64(x)) => run!(v, x, f64, f32),
                (DType::F64, Weights::F64(x)) => run!(v, x, f64, f64),
                _ => return Err(refused()),
            }
        }
        (Kept::Plain(v), x) => match (v.weights()?, x) {
            (Weights::F16(v), Weights::F32(x)) => run!(v, x, f32, f16),
            (Weights::BF16(v), Weights::F32(x)) => run!(v, x, f32, bf16),
            (Weights::F8E4M3(v), Weights::F32(x)) => run!(v, x, f32, F8E4M3),
            (Weights::F8E5M2(v), Weights::F32(x)) => run!(v, x, f32, F8E5M2),
            (Weights::F32(v), Weights::F32(x)) => run!(v, x, f32, f32),
            (Weights::F16(v), Weights::F64(x)) => run!(v, x, f64, f16),
            (Weights::BF16(v), Weights::F64(x)) => run!(v, x, f64, bf16),
            (Weights::F8E4M3(v), Weights::F64(x)) => run!(v, x, f64, F8E4M3),
            (Weights::F8E5M2(v), Weights::F64(x)) => run!(v, x, f64, F8E5M2),
            (Weights::F32(v), Weights::F64(x)) => run!(v, x, f64, f32),
            (Weights::F64(v), Weights::F64(x)) => run!(v, x, f64, f64),
            _ => return Err(refused()),
        },
    })
}
