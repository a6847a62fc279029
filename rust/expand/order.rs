//! Stream order to tensor order (docs/format.md, "Order"): a tensor stored
//! column by column expands into the stream's own C-order matrix, the
//! transpose of the tensor's 2-D view, and is turned into C order here.

use super::values::for_each_set;
use super::Expander;
use crate::arch::{bitmatrix, BitMatrixIsa};
use crate::sys::Zeroable;
use crate::{bail, Result};
use rayon::prelude::*;

mod mask;

/// Side of the square tiles: a tile is copied into a buffer of its own, so
/// neither side is walked down a column. (Walked in place, the 64 rows of a
/// tile lie a power of two apart for the usual shapes, all in the same few
/// L1 sets, and the transpose of a 4096x4096 mask took 8x its expansion.)
const TILE: usize = 64;

/// Writes into `dst` (`cols x rows`, C order) the transpose of `src`
/// (`rows x cols`, C order), bands of `TILE` destination rows in parallel.
/// Both slices must hold `rows * cols` elements.
pub fn transpose<T: Copy + Send + Sync>(
    src: &[T],
    rows: usize,
    cols: usize,
    dst: &mut [T],
) -> Result<()> {
    if rows.checked_mul(cols) != Some(src.len()) || dst.len() != src.len() {
        bail!(
            "transpose: {rows} x {cols} does not fit {} source and {} destination elements",
            src.len(),
            dst.len()
        );
    }
    if rows == 0 || cols == 0 {
        return Ok(());
    }
    dst.par_chunks_mut(TILE * rows).enumerate().for_each_init(
        || vec![src[0]; TILE * TILE],
        |tile, (band, out)| {
            let c0 = band * TILE;
            let width = out.len() / rows;
            for r0 in (0..rows).step_by(TILE) {
                let height = TILE.min(rows - r0);
                // The tile's source rows, each a contiguous read.
                for (r, row) in tile.chunks_exact_mut(TILE).take(height).enumerate() {
                    let at = (r0 + r) * cols + c0;
                    row[..width].copy_from_slice(&src[at..at + width]);
                }
                // Its destination rows, each a contiguous write.
                for c in 0..width {
                    let to = &mut out[c * rows + r0..c * rows + r0 + height];
                    for (r, v) in to.iter_mut().enumerate() {
                        *v = tile[r * TILE + c];
                    }
                }
            }
        },
    );
    Ok(())
}

/// Output rows each task of [`Expander::mask_transposed`] writes (a multiple of 8).
const BAND: usize = 64;

impl Expander {
    /// The mask of every weight in stream order, bit-packed (bit `i` of word
    /// `i / 64`), with one spare word of zeros at the end.
    pub fn stream_bits(&self, index: &[u64]) -> Result<Vec<u64>> {
        let layout = *self.layout();
        layout.check_index(index.len())?;
        let words = layout.n_weights.div_ceil(64);
        let bw = layout.block_weights();
        if bw.is_multiple_of(64) {
            // Each block's words are its own: decoded in parallel, each
            // block into its chunk of a new vector (the spare word is a
            // chunk of its own, past the last block).
            let mut out = crate::sys::output::<u64>(words + 1, "the stream's mask bits")?;
            crate::sys::par_fill(
                &mut out,
                words + 1,
                bw / 64,
                || self.cancel().is_cancelled(),
                || vec![0u64; self.bits_words()],
                |bits, b, o| {
                    if b < layout.n_blocks() {
                        self.block_bits(index, b, bits);
                        o.copy_from_slice(&bits[..o.len()]);
                    }
                },
            );
            self.cancel().checkpoint();
            return Ok(out);
        }
        // Blocks share words: ORed in one at a time.
        let mut out = crate::sys::zeros::<u64>(words + 1, "the stream's mask bits")?;
        let mut bits = vec![0u64; self.bits_words()];
        for b in 0..layout.n_blocks() {
            self.cancel().check()?;
            let nw = self.block_bits(index, b, &mut bits);
            or_bits_at(&mut out, layout.weights(b).start, &bits[..nw]);
        }
        self.cancel().checkpoint();
        Ok(out)
    }

