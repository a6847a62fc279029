//! The exact Viterbi search (DESIGN.md, "The search"): per block, the
//! VD-reachable mask maximising `sum over kept (score - lam)`.
//!
//! Register value `r = (p << k) | ns` names a transition: into state
//! `ns = r & (2^k - 1)` from state `r >> n_in`, with input `u = ns & (2^n_in - 1)`
//! and `p` the `n_in` bits that leave the register. Add-compare-select keeps,
//! for every `ns`, the best `p` (the survivor decision, bit-packed), and the
//! traceback from the best final state replays the decisions into the input bits.

use crate::acs::{self, subset_sums, Level};
use crate::alloc::zeros;
use crate::cancel::{self, Cancel, Checked};
use crate::{bail, Layout, Result, Scores, VdConfig};
use rayon::prelude::*;

/// Refuse searches whose working memory (tables plus one workspace per
/// thread, survivor decisions included) would exceed this by default.
pub const DEFAULT_MAX_SEARCH_BYTES: usize = 1 << 30;

/// The parts of a config the search needs, tabulated once.
pub struct Trellis {
    k: u32,
    n_in: u32,
    n_out: usize,
    /// Keep bits per register value.
    table: Vec<u64>,
    /// `chunks[c][r]`: bits `8c .. 8c + 8` of `table[r]`, so a branch metric is a
    /// few lookups into per-step subset-sum tables of 256 entries at most.
    chunks: Vec<Vec<u8>>,
    /// For the vector kernels (`n_in = 1`, `n_out <= 5`, `k >= 6`): keep
    /// patterns laid out `[p][u][i]` so each run is contiguous in `i`.
    lanes: Option<Vec<u32>>,
}

impl Trellis {
    pub fn new(config: &VdConfig) -> Self {
        let table = config.keep_table();
        let n_out = config.n_out() as usize;
        let chunks = (0..n_out.div_ceil(8))
            .map(|c| table.iter().map(|&bits| (bits >> (8 * c)) as u8).collect())
            .collect();
        let k = config.flip_flops();
        let lanes = (config.n_in() == 1 && n_out <= 5 && k >= 6).then(|| {
            let h = 1usize << (k - 1);
            (0..4 * h)
                .map(|x| {
                    let (p, u, i) = (x / (2 * h), (x / h) % 2, x % h);
                    table[(p << k) | (i << 1) | u] as u32
                })
                .collect()
        });
        Self {
            k,
            n_in: config.n_in(),
            n_out,
            table,
            chunks,
            lanes,
        }
    }

    fn n_states(&self) -> usize {
        1 << self.k
    }

    /// Words of one bit-plane of survivor decisions (one bit per state).
    fn plane_words(&self) -> usize {
        self.n_states().div_ceil(64)
    }

    /// Bytes of the tables shared by all threads.
    fn table_bytes(&self) -> usize {
        let entries = self.table.len();
        entries * 8 + self.chunks.len() * entries + self.lanes.as_ref().map_or(0, |l| l.len() * 4)
    }

    /// Bytes of one thread's [`Workspace`] for blocks of `block_steps` steps;
    /// the survivor decisions dominate: `block_steps * n_in * 2^k` bits.
    fn workspace_bytes(&self, block_steps: usize) -> usize {
        let s = self.n_states();
        let floats = 2 * s + (s << self.n_in) + 256 + block_steps * self.n_out;
        let words = block_steps * self.n_in as usize * self.plane_words()
            + (block_steps * self.n_in as usize).div_ceil(64);
        floats * 4 + words * 8
    }
}

/// Per-thread scratch memory, reused across blocks.
pub struct Workspace {
    old: Vec<f32>,
    new: Vec<f32>,
    bm: Vec<f32>,
    sums: Vec<f32>,
    decisions: Vec<u64>,
    gains: Vec<f32>,
    words: Vec<u64>,
}

