//! Stream order to tensor order (docs/format.md, "Order"): a tensor stored
//! column by column expands into the stream's own C-order matrix, the
//! transpose of the tensor's 2-D view, and is turned into C order here.

use crate::{bail, Result};
use rayon::prelude::*;

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

#[cfg(test)]
mod tests {
    use super::*;

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
