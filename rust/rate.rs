//! Rate control: the multiplier `lam` whose search keeps the requested share of
//! weights. Kept count never increases with `lam` (a Lagrangian optimum), so a
//! bracketing root finder converges; most of it runs on an evenly spaced sample
//! of blocks, then one full pass, then a correction only when that pass misses.

use crate::{Layout, Result, Searcher};

/// Rates are matched to within this on the sample, and accepted on the full
/// tensor within `FULL_TOLERANCE` (DESIGN asks for 0.2 points).
const SAMPLE_TOLERANCE: f64 = 2e-4;
const FULL_TOLERANCE: f64 = 1e-3;
/// At most this many blocks are sampled unless the tensor is small.
const SAMPLE_SHARE: usize = 16;
const MIN_SAMPLE_BLOCKS: usize = 16;

/// The outcome of [`prune_to_rate`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateResult {
    pub lam: f64,
    pub kept: usize,
    /// Search work spent, in full passes over the tensor.
    pub passes: f64,
}

/// Evenly spaced blocks: all of them for small tensors, else about 1/16.
fn sample_blocks(n_blocks: usize) -> Vec<usize> {
    if n_blocks <= MIN_SAMPLE_BLOCKS * 2 {
        return (0..n_blocks).collect();
    }
    let m = (n_blocks / SAMPLE_SHARE).max(MIN_SAMPLE_BLOCKS);
    (0..m).map(|i| (2 * i + 1) * n_blocks / (2 * m)).collect()
}

/// Finds `lam` with `f(lam)` (kept share minus target, non-increasing in `lam`)
/// within `tol` of zero: expand a bracket from `lam0`, then Illinois regula
/// falsi. Returns the best point seen, as `(lam, f)`.
fn solve(mut f: impl FnMut(f64) -> f64, lam0: f64, step0: f64, bound: f64, tol: f64, evals: usize) -> (f64, f64) {
    let mut best = (lam0, f(lam0));
    let note = |p: (f64, f64), best: &mut (f64, f64)| {
        if p.1.abs() < best.1.abs() {
            *best = p;
        }
        p
    };
    let mut a = best;
    if a.1.abs() <= tol {
        return best;
    }
    // Too many kept (f > 0) means a larger lam, and the reverse.
    let dir = a.1.signum();
    let mut step = step0;
    let mut n = 1;
    let mut b = loop {
        if n >= evals {
            return best;
        }
        let lam = (a.0 + dir * step).clamp(-bound, bound);
        let p = note((lam, f(lam)), &mut best);
        n += 1;
        if p.1.abs() <= tol || p.1.signum() != dir {
            break p;
        }
        if lam.abs() >= bound {
            return best; // the target is out of this VD's reach
        }
        a = p;
        step *= 2.0;
    };
    let mut side = 0i8;
    while b.1.abs() > tol && n < evals && a.0 != b.0 {
        let lam = b.0 - b.1 * (b.0 - a.0) / (b.1 - a.1);
        let lam = if lam.is_finite() && lam != a.0 && lam != b.0 { lam } else { 0.5 * (a.0 + b.0) };
        let p = note((lam, f(lam)), &mut best);
        n += 1;
        if p.1.signum() == b.1.signum() {
            // Illinois: halve the stale end's weight when one end is kept twice.
            b = p;
            if side == -1 {
                a.1 *= 0.5;
            }
            side = -1;
        } else {
            a = b;
            b = p;
            side = 1;
        }
    }
    best
}

/// The magnitude threshold for density `d` on a strided sample of the scores:
/// the search's `lam` would be exactly this without the VD constraint.
fn magnitude_threshold(s: &Searcher, blocks: &[usize], d: f64) -> (f64, f64) {
    let layout = s.layout();
    let total: usize = blocks.iter().map(|&b| layout.weights(b).len()).sum();
    let stride = total.div_ceil(1 << 16).max(1);
    let mut xs: Vec<f64> = blocks
        .iter()
        .flat_map(|&b| layout.weights(b))
        .step_by(stride)
        .map(|i| s.scores().get(i))
        .collect();
    let max = xs.iter().copied().fold(0.0, f64::max);
    let pos = (((1.0 - d) * xs.len() as f64) as usize).min(xs.len() - 1);
    let (_, &mut q, _) = xs.select_nth_unstable_by(pos, f64::total_cmp);
    (q, max)
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
                let kept = self.searcher.pass(lam, self.index).iter().map(|b| b.kept).sum();
                self.last = Some((lam, kept));
                kept
            }
        }
    }
}

/// Searches the whole tensor at the `lam` that prunes `rate` of the weights,
/// writing the index. Best effort when the VD cannot reach the rate.
pub fn prune_to_rate(s: &Searcher, rate: f64, index: &mut [u64]) -> Result<RateResult> {
    let layout: Layout = *s.layout();
    layout.check_index(index.len())?;
    let n = layout.n_weights as f64;
    let d = 1.0 - rate;
    let blocks = sample_blocks(layout.n_blocks());
    let sample_weights: usize = blocks.iter().map(|&b| layout.weights(b).len()).sum();
    let (lam0, max) = magnitude_threshold(s, &blocks, d);
    let bound = 2.0 * max + 1.0;
    let step0 = (0.25 * lam0).max(1e-3 * max).max(1e-12);
    let mut full = FullPasses { searcher: s, index, last: None, passes: 0.0 };

    let (mut lam, mut tol) = (lam0, 0.25 * FULL_TOLERANCE);
    if blocks.len() < layout.n_blocks() {
        let mut sample_passes = 0.0;
        lam = solve(
            |lam| {
                sample_passes += sample_weights as f64 / n;
                s.count(lam, &blocks) as f64 / sample_weights as f64 - d
            },
            lam0,
            step0,
            bound,
            SAMPLE_TOLERANCE,
            30,
        )
        .0;
        full.passes += sample_passes;
        tol = 0.5 * FULL_TOLERANCE;
        if (full.kept(lam) as f64 / n - d).abs() <= FULL_TOLERANCE {
            let kept = full.kept(lam);
            return Ok(RateResult { lam, kept, passes: full.passes });
        }
    }
    // Small tensors, or a sample that misled: solve on full passes.
    let evals = if blocks.len() < layout.n_blocks() { 6 } else { 40 };
    let step = if blocks.len() < layout.n_blocks() { 0.25 * step0 } else { step0 };
    let lam = solve(|lam| full.kept(lam) as f64 / n - d, lam, step, bound, tol, evals).0;
    let kept = full.kept(lam);
    Ok(RateResult { lam, kept, passes: full.passes })
}
