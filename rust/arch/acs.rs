//! The add-compare-select kernels of [`crate::search::acs`], 8 or 16 states
//! at a time, bit-identical to the portable one.

use super::Isa;
use crate::search::acs::{half_tables, step1_portable, step2_portable, subset_sums, Step, Step16};
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Runs one step of the fast kernels for `n_in` 1 or 2 ([`step1`], [`step2`]).
pub(crate) fn step(isa: Isa, n_in: u32, st: &Step, new: &mut [f32], dec: &mut [u64]) {
    if n_in == 1 {
        step1(isa, st, new, dec)
    } else {
        step2(isa, st, new, dec)
    }
}

/// Runs one `n_in = 1` step with the best kernel `isa` proves the CPU runs,
/// writing the new metrics and the decision bit-plane (`2^k` bits).
pub(crate) fn step1(isa: Isa, st: &Step, new: &mut [f32], dec: &mut [u64]) {
    let s = st.old.len();
    assert!(s >= 64 && new.len() == s && st.patterns.len() == 2 * s && dec.len() == s / 64);
    assert!(st.gains.len() <= 5);
    match isa.level() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `isa` proves the CPU runs AVX-512; the lengths are asserted above.
        super::Level::Avx512 => unsafe { step1_avx512(st, new, dec) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `isa` proves the CPU runs AVX2 and FMA; lengths as above.
        super::Level::Avx2 => unsafe { step1_avx2(st, new, dec) },
        _ => step1_portable(st, new, dec),
    }
}

/// Runs one `n_in = 2` step (at most 10 gains) with the best kernel `isa`
/// proves the CPU runs, writing the new metrics and the two decision
/// bit-planes (`2^k` bits each).
pub(crate) fn step2(isa: Isa, st: &Step, new: &mut [f32], dec: &mut [u64]) {
    let s = st.old.len();
    assert!(s >= 64 && new.len() == s && st.patterns.len() == 4 * s && dec.len() == s / 32);
    assert!(st.gains.len() <= 10);
    match isa.level() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `isa` proves the CPU runs AVX-512; the lengths are asserted above.
        super::Level::Avx512 => unsafe { step2_avx512(st, new, dec) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `isa` proves the CPU runs AVX2 and FMA; lengths as above.
        super::Level::Avx2 => unsafe { step2_avx2(st, new, dec) },
        _ => step2_portable(st, new, dec),
    }
}

/// Runs one `n_in = 1` step on int16 metrics ([`crate::search::quantise`]
/// says when they are exact): the decisions are exact integer arithmetic's,
/// those of [`step1`] on the same integers as floats. AVX-512 only; the
/// search runs other levels on the floats.
pub(crate) fn step1_i16(isa: Isa, st: &Step16, new: &mut [i16], dec: &mut [u64]) {
    let s = st.old.len();
    assert!(s >= 64 && new.len() == s && st.patterns.len() == 2 * s && dec.len() == s / 64);
    assert!(st.gains.len() <= 5);
    match isa.level() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `isa` proves the CPU runs AVX-512; the lengths are asserted above.
        super::Level::Avx512 => unsafe { step1_i16_avx512(st, new, dec) },
        _ => unreachable!("int16 metrics run on AVX-512 only"),
    }
}

/// Lane `j` of the interleave of `a` and `b` (`a0 b0 a1 b1 ...`), as
/// `_mm512_permutex2var_epi16` indices: the first 32 lanes, then the next.
const fn interleave16(half: usize) -> [i16; 32] {
    let mut idx = [0i16; 32];
    let mut j = 0;
    while j < 32 {
        idx[j] = (16 * half + j / 2 + 32 * (j % 2)) as i16;
        j += 1;
    }
    idx
}

