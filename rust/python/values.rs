//! Binding of the value encodings ([`crate::values`]): encoding kept values
//! into codes and a side table, the interpreter released around the work.

use super::arrays::Floats;
use super::{detached, value_error};
use crate::format::{check_encoded, DType};
use crate::sys::{zeros, Zeroable};
use crate::{encode, Decoded, Encoded, Encoding, Weights};
use half::vec::HalfFloatVecExt;
use half::{bf16, f16};
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use std::borrow::Cow;

/// Packed codes and a float32 side table.
type Coded<'py> = (Bound<'py, PyArray1<u8>>, Bound<'py, PyArray1<f32>>);

/// The dtype of an encoding's side table for `values` (float32 for
/// float64); 8-bit floats are refused.
fn table_dtype(values: &Weights<'_>) -> PyResult<DType> {
    Ok(match values {
        Weights::F16(_) => DType::F16,
        Weights::BF16(_) => DType::BF16,
        Weights::F32(_) | Weights::F64(_) => DType::F32,
        Weights::F8E4M3(_) | Weights::F8E5M2(_) => {
            return Err(PyTypeError::new_err(
                "values: float8 values are 8 bits already and are stored raw",
            ))
        }
    })
}

/// Encodes `values` (float16, bfloat16, float32 or float64) as `encoding`
/// (`int8`, `int4` with `group`, `codebook1` .. `codebook8`, its k-means
/// weighted by `weights`, one per value, or by |value| without them): `(codes, table)`, the packed
/// codes and the scales or centroids as float32 holding values of the
/// table's dtype (the values' own, float32 for float64).
#[pyfunction]
#[pyo3(signature = (values, encoding, group=128, weights=None, threads=None))]
pub fn encode_values<'py>(
    py: Python<'py>,
    values: &Bound<'py, PyAny>,
    encoding: &str,
    group: usize,
    weights: Option<PyReadonlyArray1<'py, f32>>,
    threads: Option<usize>,
) -> PyResult<Coded<'py>> {
    let enc = Encoding::parse(encoding, group).map_err(value_error)?;
    let v = Floats::extract(values, "values")?;
    let v = v.weights()?;
    let table = table_dtype(&v)?;
    let given = weights.as_ref().map(|w| w.as_slice()).transpose()?;
    let e = detached(py, threads, || {
        let wide = v.to_f32()?;
        let abs: Vec<f32>;
        let w = match given {
            Some(w) => w,
            None => {
                abs = wide.iter().map(|x| x.abs()).collect();
                &abs
            }
        };
        encode(enc, &wide, w, |x| table.round_f32(x))
    })?;
    Ok((
        e.codes.into_owned().into_pyarray(py),
        e.table.into_pyarray(py),
    ))
}

/// Encoded values as Python passes them: `(encoding, group, count, codes,
/// table)`, the table in float32 (the group 0 for a codebook).
#[derive(FromPyObject)]
pub(super) struct EncodedIn<'py>(
    String,
    usize,
    usize,
    PyReadonlyArray1<'py, u8>,
    PyReadonlyArray1<'py, f32>,
);

impl EncodedIn<'_> {
    /// The encoded values, the codes borrowed (the table copied: it is small).
    pub(super) fn encoded(&self) -> PyResult<Encoded<'_>> {
        let Self(name, group, len, codes, table) = self;
        Ok(Encoded {
            encoding: Encoding::parse(name, *group).map_err(value_error)?,
            len: *len,
            codes: Cow::Borrowed(codes.as_slice()?),
            table: table.as_slice()?.to_vec(),
        })
    }
}

