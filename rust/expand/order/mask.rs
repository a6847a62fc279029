//! The keep-mask of a column-major stream in the tensor's C order
//! ([`Expander::mask_transposed`]): output bands written from the stream's
//! bits, by 64x64 squares transposed in registers where the CPU has the
//! instructions, by 8x8 squares in a word elsewhere.

use super::{copy_out, word_at, BAND};
use crate::arch::bitmatrix::Tile;
#[cfg(doc)]
use crate::Expander;

/// The output rows of a task of [`spread_band`](crate::arch::bitmatrix::spread_band): a tile's height
/// (each stream row's cache line of bits then serves eight squares in turn),
/// yet two bands per thread at least.
pub(super) fn wide_band(cols: usize) -> usize {
    let share = cols / (2 * rayon::current_num_threads());
    (share / BAND * BAND).clamp(BAND, Tile::MAX)
}

/// Output rows `i0..` (as many as `out` holds, at most [`BAND`]) of
/// [`Expander::mask_transposed`], in tiles of 64 columns: for each eight stream rows,
/// the 64 bits of the band's columns in each, then an 8x8 square per eight
/// columns, spread into a tile buffer whose rows are copied out whole. (Written
/// straight to the output, the band's rows lie a power of two apart for the
/// usual shapes, in the same few L1 sets, and every store missed.)
pub(super) fn write_band(bits: &[u64], i0: usize, rows: usize, cols: usize, out: &mut [bool]) {
    let height = out.len() / rows;
    let mut tile = [[false; 64]; BAND];
    for t0 in (0..rows).step_by(64) {
        let tw = 64.min(rows - t0);
        for j0 in (t0..t0 + tw).step_by(8) {
            let mut words = [0u64; 8];
            for (r, w) in words.iter_mut().enumerate().take(rows - j0) {
                *w = word_at(bits, (j0 + r) * cols + i0);
            }
            for (g, group) in tile[..height].chunks_mut(8).enumerate() {
                let mut square = 0;
                for (r, w) in words.iter().enumerate() {
                    square |= ((w >> (8 * g)) & 0xFF) << (8 * r);
                }
                let square = transpose8(square);
                for (k, row) in group.iter_mut().enumerate() {
                    row[j0 - t0..j0 - t0 + 8]
                        .copy_from_slice(&SPREAD[(square >> (8 * k)) as usize & 0xFF]);
                }
            }
        }
        copy_out(&tile[..height], out, rows, t0, tw);
    }
}

/// The transpose of the 8x8 bit matrix whose bit `8 r + c` is row `r`,
/// column `c` (three exchanges of ever larger sub-squares).
#[inline(always)]
fn transpose8(mut x: u64) -> u64 {
    let t = (x ^ (x >> 7)) & 0x00AA_00AA_00AA_00AA;
    x ^= t ^ (t << 7);
    let t = (x ^ (x >> 14)) & 0x0000_CCCC_0000_CCCC;
    x ^= t ^ (t << 14);
    let t = (x ^ (x >> 28)) & 0x0000_0000_F0F0_F0F0;
    x ^ t ^ (t << 28)
}

/// Byte `b` as eight bools, bit `c` in bool `c`.
static SPREAD: [[bool; 8]; 256] = {
    let mut table = [[false; 8]; 256];
    let mut b = 0;
    while b < 256 {
        let mut c = 0;
        while c < 8 {
            table[b][c] = (b >> c) & 1 == 1;
            c += 1;
        }
        b += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose8_matches_the_definition() {
        let mut rng = crate::vd::SplitMix64::new(7);
        for _ in 0..100 {
            let x = rng.next();
            let t = transpose8(x);
            for r in 0..8 {
                for c in 0..8 {
                    assert_eq!((t >> (8 * c + r)) & 1, (x >> (8 * r + c)) & 1, "{x:#x}");
                }
            }
        }
    }
}
