//! One block's exact search (docs/algorithm.md, "Search objective"): the
//! VD-reachable mask maximising `sum over kept (score - lam)`.
//!
//! Register value `r = (p << k) | ns` names a transition: into state
//! `ns = r & (2^k - 1)` from state `r >> n_in`, with input `u = ns & (2^n_in - 1)`
//! and `p` the `n_in` bits that leave the register. Add-compare-select keeps,
//! for every `ns`, the best `p` (the survivor decision, bit-packed), and the
//! traceback from the best final state replays the decisions into the input bits.

use super::acs::{self, subset_sums};
use super::quantise::Quantised;
use crate::arch::{self, Isa, Kernel};
use crate::cancel::Cancel;
use crate::sys::zeros;
use crate::{Result, VdConfig};

/// The parts of a config the search needs, tabulated once.
pub(crate) struct Trellis {
    k: u32,
    n_in: u32,
    pub(super) n_out: usize,
    /// Keep bits per register value.
    table: Vec<u64>,
    /// `chunks[c][r]`: bits `8c .. 8c + 8` of `table[r]`, so a branch metric is a
    /// few lookups into per-step subset-sum tables of 256 entries at most.
    chunks: Vec<Vec<u8>>,
    /// For the vector kernels (`n_in = 1` with `n_out <= 5` or `n_in = 2`
    /// with `n_out <= 10`, `k >= 6`): keep patterns laid out `[p][u][i]` so
    /// each run is contiguous in `i`.
    lanes: Option<Vec<u32>>,
    /// `lanes` in 16-bit lanes for the int16 kernel (`n_in = 1` only).
    lanes16: Option<Vec<u16>>,
}

