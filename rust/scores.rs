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
}

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
}

impl<'a> Scores<'a> {
    pub fn new(data: Weights<'a>, kind: Score) -> Self {
        Self { data, kind }
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

    /// Writes `score - lam` for weights `start ..` into `out`; positions past
    /// the tensor's end (padding of the last block) gain nothing either way.
    pub fn gains(&self, start: usize, lam: f64, out: &mut [f32]) {
        let kind = self.kind;
        dispatch!(self.data, x => {
            let src = &x[start.min(x.len())..x.len().min(start + out.len())];
            for (o, &v) in out.iter_mut().zip(src) {
                *o = (Self::score(kind, v.to_f64()) - lam) as f32;
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

    /// Refuses NaN or infinite values, and negative caller-given scores.
    pub fn check(&self) -> Result<()> {
        let what = if self.kind == Score::Raw {
            "scores"
        } else {
            "weights"
        };
        let raw = self.kind == Score::Raw;
        let ok = |v: f64| v.is_finite() && !(raw && v < 0.0);
        // Chunks checked without early exits (so the check vectorises); only a
        // failing chunk is searched for its first bad element.
        const CHUNK: usize = 1 << 14;
        let bad = dispatch!(self.data, x => x
        .par_chunks(CHUNK)
        .position_first(|c| !c.iter().fold(true, |all, v| all & ok(v.to_f64())))
        .map(|k| {
            let i = k * CHUNK + x[k * CHUNK..].iter().position(|v| !ok(v.to_f64())).unwrap_or(0);
            (i, x[i].to_f64())
        }));
        if let Some((i, v)) = bad {
            if v.is_finite() {
                bail!("{what} must be non-negative: element {i} is {v}");
            }
            bail!("{what} must be finite: element {i} is {v}");
        }
        Ok(())
    }
}
