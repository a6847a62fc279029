//! Symmetric integers with a scale per group: `q = 2^(bits - 1) - 1` levels
//! each side of zero (127 for int8, 7 for int4), the group's scale its
//! largest |value| over `q`, rounded to the stored dtype; codes are
//! `round(value / scale)` clamped to `-q ..= q`, stored as `bits`-bit two's
//! complement.

use super::{pack, Decoded};
use crate::{bail, Result};

pub(super) fn encode(
    values: &[f32],
    bits: u32,
    group: usize,
    round: impl Fn(f32) -> f32,
) -> Result<(Vec<u8>, Vec<f32>)> {
    let q = levels(bits);
    let scales: Vec<f32> = values
        .chunks(group)
        .map(|g| round(g.iter().fold(0.0f32, |m, v| m.max(v.abs())) / q))
        .collect();
    // A scale rounded up may take `q * scale` past the dtype's largest value.
    if let Some(s) = scales.iter().find(|&&s| !round(q * s).is_finite()) {
        bail!("values: a group's largest code times its scale {s} overflows the values' dtype");
    }
    let mask = (1u32 << bits) - 1;
    let codes = values.iter().enumerate().map(|(j, &v)| {
        let s = scales[j / group];
        let c = if s > 0.0 {
            (v / s).round().clamp(-q, q)
        } else {
            0.0
        };
        (c as i32 as u32) & mask
    });
    Ok((pack(codes, values.len(), bits)?, scales))
}

pub(super) fn decode<V: Decoded>(
    codes: &[u8],
    scales: &[f32],
    bits: u32,
    group: usize,
    from: usize,
    out: &mut [V],
) {
    let sign = 1i32 << (bits - 1);
    for (j, o) in out.iter_mut().enumerate() {
        let at = from + j;
        // Sign-extend the two's complement code; -2^(bits - 1), which the
        // encoder never writes, decodes as -q, so no code exceeds q * scale.
        let c = ((super::code(codes, bits, at) as i32 ^ sign) - sign).max(1 - sign);
        *o = V::from_f32(c as f32 * scales[at / group]);
    }
}

fn levels(bits: u32) -> f32 {
    ((1u32 << (bits - 1)) - 1) as f32
}
