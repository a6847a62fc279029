//! Choosing each block's comparator threshold (docs/algorithm.md, "Thresholds
//! per block"): the search runs a block at a few thresholds and keeps the one
//! whose optimum of `sum over kept (score - lam)` is highest.
//!
//! The candidates start from a prediction: the config's threshold suits the
//! tensor as a whole, and a block in which a larger share of scores lies
//! above `lam` (the share magnitude pruning would keep there) wants a
//! comparator that keeps more, in proportion. Blocks of a real layer differ
//! in that share (rows and filters differ in scale), which one threshold for
//! the whole tensor cannot follow. Measured on real layers, the threshold an
//! exhaustive search picks is close to that proportion, not to the block's
//! share itself (about half of it at 90 %).

use super::trellis::Trellis;
use crate::vd::block_threshold_range;
use crate::{Result, VdConfig};
use std::sync::OnceLock;

/// How the search picks each block's threshold.
#[derive(Clone, Debug, PartialEq)]
pub struct ThresholdSearch {
    /// Multiples of the predicted threshold tried first (rounded, clamped to
    /// the valid range, duplicates skipped); the first wins ties.
    pub factors: Vec<f64>,
    /// Then step to the winner's neighbours (threshold -1, +1) while that
    /// improves the block's objective.
    pub refine: bool,
}

impl ThresholdSearch {
    /// The prediction alone: one search per block.
    pub fn predicted() -> Self {
        Self {
            factors: vec![1.0],
            refine: false,
        }
    }
}

/// Trellises of the thresholds blocks try, built the first time one is asked for.
pub(super) struct Trellises {
    config: VdConfig,
    /// Indexed by threshold.
    built: Vec<OnceLock<Trellis>>,
    pub(super) range: (u32, u32),
}

impl Trellises {
    pub(super) fn new(config: &VdConfig) -> Self {
        let range = block_threshold_range(config);
        Self {
            config: config.clone(),
            built: (0..=*range.end()).map(|_| OnceLock::new()).collect(),
            range: (*range.start(), *range.end()),
        }
    }

    /// The number of thresholds a block may use.
    pub(super) fn count(&self) -> usize {
        (self.range.1 - self.range.0 + 1) as usize
    }

    pub(super) fn get(&self, threshold: u32) -> Result<&Trellis> {
        let slot = &self.built[threshold as usize];
        if let Some(t) = slot.get() {
            return Ok(t);
        }
        let config = self.config.with_threshold(threshold)?;
        Ok(slot.get_or_init(|| Trellis::new(&config)))
    }

    /// `threshold * factor`, rounded into the valid range.
    pub(super) fn predict(&self, threshold: u32, factor: f64) -> u32 {
        let k = (f64::from(threshold) * factor).round();
        (k as u32).clamp(self.range.0, self.range.1)
    }
}
