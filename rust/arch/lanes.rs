//! Mask-bit kernels: unpacking to bools, kept positions, and the scatter of
//! values onto the mask, with AVX-512 where the token proves it.

use super::Isa;
use crate::sys::Zeroable;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;
use std::mem::MaybeUninit;

/// Bit-packed mask to one bool per weight: 64 at a time with AVX-512,
/// else eight at a time through a table.
pub(crate) fn unpack_bools(isa: Isa, bits: &[u64], out: &mut [bool]) {
    unpack_bools_into(isa, bits, as_uninit(out));
}

/// [`unpack_bools`] into memory not yet written, which it initialises
/// whole and returns as bools.
pub(crate) fn unpack_bools_into<'a>(
    isa: Isa,
    bits: &[u64],
    out: &'a mut [MaybeUninit<bool>],
) -> &'a mut [bool] {
    assert!(64 * bits.len() >= out.len());
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if isa.avx512() {
        done = out.len() / 64 * 64;
        // SAFETY: `isa` proves AVX-512BW; `out` holds `done` bools, and
        // `bits` covers them (asserted).
        unsafe { unpack_words_avx512(&bits[..done / 64], out.as_mut_ptr() as *mut bool) };
    }
    let _ = isa;
    unpack_table_into(&bits[done / 64..], &mut out[done..]);
    // SAFETY: the first `done` were stored above by whole words, and the
    // rest through the table: every entry of `out` is initialised.
    unsafe { &mut *(out as *mut [MaybeUninit<bool>] as *mut [bool]) }
}

/// Stores each word of `bits` as 64 bools from `out` on.
///
/// # Safety
/// The CPU runs AVX-512 F and BW, and `out` is valid for writes of
/// `64 * bits.len()` bools.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn unpack_words_avx512(bits: &[u64], out: *mut bool) {
    let ones = _mm512_set1_epi8(1);
    let dst = out as *mut __m512i;
    for (w, &word) in bits.iter().enumerate() {
        // SAFETY: 64 writable bytes from byte `64 w` (the caller's
        // contract), each stored 0 or 1.
        unsafe { _mm512_storeu_si512(dst.add(w), _mm512_maskz_mov_epi8(word, ones)) };
    }
}

/// `out` as memory to be written: only bools are ever stored through it.
fn as_uninit(out: &mut [bool]) -> &mut [MaybeUninit<bool>] {
    // SAFETY: same layout; the callers store only valid bools through the
    // view, so `out` stays initialised.
    unsafe { &mut *(out as *mut [bool] as *mut [MaybeUninit<bool>]) }
}

/// Writes every entry of `out` from `bits`, eight bools per table entry.
fn unpack_table_into(bits: &[u64], out: &mut [MaybeUninit<bool>]) {
    static BYTES: [u64; 256] = {
        let mut t = [0u64; 256];
        let mut b = 0;
        while b < 256 {
            let mut j = 0;
            while j < 8 {
                t[b] |= (((b >> j) & 1) as u64) << (8 * j);
                j += 1;
            }
            b += 1;
        }
        t
    };
    let base = out.len() / 8 * 8;
    let mut chunks = out.chunks_exact_mut(8);
    for (c, chunk) in chunks.by_ref().enumerate() {
        let byte = (bits[c / 8] >> (8 * (c % 8))) & 0xff;
        // SAFETY: `chunk` is 8 writable bytes; each stored byte is 0 or 1.
        unsafe { (chunk.as_mut_ptr() as *mut u64).write_unaligned(BYTES[byte as usize].to_le()) };
    }
    for (j, o) in chunks.into_remainder().iter_mut().enumerate() {
        let i = base + j;
        o.write((bits[i / 64] >> (i % 64)) & 1 == 1);
    }
}

/// Appends `i + add` (wrapping) for every set bit `i` in `from..to` of a
/// bit-packed mask, in order (sixteen bits per instruction with AVX-512 compress).
pub(crate) fn push_positions(
    isa: Isa,
    bits: &[u64],
    from: usize,
    to: usize,
    add: u32,
    out: &mut Vec<u32>,
) {
    if from >= to {
        return;
    }
    // The range's words, with the bits outside it cleared.
    let (w0, w1) = (from / 64, to.div_ceil(64));
    let word = |w: usize| {
        let mut x = bits[w];
        if w == w0 {
            x &= u64::MAX << (from % 64);
        }
        if w + 1 == w1 && !to.is_multiple_of(64) {
            x &= (1u64 << (to % 64)) - 1;
        }
        x
    };
    #[cfg(target_arch = "x86_64")]
    if isa.avx512() {
        out.reserve(to - from + 16);
        // SAFETY: `isa` proves AVX-512; `out` has room for every position
        // plus the sixteen lanes the last store may write past them, and
        // every position below the new length was written.
        unsafe {
            let mut len = out.len();
            for w in w0..w1 {
                len = compress_word(
                    word(w),
                    ((64 * w) as u32).wrapping_add(add),
                    out.as_mut_ptr(),
                    len,
                );
            }
            out.set_len(len);
        }
        return;
    }
    for w in w0..w1 {
        let mut x = word(w);
        while x != 0 {
            out.push(((64 * w) as u32 + x.trailing_zeros()).wrapping_add(add));
            x &= x - 1;
        }
    }
}

