//! Counting the weights an index keeps, for validation, at a cost
//! proportional to the file's size whatever its configs.
//!
//! A long index goes through the [`Expander`]. A short one would not repay
//! the expander's keep table (`2^(k + n_in)` entries), so its steps are
//! counted with [`FastKeep`] (a few dozen operations a step, even with 512
//! gates) until the steps seen for that config in the file repay the table;
//! from then on every tensor of that config counts by table lookup. Many
//! small tensors sharing one wide config thus cost about as much per byte as
//! one large tensor.

use crate::vd::check_thresholds;
use crate::vd::keep::FastKeep;
use crate::vd::step::for_each_register;
use crate::{Expander, Layout, Result, VdConfig};
use rayon::prelude::*;
use std::collections::HashMap;

/// Per config: the direct evaluator, the steps counted with it so far, and
/// the keep counts of every register value once those steps repay it.
struct Tables {
    fast: FastKeep,
    steps: u64,
    counts: Option<Vec<u8>>,
}

/// Counts kept weights, sharing tables between tensors of one config.
#[derive(Default)]
pub struct KeptCounter {
    configs: HashMap<VdConfig, Tables>,
}

impl KeptCounter {
    /// Weights `index` keeps under `config` and `layout`, block `b` comparing
    /// with `thresholds[b]` when given (format v2).
    pub fn count(
        &mut self,
        config: &VdConfig,
        layout: &Layout,
        index: &[u64],
        thresholds: Option<&[u8]>,
    ) -> Result<usize> {
        layout.check_index(index.len())?;
        let Some(thresholds) = thresholds else {
            let all: Vec<usize> = (0..layout.n_blocks()).collect();
            return self.count_blocks(config, layout, index, &all);
        };
        check_thresholds(config, layout, thresholds)?;
        let mut by_threshold = vec![Vec::new(); 256];
        for (b, &t) in thresholds.iter().enumerate() {
            by_threshold[usize::from(t)].push(b);
        }
        let mut kept = 0;
        for (t, blocks) in by_threshold.iter().enumerate() {
            if !blocks.is_empty() {
                let c = config.with_threshold(t as u32)?;
                kept += self.count_blocks(&c, layout, index, blocks)?;
            }
        }
        Ok(kept)
    }

    /// Weights kept by `blocks` of `index`, all under `config`.
    fn count_blocks(
        &mut self,
        config: &VdConfig,
        layout: &Layout,
        index: &[u64],
        blocks: &[usize],
    ) -> Result<usize> {
        let width = config.flip_flops() + config.n_in();
        let steps: u64 = blocks.iter().map(|&b| layout.steps(b) as u64).sum();
        if steps >= 1 << width && blocks.len() == layout.n_blocks() {
            return Ok(Expander::new(config, *layout).counts(index)?.iter().sum());
        }
        let t = self
            .configs
            .entry(config.clone())
            .or_insert_with(|| Tables {
                fast: FastKeep::new(config),
                steps: 0,
                counts: None,
            });
        t.steps += steps;
        if t.counts.is_none() && t.steps >= 1 << width {
            let counts = (0..1u32 << width)
                .into_par_iter()
                .map(|r| t.fast.keep_bits(r).count_ones() as u8)
                .collect();
            t.counts = Some(counts);
        }
        let (fast, counts) = (&t.fast, t.counts.as_deref());
        Ok(blocks
            .par_iter()
            .map(|&b| block(config, layout, index, b, fast, counts))
            .sum())
    }
}

impl KeptCounter {
    /// True once tensors of `config` count by table lookup.
    pub fn tabulated(&self, config: &VdConfig) -> bool {
        self.configs.get(config).is_some_and(|t| t.counts.is_some())
    }
}

/// Kept weights of block `b`: table lookups where there is a table, the
/// direct evaluation otherwise and for the block's last, partial step.
fn block(
    config: &VdConfig,
    layout: &Layout,
    index: &[u64],
    b: usize,
    fast: &FastKeep,
    counts: Option<&[u8]>,
) -> usize {
    let (words, valid) = (&index[layout.words(b)], layout.weights(b).len());
    let mut kept = 0usize;
    for_each_register(config, words, layout.steps(b), |t, r| {
        let left = valid - t * layout.n_out;
        kept += match counts {
            Some(c) if left >= layout.n_out => usize::from(c[r as usize]),
            _ => {
                let mut bits = fast.keep_bits(r);
                if left < 64 {
                    bits &= (1u64 << left) - 1;
                }
                bits.count_ones() as usize
            }
        };
    });
    kept
}

/// Weights the index keeps (one tensor; [`KeptCounter`] shares work across many).
pub fn kept_count(
    config: &VdConfig,
    layout: &Layout,
    index: &[u64],
    thresholds: Option<&[u8]>,
) -> Result<usize> {
    KeptCounter::default().count(config, layout, index, thresholds)
}
