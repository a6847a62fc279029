//! Bit-sliced expansion: 64 steps of the VD per machine word (512 with
//! AVX-512) instead of one.
//!
//! Every block starts in state 0, so the register at step `t` is just a window
//! of the input stream: bit `n_in*i + m` of `r` is stream bit `(t-i)*n_in + m`
//! (0 before the block's start). Split the stream into `n_in` input planes
//! (`U_m`, bit `t` = stream bit `t*n_in + m`); then gate `g` over 64 steps is the
//! XOR, over the set bits `p` of `taps[g]`, of plane `p % n_in` delayed by
//! `p / n_in` steps. Nothing but the previous word of each plane carries from
//! one word of steps to the next. The comparator `v < K` runs on these gate
//! words bit-sliced, and the `n_out` resulting keep planes (plane `j`, bit `t`
//! = weight `t*n_out + j`) are interleaved into weight order with `pdep`.
//!
//! Gates read their taps four at a time (the "four Russians" trick): per
//! group of four delayed planes, a table of all 16 XOR combinations, so a gate
//! is one lookup per group. Every gate then costs the same few operations, with
//! no loop over its set bits for the branch predictor to miss.
//!
//! Both kernels need BMI2 (`pext`, `pdep`); CPUs without it use the step loop.

use crate::vd::{VdConfig, MAX_FLIP_FLOPS, MAX_N_IN, MAX_N_OUT};

/// Most register bits a tap mask can read: `k + n_in`.
const MAX_TAP_BITS: usize = (MAX_FLIP_FLOPS + MAX_N_IN) as usize;
/// Groups of four tap bits.
const MAX_GROUPS: usize = MAX_TAP_BITS.div_ceil(4);
/// Entries of all the groups' XOR tables.
const TABLE: usize = 16 * MAX_GROUPS;

/// One bit of one output's comparator, visited from the most significant down.
#[derive(Clone, Copy, Debug)]
struct CmpBit {
    /// The gate's entry in each group's XOR table: `16 * group + nibble`,
    /// where the nibble is the group's four tap bits.
    rows: [u8; MAX_GROUPS],
    /// The threshold's bit at this position.
    k_bit: bool,
}

/// Part of a keep plane that `pdep` moves into one output word.
#[derive(Clone, Copy, Debug)]
struct Deposit {
    plane: u8,
    /// The first step (bit of the plane word) that lands in the output word.
    shift: u8,
    /// Where that plane's bits sit in the output word.
    mask: u64,
}

/// A config's gates, comparator and interleave pattern, laid out for the
/// bit-sliced kernels.
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
    /// 64 steps are exactly `n_out` output words, and each takes one run of
    /// bits from every plane: word `o` ORs `deposits[o * n_out..][..n_out]`.
    deposits: Vec<Deposit>,
    /// For `n_out <= 16`, the byte shuffles and bit selections that build
    /// each output word of a chunk with AVX-512 (see `avx512::interleave`).
    lanes: Vec<[[u8; 64]; 2]>,
}

