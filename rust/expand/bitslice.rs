//! Bit-sliced expansion: 512 steps of the VD per AVX-512 vector instead of one.
//!
//! Every block starts in state 0, so the register at step `t` is just a window
//! of the input stream: bit `n_in*i + m` of `r` is stream bit `(t-i)*n_in + m`
//! (0 before the block's start). Split the stream into `n_in` input planes
//! (`U_m`, bit `t` = stream bit `t*n_in + m`); then gate `g` over many steps is
//! the XOR, over the set bits `p` of `taps[g]`, of plane `p % n_in` delayed by
//! `p / n_in` steps. Nothing but the previous vector of each plane carries
//! from one vector of steps to the next. The comparator `v < K` runs on these
//! gate vectors bit-sliced, and the `n_out` resulting keep planes (plane `j`,
//! bit `t` = weight `t*n_out + j`) are interleaved into weight order.
//!
//! Gates read their taps four at a time (the "four Russians" trick): per
//! group of four delayed planes, a table of all 16 XOR combinations, so every
//! gate is one lookup per group, with no loop over its set bits for the
//! branch predictor to miss.
//!
//! The interleave is what bounds `n_out`: one output word of 64 weights
//! gathers its bits from the 64-step words of all planes at once, which two
//! vectors hold for up to 16 planes. Wider steps yield so many weights per
//! table lookup that the step loop keeps up (at 16 the two are about even).

// Only the x86-64 kernel (in `crate::arch::bitslice`) reads the tables.
#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]

use crate::vd::{VdConfig, MAX_FLIP_FLOPS, MAX_N_IN};

/// Most register bits a tap mask can read: `k + n_in`.
const MAX_TAP_BITS: usize = (MAX_FLIP_FLOPS + MAX_N_IN) as usize;
/// Groups of four tap bits.
pub(crate) const MAX_GROUPS: usize = MAX_TAP_BITS.div_ceil(4);
/// Entries of all the groups' XOR tables.
pub(crate) const TABLE: usize = 16 * MAX_GROUPS;
/// The widest step the interleave handles.
pub(crate) const MAX_N_OUT: usize = 16;

/// One bit of one output's comparator, visited from the most significant down.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CmpBit {
    /// The gate's entry in each group's XOR table, `16 * group + nibble`
    /// where the nibble is the group's four tap bits, as a byte offset into
    /// tables of 64-byte vectors. A zero nibble reads entry 0 (the XOR of
    /// nothing), so gates read only filled tables, all below `TABLE`.
    pub rows: [u16; MAX_GROUPS],
    /// The threshold's bit at this position.
    pub k_bit: bool,
}

/// A config's gates, comparator and interleave pattern, laid out for the
/// bit-sliced kernel.
pub(crate) struct BitSlicer {
    pub n_in: usize,
    pub n_out: usize,
    /// For tap bit `p` (of `k + n_in`): the input plane and delay it reads.
    pub sources: Vec<(usize, u32)>,
    /// Groups of four tap bits (the last padded with planes that stay 0).
    pub groups: usize,
    /// `n_out` runs of `per_output` comparator bits; empty when `K = 2^nc`.
    pub cmp: Vec<CmpBit>,
    pub per_output: usize,
    pub keeps_all: bool,
    /// `pext` mask and destination shift taking input plane `m` out of stream
    /// word `i` of a 64-step chunk, at `i * n_in + m` (unused for `n_in = 1`).
    pub deint: Vec<(u64, u32)>,
    /// 64 steps are exactly `n_out` output words; for each, the byte shuffle
    /// and bit selection that build it (see [`lane_schedule`]).
    pub lanes: Vec<[[u8; 64]; 2]>,
}

impl BitSlicer {
    /// The kernel's tables for `config`, if its steps are narrow enough.
    pub fn new(config: &VdConfig) -> Option<Self> {
        let (n_in, n_out) = (config.n_in() as usize, config.n_out() as usize);
        if n_out > MAX_N_OUT {
            return None;
        }
        let nc = config.comparator_bits() as usize;
        // Comparator bits below the threshold's lowest set bit only narrow
        // the "equal so far" set, which nothing reads afterwards. `K = 2^nc`
        // leaves no bit at all.
        let lowest = config.threshold().trailing_zeros() as usize;
        let per_output = nc.saturating_sub(lowest);
        let cmp = config
            .taps()
            .chunks_exact(nc)
            .flat_map(|gates| {
                (lowest..nc).rev().map(|b| CmpBit {
                    rows: std::array::from_fn(|g| match (gates[b] >> (4 * g)) & 15 {
                        0 => 0,
                        nibble => 64 * ((16 * g) as u16 + nibble as u16),
                    }),
                    k_bit: (config.threshold() >> b) & 1 == 1,
                })
            })
            .collect();
        let width = (config.flip_flops() + config.n_in()) as usize;
        Some(Self {
            n_in,
            n_out,
            sources: (0..width).map(|p| (p % n_in, (p / n_in) as u32)).collect(),
            groups: width.div_ceil(4),
            cmp,
            per_output,
            keeps_all: config.keeps_all(),
            deint: deinterleave_masks(n_in),
            lanes: lane_schedule(n_out),
        })
    }