    /// The keep-mask of a stream stored column by column, in the tensor's C
    /// order: the transpose of the stream's `rows x cols` matrix, written
    /// straight from the stream's bits, once and in order. Where the CPU
    /// has GFNI, 64x64 squares of bits are transposed in registers and
    /// spread to bools into an output no pass zeroes first (4096x4096 on
    /// two cores: 1.2 ms against 0.7 ms for a mask in C order); elsewhere
    /// 8x8 squares in a word, spread by a table (2.7 ms).
    pub fn mask_transposed(&self, index: &[u64], rows: usize, cols: usize) -> Result<Vec<bool>> {
        self.mask_transposed_by(index, rows, cols, BitMatrixIsa::new())
    }

    /// [`mask_transposed`](Self::mask_transposed), each 64x64 square of
    /// bits transposed in registers when `isa` is given.
    fn mask_transposed_by(
        &self,
        index: &[u64],
        rows: usize,
        cols: usize,
        isa: Option<BitMatrixIsa>,
    ) -> Result<Vec<bool>> {
        self.check_matrix(rows, cols)?;
        let bits = self.stream_bits(index)?;
        let Some(isa) = isa else {
            return self.in_bands(
                rows,
                "the keep-mask",
                || (),
                |_, i0, out| mask::write_band(&bits, i0, rows, cols, out),
            );
        };
        let band = mask::wide_band(cols);
        let out = crate::sys::par_write(
            self.layout().n_weights,
            band * rows,
            "the keep-mask",
            || self.cancel().is_cancelled(),
            || (),
            |_, i, out| bitmatrix::spread_band(isa, &bits, i * band, rows, cols, out),
        )?;
        self.cancel().checkpoint();
        Ok(out)
    }

    /// [`scatter_vec`](Self::scatter_vec) for a stream stored column by
    /// column, in the tensor's C order as [`mask_transposed`](Self::mask_transposed):
    /// each value is placed straight from the stream's bits and its rank
    /// among them, bands of output rows at a time (through a tile buffer
    /// unless under a fifth are kept), with no stream-order copy of the
    /// dense array.
    pub fn scatter_transposed<T: Zeroable + Copy + Default + Send + Sync>(
        &self,
        index: &[u64],
        values: &[T],
        rows: usize,
        cols: usize,
    ) -> Result<Vec<T>> {
        self.check_matrix(rows, cols)?;
        let bits = self.stream_bits(index)?;
        // The kept weights before each word.
        let mut ranks = crate::sys::with_capacity::<usize>(bits.len(), "the stream's ranks")?;
        let mut total = 0;
        for w in &bits {
            ranks.push(total);
            total += w.count_ones() as usize;
        }
        if total != values.len() {
            bail!(
                "values has {} entries but the index keeps {total} weights",
                values.len()
            );
        }
        let stream = Stream {
            bits: &bits,
            ranks: &ranks,
            values,
            rows,
            cols,
        };
        if 5 * total < self.layout().n_weights {
            // Under a fifth kept: each kept value stored where it goes.
            return self.in_bands(
                rows,
                "the dense array",
                || (),
                |_, i0, out| stream.write_band_sparse(i0, out),
            );
        }
        self.in_bands(
            rows,
            "the dense array",
            || vec![[T::default(); 64]; BAND],
            |tile, i0, out| stream.write_band_tiled(i0, out, tile),
        )
    }

    /// Refuses a `rows x cols` matrix that is not the stream's weights.
    fn check_matrix(&self, rows: usize, cols: usize) -> Result<()> {
        let n = self.layout().n_weights;
        if rows.checked_mul(cols) != Some(n) {
            bail!("transpose: {rows} x {cols} does not fit {n} weights");
        }
        Ok(())
    }

    /// A new output of every weight in the tensor's C order (`cols x rows`),
    /// [`BAND`] rows at a time in parallel by `write(state, first row, rows)`
    /// (`state` from `init`, once per worker), each writing its rows whole.
    fn in_bands<T: Zeroable + Send, S>(
        &self,
        rows: usize,
        what: &str,
        init: impl Fn() -> S + Sync + Send,
        write: impl Fn(&mut S, usize, &mut [T]) + Sync + Send,
    ) -> Result<Vec<T>> {
        let n = self.layout().n_weights;
        let mut out = crate::sys::output::<T>(n, what)?;
        if n == 0 {
            return Ok(out);
        }
        crate::sys::par_fill(
            &mut out,
            n,
            BAND * rows,
            || self.cancel().is_cancelled(),
            init,
            |state, band, out| write(state, band * BAND, out),
        );
        self.cancel().checkpoint();
        Ok(out)
    }
}