/// 32 states per vector; the 32-entry table is one register.
///
/// # Safety
/// The CPU runs AVX-512 F, BW and VL, and the lengths are those
/// [`step1_i16`] asserts.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn step1_i16_avx512(st: &Step16, new: &mut [i16], dec: &mut [u64]) {
    let h = st.old.len() / 2;
    // Subset sums of the gains: entry m adds the gains of m's bits (exact in
    // integers, so the order does not matter).
    const LANES: [u32; 5] = [
        0xAAAA_AAAA,
        0xCCCC_CCCC,
        0xF0F0_F0F0,
        0xFF00_FF00,
        0xFFFF_0000,
    ];
    let mut t = _mm512_setzero_si512();
    for (j, &g) in st.gains.iter().enumerate() {
        t = _mm512_mask_add_epi16(t, LANES[j], t, _mm512_set1_epi16(g));
    }
    const LO: [i16; 32] = interleave16(0);
    const HI: [i16; 32] = interleave16(1);
    // SAFETY: each array holds 32 lanes of 16 bits.
    let (lo_idx, hi_idx) = unsafe {
        (
            _mm512_loadu_si512(LO.as_ptr() as *const __m512i),
            _mm512_loadu_si512(HI.as_ptr() as *const __m512i),
        )
    };
    let zero = _mm512_setzero_si512();
    let old = st.old.as_ptr();
    let pat = st.patterns.as_ptr();
    let dec32 = dec.as_mut_ptr() as *mut u32;
    let out = new.as_mut_ptr();
    for m in 0..h / 32 {
        // SAFETY: with the lengths `step1_i16` asserts (`old` of `2h`,
        // `patterns` of `4h`, `new` of `2h`, `dec` of `2h / 64` words), every
        // load and store below is in bounds.
        unsafe {
            let a = _mm512_loadu_si512(old.add(32 * m) as *const __m512i);
            let b = _mm512_loadu_si512(old.add(h + 32 * m) as *const __m512i);
            let mut best = [zero; 2];
            for (u, best) in best.iter_mut().enumerate() {
                let i0 = _mm512_loadu_si512(pat.add(u * h + 32 * m) as *const __m512i);
                let i1 = _mm512_loadu_si512(pat.add((2 + u) * h + 32 * m) as *const __m512i);
                let c0 = _mm512_add_epi16(a, _mm512_permutexvar_epi16(i0, t));
                let c1 = _mm512_add_epi16(b, _mm512_permutexvar_epi16(i1, t));
                // Wrapped, the difference is the true one (the range check).
                let take1 = _mm512_cmpgt_epi16_mask(_mm512_sub_epi16(c1, c0), zero);
                *best = _mm512_mask_blend_epi16(take1, c0, c1);
                dec32.add(u * h / 32 + m).write_unaligned(take1);
            }
            let o = out.add(64 * m) as *mut __m512i;
            _mm512_storeu_si512(o, _mm512_permutex2var_epi16(best[0], lo_idx, best[1]));
            _mm512_storeu_si512(
                o.add(1),
                _mm512_permutex2var_epi16(best[0], hi_idx, best[1]),
            );
        }
    }
}

/// 16 states per vector; the 32-entry table lives in two registers.
///
/// # Safety
/// The CPU runs AVX-512 F, BW and VL, and the lengths are those [`step1`]
/// asserts.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn step1_avx512(st: &Step, new: &mut [f32], dec: &mut [u64]) {
    let h = st.old.len() / 2;
    // Subset sums of the gains, 32 lanes at once, in the order of
    // `subset_sums` (highest bit first) so the values are identical.
    let (mut t_lo, mut t_hi) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    // LANES[j]: the table entries whose index has bit j set.
    const LANES: [u32; 5] = [
        0xAAAA_AAAA,
        0xCCCC_CCCC,
        0xF0F0_F0F0,
        0xFF00_FF00,
        0xFFFF_0000,
    ];
    for (j, &g) in st.gains.iter().enumerate().rev() {
        let g = _mm512_set1_ps(g);
        let lanes = LANES[j];
        t_lo = _mm512_mask_add_ps(t_lo, lanes as u16, t_lo, g);
        t_hi = _mm512_mask_add_ps(t_hi, (lanes >> 16) as u16, t_hi, g);
    }
    // Interleave [a0 b0 a1 b1 ...]: the even states then the odd ones.
    let lo_idx = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    let hi_idx = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    let old = st.old.as_ptr();
    let pat = st.patterns.as_ptr();
    let dec16 = dec.as_mut_ptr() as *mut u16;
    let out = new.as_mut_ptr();
    for m in 0..h / 16 {
        // SAFETY: with the lengths `step1` asserts (`old` of `2h`, `patterns`
        // of `4h`, `new` of `2h`, `dec` of `2h / 64` words), every load and
        // store below is in bounds.
        unsafe {
            let a = _mm512_loadu_ps(old.add(16 * m));
            let b = _mm512_loadu_ps(old.add(h + 16 * m));
            let mut best = [_mm512_setzero_ps(); 2];
            for (u, best) in best.iter_mut().enumerate() {
                let i0 = _mm512_loadu_si512(pat.add(u * h + 16 * m) as *const __m512i);
                let i1 = _mm512_loadu_si512(pat.add((2 + u) * h + 16 * m) as *const __m512i);
                let c0 = _mm512_add_ps(a, _mm512_permutex2var_ps(t_lo, i0, t_hi));
                let c1 = _mm512_add_ps(b, _mm512_permutex2var_ps(t_lo, i1, t_hi));
                let take1 = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(c1, c0);
                *best = _mm512_mask_blend_ps(take1, c0, c1);
                dec16.add(u * h / 16 + m).write_unaligned(take1);
            }
            _mm512_storeu_ps(
                out.add(32 * m),
                _mm512_permutex2var_ps(best[0], lo_idx, best[1]),
            );
            _mm512_storeu_ps(
                out.add(32 * m + 16),
                _mm512_permutex2var_ps(best[0], hi_idx, best[1]),
            );
        }
    }
}

