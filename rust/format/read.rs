//! Loading a vitrust file: the container is parsed and checked
//! ([`header`](super::header)), vitrust's metadata is parsed field by field
//! as it streams out of the header ([`meta`](super::meta)), every tensor's
//! dtype, shape and CRC-32 is verified, and every pruned tensor's layout and
//! kept count; anything off is refused. Beyond the file's own bytes, memory
//! stays within about the header's size.

use super::header::{self, Container, Entry};
use super::meta::{self, ConfigRecord, SparseMeta, SparseRecord, TensorMeta, TensorRecord};
use super::{
    is_reserved, sibling_base, table_suffix, DType, Item, KeptCounter, Plain, Sparse, Values,
    CODEBOOK_SUFFIX, CODES_SUFFIX, FORMAT_VERSION_1, INDEX_SUFFIX, META_KEY, SCALES_SUFFIX,
    THRESHOLDS_SUFFIX, VALUES_SUFFIX,
};
use crate::{bail_format, Encoded, Encoding, Error, ErrorKind, Result};
use std::borrow::Cow;
use std::path::Path;

pub use header::MAX_HEADER;

/// Reads a whole regular file (a device or a FIFO is refused: it could be endless).
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
    let mut buf = crate::sys::with_capacity(len, &what)?;
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
        crate::sys::reserve(&mut buf, n + READ_CHUNK as usize, &what)?;
        buf.extend_from_slice(&probe[..n]);
    }
}

/// The caller's string metadata of a file (without vitrust's own key), read
/// from its header alone.
pub fn read_metadata(path: &Path) -> Result<Vec<(String, String)>> {
    use std::io::Read;
    let err = |e: std::io::Error| Error::io(format!("{}: {e}", path.display()));
    let mut f = std::fs::File::open(path).map_err(err)?;
    if !f.metadata().map_err(err)?.is_file() {
        bail_format!("{}: not a regular file", path.display());
    }
    let mut len = [0u8; 8];
    f.read_exact(&mut len).map_err(|_| {
        Error::format("not a valid safetensors file: shorter than its 8-byte header length")
    })?;
    let n = u64::from_le_bytes(len);
    let mut buf = len.to_vec();
    if n <= MAX_HEADER as u64 {
        f.take(n).read_to_end(&mut buf).map_err(err)?;
    }
    let (_, text) = header::header_text(&buf)?;
    let parsed = header::parse_metadata(text)?;
    let mut out: Vec<(String, String)> = Vec::with_capacity(parsed.len());
    for (k, v) in parsed.iter().filter(|(k, _)| k != META_KEY) {
        let s: String = serde_json::from_str(v.get())
            .map_err(|e| Error::format(format!("not a valid safetensors file: {e}")))?;
        out.push((k.to_string(), s));
    }
    out.sort();
    Ok(out)
}

/// The little-endian `u64` words of `bytes`, borrowed where aligned.
fn words(bytes: &[u8]) -> Cow<'_, [u64]> {
    if let Some(mid) = crate::sys::aligned_words(bytes) {
        return Cow::Borrowed(mid);
    }
    Cow::Owned(
        bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect(),
    )
}

fn check_bool(e: &Entry<'_>, data: &[u8]) -> Result<()> {
    if e.dtype == DType::Bool && data.iter().any(|&b| b > 1) {
        bail_format!(
            "tensor {:?}: a BOOL tensor holds bytes other than 0 and 1",
            e.name
        );
    }
    Ok(())
}

/// Checks a stored tensor against its `tensors` record: dtype, shape, CRC-32.
pub fn verify(e: &Entry<'_>, data: &[u8], t: &TensorMeta) -> Result<()> {
    let name = &e.name;
    if t.dtype != e.dtype {
        bail_format!(
            "tensor {name:?}: stored as {} but the metadata records {}",
            e.dtype.name(),
            t.dtype.name()
        );
    }
    if t.shape.dims() != e.shape.dims() {
        bail_format!(
            "tensor {name:?}: shape {:?} but the metadata records {:?}",
            e.shape.dims(),
            t.shape.dims()
        );
    }
    if t.crc32 != super::crc32(data)? {
        bail_format!("tensor {name:?}: checksum mismatch: the data is damaged");
    }
    check_bool(e, data)
}

