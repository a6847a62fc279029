//! Encodings of the kept values (docs/format.md, "Value encodings"): per-group
//! scaled integers and a shared codebook, as fixed-width codes in stream
//! order, so any range of values (a block's) decodes without the others.
//!
//! The codes are packed least-significant bit first: value `j` of a `b`-bit
//! encoding occupies bits `j * b .. j * b + b` of the byte stream, so a block
//! whose values start at `s` starts at bit `s * b`, known from the block
//! starts the index already gives. Encoders take the values as float32 and
//! a rounding of the side table to the stored dtype (`round`), and compute
//! the codes against the rounded table, so decoding the stored file gives
//! exactly what the encoder measured.

mod codebook;
mod int;

pub use codebook::kmeans;

use crate::arch::{Isa, Kernel};
use crate::{bail, Result};
use std::borrow::Cow;

/// Largest group of an integer encoding (values sharing one scale).
pub const MAX_GROUP: usize = 1 << 20;

/// How a tensor's kept values are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// The values themselves, in their dtype.
    Raw,
    /// Symmetric integers of `bits` (4 or 8) with one scale per `group`
    /// consecutive values: `value = code * scale`.
    Int { bits: u32, group: usize },
    /// `2^bits` centroids (1 ≤ bits ≤ 8) shared by the tensor:
    /// `value = centroids[code]`.
    Codebook { bits: u32 },
}

impl Encoding {
    /// Parses `raw`, `int8`, `int4` (with `group`) or `codebook1` ..
    /// `codebook8`.
    pub fn parse(name: &str, group: usize) -> Result<Self> {
        let enc = match name {
            "raw" => Self::Raw,
            "int8" => Self::Int { bits: 8, group },
            "int4" => Self::Int { bits: 4, group },
            _ => match name
                .strip_prefix("codebook")
                .and_then(|b| b.parse::<u32>().ok())
            {
                Some(bits @ 1..=8) => Self::Codebook { bits },
                _ => bail!("values = {name:?}: expected raw, int8, int4 or codebook1 .. codebook8"),
            },
        };
        if let Self::Int { group, .. } = enc {
            if !(1..=MAX_GROUP).contains(&group) {
                bail!("group = {group}: expected 1 ..= {MAX_GROUP}");
            }
        }
        Ok(enc)
    }

    /// The name [`Encoding::parse`] reads.
    pub fn name(&self) -> String {
        match self {
            Self::Raw => "raw".into(),
            Self::Int { bits, .. } => format!("int{bits}"),
            Self::Codebook { bits } => format!("codebook{bits}"),
        }
    }

    /// Bits per code (`None` for raw values).
    pub fn code_bits(&self) -> Option<u32> {
        match *self {
            Self::Raw => None,
            Self::Int { bits, .. } | Self::Codebook { bits } => Some(bits),
        }
    }

    /// Bytes of packed codes for `n` values.
    pub fn code_bytes(&self, n: usize) -> usize {
        self.code_bits().map_or(0, |b| packed_bytes(n, b))
    }

    /// Entries of the side table for `n` values: scales (one per group) or
    /// centroids.
    pub fn table_len(&self, n: usize) -> usize {
        match *self {
            Self::Raw => 0,
            Self::Int { group, .. } => n.div_ceil(group),
            Self::Codebook { bits } => 1 << bits,
        }
    }
}

/// Encoded values: the packed codes and the side table (scales or
/// centroids, as float32 holding the stored dtype's values).
#[derive(Clone, Debug, PartialEq)]
pub struct Encoded<'a> {
    pub encoding: Encoding,
    /// How many values the codes hold.
    pub len: usize,
    /// Packed codes, borrowed from a file or an array where they are stored.
    pub codes: Cow<'a, [u8]>,
    pub table: Vec<f32>,
}

/// Kept values as expansion and the products read them: a range at a time,
/// borrowed where they are stored as they are, decoded into the caller's
/// buffer where they are encoded (so no decoded copy of them all is made).
pub trait Source<V>: Sync {
    /// How many values there are.
    fn len(&self) -> usize;
    /// Whether there are none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Values `from .. from + n` (within [`len`](Self::len)).
    fn range<'s>(&'s self, from: usize, n: usize, buf: &'s mut Vec<V>) -> &'s [V];
}

impl<V: Copy + Sync> Source<V> for [V] {
    fn len(&self) -> usize {
        <[V]>::len(self)
    }
    fn range<'s>(&'s self, from: usize, n: usize, _buf: &'s mut Vec<V>) -> &'s [V] {
        &self[from..from + n]
    }
}