/// 32-entry lookup from four 8-entry tables, selected by index bits 3 and 4.
#[inline]
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn lookup32(t: &[__m256; 4], idx: __m256i) -> __m256 {
    let b3 = _mm256_castsi256_ps(_mm256_slli_epi32::<28>(idx));
    let b4 = _mm256_castsi256_ps(_mm256_slli_epi32::<27>(idx));
    let q0 = _mm256_blendv_ps(
        _mm256_permutevar8x32_ps(t[0], idx),
        _mm256_permutevar8x32_ps(t[1], idx),
        b3,
    );
    let q1 = _mm256_blendv_ps(
        _mm256_permutevar8x32_ps(t[2], idx),
        _mm256_permutevar8x32_ps(t[3], idx),
        b3,
    );
    _mm256_blendv_ps(q0, q1, b4)
}

/// 8 states per vector.
///
/// # Safety
/// The CPU runs AVX2 and FMA, and the lengths are those [`step1`] asserts.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn step1_avx2(st: &Step, new: &mut [f32], dec: &mut [u64]) {
    let h = st.old.len() / 2;
    let mut table = [0.0f32; 32];
    subset_sums(st.gains, &mut table);
    let tp = table.as_ptr();
    // SAFETY: `table` holds 32 floats.
    let t = unsafe {
        [
            _mm256_loadu_ps(tp),
            _mm256_loadu_ps(tp.add(8)),
            _mm256_loadu_ps(tp.add(16)),
            _mm256_loadu_ps(tp.add(24)),
        ]
    };
    let old = st.old.as_ptr();
    let pat = st.patterns.as_ptr();
    let dec8 = dec.as_mut_ptr() as *mut u8;
    let out = new.as_mut_ptr();
    for m in 0..h / 8 {
        // SAFETY: with the lengths `step1` asserts, every load and store
        // below is in bounds (as in `step1_avx512`, 8 states at a time).
        unsafe {
            let a = _mm256_loadu_ps(old.add(8 * m));
            let b = _mm256_loadu_ps(old.add(h + 8 * m));
            let mut best = [_mm256_setzero_ps(); 2];
            for (u, best) in best.iter_mut().enumerate() {
                let i0 = _mm256_loadu_si256(pat.add(u * h + 8 * m) as *const __m256i);
                let i1 = _mm256_loadu_si256(pat.add((2 + u) * h + 8 * m) as *const __m256i);
                let c0 = _mm256_add_ps(a, lookup32(&t, i0));
                let c1 = _mm256_add_ps(b, lookup32(&t, i1));
                let take1 = _mm256_cmp_ps::<_CMP_GT_OQ>(c1, c0);
                *best = _mm256_blendv_ps(c0, c1, take1);
                dec8.add(u * h / 8 + m)
                    .write(_mm256_movemask_ps(take1) as u8);
            }
            // Interleave the even (best[0]) and odd (best[1]) states.
            let lo = _mm256_unpacklo_ps(best[0], best[1]);
            let hi = _mm256_unpackhi_ps(best[0], best[1]);
            _mm256_storeu_ps(out.add(16 * m), _mm256_permute2f128_ps::<0x20>(lo, hi));
            _mm256_storeu_ps(out.add(16 * m + 8), _mm256_permute2f128_ps::<0x31>(lo, hi));
        }
    }
}