/// A pruned tensor from its record and its (already verified) siblings,
/// fully checked (`counter` shares keep tables between tensors). The
/// thresholds sibling is optional, and refused in a file of `version` 1.
pub fn sparse_item<'a>(
    c: &Container<'a>,
    name: &str,
    m: SparseMeta,
    version: u64,
    counter: &mut KeptCounter,
) -> Result<Sparse<'a>> {
    let ctx = format!("pruned tensor {name:?}");
    let sibling = |suffix: &str, want: DType, needed: bool| -> Result<Option<&'a [u8]>> {
        let full = format!("{name}{suffix}");
        let Some(e) = c.get(&full) else {
            if needed {
                bail_format!("{ctx}: tensor {full} is missing");
            }
            return Ok(None);
        };
        if e.shape.dims().len() != 1 || e.dtype != want {
            bail_format!("{ctx}: {full} must be a 1-D {} tensor", want.name());
        }
        Ok(Some(c.bytes(e)))
    };
    let index = sibling(INDEX_SUFFIX, DType::U64, true)?.expect("needed");
    let encoding = m.encoding();
    let needed = |suffix: &str, want: DType| Ok(sibling(suffix, want, true)?.expect("needed"));
    let values = match (encoding, m.dtype.table_dtype()) {
        (Encoding::Raw, _) => Values::Raw(Cow::Borrowed(needed(VALUES_SUFFIX, m.dtype)?)),
        (e, Some(t)) => Values::Encoded(Encoded {
            encoding: e,
            len: m.nnz,
            codes: Cow::Borrowed(needed(CODES_SUFFIX, DType::U8)?),
            table: t.bytes_f32(needed(table_suffix(e), t)?)?,
        }),
        (e, None) => bail_format!(
            "{ctx}: {} values cannot be stored as {}",
            m.dtype.name(),
            e.name()
        ),
    };
    // A values sibling the encoding does not use is refused, not ignored.
    for suffix in [VALUES_SUFFIX, CODES_SUFFIX, SCALES_SUFFIX, CODEBOOK_SUFFIX] {
        let used = match encoding {
            Encoding::Raw => suffix == VALUES_SUFFIX,
            e => suffix == CODES_SUFFIX || suffix == table_suffix(e),
        };
        if !used && c.get(&format!("{name}{suffix}")).is_some() {
            bail_format!(
                "{ctx}: a tensor with {} values has no {name}{suffix} tensor",
                encoding.name()
            );
        }
    }
    let thresholds = sibling(THRESHOLDS_SUFFIX, DType::U8, false)?;
    if thresholds.is_some() && version == FORMAT_VERSION_1 {
        bail_format!(
            "{ctx}: a version 1 file has no {name}{THRESHOLDS_SUFFIX} tensor (the file is damaged)"
        );
    }
    let order = m.order();
    let lam = m
        .lam
        .as_f64()
        .ok_or_else(|| Error::format(format!("{ctx}: lam is not a number")))?;
    let s = Sparse {
        shape: m.shape,
        config: m.config,
        block_steps: m.block_steps,
        lam,
        index: words(index),
        dtype: m.dtype,
        values,
        thresholds: thresholds.map(Cow::Borrowed),
        order,
    };
    if m.nnz != s.nnz() {
        bail_format!(
            "{ctx}: {} values stored, but the metadata records nnz = {}",
            s.nnz(),
            m.nnz
        );
    }
    // Whatever the stored tensor fails is the file's fault: a format error.
    s.check_with(name, counter).map_err(|e| match e.kind {
        ErrorKind::Invalid => Error::format(e.msg),
        _ => e,
    })?;
    Ok(s)
}

