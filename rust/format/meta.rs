//! vitrust's metadata (the JSON object under the key `"vitrust"`, see the
//! module above): its schema, a streaming typed parse and the canonical
//! serialisation its check is computed over.
//!
//! The parse reads the JSON straight out of the header's escaped string
//! token (no decoded copy, no generic tree): unknown fields are refused as
//! soon as their key is read, lists are bounded as they are read, and each
//! `tensors` entry is handed to a callback instead of being stored. So a
//! hostile metadata costs at most about its own size in memory.

use super::header::{Dt, Shape};
use super::version::{Version, VersionOnly};
use super::{numel, DType, Order, FORMAT_VERSION, FORMAT_VERSION_1, FORMAT_VERSION_3, MAX_DIMS};
use crate::{Encoding, Error, Result, VdConfig};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::Number;
use std::cell::Cell;
use std::fmt;
use std::io::Read;

pub use super::unescape::Unescape;

/// Most tap masks any valid config has (`n_out * comparator_bits <= 64 * 8`).
pub const MAX_TAPS: usize = 512;

/// A pruned tensor's record, parsed and range-checked.
pub struct SparseMeta {
    pub shape: Vec<usize>,
    pub dtype: DType,
    pub nnz: usize,
    pub block_steps: usize,
    /// As written (an integer stays an integer), for the canonical form.
    pub lam: Number,
    pub config: VdConfig,
    /// As written (`None` when absent, which means `C`), for the canonical form.
    pub order: Option<Order>,
    /// As written (`None` when absent, which means raw values), with its
    /// group for an integer encoding (version 3).
    pub values: Option<Encoding>,
}

impl SparseMeta {
    pub fn order(&self) -> Order {
        self.order.unwrap_or_default()
    }

    pub fn encoding(&self) -> Encoding {
        self.values.unwrap_or(Encoding::Raw)
    }
}

/// The parsed metadata: the pruned tensors' records sorted by name, the
/// stored check and the file's version.
pub struct Parsed {
    pub sparse: Vec<(String, SparseMeta)>,
    pub check: u32,
    pub version: u64,
}

/// A stored tensor's record.
pub struct TensorMeta {
    pub crc32: u32,
    pub dtype: DType,
    pub shape: Shape,
}

fn format_error(e: serde_json::Error) -> Error {
    if e.is_syntax() || e.is_eof() {
        Error::format(format!("vitrust metadata is not valid JSON: {e}"))
    } else {
        Error::format(format!("vitrust metadata: {e}"))
    }
}

/// Parses the metadata JSON read from `r`. The version is checked first (a
/// newer file is reported as such, not as unknown fields); each `tensors`
/// entry goes to `on_tensor`. A version 1 file may not use what only
/// version 2 holds (an `"order"` field here; the caller checks the
/// thresholds siblings).
pub fn parse<R: Read>(
    mut r: impl FnMut() -> R,
    on_tensor: &mut dyn FnMut(String, TensorMeta) -> Result<()>,
) -> Result<Parsed> {
    let mut de = serde_json::Deserializer::from_reader(r());
    let version = VersionOnly::deserialize(&mut de).map_err(format_error)?.0;
    de.end().map_err(format_error)?;
    let version = match version {
        Some(Version::Num(v)) if (FORMAT_VERSION_1..=FORMAT_VERSION).contains(&v) => v,
        Some(v) => {
            return Err(Error::format(format!(
                "unsupported vitrust format version {v} (this build reads versions {FORMAT_VERSION_1} to {FORMAT_VERSION})"
            )))
        }
        None => return Err(Error::format("vitrust metadata: missing field \"version\"")),
    };
    let failed = Cell::new(None);
    let seed = BodySeed {
        on_tensor,
        failed: &failed,
    };
    let mut de = serde_json::Deserializer::from_reader(r());
    let parsed = seed.deserialize(&mut de).and_then(|b| de.end().map(|()| b));
    // A callback's own error keeps its message (serde would add a position).
    if let Some(e) = failed.take() {
        return Err(e);
    }
    let (mut sparse, check) = parsed.map_err(format_error)?;
    sparse.sort_by(|a, b| a.0.cmp(&b.0));
    if let Some(w) = sparse.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(Error::format(format!(
            "pruned tensor {:?} appears twice in the vitrust metadata",
            w[0].0
        )));
    }
    if version == FORMAT_VERSION_1 {
        if let Some((name, _)) = sparse.iter().find(|(_, m)| m.order.is_some()) {
            return Err(Error::format(format!(
                "pruned tensor {name:?}: a version 1 file has no \"order\" field (the file is damaged)"
            )));
        }
    }
    if version < FORMAT_VERSION_3 {
        if let Some((name, _)) = sparse.iter().find(|(_, m)| m.values.is_some()) {
            return Err(Error::format(format!(
                "pruned tensor {name:?}: a version {version} file has no \"values\" field (the file is damaged)"
            )));
        }
    }
    Ok(Parsed {
        sparse,
        check,
        version,
    })
}

