//! Bit-matrix transposes: AVX-512 BW and VBMI with GFNI, which transposes
//! an 8x8 bit square per byte lane of an affine transform.

use super::bitslice::transpose as transpose_lanes;
use super::BitMatrixIsa;

use std::arch::x86_64::*;
use std::mem::MaybeUninit;

/// Output rows `i0..` (as many as `out` holds, at most [`Tile::MAX`]) of
/// the transpose of the `rows x cols` bit matrix `bits` (bit `j * cols + i`
/// is row `j`, column `i`; `bits` has a word to spare), as bools: the
/// band's columns of up to 512 rows at a time, each a [`Tile`], side by
/// side over every row of `out`, which they initialise whole.
pub(crate) fn spread_band<'a>(
    isa: BitMatrixIsa,
    bits: &[u64],
    i0: usize,
    rows: usize,
    cols: usize,
    out: &'a mut [MaybeUninit<bool>],
) -> &'a mut [bool] {
    assert!(
        rows > 0 && out.len().is_multiple_of(rows),
        "a band is whole output rows"
    );
    let height = out.len() / rows;
    // A narrow tile first, up to the output's next cache line, when every
    // output row starts as far from one: the other tiles then store whole
    // lines (4096x4096: 15 % faster).
    let skew = match out.as_ptr().align_offset(64) {
        s if rows.is_multiple_of(64) && s > 0 => s,
        _ => Tile::MAX,
    };
    let mut t0 = 0;
    while t0 < rows {
        let width = (if t0 == 0 { skew } else { Tile::MAX }).min(rows - t0);
        let tile = Tile {
            at: t0 * cols + i0,
            stride: cols,
            width,
            height,
        };
        tile.spread(isa, bits, &mut out[t0..], rows);
        t0 += width;
    }
    // SAFETY: the tiles' widths sum to `rows`, and each initialised its
    // columns of all `height` output rows: every entry of `out`.
    unsafe { &mut *(out as *mut [MaybeUninit<bool>] as *mut [bool]) }
}

/// Rows of bits stored as bool columns: row `r < width` is the `height`
/// bits of `bits` from bit `at + r * stride` on, and column `c < height` of
/// them goes to `out[c * out_stride..]`, its `width` rows as bools. Both
/// sides are at most [`Tile::MAX`]: the tile is transposed 64x64 squares
/// at a time in registers, each row read as one vector of words and each
/// column stored as one run of bools. (Stored 64 bools at a time into 512
/// columns, every store went to a page of its own and the stores took 40 %
/// of a mask.)
#[derive(Debug)]
pub(crate) struct Tile {
    at: usize,
    stride: usize,
    width: usize,
    height: usize,
}

/// Squares along either side of a [`Tile`].
const SIDE: usize = Tile::MAX / 64;

impl Tile {
    pub(crate) const MAX: usize = 512;

    /// Writes the tile's columns into `out` (initialising the entries
    /// written, and no others). Panics unless `bits` holds
    /// every bit of the rows and `out` every entry written. `_isa` proves
    /// the CPU runs the kernel.
    fn spread(
        &self,
        _isa: BitMatrixIsa,
        bits: &[u64],
        out: &mut [MaybeUninit<bool>],
        out_stride: usize,
    ) {
        let (w, h) = (self.width, self.height);
        assert!(
            w <= Self::MAX && h <= Self::MAX,
            "a tile is at most {0} x {0}",
            Self::MAX
        );
        if w == 0 || h == 0 {
            return;
        }
        let end = (w - 1)
            .checked_mul(self.stride)
            .and_then(|d| d.checked_add(self.at))
            .and_then(|d| d.checked_add(h))
            .expect("bit offsets in range");
        assert!(end <= 64 * bits.len(), "rows past the bits");
        assert!(
            (h - 1) * out_stride + w <= out.len(),
            "columns past the output"
        );
        // SAFETY: a `BitMatrixIsa` is only made when the CPU runs these
        // features; the entries written are in range (checked above).
        unsafe { self.spread_unchecked(bits, out.as_mut_ptr() as *mut bool, out_stride) }
    }

