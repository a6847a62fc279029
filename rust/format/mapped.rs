//! A safetensors file opened by memory mapping: its header is validated at
//! open (the container by the `safetensors` crate; a vitrust file in full, by
//! [`load`](super::load)), and tensors are handed out as zero-copy views of the
//! mapping, so a tensor costs memory only while it is being used. Every error
//! names the file.

use super::header;
use super::{
    is_reserved, load, table_suffix, DType, Item, Order, Sparse, Values, CODES_SUFFIX,
    INDEX_SUFFIX, META_KEY, THRESHOLDS_SUFFIX, VALUES_SUFFIX,
};
use crate::{bail_format, Encoded, Encoding, Error, Result, VdConfig};
use memmap2::Mmap;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Where a stored tensor lies in the file.
#[derive(Clone, Debug, PartialEq)]
pub struct Span {
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// Byte range in the file.
    pub range: Range<usize>,
}

/// A pruned tensor's parameters and where its siblings lie.
#[derive(Clone, Debug, PartialEq)]
pub struct SparseSpan {
    pub shape: Vec<usize>,
    pub dtype: DType,
    pub config: VdConfig,
    pub block_steps: usize,
    pub lam: f64,
    pub index: Span,
    pub values: ValueSpans,
    /// The per-block thresholds (version 2), if the tensor has them.
    pub thresholds: Option<Span>,
    pub order: Order,
}

/// Where a pruned tensor's values lie: stored as they are, or as codes and
/// a side table (version 3).
#[derive(Clone, Debug, PartialEq)]
pub enum ValueSpans {
    Raw(Span),
    Encoded {
        encoding: Encoding,
        len: usize,
        codes: Span,
        table: Span,
    },
}

impl SparseSpan {
    /// The byte ranges of the stored siblings.
    pub fn spans(&self) -> impl Iterator<Item = &Span> {
        let (a, b) = match &self.values {
            ValueSpans::Raw(v) => (v, None),
            ValueSpans::Encoded { codes, table, .. } => (codes, Some(table)),
        };
        [&self.index, a]
            .into_iter()
            .chain(b)
            .chain(&self.thresholds)
    }
}

/// One logical tensor of the file: plain, or pruned (stored as two or three siblings).
#[derive(Clone, Debug, PartialEq)]
// One per tensor of a file, so the pruned variant's size costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Entry {
    Plain(Span),
    Sparse(SparseSpan),
}

impl Entry {
    /// Bytes the tensor occupies in the file.
    pub fn stored_bytes(&self) -> usize {
        match self {
            Entry::Plain(s) => s.range.len(),
            Entry::Sparse(s) => s.spans().map(|s| s.range.len()).sum(),
        }
    }
}

pub struct MappedFile {
    path: PathBuf,
    map: Mmap,
    entries: BTreeMap<String, Entry>,
    metadata: HashMap<String, String>,
}