struct BodySeed<'f, 'c> {
    on_tensor: &'f mut dyn FnMut(String, TensorMeta) -> Result<()>,
    failed: &'c Cell<Option<Error>>,
}

type Body = (Vec<(String, SparseMeta)>, u32);

impl<'de> DeserializeSeed<'de> for BodySeed<'_, '_> {
    type Value = Body;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Body, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for BodySeed<'_, '_> {
    type Value = Body;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Body, A::Error> {
        let (mut sparse, mut check, mut tensors, mut version) = (None, None, false, false);
        while let Some(k) = map.next_key::<String>()? {
            match k.as_str() {
                "version" if !version => {
                    map.next_value::<IgnoredAny>()?;
                    version = true;
                }
                "check" if check.is_none() => {
                    let c: u64 = map
                        .next_value()
                        .map_err(|e| de::Error::custom(format_args!("check: {e}")))?;
                    check = Some(u32::try_from(c).map_err(|_| {
                        de::Error::custom(format_args!("check = {c} is out of range"))
                    })?);
                }
                "sparse" if sparse.is_none() => sparse = Some(map.next_value::<SparseMap>()?.0),
                "tensors" if !tensors => {
                    map.next_value_seed(TensorsSeed {
                        on_tensor: &mut *self.on_tensor,
                        failed: self.failed,
                    })?;
                    tensors = true;
                }
                "sparse" | "tensors" | "version" | "check" => {
                    return Err(de::Error::custom(format_args!("field {k:?} appears twice")))
                }
                _ => return Err(de::Error::custom(format_args!("unknown field {k:?}"))),
            }
        }
        let missing = |f: &str| de::Error::custom(format_args!("missing field {f:?}"));
        if !tensors {
            return Err(missing("tensors"));
        }
        Ok((
            sparse.ok_or_else(|| missing("sparse"))?,
            check.ok_or_else(|| missing("check"))?,
        ))
    }
}

struct TensorsSeed<'f, 'c> {
    on_tensor: &'f mut dyn FnMut(String, TensorMeta) -> Result<()>,
    failed: &'c Cell<Option<Error>>,
}

impl<'de> DeserializeSeed<'de> for TensorsSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TensorsSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map of tensor names to records")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
        while let Some(name) = map.next_key::<String>()? {
            let t: RawTensor = map
                .next_value()
                .map_err(|e| de::Error::custom(format_args!("tensor {name:?}: {e}")))?;
            let meta = TensorMeta {
                crc32: t.crc32,
                dtype: t.dtype.0,
                shape: t.shape,
            };
            if let Err(e) = (self.on_tensor)(name, meta) {
                let msg = e.msg.clone();
                self.failed.set(Some(e));
                return Err(de::Error::custom(msg));
            }
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTensor {
    crc32: u32,
    dtype: Dt,
    shape: Shape,
}

struct SparseMap(Vec<(String, SparseMeta)>);

impl<'de> Deserialize<'de> for SparseMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SparseMap;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of tensor names to records")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<SparseMap, A::Error> {
                let mut out = Vec::new();
                while let Some(name) = map.next_key::<String>()? {
                    let r = map
                        .next_value::<RawSparse>()
                        .and_then(|r| r.into_meta().map_err(de::Error::custom))
                        .map_err(|e| {
                            de::Error::custom(format_args!("pruned tensor {name:?}: {e}"))
                        })?;
                    out.push((name, r));
                }
                Ok(SparseMap(out))
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSparse {
    shape: Shape,
    dtype: Dt,
    #[serde(deserialize_with = "named_u64::nnz")]
    nnz: u64,
    #[serde(deserialize_with = "named_u64::block_steps")]
    block_steps: u64,
    #[serde(deserialize_with = "lam")]
    lam: Number,
    config: RawConfig,
    #[serde(default, deserialize_with = "order")]
    order: Option<Order>,
    #[serde(default, deserialize_with = "values")]
    values: Option<String>,
    #[serde(default, deserialize_with = "named_u64::group_opt")]
    group: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    flip_flops: u64,
    n_in: u64,
    n_out: u64,
    comparator_bits: u64,
    threshold: u64,
    taps: Taps,
}

fn order<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<Order>, D::Error> {
    let s: std::borrow::Cow<'de, str> =
        Deserialize::deserialize(d).map_err(|e| de::Error::custom(format_args!("order: {e}")))?;
    Order::from_name(&s).map(Some).ok_or_else(|| {
        let short: String = s.chars().take(20).collect();
        de::Error::custom(format_args!("order = {short:?}: must be \"C\" or \"F\""))
    })
}

/// An encoding's name, refused as read when no encoding is that long.
fn values<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<String>, D::Error> {
    let s: std::borrow::Cow<'de, str> =
        Deserialize::deserialize(d).map_err(|e| de::Error::custom(format_args!("values: {e}")))?;
    if s.len() > 16 {
        let short: String = s.chars().take(20).collect();
        return Err(de::Error::custom(format_args!(
            "values = {short:?}: expected raw, int8, int4 or codebook1 .. codebook8"
        )));
    }
    Ok(Some(s.into_owned()))
}

fn lam<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Number, D::Error> {
    Number::deserialize(d).map_err(|e| de::Error::custom(format_args!("lam: {e}")))
}

mod named_u64 {
    use serde::de::{self, Deserialize, Deserializer};
    fn get<'de, D: Deserializer<'de>>(d: D, what: &str) -> Result<u64, D::Error> {
        u64::deserialize(d).map_err(|e| de::Error::custom(format_args!("{what}: {e}")))
    }
    pub fn nnz<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        get(d, "nnz")
    }
    pub fn block_steps<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        get(d, "block_steps")
    }
    pub fn group_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        get(d, "group").map(Some)
    }
}