    /// [`spread`](Self::spread) without the token or the output's bounds
    /// check.
    ///
    /// # Safety
    /// The CPU must run AVX-512 F, BW and VBMI, and GFNI, and `out` must be
    /// valid for writes of `(height - 1) * out_stride + width` bools.
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi,gfni")]
    #[allow(clippy::needless_range_loop)] // `g` indexes the inner level of `rows`
    unsafe fn spread_unchecked(&self, bits: &[u64], out: *mut bool, out_stride: usize) {
        let (across, down) = (self.width.div_ceil(64), self.height.div_ceil(64));
        // `rows[t][g][j]`: the square of rows 64 t.. and columns 64 g..,
        // its rows 8 j.. 8 j + 8 a lane each.
        let mut rows = [[[_mm512_setzero_si512(); 8]; SIDE]; SIDE];
        for (t, square_rows) in rows.iter_mut().enumerate().take(across) {
            for j in 0..8 {
                let r = 64 * t + 8 * j;
                let words: [__m512i; 8] = std::array::from_fn(|l| self.row(bits, r + l));
                let lanes = transpose_lanes(&words);
                for (square, lane) in square_rows.iter_mut().zip(lanes) {
                    square[j] = lane;
                }
            }
        }
        let ones = _mm512_set1_epi8(1);
        let tail = self.width - 64 * (across - 1);
        let last: __mmask64 = if tail == 64 { !0 } else { (1 << tail) - 1 };
        for g in 0..down {
            let columns: [[u64; 64]; SIDE] = std::array::from_fn(|t| {
                if t < across {
                    transpose64(&rows[t][g])
                } else {
                    [0; 64]
                }
            });
            for c in 0..64.min(self.height - 64 * g) {
                for (t, square) in columns.iter().enumerate().take(across) {
                    let keep = if t + 1 == across { last } else { !0 };
                    // SAFETY: entries `(64 g + c) * out_stride..` up to
                    // `width` of `out` are writable (the caller's
                    // contract); the store writes only those.
                    unsafe {
                        let to = out.add((64 * g + c) * out_stride + 64 * t) as *mut i8;
                        _mm512_mask_storeu_epi8(to, keep, _mm512_maskz_mov_epi8(square[c], ones));
                    }
                }
            }
        }
    }

    /// Words `0..8` of row `r` (bits `64 g..` of it in lane `g`), zeros
    /// past `height` bits, and all zeros from row `width` on.
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi,gfni")]
    #[inline]
    fn row(&self, bits: &[u64], r: usize) -> __m512i {
        if r >= self.width {
            return _mm512_setzero_si512();
        }
        let at = self.at + r * self.stride;
        let (w, shift) = (at / 64, (at % 64) as u64);
        // The words holding bits `at..at + height`, each with the next one
        // to shift from: loads masked to the row's words, which `spread`
        // checked are in `bits`.
        let words = (at % 64 + self.height).div_ceil(64);
        let next = bits.get(w + 1..).unwrap_or(&[]);
        // SAFETY: each load reads only its unmasked lanes, words `w..w +
        // words` of `bits`.
        let (lo, hi) = unsafe {
            (
                _mm512_maskz_loadu_epi64(lane_mask(words), bits[w..].as_ptr() as *const i64),
                _mm512_maskz_loadu_epi64(lane_mask(words - 1), next.as_ptr() as *const i64),
            )
        };
        // A shift by 64 gives 0, so a row on a word boundary takes nothing
        // from the next word.
        let v = _mm512_or_si512(
            _mm512_srl_epi64(lo, _mm_set1_epi64x(shift as i64)),
            _mm512_sll_epi64(hi, _mm_set1_epi64x(64 - shift as i64)),
        );
        _mm512_maskz_mov_epi64(lane_mask(self.height.div_ceil(64)), v)
    }
}

/// The first `n` of eight lanes (`n` at most 8 counts; more is all).
fn lane_mask(n: usize) -> __mmask8 {
    if n >= 8 {
        !0
    } else {
        (1u8 << n) - 1
    }
}

/// For each 8x8 square of a register of eight rows, byte `8 l + b` (row
/// `l`, columns `8 b..`) to byte `8 b + 7 - l`: square `b` in lane `b`, its
/// rows from the top byte down.
const GATHER: [u8; 64] = permutation(true);

/// The 8x8 transpose of a register's bytes: byte `8 j + l` to byte `8 l + j`.
const EXCHANGE: [u8; 64] = permutation(false);

/// [`GATHER`] (`reversed`) or [`EXCHANGE`], as the source byte of each
/// output byte.
const fn permutation(reversed: bool) -> [u8; 64] {
    let mut p = [0u8; 64];
    let mut i = 0;
    while i < 64 {
        let (x, y) = (i / 8, i % 8);
        let to = if reversed { 8 * y + 7 - x } else { 8 * y + x };
        p[to] = i as u8;
        i += 1;
    }
    p
}

/// A byte permutation as a register.
#[target_feature(enable = "avx512f")]
#[inline]
fn bytes_of(p: &[u8; 64]) -> __m512i {
    // SAFETY: `p` is 64 readable bytes.
    unsafe { _mm512_loadu_si512(p.as_ptr() as *const __m512i) }
}