/// Writes `base + i` for the set bits `i` of `x` at `out[len..]`, sixteen
/// lanes at a time (each store writes a full sixteen lanes); returns the new length.
///
/// # Safety
/// The CPU runs AVX-512F, and `out` has room for `len + x.count_ones() + 16`
/// lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn compress_word(x: u64, base: u32, out: *mut u32, mut len: usize) -> usize {
    if x == 0 {
        return len;
    }
    let iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for q in 0..4 {
        let m = (x >> (16 * q)) as u16;
        let v = _mm512_add_epi32(iota, _mm512_set1_epi32(base.wrapping_add(16 * q) as i32));
        // SAFETY: the store ends 16 lanes past the positions written so far,
        // at most `len + x.count_ones() + 16` lanes: the room the caller made.
        unsafe {
            _mm512_storeu_si512(
                out.add(len) as *mut __m512i,
                _mm512_maskz_compress_epi32(m, v),
            )
        };
        len += m.count_ones() as usize;
    }
    len
}

/// Writes `n` 32-bit lanes: the next value where the mask bit is set, zero
/// elsewhere, 16 lanes per instruction (AVX-512 expand-load). Every lane is
/// written, so the output needs no zeroing first.
///
/// # Safety
/// The CPU runs AVX-512F; `bits` holds at least `n` bits, `out` has room for
/// `n` lanes and `values` for as many as the first `n` bits have set.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn expand_lanes32(bits: &[u64], mut values: *const u32, out: *mut u32, n: usize) {
    // SAFETY: the caller's promise: every store is below `n` and every
    // load one of the values for the set bits.
    unsafe {
        let full = n / 16;
        for c in 0..full {
            let m = (bits[c / 4] >> (16 * (c % 4))) as u16;
            let v = _mm512_maskz_expandloadu_epi32(m, values as *const i32);
            _mm512_storeu_si512(out.add(16 * c) as *mut __m512i, v);
            values = values.add(m.count_ones() as usize);
        }
        for i in 16 * full..n {
            if (bits[i / 64] >> (i % 64)) & 1 == 1 {
                *out.add(i) = *values;
                values = values.add(1);
            } else {
                *out.add(i) = 0;
            }
        }
    }
}

/// [`expand_lanes32`] for 64-bit lanes, 8 per instruction.
///
/// # Safety
/// As for [`expand_lanes32`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn expand_lanes64(bits: &[u64], mut values: *const u64, out: *mut u64, n: usize) {
    // SAFETY: the caller's promise: every store is below `n` and every
    // load one of the values for the set bits.
    unsafe {
        let full = n / 8;
        for c in 0..full {
            let m = (bits[c / 8] >> (8 * (c % 8))) as u8;
            let v = _mm512_maskz_expandloadu_epi64(m, values as *const i64);
            _mm512_storeu_si512(out.add(8 * c) as *mut __m512i, v);
            values = values.add(m.count_ones() as usize);
        }
        for i in 8 * full..n {
            if (bits[i / 64] >> (i % 64)) & 1 == 1 {
                *out.add(i) = *values;
                values = values.add(1);
            } else {
                *out.add(i) = 0;
            }
        }
    }
}

/// Fills `out` with `values` on the mask `bits` and zero elsewhere, 8 or 16
/// lanes per AVX-512 expand-load, for 4- and 8-byte `T` (float32, float64);
/// false, with nothing written, where `isa` or `T` do not allow it.
pub(crate) fn scatter_lanes<T: Zeroable>(
    isa: Isa,
    bits: &[u64],
    values: &[T],
    out: &mut [T],
) -> bool {
    let (size, n) = (std::mem::size_of::<T>(), out.len());
    if !isa.avx512() || !(size == 4 || size == 8) {
        return false;
    }
    let set: usize = bits.iter().map(|w| w.count_ones() as usize).sum();
    assert!(64 * bits.len() >= n && set <= values.len());
    let (src, dst) = (values.as_ptr(), out.as_mut_ptr());
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `isa` proves AVX-512; `T` is a 4- or 8-byte `Copy` type moved
    // as raw lanes, zero is a valid `T` (`Zeroable`), `bits` covers `out`
    // and `values` holds a value for every set bit (asserted above).
    unsafe {
        if size == 4 {
            expand_lanes32(bits, src as *const u32, dst as *mut u32, n)
        } else {
            expand_lanes64(bits, src as *const u64, dst as *mut u64, n)
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (src, dst);
    true
}
