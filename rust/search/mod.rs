//! The exact Viterbi search over a whole tensor (docs/algorithm.md, "Search
//! objective"): every block searched at one `lam`, in parallel. One block's
//! search is in [`trellis`], its vector kernels' portable reference in
//! [`acs`], the choice of `lam` for a target rate in [`rate`].

pub(crate) mod acs;
mod quantise;
pub(crate) mod rate;
mod thresholds;
mod trellis;

pub use thresholds::ThresholdSearch;
pub use trellis::BlockResult;

/// A block searched already: `(block, result, index words)`, as
/// [`Searcher::pieces`] gives them for whole blocks.
pub(crate) type Searched = (usize, BlockResult, Vec<u64>);

use crate::arch::{Isa, Level};
use crate::cancel::{self, Cancel, Checked};
use crate::{bail, Layout, Result, Scores, VdConfig};
use rayon::prelude::*;
use thresholds::Trellises;
use trellis::{search_block, Trellis, Workspace};

/// Refuse searches whose working memory (tables plus one workspace per
/// thread, survivor decisions included) would exceed this by default.
pub const DEFAULT_MAX_SEARCH_BYTES: usize = 1 << 30;

/// The search over a whole tensor: a trellis, a layout and the scores.
pub struct Searcher<'a> {
    trellis: Trellis,
    /// Per-block thresholds: how they are chosen and the trellis of each.
    per_block: Option<(ThresholdSearch, Trellises)>,
    threshold: u32,
    isa: Isa,
    /// Integer metrics where they are exact ([`quantise`]); float32 otherwise.
    integer: bool,
    keeps_all: bool,
    layout: Layout,
    scores: Scores<'a>,
    /// The largest score (unscaled).
    max_score: f64,
    /// The token current when the searcher was built (see [`crate::cancel`]).
    cancel: Cancel,
}

impl<'a> Searcher<'a> {
    /// Checks the scores and refuses a search whose working memory, with one
    /// workspace per thread of the current pool, would exceed `max_bytes`.
    pub fn new(
        config: &VdConfig,
        layout: Layout,
        scores: Scores<'a>,
        max_bytes: usize,
    ) -> Result<Self> {
        if scores.len() != layout.n_weights {
            bail!(
                "scores have {} elements, the layout {}",
                scores.len(),
                layout.n_weights
            );
        }
        let trellis = Trellis::new(config);
        let threads = rayon::current_num_threads();
        let need = trellis.table_bytes() + threads * trellis.workspace_bytes(layout.block_steps);
        if need > max_bytes {
            bail!(
                "flip_flops = {}, n_in = {} with block_steps = {} on {threads} threads needs {need} bytes of search memory (survivor memory per block and thread included), above the limit of {max_bytes}; use fewer flip-flops, shorter blocks, fewer threads or a larger max_memory",
                config.flip_flops(), config.n_in(), layout.block_steps
            );
        }
        // The workspaces are allocated inside the parallel loops, where a
        // failure cannot be returned: make sure the memory can be had first.
        crate::sys::with_capacity::<u8>(need, "the search's working memory")?;
        let max_score = scores.check()?;
        Ok(Self {
            trellis,
            per_block: None,
            threshold: config.threshold(),
            isa: Isa::best(),
            integer: true,
            keeps_all: config.keeps_all(),
            layout,
            scores: scores.scaled(max_score),
            max_score,
            cancel: cancel::current(),
        })
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Lets every block choose its own threshold as `how` says (format v2),
    /// refusing it when the trellises it may build would exceed `max_bytes`
    /// together with the rest of the search's memory.
    pub fn with_thresholds(
        mut self,
        config: &VdConfig,
        how: ThresholdSearch,
        max_bytes: usize,
    ) -> Result<Self> {
        if how.factors.is_empty() || how.factors.iter().any(|f| !(f.is_finite() && *f > 0.0)) {
            bail!(
                "threshold factors {:?}: need at least one, each finite and positive",
                how.factors
            );
        }
        let trellises = Trellises::new(config);
        let threads = rayon::current_num_threads();
        let tables = self
            .trellis
            .table_bytes()
            .saturating_mul(trellises.count() + 1);
        let need = tables + threads * self.trellis.workspace_bytes(self.layout.block_steps);
        if need > max_bytes {
            bail!(
                "per-block thresholds at flip_flops = {}, n_in = {}, comparator_bits = {} may need {need} bytes of search tables, above the limit of {max_bytes}; use fewer flip-flops or comparator bits, or a larger max_memory",
                config.flip_flops(), config.n_in(), config.comparator_bits()
            );
        }
        self.per_block = Some((how, trellises));
        Ok(self)
    }

    /// Runs the kernels at `level` instead of the best one (for tests and
    /// benchmarks; every level gives the same bits).
    pub fn with_level(mut self, level: Level) -> Result<Self> {
        let Some(isa) = Isa::new(level) else {
            bail!(
                "instruction set {} is not available on this CPU",
                level.name()
            );
        };
        self.isa = isa;
        Ok(self)
    }

    /// Searches every block on float32 metrics instead of integer ones where
    /// they are exact (for tests and benchmarks: either scores within the
    /// search's tolerance of the optimum, the bits may differ).
    pub fn with_float_metrics(mut self) -> Self {
        self.integer = false;
        self
    }

    /// True when every block chooses its own threshold.
    pub fn chooses_thresholds(&self) -> bool {
        self.per_block.is_some()
    }

    /// The config's threshold.
    pub fn threshold(&self) -> u32 {
        self.threshold
    }

    /// True when every input keeps every weight (`K = 2^nc`).
    pub fn keeps_all(&self) -> bool {
        self.keeps_all
    }

    pub fn scores(&self) -> &Scores<'a> {
        &self.scores
    }

