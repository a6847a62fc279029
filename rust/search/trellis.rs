//! One block's exact search (docs/algorithm.md, "Search objective"): the
//! VD-reachable mask maximising `sum over kept (score - lam)`.
//!
//! Register value `r = (p << k) | ns` names a transition: into state
//! `ns = r & (2^k - 1)` from state `r >> n_in`, with input `u = ns & (2^n_in - 1)`
//! and `p` the `n_in` bits that leave the register. Add-compare-select keeps,
//! for every `ns`, the best `p` (the survivor decision, bit-packed), and the
//! traceback from the best final state replays the decisions into the input bits.

use super::acs::{self, subset_sums};
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
    pub(super) fn table_bytes(&self) -> usize {
        let entries = self.table.len();
        entries * 8 + self.chunks.len() * entries + self.lanes.as_ref().map_or(0, |l| l.len() * 4)
    }

    /// Bytes of one thread's [`Workspace`] for blocks of `block_steps` steps;
    /// the survivor decisions dominate: `block_steps * n_in * 2^k` bits.
    pub(super) fn workspace_bytes(&self, block_steps: usize) -> usize {
        let s = self.n_states();
        let floats = 2 * s + (s << self.n_in) + 256 + block_steps * self.n_out;
        let words = block_steps * self.n_in as usize * self.plane_words()
            + 2 * (block_steps * self.n_in as usize).div_ceil(64);
        floats * 4 + words * 8
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
}

/// Searches one block of `steps` steps whose gains are `ws.gains` (`valid` of
/// them real), writing its input bits into `ws.words`. The loop around the
/// kernels (renormalising, traceback) is compiled for the level too.
pub(super) fn search_block(
    tr: &Trellis,
    isa: Isa,
    ws: &mut Workspace,
    steps: usize,
    valid: usize,
    stop: &Cancel,
) -> BlockResult {
    let block = Block {
        tr,
        ws,
        steps,
        valid,
        stop,
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
}

impl Kernel for Block<'_> {
    type Output = BlockResult;

    #[inline(always)]
    fn run(self, isa: Isa) -> BlockResult {
        search_block_at(self.tr, isa, self.ws, self.steps, self.valid, self.stop)
    }
}

#[inline(always)]
fn search_block_at(
    tr: &Trellis,
    isa: Isa,
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
                return BlockResult {
                    metric: 0.0,
                    kept: 0,
                    threshold: 0,
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
    BlockResult {
        metric,
        kept,
        threshold: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_bytes_cover_the_tables_held() {
        // Configs with and without the vector kernels' lane tables, one and
        // several chunks of keep bits.
        for (k, n_in, n_out) in [(6, 1, 5), (10, 1, 4), (8, 2, 10), (8, 2, 12), (4, 1, 20)] {
            let cfg = VdConfig::from_seed(k, n_in, n_out, 5, 3, 1).unwrap();
            let tr = Trellis::new(&cfg);
            let held = tr.table.len() * std::mem::size_of::<u64>()
                + tr.chunks.iter().map(Vec::len).sum::<usize>()
                + tr.lanes
                    .as_ref()
                    .map_or(0, |l| l.len() * std::mem::size_of::<u32>());
            assert_eq!(tr.table_bytes(), held, "{cfg:?}");
            assert!(held >= 8 << (k + n_in), "{cfg:?}");
        }
    }

    /// With small integer gains every sum is exact, so each fast kernel must
    /// give the general step's metrics and decisions bit for bit, ties (which
    /// integers make common) included.
    #[test]
    fn fast_steps_match_the_general_step() {
        let mut seed = 7u64;
        let mut next = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as i64
        };
        for (k, n_in, n_out) in [
            (6, 1, 5),
            (9, 1, 3),
            (6, 2, 10),
            (8, 2, 10),
            (10, 2, 7),
            (7, 2, 4),
        ] {
            let cfg = VdConfig::from_seed(k, n_in, n_out, 3, 2, k as u64).unwrap();
            let tr = Trellis::new(&cfg);
            let patterns = tr.lanes.as_ref().expect("a fast-kernel config");
            let s = tr.n_states();
            let old: Vec<f32> = (0..s).map(|_| (next() % 9 - 4) as f32).collect();
            let gains: Vec<f32> = (0..n_out).map(|_| (next() % 5 - 2) as f32).collect();
            let (mut sums, mut bm) = (vec![0.0; 256], vec![0.0; s << n_in]);
            branch_metrics(&tr, &gains, &mut sums, &mut bm);
            let words = n_in as usize * tr.plane_words();
            let (mut want, mut want_dec) = (vec![0.0; s], vec![0u64; words]);
            acs_general(&tr, &old, &bm, &mut want, &mut want_dec);
            let st = acs::Step {
                old: &old,
                patterns,
                gains: &gains,
            };
            for level in crate::Level::all().into_iter().filter(|l| l.available()) {
                let isa = Isa::new(level).unwrap();
                let (mut new, mut dec) = (vec![f32::NAN; s], vec![!0u64; words]);
                arch::acs::step(isa, n_in, &st, &mut new, &mut dec);
                assert_eq!(
                    new, want,
                    "metrics, k {k} n_in {n_in} n_out {n_out} {level:?}"
                );
                assert_eq!(
                    dec, want_dec,
                    "decisions, k {k} n_in {n_in} n_out {n_out} {level:?}"
                );
            }
        }
    }
}
