//! Add-compare-select kernels. Every kernel computes, per state, the same
//! float32 operations in the same order (`cand = old + table[pattern]`, keep
//! the later branch only if strictly better), so all give bit-identical
//! results; the fast ones just do it 8 or 16 states at a time.
//!
//! Decision layout (shared with the traceback): state `ns` splits into
//! `u = ns mod 2^n_in` and `i = ns >> n_in`; the `n_in` bits of its choice `p`
//! sit in bit-planes at position `u * 2^(k - n_in) + i`.

use std::sync::OnceLock;

/// Instruction-set levels, from the portable fallback up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Portable,
    Avx2,
    Avx512,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Portable => "portable",
            Level::Avx2 => "avx2",
            Level::Avx512 => "avx512",
        }
    }

    pub fn from_name(name: &str) -> Option<Level> {
        Level::all().into_iter().find(|l| l.name() == name)
    }

    pub fn all() -> [Level; 3] {
        [Level::Portable, Level::Avx2, Level::Avx512]
    }

    /// True when this CPU can run the level.
    pub fn available(self) -> bool {
        match self {
            Level::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => {
                is_x86_feature_detected!("avx2")
                    && is_x86_feature_detected!("fma")
                    && is_x86_feature_detected!("popcnt")
                    && is_x86_feature_detected!("bmi2")
            }
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => {
                is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512vl")
                    && is_x86_feature_detected!("popcnt")
                    && is_x86_feature_detected!("bmi2")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The best level this CPU runs (detected once).
    pub fn best() -> Level {
        static BEST: OnceLock<Level> = OnceLock::new();
        *BEST.get_or_init(|| {
            Level::all()
                .into_iter()
                .rev()
                .find(|l| l.available())
                .unwrap_or(Level::Portable)
        })
    }
}

/// One step's inputs for the fast kernels (`n_in = 1`, `n_out <= 5`).
pub struct Step<'a> {
    /// Metrics of the `2^k` states before the step.
    pub old: &'a [f32],
    /// Keep patterns laid out `[p][u][i]` (each run `2^(k-1)` long), as
    /// 32-bit lanes so the kernels load them without widening.
    pub patterns: &'a [u32],
    /// The step's gains (at most 5): keep pattern `m` scores the gains of its bits.
    pub gains: &'a [f32],
}

/// Subset sums of `g` (at most 8 gains): `sums[m]` is the metric of keep
/// pattern `m`, adding the gains of its bits from the highest down.
pub fn subset_sums(g: &[f32], sums: &mut [f32]) {
    sums[0] = 0.0;
    for m in 1..1usize << g.len() {
        sums[m] = sums[m & (m - 1)] + g[m.trailing_zeros() as usize];
    }
}

/// Runs one `n_in = 1` step at `level` (which must be available), writing the
/// new metrics and the decision bit-plane (`2^k` bits).
pub fn step1(level: Level, st: &Step, new: &mut [f32], dec: &mut [u64]) {
    let s = st.old.len();
    assert!(s >= 64 && new.len() == s && st.patterns.len() == 2 * s && dec.len() == s / 64);
    assert!(st.gains.len() <= 5);
    match level {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the caller checked `available()`; the lengths are asserted above.
        Level::Avx512 => unsafe { x86::step1_avx512(st, new, dec) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Level::Avx2 => unsafe { x86::step1_avx2(st, new, dec) },
        _ => step1_portable(st, new, dec),
    }
}

/// The plain per-state version of [`step1`]: the reference for the others.
pub fn step1_portable(st: &Step, new: &mut [f32], dec: &mut [u64]) {
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

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Step;
    use std::arch::x86_64::*;

    /// 16 states per vector; the 32-entry table lives in two registers.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub unsafe fn step1_avx512(st: &Step, new: &mut [f32], dec: &mut [u64]) {
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
        let hi_idx =
            _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
        let old = st.old.as_ptr();
        let pat = st.patterns.as_ptr();
        let dec16 = dec.as_mut_ptr() as *mut u16;
        let out = new.as_mut_ptr();
        for m in 0..h / 16 {
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

    /// 32-entry lookup from four 8-entry tables, selected by index bits 3 and 4.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn lookup32(t: &[__m256; 4], idx: __m256i) -> __m256 {
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
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn step1_avx2(st: &Step, new: &mut [f32], dec: &mut [u64]) {
        let h = st.old.len() / 2;
        let mut table = [0.0f32; 32];
        super::subset_sums(st.gains, &mut table);
        let tp = table.as_ptr();
        let t = [
            _mm256_loadu_ps(tp),
            _mm256_loadu_ps(tp.add(8)),
            _mm256_loadu_ps(tp.add(16)),
            _mm256_loadu_ps(tp.add(24)),
        ];
        let old = st.old.as_ptr();
        let pat = st.patterns.as_ptr();
        let dec8 = dec.as_mut_ptr() as *mut u8;
        let out = new.as_mut_ptr();
        for m in 0..h / 8 {
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