impl Trellis {
    pub(crate) fn new(config: &VdConfig) -> Self {
        let table = config.keep_table();
        let n_out = config.n_out() as usize;
        let chunks = (0..n_out.div_ceil(8))
            .map(|c| table.iter().map(|&bits| (bits >> (8 * c)) as u8).collect())
            .collect();
        let (k, n_in) = (config.flip_flops(), config.n_in());
        let lanes = (n_in <= 2 && n_out <= 5 * n_in as usize && k >= 6).then(|| {
            let (q, branches) = (1usize << (k - n_in), 1usize << n_in);
            (0..branches * branches * q)
                .map(|x| {
                    let (p, u, i) = (x / (branches * q), (x / q) % branches, x % q);
                    table[(p << k) | (i << n_in) | u] as u32
                })
                .collect()
        });
        let lanes16 = lanes
            .as_ref()
            .filter(|_| n_in == 1)
            .map(|l: &Vec<u32>| l.iter().map(|&p| p as u16).collect());
        Self {
            k,
            n_in: config.n_in(),
            n_out,
            table,
            chunks,
            lanes,
            lanes16,
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
    pub(super) fn table_bytes(&self) -> usize {
        let entries = self.table.len();
        entries * 8
            + self.chunks.len() * entries
            + self.lanes.as_ref().map_or(0, |l| l.len() * 4)
            + self.lanes16.as_ref().map_or(0, |l| l.len() * 2)
    }

    /// True when blocks run on integer metrics where they fit
    /// ([`super::quantise`]). It depends on the config alone, not the
    /// instruction set, so every level gives the same bits.
    fn quantises(&self) -> bool {
        self.lanes16.is_some()
    }

    /// Bytes of one thread's [`Workspace`] for blocks of `block_steps` steps;
    /// the survivor decisions dominate: `block_steps * n_in * 2^k` bits.
    pub(super) fn workspace_bytes(&self, block_steps: usize) -> usize {
        let s = self.n_states();
        let floats = 2 * s + (s << self.n_in) + 256 + 2 * block_steps * self.n_out;
        let words = block_steps * self.n_in as usize * self.plane_words()
            + 2 * (block_steps * self.n_in as usize).div_ceil(64);
        let int16 = if self.quantises() {
            2 * s + block_steps * self.n_out
        } else {
            0
        };
        floats * 4 + words * 8 + int16 * 2
    }
}

/// Per-thread scratch memory, reused across blocks.
pub(crate) struct Workspace {
    old: Vec<f32>,
    new: Vec<f32>,
    bm: Vec<f32>,
    sums: Vec<f32>,
    decisions: Vec<u64>,
    pub(super) gains: Vec<f32>,
    /// The gains as integers ([`super::quantise`]), and int16 metrics.
    quantised: Vec<f32>,
    quantised16: Vec<i16>,
    old16: Vec<i16>,
    new16: Vec<i16>,
    pub(super) words: Vec<u64>,
    /// The best candidate's words while a block tries several thresholds.
    pub(super) best_words: Vec<u64>,
}

impl Workspace {
    pub(crate) fn new(tr: &Trellis, block_steps: usize) -> Result<Self> {
        let s = tr.n_states();
        let what = "a search workspace";
        Ok(Self {
            old: zeros(s, what)?,
            new: zeros(s, what)?,
            bm: zeros(s << tr.n_in, what)?,
            sums: zeros(256, what)?,
            decisions: zeros(block_steps * tr.n_in as usize * tr.plane_words(), what)?,
            gains: zeros(block_steps * tr.n_out, what)?,
            quantised: zeros(block_steps * tr.n_out, what)?,
            quantised16: zeros(
                if tr.quantises() {
                    block_steps * tr.n_out
                } else {
                    0
                },
                what,
            )?,
            old16: zeros(if tr.quantises() { s } else { 0 }, what)?,
            new16: zeros(if tr.quantises() { s } else { 0 }, what)?,
            words: zeros((block_steps * tr.n_in as usize).div_ceil(64), what)?,
            best_words: zeros((block_steps * tr.n_in as usize).div_ceil(64), what)?,
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
/// lowest `p` on ties; decisions in the layout of [`super::acs`].
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
    /// The comparator threshold the block was searched with.
    pub threshold: u32,
    /// True when the mask came from integer metrics (docs/algorithm.md,
    /// "Integer metrics").
    pub integer: bool,
}

impl BlockResult {
    /// What a cancelled search returns (never seen: the caller unwinds).
    pub(super) fn cancelled(threshold: u32) -> Self {
        Self {
            metric: 0.0,
            kept: 0,
            threshold,
            integer: false,
        }
    }
}

/// Searches one block of `steps` steps whose gains are `ws.gains` (`valid` of
/// them real), writing its input bits into `ws.words`; on integer metrics
/// where the config and the block allow it and `integer` asks for them. The
/// loop around the kernels is compiled for the level too.
pub(super) fn search_block(
    tr: &Trellis,
    isa: Isa,
    ws: &mut Workspace,
    steps: usize,
    valid: usize,
    stop: &Cancel,
    integer: bool,
) -> BlockResult {
    let block = Block {
        tr,
        ws,
        steps,
        valid,
        stop,
        integer,
    };
    arch::dispatch(isa, block)
}

/// [`search_block`]'s arguments, to compile it once per level.
struct Block<'a> {
    tr: &'a Trellis,
    ws: &'a mut Workspace,
    steps: usize,
    valid: usize,
    stop: &'a Cancel,
    integer: bool,
}

impl Kernel for Block<'_> {
    type Output = BlockResult;

    #[inline(always)]
    fn run(self, isa: Isa) -> BlockResult {
        let Block {
            tr,
            ws,
            steps,
            valid,
            stop,
            integer,
        } = self;
        let n = steps * tr.n_out;
        let window = (tr.k / tr.n_in) as usize;
        if integer && tr.quantises() {
            let (gains, q) = (&ws.gains[..n], &mut ws.quantised[..n]);
            if let Some(z) = Quantised::new(gains, tr.n_out, valid, window, q) {
                let Some(end) = forward_integer(tr, isa, ws, steps, stop) else {
                    return BlockResult::cancelled(0);
                };
                let (res, kept_q) = traceback(tr, ws, steps, valid, end, true);
                if z.holds(res.metric, kept_q) {
                    return BlockResult {
                        integer: true,
                        ..res
                    };
                }
            }
        }
        if !forward(tr, isa, ws, Gains::Float, 0..steps, stop) {
            return BlockResult::cancelled(0);
        }
        let end = best_state(&ws.old);
        traceback(tr, ws, steps, valid, end, false).0
    }
}

/// Which gains the float32 steps add: the scores' or their integers.
#[derive(Clone, Copy)]
enum Gains {
    Float,
    Quantised,
}

/// Runs steps `at` of the float32 kernels from the metrics in `ws.old`
/// (initialised to the start state at step 0); false when cancelled.
#[inline(always)]
fn forward(
    tr: &Trellis,
    isa: Isa,
    ws: &mut Workspace,
    which: Gains,
    at: std::ops::Range<usize>,
    stop: &Cancel,
) -> bool {
    let step_words = tr.n_in as usize * tr.plane_words();
    if at.start == 0 {
        ws.old.fill(f32::NEG_INFINITY);
        ws.old[0] = 0.0;
    }
    for t in at {
        let gains = match which {
            Gains::Float => &ws.gains,
            Gains::Quantised => &ws.quantised,
        };
        let g = &gains[t * tr.n_out..(t + 1) * tr.n_out];
        let dec = &mut ws.decisions[t * step_words..(t + 1) * step_words];
        match &tr.lanes {
            Some(patterns) => {
                let st = acs::Step {
                    old: &ws.old,
                    patterns,
                    gains: g,
                };
                arch::acs::step(isa, tr.n_in, &st, &mut ws.new, dec);
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
                return false;
            }
        }
        std::mem::swap(&mut ws.old, &mut ws.new);
    }
    true
}

/// The forward pass on the block's integers (`ws.quantised`, in range):
/// the first `k` steps in float32, which holds them exactly and gives
/// unreached states `-inf`, the rest on int16 where the CPU has the kernel.
/// Returns the best final state, `None` when cancelled.
#[inline(always)]
fn forward_integer(
    tr: &Trellis,
    isa: Isa,
    ws: &mut Workspace,
    steps: usize,
    stop: &Cancel,
) -> Option<usize> {
    let lead = (tr.k as usize).min(steps);
    let patterns = tr.lanes16.as_ref().filter(|_| isa.avx512() && lead < steps);
    let Some(patterns) = patterns else {
        return forward(tr, isa, ws, Gains::Quantised, 0..steps, stop).then(|| best_state(&ws.old));
    };
    if !forward(tr, isa, ws, Gains::Quantised, 0..lead, stop) {
        return None;
    }
    // After k steps every state is reached; its metric is an integer the
    // range check keeps within int16.
    for (o, &m) in ws.old16.iter_mut().zip(&ws.old) {
        *o = m as i16;
    }
    // Each integer is within int16 too, converted for the whole block at
    // once: built a step at a time, the kernel's loads would wait on the
    // stores.
    let n = steps * tr.n_out;
    for (d, &q) in ws.quantised16[..n].iter_mut().zip(&ws.quantised[..n]) {
        *d = q as i16;
    }
    let step_words = tr.plane_words();
    for t in lead..steps {
        let st = acs::Step16 {
            old: &ws.old16,
            patterns,
            gains: &ws.quantised16[t * tr.n_out..(t + 1) * tr.n_out],
        };
        let dec = &mut ws.decisions[t * step_words..(t + 1) * step_words];
        arch::acs::step1_i16(isa, &st, &mut ws.new16, dec);
        std::mem::swap(&mut ws.old16, &mut ws.new16);
        if (t + 1) % RENORMALISE_EVERY == 0 && stop.is_cancelled() {
            return None;
        }
    }
    // The lowest of the best states, comparing wrapped differences, which
    // the range check keeps true.
    let base = ws.old16[0];
    let gap = |m: i16| m.wrapping_sub(base);
    Some((0..ws.old16.len()).fold(0, |best, i| {
        if gap(ws.old16[i]) > gap(ws.old16[best]) {
            i
        } else {
            best
        }
    }))
}

/// The best final state (the lowest on ties).
fn best_state(old: &[f32]) -> usize {
    (0..old.len()).fold(0, |best, i| if old[i] > old[best] { i } else { best })
}

/// Replays the decisions from state `ns` into the input bits (`ws.words`);
/// returns the block's result and, with `quantised`, the sum of the kept
/// weights' integers.
#[inline(always)]
fn traceback(
    tr: &Trellis,
    ws: &mut Workspace,
    steps: usize,
    valid: usize,
    mut ns: usize,
    quantised: bool,
) -> (BlockResult, f64) {
    let n_in = tr.n_in as usize;
    let step_words = n_in * tr.plane_words();
    let words = &mut ws.words[..(steps * n_in).div_ceil(64)];
    words.fill(0);
    let (mut metric, mut kept, mut kept_q) = (0.0f64, 0usize, 0.0f64);
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
        let (g, q) = (&ws.gains[t * tr.n_out..], &ws.quantised[t * tr.n_out..]);
        while bits != 0 {
            let j = bits.trailing_zeros() as usize;
            metric += f64::from(g[j]);
            if quantised {
                kept_q += f64::from(q[j]);
            }
            bits &= bits - 1;
        }
        ns = r >> n_in;
    }
    debug_assert_eq!(ns, 0, "traceback must end in the start state");
    let res = BlockResult {
        metric,
        kept,
        threshold: 0,
        integer: false,
    };
    (res, kept_q)
}

#[cfg(test)]
mod tests;