impl Workspace {
    pub fn new(tr: &Trellis, block_steps: usize) -> Result<Self> {
        let s = tr.n_states();
        let what = "a search workspace";
        Ok(Self {
            old: zeros(s, what)?,
            new: zeros(s, what)?,
            bm: zeros(s << tr.n_in, what)?,
            sums: zeros(256, what)?,
            decisions: zeros(block_steps * tr.n_in as usize * tr.plane_words(), what)?,
            gains: zeros(block_steps * tr.n_out, what)?,
            words: zeros((block_steps * tr.n_in as usize).div_ceil(64), what)?,
        })
    }
}

/// Branch metric of every register value for one step with gains `g`.
fn branch_metrics(tr: &Trellis, g: &[f32], sums: &mut [f32], bm: &mut [f32]) {
    for (c, chunk) in tr.chunks.iter().enumerate() {
        subset_sums(&g[8 * c..(8 * c + 8).min(g.len())], sums);
        if c == 0 {
            bm.iter_mut()
                .zip(chunk)
                .for_each(|(b, &i)| *b = sums[i as usize]);
        } else {
            bm.iter_mut()
                .zip(chunk)
                .for_each(|(b, &i)| *b += sums[i as usize]);
        }
    }
}

/// The general add-compare-select step (any `n_in`, any `n_out`):
/// `new[ns] = max_p old[r >> n_in] + bm[r]` with `r = (p << k) | ns`, the
/// lowest `p` on ties; decisions in the layout of [`crate::acs`].
fn acs_general(tr: &Trellis, old: &[f32], bm: &[f32], new: &mut [f32], dec: &mut [u64]) {
    let n_in = tr.n_in as usize;
    let shift = tr.k as usize - n_in;
    let h = 1usize << shift;
    let plane = tr.plane_words();
    dec.fill(0);
    for u in 0..1usize << n_in {
        for i in 0..h {
            let ns = (i << n_in) | u;
            let (mut best, mut choice) = (old[i] + bm[ns], 0usize);
            for p in 1..1usize << n_in {
                let cand = old[(p << shift) | i] + bm[(p << tr.k) | ns];
                if cand > best {
                    (best, choice) = (cand, p);
                }
            }
            new[ns] = best;
            let pos = u * h + i;
            for b in 0..n_in {
                dec[b * plane + pos / 64] |= (((choice >> b) & 1) as u64) << (pos % 64);
            }
        }
    }
}

/// Metrics are float32; subtracting the best every this many steps keeps
/// them small whatever the block length (every kernel does it identically).
const RENORMALISE_EVERY: usize = 32;

/// The largest metric, in sixteen independent lanes so the compares pipeline
/// (one running maximum would chain every compare on the one before).
#[inline(always)]
fn max_of(v: &[f32]) -> f32 {
    let pick = |a: f32, b: f32| if b > a { b } else { a };
    let mut lanes = [f32::NEG_INFINITY; 16];
    let mut chunks = v.chunks_exact(16);
    for c in chunks.by_ref() {
        for (l, &x) in lanes.iter_mut().zip(c) {
            *l = pick(*l, x);
        }
    }
    let rest = chunks.remainder().iter().copied();
    lanes.into_iter().chain(rest).fold(f32::NEG_INFINITY, pick)
}

/// What one block's search found.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockResult {
    /// `sum over kept (score - lam)` of the chosen mask (computed in f64).
    pub metric: f64,
    /// Kept weights (past-the-end positions excluded).
    pub kept: usize,
}

/// Searches one block of `steps` steps whose gains are `ws.gains` (`valid` of
/// them real), writing its input bits into `ws.words`. The loop around the
/// kernels (renormalising, traceback) is compiled for the level too.
fn search_block(
    tr: &Trellis,
    level: Level,
    ws: &mut Workspace,
    steps: usize,
    valid: usize,
    stop: &Cancel,
) -> BlockResult {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,popcnt,bmi2")]
        unsafe fn avx512(
            tr: &Trellis,
            ws: &mut Workspace,
            steps: usize,
            valid: usize,
            stop: &Cancel,
        ) -> BlockResult {
            search_block_at(tr, Level::Avx512, ws, steps, valid, stop)
        }
        #[target_feature(enable = "avx2,fma,popcnt,bmi2")]
        unsafe fn avx2(
            tr: &Trellis,
            ws: &mut Workspace,
            steps: usize,
            valid: usize,
            stop: &Cancel,
        ) -> BlockResult {
            search_block_at(tr, Level::Avx2, ws, steps, valid, stop)
        }
        match level {
            // SAFETY: a `Searcher` only holds a level the CPU runs.
            Level::Avx512 => return unsafe { avx512(tr, ws, steps, valid, stop) },
            // SAFETY: as above.
            Level::Avx2 => return unsafe { avx2(tr, ws, steps, valid, stop) },
            Level::Portable => {}
        }
    }
    search_block_at(tr, level, ws, steps, valid, stop)
}

