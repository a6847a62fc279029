//! Add-compare-select kernels. Every kernel computes, per state, the same
//! float32 operations in the same order (`cand = old + table[pattern]`, keep
//! the later branch only if strictly better), so all give bit-identical
//! results; the fast ones just do it 8 or 16 states at a time.
//!
//! Decision layout (shared with the traceback): state `ns` splits into
//! `u = ns mod 2^n_in` and `i = ns >> n_in`; the `n_in` bits of its choice `p`
//! sit in bit-planes at position `u * 2^(k - n_in) + i`.

/// One step's inputs for the fast kernels (`n_in = 1` with `n_out <= 5`,
/// `n_in = 2` with `n_out <= 10`).
pub(crate) struct Step<'a> {
    /// Metrics of the `2^k` states before the step.
    pub old: &'a [f32],
    /// Keep patterns laid out `[p][u][i]` (each run `2^(k - n_in)` long), as
    /// 32-bit lanes so the kernels load them without widening.
    pub patterns: &'a [u32],
    /// The step's gains (at most `5 n_in`): keep pattern `m` scores the gains
    /// of its bits.
    pub gains: &'a [f32],
}

/// [`Step`] on int16 metrics (`n_in = 1`, `n_out <= 5`).
pub(crate) struct Step16<'a> {
    pub old: &'a [i16],
    /// As [`Step::patterns`], in 16-bit lanes.
    pub patterns: &'a [u16],
    pub gains: &'a [i16],
}

/// The two 32-entry tables of an `n_in = 2` step: pattern `m` scores
/// `lo[m & 31] + hi[m >> 5]`, the subset sums of gains 0..5 and 5..10.
pub(crate) fn half_tables(gains: &[f32]) -> ([f32; 32], [f32; 32]) {
    let (mut lo, mut hi) = ([0.0f32; 32], [0.0f32; 32]);
    let cut = gains.len().min(5);
    subset_sums(&gains[..cut], &mut lo);
    subset_sums(&gains[cut..], &mut hi);
    (lo, hi)
}

/// Subset sums of `g` (at most 8 gains): `sums[m]` is the metric of keep
/// pattern `m`, adding the gains of its bits from the highest down.
pub(crate) fn subset_sums(g: &[f32], sums: &mut [f32]) {
    sums[0] = 0.0;
    for m in 1..1usize << g.len() {
        sums[m] = sums[m & (m - 1)] + g[m.trailing_zeros() as usize];
    }
}

/// The plain per-state version of [`crate::arch::acs::step1`]: the
/// reference for the others.
pub(crate) fn step1_portable(st: &Step, new: &mut [f32], dec: &mut [u64]) {
    let h = st.old.len() / 2;
    let mut table = [0.0f32; 32];
    subset_sums(st.gains, &mut table);
    dec.fill(0);
    for u in 0..2 {
        let pat0 = &st.patterns[u * h..(u + 1) * h];
        let pat1 = &st.patterns[(2 + u) * h..(3 + u) * h];
        for i in 0..h {
            let c0 = st.old[i] + table[pat0[i] as usize];
            let c1 = st.old[h + i] + table[pat1[i] as usize];
            let take1 = c1 > c0;
            new[(i << 1) | u] = if take1 { c1 } else { c0 };
            let pos = u * h + i;
            dec[pos / 64] |= u64::from(take1) << (pos % 64);
        }
    }
}

/// The plain per-state version of [`crate::arch::acs::step2`] (`n_in = 2`):
/// the four branches compared as a tournament, (0 against 1, 2 against 3,
/// then the winners), each later one taken only if strictly better, which
/// keeps the lowest `p` among equal maxima as the general step does.
pub(crate) fn step2_portable(st: &Step, new: &mut [f32], dec: &mut [u64]) {
    let q = st.old.len() / 4;
    let (lo, hi) = half_tables(st.gains);
    let plane = st.old.len() / 64;
    dec.fill(0);
    for u in 0..4 {
        for i in 0..q {
            let c = |p: usize| {
                let m = st.patterns[(4 * p + u) * q + i] as usize;
                st.old[p * q + i] + (lo[m & 31] + hi[m >> 5])
            };
            let pick = |a: (f32, usize), b: (f32, usize)| if b.0 > a.0 { b } else { a };
            let (best, p) = pick(pick((c(0), 0), (c(1), 1)), pick((c(2), 2), (c(3), 3)));
            new[(i << 2) | u] = best;
            let pos = u * q + i;
            for b in 0..2 {
                dec[b * plane + pos / 64] |= (((p >> b) & 1) as u64) << (pos % 64);
            }
        }
    }
}
