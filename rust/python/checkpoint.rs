//! Binding of streamed files ([`crate::format::MappedFile`] and
//! [`crate::format::ShardWriter`]): `SafeOpen` hands out read-only NumPy views
//! of a memory-mapped file (no copy), `ShardWriter` writes tensors one at a
//! time with the interpreter released.

use super::values::encoded_out;
use super::{detached, value_error, PyConfig};
use crate::format::{self, DType, Entry, MappedFile, Plain, Planned, Span, Sparse, ValueSpans};
use numpy::ndarray::ArrayView1;
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;
use std::path::PathBuf;

fn dtype(name: &str) -> PyResult<DType> {
    DType::from_name(name)
        .ok_or_else(|| PyValueError::new_err(format!("unsupported dtype {name:?}")))
}

/// A safetensors file opened by memory mapping (validated when opened).
#[pyclass(module = "vitrust._vitrust", frozen)]
pub struct SafeOpen(MappedFile);

impl SafeOpen {
    fn entry(&self, name: &str) -> PyResult<&Entry> {
        self.0
            .entry(name)
            .map_err(|e| pyo3::exceptions::PyKeyError::new_err(e.msg))
    }
}

/// A read-only uint8 view of `span`'s bytes that keeps `owner` alive.
fn view<'py>(owner: &Bound<'py, SafeOpen>, span: &Span) -> PyResult<Bound<'py, PyAny>> {
    let bytes = owner.get().0.bytes(span);
    // SAFETY: the bytes live in the mapping, which the array's base (`owner`,
    // immutable once opened) keeps alive; the view is made read-only below.
    let arr = unsafe {
        PyArray1::<u8>::borrow_from_array(&ArrayView1::from(bytes), owner.clone().into_any())
    };
    let kw = PyDict::new(owner.py());
    kw.set_item("write", false)?;
    arr.call_method("setflags", (), Some(&kw))?;
    Ok(arr.into_any())
}

#[pymethods]
impl SafeOpen {
    #[new]
    fn new(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        detached(py, None, || MappedFile::open(&path)).map(SafeOpen)
    }

    #[getter]
    fn path(&self) -> PathBuf {
        self.0.path().to_path_buf()
    }

    /// Logical tensor names, sorted (a pruned tensor once, not its siblings).
    fn keys(&self) -> Vec<String> {
        self.0.entries().keys().cloned().collect()
    }

    /// The file's own string metadata (vitrust's key excluded).
    fn metadata(&self) -> HashMap<String, String> {
        self.0.metadata().clone()
    }

    /// `(kind, dtype, shape, stored bytes)`, kind `"plain"` or `"sparse"`.
    fn info(&self, name: &str) -> PyResult<(&'static str, &'static str, Vec<usize>, usize)> {
        let e = self.entry(name)?;
        let (kind, dtype, shape) = match e {
            Entry::Plain(s) => ("plain", s.dtype, &s.shape),
            Entry::Sparse(s) => ("sparse", s.dtype, &s.shape),
        };
        Ok((kind, dtype.name(), shape.clone(), e.stored_bytes()))
    }

    /// A plain tensor's bytes as a read-only uint8 view; a pruned tensor as
    /// `(dtype, shape, values, config, block_steps, lam, index, thresholds
    /// or None, order)`, the values a view of their bytes or, encoded,
    /// `(encoding, group, count, codes view, table)`.
    fn get<'py>(slf: &Bound<'py, Self>, name: &str) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        match slf.get().entry(name)?.clone() {
            Entry::Plain(s) => view(slf, &s),
            Entry::Sparse(s) => {
                let file = &slf.get().0;
                let index = detached(py, None, || Ok(file.sparse(&s)?.index.into_owned()))?;
                // Raw values and codes are views of the file.
                let values = match &s.values {
                    ValueSpans::Raw(v) => view(slf, v)?,
                    ValueSpans::Encoded {
                        encoding,
                        len,
                        codes,
                        table,
                    } => {
                        let t = table
                            .dtype
                            .bytes_f32(file.bytes(table))
                            .map_err(value_error)?;
                        encoded_out(py, *encoding, *len, view(slf, codes)?, t)?
                    }
                };
                let t = (
                    s.dtype.name(),
                    s.shape.clone(),
                    values,
                    PyConfig(s.config.clone()),
                    s.block_steps,
                    s.lam,
                    index.into_pyarray(py),
                    s.thresholds.as_ref().map(|t| view(slf, t)).transpose()?,
                    s.order.name(),
                );
                Ok(PyTuple::new(py, [t.into_pyobject(py)?])?.get_item(0)?)
            }
        }
    }

    /// Starts reading a tensor in the background.
    fn prefetch(&self, name: &str) -> PyResult<()> {
        self.each_span(name, MappedFile::prefetch)
    }

    /// Drops a tensor's pages from this process's memory (views stay valid).
    fn release(&self, name: &str) -> PyResult<()> {
        self.each_span(name, MappedFile::release)
    }
}

