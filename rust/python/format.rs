//! Binding of the file format ([`crate::format`]) and the index-cost models
//! ([`crate::format::cost`]): arrays in and out, the interpreter released around I/O
//! and validation, core errors as Python exceptions (`FormatError` for files).

use super::values::{encoded_out, EncodedIn};
use super::{detached, value_error, PyConfig};
use crate::cancel;
use crate::format::cost::{index_cost as cost, CostFormat};
use crate::format::{self, DType, Item, Order, Plain, Sparse, Values};
use crate::sys::{zeros, Zeroable};
use crate::{Error, ErrorKind, Expander, Layout};
use half::f16;
use numpy::{IntoPyArray, PyReadonlyArray1};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::PathBuf;

type PlainIn<'py> = (String, String, Vec<usize>, PyReadonlyArray1<'py, u8>);
/// A pruned tensor's values as `save_file` takes them: their bytes, or
/// encoded ([`EncodedIn`]).
#[derive(FromPyObject)]
pub(super) enum ValuesIn<'py> {
    Raw(PyReadonlyArray1<'py, u8>),
    Encoded(EncodedIn<'py>),
}

impl ValuesIn<'_> {
    /// The values, borrowed from the arrays.
    pub(super) fn values(&self) -> PyResult<Values<'_>> {
        Ok(match self {
            Self::Raw(b) => Values::Raw(Cow::Borrowed(b.as_slice()?)),
            Self::Encoded(e) => Values::Encoded(e.encoded()?),
        })
    }
}

type SparseIn<'py> = (
    String,
    String,
    Vec<usize>,
    ValuesIn<'py>,
    Bound<'py, PyConfig>,
    usize,
    f64,
    PyReadonlyArray1<'py, u64>,
    Option<PyReadonlyArray1<'py, u8>>,
    String,
);

fn dtype(name: &str) -> PyResult<DType> {
    DType::from_name(name)
        .ok_or_else(|| PyValueError::new_err(format!("unsupported dtype {name:?}")))
}

/// A stream order from its name (`"C"` or `"F"`).
pub(super) fn order(name: &str) -> PyResult<Order> {
    Order::from_name(name)
        .ok_or_else(|| PyValueError::new_err(format!("order {name:?}: must be \"C\" or \"F\"")))
}

/// Writes plain tensors `(name, dtype, shape, bytes)` and pruned tensors
/// `(name, dtype, shape, value bytes, config, block_steps, lam, index,
/// thresholds or None, order)` atomically to `path`.
#[pyfunction]
#[pyo3(signature = (path, plain, sparse, metadata, threads=None))]
pub fn save_file(
    py: Python<'_>,
    path: PathBuf,
    plain: Vec<PlainIn<'_>>,
    sparse: Vec<SparseIn<'_>>,
    metadata: HashMap<String, String>,
    threads: Option<usize>,
) -> PyResult<()> {
    let mut items = Vec::with_capacity(plain.len() + sparse.len());
    for (name, dt, shape, data) in &plain {
        let data = Cow::Borrowed(data.as_slice()?);
        items.push((
            name.clone(),
            Item::Plain(Plain {
                dtype: dtype(dt)?,
                shape: shape.clone(),
                data,
            }),
        ));
    }
    for (name, dt, shape, values, config, block_steps, lam, index, thresholds, ord) in &sparse {
        let s = Sparse {
            shape: shape.clone(),
            config: config.get().0.clone(),
            block_steps: *block_steps,
            lam: *lam,
            index: Cow::Borrowed(index.as_slice()?),
            dtype: dtype(dt)?,
            values: values.values()?,
            thresholds: match thresholds {
                Some(t) => Some(Cow::Borrowed(t.as_slice()?)),
                None => None,
            },
            order: order(ord)?,
        };
        items.push((name.clone(), Item::Sparse(s)));
    }
    detached(py, threads, || format::save(&path, &items, &metadata))
}

