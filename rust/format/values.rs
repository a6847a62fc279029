//! How a pruned tensor's kept values are stored: as themselves, or encoded
//! (version 3) as packed codes and a side table (docs/format.md, "Value
//! encodings"); the siblings that hold them, and their decoded bytes.

use super::{
    DType, Sparse, CODEBOOK_SUFFIX, CODES_SUFFIX, SCALES_SUFFIX, THRESHOLDS_SUFFIX, VALUES_SUFFIX,
};
use crate::{bail, Encoded, Encoding, Result};
use std::borrow::Cow;

/// How a pruned tensor's kept values are stored.
#[derive(Clone, Debug, PartialEq)]
pub enum Values<'a> {
    /// Themselves: little-endian bytes of the tensor's dtype.
    Raw(Cow<'a, [u8]>),
    /// Encoded (version 3), the table in float32 holding values of the
    /// tensor's [`table_dtype`](DType::table_dtype).
    Encoded(Encoded<'a>),
}

/// Checks encoded values of `dtype` against their own claims: codes and
/// table of their count's lengths, table entries the table dtype holds,
/// and no integer code whose product with its scale overflows `dtype` (a
/// hostile file's scale decoding to infinity).
pub fn check_encoded(e: &Encoded<'_>, dtype: DType) -> Result<()> {
    let Some(table) = dtype.table_dtype() else {
        bail!(
            "{} values cannot be encoded (they are 8 bits already)",
            dtype.name()
        );
    };
    e.check(e.len)?;
    if let Some(x) = e.table.iter().find(|&&x| !table.holds_f32(x)) {
        bail!(
            "{} table entry {x} is not a {} value",
            e.encoding.name(),
            table.name()
        );
    }
    if let Encoding::Int { bits, .. } = e.encoding {
        // Codes decode within -q ..= q (q = 2^(bits - 1) - 1).
        let most = f32::from((1u16 << (bits - 1)) - 1);
        if let Some(s) = e
            .table
            .iter()
            .find(|&&s| !table.round_f32(most * s).is_finite())
        {
            bail!(
                "{} scale {s}: its codes overflow {} values",
                e.encoding.name(),
                dtype.name()
            );
        }
    }
    Ok(())
}

/// The sibling holding an encoding's side table.
pub(super) fn table_suffix(e: Encoding) -> &'static str {
    match e {
        Encoding::Codebook { .. } => CODEBOOK_SUFFIX,
        _ => SCALES_SUFFIX,
    }
}

/// A stored sibling: its name, dtype and bytes.
pub(super) type Sibling<'s> = (String, DType, Cow<'s, [u8]>);

impl Sparse<'_> {
    /// The kept values as little-endian bytes of `dtype`: borrowed when
    /// stored as they are, decoded when encoded (a chunk at a time, with a
    /// cancel check between chunks).
    pub fn value_bytes(&self) -> Result<Cow<'_, [u8]>> {
        use half::{bf16, f16};
        let e = match &self.values {
            Values::Raw(v) => return Ok(Cow::Borrowed(v.as_ref())),
            Values::Encoded(e) => e,
        };
        fn run<V: crate::Decoded>(e: &Encoded<'_>, le: fn(V, &mut Vec<u8>)) -> Result<Vec<u8>> {
            let n = e.len.saturating_mul(std::mem::size_of::<V>());
            let mut out = crate::sys::with_capacity(n, "decoded values")?;
            let mut buf = vec![V::default(); e.len.min(1 << 20)];
            for from in (0..e.len).step_by(1 << 20) {
                crate::cancel::check()?;
                let part = &mut buf[..(e.len - from).min(1 << 20)];
                e.decode(from, part);
                part.iter().for_each(|&v| le(v, &mut out));
            }
            Ok(out)
        }
        Ok(Cow::Owned(match self.dtype {
            DType::F16 => run::<f16>(e, |v, o| o.extend_from_slice(&v.to_le_bytes()))?,
            DType::BF16 => run::<bf16>(e, |v, o| o.extend_from_slice(&v.to_le_bytes()))?,
            DType::F32 => run::<f32>(e, |v, o| o.extend_from_slice(&v.to_le_bytes()))?,
            DType::F64 => run::<f64>(e, |v, o| o.extend_from_slice(&v.to_le_bytes()))?,
            d => bail!("{} values cannot be encoded", d.name()),
        }))
    }

    /// The encoding of the values (`Raw` when stored as themselves).
    pub fn encoding(&self) -> Encoding {
        match &self.values {
            Values::Raw(_) => Encoding::Raw,
            Values::Encoded(e) => e.encoding,
        }
    }

    /// The stored siblings holding the values (and the thresholds), as
    /// `(name, dtype, length, bytes)`; the index is left to the caller,
    /// which converts its words.
    pub(super) fn value_siblings(&self, name: &str) -> Result<Vec<Sibling<'_>>> {
        let mut out = Vec::with_capacity(3);
        match &self.values {
            Values::Raw(v) => out.push((
                format!("{name}{VALUES_SUFFIX}"),
                self.dtype,
                Cow::Borrowed(v.as_ref()),
            )),
            Values::Encoded(e) => {
                let table = self.dtype.table_dtype().expect("checked encodable");
                out.push((
                    format!("{name}{CODES_SUFFIX}"),
                    DType::U8,
                    Cow::Borrowed(e.codes.as_ref()),
                ));
                out.push((
                    format!("{name}{}", table_suffix(e.encoding)),
                    table,
                    Cow::Owned(table.f32_bytes(&e.table)?),
                ));
            }
        }
        if let Some(t) = &self.thresholds {
            out.push((
                format!("{name}{THRESHOLDS_SUFFIX}"),
                DType::U8,
                Cow::Borrowed(t.as_ref()),
            ));
        }
        Ok(out)
    }
}