/// [`step2`] 16 states per vector: each half of a pattern looks up its own
/// 32-entry table (two registers each); the four branches meet as the
/// portable kernel's tournament.
///
/// # Safety
/// The CPU runs AVX-512 F, BW and VL, and the lengths are those [`step2`]
/// asserts.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn step2_avx512(st: &Step, new: &mut [f32], dec: &mut [u64]) {
    let (s, q) = (st.old.len(), st.old.len() / 4);
    let (lo, hi) = half_tables(st.gains);
    let (lp, hp) = (lo.as_ptr(), hi.as_ptr());
    // SAFETY: each table holds 32 floats.
    let (l0, l1, h0, h1) = unsafe {
        (
            _mm512_loadu_ps(lp),
            _mm512_loadu_ps(lp.add(16)),
            _mm512_loadu_ps(hp),
            _mm512_loadu_ps(hp.add(16)),
        )
    };
    // Pairs [a0 b0 a1 b1 ...], then pairs of pairs: state 4i + u from best[u].
    let lo_idx = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    let hi_idx = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    let q_lo = _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11);
    let q_hi = _mm512_setr_epi64(4, 12, 5, 13, 6, 14, 7, 15);
    let old = st.old.as_ptr();
    let pat = st.patterns.as_ptr();
    let dec16 = dec.as_mut_ptr() as *mut u16;
    let out = new.as_mut_ptr();
    for m in 0..q / 16 {
        // SAFETY: with the lengths `step2` asserts (`old` and `new` of `4q`,
        // `patterns` of `16q`, `dec` of two planes of `4q / 64` words),
        // every load and store below is in bounds.
        unsafe {
            let mut a = [_mm512_setzero_ps(); 4];
            for (p, a) in a.iter_mut().enumerate() {
                *a = _mm512_loadu_ps(old.add(p * q + 16 * m));
            }
            let mut best = [_mm512_setzero_ps(); 4];
            for (u, best) in best.iter_mut().enumerate() {
                let mut c = [_mm512_setzero_ps(); 4];
                for (p, c) in c.iter_mut().enumerate() {
                    let idx =
                        _mm512_loadu_si512(pat.add((4 * p + u) * q + 16 * m) as *const __m512i);
                    let bm = _mm512_add_ps(
                        _mm512_permutex2var_ps(l0, idx, l1),
                        _mm512_permutex2var_ps(h0, _mm512_srli_epi32::<5>(idx), h1),
                    );
                    *c = _mm512_add_ps(a[p], bm);
                }
                let t1 = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(c[1], c[0]);
                let t3 = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(c[3], c[2]);
                let m01 = _mm512_mask_blend_ps(t1, c[0], c[1]);
                let m23 = _mm512_mask_blend_ps(t3, c[2], c[3]);
                let th = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(m23, m01);
                *best = _mm512_mask_blend_ps(th, m01, m23);
                let at = u * q / 16 + m;
                dec16.add(at).write_unaligned((t1 & !th) | (t3 & th));
                dec16.add(s / 16 + at).write_unaligned(th);
            }
            let p01 = [
                _mm512_permutex2var_ps(best[0], lo_idx, best[1]),
                _mm512_permutex2var_ps(best[0], hi_idx, best[1]),
            ];
            let p23 = [
                _mm512_permutex2var_ps(best[2], lo_idx, best[3]),
                _mm512_permutex2var_ps(best[2], hi_idx, best[3]),
            ];
            for h in 0..2 {
                let (x, y) = (_mm512_castps_pd(p01[h]), _mm512_castps_pd(p23[h]));
                let o = out.add(64 * m + 32 * h) as *mut f64;
                _mm512_storeu_pd(o, _mm512_permutex2var_pd(x, q_lo, y));
                _mm512_storeu_pd(o.add(8), _mm512_permutex2var_pd(x, q_hi, y));
            }
        }
    }
}

