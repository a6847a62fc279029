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

#[inline(always)]
pub(super) fn decode<V: Decoded>(
    codes: &[u8],
    scales: &[f32],
    bits: u32,
    group: usize,
    from: usize,
    out: &mut [V],
) {
    // A run of values sharing one scale at a time, so the inner loops are
    // a load, a sign extension and a multiply per value.
    let (mut at, mut done) = (from, 0);
    while done < out.len() {
        let n = (group - at % group).min(out.len() - done);
        let s = scales[at / group];
        let run = &mut out[done..done + n];
        super::map_codes(codes, bits, at, run, |c| {
            V::from_f32(signed(c, bits) as f32 * s)
        });
        at += n;
        done += n;
    }
}

/// A `bits`-bit two's complement code as an integer; -2^(bits - 1), which
/// the encoder never writes, reads as -q, so no code exceeds q * scale.
#[inline(always)]
fn signed(c: u32, bits: u32) -> i32 {
    let sign = 1i32 << (bits - 1);
    ((c as i32 ^ sign) - sign).max(1 - sign)
}

fn levels(bits: u32) -> f32 {
    ((1u32 << (bits - 1)) - 1) as f32
}