impl BitSlicer {
    pub fn new(config: &VdConfig) -> Self {
        let (n_in, n_out) = (config.n_in() as usize, config.n_out() as usize);
        let nc = config.comparator_bits() as usize;
        let keeps_all = config.keeps_all();
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
                    rows: std::array::from_fn(|g| {
                        (16 * g + ((gates[b] >> (4 * g)) & 15) as usize) as u8
                    }),
                    k_bit: (config.threshold() >> b) & 1 == 1,
                })
            })
            .collect();
        let width = (config.flip_flops() + config.n_in()) as usize;
        Self {
            n_in,
            n_out,
            sources: (0..width).map(|p| (p % n_in, (p / n_in) as u32)).collect(),
            groups: width.div_ceil(4),
            cmp,
            per_output,
            keeps_all,
            deint: deinterleave_masks(n_in),
            deposits: deposit_schedule(n_out),
            lanes: if n_out <= 16 {
                lane_schedule(n_out)
            } else {
                Vec::new()
            },
        }
    }

    /// Output `j`'s comparator bits, most significant first.
    fn cmp_bits(&self, j: usize) -> &[CmpBit] {
        &self.cmp[j * self.per_output..(j + 1) * self.per_output]
    }

    /// Input plane `m`'s 64 bits for chunk `c` (steps `64c ..`), in `u[m]`;
    /// words past the block's end read as 0.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "bmi2")]
    #[inline]
    unsafe fn inputs(&self, words: &[u64], c: usize) -> [u64; MAX_N_IN as usize] {
        use std::arch::x86_64::_pext_u64;
        let n = self.n_in;
        let word = |i: usize| words.get(c * n + i).copied().unwrap_or(0);
        let mut u = [0u64; MAX_N_IN as usize];
        if n == 1 {
            u[0] = word(0);
            return u;
        }
        for i in 0..n {
            let w = word(i);
            for (m, um) in u[..n].iter_mut().enumerate() {
                let (mask, shift) = self.deint[i * n + m];
                *um |= _pext_u64(w, mask) << shift;
            }
        }
        u
    }

    /// Writes the weight-order words `base .. base + n_out` (those inside `out`)
    /// from the keep planes of one 64-step chunk, one `pdep` per plane and word.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "bmi2")]
    #[inline]
    unsafe fn interleave(&self, planes: &[u64], base: usize, out: &mut [u64]) {
        use std::arch::x86_64::_pdep_u64;
        let words = out.len().saturating_sub(base).min(self.n_out);
        for (o, deposits) in self
            .deposits
            .chunks_exact(self.n_out)
            .take(words)
            .enumerate()
        {
            let mut w = 0;
            for d in deposits {
                w |= _pdep_u64(planes[d.plane as usize] >> d.shift, d.mask);
            }
            out[base + o] = w;
        }
    }

    /// Writes the mask bits of `steps` steps read from `words` to `out`, 64
    /// steps per word; output words past `out`'s end are skipped.
    ///
    /// # Safety
    /// The CPU must support BMI2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "bmi2")]
    pub unsafe fn run_u64(&self, words: &[u64], steps: usize, out: &mut [u64]) {
        let mut prev = [0u64; MAX_N_IN as usize];
        // Tap bits past `k + n_in` stay 0, padding the last group.
        let mut delayed = [0u64; 4 * MAX_GROUPS];
        let mut table = [0u64; TABLE];
        let mut planes = [0u64; MAX_N_OUT as usize];
        for c in 0..steps.div_ceil(64) {
            let u = self.inputs(words, c);
            for (d, &(m, delay)) in delayed.iter_mut().zip(&self.sources) {
                // `prev >> 1 >> (63 - delay)` is `prev >> (64 - delay)`, and 0
                // (not undefined) for delay 0.
                *d = (u[m] << delay) | ((prev[m] >> 1) >> (63 - delay));
            }
            prev = u;
            for g in 0..self.groups {
                xor_table(&delayed[4 * g..4 * g + 4], &mut table[16 * g..16 * g + 16]);
            }
            for (j, plane) in planes[..self.n_out].iter_mut().enumerate() {
                *plane = self.keep_plane_u64(j, &table);
            }
            self.interleave(&planes, c * self.n_out, out);
        }
    }

    /// Output `j`'s keep bits for 64 steps, from the groups' XOR tables.
    #[inline(always)]
    fn keep_plane_u64(&self, j: usize, table: &[u64; TABLE]) -> u64 {
        if self.keeps_all {
            return !0;
        }
        // v < K from the most significant bit down: `lt` once v's bit is 0
        // where K's is 1 with all higher bits equal.
        let (mut lt, mut eq) = (0u64, !0u64);
        for bit in self.cmp_bits(j) {
            let x = bit.rows[..self.groups]
                .iter()
                .fold(0, |x, &r| x ^ table[r as usize]);
            if bit.k_bit {
                lt |= eq & !x;
                eq &= x;
            } else {
                eq &= !x;
            }
        }
        lt
    }
}

/// Fills `table[e]` with the XOR of the `planes[i]` whose bit `i` is set in `e`.
#[inline(always)]
fn xor_table(planes: &[u64], table: &mut [u64]) {
    table[0] = 0;
    for e in 1..16 {
        table[e] = table[e & (e - 1)] ^ planes[e.trailing_zeros() as usize];
    }
}

