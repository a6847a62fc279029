//! Rate control: the multiplier `lam` whose search keeps the requested share of
//! weights. Kept count never increases with `lam` (a Lagrangian optimum), so a
//! bracketing root finder converges. It works in the magnitude-density domain
//! (see [`Quantiles`]), mostly on an evenly spaced sample of blocks, then one
//! full pass, then a correction only when that pass misses.

use crate::{Layout, Result, Searcher};
use rayon::prelude::*;

/// Rates are matched to within this on the sample, and accepted on the full
/// tensor within `FULL_TOLERANCE` (DESIGN asks for 0.2 points).
const SAMPLE_TOLERANCE: f64 = 4e-4;
const FULL_TOLERANCE: f64 = 1e-3;
/// About one step in `SAMPLE_SHARE` is sampled, in at least `MIN_PIECES`
/// block-long pieces spread over the tensor: rows differ, so fewer pieces
/// misjudge the rate, and shorter ones keep measurably more than full blocks.
/// When that would be half the tensor or more, full passes are cheaper.
const SAMPLE_SHARE: usize = 16;
const MIN_PIECES: usize = 48;

/// The outcome of [`prune_to_rate`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateResult {
    pub lam: f64,
    pub kept: usize,
    /// Search work spent, in full passes over the tensor.
    pub passes: f64,
}

/// Evenly spaced `(start weight, steps)` pieces of a block's length covering
/// about 1/16 of the steps, or `None` when full passes are as cheap.
fn sample_pieces(layout: &Layout) -> Option<Vec<(usize, usize)>> {
    let steps = layout.n_weights.div_ceil(layout.n_out);
    let len = layout.block_steps;
    let m = (steps / SAMPLE_SHARE / len).max(MIN_PIECES);
    if 2 * m * len > steps {
        return None;
    }
    Some(
        (0..m)
            .map(|i| {
                (
                    ((2 * i + 1) * steps / (2 * m) - len / 2) * layout.n_out,
                    len,
                )
            })
            .collect(),
    )
}

/// Finds `x` with `f(x)` (kept share minus target, increasing in `x`) within
/// `tol` of zero: secant steps from `x0` (first slope `slope0`) until the root
/// is bracketed, then Illinois regula falsi. Returns the best point seen and
/// the last secant slope.
fn solve(
    mut f: impl FnMut(f64) -> f64,
    x0: f64,
    slope0: f64,
    tol: f64,
    evals: usize,
) -> ((f64, f64), f64) {
    let mut a = (x0, f(x0));
    let mut best = a;
    let mut slope = slope0;
    let mut n = 1;
    let mut b = loop {
        if best.1.abs() <= tol || n >= evals {
            return (best, slope);
        }
        let p = (a.0 - a.1 / slope, f(a.0 - a.1 / slope));
        n += 1;
        if p.1.abs() < best.1.abs() {
            best = p;
        }
        let s = (p.1 - a.1) / (p.0 - a.0);
        // A flat or inverted secant (a step of the count function) doubles the step.
        slope = if s.is_finite() && s > 0.0 {
            s
        } else {
            0.5 * slope
        };
        if p.1.signum() != a.1.signum() {
            break p;
        }
        a = p;
    };
    let mut stale = 0i8;
    while best.1.abs() > tol && n < evals && a.0 != b.0 {
        let x = b.0 - b.1 * (b.0 - a.0) / (b.1 - a.1);
        let x = if x.is_finite() && x != a.0 && x != b.0 {
            x
        } else {
            0.5 * (a.0 + b.0)
        };
        let p = (x, f(x));
        n += 1;
        if p.1.abs() < best.1.abs() {
            best = p;
        }
        if p.1.signum() == b.1.signum() {
            // Illinois: halve the weight of an end kept twice in a row.
            b = p;
            if stale == -1 {
                a.1 *= 0.5;
            }
            stale = -1;
        } else {
            a = b;
            b = p;
            stale = 1;
        }
    }
    (best, slope)
}

/// Maps a magnitude-pruning density `q` to the score threshold that keeps
/// that share of a strided sample of the scores (linear between sample points,
/// extrapolated past the ends). The VD's kept share is close to linear in `q`,
/// so root finding in `q` needs few searches.
struct Quantiles(Vec<f64>);