impl MappedFile {
    /// Maps `path` and validates its header (and, for a vitrust file, all of it).
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_inner(path).map_err(|e| e.context(path.display()))
    }

    fn open_inner(path: &Path) -> Result<Self> {
        let io = |e: std::io::Error| Error::io(e.to_string());
        let meta = std::fs::metadata(path).map_err(io)?;
        if !meta.is_file() {
            bail_format!("not a regular file");
        }
        let file = std::fs::File::open(path).map_err(io)?;
        if meta.len() < 8 {
            bail_format!(
                "not a valid safetensors file: {} bytes is too short",
                meta.len()
            );
        }
        let map = crate::sys::os::map(&file).map_err(io)?;
        // vitrust's own container parser: bounded, unlike the crate's (see `header`).
        let c = header::parse(&map)?;
        let start = map.len() - c.data.len();
        let mut stored = BTreeMap::new();
        for e in &c.entries {
            let span = Span {
                dtype: e.dtype,
                shape: e.shape.dims().to_vec(),
                range: start + e.start..start + e.end,
            };
            stored.insert(e.name.to_string(), span);
        }
        let metadata: HashMap<String, String> = c.metadata()?.into_iter().collect();
        let is_vitrust = c.raw_metadata(META_KEY).is_some();
        drop(c);
        let entries = if is_vitrust {
            let entries = vitrust_entries(&map, &mut stored)?;
            release_all(&map);
            entries
        } else {
            if let Some(name) = stored.keys().find(|n| is_reserved(n)) {
                bail_format!("tensor {name:?} is part of a pruned tensor, but the vitrust metadata is missing");
            }
            stored
                .into_iter()
                .map(|(k, s)| (k, Entry::Plain(s)))
                .collect()
        };
        Ok(Self {
            path: path.to_path_buf(),
            map,
            entries,
            metadata,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Logical tensors by name (a pruned tensor once, not its siblings).
    pub fn entries(&self) -> &BTreeMap<String, Entry> {
        &self.entries
    }

    pub fn entry(&self, name: &str) -> Result<&Entry> {
        self.entries
            .get(name)
            .ok_or_else(|| Error::invalid(format!("{}: no tensor {name:?}", self.path.display())))
    }

    /// The file's own string metadata (without vitrust's key).
    pub fn metadata(&self) -> &HashMap<String, String> {
        &self.metadata
    }

    /// The bytes of a span: a view of the mapping.
    pub fn bytes(&self, span: &Span) -> &[u8] {
        &self.map[span.range.clone()]
    }

    /// A pruned tensor, its values borrowed from the mapping.
    pub fn sparse(&self, s: &SparseSpan) -> Result<Sparse<'_>> {
        let bytes = self.bytes(&s.index);
        let mut index = crate::sys::with_capacity(bytes.len() / 8, "the index words")?;
        index.extend(
            bytes
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))),
        );
        Ok(Sparse {
            shape: s.shape.clone(),
            config: s.config.clone(),
            block_steps: s.block_steps,
            lam: s.lam,
            index: Cow::Owned(index),
            dtype: s.dtype,
            values: match &s.values {
                ValueSpans::Raw(v) => Values::Raw(Cow::Borrowed(self.bytes(v))),
                ValueSpans::Encoded {
                    encoding,
                    len,
                    codes,
                    table,
                } => Values::Encoded(Encoded {
                    encoding: *encoding,
                    len: *len,
                    codes: Cow::Borrowed(self.bytes(codes)),
                    table: table.dtype.bytes_f32(self.bytes(table))?,
                }),
            },
            thresholds: s.thresholds.as_ref().map(|t| Cow::Borrowed(self.bytes(t))),
            order: s.order,
        })
    }

    /// Asks the OS to start reading a range in the background.
    pub fn prefetch(&self, range: &Range<usize>) {
        #[cfg(unix)]
        let _ = self
            .map
            .advise_range(memmap2::Advice::WillNeed, range.start, range.len());
        #[cfg(not(unix))]
        let _ = range;
    }

    /// Drops a range's pages from this process's memory (they stay in the
    /// page cache and come back from the file if read again): what keeps
    /// memory bounded while a large file is streamed through.
    pub fn release(&self, range: &Range<usize>) {
        release(&self.map, range);
    }
}

fn release(map: &Mmap, range: &Range<usize>) {
    crate::sys::os::drop_pages(map, range);
}

fn release_all(map: &Mmap) {
    release(map, &(0..map.len()));
}

/// Validates a whole vitrust file and groups its stored tensors into logical ones.
fn vitrust_entries(
    map: &[u8],
    stored: &mut BTreeMap<String, Span>,
) -> Result<BTreeMap<String, Entry>> {
    let items = load(map)?;
    let mut take = |name: &str| {
        stored
            .remove(name)
            .ok_or_else(|| Error::format(format!("tensor {name:?} is missing")))
    };
    let mut out = BTreeMap::new();
    for (name, item) in items {
        let entry = match item {
            Item::Plain(_) => Entry::Plain(take(&name)?),
            Item::Sparse(s) => Entry::Sparse(SparseSpan {
                index: take(&format!("{name}{INDEX_SUFFIX}"))?,
                values: match &s.values {
                    Values::Raw(_) => ValueSpans::Raw(take(&format!("{name}{VALUES_SUFFIX}"))?),
                    Values::Encoded(e) => ValueSpans::Encoded {
                        encoding: e.encoding,
                        len: e.len,
                        codes: take(&format!("{name}{CODES_SUFFIX}"))?,
                        table: take(&format!("{name}{}", table_suffix(e.encoding)))?,
                    },
                },
                thresholds: match s.thresholds {
                    Some(_) => Some(take(&format!("{name}{THRESHOLDS_SUFFIX}"))?),
                    None => None,
                },
                order: s.order,
                shape: s.shape,
                dtype: s.dtype,
                config: s.config,
                block_steps: s.block_steps,
                lam: s.lam,
            }),
        };
        out.insert(name, entry);
    }
    Ok(out)
}
