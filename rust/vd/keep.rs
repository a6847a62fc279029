//! A VD step's keep bits without a table and without looping over gates.
//!
//! Gate `g` outputs `parity(r & taps[g])`, which is linear in `r` over GF(2):
//! the gates of `r` are the XOR of the gates of its set bits. Laid out as
//! `comparator_bits` planes (plane `b`, bit `j` = gate `j*nc + b`), the
//! gates of each 4-bit group of `r` are one of 16 precomputed planes sets,
//! so a step costs at most five lookups, and the comparator `v[j] < K` runs
//! on all `n_out` outputs at once, bit-sliced over the planes. This is what
//! makes a wide config (`n_out = 64`, `nc = 8`: 512 gates) cost a few dozen
//! operations per step rather than hundreds, and its full keep table a
//! fraction of a second at `k + n_in = 20`.

use crate::vd::{VdConfig, MAX_COMPARATOR_BITS, MAX_FLIP_FLOPS, MAX_N_IN};

const MAX_GROUPS: usize = (MAX_FLIP_FLOPS + MAX_N_IN).div_ceil(4) as usize;
const PLANES: usize = MAX_COMPARATOR_BITS as usize;

/// [`VdConfig::keep_bits`], computed by group lookups (bit-identical).
pub struct FastKeep {
    /// `16 * group + nibble`: the gate planes of the register value `nibble << 4 * group`.
    groups: Vec<[u64; PLANES]>,
    n_groups: usize,
    nc: usize,
    threshold: u32,
    /// The low `n_out` bits.
    outputs: u64,
    keeps_all: bool,
}

impl FastKeep {
    pub fn new(config: &VdConfig) -> Self {
        let nc = config.comparator_bits() as usize;
        let width = (config.flip_flops() + config.n_in()) as usize;
        let n_groups = width.div_ceil(4);
        debug_assert!(n_groups <= MAX_GROUPS);
        // The planes of register bit `p` alone.
        let column = |p: usize| {
            let mut planes = [0u64; PLANES];
            for (j, gates) in config.taps().chunks_exact(nc).enumerate() {
                for (b, &t) in gates.iter().enumerate() {
                    planes[b] |= u64::from((t >> p) & 1) << j;
                }
            }
            planes
        };
        let mut groups = vec![[0u64; PLANES]; 16 * n_groups];
        for g in 0..n_groups {
            for bit in 0..4 {
                let p = 4 * g + bit;
                if p >= width {
                    break;
                }
                let col = column(p);
                // Every nibble with this bit set is the nibble without it, plus `col`.
                for x in (1usize << bit)..(2 << bit) {
                    let base = groups[16 * g + (x ^ (1 << bit))];
                    groups[16 * g + x] = std::array::from_fn(|b| base[b] ^ col[b]);
                }
            }
        }
        let n_out = config.n_out();
        Self {
            groups,
            n_groups,
            nc,
            threshold: config.threshold(),
            outputs: if n_out == 64 { !0 } else { (1u64 << n_out) - 1 },
            keeps_all: config.keeps_all(),
        }
    }

    /// The step's keep bits for register value `r`.
    #[inline]
    pub fn keep_bits(&self, r: u32) -> u64 {
        if self.keeps_all {
            return self.outputs;
        }
        let mut p = [0u64; PLANES];
        for g in 0..self.n_groups {
            let t = &self.groups[16 * g + ((r >> (4 * g)) & 15) as usize];
            for b in 0..PLANES {
                p[b] ^= t[b];
            }
        }
        // v < K from the most significant bit down: below once K has a 1
        // where v has a 0 and all higher bits are equal.
        let (mut lt, mut eq) = (0u64, self.outputs);
        for b in (0..self.nc).rev() {
            if (self.threshold >> b) & 1 == 1 {
                lt |= eq & !p[b];
                eq &= p[b];
            } else {
                eq &= !p[b];
            }
        }
        lt
    }

    /// The keep bits of every register value `0 .. 2^(k + n_in)`.
    pub fn table(&self, width: u32) -> Vec<u64> {
        (0..1u32 << width).map(|r| self.keep_bits(r)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_the_gate_by_gate_definition() {
        for (k, n_in, n_out, nc) in [
            (1, 1, 1, 1),
            (3, 2, 7, 3),
            (8, 1, 5, 5),
            (12, 4, 64, 8),
            (16, 4, 64, 8),
            (16, 1, 33, 2),
        ] {
            for threshold in [1, (1 << nc) / 2 + 1, 1 << nc] {
                let c = VdConfig::from_seed(k, n_in, n_out, nc, threshold.max(1), 5).unwrap();
                let fast = FastKeep::new(&c);
                let width = k + n_in;
                let mut r = 0x9E37_79B9u32;
                for i in 0..4000u32 {
                    let x = if width <= 12 { i } else { r };
                    let x = x & ((1 << width) - 1);
                    assert_eq!(fast.keep_bits(x), c.keep_bits(x), "{c:?} r = {x}");
                    r = r.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                }
            }
        }
    }
}