/// Tap masks, refused past [`MAX_TAPS`] as they are read.
struct Taps(Vec<u32>);

impl<'de> Deserialize<'de> for Taps {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Taps;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of tap masks")
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<Taps, A::Error> {
                let mut taps = Vec::new();
                while let Some(t) = seq.next_element::<u64>()? {
                    if taps.len() == MAX_TAPS {
                        return Err(de::Error::custom(format_args!(
                            "taps: more than {MAX_TAPS} tap masks is more than any valid config has"
                        )));
                    }
                    let t = u32::try_from(t).map_err(|_| {
                        de::Error::custom(format_args!("taps: {t} is out of range"))
                    })?;
                    taps.push(t);
                }
                Ok(Taps(taps))
            }
        }
        d.deserialize_seq(V)
    }
}

fn small(v: u64, what: &str) -> std::result::Result<u32, String> {
    u32::try_from(v).map_err(|_| format!("config.{what}: {v} is out of range"))
}

fn size(v: u64, what: &str) -> std::result::Result<usize, String> {
    usize::try_from(v).map_err(|_| format!("{what}: {v} is out of range"))
}

impl RawSparse {
    fn into_meta(self) -> std::result::Result<SparseMeta, String> {
        let c = self.config;
        let config = VdConfig::new(
            small(c.flip_flops, "flip_flops")?,
            small(c.n_in, "n_in")?,
            small(c.n_out, "n_out")?,
            small(c.comparator_bits, "comparator_bits")?,
            small(c.threshold, "threshold")?,
            c.taps.0,
        )
        .map_err(|e| format!("config: {}", e.msg))?;
        let shape = self.shape.dims().to_vec();
        numel(&shape).map_err(|e| e.msg)?;
        debug_assert!(shape.len() <= MAX_DIMS);
        let values = match self.values {
            None if self.group.is_some() => return Err("group: given without \"values\"".into()),
            None => None,
            Some(name) => {
                let parsed = Encoding::parse(&name, 1).map_err(|e| e.msg)?;
                match (parsed, self.group) {
                    (Encoding::Int { .. }, Some(g)) => {
                        Some(Encoding::parse(&name, size(g, "group")?).map_err(|e| e.msg)?)
                    }
                    (Encoding::Int { .. }, None) => {
                        return Err(format!("values = {name:?}: the \"group\" field is missing"))
                    }
                    (_, Some(_)) => {
                        return Err(format!("values = {name:?}: has no \"group\" field"))
                    }
                    (e, None) => Some(e),
                }
            }
        };
        Ok(SparseMeta {
            shape,
            dtype: self.dtype.0,
            nnz: size(self.nnz, "nnz")?,
            block_steps: size(self.block_steps, "block_steps")?,
            lam: self.lam,
            config,
            order: self.order,
            values,
        })
    }
}

// -- the canonical form -------------------------------------------------------