impl SafeOpen {
    /// Runs `f` on the byte range of each stored tensor behind `name`.
    fn each_span(&self, name: &str, f: impl Fn(&MappedFile, &Range<usize>)) -> PyResult<()> {
        let spans = match self.entry(name)? {
            Entry::Plain(s) => vec![s],
            Entry::Sparse(s) => s.spans().collect(),
        };
        spans.into_iter().for_each(|s| f(&self.0, &s.range));
        Ok(())
    }
}

/// Writes one safetensors file tensor by tensor; `finish` makes it appear.
#[pyclass(module = "vitrust._vitrust")]
pub struct ShardWriter(Option<format::ShardWriter>);

impl ShardWriter {
    fn open(&mut self) -> PyResult<&mut format::ShardWriter> {
        self.0
            .as_mut()
            .ok_or_else(|| PyValueError::new_err("the shard writer is closed"))
    }
}

#[pymethods]
impl ShardWriter {
    /// `plan`: the tensors expected, `(name, dtype, shape, taps)` (taps 0 for
    /// a plain tensor, else the most tap masks its VD may have), to reserve
    /// the header.
    #[new]
    fn new(
        path: PathBuf,
        metadata: HashMap<String, String>,
        plan: Vec<(String, String, Vec<usize>, usize)>,
    ) -> PyResult<Self> {
        let plan = plan
            .into_iter()
            .map(|(name, dt, shape, taps)| {
                Ok(Planned {
                    name,
                    dtype: dtype(&dt)?,
                    shape,
                    taps,
                })
            })
            .collect::<PyResult<Vec<_>>>()?;
        format::ShardWriter::create(&path, metadata, &plan)
            .map(|w| Self(Some(w)))
            .map_err(value_error)
    }

    fn add_plain(
        &mut self,
        py: Python<'_>,
        name: &str,
        dtype_name: &str,
        shape: Vec<usize>,
        data: PyReadonlyArray1<'_, u8>,
    ) -> PyResult<()> {
        let p = Plain {
            dtype: dtype(dtype_name)?,
            shape,
            data: Cow::Borrowed(data.as_slice()?),
        };
        let w = self.open()?;
        detached(py, None, || w.add_plain(name, &p))
    }

    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (name, dtype_name, shape, values, config, block_steps, lam, index, thresholds=None, order="C"))]
    fn add_sparse(
        &mut self,
        py: Python<'_>,
        name: &str,
        dtype_name: &str,
        shape: Vec<usize>,
        values: super::format::ValuesIn<'_>,
        config: &PyConfig,
        block_steps: usize,
        lam: f64,
        index: PyReadonlyArray1<'_, u64>,
        thresholds: Option<PyReadonlyArray1<'_, u8>>,
        order: &str,
    ) -> PyResult<()> {
        let order = super::format::order(order)?;
        let s = Sparse {
            shape,
            config: config.0.clone(),
            block_steps,
            lam,
            index: Cow::Borrowed(index.as_slice()?),
            dtype: dtype(dtype_name)?,
            values: values.values()?,
            thresholds: match &thresholds {
                Some(t) => Some(Cow::Borrowed(t.as_slice()?)),
                None => None,
            },
            order,
        };
        let w = self.open()?;
        detached(py, None, || w.add_sparse(name, &s))
    }

    /// Writes the header and renames the file into place: `(data bytes, stored names)`.
    fn finish(&mut self, py: Python<'_>) -> PyResult<(u64, Vec<String>)> {
        let mut w = self
            .0
            .take()
            .ok_or_else(|| PyValueError::new_err("the shard writer is closed"))?;
        let done = (w.data_bytes(), w.stored_names());
        detached(py, None, || w.finish())?;
        Ok(done)
    }

    /// Stops and removes the temporary file (nothing appears).
    fn abort(&mut self) {
        if let Some(mut w) = self.0.take() {
            w.abort();
        }
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<SafeOpen>()?;
    m.add_class::<ShardWriter>()?;
    Ok(())
}
