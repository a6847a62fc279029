//! The safetensors container, parsed under the rules the `safetensors`
//! crate applies (8-byte little-endian header length of at most 100 MB, a
//! UTF-8 JSON header, tensors contiguous from offset 0 in offset order, byte
//! counts matching dtype and shape, nothing after the last tensor), but into
//! compact typed entries that borrow from the file: the crate's own parser
//! buffers the whole header as a generic tree first (its tensor map is
//! `#[serde(flatten)]`), which costs 15-30 times a hostile header's size.
//! Here every field is bounded as it is read (at most [`MAX_DIMS`] dimensions,
//! no unknown keys), so nothing grows beyond the header's own size.

use super::{numel, DType, MAX_DIMS};
use crate::{Error, Result};
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

/// The largest header the safetensors crate accepts.
pub const MAX_HEADER: usize = 100_000_000;
/// The key of the string metadata.
const METADATA: &str = "__metadata__";

/// One stored tensor: dtype, shape and where its bytes are.
pub struct Entry<'a> {
    pub name: Cow<'a, str>,
    pub dtype: DType,
    pub shape: Shape,
    pub start: usize,
    pub end: usize,
}

/// A parsed container: entries sorted by name, the string metadata as raw
/// JSON string tokens (decoded only on request) and the data section.
pub struct Container<'a> {
    pub entries: Vec<Entry<'a>>,
    pub metadata: Vec<(Cow<'a, str>, &'a RawValue)>,
    pub data: &'a [u8],
}

impl<'a> Container<'a> {
    /// The entry named `name`.
    pub fn get(&self, name: &str) -> Option<&Entry<'a>> {
        let i = self
            .entries
            .binary_search_by(|e| e.name.as_ref().cmp(name))
            .ok()?;
        Some(&self.entries[i])
    }

    /// The position of the entry named `name` in [`entries`](Self::entries).
    pub fn position(&self, name: &str) -> Option<usize> {
        self.entries
            .binary_search_by(|e| e.name.as_ref().cmp(name))
            .ok()
    }

    pub fn bytes(&self, e: &Entry<'_>) -> &'a [u8] {
        &self.data[e.start..e.end]
    }

    /// The raw (still escaped) JSON string token of metadata key `key`.
    pub fn raw_metadata(&self, key: &str) -> Option<&'a RawValue> {
        self.metadata
            .iter()
            .find(|(k, _)| k.as_ref() == key)
            .map(|&(_, v)| v)
    }

    /// The caller's string metadata, decoded (vitrust's own key left out:
    /// it can be as large as the header, and [`raw_metadata`](Self::raw_metadata) reads it).
    pub fn metadata(&self) -> Result<Vec<(String, String)>> {
        self.metadata
            .iter()
            .filter(|(k, _)| k != super::META_KEY)
            .map(|(k, v)| {
                let s: String = serde_json::from_str(v.get()).map_err(container_error)?;
                Ok((k.to_string(), s))
            })
            .collect()
    }
}

fn container_error(e: impl fmt::Display) -> Error {
    Error::format(format!("not a valid safetensors file: {e}"))
}

/// The header's length and text, checked against the buffer's size.
pub fn header_text(buf: &[u8]) -> Result<(usize, &str)> {
    let n = buf
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
        .ok_or_else(|| container_error("shorter than its 8-byte header length"))?;
    if n > MAX_HEADER as u64 {
        return Err(container_error(format_args!(
            "header of {n} bytes (at most {MAX_HEADER})"
        )));
    }
    let text = buf
        .get(8..8 + n as usize)
        .ok_or_else(|| container_error(format_args!("header of {n} bytes runs past the end")))?;
    let text = std::str::from_utf8(text).map_err(container_error)?;
    Ok((n as usize, text))
}

/// Parses and checks the container of a whole file image.
pub fn parse(buf: &[u8]) -> Result<Container<'_>> {
    let (n, text) = header_text(buf)?;
    let mut parsed: Parsed<'_> = serde_json::from_str(text).map_err(container_error)?;
    let data = &buf[8 + n..];
    // Contiguous from 0 in offset order, each the size its dtype and shape need.
    parsed.entries.sort_by_key(|e| (e.start, e.end));
    let mut at = 0;
    for e in &parsed.entries {
        if e.start != at || e.end < e.start {
            return Err(container_error(format_args!(
                "tensor {:?}: data offsets [{}, {}] do not follow the previous tensor's end {at}",
                e.name, e.start, e.end
            )));
        }
        let want = numel(e.shape.dims())
            .ok()
            .and_then(|n| n.checked_mul(e.dtype.size()));
        if want != Some(e.end - e.start) {
            return Err(container_error(format_args!(
                "tensor {:?}: {} bytes do not match shape {:?} of {}",
                e.name,
                e.end - e.start,
                e.shape.dims(),
                e.dtype.name()
            )));
        }
        at = e.end;
    }
    if at != data.len() {
        return Err(container_error(format_args!(
            "the tensors take {at} bytes but the file holds {}",
            data.len()
        )));
    }
    parsed.entries.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(w) = parsed.entries.windows(2).find(|w| w[0].name == w[1].name) {
        return Err(container_error(format_args!(
            "tensor {:?} appears twice",
            w[0].name
        )));
    }
    Ok(Container {
        entries: parsed.entries,
        metadata: parsed.metadata,
        data,
    })
}

