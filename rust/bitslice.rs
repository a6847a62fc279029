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

// Only the x86-64 kernel reads the tables.
#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]

use crate::vd::{VdConfig, MAX_FLIP_FLOPS, MAX_N_IN};

/// Most register bits a tap mask can read: `k + n_in`.
const MAX_TAP_BITS: usize = (MAX_FLIP_FLOPS + MAX_N_IN) as usize;
/// Groups of four tap bits.
const MAX_GROUPS: usize = MAX_TAP_BITS.div_ceil(4);
/// Entries of all the groups' XOR tables.
const TABLE: usize = 16 * MAX_GROUPS;
/// The widest step the interleave handles.
pub(crate) const MAX_N_OUT: usize = 16;

/// One bit of one output's comparator, visited from the most significant down.
#[derive(Clone, Copy, Debug)]
struct CmpBit {
    /// The gate's entry in each group's XOR table, `16 * group + nibble`
    /// where the nibble is the group's four tap bits, as a byte offset into
    /// tables of 64-byte vectors. A zero nibble reads entry 0 (the XOR of
    /// nothing), so gates read only filled tables, all below `TABLE`.
    rows: [u16; MAX_GROUPS],
    /// The threshold's bit at this position.
    k_bit: bool,
}

/// A config's gates, comparator and interleave pattern, laid out for the
/// bit-sliced kernel.
pub(crate) struct BitSlicer {
    n_in: usize,
    n_out: usize,
    /// For tap bit `p` (of `k + n_in`): the input plane and delay it reads.
    sources: Vec<(usize, u32)>,
    /// Groups of four tap bits (the last padded with planes that stay 0).
    groups: usize,
    /// `n_out` runs of `per_output` comparator bits; empty when `K = 2^nc`.
    cmp: Vec<CmpBit>,
    per_output: usize,
    keeps_all: bool,
    /// `pext` mask and destination shift taking input plane `m` out of stream
    /// word `i` of a 64-step chunk, at `i * n_in + m` (unused for `n_in = 1`).
    deint: Vec<(u64, u32)>,
    /// 64 steps are exactly `n_out` output words; for each, the byte shuffle
    /// and bit selection that build it (see [`lane_schedule`]).
    lanes: Vec<[[u8; 64]; 2]>,
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
    fn cmp_bits(&self, j: usize) -> &[CmpBit] {
        &self.cmp[j * self.per_output..(j + 1) * self.per_output]
    }
}

