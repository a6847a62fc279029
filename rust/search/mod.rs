//! The exact Viterbi search over a whole tensor (docs/algorithm.md, "Search
//! objective"): every block searched at one `lam`, in parallel. One block's
//! search is in [`trellis`], its vector kernels' portable reference in
//! [`acs`], the choice of `lam` for a target rate in [`rate`].

pub(crate) mod acs;
pub(crate) mod rate;
mod trellis;

pub use trellis::BlockResult;

use crate::arch::{Isa, Level};
use crate::cancel::{self, Cancel, Checked};
use crate::{bail, Layout, Result, Scores, VdConfig};
use rayon::prelude::*;
use trellis::{search_block, Trellis, Workspace};

/// Refuse searches whose working memory (tables plus one workspace per
/// thread, survivor decisions included) would exceed this by default.
pub const DEFAULT_MAX_SEARCH_BYTES: usize = 1 << 30;

/// The search over a whole tensor: a trellis, a layout and the scores.
pub struct Searcher<'a> {
    trellis: Trellis,
    isa: Isa,
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
        crate::alloc::with_capacity::<u8>(need, "the search's working memory")?;
        let max_score = scores.check()?;
        Ok(Self {
            trellis,
            isa: Isa::best(),
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

    fn block(&self, ws: &mut Workspace, lam: f64, b: usize) -> BlockResult {
        self.piece(ws, lam, self.layout.weights(b).start, self.layout.steps(b))
    }

    /// Searches `steps` steps of weights from `start` as if they were a block.
    fn piece(&self, ws: &mut Workspace, lam: f64, start: usize, steps: usize) -> BlockResult {
        if self.cancel.is_cancelled() {
            return BlockResult {
                metric: 0.0,
                kept: 0,
            };
        }
        let gains = &mut ws.gains[..steps * self.trellis.n_out];
        self.scores.gains(start, lam, gains);
        let valid = self.layout.n_weights.min(start + gains.len()) - start;
        let res = search_block(&self.trellis, self.isa, ws, steps, valid, &self.cancel);
        BlockResult {
            metric: res.metric / self.scores.scale(),
            ..res
        }
    }

    /// A workspace for the parallel loops, which cannot return an error: a
    /// failed allocation unwinds to [`cancel::scope`] (see [`cancel::fail`]).
    fn workspace(&self) -> Workspace {
        Workspace::new(&self.trellis, self.layout.block_steps).unwrap_or_else(|e| cancel::fail(e))
    }

    /// Kept weights when `(start, steps)` pieces (at most a block long) are
    /// searched at `lam`, each from state 0; nothing is written.
    pub fn count(&self, lam: f64, pieces: &[(usize, usize)]) -> usize {
        pieces
            .par_iter()
            .map_init(
                || self.workspace(),
                |ws, &(start, steps)| {
                    self.piece(ws, lam, start, steps.min(self.layout.block_steps))
                        .kept
                },
            )
            .sum::<usize>()
            .checked(&self.cancel)
    }

    /// Searches every block at `lam`, writing the index; returns each block's result.
    pub fn run(&self, lam: f64, index: &mut [u64]) -> Result<Vec<BlockResult>> {
        self.layout.check_index(index.len())?;
        Ok(self.pass(lam, index))
    }

    /// [`run`](Self::run) on an index already checked against the layout.
    pub(crate) fn pass(&self, lam: f64, index: &mut [u64]) -> Vec<BlockResult> {
        let blocks = self.layout.n_blocks();
        let mut results = crate::alloc::with_capacity(blocks, "the per-block search results")
            .unwrap_or_else(|e| cancel::fail(e));
        index
            .par_chunks_mut(self.layout.words_per_block())
            .enumerate()
            .map_init(
                || self.workspace(),
                |ws, (b, out)| {
                    let res = self.block(ws, lam, b);
                    out.copy_from_slice(&ws.words[..out.len()]);
                    res
                },
            )
            .collect_into_vec(&mut results);
        results.checked(&self.cancel)
    }
}
