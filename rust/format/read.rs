//! Loading a vitrust file: the safetensors crate checks the container (header
//! size, offsets, dtype and shape against byte counts); this module checks
//! vitrust's metadata field by field, every tensor's dtype, shape and CRC-32,
//! and every pruned tensor's layout and kept count, and refuses anything off.
//! Nothing is allocated beyond the file's own size (plus a bounded keep table).

use super::{
    body_check, is_reserved, numel, DType, Item, Plain, Sparse, FORMAT_VERSION, INDEX_SUFFIX,
    META_KEY, VALUES_SUFFIX,
};
use crate::{bail_format, Error, Result, VdConfig};
use safetensors::{tensor::TensorView, SafeTensors};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Bytes read per cancel check.
const READ_CHUNK: u64 = 64 << 20;

/// Reads a whole regular file (a device or a FIFO is refused: it could be
/// endless) into a buffer allocated fallibly, in chunks with a cancel check
/// between them.
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let err = |e: std::io::Error| Error::io(format!("{}: {e}", path.display()));
    let mut file = std::fs::File::open(path).map_err(err)?;
    let meta = file.metadata().map_err(err)?;
    if !meta.is_file() {
        bail_format!("{}: not a regular file", path.display());
    }
    let what = format!("the contents of {}", path.display());
    let len = usize::try_from(meta.len()).map_err(|_| Error::memory(&what, meta.len().into()))?;
    let mut buf = crate::alloc::with_capacity(len, &what)?;
    loop {
        crate::cancel::check()?;
        let room = (buf.capacity() - buf.len()) as u64;
        if room > 0 {
            if (&mut file)
                .take(READ_CHUNK.min(room))
                .read_to_end(&mut buf)
                .map_err(err)?
                == 0
            {
                return Ok(buf);
            }
            continue;
        }
        // Full: the end of the file, unless it grew since it was measured.
        let mut probe = [0u8; 4096];
        let n = match file.read(&mut probe) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => r.map_err(err)?,
        };
        if n == 0 {
            return Ok(buf);
        }
        crate::alloc::reserve(&mut buf, n + READ_CHUNK as usize, &what)?;
        buf.extend_from_slice(&probe[..n]);
    }
}

/// A field of a JSON object, named in the error when missing.
fn field<'v>(obj: &'v Map<String, Value>, key: &str, ctx: &str) -> Result<&'v Value> {
    obj.get(key)
        .ok_or_else(|| Error::format(format!("{ctx}: missing field {key:?}")))
}

fn object<'v>(v: &'v Value, ctx: &str) -> Result<&'v Map<String, Value>> {
    v.as_object()
        .ok_or_else(|| Error::format(format!("{ctx}: expected a JSON object")))
}

/// Refuses fields other than `keys`: an unknown field means a newer or edited file.
fn only(obj: &Map<String, Value>, keys: &[&str], ctx: &str) -> Result<()> {
    match obj.keys().find(|k| !keys.contains(&k.as_str())) {
        Some(k) => bail_format!("{ctx}: unknown field {k:?}"),
        None => Ok(()),
    }
}

fn uint(v: &Value, ctx: &str) -> Result<u64> {
    v.as_u64()
        .ok_or_else(|| Error::format(format!("{ctx}: expected a non-negative integer, got {v}")))
}

fn small(v: &Value, ctx: &str) -> Result<u32> {
    u32::try_from(uint(v, ctx)?).map_err(|_| Error::format(format!("{ctx}: {v} is out of range")))
}

fn size(v: &Value, ctx: &str) -> Result<usize> {
    usize::try_from(uint(v, ctx)?).map_err(|_| Error::format(format!("{ctx}: {v} is out of range")))
}

fn shape(v: &Value, ctx: &str) -> Result<Vec<usize>> {
    let dims = v
        .as_array()
        .ok_or_else(|| Error::format(format!("{ctx}: expected a list of dimensions")))?;
    let shape = dims
        .iter()
        .map(|d| size(d, ctx))
        .collect::<Result<Vec<_>>>()?;
    numel(&shape).map_err(|e| Error::format(format!("{ctx}: {}", e.msg)))?;
    Ok(shape)
}

fn dtype(v: &Value, ctx: &str) -> Result<DType> {
    v.as_str()
        .and_then(DType::from_name)
        .ok_or_else(|| Error::format(format!("{ctx}: unsupported dtype {v}")))
}