/// So a `&Vec` passes where a slice did.
impl<V: Copy + Sync> Source<V> for Vec<V> {
    fn len(&self) -> usize {
        <[V]>::len(self)
    }
    fn range<'s>(&'s self, from: usize, n: usize, buf: &'s mut Vec<V>) -> &'s [V] {
        self.as_slice().range(from, n, buf)
    }
}

/// A value type encoded values decode to: a float32 rounded to the type
/// (to nearest, ties to even), or widened exactly.
pub trait Decoded: Copy + Send + Sync + Default {
    fn from_f32(x: f32) -> Self;
}

impl Decoded for f32 {
    #[inline(always)]
    fn from_f32(x: f32) -> Self {
        x
    }
}
impl Decoded for f64 {
    #[inline(always)]
    fn from_f32(x: f32) -> Self {
        f64::from(x)
    }
}
impl Decoded for half::f16 {
    #[inline(always)]
    fn from_f32(x: f32) -> Self {
        half::f16::from_f32(x)
    }
}
impl Decoded for half::bf16 {
    #[inline(always)]
    fn from_f32(x: f32) -> Self {
        half::bf16::from_f32(x)
    }
}

/// Decoded in the values' own type, so that products and the dense array
/// read exactly what [`Encoded::decode`] gives.
impl<V: Decoded> Source<V> for Encoded<'_> {
    fn len(&self) -> usize {
        self.len
    }
    fn range<'s>(&'s self, from: usize, n: usize, buf: &'s mut Vec<V>) -> &'s [V] {
        buf.clear();
        buf.resize(n, V::default());
        self.decode(from, buf);
        buf
    }
}

/// Encodes `values` (weighted by `weights` for a codebook's fit: the
/// scores, so important weights are fitted best). `round` maps a float32 to
/// the nearest value of the stored dtype.
pub fn encode(
    encoding: Encoding,
    values: &[f32],
    weights: &[f32],
    round: impl Fn(f32) -> f32,
) -> Result<Encoded<'static>> {
    if values.iter().any(|v| !v.is_finite()) {
        bail!("values: NaN or infinite values cannot be encoded");
    }
    let (codes, table) = match encoding {
        Encoding::Raw => bail!("values: raw values need no encoding"),
        Encoding::Int { bits, group } => int::encode(values, bits, group, round)?,
        Encoding::Codebook { bits } => {
            if weights.len() != values.len() {
                bail!("weights: {} for {} values", weights.len(), values.len());
            }
            let centroids: Vec<f32> = kmeans(values, weights, 1 << bits)
                .into_iter()
                .map(&round)
                .collect();
            (codebook::assign(values, &centroids, bits)?, centroids)
        }
    };
    Ok(Encoded {
        encoding,
        len: values.len(),
        codes: Cow::Owned(codes),
        table,
    })
}

impl Encoded<'_> {
    /// Checks that codes and table fit `n` values (a file's claims, say).
    pub fn check(&self, n: usize) -> Result<()> {
        if self.encoding == Encoding::Raw {
            bail!("raw values are stored as themselves, not encoded");
        }
        if self.len != n {
            bail!(
                "{} values: {} encoded, expected {n}",
                self.encoding.name(),
                self.len
            );
        }
        let (want_codes, want_table) = (self.encoding.code_bytes(n), self.encoding.table_len(n));
        if self.codes.len() != want_codes || self.table.len() != want_table {
            bail!(
                "{} values of {n}: {} code bytes and {} table entries, expected {want_codes} and {want_table}",
                self.encoding.name(),
                self.codes.len(),
                self.table.len()
            );
        }
        if self.table.iter().any(|v| !v.is_finite()) {
            bail!(
                "{} values: a non-finite scale or centroid",
                self.encoding.name()
            );
        }
        Ok(())
    }

    /// Decodes values `from .. from + out.len()` into `out`: an integer
    /// code times its scale in float32, or its centroid, rounded to `V`.
    /// `Raw` (which [`check`](Self::check) refuses and [`encode`] never
    /// makes) decodes to zeros.
    pub fn decode<V: Decoded>(&self, from: usize, out: &mut [V]) {
        // Compiled for the CPU's level, so the loops vectorise with its widest lanes.
        crate::arch::dispatch(Isa::best(), Decode { e: self, from, out });
    }

    #[inline(always)]
    fn decode_here<V: Decoded>(&self, from: usize, out: &mut [V]) {
        match self.encoding {
            Encoding::Raw => out.fill(V::default()),
            Encoding::Int { bits, group } => {
                int::decode(&self.codes, &self.table, bits, group, from, out)
            }
            Encoding::Codebook { bits } => {
                // The centroids in `V` once, then one lookup per value.
                let table: Vec<V> = self.table.iter().map(|&c| V::from_f32(c)).collect();
                map_codes(&self.codes, bits, from, out, |c| table[c as usize]);
            }
        }
    }
}

