//! Rate control (docs/algorithm.md, "Rate control"): the multiplier `lam`
//! whose search keeps the requested share of weights. Kept count never increases with `lam` (a Lagrangian optimum), so a
//! bracketing root finder converges. It works in the magnitude-density domain
//! (see [`Quantiles`]), mostly on a stratified random sample of blocks, then one
//! full pass, then a few secant corrections on full passes only when that pass
//! misses. Should those not land, the root is bracketed on full passes and
//! bisected, so the search never returns a miss that some `lam` in
//! `[0, max score]` would have avoided.

mod quantiles;

use crate::search::Searched;
use crate::{Layout, Result, Searcher};
use quantiles::{mix, top, Quantiles};
use rayon::prelude::*;
use std::cell::Cell;

/// Rates are matched to within this on the sample (about its estimate's
/// error: solved closer, it spent evaluations on noise), and accepted on the
/// full tensor within `FULL_TOLERANCE` (docs/algorithm.md, "Rate control":
/// 0.15 point, inside the 0.2 points promised; a full pass's count is exact,
/// and aiming at 0.1 point cost a further pass on a third of real layers).
const SAMPLE_TOLERANCE: f64 = 1e-3;
const FULL_TOLERANCE: f64 = 1.5e-3;
/// After `PATIENCE` full passes, bisection settles for the promised 0.2
/// points (a hair inside, against rounding): on tensors of a few blocks the
/// kept count moves in steps, and closing the last 0.05 point had cost up
/// to 20 passes.
const PROMISED: f64 = 1.99e-3;
const PATIENCE: usize = 4;
/// About one block in `SAMPLE_SHARE` is sampled, and at least `MIN_PIECES`
/// blocks: rows differ, so fewer misjudge the rate. When that would be over
/// an eighth of the tensor, full passes are cheaper.
const SAMPLE_SHARE: usize = 16;
const MIN_PIECES: usize = 48;
/// Blocks in the first, small sample, and the kept share it is solved to.
const FIRST_PIECES: usize = 8;
const FIRST_TOLERANCE: f64 = 2e-3;
/// Full passes at most (bisection included); bisection halves the bracket at
/// worst every second pass, so this closes it to [`MIN_WIDTH`].
const MAX_PASSES: usize = 48;
/// The bracket counts as closed at this width relative to its upper end: a
/// finer `lam` moves the kept count by a negligible share, save at ties,
/// which no `lam` splits.
const MIN_WIDTH: f64 = 1.0 / (1u64 << 20) as f64;
/// Below this share of the largest score a bracket starting at 0 is not
/// split further (geometrically, as kept counts change on a log scale there:
/// a tensor with many zeros keeps more and more of them as `lam` nears 0).
const LAM_FLOOR: f64 = 1.0 / (1u64 << 60) as f64;

/// Where the default VD (10 flip-flops, one input bit to five outputs, the
/// default comparator of the rate) keeps a share `d` of i.i.d. Gaussian
/// weights: `(d, x, slope)`, `x` the magnitude density at that `lam` and
/// `slope` the kept share's slope in `x` there (2^20 weights; comparators
/// change with the rate, so `x` wobbles by about 0.015 between these knots).
/// Real layers sit within about 0.03 of `x` (17 layers of four models), so
/// the search starts there: from `x = d` the first searches missed by 4-6
/// points, and on tensors too small to sample each was a full pass.
const PRIOR: [(f64, f64, f64); 13] = [
    (0.0, 0.0, 1.0),
    (0.02, 0.0232, 0.58),
    (0.03, 0.045, 0.29),
    (0.05, 0.1244, 0.25),
    (0.07, 0.1818, 0.30),
    (0.1, 0.2421, 0.37),
    (0.15, 0.2952, 0.43),
    (0.2, 0.3268, 0.51),
    (0.3, 0.3823, 0.59),
    (0.5, 0.4491, 0.67),
    (0.7, 0.5243, 0.63),
    (0.9, 0.7206, 0.8),
    (1.0, 1.0, 1.0),
];

/// The prior's slope times this is the full passes' first secant when no
/// sample ran (see [`prune_to_rate`]).
const STEEPER: f64 = 1.4;