    /// The largest score: past it every gain is negative.
    pub fn max_score(&self) -> f64 {
        self.max_score
    }

    fn block(
        &self,
        ws: &mut Workspace,
        lam: f64,
        share: f64,
        b: usize,
        fixed: Option<&[u8]>,
    ) -> BlockResult {
        let start = self.layout.weights(b).start;
        let fixed = fixed.map(|t| u32::from(t[b]));
        self.piece(ws, lam, share, start, self.layout.steps(b), fixed)
    }

    /// The share of all scores above `lam`, which per-block thresholds are
    /// predicted relative to (not needed otherwise: then 0).
    fn share_above(&self, lam: f64) -> f64 {
        if self.per_block.is_none() {
            return 0.0;
        }
        const CHUNK: usize = 1 << 16;
        let n = self.layout.n_weights;
        let above: usize = (0..n.div_ceil(CHUNK))
            .into_par_iter()
            .map(|c| {
                self.scores
                    .count_above(c * CHUNK..(c * CHUNK + CHUNK).min(n), lam)
            })
            .sum();
        above as f64 / n as f64
    }

    /// Searches `steps` steps of weights from `start` as if they were a block;
    /// with `fixed`, at that threshold only.
    fn piece(
        &self,
        ws: &mut Workspace,
        lam: f64,
        share: f64,
        start: usize,
        steps: usize,
        fixed: Option<u32>,
    ) -> BlockResult {
        if self.cancel.is_cancelled() {
            return BlockResult::cancelled(self.threshold);
        }
        let gains = &mut ws.gains[..steps * self.trellis.n_out];
        self.scores.gains(start, lam, gains);
        let valid = self.layout.n_weights.min(start + gains.len()) - start;
        let res = match (&self.per_block, fixed) {
            (None, _) => BlockResult {
                threshold: self.threshold,
                ..search_block(
                    &self.trellis,
                    self.isa,
                    ws,
                    steps,
                    valid,
                    &self.cancel,
                    self.integer,
                )
            },
            (Some((_, trellises)), Some(t)) => {
                let tr = trellises.get(t).unwrap_or_else(|e| cancel::fail(e));
                BlockResult {
                    threshold: t,
                    ..search_block(tr, self.isa, ws, steps, valid, &self.cancel, self.integer)
                }
            }
            (Some((how, trellises)), None) => self.choose(how, trellises, share, ws, steps, valid),
        };
        BlockResult {
            metric: res.metric / self.scores.scale(),
            ..res
        }
    }

