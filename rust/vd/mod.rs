//! The Viterbi decompressor (VD), v1 semantics (docs/format.md, "The Viterbi
//! decompressor"): its config, the keep bits of one step (`keep` evaluates
//! them fast) and the plain step loop ([`step`]).
//!
//! One step with state `s` (k bits) and input `u` (n_in bits):
//! `r = (s << n_in) | u`, gate `g` outputs `parity(r & taps[g])`, output `j`
//! reads gates `j*nc .. j*nc + nc` as a little-endian number `v[j]` and keeps
//! its weight iff `v[j] < K`; then `s = r & (2^k - 1)`.
//!
//! Everything downstream only needs the map from the register value `r` to the
//! step's `n_out` keep bits, so [`VdConfig::keep_table`] tabulates it once.

pub(crate) mod keep;
pub mod step;
mod thresholds;

pub(crate) use thresholds::block_threshold_range;
pub use thresholds::{check_thresholds, MAX_BLOCK_THRESHOLD};

use crate::{bail, Result};

pub const MAX_FLIP_FLOPS: u32 = 16;
pub const MAX_N_IN: u32 = 4;
/// One step's keep bits live in a `u64`.
pub const MAX_N_OUT: u32 = 64;
pub const MAX_COMPARATOR_BITS: u32 = 8;

/// A validated VD: register size, step widths, comparator and explicit taps.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct VdConfig {
    flip_flops: u32,
    n_in: u32,
    n_out: u32,
    comparator_bits: u32,
    threshold: u32,
    taps: Vec<u32>,
}

impl VdConfig {
    /// Checks every parameter against the ranges of docs/format.md, "The
    /// Viterbi decompressor".
    pub fn new(
        flip_flops: u32,
        n_in: u32,
        n_out: u32,
        comparator_bits: u32,
        threshold: u32,
        taps: Vec<u32>,
    ) -> Result<Self> {
        check_shape(flip_flops, n_in, n_out, comparator_bits, threshold)?;
        let gates = (n_out * comparator_bits) as usize;
        if taps.len() != gates {
            bail!(
                "taps: expected n_out * comparator_bits = {gates} tap masks, got {}",
                taps.len()
            );
        }
        let width = flip_flops + n_in;
        for (g, &t) in taps.iter().enumerate() {
            if t == 0 || (t >> width) != 0 {
                bail!("taps[{g}] = {t}: a tap mask must be non-zero and below 2^(flip_flops + n_in) = {}", 1u64 << width);
            }
        }
        Ok(Self {
            flip_flops,
            n_in,
            n_out,
            comparator_bits,
            threshold,
            taps,
        })
    }

    /// A config whose taps come from [`generate_taps`] with `seed`.
    pub fn from_seed(
        flip_flops: u32,
        n_in: u32,
        n_out: u32,
        comparator_bits: u32,
        threshold: u32,
        seed: u64,
    ) -> Result<Self> {
        check_shape(flip_flops, n_in, n_out, comparator_bits, threshold)?;
        let taps = generate_taps(flip_flops, n_in, n_out, comparator_bits, seed);
        Self::new(flip_flops, n_in, n_out, comparator_bits, threshold, taps)
    }

    pub fn flip_flops(&self) -> u32 {
        self.flip_flops
    }
    pub fn n_in(&self) -> u32 {
        self.n_in
    }
    pub fn n_out(&self) -> u32 {
        self.n_out
    }
    pub fn comparator_bits(&self) -> u32 {
        self.comparator_bits
    }
    pub fn threshold(&self) -> u32 {
        self.threshold
    }
    pub fn taps(&self) -> &[u32] {
        &self.taps
    }

    /// This config with comparator threshold `threshold` (the config of a
    /// block with its own threshold, docs/format.md, "Thresholds per block").
    pub fn with_threshold(&self, threshold: u32) -> Result<Self> {
        check_shape(
            self.flip_flops,
            self.n_in,
            self.n_out,
            self.comparator_bits,
            threshold,
        )?;
        Ok(Self {
            threshold,
            ..self.clone()
        })
    }

    /// `2^k`, the number of trellis states.
    pub fn n_states(&self) -> usize {
        1 << self.flip_flops
    }

    /// True when the comparator keeps every weight whatever the input.
    pub fn keeps_all(&self) -> bool {
        self.threshold == 1 << self.comparator_bits
    }

    /// The step's keep bits (bit `j` for output `j`) for register value `r`.
    pub fn keep_bits(&self, r: u32) -> u64 {
        let nc = self.comparator_bits as usize;
        let mut bits = 0u64;
        for (j, gates) in self.taps.chunks_exact(nc).enumerate() {
            let v = gates
                .iter()
                .enumerate()
                .fold(0u32, |v, (b, &t)| v | ((r & t).count_ones() & 1) << b);
            bits |= u64::from(v < self.threshold) << j;
        }
        bits
    }

    /// [`keep_bits`](Self::keep_bits) for every `r` in `0 .. 2^(k + n_in)`.
    pub fn keep_table(&self) -> Vec<u64> {
        keep::FastKeep::new(self).table(self.flip_flops + self.n_in)
    }
}

