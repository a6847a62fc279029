//! The vitrust file (docs/format.md, "File format"): a safetensors file
//! (written and parsed by the `safetensors` crate) in which a pruned tensor `name` is stored as sibling
//! tensors `name.vitrust.index` (U64), `name.vitrust.values` (its dtype) and,
//! when its blocks have their own thresholds, `name.vitrust.thresholds` (U8),
//! and plain tensors pass through, so any safetensors reader opens it.
//!
//! The string metadata holds, under the key `"vitrust"`, one JSON object:
//!
//! ```text
//! {"version": 1, 2 or 3,
//!  "sparse":  {name: {"shape", "dtype", "nnz", "block_steps", "lam",
//!                     ["order",] ["values", ["group",]]
//!                     "config": {"flip_flops", "n_in", "n_out",
//!                                "comparator_bits", "threshold", "taps"}}},
//!  "tensors": {stored name: {"dtype", "shape", "crc32"}},
//!  "check":   crc32 of the canonical JSON of the three fields above}
//! ```
//!
//! `crc32` is CRC-32 (IEEE, as zlib's) of a stored tensor's bytes. Checking
//! dtype and shape as well as the bytes, and the metadata by its own CRC,
//! means a damaged file is refused rather than loaded as different data.
//! Loading ([`load`]) validates everything before it returns anything.
//!
//! A pruned tensor's values may instead be encoded (version 3): packed codes
//! `name.vitrust.codes` (U8) and a side table, `name.vitrust.scales` or
//! `name.vitrust.codebook`, with the encoding in its record.
//!
//! A file is version 3 when any of its pruned tensors has encoded values,
//! else 2 when any has per-block thresholds or order `"F"`, and 1 otherwise,
//! so that files which need nothing new stay readable by older readers.

pub mod atomic;
pub mod cost;
mod count;
mod dtype;
pub mod header;
mod mapped;
pub mod meta;
mod read;
mod stream;
mod unescape;
mod values;
mod version;

pub use count::{kept_count, KeptCounter};
pub use dtype::DType;
pub use mapped::{Entry, MappedFile, Span, SparseSpan, ValueSpans};
pub use read::{load, read_file, read_metadata, sparse_item, verify};
pub use stream::{Planned, ShardWriter};
use values::table_suffix;
pub use values::{check_encoded, Values};

use crate::{bail, Error, Layout, Result, VdConfig};
use serde_json::{json, Value};
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

/// The newest format version this build reads and writes (docs/format.md,
/// "Versions"): it reads versions 1 ..= `FORMAT_VERSION`, and writes the
/// oldest version that holds the file's tensors ([`file_version`]).
pub const FORMAT_VERSION: u64 = FORMAT_VERSION_3;
/// The version of a file that uses neither per-block thresholds, order
/// `"F"` nor encoded values.
pub const FORMAT_VERSION_1: u64 = 1;
/// The version that added per-block thresholds and the order.
pub const FORMAT_VERSION_2: u64 = 2;
/// The version that added encoded values.
pub const FORMAT_VERSION_3: u64 = 3;
/// The metadata key holding vitrust's JSON.
pub const META_KEY: &str = "vitrust";
pub const INDEX_SUFFIX: &str = ".vitrust.index";
pub const VALUES_SUFFIX: &str = ".vitrust.values";
/// The sibling holding a pruned tensor's per-block thresholds (version 2).
pub const THRESHOLDS_SUFFIX: &str = ".vitrust.thresholds";
/// The siblings of encoded values (version 3): packed codes, and the scales
/// of an integer encoding or the centroids of a codebook.
pub const CODES_SUFFIX: &str = ".vitrust.codes";
pub const SCALES_SUFFIX: &str = ".vitrust.scales";
pub const CODEBOOK_SUFFIX: &str = ".vitrust.codebook";
/// Every sibling suffix, for messages and for the reserved names.
pub const SUFFIXES: [&str; 6] = [
    INDEX_SUFFIX,
    VALUES_SUFFIX,
    THRESHOLDS_SUFFIX,
    CODES_SUFFIX,
    SCALES_SUFFIX,
    CODEBOOK_SUFFIX,
];
/// More dimensions than numpy allows are refused.
pub const MAX_DIMS: usize = 64;

/// A dense tensor: little-endian bytes of `dtype` in C order.
#[derive(Clone, Debug, PartialEq)]
pub struct Plain<'a> {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub data: Cow<'a, [u8]>,
}

/// The walk of a pruned tensor's stream over its 2-D view `(shape[0], rest)`
/// (docs/format.md, "Order"): row by row (`C`, version 1's only order) or
/// column by column (`F`). Values are stored in stream order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Order {
    #[default]
    C,
    F,
}