/// Encoded values for Python in [`EncodedIn`]'s form, the codes given as
/// an array (a new one, or a view of a mapped file).
pub(super) fn encoded_out<'py>(
    py: Python<'py>,
    encoding: Encoding,
    len: usize,
    codes: Bound<'py, PyAny>,
    table: Vec<f32>,
) -> PyResult<Bound<'py, PyAny>> {
    let group = match encoding {
        Encoding::Int { group, .. } => group,
        _ => 0,
    };
    let t = (encoding.name(), group, len, codes, table.into_pyarray(py));
    Ok(t.into_pyobject(py)?.into_any())
}

/// Kept values as expansion and the products take them: a 1-D array of a
/// value dtype, or `(encoded, dtype)` with `encoded` as [`EncodedIn`] and
/// `dtype` the values' safetensors name (`F16`, `BF16`, `F32`, `F64`).
pub(super) enum Kept<'py> {
    Plain(Floats<'py>),
    Encoded(EncodedIn<'py>, DType),
}

impl<'py> Kept<'py> {
    pub(super) fn extract(obj: &Bound<'py, PyAny>, what: &str) -> PyResult<Self> {
        if let Ok((e, dt)) = obj.extract::<(EncodedIn<'py>, String)>() {
            let dt = DType::from_name(&dt)
                .ok_or_else(|| PyValueError::new_err(format!("{what}: unknown dtype {dt:?}")))?;
            return Ok(Self::Encoded(e, dt));
        }
        Floats::extract(obj, what).map(Self::Plain)
    }
}

impl EncodedIn<'_> {
    /// The encoded values of `dtype`, checked against their claims.
    pub(super) fn checked(&self, dtype: DType) -> PyResult<Encoded<'_>> {
        let e = self.encoded()?;
        check_encoded(&e, dtype).map_err(value_error)?;
        Ok(e)
    }
}

/// Decoded values `(encoded, dtype)` in their dtype (bfloat16 as its bits).
#[pyfunction]
#[pyo3(signature = (values, threads=None))]
pub fn decode_values<'py>(
    py: Python<'py>,
    values: &Bound<'py, PyAny>,
    threads: Option<usize>,
) -> PyResult<Bound<'py, PyAny>> {
    let Kept::Encoded(e, dt) = Kept::extract(values, "values")? else {
        return Err(PyTypeError::new_err("values: expected (encoded, dtype)"));
    };
    let e = e.checked(dt)?;
    fn run<V: Decoded + Zeroable>(e: &Encoded<'_>) -> crate::Result<Vec<V>> {
        let mut out = zeros::<V>(e.len, "decoded values")?;
        for (k, part) in out.chunks_mut(DECODE_CHUNK).enumerate() {
            crate::cancel::check()?;
            e.decode(k * DECODE_CHUNK, part);
        }
        Ok(out)
    }
    Ok(match dt {
        DType::F16 => detached(py, threads, || run::<f16>(&e))?
            .into_pyarray(py)
            .into_any(),
        DType::BF16 => {
            let v = detached(py, threads, || run::<bf16>(&e))?;
            v.reinterpret_into().into_pyarray(py).into_any()
        }
        DType::F32 => detached(py, threads, || run::<f32>(&e))?
            .into_pyarray(py)
            .into_any(),
        _ => detached(py, threads, || run::<f64>(&e))?
            .into_pyarray(py)
            .into_any(),
    })
}

/// Values decoded per cancel check.
const DECODE_CHUNK: usize = 1 << 22;

/// Checks `(encoded, dtype)` as a file's would be: lengths, table entries
/// of the table dtype, scales that do not overflow.
#[pyfunction]
pub fn check_values(values: &Bound<'_, PyAny>) -> PyResult<()> {
    match Kept::extract(values, "values")? {
        Kept::Encoded(e, dt) => e.checked(dt).map(drop),
        Kept::Plain(_) => Ok(()),
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(encode_values, m)?)?;
    m.add_function(wrap_pyfunction!(decode_values, m)?)?;
    m.add_function(wrap_pyfunction!(check_values, m)?)?;
    m.add("MAX_GROUP", crate::MAX_GROUP)?;
    Ok(())
}