/// The starting density and slope for kept share `d` ([`PRIOR`], linear
/// between knots).
fn prior(d: f64) -> (f64, f64) {
    let d = d.clamp(0.0, 1.0);
    let i = PRIOR
        .iter()
        .rposition(|p| p.0 <= d)
        .unwrap_or(0)
        .min(PRIOR.len() - 2);
    let ((d0, x0, s0), (d1, x1, s1)) = (PRIOR[i], PRIOR[i + 1]);
    let t = (d - d0) / (d1 - d0);
    (x0 + t * (x1 - x0), s0 + t * (s1 - s0))
}

/// The outcome of [`prune_to_rate`].
#[derive(Clone, Debug, PartialEq)]
pub struct RateResult {
    pub lam: f64,
    pub kept: usize,
    /// Search work spent, in full passes over the tensor.
    pub passes: f64,
    /// Each block's threshold, when the searcher chooses them per block
    /// (`None` when the config keeps every weight: its threshold serves all).
    pub thresholds: Option<Vec<u8>>,
}

/// One whole block drawn at a hashed position from each of `m` equal strata
/// of the full blocks (about 1/16 of them), as `(start weight, steps)`, or
/// `None` when that would be over an eighth of the tensor: each of its
/// searches then costs more than the full pass it might save (at 48 blocks
/// of 115, 2-3 searches of the sample cost a pass). A sampled block is searched exactly
/// as in the full pass, so the sample's kept share is unbiased; even spacing
/// would alias with periodic tensors (a spacing near a multiple of the rows'
/// length samples rows of one scale only, and mispredicted by 0.2).
fn sample_pieces(layout: &Layout) -> Option<Vec<(usize, usize)>> {
    let full = layout.n_weights / layout.block_weights();
    let m = (full / SAMPLE_SHARE).max(MIN_PIECES);
    (8 * m <= full).then(|| strata(layout, m, 1 << 32))
}

/// The small sample searched first, [`FIRST_PIECES`] blocks drawn as in
/// [`sample_pieces`], when they are at most half of the full blocks: it
/// finds the neighbourhood of the root (the VD keeps a share of weights
/// quite unlike the magnitude density at the same `lam`: 0.1 at a density
/// of 0.21-0.24 on real layers), so that the larger sample and the full
/// passes start close to it.
fn first_pieces(layout: &Layout) -> Option<Vec<(usize, usize)>> {
    let full = layout.n_weights / layout.block_weights();
    (2 * FIRST_PIECES <= full).then(|| strata(layout, FIRST_PIECES, 2 << 32))
}

/// One whole block at a hashed position (salted by `salt`) in each of `m`
/// equal strata of the full blocks, as `(start weight, steps)`.
fn strata(layout: &Layout, m: usize, salt: u64) -> Vec<(usize, usize)> {
    let full = layout.n_weights / layout.block_weights();
    (0..m)
        .map(|i| {
            let (lo, hi) = (i * full / m, (i + 1) * full / m);
            let b = lo + (mix(salt + i as u64) % (hi - lo) as u64) as usize;
            (layout.weights(b).start, layout.block_steps)
        })
        .collect()
}

/// Finds `x` in `[0, 1]` with `f(x)` (kept share minus target, increasing in
/// `x`) within `tol` of zero: secant steps from `x0` (first slope `slope0`)
/// until the root is bracketed, then Illinois regula falsi. Stops early when a
/// step would leave `[0, 1]` twice at the same end. Returns the best point seen
/// and the last secant slope.
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
        let x = (a.0 - a.1 / slope).clamp(0.0, 1.0);
        if x == a.0 {
            return (best, slope);
        }
        let p = (x, f(x));
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

/// The whole tensor's kept share estimated from the sampled blocks' `kept`
/// counts: a regression estimator on each block's count of scores `above`
/// `lam`, whose share over the whole tensor is `whole`. Rows differ in
/// scale, so a few blocks' kept share strays (by 0.02 on rows of five
/// scales); their magnitude share strays alike, and is known everywhere.
fn estimate(kept: &[usize], above: &[usize], whole: f64, per_block: f64) -> f64 {
    let m = kept.len() as f64;
    let mean = |v: &[usize]| v.iter().sum::<usize>() as f64 / per_block / m;
    let (mk, ma) = (mean(kept), mean(above));
    let (mut skk, mut saa) = (0.0, 0.0);
    for (&k, &a) in kept.iter().zip(above) {
        let da = a as f64 / per_block - ma;
        skk += (k as f64 / per_block - mk) * da;
        saa += da * da;
    }
    let beta = if saa > 0.0 { skk / saa } else { 0.0 };
    mk + beta * (whole - ma)
}

