//! Per-block comparator thresholds (docs/format.md, "Thresholds per block"):
//! block `b` compares with `thresholds[b]` instead of the config's threshold.

use super::VdConfig;
use crate::{bail, Layout, Result};

/// The largest per-block threshold: thresholds are stored as one byte each,
/// so at `comparator_bits = 8` a block cannot ask for `K = 256` (keep all).
pub const MAX_BLOCK_THRESHOLD: u32 = 255;

/// The thresholds a block of `config` may use: `1 ..= min(2^nc, 255)`.
pub fn block_threshold_range(config: &VdConfig) -> std::ops::RangeInclusive<u32> {
    1..=(1u32 << config.comparator_bits()).min(MAX_BLOCK_THRESHOLD)
}

/// Checks one threshold per block of `layout`, each in the config's range.
pub fn check_thresholds(config: &VdConfig, layout: &Layout, thresholds: &[u8]) -> Result<()> {
    if thresholds.len() != layout.n_blocks() {
        bail!(
            "thresholds: {} entries, but the layout has {} blocks (one threshold per block)",
            thresholds.len(),
            layout.n_blocks()
        );
    }
    let range = block_threshold_range(config);
    if let Some((b, &t)) = thresholds
        .iter()
        .enumerate()
        .find(|(_, &t)| !range.contains(&u32::from(t)))
    {
        bail!(
            "thresholds[{b}] = {t}: must be in {}..={} for comparator_bits = {}",
            range.start(),
            range.end(),
            config.comparator_bits()
        );
    }
    Ok(())
}