/// True when the CPU runs [`BitSlicer::run`]: AVX-512 with VBMI (`vpermb`,
/// `vpermt2b`) and BITALG (`vpshufbitqmb`), and BMI2 (`pext`, fast on every
/// CPU that has the former).
pub(crate) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *AVAILABLE.get_or_init(|| {
            crate::acs::Level::best() == crate::acs::Level::Avx512
                && is_x86_feature_detected!("avx512vbmi")
                && is_x86_feature_detected!("avx512bitalg")
                && is_x86_feature_detected!("bmi2")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
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

#[cfg(target_arch = "x86_64")]
mod kernel {
    use super::{BitSlicer, MAX_GROUPS, TABLE};
    use std::arch::x86_64::*;
    use std::mem::MaybeUninit;

    const N_IN: usize = crate::vd::MAX_N_IN as usize;

    impl BitSlicer {
        /// Writes the mask bits of `steps` steps read from `words` to `out`,
        /// 512 steps a round; output words past `out`'s end are skipped.
        ///
        /// # Safety
        /// The CPU must pass [`available`](super::available).
        #[target_feature(enable = "avx512f,avx512bw,avx512vbmi,avx512bitalg,bmi2")]
        pub unsafe fn run(&self, words: &[u64], steps: usize, out: &mut [u64]) {
            // A gate reads one entry per group: with the count fixed at
            // compile time, the reads unroll.
            match self.groups {
                1 => self.run_groups::<1>(words, steps, out),
                2 => self.run_groups::<2>(words, steps, out),
                3 => self.run_groups::<3>(words, steps, out),
                4 => self.run_groups::<4>(words, steps, out),
                _ => self.run_groups::<MAX_GROUPS>(words, steps, out),
            }
        }

        /// [`run`](Self::run) for `G = groups`.
        #[target_feature(enable = "avx512f,avx512bw,avx512vbmi,avx512bitalg,bmi2")]
        unsafe fn run_groups<const G: usize>(&self, words: &[u64], steps: usize, out: &mut [u64]) {
            let chunks = steps.div_ceil(64);
            let mut prev = [_mm512_setzero_si512(); N_IN];
            // Tap bits past `k + n_in` stay 0, padding the last group.
            let mut delayed = [_mm512_setzero_si512(); 4 * MAX_GROUPS];
            // Every entry a gate reads is written first, in every round;
            // zeroing the table would cost about a tenth of a block's decode.
            let mut table = [MaybeUninit::<__m512i>::uninit(); TABLE];
            // The interleave reads planes past `n_out`, which stay 0.
            let mut keep = [_mm512_setzero_si512(); super::MAX_N_OUT];
            for c0 in (0..chunks).step_by(8) {
                let cur = self.inputs(words, c0);
                self.delay(&cur, &prev, &mut delayed);
                prev = cur;
                for g in 0..G {
                    xor_table(&delayed[4 * g..4 * g + 4], &mut table[16 * g..16 * g + 16]);
                }
                for (j, plane) in keep[..self.n_out].iter_mut().enumerate() {
                    // SAFETY: the tables of all groups were just filled.
                    *plane = self.keep_plane::<G>(j, &table);
                }
                // Lane `j` of `lo[w]` (`hi[w]`) is plane `j` (`8 + j`) for
                // chunk `c0 + w`.
                let lo = transpose(keep[..8].try_into().unwrap());
                let hi = if self.n_out > 8 {
                    transpose(keep[8..].try_into().unwrap())
                } else {
                    [_mm512_setzero_si512(); 8]
                };
                for w in 0..(chunks - c0).min(8) {
                    self.interleave(lo[w], hi[w], (c0 + w) * self.n_out, out);
                }
            }
        }

        /// The input planes of the 512 steps from chunk `c0` on; words past
        /// the block's end read as 0.
        #[target_feature(enable = "avx512f,bmi2")]
        #[inline]
        fn inputs(&self, words: &[u64], c0: usize) -> [__m512i; N_IN] {
            let n = self.n_in;
            let mut u = [_mm512_setzero_si512(); N_IN];
            if n == 1 && c0 + 8 <= words.len() {
                // SAFETY: the eight words are in bounds.
                u[0] = unsafe { _mm512_loadu_si512(words[c0..].as_ptr().cast()) };
                return u;
            }
            let mut planes = [[0u64; 8]; N_IN];
            for w in 0..8 {
                for i in 0..n {
                    let word = words.get((c0 + w) * n + i).copied().unwrap_or(0);
                    for (m, plane) in planes[..n].iter_mut().enumerate() {
                        let (mask, shift) = self.deint[i * n + m];
                        plane[w] |= _pext_u64(word, mask) << shift;
                    }
                }
            }
            for (um, plane) in u.iter_mut().zip(&planes) {
                // SAFETY: `plane` holds 8 words.
                *um = unsafe { _mm512_loadu_si512(plane.as_ptr().cast()) };
            }
            u
        }

        /// Each tap bit's input plane, delayed by its step count: `cur` are
        /// the planes of these 512 steps, `prev` of the 512 before.
        #[target_feature(enable = "avx512f")]
        #[inline]
        fn delay(&self, cur: &[__m512i; N_IN], prev: &[__m512i; N_IN], delayed: &mut [__m512i]) {
            // Lane l of `lagged[m]` is lane l - 1 of `cur[m]`; lane 0 is
            // `prev[m]`'s last.
            let mut lagged = [_mm512_setzero_si512(); N_IN];
            for m in 0..self.n_in {
                lagged[m] = _mm512_alignr_epi64::<7>(cur[m], prev[m]);
            }
            for (d, &(m, delay)) in delayed.iter_mut().zip(&self.sources) {
                // A shift count of 64 gives 0, as delay 0 needs.
                let left = _mm512_sll_epi64(cur[m], _mm_cvtsi64_si128(delay as i64));
                let right = _mm512_srl_epi64(lagged[m], _mm_cvtsi64_si128(64 - delay as i64));
                *d = _mm512_or_si512(left, right);
            }
        }

        /// Output `j`'s keep bits for 512 steps. `v < K` runs from the most
        /// significant bit down: `lt` once v's bit is 0 where K's is 1 with
        /// all higher bits equal.
        ///
        /// # Safety
        /// The XOR tables of all `groups` groups are filled.
        #[target_feature(enable = "avx512f")]
        #[inline]
        unsafe fn keep_plane<const G: usize>(
            &self,
            j: usize,
            table: &[MaybeUninit<__m512i>; TABLE],
        ) -> __m512i {
            if self.keeps_all {
                return _mm512_set1_epi64(-1);
            }
            let base = table.as_ptr().cast::<u8>();
            // SAFETY: rows are aligned offsets below `TABLE` vectors, of
            // entries filled this round (see `CmpBit::rows`).
            let entry = |row: u16| unsafe { base.add(row as usize).cast::<__m512i>().read() };
            let (mut lt, mut eq) = (_mm512_setzero_si512(), _mm512_set1_epi64(-1));
            for bit in self.cmp_bits(j) {
                // The XOR of the gate's entries, three at a time.
                let mut x = entry(bit.rows[0]);
                let mut g = 1;
                while g + 1 < G {
                    let (a, b) = (entry(bit.rows[g]), entry(bit.rows[g + 1]));
                    x = _mm512_ternarylogic_epi64::<0x96>(x, a, b);
                    g += 2;
                }
                if g < G {
                    x = _mm512_xor_si512(x, entry(bit.rows[g]));
                }
                if bit.k_bit {
                    // lt | (eq & !x)
                    lt = _mm512_ternarylogic_epi64::<0xF4>(lt, eq, x);
                    eq = _mm512_and_si512(eq, x);
                } else {
                    eq = _mm512_andnot_si512(x, eq);
                }
            }
            lt
        }

        /// Writes output words `base .. base + n_out` (those inside `out`) of
        /// one 64-step chunk, whose plane words are the lanes of `lo` and
        /// `hi`: each output word is one byte shuffle of them (`vpermt2b`, or
        /// `vpermb` when `hi` is empty) and one bit gather (`vpshufbitqmb`).
        #[target_feature(enable = "avx512f,avx512bw,avx512vbmi,avx512bitalg")]
        #[inline]
        fn interleave(&self, lo: __m512i, hi: __m512i, base: usize, out: &mut [u64]) {
            let out = out.get_mut(base..).unwrap_or_default();
            // Up to 8 planes fit one vector; the one-source shuffle (`vpermb`)
            // measured a few percent faster.
            let two = self.n_out > 8;
            for (word, [shuffle, select]) in out.iter_mut().zip(&self.lanes) {
                // SAFETY: both tables are 64 bytes.
                let (shuffle, select) = unsafe {
                    (
                        _mm512_loadu_si512(shuffle.as_ptr().cast()),
                        _mm512_loadu_si512(select.as_ptr().cast()),
                    )
                };
                let sources = if two {
                    _mm512_permutex2var_epi8(lo, shuffle, hi)
                } else {
                    _mm512_permutexvar_epi8(shuffle, lo)
                };
                *word = _mm512_bitshuffle_epi64_mask(sources, select);
            }
        }
    }

    /// The 8 x 8 transpose of 64-bit lanes: lane `j` of output `w` is lane
    /// `w` of `rows[j]`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn transpose(rows: &[__m512i; 8]) -> [__m512i; 8] {
        // Pairs of rows: lanes (2i, 2i + 1) hold lane 2i (lo) or 2i + 1 (hi)
        // of both.
        let pairs: [__m512i; 8] = std::array::from_fn(|i| {
            let (a, b) = (rows[i & !1], rows[i | 1]);
            if i % 2 == 0 {
                _mm512_unpacklo_epi64(a, b)
            } else {
                _mm512_unpackhi_epi64(a, b)
            }
        });
        // Quads: lanes 0..4 hold lane w of rows 4i.. 4i + 4, lanes 4..8 lane w + 4.
        let first = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13);
        let second = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
        let quads: [__m512i; 8] = std::array::from_fn(|i| {
            // i = 4 * half + 2 * which + parity
            let (half, which, parity) = (i / 4, (i / 2) % 2, i % 2);
            let (a, b) = (pairs[4 * half + parity], pairs[4 * half + 2 + parity]);
            _mm512_permutex2var_epi64(a, if which == 0 { first } else { second }, b)
        });
        // quads[4h + 2s + p] lane 4e + r (r < 4) = rows[4h + r] lane 4e + 2s + p.
        std::array::from_fn(|w| {
            let (e, s, p) = (w / 4, (w / 2) % 2, w % 2);
            let (a, b) = (quads[2 * s + p], quads[4 + 2 * s + p]);
            if e == 0 {
                _mm512_shuffle_i64x2::<0b01_00_01_00>(a, b)
            } else {
                _mm512_shuffle_i64x2::<0b11_10_11_10>(a, b)
            }
        })
    }

    /// Fills `table[e]` with the XOR of the `planes[i]` whose bit `i` is set
    /// in `e`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn xor_table(planes: &[__m512i], table: &mut [MaybeUninit<__m512i>]) {
        table[0].write(_mm512_setzero_si512());
        for e in 1..16 {
            // SAFETY: entry `e & (e - 1) < e` was written before.
            let rest = unsafe { table[e & (e - 1)].assume_init() };
            table[e].write(_mm512_xor_si512(rest, planes[e.trailing_zeros() as usize]));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::expand::read_bits;
    use crate::vd::SplitMix64;
    use crate::{Decoder, Expander, Layout, VdConfig};

    /// Block `b`'s mask bits, one plain VD step at a time from the config.
    fn reference(cfg: &VdConfig, layout: &Layout, index: &[u64], b: usize) -> Vec<u64> {
        let words = &index[layout.words(b)];
        let (n_in, n_out) = (cfg.n_in(), layout.n_out);
        let valid = layout.weights(b).len();
        let mut bits = vec![0u64; valid.div_ceil(64) + 1];
        let mut s = 0u32;
        for t in 0..layout.steps(b) {
            let r = (s << n_in) | read_bits(words, t * n_in as usize, n_in) as u32;
            let keep = cfg.keep_bits(r);
            for j in 0..n_out {
                let i = t * n_out + j;
                if i < valid && (keep >> j) & 1 == 1 {
                    bits[i / 64] |= 1 << (i % 64);
                }
            }
            s = r & ((1 << cfg.flip_flops()) - 1);
        }
        bits
    }

    /// A random config DESIGN allows, with `n_out <= 16` and `K = 2^nc` often.
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