/// [`step2`] 8 states per vector.
///
/// # Safety
/// The CPU runs AVX2 and FMA, and the lengths are those [`step2`] asserts.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn step2_avx2(st: &Step, new: &mut [f32], dec: &mut [u64]) {
    let (s, q) = (st.old.len(), st.old.len() / 4);
    let (lo, hi) = half_tables(st.gains);
    let (lp, hp) = (lo.as_ptr(), hi.as_ptr());
    let (mut tl, mut th) = ([_mm256_setzero_ps(); 4], [_mm256_setzero_ps(); 4]);
    for j in 0..4 {
        // SAFETY: each table holds 32 floats.
        unsafe {
            tl[j] = _mm256_loadu_ps(lp.add(8 * j));
            th[j] = _mm256_loadu_ps(hp.add(8 * j));
        }
    }
    let old = st.old.as_ptr();
    let pat = st.patterns.as_ptr();
    let dec8 = dec.as_mut_ptr() as *mut u8;
    let out = new.as_mut_ptr();
    for m in 0..q / 8 {
        // SAFETY: with the lengths `step2` asserts, every load and store
        // below is in bounds (as in `step2_avx512`, 8 states at a time).
        unsafe {
            let mut a = [_mm256_setzero_ps(); 4];
            for (p, a) in a.iter_mut().enumerate() {
                *a = _mm256_loadu_ps(old.add(p * q + 8 * m));
            }
            let mut best = [_mm256_setzero_ps(); 4];
            for (u, best) in best.iter_mut().enumerate() {
                let mut c = [_mm256_setzero_ps(); 4];
                for (p, c) in c.iter_mut().enumerate() {
                    let idx =
                        _mm256_loadu_si256(pat.add((4 * p + u) * q + 8 * m) as *const __m256i);
                    let bm = _mm256_add_ps(
                        lookup32(&tl, idx),
                        lookup32(&th, _mm256_srli_epi32::<5>(idx)),
                    );
                    *c = _mm256_add_ps(a[p], bm);
                }
                let t1 = _mm256_cmp_ps::<_CMP_GT_OQ>(c[1], c[0]);
                let t3 = _mm256_cmp_ps::<_CMP_GT_OQ>(c[3], c[2]);
                let m01 = _mm256_blendv_ps(c[0], c[1], t1);
                let m23 = _mm256_blendv_ps(c[2], c[3], t3);
                let top = _mm256_cmp_ps::<_CMP_GT_OQ>(m23, m01);
                *best = _mm256_blendv_ps(m01, m23, top);
                let (b1, b3, bt) = (
                    _mm256_movemask_ps(t1) as u8,
                    _mm256_movemask_ps(t3) as u8,
                    _mm256_movemask_ps(top) as u8,
                );
                let at = u * q / 8 + m;
                dec8.add(at).write((b1 & !bt) | (b3 & bt));
                dec8.add(s / 8 + at).write(bt);
            }
            // State 4i + u from best[u]: pairs, then pairs of pairs, then lanes.
            let lo01 = _mm256_castps_pd(_mm256_unpacklo_ps(best[0], best[1]));
            let hi01 = _mm256_castps_pd(_mm256_unpackhi_ps(best[0], best[1]));
            let lo23 = _mm256_castps_pd(_mm256_unpacklo_ps(best[2], best[3]));
            let hi23 = _mm256_castps_pd(_mm256_unpackhi_ps(best[2], best[3]));
            let w = [
                _mm256_unpacklo_pd(lo01, lo23), // states of i = 0 | 4
                _mm256_unpackhi_pd(lo01, lo23), // 1 | 5
                _mm256_unpacklo_pd(hi01, hi23), // 2 | 6
                _mm256_unpackhi_pd(hi01, hi23), // 3 | 7
            ];
            let o = out.add(32 * m) as *mut f64;
            _mm256_storeu_pd(o, _mm256_permute2f128_pd::<0x20>(w[0], w[1]));
            _mm256_storeu_pd(o.add(4), _mm256_permute2f128_pd::<0x20>(w[2], w[3]));
            _mm256_storeu_pd(o.add(8), _mm256_permute2f128_pd::<0x31>(w[0], w[1]));
            _mm256_storeu_pd(o.add(12), _mm256_permute2f128_pd::<0x31>(w[2], w[3]));
        }
    }
}