/// Weights in the `(start, len)` ranges whose score exceeds `lam`.
fn above_all(s: &Searcher, lam: f64, ranges: &[(usize, usize)]) -> usize {
    ranges
        .par_iter()
        .map(|&(start, len)| s.scores().count_above(start..start + len, lam))
        .sum()
}

/// Full passes, remembering every `lam` searched (none is searched twice) and
/// the index of the one closest to the target.
struct FullPasses<'s, 'a> {
    searcher: &'s Searcher<'a>,
    /// Kept share wanted.
    target: f64,
    scratch: Vec<u64>,
    best_index: Vec<u64>,
    /// The best pass's per-block thresholds.
    best_thresholds: Vec<u8>,
    /// Per-block thresholds every pass keeps, once choosing them anew in each
    /// pass has not met the target (see [`prune_to_rate`]).
    fixed: Option<Vec<u8>>,
    /// `(lam, kept share - target)` of each pass, in order.
    points: Vec<(f64, f64)>,
    /// The last sample's searches: a full pass at one of their `lam`s takes
    /// the sampled blocks as they are (the sample's share of a pass saved).
    sampled: Vec<(f64, Vec<Searched>)>,
    /// `(lam, kept share - target, kept)` of the pass closest to the target.
    best: Option<(f64, f64, usize)>,
    passes: f64,
}

impl FullPasses<'_, '_> {
    /// Kept share minus the target at `lam` (decreasing in `lam`).
    fn excess(&mut self, lam: f64) -> f64 {
        if let Some(&(_, e)) = self.points.iter().find(|p| p.0 == lam) {
            return e;
        }
        let fixed = self.fixed.as_deref();
        let known = match fixed {
            None => self
                .sampled
                .iter()
                .find(|k| k.0 == lam)
                .map_or(&[][..], |k| &k.1[..]),
            Some(_) => &[],
        };
        let layout = self.searcher.layout();
        self.passes +=
            1.0 - (known.len() * layout.block_weights()) as f64 / layout.n_weights as f64;
        let results = self
            .searcher
            .pass_with(lam, &mut self.scratch, fixed, known);
        let kept: usize = results.iter().map(|b| b.kept).sum();
        let e = kept as f64 / self.searcher.layout().n_weights as f64 - self.target;
        self.points.push((lam, e));
        if self.best.is_none_or(|b| e.abs() < b.1.abs()) {
            self.best = Some((lam, e, kept));
            std::mem::swap(&mut self.scratch, &mut self.best_index);
            self.best_thresholds.clear();
            self.best_thresholds
                .extend(results.iter().map(|b| b.threshold as u8));
        }
        e
    }

    fn missed_by(&self) -> f64 {
        self.best.map_or(f64::INFINITY, |b| b.1.abs())
    }
}