/// [`Encoded::decode`]'s arguments, to compile it once per level.
struct Decode<'a, 'e, V> {
    e: &'a Encoded<'e>,
    from: usize,
    out: &'a mut [V],
}

impl<V: Decoded> Kernel for Decode<'_, '_, V> {
    type Output = ();

    #[inline(always)]
    fn run(self, _isa: Isa) {
        self.e.decode_here(self.from, self.out)
    }
}

/// Code `j` of a `bits`-bit packing (bits ≤ 8, so it spans at most two bytes).
#[inline(always)]
fn code(codes: &[u8], bits: u32, j: usize) -> u32 {
    let at = j * bits as usize;
    let (byte, shift) = (at / 8, at % 8);
    let lo = u32::from(codes[byte]);
    // A code within its byte needs no second one (every code of 1, 2, 4 or 8 bits).
    let hi = if shift + bits as usize > 8 {
        u32::from(codes[byte + 1])
    } else {
        0
    };
    (((hi << 8) | lo) >> shift) & ((1 << bits) - 1)
}

/// Fills `out` with `g(code)` for codes `from .. from + out.len()`: whole
/// bytes at a time for widths that divide 8 (the common 4 and 8 bits, in
/// loops the compiler unrolls), code by code otherwise.
#[inline(always)]
fn map_codes<V>(codes: &[u8], bits: u32, from: usize, out: &mut [V], g: impl Fn(u32) -> V) {
    match bits {
        1 => map_codes_of::<1, V>(codes, from, out, g),
        2 => map_codes_of::<2, V>(codes, from, out, g),
        4 => map_codes_of::<4, V>(codes, from, out, g),
        8 => map_codes_of::<8, V>(codes, from, out, g),
        _ => {
            for (j, o) in out.iter_mut().enumerate() {
                *o = g(code(codes, bits, from + j));
            }
        }
    }
}

#[inline(always)]
fn map_codes_of<const B: u32, V>(codes: &[u8], from: usize, out: &mut [V], g: impl Fn(u32) -> V) {
    let per = (8 / B) as usize;
    let mask = (1u32 << B) - 1;
    let n = out.len();
    // The codes before the first whole byte, the whole bytes, the rest.
    let head = ((per - from % per) % per).min(n);
    let (first, rest) = out.split_at_mut(head);
    for (j, o) in first.iter_mut().enumerate() {
        *o = g(code(codes, B, from + j));
    }
    let byte0 = (from + head) / per;
    let mut chunks = rest.chunks_exact_mut(per);
    match B {
        // A byte per code, or two: straight loops the compiler vectorises.
        8 => {
            for (o, &byte) in rest.iter_mut().zip(&codes[byte0..]) {
                *o = g(u32::from(byte));
            }
            return;
        }
        4 => {
            for (o, &byte) in (&mut chunks).zip(&codes[byte0..]) {
                let byte = u32::from(byte);
                o[0] = g(byte & 15);
                o[1] = g(byte >> 4);
            }
        }
        _ => {
            for (o, &byte) in (&mut chunks).zip(&codes[byte0..]) {
                let byte = u32::from(byte);
                for (i, o) in o.iter_mut().enumerate() {
                    *o = g((byte >> (i as u32 * B)) & mask);
                }
            }
        }
    }
    let tail = chunks.into_remainder();
    let at = from + n - tail.len();
    for (j, o) in tail.iter_mut().enumerate() {
        *o = g(code(codes, B, at + j));
    }
}

/// Bytes that hold `n` codes of `bits` bits.
fn packed_bytes(n: usize, bits: u32) -> usize {
    (n as u128 * u128::from(bits)).div_ceil(8) as usize
}

/// Packs `codes` (each below `2^bits`) least-significant bit first.
fn pack(codes: impl Iterator<Item = u32>, n: usize, bits: u32) -> Result<Vec<u8>> {
    let mut out = crate::sys::zeros::<u8>(packed_bytes(n, bits), "value codes")?;
    for (j, c) in codes.enumerate() {
        let at = j * bits as usize;
        let v = c << (at % 8);
        out[at / 8] |= v as u8;
        if at % 8 + bits as usize > 8 {
            out[at / 8 + 1] |= (v >> 8) as u8;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