    /// Output `j`'s comparator bits, most significant first.
    pub(crate) fn cmp_bits(&self, j: usize) -> &[CmpBit] {
        &self.cmp[j * self.per_output..(j + 1) * self.per_output]
    }
}

/// The `pext` masks splitting the `n_in` stream words of a 64-step chunk into
/// input planes, with the shift placing each word's share in its plane.
fn deinterleave_masks(n_in: usize) -> Vec<(u64, u32)> {
    let mut filled = vec![0u32; n_in];
    let mut masks = Vec::with_capacity(n_in * n_in);
    for i in 0..n_in {
        for (m, f) in filled.iter_mut().enumerate() {
            let mask = (0..64)
                .filter(|b| (64 * i + b) % n_in == m)
                .fold(0u64, |acc, b| acc | 1 << b);
            masks.push((mask, *f));
            *f += mask.count_ones();
        }
    }
    masks
}

/// For each of the `n_out` output words of a 64-step chunk (weight `64o + q`
/// is step `t = (64o + q) / n_out` of plane `j = (64o + q) % n_out`): with the
/// planes' chunk words side by side (plane `j` at bytes `8j ..`), a byte
/// shuffle that puts the byte holding output bit `q`'s source at byte `q`,
/// and the index of that bit within byte `q`'s 64-bit lane.
fn lane_schedule(n_out: usize) -> Vec<[[u8; 64]; 2]> {
    (0..n_out)
        .map(|o| {
            let (mut shuffle, mut select) = ([0u8; 64], [0u8; 64]);
            for q in 0..64 {
                let (t, j) = ((64 * o + q) / n_out, (64 * o + q) % n_out);
                shuffle[q] = (8 * j + t / 8) as u8;
                select[q] = (8 * (q % 8) + t % 8) as u8;
            }
            [shuffle, select]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::vd::step::reference_bits;
    use crate::vd::SplitMix64;
    use crate::{Decoder, Expander, Layout, VdConfig};

    /// Block `b`'s mask bits from the plain step loop.
    fn reference(cfg: &VdConfig, layout: &Layout, index: &[u64], b: usize) -> Vec<u64> {
        let words = &index[layout.words(b)];
        reference_bits(cfg, words, layout.steps(b), layout.weights(b).len())
    }

    /// A random valid config (docs/format.md, "The Viterbi decompressor"), with `n_out <= 16` and `K = 2^nc` often.
    fn random_config(rng: &mut SplitMix64) -> VdConfig {
        let mut pick = |lo: u64, hi: u64| (lo + rng.next() % (hi - lo + 1)) as u32;
        let k = pick(1, 16);
        let n_in = pick(1, k.min(4) as u64);
        let n_out = if pick(0, 3) == 0 {
            pick(1, 64)
        } else {
            pick(1, 16)
        };
        let nc = pick(1, 8);
        let threshold = if pick(0, 4) == 0 {
            1 << nc
        } else {
            pick(1, 1 << nc)
        };
        let seed = rng.next();
        VdConfig::from_seed(k, n_in, n_out, nc, threshold, seed).unwrap()
    }

    #[test]
    fn every_decoder_matches_the_step_reference() {
        let mut rng = SplitMix64::new(0x5EED);
        let mut checked = [0usize; 2];
        let decoders: Vec<Decoder> = Decoder::all()
            .into_iter()
            .filter(|d| d.available())
            .collect();
        for case in 0..400 {
            let cfg = random_config(&mut rng);
            let n_out = cfg.n_out() as usize;
            let block_steps = [
                1,
                63,
                64,
                65,
                511,
                512,
                513,
                1024,
                1 + rng.next() as usize % 1500,
            ][case % 9];
            let n_weights = 1 + rng.next() as usize % (3 * block_steps * n_out);
            let layout = Layout::new(&cfg, n_weights, block_steps).unwrap();
            let index: Vec<u64> = (0..layout.index_len()).map(|_| rng.next()).collect();
            for &decoder in decoders.iter().filter(|d| d.supports(n_out)) {
                let e = Expander::new(&cfg, layout).with_decoder(decoder);
                // Garbage in the scratch: every word read back must be written.
                let mut bits = vec![!0u64; e.bits_words()];
                for b in 0..layout.n_blocks() {
                    let nw = e.block_bits(&index, b, &mut bits);
                    let want = reference(&cfg, &layout, &index, b);
                    assert_eq!(
                        &bits[..=nw],
                        &want[..],
                        "{decoder:?}, {cfg:?}, {layout:?}, block {b}"
                    );
                }
                checked[decoder as usize] += 1;
            }
        }
        // Every decoder this CPU runs saw most of the configs.
        for d in decoders {
            assert!(checked[d as usize] > 250, "{d:?}: {checked:?}");
        }
    }
}