/// A tensor's data decoded from little-endian bytes into its own type
/// (bfloat16 and float8 as their raw `u16` and `u8` bits: numpy has no such
/// types of its own, and Python views them as `ml_dtypes` types).
enum Typed {
    Bool(Vec<bool>),
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    F16(Vec<f16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    F32(Vec<f32>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F64(Vec<f64>),
}

/// Elements decoded per cancel check.
const DECODE_CHUNK: usize = 1 << 22;

/// `bytes` as elements of `N` bytes each, allocated fallibly and decoded in
/// chunks with a cancel check between them.
fn le<T: Zeroable, const N: usize>(bytes: &[u8], from: fn([u8; N]) -> T) -> crate::Result<Vec<T>> {
    let mut out = zeros::<T>(bytes.len() / N, "a loaded tensor")?;
    for (o, b) in out
        .chunks_mut(DECODE_CHUNK)
        .zip(bytes.chunks(DECODE_CHUNK * N))
    {
        cancel::check()?;
        for (o, c) in o.iter_mut().zip(b.chunks_exact(N)) {
            *o = from(c.try_into().expect("whole element"));
        }
    }
    Ok(out)
}

fn decode(dt: DType, b: &[u8]) -> crate::Result<Typed> {
    Ok(match dt {
        // Bytes other than 0 and 1 were refused by the loader.
        DType::Bool => Typed::Bool(le(b, |[x]| x != 0)?),
        DType::U8 | DType::F8E4M3 | DType::F8E5M2 => Typed::U8(le(b, |[x]| x)?),
        DType::I8 => Typed::I8(le(b, i8::from_le_bytes)?),
        DType::U16 | DType::BF16 => Typed::U16(le(b, u16::from_le_bytes)?),
        DType::I16 => Typed::I16(le(b, i16::from_le_bytes)?),
        DType::F16 => Typed::F16(le(b, f16::from_le_bytes)?),
        DType::U32 => Typed::U32(le(b, u32::from_le_bytes)?),
        DType::I32 => Typed::I32(le(b, i32::from_le_bytes)?),
        DType::F32 => Typed::F32(le(b, f32::from_le_bytes)?),
        DType::U64 => Typed::U64(le(b, u64::from_le_bytes)?),
        DType::I64 => Typed::I64(le(b, i64::from_le_bytes)?),
        DType::F64 => Typed::F64(le(b, f64::from_le_bytes)?),
    })
}

fn to_numpy(py: Python<'_>, t: Typed) -> Bound<'_, PyAny> {
    match t {
        Typed::Bool(v) => v.into_pyarray(py).into_any(),
        Typed::U8(v) => v.into_pyarray(py).into_any(),
        Typed::I8(v) => v.into_pyarray(py).into_any(),
        Typed::U16(v) => v.into_pyarray(py).into_any(),
        Typed::I16(v) => v.into_pyarray(py).into_any(),
        Typed::F16(v) => v.into_pyarray(py).into_any(),
        Typed::U32(v) => v.into_pyarray(py).into_any(),
        Typed::I32(v) => v.into_pyarray(py).into_any(),
        Typed::F32(v) => v.into_pyarray(py).into_any(),
        Typed::U64(v) => v.into_pyarray(py).into_any(),
        Typed::I64(v) => v.into_pyarray(py).into_any(),
        Typed::F64(v) => v.into_pyarray(py).into_any(),
    }
}

/// Loaded plain and pruned tensors, as tuples.
type Lists<'py> = (Vec<Bound<'py, PyAny>>, Vec<Bound<'py, PyAny>>);

/// A loaded pruned tensor, its arrays decoded.
struct LoadedSparse {
    name: String,
    shape: Vec<usize>,
    config: crate::VdConfig,
    block_steps: usize,
    lam: f64,
    index: Vec<u64>,
    dtype: DType,
    values: Stored,
    thresholds: Option<Vec<u8>>,
    order: Order,
}

/// Loaded kept values: decoded from their bytes when stored as they are,
/// else their codes and table as stored (they decode when read).
enum Stored {
    Raw(Typed),
    Encoded(crate::Encoded<'static>),
}

enum Loaded {
    Plain(String, DType, Vec<usize>, Typed),
    Sparse(Box<LoadedSparse>),
}

fn load_items(path: &std::path::Path) -> crate::Result<Vec<Loaded>> {
    let buf = format::read_file(path)?;
    // Anything the file makes the core refuse is a format error.
    let items = format::load(&buf).map_err(|e| match e.kind {
        ErrorKind::Invalid => Error::format(e.msg),
        _ => e,
    })?;
    items
        .into_iter()
        .map(|(name, item)| match item {
            Item::Plain(p) => {
                let data = decode(p.dtype, &p.data)?;
                Ok(Loaded::Plain(name, p.dtype, p.shape, data))
            }
            Item::Sparse(s) => Ok(Loaded::Sparse(Box::new(LoadedSparse {
                values: match s.values {
                    Values::Raw(v) => Stored::Raw(decode(s.dtype, &v)?),
                    Values::Encoded(e) => Stored::Encoded(crate::Encoded {
                        codes: Cow::Owned(e.codes.into_owned()),
                        ..e
                    }),
                },
                index: s.index.into_owned(),
                thresholds: s.thresholds.map(Cow::into_owned),
                name,
                shape: s.shape,
                config: s.config,
                block_steps: s.block_steps,
                lam: s.lam,
                dtype: s.dtype,
                order: s.order,
            }))),
        })
        .collect()
}

/// Loads and validates `path`: `(plain, sparse)` lists mirroring
/// [`save_file`]'s arguments, with 1-D arrays of each tensor's type (the
/// thresholds `None` for a tensor without them), encoded values as
/// [`EncodedIn`] takes them.
#[pyfunction]
#[pyo3(signature = (path, threads=None))]
pub fn load_file<'py>(
    py: Python<'py>,
    path: PathBuf,
    threads: Option<usize>,
) -> PyResult<Lists<'py>> {
    let items = detached(py, threads, || load_items(&path))?;
    let (mut plain, mut sparse) = (Vec::new(), Vec::new());
    for item in items {
        match item {
            Loaded::Plain(name, dt, shape, data) => {
                let t = (name, dt.name(), shape, to_numpy(py, data));
                plain.push(t.into_pyobject(py)?.into_any());
            }
            Loaded::Sparse(s) => {
                let s = *s;
                let (config, index) = (PyConfig(s.config), s.index.into_pyarray(py));
                let t = (
                    s.name,
                    s.dtype.name(),
                    s.shape,
                    match s.values {
                        Stored::Raw(v) => to_numpy(py, v),
                        Stored::Encoded(e) => {
                            let codes = e.codes.into_owned().into_pyarray(py).into_any();
                            encoded_out(py, e.encoding, e.len, codes, e.table)?
                        }
                    },
                    config,
                    s.block_steps,
                    s.lam,
                    index,
                    s.thresholds.map(|t| t.into_pyarray(py)),
                    s.order.name(),
                );
                sparse.push(t.into_pyobject(py)?.into_any());
            }
        }
    }
    Ok((plain, sparse))
}

/// The caller's string metadata of the file at `path` (vitrust's own key
/// left out), read from its header alone.
#[pyfunction]
pub fn read_metadata(py: Python<'_>, path: PathBuf) -> PyResult<HashMap<String, String>> {
    let pairs = detached(py, None, || format::read_metadata(&path))?;
    Ok(pairs.into_iter().collect())
}

fn cost_format(
    fmt: &str,
    n_out: Option<usize>,
    n_in: usize,
    bits: Option<u32>,
) -> PyResult<CostFormat> {
    let need = |what: &str| PyValueError::new_err(format!("index_cost {fmt:?}: needs {what}"));
    Ok(match fmt {
        "viterbi" => CostFormat::Viterbi { n_out: n_out.ok_or_else(|| need("ratio"))?, n_in },
        "bitmask" => CostFormat::Bitmask,
        "csr32" => CostFormat::Csr32,
        "csr16" => CostFormat::Csr16,
        "csr-min" => CostFormat::CsrMin,
        "relative" => CostFormat::Relative { bits: bits.ok_or_else(|| need("bits"))? },
        "entropy" => CostFormat::Entropy,
        _ => {
            return Err(PyValueError::new_err(format!(
                "index_cost: unknown format {fmt:?} (expected viterbi, bitmask, csr32, csr16, csr-min, relative or entropy)"
            )))
        }
    })
}

/// `(index bits, padding entries)` per format (`"csr32"`, `"relative-4"`, ...)
/// of the mask `index` expands to (block `b` comparing with `thresholds[b]`
/// when given), its stream viewed as `rows` rows, computed block by block
/// without building the mask.
#[pyfunction]
#[pyo3(signature = (config, index, n_weights, block_steps, rows, formats, threads=None, thresholds=None))]
#[allow(clippy::too_many_arguments)]
pub fn index_costs(
    py: Python<'_>,
    config: &PyConfig,
    index: PyReadonlyArray1<'_, u64>,
    n_weights: usize,
    block_steps: usize,
    rows: usize,
    formats: Vec<String>,
    threads: Option<usize>,
    thresholds: Option<PyReadonlyArray1<'_, u8>>,
) -> PyResult<Vec<(u64, u64)>> {
    let fmts = formats
        .iter()
        .map(
            |f| match f.strip_prefix("relative-").map(str::parse::<u32>) {
                Some(Ok(b)) => cost_format("relative", None, 1, Some(b)),
                _ => cost_format(f, None, 1, None),
            },
        )
        .collect::<PyResult<Vec<_>>>()?;
    let layout = Layout::new(&config.0, n_weights, block_steps).map_err(value_error)?;
    let idx = index.as_slice()?;
    let th = match &thresholds {
        Some(t) => Some(t.as_slice()?),
        None => None,
    };
    let e = Expander::with_thresholds(&config.0, layout, th).map_err(value_error)?;
    let costs = detached(py, threads, || {
        crate::format::cost::index_costs(&e, idx, rows, &fmts)
    })?;
    Ok(costs.into_iter().map(|c| (c.bits, c.padding)).collect())
}

/// `(index bits, padding entries)` of a flattened C-order mask viewed as
/// `rows` rows, under one of the named formats.
#[pyfunction]
#[pyo3(signature = (mask, rows, fmt, n_out=None, n_in=1, bits=None))]
pub fn index_cost(
    py: Python<'_>,
    mask: PyReadonlyArray1<'_, bool>,
    rows: usize,
    fmt: &str,
    n_out: Option<usize>,
    n_in: usize,
    bits: Option<u32>,
) -> PyResult<(u64, u64)> {
    let f = cost_format(fmt, n_out, n_in, bits)?;
    let m = mask.as_slice()?;
    let c = py.detach(|| cost(m, rows, f)).map_err(value_error)?;
    Ok((c.bits, c.padding))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(save_file, m)?)?;
    m.add_function(wrap_pyfunction!(load_file, m)?)?;
    m.add_function(wrap_pyfunction!(read_metadata, m)?)?;
    m.add_function(wrap_pyfunction!(index_cost, m)?)?;
    m.add_function(wrap_pyfunction!(index_costs, m)?)?;
    m.add("FORMAT_VERSION", format::FORMAT_VERSION)?;
    m.add("FORMAT_VERSION_1", format::FORMAT_VERSION_1)?;
    Ok(())
}
