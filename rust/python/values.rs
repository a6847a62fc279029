//! Binding of the value encodings ([`crate::values`]): encoding kept values
//! into codes and a side table, the interpreter released around the work.

use super::arrays::Floats;
use super::{detached, value_error};
use crate::format::DType;
use crate::{encode, Encoding, Weights};
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;

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

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(encode_values, m)?)?;
    m.add("MAX_GROUP", crate::MAX_GROUP)?;
    Ok(())
}
