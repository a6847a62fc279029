//! Integer metrics (docs/algorithm.md, "Integer metrics"): a block's gains
//! rounded to multiples of a step, so add-compare-select can run on int16
//! lanes, twice as many per vector as float32.
//!
//! Two checks make it exact in the sense the search promises:
//!
//! - **Range, before the block runs.** Every state is reached from the best
//!   state `L` steps earlier (`L = k / n_in`, the register's length), so at
//!   any step the metrics lie within the sum, over the last `L` steps, of
//!   each step's branch range (the sum of its gains' magnitudes). Two
//!   candidates compared at a state differ by at most that plus the current
//!   step's range. If every window of `L + 1` steps sums to at most
//!   `i16::MAX`, the wrapped int16 difference of two candidates is their
//!   true difference, so the int16 kernel takes the decisions exact integer
//!   arithmetic would, with no renormalising.
//! - **Tolerance, after it ran.** With `e_i = g_i - step * q_i`, the mask
//!   `M` optimal for the integers scores at most
//!   `sum_{i not in M} max(e_i, 0) + sum_{i in M} max(-e_i, 0)` below the
//!   true optimum (the integer optimum is at least the true optimum's
//!   integer score). The search keeps the mask only when that bound is
//!   within the tolerance, `1e-3 * sum |g_i|`; otherwise the block is
//!   searched again in float32.
//!
//! Before the int16 steps the block's first `L` steps run in float32 on the
//! same integers (exact below 2^24), which also gives unreached states their
//! `-inf`.

/// The step as a multiple of the block's mean |gain|. The tolerance bound
/// then averages 7/8 of the tolerance (each `e_i` is uniform within half a
/// step, and counts only with one sign) and varies by about 2 % over a block
/// of 5120 weights; a larger step would fit more blocks in range but fail
/// the tolerance more often.
const STEP: f64 = 7e-3;

/// The tolerance of the search objective (docs/algorithm.md).
const TOLERANCE: f64 = 1e-3;

/// `x` to the nearest integer, ties to even, for `|x| < 2^51` (larger ones
/// fail the range check whatever they round to): adding and subtracting
/// `1.5 * 2^52` rounds in the FPU's default mode, one instruction each where
/// `f64::round` is a library call on the baseline instruction set.
fn round(x: f64) -> f64 {
    const MAGIC: f64 = 6_755_399_441_055_744.0;
    (x + MAGIC) - MAGIC
}

/// The sum of `f(g, &mut q)` over `gains` and `q` in float64, in eight
/// lanes added in a fixed order: one chain of additions would take most of
/// the block's time, eight vectorise.
#[inline(always)]
fn lanes(gains: &[f32], q: &mut [f32], f: impl Fn(f64, &mut f32) -> f64) -> f64 {
    let mut acc = [0.0f64; 8];
    let (mut g8, mut q8) = (gains.chunks_exact(8), q.chunks_exact_mut(8));
    for (g, q) in (&mut g8).zip(&mut q8) {
        for j in 0..8 {
            acc[j] += f(f64::from(g[j]), &mut q[j]);
        }
    }
    for (j, (&g, q)) in g8.remainder().iter().zip(q8.into_remainder()).enumerate() {
        acc[j] += f(f64::from(g), q);
    }
    acc.iter().sum()
}

/// A block's gains as integers, with what the tolerance check needs.
pub(super) struct Quantised {
    step: f64,
    /// `sum max(e_i, 0)` over the block.
    excess: f64,
    /// `TOLERANCE * sum |g_i|`.
    allowed: f64,
}

impl Quantised {
    /// Rounds `gains` (`n_out` per step, `valid` of them real, the rest 0)
    /// into `q` (integers, as float32) when the int16 range check holds for
    /// a register of `window` steps. Inlined into the search's kernel, so it
    /// is compiled for the CPU's level; the sums run in eight fixed lanes,
    /// which vectorise and give the same bits on every level.
    #[inline(always)]
    pub(super) fn new(
        gains: &[f32],
        n_out: usize,
        valid: usize,
        window: usize,
        q: &mut [f32],
    ) -> Option<Self> {
        let q = &mut q[..gains.len()];
        let total = lanes(gains, q, |g, _| g.abs());
        let step = if total > 0.0 {
            STEP * total / valid.max(1) as f64
        } else {
            1.0
        };
        let inv = 1.0 / step;
        let excess = lanes(gains, q, |g, q| {
            let v = round(g * inv);
            *q = v as f32;
            (g - step * v).max(0.0)
        });
        // The sum of the branch ranges of the last `window + 1` steps.
        let range = |t: usize| {
            let q = &q[t * n_out..(t + 1) * n_out];
            q.iter().map(|&v| f64::from(v).abs()).sum::<f64>()
        };
        let mut run = 0.0;
        for t in 0..gains.len() / n_out {
            run += range(t);
            if t > window {
                run -= range(t - window - 1);
            }
            if run > f64::from(i16::MAX) {
                return None;
            }
        }
        Some(Self {
            step,
            excess,
            allowed: TOLERANCE * total,
        })
    }

    /// True when the integer optimum's mask, whose kept gains sum to `kept`
    /// and kept integers to `kept_q`, scores within the tolerance of the true
    /// optimum.
    pub(super) fn holds(&self, kept: f64, kept_q: f64) -> bool {
        // sum over kept e_i = kept - step * kept_q.
        self.excess - (kept - self.step * kept_q) <= self.allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_check_sums_windows_of_the_register_length_plus_one() {
        // Steps of one gain, all equal, so each rounds to 1 / STEP and a
        // window of `fits` steps is the most int16 holds; the block is two
        // windows long, so the sum must also slide.
        let per = (1.0 / STEP).round();
        let fits = (f64::from(i16::MAX) / per).floor() as usize;
        let n = 2 * fits;
        let (gains, mut q) = (vec![1.0f32; n], vec![0.0f32; n]);
        assert!(Quantised::new(&gains, 1, n, fits - 1, &mut q).is_some());
        assert!(q.iter().all(|&v| f64::from(v) == per));
        assert!(Quantised::new(&gains, 1, n, fits, &mut q).is_none());
    }

    #[test]
    fn tolerance_bound_counts_the_unfavourable_errors() {
        let gains = [0.3f32, -0.7, 1.1, -0.05];
        let mut q = [0.0f32; 4];
        let z = Quantised::new(&gains, 2, 4, 1, &mut q).unwrap();
        let e: Vec<f64> = gains
            .iter()
            .zip(q)
            .map(|(&g, q)| f64::from(g) - z.step * f64::from(q))
            .collect();
        // Keeping weights 0 and 2: the bound is e_1^+ + e_3^+ + e_0^- + e_2^-.
        let want = e[1].max(0.0) + e[3].max(0.0) + (-e[0]).max(0.0) + (-e[2]).max(0.0);
        let kept = f64::from(gains[0]) + f64::from(gains[2]);
        let kept_q = f64::from(q[0]) + f64::from(q[2]);
        let got = z.excess - (kept - z.step * kept_q);
        assert!((got - want).abs() < 1e-12, "{got} {want}");
        assert_eq!(z.holds(kept, kept_q), want <= z.allowed);
    }
}
