//! Writing a vitrust file one tensor at a time, so a shard never sits in
//! memory: the header's room is reserved first (an upper bound computed from
//! the planned names, dtypes and shapes), the tensors' bytes are written in
//! order with their CRC-32s, then the header is written into its room padded
//! with spaces (safetensors allows trailing whitespace in the header). Should
//! the header outgrow its room (tensors beyond the plan), the data is copied
//! once behind a bigger header. The file appears atomically, as with
//! [`save`](super::save): a temporary file is synced and renamed.

use super::atomic::TempFile;
use super::{
    body_check, config_json, numel, sparse_record, DType, Plain, Sparse, CODEBOOK_SUFFIX,
    CODES_SUFFIX, FORMAT_VERSION, FORMAT_VERSION_1, INDEX_SUFFIX, META_KEY, THRESHOLDS_SUFFIX,
    VALUES_SUFFIX,
};
use crate::{bail, Error, Result, VdConfig};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// A tensor the writer expects, for reserving the header: `taps` is 0 for a
/// plain tensor and, for a pruned one, the most tap masks its VD may have.
#[derive(Clone, Debug)]
pub struct Planned {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub taps: usize,
}

/// One stored tensor's header record.
struct Record {
    name: String,
    dtype: DType,
    shape: Vec<usize>,
    offsets: (u64, u64),
    crc: u32,
}

pub struct ShardWriter {
    path: PathBuf,
    /// The file being written; `None` once finished or aborted.
    temp: Option<TempFile>,
    /// A buffered writer on `temp`'s file (a second handle of it).
    out: Option<BufWriter<File>>,
    room: usize,
    offset: u64,
    records: Vec<Record>,
    sparse: Map<String, Value>,
    metadata: HashMap<String, String>,
    /// The file's version so far: the newest any of its tensors needs.
    version: u64,
}

/// Bytes per write when converting index words: bounded, whatever the tensor.
const CHUNK: usize = 1 << 16;