    /// Searches a block (gains in `ws`) at the candidate thresholds, leaving
    /// the best one's input bits in `ws.words`.
    fn choose(
        &self,
        how: &ThresholdSearch,
        trellises: &Trellises,
        tensor_share: f64,
        ws: &mut Workspace,
        steps: usize,
        valid: usize,
    ) -> BlockResult {
        let above = ws.gains[..valid].iter().filter(|&&g| g > 0.0).count();
        // The config's threshold suits the tensor's share; a block denser or
        // sparser than the tensor gets it scaled in proportion.
        let share = above as f64 / valid.max(1) as f64;
        let relative = if tensor_share > 0.0 {
            share / tensor_share
        } else {
            1.0
        };
        let mut tried: Vec<u32> = Vec::with_capacity(how.factors.len() + 4);
        let mut best: Option<BlockResult> = None;
        let words = ws.words.len();
        let mut run = |t: u32, ws: &mut Workspace, best: &mut Option<BlockResult>| {
            if tried.contains(&t) {
                return false;
            }
            tried.push(t);
            let tr = trellises.get(t).unwrap_or_else(|e| cancel::fail(e));
            let res = BlockResult {
                threshold: t,
                ..search_block(tr, self.isa, ws, steps, valid, &self.cancel, self.integer)
            };
            if best.is_none_or(|b| res.metric > b.metric) {
                *best = Some(res);
                ws.best_words[..words].copy_from_slice(&ws.words);
                return true;
            }
            false
        };
        for &f in &how.factors {
            run(
                trellises.predict(self.threshold, relative * f),
                ws,
                &mut best,
            );
        }
        if how.refine {
            for dir in [-1i64, 1] {
                loop {
                    let at = i64::from(best.expect("one candidate at least").threshold) + dir;
                    if at < i64::from(trellises.range.0) || at > i64::from(trellises.range.1) {
                        break;
                    }
                    if !run(at as u32, ws, &mut best) {
                        break;
                    }
                }
            }
        }
        std::mem::swap(&mut ws.words, &mut ws.best_words);
        best.expect("one candidate at least")
    }

    /// A workspace for the parallel loops, which cannot return an error: a
    /// failed allocation unwinds to [`cancel::scope`] (see [`cancel::fail`]).
    fn workspace(&self) -> Workspace {
        Workspace::new(&self.trellis, self.layout.block_steps).unwrap_or_else(|e| cancel::fail(e))
    }

    /// Kept weights of each `(start, steps)` piece (at most a block long)
    /// searched at `lam` from state 0; nothing is written.
    pub fn counts(&self, lam: f64, pieces: &[(usize, usize)]) -> Vec<usize> {
        self.pieces(lam, pieces)
            .into_iter()
            .map(|p| p.0.kept)
            .collect()
    }

    /// [`counts`](Self::counts) with each piece's result and input bits (its
    /// index words, when the piece is a whole block).
    pub(crate) fn pieces(
        &self,
        lam: f64,
        pieces: &[(usize, usize)],
    ) -> Vec<(BlockResult, Vec<u64>)> {
        let share = self.share_above(lam);
        let words = self.layout.words_per_block();
        pieces
            .par_iter()
            .map_init(
                || self.workspace(),
                |ws, &(start, steps)| {
                    let steps = steps.min(self.layout.block_steps);
                    let res = self.piece(ws, lam, share, start, steps, None);
                    (res, ws.words[..words].to_vec())
                },
            )
            .collect::<Vec<_>>()
            .checked(&self.cancel)
    }

    /// Searches every block at `lam`, writing the index; returns each block's result.
    pub fn run(&self, lam: f64, index: &mut [u64]) -> Result<Vec<BlockResult>> {
        self.layout.check_index(index.len())?;
        Ok(self.pass(lam, index))
    }

    /// [`run`](Self::run) on an index already checked against the layout.
    pub(crate) fn pass(&self, lam: f64, index: &mut [u64]) -> Vec<BlockResult> {
        self.pass_with(lam, index, None, &[])
    }

    /// [`pass`](Self::pass), each block at threshold `fixed[b]` when given
    /// (a searcher that chooses thresholds per block only), and the blocks in
    /// `known` (sorted by block, each searched at this `lam` already, as
    /// [`pieces`](Self::pieces) returns them) taken as they are.
    pub(crate) fn pass_with(
        &self,
        lam: f64,
        index: &mut [u64],
        fixed: Option<&[u8]>,
        known: &[Searched],
    ) -> Vec<BlockResult> {
        let share = self.share_above(lam);
        let blocks = self.layout.n_blocks();
        let mut results = crate::sys::with_capacity(blocks, "the per-block search results")
            .unwrap_or_else(|e| cancel::fail(e));
        index
            .par_chunks_mut(self.layout.words_per_block())
            .enumerate()
            .map_init(
                || self.workspace(),
                |ws, (b, out)| {
                    if let Ok(k) = known.binary_search_by_key(&b, |k| k.0) {
                        out.copy_from_slice(&known[k].2[..out.len()]);
                        return known[k].1;
                    }
                    let res = self.block(ws, lam, share, b, fixed);
                    out.copy_from_slice(&ws.words[..out.len()]);
                    res
                },
            )
            .collect_into_vec(&mut results);
        results.checked(&self.cancel)
    }
}

#[cfg(test)]
mod tests;