impl Quantiles {
    fn new(s: &Searcher) -> Self {
        let n = s.layout().n_weights;
        let stride = n.div_ceil(1 << 16).max(1);
        let mut xs: Vec<f64> = (0..n).step_by(stride).map(|i| s.scores().get(i)).collect();
        xs.sort_unstable_by(f64::total_cmp);
        Self(xs)
    }

    fn lam(&self, q: f64) -> f64 {
        let xs = &self.0;
        let last = xs.len() - 1;
        let span = (xs[last] - xs[0]).max(1e-12);
        let p = (1.0 - q) * last as f64;
        if p <= 0.0 {
            return xs[0] + p * span;
        }
        if p >= last as f64 {
            return xs[last] + (p - last as f64) * span;
        }
        let i = p as usize;
        xs[i] + (p - i as f64) * (xs[(i + 1).min(last)] - xs[i])
    }
}

/// Weights in the `(start, len)` ranges whose score exceeds `lam`.
fn above(s: &Searcher, lam: f64, ranges: &[(usize, usize)]) -> usize {
    ranges
        .par_iter()
        .map(|&(start, len)| s.scores().count_above(start..start + len, lam))
        .sum()
}

/// Full passes that write the index, remembering the last one so the same
/// `lam` is never searched twice in a row.
struct FullPasses<'s, 'a, 'i> {
    searcher: &'s Searcher<'a>,
    index: &'i mut [u64],
    last: Option<(f64, usize)>,
    passes: f64,
}

impl FullPasses<'_, '_, '_> {
    fn kept(&mut self, lam: f64) -> usize {
        match self.last {
            Some((l, kept)) if l == lam => kept,
            _ => {
                self.passes += 1.0;
                let kept = self
                    .searcher
                    .pass(lam, self.index)
                    .iter()
                    .map(|b| b.kept)
                    .sum();
                self.last = Some((lam, kept));
                kept
            }
        }
    }
}

/// Searches the whole tensor at the `lam` that prunes `rate` of the weights,
/// writing the index. Best effort when the VD cannot reach the rate.
pub fn prune_to_rate(s: &Searcher, rate: f64, index: &mut [u64]) -> Result<RateResult> {
    let layout = *s.layout();
    layout.check_index(index.len())?;
    if s.keeps_all() {
        // Every input keeps every weight: the all-zero index is as good as any.
        index.fill(0);
        return Ok(RateResult {
            lam: 0.0,
            kept: layout.n_weights,
            passes: 0.0,
        });
    }
    let n = layout.n_weights as f64;
    let d = 1.0 - rate;
    let pieces = sample_pieces(&layout);
    let q = Quantiles::new(s);
    let whole: Vec<_> = (0..layout.n_blocks())
        .map(|b| (layout.weights(b).start, layout.weights(b).len()))
        .collect();
    let mut full = FullPasses {
        searcher: s,
        index,
        last: None,
        passes: 0.0,
    };

    let (mut x, mut slope) = (d, 1.0);
    if let Some(pieces) = &pieces {
        let ranges: Vec<_> = pieces
            .iter()
            .map(|&(start, steps)| (start, steps * layout.n_out))
            .collect();
        let weights = ranges.iter().map(|r| r.1).sum::<usize>() as f64;
        let mut sample_passes = 0.0;
        // The sample's kept share, corrected by how far its magnitude share
        // strays from the whole tensor's (a control variate: rows differ).
        let f = |x: f64| {
            sample_passes += weights / n;
            let lam = q.lam(x);
            let kept = s.count(lam, pieces) as f64;
            let stray = above(s, lam, &ranges) as f64 / weights - above(s, lam, &whole) as f64 / n;
            kept / weights - stray - d
        };
        ((x, _), slope) = solve(f, x, slope, SAMPLE_TOLERANCE, 12);
        full.passes += sample_passes;
    }
    // One full pass; small tensors, or a sample that misled, go on with full passes.
    let sampled = pieces.is_some();
    let tol = if sampled {
        FULL_TOLERANCE
    } else {
        0.25 * FULL_TOLERANCE
    };
    let evals = if sampled { 4 } else { 30 };
    let ((x, _), _) = solve(|x| full.kept(q.lam(x)) as f64 / n - d, x, slope, tol, evals);
    let lam = q.lam(x);
    let kept = full.kept(lam);
    Ok(RateResult {
        lam,
        kept,
        passes: full.passes,
    })
}
