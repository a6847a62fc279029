//! Index-cost models (docs/format.md, "Index layout"): what the
//! index of a given keep-mask costs in bits under each format, so vitrust's
//! fixed index can be set beside the usual alternatives.
//!
//! A tensor is viewed as `(rows, cols)` (more than two dimensions: `shape[0]`
//! rows); the mask is its flattened C-order stream.

use crate::{bail, Expander, Layout, Result, VdConfig};
use rayon::prelude::*;

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

/// The bits a stored VD index of `layout` costs: `steps * n_in` per block,
/// plus `comparator_bits` per block when the blocks have their own
/// thresholds (format version 2; stored as a byte each, but `comparator_bits`
/// of them carry information). Python's `ViterbiSparse.index_bits` is the
/// same sum.
pub fn viterbi_bits(config: &VdConfig, layout: &Layout, per_block_thresholds: bool) -> u64 {
    let thresholds = if per_block_thresholds {
        layout.n_blocks() as u64 * u64::from(config.comparator_bits())
    } else {
        0
    };
    layout.index_bits() + thresholds
}

/// The number of bits that hold every value in `0..=max` (at least one).
pub fn bits_for(max: u64) -> u64 {
    u64::from(64 - max.leading_zeros()).max(1)
}

fn check_shape(n: usize, rows: usize) -> Result<()> {
    if n == 0 {
        bail!("mask is empty");
    }
    if rows == 0 || !n.is_multiple_of(rows) {
        bail!("rows = {rows} does not divide the mask's {n} entries");
    }
    Ok(())
}

fn check_relative(b: u32) -> Result<()> {
    if !(1..=32).contains(&b) {
        bail!("relative: bits = {b} must be in 1..=32");
    }
    Ok(())
}

/// The cost of `mask` (a `rows x (len / rows)` tensor, C order) under `fmt`.
pub fn index_cost(mask: &[bool], rows: usize, fmt: CostFormat) -> Result<Cost> {
    check_shape(mask.len(), rows)?;
    let nnz = || mask.iter().filter(|&&m| m).count() as u64;
    let relative = |b| {
        check_relative(b)?;
        let mut g = Gaps::new(b);
        for (i, _) in mask.iter().enumerate().filter(|(_, &m)| m) {
            g.keep(i as u64);
        }
        Ok(g.cost)
    };
    cost_of(mask.len(), rows, nnz, relative, fmt)
}

/// The costs of the mask that `index` expands to under each of `formats`,
/// computed block by block: memory stays at a block's mask per thread
/// whatever the tensor's size.
pub fn index_costs(
    e: &Expander,
    index: &[u64],
    rows: usize,
    formats: &[CostFormat],
) -> Result<Vec<Cost>> {
    let layout = *e.layout();
    layout.check_index(index.len())?;
    check_shape(layout.n_weights, rows)?;
    let bits: Vec<u32> = formats
        .iter()
        .filter_map(|f| match f {
            CostFormat::Relative { bits } => Some(*bits),
            _ => None,
        })
        .collect();
    for &b in &bits {
        check_relative(b)?;
    }
    let blocks: Vec<BlockGaps> = (0..layout.n_blocks())
        .into_par_iter()
        .map_init(
            || vec![0u64; e.bits_words()],
            |buf, b| {
                let nw = e.block_bits(index, b, buf);
                BlockGaps::of(&buf[..nw], layout.weights(b).start as u64, &bits)
            },
        )
        .collect();
    let nnz = blocks.iter().map(|g| g.nnz).sum::<u64>();
    let mut gaps: Vec<Gaps> = bits.iter().map(|&b| Gaps::new(b)).collect();
    for block in &blocks {
        for (g, inner) in gaps.iter_mut().zip(&block.inner) {
            g.join(block, inner);
        }
    }
    let relative = |b| {
        let i = bits.iter().position(|&x| x == b).expect("collected above");
        Ok(gaps[i].cost)
    };
    formats
        .iter()
        .map(|&f| cost_of(layout.n_weights, rows, || nnz, relative, f))
        .collect()
}

/// One format's cost from the kept count and, for relative indexing, the gaps.
fn cost_of(
    n: usize,
    rows: usize,
    nnz: impl Fn() -> u64,
    relative: impl Fn(u32) -> Result<Cost>,
    fmt: CostFormat,
) -> Result<Cost> {
    let cols = n / rows;
    let (n64, rows64) = (n as u64, rows as u64);
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
        CostFormat::Relative { bits } => return relative(bits),
        CostFormat::Entropy => entropy_bits(n64, nnz()),
    };
    Ok(Cost { bits, padding: 0 })
}