/// ORs `bits` into `out` from bit `at` on (`out` has room for them).
fn or_bits_at(out: &mut [u64], at: usize, bits: &[u64]) {
    let (w, s) = (at / 64, at % 64);
    for (i, &b) in bits.iter().enumerate() {
        out[w + i] |= b << s;
        if s > 0 && b >> (64 - s) != 0 {
            out[w + i + 1] |= b >> (64 - s);
        }
    }
}

/// A stream's bits, the kept weights before each of its words, its values
/// and its matrix's shape, for [`Expander::scatter_transposed`].
struct Stream<'a, T> {
    bits: &'a [u64],
    ranks: &'a [usize],
    values: &'a [T],
    rows: usize,
    cols: usize,
}

impl<T: Copy + Default> Stream<'_, T> {
    /// Stream row `j`'s bits of the band's columns from `i0` on (`band`
    /// masks them to the band's height), and the rank of its first value.
    #[inline(always)]
    fn row(&self, j: usize, i0: usize, band: u64) -> (u64, usize) {
        let at = j * self.cols + i0;
        let (w, s) = (at / 64, at % 64);
        let k = self.ranks[w] + (self.bits[w] & ((1u64 << s) - 1)).count_ones() as usize;
        (word_at(self.bits, at) & band, k)
    }

    /// Output rows `i0..` (as many as `out` holds, at most [`BAND`]), in
    /// tiles of 64 columns: each stream row's 64 bits of the band's columns,
    /// their values from the row's rank on, into `tile` (as in [`write_band`]),
    /// whose rows are copied out whole.
    fn write_band_tiled(&self, i0: usize, out: &mut [T], tile: &mut [[T; 64]]) {
        let rows = self.rows;
        let height = out.len() / rows;
        let band = band_mask(height);
        for t0 in (0..rows).step_by(64) {
            let tw = 64.min(rows - t0);
            for row in &mut tile[..height] {
                row[..tw].fill(T::default());
            }
            for j in t0..t0 + tw {
                let (bits, mut k) = self.row(j, i0, band);
                for_each_set(&[bits], |c| {
                    tile[c][j - t0] = self.values[k];
                    k += 1;
                });
            }
            copy_out(&tile[..height], out, rows, t0, tw);
        }
    }

    /// Output rows `i0..` (as many as `out` holds, at most [`BAND`]; `out`
    /// arrives zeroed, as [`Expander::in_bands`] hands it out): each stream row's bits
    /// of the band's columns, their values from the row's rank on, stored
    /// where they go: only kept values are written. Faster than the tile
    /// when few are kept (4096x4096: 15 % at 10 % kept), slower when many
    /// (50 % slower at half kept: the stores go 64 rows apart).
    fn write_band_sparse(&self, i0: usize, out: &mut [T]) {
        let rows = self.rows;
        let band = band_mask(out.len() / rows);
        for j in 0..rows {
            let (bits, mut k) = self.row(j, i0, band);
            for_each_set(&[bits], |c| {
                out[c * rows + j] = self.values[k];
                k += 1;
            });
        }
    }
}

/// Copies row `k` of `tile` (its first `tw` entries) to `out` from
/// `k * rows + t0` on. Whole tiles copy as fixed 64-entry arrays, which
/// compile to a few vector moves where a slice of run-time length calls
/// `memmove` (18 % of an order-F mask).
#[inline(always)]
fn copy_out<T: Copy>(tile: &[[T; 64]], out: &mut [T], rows: usize, t0: usize, tw: usize) {
    for (k, row) in tile.iter().enumerate() {
        let at = k * rows + t0;
        if tw == 64 {
            let dst: &mut [T; 64] = (&mut out[at..at + 64]).try_into().expect("64 entries");
            *dst = *row;
        } else {
            out[at..at + tw].copy_from_slice(&row[..tw]);
        }
    }
}

/// The low `height` bits set (`height` at most 64).
fn band_mask(height: usize) -> u64 {
    if height == 64 {
        u64::MAX
    } else {
        (1u64 << height) - 1
    }
}