fn check_shape(k: u32, n_in: u32, n_out: u32, nc: u32, threshold: u32) -> Result<()> {
    if !(1..=MAX_FLIP_FLOPS).contains(&k) {
        bail!("flip_flops = {k}: must be in 1..={MAX_FLIP_FLOPS}");
    }
    if !(1..=MAX_N_IN).contains(&n_in) {
        bail!("n_in = {n_in}: must be in 1..={MAX_N_IN}");
    }
    if n_in > k {
        bail!("n_in = {n_in} exceeds flip_flops = {k}: need n_in <= flip_flops");
    }
    if !(1..=MAX_N_OUT).contains(&n_out) {
        bail!("n_out = {n_out}: must be in 1..={MAX_N_OUT} (ratio * n_in)");
    }
    if !(1..=MAX_COMPARATOR_BITS).contains(&nc) {
        bail!("comparator_bits = {nc}: must be in 1..={MAX_COMPARATOR_BITS}");
    }
    if !(1..=1u32 << nc).contains(&threshold) {
        bail!(
            "threshold = {threshold}: must be in 1..=2^comparator_bits = {}",
            1u32 << nc
        );
    }
    Ok(())
}

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, well mixed, and trivially
/// reimplemented, which is what a pinned tap generator needs.
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// The pinned tap generator (v1). A SplitMix64 stream starts at `seed`; gate
/// `g = 0, 1, ..` takes the high 32 bits of the next output, masked to
/// `k + n_in` bits, and draws again until the mask touches at least one input
/// bit (bits `0 .. n_in`), so every gate sees the step's input.
pub fn generate_taps(k: u32, n_in: u32, n_out: u32, nc: u32, seed: u64) -> Vec<u32> {
    let width_mask = (1u64 << (k + n_in)) - 1;
    let input_mask = (1u64 << n_in) - 1;
    let mut rng = SplitMix64::new(seed);
    (0..n_out * nc)
        .map(|_| loop {
            let t = (rng.next() >> 32) & width_mask;
            if t & input_mask != 0 {
                break t as u32;
            }
        })
        .collect()
}

/// The default comparator for a target density `d = 1 - rate`, chosen from
/// measurements (README, "Choosing the comparator"): aim the comparator's keep
/// share `K / 2^nc` at `d`, raised by up to 25 % as the rate goes from 0.9 to
/// 0.95 (measured: a looser comparator helps there, not below); take the fewest bits
/// `nc >= 5` whose nearest fraction is within 3 % of that target (relative to
/// `min(t, 1 - t)`), else the closest fraction over all `nc`. More bits than
/// the bare minimum measurably help at every rate. Rate 0 gives `K = 2^nc`.
pub fn default_comparator(rate: f64) -> (u32, u32) {
    let d = (1.0 - rate).clamp(0.0, 1.0);
    if d >= 1.0 {
        return (1, 2);
    }
    let t = (d * (1.0 + 0.25 * ((rate - 0.9) / 0.05).clamp(0.0, 1.0))).min(1.0);
    let tolerance = 0.03 * t.min(1.0 - t);
    let mut best = (1, 2, f64::INFINITY);
    for nc in 1..=MAX_COMPARATOR_BITS {
        let levels = f64::from(1u32 << nc);
        let k = (t * levels).round().clamp(1.0, levels);
        let err = (k / levels - t).abs();
        if nc >= 5 && err <= tolerance {
            return (nc, k as u32);
        }
        if err < best.2 {
            best = (nc, k as u32, err);
        }
    }
    (best.0, best.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_taps_see_the_input_and_fit() {
        for (k, n_in) in [(1, 1), (4, 2), (10, 1), (16, 4)] {
            let taps = generate_taps(k, n_in, 5 * n_in, 5, 7);
            assert_eq!(taps.len(), (25 * n_in) as usize);
            for t in taps {
                assert!(t & ((1 << n_in) - 1) != 0);
                assert!(t >> (k + n_in) == 0);
            }
        }
    }

    #[test]
    fn generator_is_pinned() {
        // The first SplitMix64 outputs for seed 0 are published reference values.
        let mut rng = SplitMix64::new(0);
        assert_eq!(rng.next(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn bad_configs_are_refused() {
        assert!(VdConfig::from_seed(0, 1, 5, 1, 1, 0).is_err());
        assert!(VdConfig::from_seed(17, 1, 5, 1, 1, 0).is_err());
        assert!(VdConfig::from_seed(2, 3, 5, 1, 1, 0).is_err());
        assert!(VdConfig::from_seed(10, 1, 65, 1, 1, 0).is_err());
        assert!(VdConfig::from_seed(10, 1, 5, 9, 1, 0).is_err());
        assert!(VdConfig::from_seed(10, 1, 5, 2, 5, 0).is_err());
        assert!(VdConfig::new(2, 1, 1, 1, 1, vec![8]).is_err());
        assert!(VdConfig::new(2, 1, 1, 1, 1, vec![0]).is_err());
        assert!(VdConfig::new(2, 1, 1, 1, 1, vec![1, 2]).is_err());
    }

    #[test]
    fn default_comparator_tracks_density() {
        assert_eq!(default_comparator(0.0), (1, 2));
        assert_eq!(default_comparator(0.5), (5, 16));
        assert_eq!(default_comparator(0.9), (7, 13));
        // Above 0.9 the target share is raised, by 25 % at 0.95.
        assert_eq!(default_comparator(0.95), (5, 2));
        // Out of 8 bits' reach: the closest fraction.
        assert_eq!(default_comparator(0.99), (8, 3));
        for rate in [0.3, 0.7, 0.8, 0.9] {
            let (nc, k) = default_comparator(rate);
            let d = f64::from(k) / f64::from(1u32 << nc);
            assert!(nc >= 5, "{rate}");
            assert!(
                (d - (1.0 - rate)).abs() <= 0.03 * (1.0 - rate) + 1e-12,
                "{rate}"
            );
        }
    }
}