/// Bisects on `excess` (kept share minus target, decreasing in `lam`; Illinois
/// steps, and a bisection step whenever a step failed to halve the bracket or
/// landed on a plateau) between the `points` already evaluated nearest the
/// target on either side, the ends 0 and `top` standing in for a side none
/// reached. Stops within `tol` (within [`PROMISED`] once `points` and its own
/// evaluations number [`PATIENCE`]), after `evals` evaluations, on a closed
/// bracket or when the target lies beyond an end (then that end is the
/// closest).
fn bisect(
    mut excess: impl FnMut(f64) -> f64,
    points: &[(f64, f64)],
    top: f64,
    tol: f64,
    evals: usize,
) {
    let done = points.len();
    let best = Cell::new(points.iter().fold(f64::INFINITY, |m, p| m.min(p.1.abs())));
    let n = Cell::new(0);
    let mut eval = |x: f64| {
        n.set(n.get() + 1);
        let e = excess(x);
        best.set(best.get().min(e.abs()));
        e
    };
    let hi = match points
        .iter()
        .filter(|p| p.1 < 0.0)
        .min_by(|a, b| a.0.total_cmp(&b.0))
    {
        Some(&p) => p,
        None => match eval(top) {
            e if e >= 0.0 => return,
            e => (top, e),
        },
    };
    let lo = points
        .iter()
        .filter(|p| p.1 > 0.0 && p.0 < hi.0)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    let lo = match lo {
        Some(&p) => p,
        None => match eval(0.0) {
            e if e <= 0.0 => return,
            e => (0.0, e),
        },
    };
    // Ends `a < b` with their excesses (`a_e > 0 > b_e`) and Illinois weights.
    let ((mut a, mut a_e), (mut b, mut b_e)) = (lo, hi);
    let (mut wa, mut wb) = (a_e, b_e);
    let (mut side, mut halve) = (0i8, false);
    let floor = LAM_FLOOR * top;
    let aim = |n: usize| {
        if done + n >= PATIENCE {
            tol.max(PROMISED)
        } else {
            tol
        }
    };
    while best.get() > aim(n.get()) && n.get() < evals && b - a > MIN_WIDTH * b && b > floor {
        let width = b - a;
        let mid = if b > 16.0 * a.max(floor) {
            // The product of the roots: `a * b` overflows for scores near
            // f64::MAX (and underflows for tiny ones), stopping the bisection.
            a.max(floor).sqrt() * b.sqrt()
        } else {
            0.5 * (a + b)
        };
        let x = if halve {
            mid
        } else {
            a + wa * (b - a) / (wa - wb)
        };
        let x = if x > a && x < b { x } else { mid };
        if !(x > a && x < b) {
            break;
        }
        let e = eval(x);
        if e == 0.0 {
            break;
        }
        let plateau = e == a_e || e == b_e;
        // Illinois: halve the weight of an end kept twice in a row.
        if e > 0.0 {
            (a, a_e, wa) = (x, e, e);
            if side == 1 {
                wb *= 0.5;
            }
            side = 1;
        } else {
            (b, b_e, wb) = (x, e, e);
            if side == -1 {
                wa *= 0.5;
            }
            side = -1;
        }
        halve = plateau || b - a > 0.5 * width;
    }
}

/// Solves for the density `x` whose `lam` keeps the share `d` estimated on
/// the sampled blocks `pieces` (see [`estimate`]), from `start` (a density
/// and a slope), to within `tol`, adding each search of the sample to
/// `searched`. Returns the density, a slope for the next stage (see
/// [`spread_slope`]) and the work spent in full passes.
#[allow(clippy::too_many_arguments)]
fn solve_on_sample(
    s: &Searcher,
    q: &Quantiles,
    pieces: &[(usize, usize)],
    whole: &[(usize, usize)],
    d: f64,
    start: (f64, f64),
    tol: f64,
    searched: &mut Vec<(f64, Vec<Searched>)>,
) -> (f64, f64, f64) {
    let layout = s.layout();
    let n = layout.n_weights as f64;
    let ranges: Vec<_> = pieces
        .iter()
        .map(|&(start, steps)| (start, steps * layout.n_out))
        .collect();
    let weights = ranges.iter().map(|r| r.1).sum::<usize>() as f64;
    let mut cost = 0.0;
    let mut points = Vec::new();
    let f = |x: f64| {
        cost += weights / n;
        let lam = q.lam(x);
        let found = s.pieces(lam, pieces);
        let kept: Vec<_> = found.iter().map(|p| p.0.kept).collect();
        let blocks = pieces.iter().map(|p| p.0 / layout.block_weights());
        searched.push((
            lam,
            blocks.zip(found).map(|(b, (r, w))| (b, r, w)).collect(),
        ));
        let above: Vec<_> = ranges
            .par_iter()
            .map(|&(start, len)| s.scores().count_above(start..start + len, lam))
            .collect();
        let whole = above_all(s, lam, whole) as f64 / n;
        let e = estimate(&kept, &above, whole, layout.block_weights() as f64) - d;
        points.push((x, e));
        e
    };
    let ((x, _), _) = solve(f, start.0, start.1, tol, 12);
    (x, spread_slope(&points).unwrap_or(start.1), cost)
}