/// 64 bits of `bits` from bit `at` on (zeros past the end).
#[inline(always)]
fn word_at(bits: &[u64], at: usize) -> u64 {
    let (w, s) = (at / 64, at % 64);
    let lo = bits[w] >> s;
    match bits.get(w + 1) {
        Some(&hi) if s > 0 => lo | (hi << (64 - s)),
        _ => lo,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expanders and indexes over shapes off the 8x8 squares and the bands,
    /// blocks aligned to words and not, a single row or column, as
    /// `(expander, index, rows, cols)`.
    fn cases() -> Vec<(Expander, Vec<u64>, usize, usize)> {
        let shapes = [
            (5, 64, 64, 40),
            (5, 7, 13, 29),
            (3, 16, 200, 3),
            (1, 10, 1, 77),
            (2, 33, 77, 1),
            (4, 25, 130, 70),
            (5, 64, 65, 1100),
        ];
        // Thresholds 7 and 1 of 16: 45-90 % and 10-90 % kept, so cases lie
        // either side of the fifth where the transposed scatter changes method.
        let case = |(n_out, steps, rows, cols): (u32, usize, usize, usize), threshold: u32| {
            let cfg = crate::VdConfig::from_seed(6, 1, n_out, 4, threshold, 3).unwrap();
            let layout = crate::Layout::new(&cfg, rows * cols, steps).unwrap();
            let index = (0..layout.index_len() as u64)
                .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17))
                .collect();
            (Expander::new(&cfg, layout), index, rows, cols)
        };
        [7, 1]
            .into_iter()
            .flat_map(|t| shapes.into_iter().map(move |s| case(s, t)))
            .collect()
    }

    #[test]
    fn the_transposed_mask_is_the_mask_transposed() {
        for (e, index, rows, cols) in cases() {
            let stream = e.mask_vec(&index).unwrap();
            let mut want = vec![false; stream.len()];
            transpose(&stream, rows, cols, &mut want).unwrap();
            for isa in [None, BitMatrixIsa::new()] {
                let got = e.mask_transposed_by(&index, rows, cols, isa).unwrap();
                assert_eq!(got, want, "{rows}x{cols}, squares {}", isa.is_some());
            }
            let bits = e.stream_bits(&index).unwrap();
            let unpacked: Vec<bool> = (0..stream.len())
                .map(|i| (bits[i / 64] >> (i % 64)) & 1 == 1)
                .collect();
            assert_eq!(unpacked, stream);
            assert!(e.mask_transposed(&index, rows + 1, cols).is_err());
        }
    }

    #[test]
    fn the_transposed_scatter_is_the_scatter_transposed() {
        let (mut sparse, mut dense) = (0, 0);
        for (e, index, rows, cols) in cases() {
            let kept: usize = e.counts(&index).unwrap().iter().sum();
            if 5 * kept < rows * cols {
                sparse += 1;
            } else {
                dense += 1;
            }
            let values: Vec<f32> = (0..kept).map(|i| i as f32 + 1.0).collect();
            let stream = e.scatter_vec(&index, values.as_slice(), None).unwrap();
            let mut want = vec![0f32; stream.len()];
            transpose(&stream, rows, cols, &mut want).unwrap();
            let got = e.scatter_transposed(&index, &values, rows, cols).unwrap();
            assert_eq!(got, want, "{rows}x{cols}");
            let wide: Vec<f64> = values.iter().map(|&v| f64::from(v)).collect();
            let got = e.scatter_transposed(&index, &wide, rows, cols).unwrap();
            assert!(got.iter().zip(&want).all(|(&a, &b)| a == f64::from(b)));
            let short = &values[..kept.saturating_sub(1)];
            assert!(e.scatter_transposed(&index, short, rows, cols).is_err() || kept == 0);
            assert!(e
                .scatter_transposed(&index, &values, rows, cols + 1)
                .is_err());
        }
        assert!(sparse >= 3 && dense >= 3, "{sparse} sparse, {dense} dense");
    }

    #[test]
    fn transpose_matches_the_definition() {
        // Shapes around the tile size, a single row or column, and empty.
        for (rows, cols) in [
            (1, 1),
            (1, 70),
            (70, 1),
            (63, 65),
            (64, 64),
            (130, 7),
            (5, 200),
            (0, 3),
        ] {
            let src: Vec<u32> = (0..rows * cols).map(|i| i as u32 * 2654435761).collect();
            let mut dst = vec![0u32; rows * cols];
            transpose(&src, rows, cols, &mut dst).unwrap();
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(
                        dst[c * rows + r],
                        src[r * cols + c],
                        "{rows}x{cols} at ({r}, {c})"
                    );
                }
            }
        }
    }

    #[test]
    fn transpose_refuses_sizes_that_do_not_fit() {
        let mut dst = [0u8; 6];
        assert!(transpose(&[0u8; 6], 2, 4, &mut dst).is_err());
        assert!(transpose(&[0u8; 6], 2, 3, &mut dst[..5]).is_err());
        assert!(transpose(&[0u8; 6], usize::MAX, 2, &mut dst).is_err());
    }
}