/// Parses and validates a whole file image; items come back sorted by name.
pub fn load(buf: &[u8]) -> Result<Vec<(String, Item<'_>)>> {
    let c = header::parse(buf)?;
    let Some(raw) = c.raw_metadata(META_KEY) else {
        // A plain safetensors file: nothing of vitrust's to check.
        if let Some(e) = c.entries.iter().find(|e| is_reserved(&e.name)) {
            bail_format!(
                "tensor {:?} is part of a pruned tensor, but the vitrust metadata is missing",
                e.name
            );
        }
        return c.entries.iter().map(|e| plain(&c, e)).collect();
    };
    // Each stored tensor's CRC as recorded (and verified), by entry position.
    let mut crcs: Vec<Option<u32>> = vec![None; c.entries.len()];
    let mut on_tensor = |name: String, t: TensorMeta| -> Result<()> {
        let i = c.position(&name).ok_or_else(|| {
            Error::format(format!(
                "tensor {name:?} is recorded but missing from the file"
            ))
        })?;
        if crcs[i].is_some() {
            bail_format!("tensor {name:?} is recorded twice in the vitrust metadata");
        }
        let e = &c.entries[i];
        verify(e, c.bytes(e), &t)?;
        crcs[i] = Some(t.crc32);
        Ok(())
    };
    let reader = || std::io::BufReader::with_capacity(1 << 16, meta::Unescape::new(raw.get()));
    let meta::Parsed {
        sparse: records,
        check,
        version,
    } = meta::parse(reader, &mut on_tensor)?;
    if let Some(i) = crcs.iter().position(Option::is_none) {
        bail_format!(
            "tensor {:?} is not recorded in the vitrust metadata",
            c.entries[i].name
        );
    }
    let sparse = records.iter().map(|(n, m)| (n.as_str(), record(m)));
    let tensors = c.entries.iter().zip(&crcs).map(|(e, crc)| {
        let t = TensorRecord {
            crc32: crc.expect("every entry is recorded"),
            dtype: e.dtype.name(),
            shape: e.shape.dims(),
        };
        (e.name.as_ref(), t)
    });
    if meta::body_check(version, sparse, tensors) != check {
        bail_format!("vitrust metadata checksum mismatch: the header was altered or damaged");
    }
    // Every sibling tensor must belong to a record.
    let has_record = |base: &str| {
        records
            .binary_search_by(|(n, _)| n.as_str().cmp(base))
            .is_ok()
    };
    for e in c.entries.iter().filter(|e| is_reserved(&e.name)) {
        let base = sibling_base(&e.name).unwrap_or(&e.name);
        if !has_record(base) {
            bail_format!(
                "tensor {:?} belongs to no pruned tensor in the metadata",
                e.name
            );
        }
    }
    let mut out = Vec::with_capacity(c.entries.len());
    for e in c.entries.iter().filter(|e| !is_reserved(&e.name)) {
        if has_record(&e.name) {
            bail_format!(
                "{:?} is stored both as a plain and as a pruned tensor",
                e.name
            );
        }
        out.push(plain(&c, e)?);
    }
    let mut counter = KeptCounter::default();
    for (name, m) in records {
        let s = sparse_item(&c, &name, m, version, &mut counter)?;
        out.push((name, Item::Sparse(s)));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// The canonical record of a parsed pruned tensor.
fn record(m: &SparseMeta) -> SparseRecord<'_> {
    SparseRecord {
        block_steps: m.block_steps,
        config: ConfigRecord::of(&m.config),
        dtype: m.dtype.name(),
        lam: &m.lam,
        nnz: m.nnz,
        order: m.order.map(super::Order::name),
        shape: &m.shape,
        values: m.values.map(|e| e.name()),
        group: meta::group_field(m.encoding()),
    }
}

fn plain<'a>(c: &Container<'a>, e: &Entry<'a>) -> Result<(String, Item<'a>)> {
    let data = c.bytes(e);
    check_bool(e, data)?;
    let p = Plain {
        dtype: e.dtype,
        shape: e.shape.dims().to_vec(),
        data: Cow::Borrowed(data),
    };
    Ok((e.name.to_string(), Item::Plain(p)))
}