#[inline(always)]
fn search_block_at(
    tr: &Trellis,
    level: Level,
    ws: &mut Workspace,
    steps: usize,
    valid: usize,
    stop: &Cancel,
) -> BlockResult {
    let s = tr.n_states();
    let n_in = tr.n_in as usize;
    let step_words = n_in * tr.plane_words();
    ws.old.fill(f32::NEG_INFINITY);
    ws.old[0] = 0.0;
    for t in 0..steps {
        let g = &ws.gains[t * tr.n_out..(t + 1) * tr.n_out];
        let dec = &mut ws.decisions[t * step_words..(t + 1) * step_words];
        match &tr.lanes {
            Some(patterns) => {
                let st = acs::Step {
                    old: &ws.old,
                    patterns,
                    gains: g,
                };
                acs::step1(level, &st, &mut ws.new, dec);
            }
            None => {
                branch_metrics(tr, g, &mut ws.sums, &mut ws.bm);
                acs_general(tr, &ws.old, &ws.bm, &mut ws.new, dec);
            }
        }
        if (t + 1) % RENORMALISE_EVERY == 0 {
            let top = max_of(&ws.new);
            ws.new.iter_mut().for_each(|m| *m -= top);
            // A block at 16 flip-flops takes long enough to check inside it;
            // the loop around unwinds once it is over (see `Cancel::skip`).
            if stop.is_cancelled() {
                return BlockResult {
                    metric: 0.0,
                    kept: 0,
                };
            }
        }
        std::mem::swap(&mut ws.old, &mut ws.new);
    }
    // Traceback from the best final state (the lowest on ties).
    let mut ns = (0..s).fold(0, |best, i| if ws.old[i] > ws.old[best] { i } else { best });
    let words = &mut ws.words[..(steps * n_in).div_ceil(64)];
    words.fill(0);
    let (mut metric, mut kept) = (0.0f64, 0usize);
    let (plane, shift, umask) = (tr.plane_words(), tr.k as usize - n_in, (1 << n_in) - 1);
    for t in (0..steps).rev() {
        let dec = &ws.decisions[t * step_words..(t + 1) * step_words];
        let at = ((ns & umask) << shift) | (ns >> n_in);
        let p = (0..n_in).fold(0, |p, b| {
            p | (((dec[b * plane + at / 64] >> (at % 64)) & 1) as usize) << b
        });
        let pos = t * n_in;
        let u = (ns & umask) as u64;
        words[pos / 64] |= u << (pos % 64);
        if pos % 64 + n_in > 64 {
            words[pos / 64 + 1] |= u >> (64 - pos % 64);
        }
        let r = (p << tr.k) | ns;
        let left = valid.saturating_sub(t * tr.n_out);
        let mut bits = tr.table[r];
        if left < 64 {
            bits &= (1u64 << left) - 1;
        }
        kept += bits.count_ones() as usize;
        let g = &ws.gains[t * tr.n_out..];
        while bits != 0 {
            metric += f64::from(g[bits.trailing_zeros() as usize]);
            bits &= bits - 1;
        }
        ns = r >> n_in;
    }
    debug_assert_eq!(ns, 0, "traceback must end in the start state");
    BlockResult { metric, kept }
}

/// The search over a whole tensor: a trellis, a layout and the scores.
pub struct Searcher<'a> {
    trellis: Trellis,
    level: Level,
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
            level: Level::best(),
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
        if !level.available() {
            bail!(
                "instruction set {} is not available on this CPU",
                level.name()
            );
        }
        self.level = level;
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
        let res = search_block(&self.trellis, self.level, ws, steps, valid, &self.cancel);
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