fn config(v: &Value, ctx: &str) -> Result<VdConfig> {
    let c = object(v, ctx)?;
    let keys = [
        "flip_flops",
        "n_in",
        "n_out",
        "comparator_bits",
        "threshold",
        "taps",
    ];
    only(c, &keys, ctx)?;
    let mut n = [0u32; 5];
    for (slot, key) in n.iter_mut().zip(keys) {
        *slot = small(field(c, key, ctx)?, &format!("{ctx}.{key}"))?;
    }
    let taps = field(c, "taps", ctx)?
        .as_array()
        .ok_or_else(|| Error::format(format!("{ctx}.taps: expected a list")))?;
    // VdConfig::new bounds the count (n_out * comparator_bits <= 512); refuse a
    // longer list before converting it.
    if taps.len() > 512 {
        bail_format!(
            "{ctx}.taps: {} tap masks is more than any valid config has",
            taps.len()
        );
    }
    let taps = taps
        .iter()
        .map(|t| small(t, &format!("{ctx}.taps")))
        .collect::<Result<_>>()?;
    VdConfig::new(n[0], n[1], n[2], n[3], n[4], taps)
        .map_err(|e| Error::format(format!("{ctx}: {}", e.msg)))
}

/// The `"vitrust"` metadata: parsed, version-checked and its own CRC verified.
fn body(text: &str) -> Result<Map<String, Value>> {
    let v: Value = serde_json::from_str(text)
        .map_err(|e| Error::format(format!("vitrust metadata is not valid JSON: {e}")))?;
    let mut body = object(&v, "vitrust metadata")?.clone();
    let version = field(&body, "version", "vitrust metadata")?;
    if version.as_u64() != Some(FORMAT_VERSION) {
        bail_format!("unsupported vitrust format version {version} (this build reads version {FORMAT_VERSION})");
    }
    only(
        &body,
        &["version", "sparse", "tensors", "check"],
        "vitrust metadata",
    )?;
    let check = uint(
        field(&body, "check", "vitrust metadata")?,
        "vitrust metadata check",
    )?;
    body.remove("check");
    if u64::from(body_check(&Value::Object(body.clone()))) != check {
        bail_format!("vitrust metadata checksum mismatch: the header was altered or damaged");
    }
    Ok(body)
}

/// Checks a stored tensor against its `tensors` entry: dtype, shape, CRC-32.
fn verify(name: &str, view: &TensorView<'_>, entry: &Value) -> Result<DType> {
    let ctx = format!("tensor {name:?}");
    let e = object(entry, &ctx)?;
    only(e, &["dtype", "shape", "crc32"], &ctx)?;
    let dt = DType::from_safetensors(view.dtype())
        .ok_or_else(|| Error::format(format!("{ctx}: unsupported dtype {:?}", view.dtype())))?;
    if dtype(field(e, "dtype", &ctx)?, &ctx)? != dt {
        bail_format!(
            "{ctx}: stored as {} but the metadata records {}",
            dt.name(),
            e["dtype"]
        );
    }
    if shape(field(e, "shape", &ctx)?, &ctx)? != view.shape() {
        bail_format!(
            "{ctx}: shape {:?} but the metadata records {}",
            view.shape(),
            e["shape"]
        );
    }
    if uint(field(e, "crc32", &ctx)?, &ctx)? != u64::from(crc32fast::hash(view.data())) {
        bail_format!("{ctx}: checksum mismatch: the data is damaged");
    }
    Ok(dt)
}

fn decode_u64(bytes: &[u8]) -> Result<Vec<u64>> {
    let mut words = crate::alloc::zeros::<u64>(bytes.len() / 8, "an index")?;
    for (w, c) in words.iter_mut().zip(bytes.chunks_exact(8)) {
        *w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
    }
    Ok(words)
}

/// A pruned tensor from its record and its two (already verified) siblings.
fn sparse<'a>(
    name: &str,
    rec: &Value,
    views: &HashMap<String, TensorView<'a>>,
) -> Result<Sparse<'a>> {
    let ctx = format!("pruned tensor {name:?}");
    let r = object(rec, &ctx)?;
    only(
        r,
        &["shape", "dtype", "nnz", "block_steps", "lam", "config"],
        &ctx,
    )?;
    let sibling = |suffix: &str, want: DType| -> Result<&TensorView<'a>> {
        let v = views
            .get(&format!("{name}{suffix}"))
            .ok_or_else(|| Error::format(format!("{ctx}: tensor {name}{suffix} is missing")))?;
        if v.shape().len() != 1 || DType::from_safetensors(v.dtype()) != Some(want) {
            bail_format!("{ctx}: {name}{suffix} must be a 1-D {} tensor", want.name());
        }
        Ok(v)
    };
    let dt = dtype(field(r, "dtype", &ctx)?, &ctx)?;
    let (index, values) = (
        sibling(INDEX_SUFFIX, DType::U64)?,
        sibling(VALUES_SUFFIX, dt)?,
    );
    let lam = field(r, "lam", &ctx)?
        .as_f64()
        .ok_or_else(|| Error::format(format!("{ctx}: lam is not a number")))?;
    let s = Sparse {
        shape: shape(field(r, "shape", &ctx)?, &ctx)?,
        config: config(field(r, "config", &ctx)?, &format!("{ctx} config"))?,
        block_steps: size(field(r, "block_steps", &ctx)?, &ctx)?,
        lam,
        index: Cow::Owned(decode_u64(index.data())?),
        dtype: dt,
        values: Cow::Borrowed(values.data()),
    };
    if size(field(r, "nnz", &ctx)?, &ctx)? != s.nnz() {
        bail_format!(
            "{ctx}: {} values stored, but the metadata records nnz = {}",
            s.nnz(),
            r["nnz"]
        );
    }
    s.check(name)?;
    Ok(s)
}