impl ShardWriter {
    /// Starts writing `path` (through a temporary file beside it).
    pub fn create(
        path: &Path,
        metadata: HashMap<String, String>,
        plan: &[Planned],
    ) -> Result<Self> {
        if metadata.contains_key(META_KEY) {
            bail!("metadata key {META_KEY:?} is reserved");
        }
        let room = header_bound(plan, &metadata)
            .map_err(|e| e.context(path.display()))?
            .next_multiple_of(8);
        let (temp, file) = reserve(path, room)?;
        Ok(Self {
            path: path.to_path_buf(),
            temp: Some(temp),
            out: Some(BufWriter::with_capacity(1 << 20, file)),
            room,
            offset: 0,
            records: Vec::new(),
            sparse: Map::new(),
            metadata,
            version: FORMAT_VERSION_1,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, e: std::io::Error) -> Error {
        Error::io(format!("{}: cannot write: {e}", self.path.display()))
    }

    fn check_name(&self, name: &str) -> Result<()> {
        if name == "__metadata__" {
            bail!("tensor name {name:?} is reserved by safetensors");
        }
        if self.records.iter().any(|r| r.name == name) || self.sparse.contains_key(name) {
            bail!("tensor name {name:?} is used twice");
        }
        Ok(())
    }

    /// Appends one stored tensor's bytes, given as pieces.
    fn put<'b>(
        &mut self,
        name: String,
        dtype: DType,
        shape: Vec<usize>,
        parts: impl Iterator<Item = &'b [u8]>,
    ) -> Result<()> {
        self.check_name(&name)?;
        let out = self
            .out
            .as_mut()
            .ok_or_else(|| Error::invalid("the shard writer is closed"))?;
        let (mut crc, start) = (crc32fast::Hasher::new(), self.offset);
        let mut len = 0u64;
        // Bounded pieces, so a huge tensor can be interrupted.
        for p in parts.flat_map(|p| p.chunks(CHUNK << 8)) {
            crate::cancel::check()?;
            crc.update(p);
            out.write_all(p)
                .map_err(|e| Error::io(format!("cannot write: {e}")))?;
            len += p.len() as u64;
        }
        self.offset += len;
        self.records.push(Record {
            name,
            dtype,
            shape,
            offsets: (start, start + len),
            crc: crc.finalize(),
        });
        Ok(())
    }

    /// Adds a dense tensor, passed through bit for bit.
    pub fn add_plain(&mut self, name: &str, p: &Plain<'_>) -> Result<()> {
        let r = (|| -> Result<()> {
            p.check(name)?;
            if p.dtype == DType::Bool && p.data.iter().any(|&b| b > 1) {
                bail!("tensor {name:?}: a BOOL tensor holds bytes other than 0 and 1");
            }
            self.put(
                name.to_string(),
                p.dtype,
                p.shape.clone(),
                std::iter::once(p.data.as_ref()),
            )
        })();
        r.map_err(|e| e.context(self.path.display()))
    }

    /// Adds a pruned tensor as its index and values siblings, and its
    /// thresholds if it has them.
    pub fn add_sparse(&mut self, name: &str, s: &Sparse<'_>) -> Result<()> {
        let r = (|| -> Result<()> {
            s.check(name)?;
            self.check_name(name)?;
            let index: Vec<Vec<u8>> = s
                .index
                .chunks(CHUNK / 8)
                .map(|c| c.iter().flat_map(|w| w.to_le_bytes()).collect())
                .collect();
            let parts = index.iter().map(Vec::as_slice);
            self.put(
                format!("{name}{INDEX_SUFFIX}"),
                DType::U64,
                vec![s.index.len()],
                parts,
            )?;
            for (sibling, dtype, data) in s.value_siblings(name)? {
                let shape = vec![data.len() / dtype.size()];
                self.put(sibling, dtype, shape, std::iter::once(data.as_ref()))?;
            }
            self.version = self.version.max(s.version());
            self.sparse.insert(name.to_string(), sparse_record(s));
            Ok(())
        })();
        r.map_err(|e| e.context(self.path.display()))
    }

    /// Bytes of tensor data written so far.
    pub fn data_bytes(&self) -> u64 {
        self.offset
    }

    /// Names of the stored tensors written so far (siblings included).
    pub fn stored_names(&self) -> Vec<String> {
        self.records.iter().map(|r| r.name.clone()).collect()
    }

    /// Writes the header, syncs and renames the file into place.
    pub fn finish(&mut self) -> Result<()> {
        let r = self.finish_inner();
        if r.is_err() {
            self.abort();
        }
        r
    }

    fn finish_inner(&mut self) -> Result<()> {
        let header = header_json(self.version, &self.records, &self.sparse, &self.metadata);
        let out = self
            .out
            .take()
            .ok_or_else(|| Error::invalid("the shard writer is closed"))?;
        out.into_inner().map_err(|e| self.io(e.into_error()))?;
        if header.len() > self.room {
            self.regrow(header.len().next_multiple_of(8))?;
        }
        let mut head = Vec::with_capacity(8 + self.room);
        head.extend_from_slice(&(self.room as u64).to_le_bytes());
        head.extend_from_slice(header.as_bytes());
        head.resize(8 + self.room, b' ');
        let temp = self.temp.take().expect("open while `out` is");
        let mut file = temp.file();
        file.seek(SeekFrom::Start(0))
            .and_then(|_| file.write_all(&head))
            .map_err(|e| self.io(e))?;
        temp.commit()
    }

    /// Moves the data behind a header room of `room` bytes (a second temporary file).
    fn regrow(&mut self, room: usize) -> Result<()> {
        let (new, mut to) = reserve(&self.path, room)?;
        let old = self.temp.as_ref().expect("open while finishing");
        let mut from = old.file();
        from.seek(SeekFrom::Start((8 + self.room) as u64))
            .and_then(|_| std::io::copy(&mut from, &mut to))
            .map_err(|e| self.io(e))?;
        self.temp = Some(new);
        self.room = room;
        Ok(())
    }

    /// Stops writing and drops the temporary file; the target is untouched.
    pub fn abort(&mut self) {
        self.out = None;
        self.temp = None;
    }
}

/// A temporary file for `path` with `8 + room` bytes reserved for the
/// header, and a second handle of it positioned after them.
fn reserve(path: &Path, room: usize) -> Result<(TempFile, File)> {
    let temp = TempFile::create(path)?;
    let mut file = temp
        .file()
        .try_clone()
        .map_err(|e| temp.io("cannot write", e))?;
    let end = (8 + room) as u64;
    file.set_len(end)
        .and_then(|()| file.seek(SeekFrom::Start(end)).map(drop))
        .map_err(|e| temp.io("cannot write", e))?;
    Ok((temp, file))
}

/// The safetensors header: every stored tensor's place and, under
/// `__metadata__`, the caller's metadata and vitrust's JSON.
fn header_json(
    version: u64,
    records: &[Record],
    sparse: &Map<String, Value>,
    metadata: &HashMap<String, String>,
) -> String {
    let mut tensors = Map::new();
    let mut header = Map::new();
    for r in records {
        let shape = json!(r.shape);
        tensors.insert(
            r.name.clone(),
            json!({"dtype": r.dtype.name(), "shape": shape, "crc32": r.crc}),
        );
        header.insert(
            r.name.clone(),
            json!({"dtype": r.dtype.name(), "shape": shape, "data_offsets": [r.offsets.0, r.offsets.1]}),
        );
    }
    let mut body = json!({"version": version, "sparse": sparse, "tensors": tensors});
    let check = body_check(&body);
    body["check"] = json!(check);
    let mut meta: Map<String, Value> = metadata
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    meta.insert(META_KEY.to_string(), json!(body.to_string()));
    header.insert("__metadata__".to_string(), Value::Object(meta));
    Value::Object(header).to_string()
}

/// The longest header `plan` can produce: the same JSON with every number at
/// its widest (offsets, checksums, counts, λ, taps), every pruned tensor
/// with a thresholds sibling and an order field.
fn header_bound(plan: &[Planned], metadata: &HashMap<String, String>) -> Result<usize> {
    let (mut records, mut sparse) = (Vec::new(), Map::new());
    let widest = |name: String, dtype: DType, shape: Vec<usize>| Record {
        name,
        dtype,
        shape,
        offsets: (u64::MAX, u64::MAX),
        crc: u32::MAX,
    };
    for p in plan {
        let n = numel(&p.shape)?;
        if p.taps == 0 {
            records.push(widest(p.name.clone(), p.dtype, p.shape.clone()));
            continue;
        }
        records.push(widest(
            format!("{}{INDEX_SUFFIX}", p.name),
            DType::U64,
            vec![n],
        ));
        records.push(widest(
            format!("{}{VALUES_SUFFIX}", p.name),
            p.dtype,
            vec![n],
        ));
        // Every sibling any encoding may store, each at its widest.
        for suffix in [THRESHOLDS_SUFFIX, CODES_SUFFIX, CODEBOOK_SUFFIX] {
            records.push(widest(format!("{}{suffix}", p.name), DType::U8, vec![n]));
        }
        let config = config_json(&VdConfig::from_seed(1, 1, 1, 1, 1, 0)?);
        let mut config = config.as_object().cloned().unwrap_or_default();
        for key in [
            "flip_flops",
            "n_in",
            "n_out",
            "comparator_bits",
            "threshold",
        ] {
            config.insert(key.to_string(), json!(u32::MAX));
        }
        config.insert("taps".to_string(), json!(vec![u32::MAX; p.taps]));
        let record = json!({
            "shape": p.shape, "dtype": p.dtype.name(), "nnz": n, "block_steps": usize::MAX,
            "lam": -2.2250738585072014e-308f64, "config": config, "order": "F",
            "values": "codebook8", "group": usize::MAX,
        });
        sparse.insert(p.name.clone(), record);
    }
    // The check's digits are not at their widest in the bound: room for them.
    Ok(header_json(FORMAT_VERSION, &records, &sparse, metadata).len() + 16)
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
