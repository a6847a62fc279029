//! Weights in their own dtype, and the importance scores derived from them on
//! the fly, one block at a time, so no full-size score array is ever built.

use crate::float8::{F8E4M3, F8E5M2};
use crate::{bail, Result};
use half::{bf16, f16};
use rayon::prelude::*;

/// A float element the core reads without converting the whole array.
pub trait Float: Copy + Send + Sync + 'static {
    fn to_f64(self) -> f64;
}

impl Float for f16 {
    fn to_f64(self) -> f64 {
        f64::from(self.to_f32())
    }
}
impl Float for bf16 {
    fn to_f64(self) -> f64 {
        f64::from(self.to_f32())
    }
}
impl Float for F8E4M3 {
    fn to_f64(self) -> f64 {
        f64::from(self.to_f32())
    }
}
impl Float for F8E5M2 {
    fn to_f64(self) -> f64 {
        f64::from(self.to_f32())
    }
}
impl Float for f32 {
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
}
impl Float for f64 {
    fn to_f64(self) -> f64 {
        self
    }
}

/// A borrowed, flattened (C order) array of one of the supported dtypes.
#[derive(Clone, Copy, Debug)]
pub enum Weights<'a> {
    F16(&'a [f16]),
    BF16(&'a [bf16]),
    F8E4M3(&'a [F8E4M3]),
    F8E5M2(&'a [F8E5M2]),
    F32(&'a [f32]),
    F64(&'a [f64]),
}

/// How a weight becomes a score: `|w|`, `w^2`, or the array already holds scores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Score {
    Abs,
    Square,
    Raw,
}

#[derive(Clone, Copy, Debug)]
pub struct Scores<'a> {
    pub data: Weights<'a>,
    pub kind: Score,
    /// A power of two the search multiplies gains by (see [`Scores::scaled`]).
    scale: f64,
}

/// Largest scores left unscaled: far enough below float32's limit that a
/// block's metrics (sums of up to 2^26 gains) stay finite.
const UNSCALED_MAX: f64 = 1.8446744073709552e19; // 2^64

macro_rules! dispatch {
    ($w:expr, $x:ident => $body:expr) => {
        match $w {
            Weights::F16($x) => $body,
            Weights::BF16($x) => $body,
            Weights::F8E4M3($x) => $body,
            Weights::F8E5M2($x) => $body,
            Weights::F32($x) => $body,
            Weights::F64($x) => $body,
        }
    };
}

impl Weights<'_> {
    pub fn len(&self) -> usize {
        dispatch!(*self, x => x.len())
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The elements as float32 (float64 rounded; the rest exact).
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        let mut out = crate::sys::with_capacity(self.len(), "values as float32")?;
        dispatch!(*self, x => out.extend(x.iter().map(|v| v.to_f64() as f32)));
        Ok(out)
    }
}

impl<'a> Scores<'a> {
    pub fn new(data: Weights<'a>, kind: Score) -> Self {
        Self {
            data,
            kind,
            scale: 1.0,
        }
    }

    /// These scores with the power of two that brings `max` (the largest
    /// score) near 1 when it lies outside `[2^-64, 2^64]`: the search runs in
    /// float32, where larger scores overflow and tiny ones flush to zero.
    /// Scaling by a power of two is exact, so it changes no decision.
    pub fn scaled(self, max: f64) -> Self {
        let scale = if max == 0.0 || (1.0 / UNSCALED_MAX..=UNSCALED_MAX).contains(&max) {
            1.0
        } else {
            // 2^-e with max in [2^e, 2^(e+1)); e >= -1074, so -e never exceeds
            // f64's largest exponent (1023) by more than the clamp allows.
            let e = max.log2().floor().clamp(-1023.0, 1023.0);
            (-e).exp2()
        };
        Self { scale, ..self }
    }

    /// The factor gains are multiplied by (1 unless [`scaled`](Self::scaled)).
    pub fn scale(&self) -> f64 {
        self.scale
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn score(kind: Score, x: f64) -> f64 {
        match kind {
            Score::Abs => x.abs(),
            Score::Square => x * x,
            Score::Raw => x,
        }
    }

    /// Score of weight `i`.
    pub fn get(&self, i: usize) -> f64 {
        dispatch!(self.data, x => Self::score(self.kind, x[i].to_f64()))
    }

    /// Writes `(score - lam) * scale` for weights `start ..` into `out`;
    /// positions past the tensor's end (padding of the last block) gain
    /// nothing either way.
    pub fn gains(&self, start: usize, lam: f64, out: &mut [f32]) {
        let (kind, scale) = (self.kind, self.scale);
        dispatch!(self.data, x => {
            let src = &x[start.min(x.len())..x.len().min(start + out.len())];
            for (o, &v) in out.iter_mut().zip(src) {
                *o = ((Self::score(kind, v.to_f64()) - lam) * scale) as f32;
            }
            out[src.len()..].fill(0.0);
        })
    }

    /// How many of weights `range` score above `lam` (what magnitude pruning keeps).
    pub fn count_above(&self, range: std::ops::Range<usize>, lam: f64) -> usize {
        let kind = self.kind;
        dispatch!(self.data, x => x[range.start.min(x.len())..range.end.min(x.len())]
            .iter()
            .filter(|v| Self::score(kind, v.to_f64()) > lam)
            .count())
    }

    /// Refuses NaN or infinite values, negative caller-given scores and
    /// squares beyond float64's range; returns the largest score.
    pub fn check(&self) -> Result<f64> {
        let what = if self.kind == Score::Raw {
            "scores"
        } else {
            "weights"
        };
        let (raw, kind) = (self.kind == Score::Raw, self.kind);
        if let (Weights::F32(x), Score::Abs | Score::Square) = (&self.data, kind) {
            // The common case in one vectorised read: finite float32
            // magnitudes order as their bits do, and NaN and infinity have
            // the largest; a bad value is located by the general read below.
            let top = x
                .par_chunks(1 << 14)
                .map(|c| c.iter().fold(0u32, |m, v| m.max(v.to_bits() & 0x7fff_ffff)))
                .max()
                .unwrap_or(0);
            if top < f32::INFINITY.to_bits() {
                return Ok(Self::score(kind, f64::from(f32::from_bits(top))));
            }
        }
        let ok = |v: f64| v.is_finite() && !(raw && v < 0.0);
        // One read: per chunk, whether all values are fine (without early
        // exits, so it vectorises) and the largest score; only a failing
        // chunk is searched for its first bad element.
        const CHUNK: usize = 1 << 14;
        let (bad, max) = dispatch!(self.data, x => {
            let chunks: Vec<(bool, f64)> = x
                .par_chunks(CHUNK)
                .map(|c| {
                    c.iter().fold((true, 0.0f64), |(all, m), v| {
                        let v = v.to_f64();
                        (all & ok(v), m.max(Self::score(kind, v)))
                    })
                })
                .collect();
            let bad = chunks.iter().position(|c| !c.0).map(|k| {
                let i = k * CHUNK + x[k * CHUNK..].iter().position(|v| !ok(v.to_f64())).unwrap_or(0);
                (i, x[i].to_f64())
            });
            (bad, chunks.iter().fold(0.0f64, |m, c| m.max(c.1)))
        });
        if let Some((i, v)) = bad {
            if v.is_finite() {
                bail!("{what} must be non-negative: element {i} is {v}");
            }
            bail!("{what} must be finite: element {i} is {v}");
        }
        if !max.is_finite() {
            bail!("score = 'square' overflows float64: some |w| exceeds 1.3e154; use score = 'abs' or scale the weights");
        }
        Ok(max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(data: Weights<'_>, kind: Score) -> Result<f64> {
        Scores::new(data, kind).check()
    }

    #[test]
    fn scores_far_from_one_are_scaled_by_a_power_of_two() {
        let scale = |max: f64| {
            Scores::new(Weights::F64(&[max]), Score::Raw)
                .scaled(max)
                .scale()
        };
        assert_eq!(scale(0.0), 1.0);
        assert_eq!(scale(3.0), 1.0);
        assert_eq!(scale(1e19), 1.0);
        assert_eq!(scale(2f64.powi(100)), 2f64.powi(-100));
        assert_eq!(scale(1.5 * 2f64.powi(100)), 2f64.powi(-100));
        assert_eq!(scale(2f64.powi(-100)), 2f64.powi(100));
        // The smallest subnormal: 2^-1074, scaled by 2^1023 at most.
        assert_eq!(scale(f64::from_bits(1)), 2f64.powi(1023));
    }

    #[test]
    fn weights_and_scores_must_be_finite_and_scores_non_negative() {
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            for kind in [Score::Abs, Score::Raw] {
                let w = [1.0, bad, 2.0];
                let e = check(Weights::F32(&w), kind).unwrap_err();
                assert!(e.to_string().contains("element 1"), "{e}");
            }
        }
        let e = check(Weights::F64(&[1.0, 0.5, -0.25]), Score::Raw).unwrap_err();
        assert!(e.to_string().contains("non-negative"), "{e}");
        assert_eq!(
            check(Weights::F64(&[1.0, 0.5, -3.25]), Score::Abs).unwrap(),
            3.25
        );
        assert_eq!(
            check(Weights::F64(&[1.0, 0.0, 2.5]), Score::Raw).unwrap(),
            2.5
        );
        // A bad value past the first chunk is found and named.
        let mut w = vec![0.5f32; 40_000];
        w[33_333] = f32::NAN;
        let e = check(Weights::F32(&w), Score::Abs).unwrap_err();
        assert!(e.to_string().contains("element 33333"), "{e}");
    }

    #[test]
    fn the_float32_read_gives_the_general_reads_largest_score() {
        // The float32 magnitudes' bits against the float64 read of the
        // same values: signs, zeros, subnormals, the largest finite value.
        let mut w: Vec<f32> = (0..50_000).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
        w[17] = -7.5;
        w[18] = -0.0;
        w[19] = f32::from_bits(1);
        let wide: Vec<f64> = w.iter().map(|&v| f64::from(v)).collect();
        for kind in [Score::Abs, Score::Square] {
            let want = check(Weights::F64(&wide), kind).unwrap();
            assert_eq!(check(Weights::F32(&w), kind).unwrap(), want, "{kind:?}");
        }
        assert_eq!(check(Weights::F32(&w), Score::Abs).unwrap(), 7.5);
        let huge = [f32::MAX, -f32::MAX, 0.0];
        let square = check(Weights::F32(&huge), Score::Square).unwrap();
        assert_eq!(square, f64::from(f32::MAX) * f64::from(f32::MAX));
        for tiny in [[0.0f32, -0.0], [f32::from_bits(1), 0.0]] {
            assert_eq!(
                check(Weights::F32(&tiny), Score::Abs).unwrap(),
                f64::from(tiny[0])
            );
        }
    }
}
