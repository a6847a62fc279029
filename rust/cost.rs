//! Index-cost models (DESIGN.md, "The sparse object and the file"): what the
//! index of a given keep-mask costs in bits under each format, so vitrust's
//! fixed index can be set beside the usual alternatives.
//!
//! A tensor is viewed as `(rows, cols)` (more than two dimensions: `shape[0]`
//! rows); the mask is its flattened C-order stream.

use crate::{bail, Result};

/// One index format and its parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CostFormat {
    /// vitrust: `n_in` index bits per step of `n_out` weights.
    Viterbi { n_out: usize, n_in: usize },
    /// One bit per weight.
    Bitmask,
    /// scipy's CSR: an int32 column index per kept weight plus `rows + 1` row pointers.
    Csr32,
    /// CSR with 16-bit column indices and row pointers.
    Csr16,
    /// CSR with the fewest bits that hold a column index, and a row pointer.
    CsrMin,
    /// Relative indexing (Deep Compression) with `bits`-bit gaps.
    Relative { bits: u32 },
    /// `N * H(nnz / N)`: the least any lossless index of this mask needs.
    Entropy,
}

/// The cost of one mask under one format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cost {
    /// Index bits.
    pub bits: u64,
    /// Padding entries (relative indexing only): each also stores a zero value.
    pub padding: u64,
}

/// The number of bits that hold every value in `0..=max` (at least one).
pub fn bits_for(max: u64) -> u64 {
    u64::from(64 - max.leading_zeros()).max(1)
}

/// The cost of `mask` (a `rows x (len / rows)` tensor, C order) under `fmt`.
pub fn index_cost(mask: &[bool], rows: usize, fmt: CostFormat) -> Result<Cost> {
    let n = mask.len();
    if n == 0 {
        bail!("mask is empty");
    }
    if rows == 0 || n % rows != 0 {
        bail!("rows = {rows} does not divide the mask's {n} entries");
    }
    let cols = n / rows;
    let (n64, rows64) = (n as u64, rows as u64);
    let nnz = || mask.iter().filter(|&&m| m).count() as u64;
    let bits = match fmt {
        CostFormat::Viterbi { n_out, n_in } => {
            if !(1..=64).contains(&n_out) || !(1..=4).contains(&n_in) {
                bail!("viterbi: n_out = {n_out} must be in 1..=64 and n_in = {n_in} in 1..=4");
            }
            // Every block but the last is a whole number of steps, so the sum
            // over blocks of `steps * n_in` is `ceil(n / n_out) * n_in`.
            n64.div_ceil(n_out as u64) * n_in as u64
        }
        CostFormat::Bitmask => n64,
        CostFormat::Csr32 => 32 * (nnz() + rows64 + 1),
        CostFormat::Csr16 => {
            if cols > 1 << 16 {
                bail!("csr16: {cols} columns do not fit a 16-bit column index");
            }
            16 * (nnz() + rows64 + 1)
        }
        CostFormat::CsrMin => {
            let nnz = nnz();
            nnz * bits_for(cols as u64 - 1) + (rows64 + 1) * bits_for(nnz)
        }
        CostFormat::Relative { bits } => return relative(mask, bits),
        CostFormat::Entropy => entropy_bits(n64, nnz()),
    };
    Ok(Cost { bits, padding: 0 })
}

/// Relative indexing: per kept weight the gap from the previous kept position
/// (the first from -1), plus `(gap - 1) / (2^b - 1)` padding entries for long
/// gaps; every entry costs `b` bits.
fn relative(mask: &[bool], b: u32) -> Result<Cost> {
    if !(1..=32).contains(&b) {
        bail!("relative: bits = {b} must be in 1..=32");
    }
    let span = (1u64 << b) - 1;
    let (mut entries, mut padding, mut prev) = (0u64, 0u64, -1i64);
    for (i, _) in mask.iter().enumerate().filter(|(_, &m)| m) {
        let gap = (i as i64 - prev) as u64;
        let pad = (gap - 1) / span;
        padding += pad;
        entries += 1 + pad;
        prev = i as i64;
    }
    Ok(Cost {
        bits: entries * u64::from(b),
        padding,
    })
}

/// `ceil(n * H(nnz / n))` with `H` the binary entropy in bits.
fn entropy_bits(n: u64, nnz: u64) -> u64 {
    if nnz == 0 || nnz == n {
        return 0;
    }
    let p = nnz as f64 / n as f64;
    let h = -p * p.log2() - (1.0 - p) * (1.0 - p).log2();
    (n as f64 * h).ceil() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_mask_by_hand() {
        // 2 x 8, kept at 0, 1, 7 | 8+6.
        let mut m = [false; 16];
        for i in [0, 1, 7, 14] {
            m[i] = true;
        }
        let c = |f| index_cost(&m, 2, f).unwrap();
        assert_eq!(c(CostFormat::Bitmask).bits, 16);
        assert_eq!(c(CostFormat::Csr32).bits, 32 * (4 + 3));
        assert_eq!(c(CostFormat::Csr16).bits, 16 * (4 + 3));
        // Columns 0..7 need 3 bits; row pointers 0..=4 need 3 bits.
        assert_eq!(c(CostFormat::CsrMin).bits, 4 * 3 + 3 * 3);
        // Gaps 1, 1, 6, 7 with b = 2 (span 3): padding 0, 0, 1, 2.
        let r = c(CostFormat::Relative { bits: 2 });
        assert_eq!((r.bits, r.padding), (2 * 7, 3));
        assert_eq!(
            c(CostFormat::Viterbi { n_out: 5, n_in: 1 }).bits,
            16_u64.div_ceil(5)
        );
        assert_eq!(c(CostFormat::Entropy).bits, 13); // 16 * H(1/4) = 12.98
    }

    #[test]
    fn bad_parameters_are_refused() {
        let m = [true; 6];
        assert!(index_cost(&m, 4, CostFormat::Bitmask).is_err());
        assert!(index_cost(&[], 1, CostFormat::Bitmask).is_err());
        assert!(index_cost(&m, 1, CostFormat::Relative { bits: 0 }).is_err());
        assert!(index_cost(&m, 1, CostFormat::Viterbi { n_out: 0, n_in: 1 }).is_err());
        assert!(index_cost(&[true; 1 << 17], 1, CostFormat::Csr16).is_err());
    }
}