/// The transpose of the 64x64 bit matrix whose row `8 j + l` is lane `l`
/// of `rows[j]`: bit `r` of word `c` of the result is row `r`'s bit `c`.
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi,gfni")]
#[inline]
fn transpose64(rows: &[__m512i; 8]) -> [u64; 64] {
    // Byte `8 l + b` of `rows[j]` holds row 8j + l's columns 8b.. 8b + 8.
    // The bytes of each 8x8 square are gathered into one lane, rows in
    // reverse, for the affine transform, whose matrix lists its rows from
    // the top byte down.
    let gather = bytes_of(&GATHER);
    // Byte `i` of each lane of the vector operand is bit `i` alone, so the
    // transform's byte `i` is the square's column `i`.
    let unit = _mm512_set1_epi64(0x8040_2010_0804_0201_u64 as i64);
    let squares: [__m512i; 8] = std::array::from_fn(|j| {
        let square = _mm512_permutexvar_epi8(gather, rows[j]);
        _mm512_gf2p8affine_epi64_epi8::<0>(unit, square)
    });
    // Byte `c` of `squares[j]` is column `c`'s bits of rows 8j.. 8j + 8:
    // gather lane m of every register into register m, then byte j of each
    // lane from lane j's byte.
    let lanes = transpose_lanes(&squares);
    let bytes = bytes_of(&EXCHANGE);
    let mut out = [0u64; 64];
    for (m, &lane) in lanes.iter().enumerate() {
        // SAFETY: `out[8m..8m + 8]` is 64 writable bytes.
        unsafe {
            let to = out.as_mut_ptr().add(8 * m) as *mut __m512i;
            _mm512_storeu_si512(to, _mm512_permutexvar_epi8(bytes, lane));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` bits of `bits` from bit `at` on, one at a time.
    fn row(bits: &[u64], at: usize, n: usize) -> Vec<bool> {
        (at..at + n)
            .map(|i| (bits[i / 64] >> (i % 64)) & 1 == 1)
            .collect()
    }

    #[test]
    fn a_tile_spreads_as_its_transpose() {
        let Some(isa) = BitMatrixIsa::new() else {
            return;
        };
        let mut rng = crate::vd::SplitMix64::new(11);
        let bits: Vec<u64> = (0..900).map(|_| rng.next()).collect();
        // Aligned and unaligned rows, narrow and short tiles either way,
        // strides under and over a word, and rows ending on the last bit.
        for (at, stride, width, height, out_stride) in [
            (0, 64, 64, 64, 64),
            (5, 300, 64, 64, 100),
            (64, 128, 7, 64, 64),
            (3, 1, 64, 9, 70),
            (0, 0, 1, 1, 1),
            (17, 77, 33, 40, 41),
            (900 * 64 - 64, 64, 1, 64, 64),
            (0, 512, 64, 512, 64),
            (9, 600, 64, 300, 65),
            (1, 520, 60, 512, 64),
            (0, 8, 512, 512, 512),
            (7, 9, 300, 200, 333),
            (2, 400, 130, 64, 140),
            (900 * 64 - 130 - 63 * 3, 3, 64, 130, 64),
        ] {
            let tile = Tile {
                at,
                stride,
                width,
                height,
            };
            let mut out = vec![MaybeUninit::new(true); (height - 1) * out_stride + width + 3];
            tile.spread(isa, &bits, &mut out, out_stride);
            // SAFETY: every entry was initialised, by `vec!` or the tile.
            let out: Vec<bool> = out
                .into_iter()
                .map(|b| unsafe { b.assume_init() })
                .collect();
            let rows: Vec<Vec<bool>> = (0..width)
                .map(|r| row(&bits, at + r * stride, height))
                .collect();
            for (i, &got) in out.iter().enumerate() {
                let (c, r) = (i / out_stride, i % out_stride);
                let want = if c < height && r < width {
                    rows[r][c]
                } else {
                    true
                };
                assert_eq!(got, want, "{tile:?} at ({c}, {r})");
            }
        }
    }

    #[test]
    #[should_panic(expected = "rows past the bits")]
    fn a_tile_past_the_bits_is_refused() {
        let Some(isa) = BitMatrixIsa::new() else {
            panic!("rows past the bits (no CPU support to test)");
        };
        let tile = Tile {
            at: 64,
            stride: 64,
            width: 2,
            height: 65,
        };
        tile.spread(isa, &[0; 3], &mut [MaybeUninit::new(false); 200], 2);
    }
}