/// Reads just the string metadata of a header (the tensors are skipped).
pub fn parse_metadata(text: &str) -> Result<Vec<(Cow<'_, str>, &RawValue)>> {
    let m: MetadataOnly<'_> = serde_json::from_str(text).map_err(container_error)?;
    Ok(m.0)
}

/// A dimension list of at most [`MAX_DIMS`] entries: up to four inline
/// (nearly every tensor), else on the heap, so an entry stays small.
#[derive(Clone)]
pub enum Shape {
    Inline(u8, [usize; 4]),
    Heap(Box<[usize]>),
}

impl Shape {
    pub fn dims(&self) -> &[usize] {
        match self {
            Shape::Inline(n, d) => &d[..usize::from(*n)],
            Shape::Heap(d) => d,
        }
    }
}

impl<'de> Deserialize<'de> for Shape {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Shape;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "a list of at most {MAX_DIMS} dimensions")
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<Shape, A::Error> {
                let (mut dims, mut n) = ([0usize; MAX_DIMS], 0);
                while let Some(d) = seq.next_element::<usize>()? {
                    if n == MAX_DIMS {
                        return Err(de::Error::custom(format_args!(
                            "more than {MAX_DIMS} dimensions"
                        )));
                    }
                    dims[n] = d;
                    n += 1;
                }
                Ok(if n <= 4 {
                    Shape::Inline(n as u8, std::array::from_fn(|i| dims[i]))
                } else {
                    Shape::Heap(dims[..n].into())
                })
            }
        }
        d.deserialize_seq(V)
    }
}

/// A string borrowed from the input when it has no escapes.
pub struct Name<'a>(pub Cow<'a, str>);

impl<'de> Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Name<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> std::result::Result<Name<'de>, E> {
                Ok(Name(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> std::result::Result<Name<'de>, E> {
                Ok(Name(Cow::Owned(s.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// A dtype by its safetensors name.
pub struct Dt(pub DType);

impl<'de> Deserialize<'de> for Dt {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let Name(s) = Name::deserialize(d)?;
        DType::from_name(&s)
            .map(Dt)
            .ok_or_else(|| de::Error::custom(format_args!("unsupported dtype {s:?}")))
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Info {
    dtype: Dt,
    shape: Shape,
    data_offsets: (usize, usize),
}

struct Parsed<'a> {
    entries: Vec<Entry<'a>>,
    metadata: Vec<(Cow<'a, str>, &'a RawValue)>,
}

impl<'de> Deserialize<'de> for Parsed<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Parsed<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a safetensors header object")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Parsed<'de>, A::Error> {
                let (mut entries, mut metadata) = (Vec::new(), None);
                while let Some(Name(name)) = map.next_key::<Name<'de>>()? {
                    if name == METADATA {
                        if metadata.is_some() {
                            return Err(de::Error::custom("__metadata__ appears twice"));
                        }
                        metadata = Some(map.next_value::<StringMap<'de>>()?.0);
                        continue;
                    }
                    let info: Info = map
                        .next_value()
                        .map_err(|e| de::Error::custom(format_args!("tensor {name:?}: {e}")))?;
                    entries.push(Entry {
                        name,
                        dtype: info.dtype.0,
                        shape: info.shape,
                        start: info.data_offsets.0,
                        end: info.data_offsets.1,
                    });
                }
                Ok(Parsed {
                    entries,
                    metadata: metadata.unwrap_or_default(),
                })
            }
        }
        d.deserialize_map(V)
    }
}

/// `{"key": "string", ...}`, values kept as raw string tokens.
struct StringMap<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for StringMap<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StringMap<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of strings to strings")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<StringMap<'de>, A::Error> {
                let mut out: Vec<(Cow<'de, str>, &'de RawValue)> = Vec::new();
                while let Some(Name(k)) = map.next_key::<Name<'de>>()? {
                    let v: &'de RawValue = map.next_value()?;
                    if !v.get().starts_with('"') {
                        return Err(de::Error::custom(format_args!(
                            "metadata {k:?}: expected a string"
                        )));
                    }
                    if out.iter().any(|(x, _)| *x == k) {
                        return Err(de::Error::custom(format_args!(
                            "metadata key {k:?} appears twice"
                        )));
                    }
                    out.push((k, v));
                }
                Ok(StringMap(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// The header with only `__metadata__` read; tensors are skipped unparsed.
struct MetadataOnly<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for MetadataOnly<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MetadataOnly<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a safetensors header object")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<MetadataOnly<'de>, A::Error> {
                let mut out = Vec::new();
                while let Some(Name(k)) = map.next_key::<Name<'de>>()? {
                    if k == METADATA {
                        out = map.next_value::<StringMap<'de>>()?.0;
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(MetadataOnly(out))
            }
        }
        d.deserialize_map(V)
    }
}
