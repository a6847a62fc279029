//! Arguments from Python: float arrays of every value dtype, and integers
//! converted with errors that name the argument.

use crate::float8::{F8E4M3, F8E5M2};
use crate::Weights;
use half::f16;
use half::slice::HalfBitsSliceExt;
use numpy::PyReadonlyArray1;
use pyo3::exceptions::{PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyByteArray, PyBytes, PyString};

/// A borrowed 1-D array of one of the value dtypes. numpy has no bfloat16 or
/// float8 of its own; arrays of those dtypes (from `ml_dtypes`) are read as
/// their bit patterns, and `dtype` remembers the original to label results.
pub enum Floats<'py> {
    F16(PyReadonlyArray1<'py, f16>),
    F32(PyReadonlyArray1<'py, f32>),
    F64(PyReadonlyArray1<'py, f64>),
    BF16(PyReadonlyArray1<'py, u16>, Bound<'py, PyAny>),
    F8E4M3(PyReadonlyArray1<'py, u8>, Bound<'py, PyAny>),
    F8E5M2(PyReadonlyArray1<'py, u8>, Bound<'py, PyAny>),
}

/// `ml_dtypes` dtype names with their widths.
const NARROW: [(&str, usize); 3] = [("bfloat16", 2), ("float8_e4m3fn", 1), ("float8_e5m2", 1)];

impl<'py> Floats<'py> {
    pub fn extract(obj: &Bound<'py, PyAny>, what: &str) -> PyResult<Self> {
        if let Ok(a) = obj.extract() {
            return Ok(Self::F32(a));
        }
        if let Ok(a) = obj.extract() {
            return Ok(Self::F64(a));
        }
        if let Ok(a) = obj.extract() {
            return Ok(Self::F16(a));
        }
        Self::narrow(obj).ok().flatten().ok_or_else(|| {
            PyTypeError::new_err(format!(
                "{what}: expected a 1-D float16, bfloat16, float8_e4m3fn, float8_e5m2, float32 or float64 numpy array"
            ))
        })
    }

    /// A bfloat16 or float8 array viewed as its bits; `None` for other dtypes.
    fn narrow(obj: &Bound<'py, PyAny>) -> PyResult<Option<Self>> {
        let dtype = obj.getattr("dtype")?;
        let (name, size): (String, usize) = (
            dtype.getattr("name")?.extract()?,
            dtype.getattr("itemsize")?.extract()?,
        );
        if !NARROW.contains(&(name.as_str(), size)) {
            return Ok(None);
        }
        let bits = obj.call_method1("view", (if size == 2 { "u2" } else { "u1" },))?;
        Ok(Some(match name.as_str() {
            "bfloat16" => Self::BF16(bits.extract()?, dtype),
            "float8_e4m3fn" => Self::F8E4M3(bits.extract()?, dtype),
            _ => Self::F8E5M2(bits.extract()?, dtype),
        }))
    }

    pub fn weights(&self) -> PyResult<Weights<'_>> {
        Ok(match self {
            Self::F16(a) => Weights::F16(a.as_slice()?),
            Self::F32(a) => Weights::F32(a.as_slice()?),
            Self::F64(a) => Weights::F64(a.as_slice()?),
            Self::BF16(a, _) => Weights::BF16(a.as_slice()?.reinterpret_cast()),
            Self::F8E4M3(a, _) => Weights::F8E4M3(F8E4M3::from_bits_slice(a.as_slice()?)),
            Self::F8E5M2(a, _) => Weights::F8E5M2(F8E5M2::from_bits_slice(a.as_slice()?)),
        })
    }

    /// A new array of this array's element type made from its bit patterns
    /// (`u16` for bfloat16, `u8` for float8, the value itself otherwise).
    pub fn relabel(&self, out: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        match self {
            Self::BF16(_, dtype) | Self::F8E4M3(_, dtype) | Self::F8E5M2(_, dtype) => {
                out.call_method1("view", (dtype,))
            }
            _ => Ok(out),
        }
    }
}

/// Moves a value array's elements as bit patterns of their width: `$run!(slice,
/// T)` runs with a slice of `f16`, `f32`, `f64`, `u16` (bfloat16) or `u8` (float8).
macro_rules! by_width {
    ($floats:expr, $run:ident) => {
        match &$floats {
            Floats::F16(a) => {
                let v = a.as_slice()?;
                $run!(v, half::f16)
            }
            Floats::F32(a) => {
                let v = a.as_slice()?;
                $run!(v, f32)
            }
            Floats::F64(a) => {
                let v = a.as_slice()?;
                $run!(v, f64)
            }
            Floats::BF16(a, _) => {
                let v = a.as_slice()?;
                $run!(v, u16)
            }
            Floats::F8E4M3(a, _) | Floats::F8E5M2(a, _) => {
                let v = a.as_slice()?;
                $run!(v, u8)
            }
        }
    };
}
pub(crate) use by_width;

/// An integer argument as given (or its default), converted by
/// [`IntArg::u64`] or [`IntArg::u32`] with errors naming it, not by the
/// binding's own conversion (whose `OverflowError` names nothing).
pub enum IntArg<'py> {
    Given(Bound<'py, PyAny>),
    Default(u64),
}

impl<'a, 'py> FromPyObject<'a, 'py> for IntArg<'py> {
    type Error = PyErr;
    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        Ok(Self::Given(obj.to_owned()))
    }
}