/// A pruned tensor's record as written.
#[derive(Serialize)]
pub struct SparseRecord<'a> {
    pub block_steps: usize,
    pub config: ConfigRecord<'a>,
    pub dtype: &'static str,
    /// An integer encoding's group (version 3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<usize>,
    pub lam: &'a Number,
    pub nnz: usize,
    /// Written only when given (`"F"` when writing; as read when checking).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order: Option<&'static str>,
    pub shape: &'a [usize],
    /// The encoding (version 3): written only for encoded values; as read
    /// when checking.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub values: Option<String>,
}

/// The `"order"` field a writer gives a tensor: only for `F`.
pub fn order_field(order: Order) -> Option<&'static str> {
    (order != Order::C).then(|| order.name())
}

/// The `"values"` field a writer gives a tensor: only for encoded values.
pub fn values_field(e: Encoding) -> Option<String> {
    (e != Encoding::Raw).then(|| e.name())
}

/// The `"group"` field of an integer encoding.
pub fn group_field(e: Encoding) -> Option<usize> {
    match e {
        Encoding::Int { group, .. } => Some(group),
        _ => None,
    }
}

/// Fields in sorted order: serialised as they are, they are canonical.
#[derive(Serialize)]
pub struct ConfigRecord<'a> {
    pub comparator_bits: u32,
    pub flip_flops: u32,
    pub n_in: u32,
    pub n_out: u32,
    pub taps: &'a [u32],
    pub threshold: u32,
}

impl<'a> ConfigRecord<'a> {
    pub fn of(c: &'a VdConfig) -> Self {
        Self {
            comparator_bits: c.comparator_bits(),
            flip_flops: c.flip_flops(),
            n_in: c.n_in(),
            n_out: c.n_out(),
            taps: c.taps(),
            threshold: c.threshold(),
        }
    }
}

/// A stored tensor's record as written.
#[derive(Serialize)]
pub struct TensorRecord<'a> {
    pub crc32: u32,
    pub dtype: &'static str,
    pub shape: &'a [usize],
}

/// A map serialised from an iterator of `(name, record)` sorted by name.
struct Entries<I>(Cell<Option<I>>);

impl<K: Serialize, V: Serialize, I: Iterator<Item = (K, V)>> Serialize for Entries<I> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_map(self.0.take().expect("serialised once"))
    }
}

/// Writes the metadata JSON: `check` (if given) first, then `sparse`,
/// `tensors` and `version`, every key sorted and nothing else, which is the
/// canonical form the check is the CRC-32 of (without `check`). Both
/// iterators must yield names in sorted order.
pub fn write_body<'a, 'b>(
    w: impl std::io::Write,
    version: u64,
    check: Option<u32>,
    sparse: impl Iterator<Item = (&'a str, SparseRecord<'a>)>,
    tensors: impl Iterator<Item = (&'b str, TensorRecord<'b>)>,
) -> serde_json::Result<()> {
    let mut ser = serde_json::Serializer::new(w);
    let mut m = ser.serialize_map(None)?;
    if let Some(c) = check {
        m.serialize_entry("check", &c)?;
    }
    m.serialize_entry("sparse", &Entries(Cell::new(Some(sparse))))?;
    m.serialize_entry("tensors", &Entries(Cell::new(Some(tensors))))?;
    m.serialize_entry("version", &version)?;
    SerializeMap::end(m)
}

/// CRC-32 of the canonical form, computed as it is written (no copy).
pub fn body_check<'a, 'b>(
    version: u64,
    sparse: impl Iterator<Item = (&'a str, SparseRecord<'a>)>,
    tensors: impl Iterator<Item = (&'b str, TensorRecord<'b>)>,
) -> u32 {
    struct Crc(crc32fast::Hasher);
    impl std::io::Write for Crc {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.update(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut crc = Crc(crc32fast::Hasher::new());
    write_body(&mut crc, version, None, sparse, tensors).expect("writing to a hasher cannot fail");
    crc.0.finalize()
}

/// The metadata JSON with its check.
pub fn body_json<'a, 'b, S, T>(
    version: u64,
    sparse: impl Fn() -> S,
    tensors: impl Fn() -> T,
) -> String
where
    S: Iterator<Item = (&'a str, SparseRecord<'a>)>,
    T: Iterator<Item = (&'b str, TensorRecord<'b>)>,
{
    let check = body_check(version, sparse(), tensors());
    let mut out = Vec::new();
    write_body(&mut out, version, Some(check), sparse(), tensors())
        .expect("writing to memory cannot fail");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}