/// True when `pdep` and `pext` are fast: BMI2, but not on AMD before Zen 3
/// (family 0x19), which runs them in microcode at hundreds of cycles.
pub(crate) fn fast_pdep() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static FAST: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *FAST.get_or_init(|| {
            use std::arch::x86_64::__cpuid;
            if !is_x86_feature_detected!("bmi2") {
                return false;
            }
            // SAFETY: CPUID leaves 0 and 1 exist on every x86-64 CPU (newer
            // compilers know, hence the allow).
            #[allow(unused_unsafe)]
            let (vendor, sig) = unsafe { (__cpuid(0), __cpuid(1).eax) };
            let amd =
                [vendor.ebx, vendor.edx, vendor.ecx] == [0x6874_7541, 0x6974_6e65, 0x444d_4163];
            let family = ((sig >> 8) & 0xF) + ((sig >> 20) & 0xFF);
            !(amd && family < 0x19)
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// True when the CPU runs [`BitSlicer::run_avx512`].
pub(crate) fn avx512_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        fast_pdep()
            && crate::acs::Level::best() == crate::acs::Level::Avx512
            && is_x86_feature_detected!("avx512vbmi")
            && is_x86_feature_detected!("avx512bitalg")
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

/// For each of the `n_out` output words of a 64-step chunk, the run of bits
/// each plane gives it (weight `64o + q` is step `(64o + q) / n_out` of plane
/// `(64o + q) % n_out`; 64 consecutive weights meet every plane once).
fn deposit_schedule(n_out: usize) -> Vec<Deposit> {
    let mut deposits = Vec::with_capacity(n_out * n_out);
    for o in 0..n_out {
        let mut runs: Vec<Deposit> = (0..n_out)
            .map(|j| Deposit {
                plane: j as u8,
                shift: u8::MAX,
                mask: 0,
            })
            .collect();
        for q in 0..64 {
            let (t, j) = ((64 * o + q) / n_out, (64 * o + q) % n_out);
            runs[j].mask |= 1 << q;
            runs[j].shift = runs[j].shift.min(t as u8);
        }
        deposits.extend(runs);
    }
    deposits
}

/// For each of the `n_out` (<= 16) output words of a 64-step chunk: which
/// byte of the planes' chunk words (plane `j`'s at bytes `8j ..`) and which
/// bit of that byte each output bit takes, as a byte shuffle placing the
/// source of output bit `q` at byte `q`, and a bit index into its lane.
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
mod avx512 {
    use super::{BitSlicer, MAX_GROUPS, TABLE};
    use crate::vd::{MAX_N_IN, MAX_N_OUT};
    use std::arch::x86_64::*;
    use std::mem::MaybeUninit;

    impl BitSlicer {
        /// [`run_u64`](Self::run_u64) with 512 steps per vector.
        ///
        /// # Safety
        /// The CPU must support AVX-512F, BW, VBMI, BITALG and BMI2.
        #[target_feature(enable = "avx512f,avx512bw,avx512vbmi,avx512bitalg,bmi2")]
        pub unsafe fn run_avx512(&self, words: &[u64], steps: usize, out: &mut [u64]) {
            let chunks = steps.div_ceil(64);
            let mut prev = [_mm512_setzero_si512(); MAX_N_IN as usize];
            let mut delayed = [_mm512_setzero_si512(); 4 * MAX_GROUPS];
            // Both buffers are written before they are read, in every chunk;
            // zeroing them would cost about a tenth of a block's decode.
            let mut table = [MaybeUninit::<__m512i>::uninit(); TABLE];
            // Plane `j`'s word for chunk `c0 + w` at `planes[64 * w + j]`, so
            // that one chunk's planes are adjacent for the interleave.
            let mut planes = [MaybeUninit::<u64>::uninit(); 8 * MAX_N_OUT as usize];
            let lane_starts = _mm512_setr_epi64(0, 64, 128, 192, 256, 320, 384, 448);
            for c0 in (0..chunks).step_by(8) {
                let cur = self.inputs_avx512(words, c0);
                self.delay(&cur, &prev, &mut delayed);
                prev = cur;
                for g in 0..self.groups {
                    xor_table(&delayed[4 * g..4 * g + 4], &mut table[16 * g..16 * g + 16]);
                }
                for j in 0..self.n_out {
                    // SAFETY: the rows read are those of the tables just filled.
                    let plane = self.keep_plane_avx512(j, &table);
                    // SAFETY: the eight words land at `64 * w + j < 8 * MAX_N_OUT`.
                    _mm512_i64scatter_epi64::<8>(
                        planes[j..].as_mut_ptr().cast(),
                        lane_starts,
                        plane,
                    );
                }
                for w in 0..(chunks - c0).min(8) {
                    // The `n_out` planes of each chunk were just written, and
                    // the interleaves read no others.
                    let chunk = planes[64 * w..].as_ptr().cast::<u64>();
                    let base = (c0 + w) * self.n_out;
                    if self.lanes.is_empty() {
                        // SAFETY: see above.
                        let chunk = std::slice::from_raw_parts(chunk, self.n_out);
                        self.interleave(chunk, base, out);
                    } else {
                        // SAFETY: see above; 16 words follow `chunk`.
                        self.interleave_avx512(chunk, base, out);
                    }
                }
            }
        }

        /// [`interleave`](Self::interleave) for `n_out <= 16`: each output
        /// word is one byte shuffle of the chunk's plane words (`vpermt2b`)
        /// and one bit gather (`vpshufbitqmb`).
        ///
        /// # Safety
        /// `planes` points to 16 words of which the first `n_out` are initialized.
        #[target_feature(enable = "avx512f,avx512bw,avx512vbmi,avx512bitalg")]
        #[inline]
        unsafe fn interleave_avx512(&self, planes: *const u64, base: usize, out: &mut [u64]) {
            // Masked loads read only the planes that exist.
            let n = self.n_out as u32;
            let lo = _mm512_maskz_loadu_epi64(((1u32 << n.min(8)) - 1) as u8, planes.cast());
            let hi_mask = ((1u32 << n.max(8)) >> 8).wrapping_sub(1) as u8;
            let hi = _mm512_maskz_loadu_epi64(hi_mask, planes.add(8).cast());
            let words = out.len().saturating_sub(base).min(self.n_out);
            for (o, [shuffle, select]) in self.lanes[..words].iter().enumerate() {
                // SAFETY: both tables are 64 bytes.
                let shuffle = _mm512_loadu_si512(shuffle.as_ptr().cast());
                let select = _mm512_loadu_si512(select.as_ptr().cast());
                let sources = _mm512_permutex2var_epi8(lo, shuffle, hi);
                out[base + o] = _mm512_bitshuffle_epi64_mask(sources, select);
            }
        }

        /// The input planes of the 512 steps from chunk `c0` on.
        #[target_feature(enable = "avx512f,bmi2")]
        #[inline]
        unsafe fn inputs_avx512(&self, words: &[u64], c0: usize) -> [__m512i; MAX_N_IN as usize] {
            let mut u = [_mm512_setzero_si512(); MAX_N_IN as usize];
            if self.n_in == 1 && c0 + 8 <= words.len() {
                // SAFETY: the eight words are in bounds.
                u[0] = _mm512_loadu_si512(words[c0..].as_ptr().cast());
                return u;
            }
            let mut w = [[0u64; 8]; MAX_N_IN as usize];
            for i in 0..8 {
                let x = self.inputs(words, c0 + i);
                for (wm, &xm) in w.iter_mut().zip(&x) {
                    wm[i] = xm;
                }
            }
            for (um, wm) in u.iter_mut().zip(&w) {
                // SAFETY: `wm` holds 8 words.
                *um = _mm512_loadu_si512(wm.as_ptr().cast());
            }
            u
        }

        /// Each tap bit's input plane, delayed by its step count: `cur` are
        /// the planes of these 512 steps, `prev` of the 512 before.
        #[target_feature(enable = "avx512f")]
        #[inline]
        fn delay(&self, cur: &[__m512i], prev: &[__m512i], delayed: &mut [__m512i]) {
            for (d, &(m, delay)) in delayed.iter_mut().zip(&self.sources) {
                // Lane l of `lagged` is lane l - 1 of `cur`; lane 0 is `prev`'s last.
                let lagged = _mm512_alignr_epi64::<7>(cur[m], prev[m]);
                // A shift count of 64 gives 0, as delay 0 needs.
                let left = _mm512_sll_epi64(cur[m], _mm_cvtsi64_si128(delay as i64));
                let right = _mm512_srl_epi64(lagged, _mm_cvtsi64_si128(64 - delay as i64));
                *d = _mm512_or_si512(left, right);
            }
        }

        /// [`keep_plane_u64`](Self::keep_plane_u64) for 512 steps.
        #[target_feature(enable = "avx512f")]
        #[inline]
        ///
        /// # Safety
        /// The rows of the first `groups` tables are initialized.
        unsafe fn keep_plane_avx512(
            &self,
            j: usize,
            table: &[MaybeUninit<__m512i>; TABLE],
        ) -> __m512i {
            if self.keeps_all {
                return _mm512_set1_epi64(-1);
            }
            let (mut lt, mut eq) = (_mm512_setzero_si512(), _mm512_set1_epi64(-1));
            for bit in self.cmp_bits(j) {
                let x = bit.rows[..self.groups]
                    .iter()
                    .fold(_mm512_setzero_si512(), |x, &r| {
                        _mm512_xor_si512(x, table[r as usize].assume_init())
                    });
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
    }

    /// `super::xor_table` for 512 steps, into a table that starts uninitialized.
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

    /// A random config DESIGN allows, with small `n_out` and `K = 2^nc` often.
    fn random_config(rng: &mut SplitMix64) -> VdConfig {
        let mut pick = |lo: u64, hi: u64| (lo + rng.next() % (hi - lo + 1)) as u32;
        let k = pick(1, 16);
        let n_in = pick(1, k.min(4) as u64);
        let n_out = if pick(0, 3) == 0 {
            pick(1, 64)
        } else {
            pick(1, 12)
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
            for &decoder in &decoders {
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
            }
        }
    }
}
