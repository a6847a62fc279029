//! The block layout (docs/format.md, "Blocks"): weights in C order cut into blocks
//! of `block_steps * n_out`, each starting in state 0 and owning whole `u64`
//! words of the index, so every block is searched and expanded on its own
//! (its bits are laid out as in docs/format.md, "Index layout").

use crate::{bail, Result, VdConfig};
use std::ops::Range;

/// The longest block, in steps.
pub const MAX_BLOCK_STEPS: usize = 1 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub n_weights: usize,
    pub block_steps: usize,
    pub n_in: usize,
    pub n_out: usize,
}

impl Layout {
    pub fn new(config: &VdConfig, n_weights: usize, block_steps: usize) -> Result<Self> {
        if n_weights == 0 {
            bail!("no weights: the tensor is empty");
        }
        // Bounds every position and size product below (no array is larger).
        if n_weights > isize::MAX as usize {
            bail!("n_weights = {n_weights}: more weights than an array can hold");
        }
        if !(1..=MAX_BLOCK_STEPS).contains(&block_steps) {
            bail!("block_steps = {block_steps}: must be in 1..={MAX_BLOCK_STEPS}");
        }
        Ok(Self {
            n_weights,
            block_steps,
            n_in: config.n_in() as usize,
            n_out: config.n_out() as usize,
        })
    }

    pub fn block_weights(&self) -> usize {
        self.block_steps * self.n_out
    }

    pub fn n_blocks(&self) -> usize {
        self.n_weights.div_ceil(self.block_weights())
    }

    /// Steps of block `b`: `block_steps`, or fewer for the last one.
    pub fn steps(&self, b: usize) -> usize {
        self.weights(b).len().div_ceil(self.n_out)
    }

    /// The flattened weight positions of block `b`.
    pub fn weights(&self, b: usize) -> Range<usize> {
        let start = b * self.block_weights();
        start..(start + self.block_weights()).min(self.n_weights)
    }

    /// Index words reserved for a full block.
    pub fn words_per_block(&self) -> usize {
        (self.block_steps * self.n_in).div_ceil(64)
    }

    /// The index words of block `b`; the last block uses only the words it needs.
    pub fn words(&self, b: usize) -> Range<usize> {
        let start = b * self.words_per_block();
        start..start + (self.steps(b) * self.n_in).div_ceil(64)
    }

    /// Length of the whole index in `u64` words.
    pub fn index_len(&self) -> usize {
        self.words(self.n_blocks() - 1).end
    }

    /// Exact index cost: the sum over blocks of `steps * n_in`.
    pub fn index_bits(&self) -> u64 {
        let last = self.n_blocks() - 1;
        ((last * self.block_steps + self.steps(last)) * self.n_in) as u64
    }

    /// Refuses an index whose length does not match this layout.
    pub fn check_index(&self, len: usize) -> Result<()> {
        let want = self.index_len();
        if len < want {
            bail!(
                "index too short: {len} words, but {} weights in blocks of {} steps need {want}",
                self.n_weights,
                self.block_steps
            );
        }
        if len > want {
            bail!(
                "index too long: {len} words, but {} weights in blocks of {} steps need {want}",
                self.n_weights,
                self.block_steps
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_tile_the_tensor() {
        let cfg = VdConfig::from_seed(4, 2, 10, 1, 1, 0).unwrap();
        let l = Layout::new(&cfg, 1234, 40).unwrap();
        assert_eq!(l.n_blocks(), 4);
        assert_eq!(l.words_per_block(), 2);
        assert_eq!(l.steps(3), (1234 - 1200_usize).div_ceil(10));
        assert_eq!(l.words(3), 6..7);
        assert_eq!(l.index_len(), 7);
        assert_eq!(l.index_bits(), ((3 * 40 + 4) * 2) as u64);
        assert!(l.check_index(6).is_err() && l.check_index(8).is_err());
    }
}
