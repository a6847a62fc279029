//! The bit-sliced decoder's kernel (see [`crate::expand::bitslice`] for the
//! method): AVX-512 with VBMI and BITALG, and BMI2.

use super::BitSliceIsa;
use crate::expand::bitslice::{BitSlicer, MAX_GROUPS, MAX_N_OUT, TABLE};

use std::arch::x86_64::*;
use std::mem::MaybeUninit;

const N_IN: usize = crate::vd::MAX_N_IN as usize;

impl BitSlicer {
    /// Writes the mask bits of `steps` steps read from `words` to `out`,
    /// 512 steps a round; output words past `out`'s end are skipped.
    ///
    /// `_isa` proves the CPU runs the kernel.
    pub(crate) fn run(&self, _isa: BitSliceIsa, words: &[u64], steps: usize, out: &mut [u64]) {
        // SAFETY: a `BitSliceIsa` is only made when the CPU runs these features.
        unsafe { self.run_unchecked(words, steps, out) }
    }

    /// [`run`](Self::run) without the token.
    ///
    /// # Safety
    /// The CPU must run AVX-512 F, BW, VBMI and BITALG, and BMI2.
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi,avx512bitalg,bmi2")]
    unsafe fn run_unchecked(&self, words: &[u64], steps: usize, out: &mut [u64]) {
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
    fn run_groups<const G: usize>(&self, words: &[u64], steps: usize, out: &mut [u64]) {
        let chunks = steps.div_ceil(64);
        let mut prev = [_mm512_setzero_si512(); N_IN];
        // Tap bits past `k + n_in` stay 0, padding the last group.
        let mut delayed = [_mm512_setzero_si512(); 4 * MAX_GROUPS];
        // Every entry a gate reads is written first, in every round;
        // zeroing the table would cost about a tenth of a block's decode.
        let mut table = [MaybeUninit::<__m512i>::uninit(); TABLE];
        // The interleave reads planes past `n_out`, which stay 0.
        let mut keep = [_mm512_setzero_si512(); MAX_N_OUT];
        for c0 in (0..chunks).step_by(8) {
            let cur = self.inputs(words, c0);
            self.delay(&cur, &prev, &mut delayed);
            prev = cur;
            for g in 0..G {
                xor_table(&delayed[4 * g..4 * g + 4], &mut table[16 * g..16 * g + 16]);
            }
            for (j, plane) in keep[..self.n_out].iter_mut().enumerate() {
                // SAFETY: the tables of all groups were just filled.
                *plane = unsafe { self.keep_plane::<G>(j, &table) };
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
pub(super) fn transpose(rows: &[__m512i; 8]) -> [__m512i; 8] {
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
