//! The vitrust file: a safetensors file (written and parsed by the
//! `safetensors` crate) in which a pruned tensor `name` is stored as sibling
//! tensors `name.vitrust.index` (U64) and `name.vitrust.values` (its dtype),
//! and plain tensors pass through, so any safetensors reader opens it.
//!
//! The string metadata holds, under the key `"vitrust"`, one JSON object:
//!
//! ```text
//! {"version": 1,
//!  "sparse":  {name: {"shape", "dtype", "nnz", "block_steps", "lam",
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

mod dtype;
mod mapped;
mod read;
mod stream;

pub use dtype::DType;
pub use mapped::{Entry, MappedFile, Span, SparseSpan};
pub use read::{load, read_file};
pub use stream::{Planned, ShardWriter};

use crate::expand::read_bits;
use crate::{bail, Error, Expander, Layout, Result, VdConfig};
use serde_json::{json, Map, Value};
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The format version this build writes and reads.
pub const FORMAT_VERSION: u64 = 1;
/// The metadata key holding vitrust's JSON.
pub const META_KEY: &str = "vitrust";
pub const INDEX_SUFFIX: &str = ".vitrust.index";
pub const VALUES_SUFFIX: &str = ".vitrust.values";
/// More dimensions than numpy allows are refused.
pub const MAX_DIMS: usize = 64;

/// A dense tensor: little-endian bytes of `dtype` in C order.
#[derive(Clone, Debug, PartialEq)]
pub struct Plain<'a> {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub data: Cow<'a, [u8]>,
}

/// A pruned tensor: everything a `ViterbiSparse` holds.
#[derive(Clone, Debug, PartialEq)]
pub struct Sparse<'a> {
    pub shape: Vec<usize>,
    pub config: VdConfig,
    pub block_steps: usize,
    pub lam: f64,
    pub index: Cow<'a, [u64]>,
    /// The kept values' type; `values` holds their little-endian bytes.
    pub dtype: DType,
    pub values: Cow<'a, [u8]>,
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
    name.ends_with(INDEX_SUFFIX) || name.ends_with(VALUES_SUFFIX)
}

impl Plain<'_> {
    fn check(&self, name: &str) -> Result<()> {
        if is_reserved(name) {
            bail!("tensor {name:?}: names ending in {INDEX_SUFFIX:?} or {VALUES_SUFFIX:?} are reserved");
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

    /// Number of kept values, from the length of `values`.
    pub fn nnz(&self) -> usize {
        self.values.len() / self.dtype.size()
    }

    /// Full consistency: dtype, finite λ, index length against the layout, and
    /// the values' count against the kept count the index expands to.
    pub fn check(&self, name: &str) -> Result<()> {
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
        if !self.values.len().is_multiple_of(self.dtype.size()) {
            bail!("pruned tensor {name:?}: values are not a whole number of elements");
        }
        let kept = kept_count(&self.config, &layout, &self.index).map_err(ctx)?;
        if kept != self.nnz() {
            bail!(
                "pruned tensor {name:?}: {} values, but the index keeps {kept} weights",
                self.nnz()
            );
        }
        Ok(())
    }
}

/// Weights the index keeps. The expander tabulates all `2^(k + n_in)` register
/// values first; for a short index stepping the VD directly is cheaper, which
/// keeps the work of checking a file proportional to the file's size (a
/// hostile file cannot make many tiny tensors with huge configs cost seconds each).
pub fn kept_count(config: &VdConfig, layout: &Layout, index: &[u64]) -> Result<usize> {
    layout.check_index(index.len())?;
    let n_in = config.n_in();
    let steps = layout.index_bits() / u64::from(n_in);
    if steps >= 1 << (config.flip_flops() + n_in) {
        return Ok(Expander::new(config, *layout).counts(index)?.iter().sum());
    }
    let state_mask = (1u32 << config.flip_flops()) - 1;
    let mut kept = 0;
    for b in 0..layout.n_blocks() {
        let (words, valid) = (&index[layout.words(b)], layout.weights(b).len());
        let mut s = 0u32;
        for t in 0..layout.steps(b) {
            let r = (s << n_in) | read_bits(words, t * n_in as usize, n_in) as u32;
            let mut bits = config.keep_bits(r);
            let left = valid - t * layout.n_out;
            if left < 64 {
                bits &= (1u64 << left) - 1;
            }
            kept += bits.count_ones() as usize;
            s = r & state_mask;
        }
    }
    Ok(kept)
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
    let n = crate::alloc::bytes_of::<u64>(words.len(), "an index's bytes")?;
    let mut out = crate::alloc::with_capacity(n, "an index's bytes")?;
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

/// A pruned tensor's record in the `"sparse"` field.
fn sparse_record(s: &Sparse<'_>) -> Value {
    json!({
        "shape": s.shape, "dtype": s.dtype.name(), "nnz": s.nnz(),
        "block_steps": s.block_steps, "lam": s.lam, "config": config_json(&s.config),
    })
}

/// CRC-32 of the canonical (re-serialised) JSON of `body`.
fn body_check(body: &Value) -> u32 {
    crc32fast::hash(body.to_string().as_bytes())
}

/// The stored tensors and the `"vitrust"` metadata JSON of `items`.
fn layout_file<'a>(items: &'a [(String, Item<'a>)]) -> Result<(Vec<(String, Stored<'a>)>, String)> {
    let (mut stored, mut sparse) = (Vec::new(), Map::new());
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
                s.check(name)?;
                sparse.insert(name.clone(), sparse_record(s));
                let index = Stored {
                    dtype: DType::U64,
                    shape: vec![s.index.len()],
                    data: Cow::Owned(u64_bytes(&s.index)?),
                };
                let values = Stored {
                    dtype: s.dtype,
                    shape: vec![s.nnz()],
                    data: Cow::Borrowed(s.values.as_ref()),
                };
                stored.push((format!("{name}{INDEX_SUFFIX}"), index));
                stored.push((format!("{name}{VALUES_SUFFIX}"), values));
            }
        }
    }
    let mut tensors = Map::new();
    for (name, t) in &stored {
        let entry = json!({"dtype": t.dtype.name(), "shape": t.shape, "crc32": crc32(&t.data)?});
        if tensors.insert(name.clone(), entry).is_some() {
            bail!("tensor name {name:?} is used twice");
        }
    }
    let mut body = json!({"version": FORMAT_VERSION, "sparse": sparse, "tensors": tensors});
    let check = body_check(&body);
    body["check"] = json!(check);
    Ok((stored, body.to_string()))
}