impl IntArg<'_> {
    pub fn u64(&self, name: &str) -> PyResult<u64> {
        match self {
            Self::Given(obj) => u64_arg(name, obj),
            Self::Default(v) => Ok(*v),
        }
    }
    pub fn u32(&self, name: &str) -> PyResult<u32> {
        match self {
            Self::Given(obj) => u32_arg(name, obj),
            Self::Default(v) => Ok(*v as u32),
        }
    }
}

/// A Python integer as `u64`. `TypeError` for anything that is not an
/// integer (bool included), `ValueError` naming `name` out of range.
pub fn u64_arg(name: &str, obj: &Bound<'_, PyAny>) -> PyResult<u64> {
    if obj.is_instance_of::<PyBool>() {
        return Err(PyTypeError::new_err(format!(
            "{name}: expected an integer, got bool"
        )));
    }
    obj.extract::<u64>().map_err(|e| {
        if e.is_instance_of::<PyOverflowError>(obj.py()) {
            PyValueError::new_err(format!(
                "{name} = {obj}: must be an integer from 0 to 2**64 - 1"
            ))
        } else {
            PyTypeError::new_err(format!(
                "{name}: expected an integer, got {}",
                type_name(obj)
            ))
        }
    })
}

/// [`u64_arg`] for a `u32`.
pub fn u32_arg(name: &str, obj: &Bound<'_, PyAny>) -> PyResult<u32> {
    let v = u64_arg(name, obj)?;
    u32::try_from(v).map_err(|_| {
        PyValueError::new_err(format!(
            "{name} = {v}: must be an integer from 0 to 2**32 - 1"
        ))
    })
}

/// A sequence of integers (not a string or bytes, whose items would pass as
/// integers or characters), each as `u32`.
pub fn u32_list(name: &str, obj: &Bound<'_, PyAny>) -> PyResult<Vec<u32>> {
    let not_a_list = || {
        PyTypeError::new_err(format!(
            "{name}: expected a list of integers, got {}",
            type_name(obj)
        ))
    };
    if obj.is_instance_of::<PyBytes>()
        || obj.is_instance_of::<PyByteArray>()
        || obj.is_instance_of::<PyString>()
    {
        return Err(not_a_list());
    }
    obj.try_iter()
        .map_err(|_| not_a_list())?
        .enumerate()
        .map(|(i, t)| u32_arg(&format!("{name}[{i}]"), &t?))
        .collect()
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map_or_else(|_| "?".into(), |n| n.to_string())
}