/// Relative indexing (Deep Compression): per kept weight the gap from the
/// previous kept position (the first from -1), plus `(gap - 1) / (2^b - 1)`
/// padding entries for long gaps; every entry costs `b` bits.
#[derive(Clone, Copy)]
struct Gaps {
    b: u32,
    span: u64,
    /// The last kept position plus one (0 before any).
    next: u64,
    cost: Cost,
}

impl Gaps {
    fn new(b: u32) -> Self {
        Self {
            b,
            span: (1u64 << b) - 1,
            next: 0,
            cost: Cost::default(),
        }
    }

    /// Kept weight at position `i` (positions in increasing order).
    fn keep(&mut self, i: u64) {
        let pad = (i - self.next) / self.span;
        self.cost.padding += pad;
        self.cost.bits += (1 + pad) * u64::from(self.b);
        self.next = i + 1;
    }

    /// Appends a block: the gap to its first kept weight, then its own gaps.
    fn join(&mut self, block: &BlockGaps, inner: &Cost) {
        if block.nnz == 0 {
            return;
        }
        self.keep(block.first);
        self.cost.bits += inner.bits;
        self.cost.padding += inner.padding;
        self.next = block.last + 1;
    }
}

/// A block's kept weights: count, first and last position, and per relative
/// width the cost of the gaps after its first kept weight.
struct BlockGaps {
    nnz: u64,
    first: u64,
    last: u64,
    inner: Vec<Cost>,
}

impl BlockGaps {
    fn of(bits: &[u64], start: u64, widths: &[u32]) -> Self {
        let mut gaps: Vec<Gaps> = widths.iter().map(|&b| Gaps::new(b)).collect();
        let (mut nnz, mut first, mut last) = (0u64, 0u64, 0u64);
        for (w, &word) in bits.iter().enumerate() {
            let mut x = word;
            while x != 0 {
                let i = start + 64 * w as u64 + u64::from(x.trailing_zeros());
                x &= x - 1;
                if nnz == 0 {
                    first = i;
                    for g in &mut gaps {
                        g.next = i + 1;
                    }
                } else {
                    for g in &mut gaps {
                        g.keep(i);
                    }
                }
                nnz += 1;
                last = i;
            }
        }
        Self {
            nnz,
            first,
            last,
            inner: gaps.iter().map(|g| g.cost).collect(),
        }
    }
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
    fn costs_from_the_index_match_those_of_the_mask() {
        use crate::{Layout, VdConfig};
        for (n, rows, bs, seed) in [
            (1000, 10, 7, 1),
            (4096, 64, 64, 2),
            (37, 1, 3, 3),
            (5000, 2, 1000, 4),
        ] {
            let config = VdConfig::from_seed(6, 1, 5, 3, 2, seed).unwrap();
            let layout = Layout::new(&config, n, bs).unwrap();
            let index: Vec<u64> = (0..layout.index_len() as u64)
                .map(|i| (i + seed).wrapping_mul(0x9E37_79B9_7F4A_7C15))
                .collect();
            let e = Expander::new(&config, layout);
            let mut mask = vec![false; n];
            e.mask(&index, &mut mask).unwrap();
            let formats = [
                CostFormat::Bitmask,
                CostFormat::Csr32,
                CostFormat::CsrMin,
                CostFormat::Relative { bits: 1 },
                CostFormat::Relative { bits: 4 },
                CostFormat::Relative { bits: 5 },
                CostFormat::Entropy,
            ];
            let got = index_costs(&e, &index, rows, &formats).unwrap();
            for (f, c) in formats.iter().zip(got) {
                assert_eq!(c, index_cost(&mask, rows, *f).unwrap(), "{f:?} n = {n}");
            }
        }
    }

    #[test]
    fn per_block_thresholds_cost_comparator_bits_per_block() {
        let c = VdConfig::from_seed(4, 2, 10, 3, 2, 1).unwrap();
        // 1234 weights in blocks of 40 steps of 10: three whole blocks and
        // one of 4 steps, 2 input bits a step (docs/format.md's example).
        let l = Layout::new(&c, 1234, 40).unwrap();
        assert_eq!(viterbi_bits(&c, &l, false), 248);
        assert_eq!(viterbi_bits(&c, &l, true), 248 + 4 * 3);
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