/// A temporary path in `path`'s directory, unique to this process and call.
fn temp_path(path: &Path) -> Result<PathBuf> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let file = path
        .file_name()
        .ok_or_else(|| Error::invalid(format!("{}: not a file path", path.display())))?;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = format!(
        ".{}.{}-{n}.vitrust-tmp",
        file.to_string_lossy(),
        std::process::id()
    );
    Ok(path.with_file_name(tmp))
}

/// The permissions the new file gets: those of the file it replaces, else
/// read-write for the owner and readable by all (the temporary file starts
/// owner-only).
fn permissions(path: &Path) -> std::io::Result<std::fs::Permissions> {
    if let Ok(m) = std::fs::metadata(path) {
        return Ok(m.permissions());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        Ok(std::fs::Permissions::from_mode(0o644))
    }
    #[cfg(not(unix))]
    {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        let mut p = std::fs::metadata(dir.unwrap_or(Path::new(".")))?.permissions();
        p.set_readonly(false);
        Ok(p)
    }
}

/// Writes `items` to `path` atomically: a temporary file in the same
/// directory is written, flushed to disk and renamed over `path`, so a failed
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
    let io = |what: &str, e: &dyn std::fmt::Display| {
        Error::io(format!("{}: {what}: {e}", path.display()))
    };
    let tmp = temp_path(path)?;
    // A cancelled save stops before the rename and leaves nothing behind.
    let written = crate::cancel::check()
        .and_then(|()| {
            safetensors::serialize_to_file(stored, Some(meta), &tmp)
                .map_err(|e| io("cannot write", &e))
        })
        .and_then(|()| crate::cancel::check())
        .and_then(|()| {
            let f = std::fs::File::open(&tmp);
            f.and_then(|f| f.set_permissions(permissions(path)?).map(|()| f))
                .map_err(|e| io("cannot sync", &e))
        });
    match written {
        Ok(f) => publish(f, &tmp, path),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Flushes the finished temporary file `tmp` (open as `file`) to disk and
/// renames it over `path`; on failure `tmp` is removed and `path` untouched.
fn publish(file: std::fs::File, tmp: &Path, path: &Path) -> Result<()> {
    let io = |what: &str, e: std::io::Error| Error::io(format!("{}: {what}: {e}", path.display()));
    let done = crate::cancel::check()
        .and_then(|()| file.sync_all().map_err(|e| io("cannot sync", e)))
        .and_then(|()| crate::cancel::check())
        .and_then(|()| std::fs::rename(tmp, path).map_err(|e| io("cannot replace", e)));
    if let Err(e) = done {
        let _ = std::fs::remove_file(tmp);
        return Err(e);
    }
    // Make the rename itself durable; not every platform can sync a directory.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}

#[cfg(test)]
mod tests;