/// The least-squares slope of `points` (density, excess) when they span at
/// least 0.01 of density and it is positive. A sample's last secant spans a
/// tiny step between two noisy estimates: handed to the full passes, such a
/// slope sent the first correction far past the root.
fn spread_slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    let (mx, me) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), p| (a + p.0 / n, b + p.1 / n));
    let (mut sxe, mut sxx) = (0.0, 0.0);
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for &(x, e) in points {
        sxe += (x - mx) * (e - me);
        sxx += (x - mx) * (x - mx);
        (lo, hi) = (lo.min(x), hi.max(x));
    }
    let slope = sxe / sxx;
    (hi - lo >= 0.01 && slope.is_finite() && slope > 0.0).then_some(slope)
}

/// Searches the whole tensor at the `lam` in `[0, top]` that prunes
/// closest to `rate` of the weights, writing the index.
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
            // The config's threshold (`2^nc`, past a byte at nc = 8) serves every block.
            thresholds: None,
        });
    }
    let d = 1.0 - rate;
    let q = Quantiles::new(s);
    let whole: Vec<_> = (0..layout.n_blocks())
        .map(|b| (layout.weights(b).start, layout.weights(b).len()))
        .collect();
    let mut full = FullPasses {
        searcher: s,
        target: d,
        scratch: crate::sys::zeros(index.len(), "a trial index")?,
        best_index: crate::sys::zeros(index.len(), "the best index")?,
        best_thresholds: Vec::new(),
        fixed: None,
        points: Vec::new(),
        sampled: Vec::new(),
        best: None,
        passes: 0.0,
    };

    let (mut x, prior_slope) = prior(d);
    // Straight from the prior, the full passes take a steeper first secant:
    // on real layers too small to sample, the kept share moved 1.1-2x as
    // fast as the prior's Gaussian slope on the way to the root, and the
    // second pass overshot by half the first one's miss.
    let mut slope = if first_pieces(&layout).is_some() {
        prior_slope
    } else {
        STEEPER * prior_slope
    };
    let samples = [
        (first_pieces(&layout), FIRST_TOLERANCE),
        (sample_pieces(&layout), SAMPLE_TOLERANCE),
    ];
    for (pieces, tol) in samples {
        let Some(pieces) = pieces else { continue };
        let cost;
        full.sampled.clear();
        (x, slope, cost) = solve_on_sample(
            s,
            &q,
            &pieces,
            &whole,
            d,
            (x, slope),
            tol,
            &mut full.sampled,
        );
        full.passes += cost;
    }
    // One full pass and a few secant corrections (small tensors, or a sample
    // that misled); then, if still off, bisection on full passes. Every
    // tensor aims at FULL_TOLERANCE: large VDs make the kept count jump with
    // `lam` (whole blocks switch paths), and bisecting into such a jump for a
    // tighter aim cost up to 30 passes for nothing the caller asked for.
    let tol = FULL_TOLERANCE;
    solve(|x| full.excess(q.lam(x)), x, slope, tol, 4);
    if full.missed_by() > tol {
        let points = full.points.clone();
        let evals = MAX_PASSES.saturating_sub(points.len());
        bisect(|lam| full.excess(lam), &points, top(s), tol, evals);
    }
    if s.chooses_thresholds() && full.missed_by() > PROMISED {
        // Blocks switching thresholds as `lam` moves make the kept count jump
        // (on small tensors, by more than the tolerance); with the closest
        // pass's thresholds fixed it moves as smoothly as with one threshold.
        let (lam, _, _) = full.best.expect("at least one full pass");
        full.fixed = Some(full.best_thresholds.clone());
        full.points.clear();
        full.excess(lam);
        let points = full.points.clone();
        bisect(|lam| full.excess(lam), &points, top(s), tol, MAX_PASSES / 2);
    }
    let (lam, _, kept) = full.best.expect("at least one full pass");
    index.copy_from_slice(&full.best_index);
    Ok(RateResult {
        lam,
        kept,
        passes: full.passes,
        thresholds: s.chooses_thresholds().then_some(full.best_thresholds),
    })
}

#[cfg(test)]
mod tests;