impl Order {
    pub fn name(self) -> &'static str {
        match self {
            Order::C => "C",
            Order::F => "F",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "C" => Some(Order::C),
            "F" => Some(Order::F),
            _ => None,
        }
    }
}

/// A pruned tensor: everything a `ViterbiSparse` holds.
#[derive(Clone, Debug, PartialEq)]
pub struct Sparse<'a> {
    pub shape: Vec<usize>,
    pub config: VdConfig,
    pub block_steps: usize,
    pub lam: f64,
    pub index: Cow<'a, [u64]>,
    /// The kept values' type.
    pub dtype: DType,
    pub values: Values<'a>,
    /// One comparator threshold per block (version 2), or `None` when the
    /// config's threshold serves every block.
    pub thresholds: Option<Cow<'a, [u8]>>,
    /// The stream's order (version 2 when `F`).
    pub order: Order,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Item<'a> {
    Plain(Plain<'a>),
    Sparse(Sparse<'a>),
}

/// Elements of a shape, refusing overflow and too many dimensions.
pub fn numel(shape: &[usize]) -> Result<usize> {
    if shape.len() > MAX_DIMS {
        bail!(
            "{} dimensions: at most {MAX_DIMS} are supported",
            shape.len()
        );
    }
    shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| Error::invalid(format!("shape {shape:?}: the element count overflows")))
}

fn is_reserved(name: &str) -> bool {
    SUFFIXES.iter().any(|s| name.ends_with(s))
}

/// The pruned tensor a sibling's name belongs to (`w.vitrust.index` -> `w`).
fn sibling_base(name: &str) -> Option<&str> {
    SUFFIXES.iter().find_map(|s| name.strip_suffix(s))
}

/// The version a file of `items` is written as: the newest any of its
/// pruned tensors needs (older readers keep reading files that need
/// nothing new).
pub fn file_version<'a, 'b: 'a>(items: impl IntoIterator<Item = &'a Sparse<'b>>) -> u64 {
    items
        .into_iter()
        .map(Sparse::version)
        .fold(FORMAT_VERSION_1, u64::max)
}

impl Plain<'_> {
    fn check(&self, name: &str) -> Result<()> {
        if is_reserved(name) {
            bail!(
                "tensor {name:?}: names ending in {} are reserved",
                SUFFIXES.join(", ")
            );
        }
        let want = numel(&self.shape)?
            .checked_mul(self.dtype.size())
            .ok_or_else(|| Error::invalid(format!("tensor {name:?}: size overflows")))?;
        if self.data.len() != want {
            bail!(
                "tensor {name:?}: {} bytes, but shape {:?} of {} needs {want}",
                self.data.len(),
                self.shape,
                self.dtype.name()
            );
        }
        Ok(())
    }
}

impl Sparse<'_> {
    /// The block layout of this tensor.
    pub fn layout(&self) -> Result<Layout> {
        if self.shape.is_empty() {
            bail!("shape []: a pruned tensor has at least one dimension");
        }
        Layout::new(&self.config, numel(&self.shape)?, self.block_steps)
    }

    /// Number of kept values.
    pub fn nnz(&self) -> usize {
        match &self.values {
            Values::Raw(v) => v.len() / self.dtype.size(),
            Values::Encoded(e) => e.len,
        }
    }

    /// The oldest format version that holds this tensor.
    pub fn version(&self) -> u64 {
        if matches!(self.values, Values::Encoded(_)) {
            FORMAT_VERSION_3
        } else if self.thresholds.is_some() || self.order != Order::C {
            FORMAT_VERSION_2
        } else {
            FORMAT_VERSION_1
        }
    }

    /// Index bits, the per-block thresholds' bits included (see
    /// [`cost::viterbi_bits`]).
    pub fn index_bits(&self) -> Result<u64> {
        Ok(cost::viterbi_bits(
            &self.config,
            &self.layout()?,
            self.thresholds.is_some(),
        ))
    }

    /// Full consistency: dtype, finite λ, index length against the layout, and
    /// the values' count against the kept count the index expands to.
    pub fn check(&self, name: &str) -> Result<()> {
        self.check_with(name, &mut KeptCounter::default())
    }

    /// [`check`](Self::check), sharing `counter`'s tables with other tensors.
    pub fn check_with(&self, name: &str, counter: &mut KeptCounter) -> Result<()> {
        let ctx = |e: Error| e.context(format_args!("pruned tensor {name:?}"));
        if !self.dtype.is_value() {
            bail!(
                "pruned tensor {name:?}: values of type {} (need F16, BF16, F32, F64, F8_E4M3 or F8_E5M2)",
                self.dtype.name()
            );
        }
        if !self.lam.is_finite() {
            bail!("pruned tensor {name:?}: lam = {} is not finite", self.lam);
        }
        let layout = self.layout().map_err(ctx)?;
        layout.check_index(self.index.len()).map_err(ctx)?;
        match &self.values {
            Values::Raw(v) if !v.len().is_multiple_of(self.dtype.size()) => {
                bail!("pruned tensor {name:?}: values are not a whole number of elements");
            }
            Values::Raw(_) => {}
            Values::Encoded(e) => check_encoded(e, self.dtype).map_err(ctx)?,
        }
        let kept = counter
            .count(
                &self.config,
                &layout,
                &self.index,
                self.thresholds.as_deref(),
            )
            .map_err(ctx)?;
        if kept != self.nnz() {
            bail!(
                "pruned tensor {name:?}: {} values, but the index keeps {kept} weights",
                self.nnz()
            );
        }
        Ok(())
    }
}