/// Parses and validates a whole file image; items come back sorted by name.
pub fn load(buf: &[u8]) -> Result<Vec<(String, Item<'_>)>> {
    let st = SafeTensors::deserialize(buf)
        .map_err(|e| Error::format(format!("not a valid safetensors file: {e}")))?;
    let (_, meta) = SafeTensors::read_metadata(buf)
        .map_err(|e| Error::format(format!("not a valid safetensors file: {e}")))?;
    let views: HashMap<String, TensorView<'_>> = st.tensors().into_iter().collect();
    let text = meta.metadata().as_ref().and_then(|m| m.get(META_KEY));
    let Some(text) = text else {
        // A plain safetensors file: nothing of vitrust's to check.
        if let Some(name) = views.keys().find(|n| is_reserved(n)) {
            bail_format!(
                "tensor {name:?} is part of a pruned tensor, but the vitrust metadata is missing"
            );
        }
        return plain_items(&views);
    };
    let body = body(text)?;
    let tensors = object(
        field(&body, "tensors", "vitrust metadata")?,
        "vitrust tensors",
    )?;
    if let Some(name) = views.keys().find(|n| !tensors.contains_key(*n)) {
        bail_format!("tensor {name:?} is not recorded in the vitrust metadata");
    }
    let mut out = BTreeMap::new();
    for (name, entry) in tensors {
        let view = views.get(name).ok_or_else(|| {
            Error::format(format!(
                "tensor {name:?} is recorded but missing from the file"
            ))
        })?;
        let dt = verify(name, view, entry)?;
        if dt == DType::Bool && view.data().iter().any(|&b| b > 1) {
            bail_format!("tensor {name:?}: a BOOL tensor holds bytes other than 0 and 1");
        }
        if !is_reserved(name) {
            let data = Cow::Borrowed(view.data());
            out.insert(
                name.clone(),
                Item::Plain(Plain {
                    dtype: dt,
                    shape: view.shape().to_vec(),
                    data,
                }),
            );
        }
    }
    let records = object(
        field(&body, "sparse", "vitrust metadata")?,
        "vitrust sparse",
    )?;
    for (name, rec) in records {
        if out.contains_key(name) {
            bail_format!("{name:?} is stored both as a plain and as a pruned tensor");
        }
        out.insert(name.clone(), Item::Sparse(sparse(name, rec, &views)?));
    }
    // Every sibling tensor must belong to a record.
    for name in tensors.keys().filter(|n| is_reserved(n)) {
        let base = name
            .strip_suffix(INDEX_SUFFIX)
            .or_else(|| name.strip_suffix(VALUES_SUFFIX))
            .unwrap_or(name);
        if !records.contains_key(base) {
            bail_format!("tensor {name:?} belongs to no pruned tensor in the metadata");
        }
    }
    Ok(out.into_iter().collect())
}

fn plain_items<'a>(views: &HashMap<String, TensorView<'a>>) -> Result<Vec<(String, Item<'a>)>> {
    let mut out: Vec<_> = views
        .iter()
        .map(|(name, v)| {
            let dt = DType::from_safetensors(v.dtype()).ok_or_else(|| {
                Error::format(format!(
                    "tensor {name:?}: unsupported dtype {:?}",
                    v.dtype()
                ))
            })?;
            if dt == DType::Bool && v.data().iter().any(|&b| b > 1) {
                bail_format!("tensor {name:?}: a BOOL tensor holds bytes other than 0 and 1");
            }
            let data = Cow::Borrowed(v.data());
            Ok((
                name.clone(),
                Item::Plain(Plain {
                    dtype: dt,
                    shape: v.shape().to_vec(),
                    data,
                }),
            ))
        })
        .collect::<Result<_>>()?;
    out.sort_by(|a: &(String, Item<'_>), b| a.0.cmp(&b.0));
    Ok(out)
}
