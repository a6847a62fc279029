//! The density domain rate control searches in, and the hash that places
//! its samples.

use crate::Searcher;

/// Maps a magnitude-pruning density `q` in `[0, 1]` to the score threshold
/// that keeps that share of a sample of the scores, linear between sample
/// points, with `q = 1` at 0 and `q = 0` at [`top`], so `lam` never leaves
/// `[0, max score]` (but for that one step). The VD's kept share is close to linear in `q`, so
/// root finding in `q` needs few searches.
pub(super) struct Quantiles(Vec<f64>);

impl Quantiles {
    /// One score drawn at a hashed position from each of `2^16` equal strata:
    /// a fixed stride would alias with periodic tensors (a stride that is a
    /// multiple of a filter's length samples one tap only).
    pub(super) fn new(s: &Searcher) -> Self {
        let n = s.layout().n_weights;
        let m = n.min(1 << 16);
        let mut xs: Vec<f64> = (0..m)
            .map(|i| {
                let (start, end) = (i * n / m, (i + 1) * n / m);
                s.scores()
                    .get(start + (mix(i as u64) % (end - start) as u64) as usize)
            })
            .collect();
        xs.push(0.0);
        xs.push(top(s));
        xs.sort_unstable_by(f64::total_cmp);
        Self(xs)
    }

    pub(super) fn lam(&self, q: f64) -> f64 {
        let xs = &self.0;
        let last = xs.len() - 1;
        let p = (1.0 - q.clamp(0.0, 1.0)) * last as f64;
        let i = (p as usize).min(last - 1);
        xs[i] + (p - i as f64) * (xs[i + 1] - xs[i])
    }
}

/// The largest `lam` tried: one step above the largest score, so that
/// weights tied at the top gain (slightly) less than nothing and are pruned
/// where the VD can prune them (a constant tensor otherwise keeps everything).
pub(super) fn top(s: &Searcher) -> f64 {
    s.max_score().next_up()
}

/// SplitMix64's output function: a fixed, well-spread hash of `i`.
pub(super) fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