/// One stored safetensors tensor, borrowed for writing.
struct Stored<'a> {
    dtype: DType,
    shape: Vec<usize>,
    data: Cow<'a, [u8]>,
}

impl safetensors::View for Stored<'_> {
    fn dtype(&self) -> safetensors::Dtype {
        self.dtype.to_safetensors()
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    /// Tensors are written one after another: once the save is cancelled,
    /// the rest are skipped (the file is removed before it is renamed).
    fn data(&self) -> Cow<'_, [u8]> {
        if crate::cancel::check().is_err() {
            return Cow::Borrowed(&[]);
        }
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

fn u64_bytes(words: &[u64]) -> Result<Vec<u8>> {
    let n = crate::sys::bytes_of::<u64>(words.len(), "an index's bytes")?;
    let mut out = crate::sys::with_capacity(n, "an index's bytes")?;
    words
        .iter()
        .for_each(|w| out.extend_from_slice(&w.to_le_bytes()));
    Ok(out)
}

/// CRC-32 of `data`, a chunk at a time with a cancel check between chunks.
fn crc32(data: &[u8]) -> Result<u32> {
    let mut h = crc32fast::Hasher::new();
    for chunk in data.chunks(64 << 20) {
        crate::cancel::check()?;
        h.update(chunk);
    }
    Ok(h.finalize())
}

fn config_json(c: &VdConfig) -> Value {
    json!({
        "flip_flops": c.flip_flops(), "n_in": c.n_in(), "n_out": c.n_out(),
        "comparator_bits": c.comparator_bits(), "threshold": c.threshold(), "taps": c.taps(),
    })
}

/// A pruned tensor's record in the `"sparse"` field (`"order"` only when
/// `F`, `"values"` and `"group"` only for encoded values).
fn sparse_record(s: &Sparse<'_>) -> Value {
    let mut r = json!({
        "shape": s.shape, "dtype": s.dtype.name(), "nnz": s.nnz(),
        "block_steps": s.block_steps, "lam": s.lam, "config": config_json(&s.config),
    });
    if let Some(o) = meta::order_field(s.order) {
        r["order"] = json!(o);
    }
    if let Some(v) = meta::values_field(s.encoding()) {
        r["values"] = json!(v);
    }
    if let Some(g) = meta::group_field(s.encoding()) {
        r["group"] = json!(g);
    }
    r
}

/// CRC-32 of the canonical (re-serialised) JSON of `body`.
fn body_check(body: &Value) -> u32 {
    crc32fast::hash(body.to_string().as_bytes())
}

/// The stored tensors and the `"vitrust"` metadata JSON of `items`.
fn layout_file<'a>(items: &'a [(String, Item<'a>)]) -> Result<(Vec<(String, Stored<'a>)>, String)> {
    let mut stored = Vec::new();
    // (name, record fields) of the pruned tensors, sorted by name below.
    let mut sparse: Vec<(&str, &Sparse<'_>, serde_json::Number)> = Vec::new();
    let mut counter = KeptCounter::default();
    for (name, item) in items {
        match item {
            Item::Plain(p) => {
                p.check(name)?;
                let data = Cow::Borrowed(p.data.as_ref());
                stored.push((
                    name.clone(),
                    Stored {
                        dtype: p.dtype,
                        shape: p.shape.clone(),
                        data,
                    },
                ));
            }
            Item::Sparse(s) => {
                s.check_with(name, &mut counter)?;
                let lam = serde_json::Number::from_f64(s.lam).expect("checked finite");
                sparse.push((name, s, lam));
                let index = Stored {
                    dtype: DType::U64,
                    shape: vec![s.index.len()],
                    data: Cow::Owned(u64_bytes(&s.index)?),
                };
                stored.push((format!("{name}{INDEX_SUFFIX}"), index));
                for (sibling, dtype, data) in s.value_siblings(name)? {
                    let shape = vec![data.len() / dtype.size()];
                    stored.push((sibling, Stored { dtype, shape, data }));
                }
            }
        }
    }
    sparse.sort_by(|a, b| a.0.cmp(b.0));
    let mut tensors: Vec<(&str, u32, &Stored<'_>)> = stored
        .iter()
        .map(|(n, t)| Ok((n.as_str(), crc32(&t.data)?, t)))
        .collect::<Result<_>>()?;
    tensors.sort_by(|a, b| a.0.cmp(b.0));
    if let Some(w) = tensors.windows(2).find(|w| w[0].0 == w[1].0) {
        bail!("tensor name {:?} is used twice", w[0].0);
    }
    let records = || {
        sparse.iter().map(|(name, s, lam)| {
            let r = meta::SparseRecord {
                block_steps: s.block_steps,
                config: meta::ConfigRecord::of(&s.config),
                dtype: s.dtype.name(),
                lam,
                nnz: s.nnz(),
                order: meta::order_field(s.order),
                shape: &s.shape,
                values: meta::values_field(s.encoding()),
                group: meta::group_field(s.encoding()),
            };
            (*name, r)
        })
    };
    let entries = || {
        tensors.iter().map(|(name, crc, t)| {
            let r = meta::TensorRecord {
                crc32: *crc,
                dtype: t.dtype.name(),
                shape: &t.shape,
            };
            (*name, r)
        })
    };
    let version = file_version(sparse.iter().map(|(_, s, _)| *s));
    let body = meta::body_json(version, records, entries);
    Ok((stored, body))
}

/// Writes the safetensors container of `stored` and `meta` to `w`: the
/// crate's own header (tensors sorted by alignment, then name), padded to 8
/// bytes, then the data, streamed with no copy of the whole file.
fn write_container(
    w: &mut dyn std::io::Write,
    mut stored: Vec<(String, Stored<'_>)>,
    meta: HashMap<String, String>,
) -> std::io::Result<()> {
    use safetensors::tensor::{Metadata, TensorInfo};
    let bad = |e: &dyn std::fmt::Display| std::io::Error::other(e.to_string());
    stored.sort_by(|(a, x), (b, y)| {
        let (dx, dy) = (x.dtype.to_safetensors(), y.dtype.to_safetensors());
        dy.cmp(&dx).then(a.cmp(b))
    });
    let mut offset = 0;
    let infos = stored
        .iter()
        .map(|(name, t)| {
            let start = offset;
            offset += t.data.len();
            let info = TensorInfo {
                dtype: t.dtype.to_safetensors(),
                shape: t.shape.clone(),
                data_offsets: (start, offset),
            };
            (name.clone(), info)
        })
        .collect();
    let header = Metadata::new(Some(meta), infos).map_err(|e| bad(&e))?;
    let mut text = serde_json::to_vec(&header).map_err(|e| bad(&e))?;
    text.resize(text.len().next_multiple_of(8), b' ');
    if text.len() > read::MAX_HEADER {
        return Err(bad(&format_args!(
            "the header is {} bytes, more than safetensors allows ({})",
            text.len(),
            read::MAX_HEADER
        )));
    }
    w.write_all(&(text.len() as u64).to_le_bytes())?;
    w.write_all(&text)?;
    // Written in pieces with a cancel check between them: an interrupted
    // save stops here, and the temporary file is never published.
    let cancelled = |e: Error| std::io::Error::other(e.msg);
    for (_, t) in &stored {
        for piece in t.data.chunks(64 << 20) {
            crate::cancel::check().map_err(cancelled)?;
            w.write_all(piece)?;
        }
    }
    crate::cancel::check().map_err(cancelled)
}

/// Writes `items` to `path` atomically (see [`atomic`]): a failed or killed
/// save leaves any existing file untouched. `metadata` is the caller's own
/// string metadata (the key `"vitrust"` is reserved).
pub fn save(
    path: &Path,
    items: &[(String, Item<'_>)],
    metadata: &HashMap<String, String>,
) -> Result<()> {
    if metadata.contains_key(META_KEY) {
        bail!("metadata key {META_KEY:?} is reserved");
    }
    let (stored, body) = layout_file(items)?;
    let mut meta = metadata.clone();
    meta.insert(META_KEY.to_string(), body);
    atomic::write_atomic(path, |w| write_container(w, stored, meta))
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod v2_tests;
#[cfg(test)]
mod v3_tests;
