//! Products on the compressed form: `W @ X` with `W` the pruned tensor viewed
//! as `(rows, cols)` and `X` a dense `(cols, batch)` matrix, computed from the
//! index and the values without a dense `W`. Rows are split across threads;
//! each output row is summed by one thread in C order, so results do not
//! depend on the thread count.

use crate::acs::Level;
use crate::float8::{F8E4M3, F8E5M2};
use crate::values::push_positions;
use crate::{bail, Error, Expander, Float, Result};
use half::{bf16, f16};
use rayon::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};

/// Weights per parallel task, about (whole rows are taken).
const TASK_WEIGHTS: usize = 1 << 16;

/// A float type the product runs in.
pub trait Real:
    crate::alloc::Zeroable
    + Send
    + Sync
    + Default
    + std::ops::Add<Output = Self>
    + std::ops::Mul<Output = Self>
{
}
impl Real for f32 {}
impl Real for f64 {}

/// A stored value type that a product in `R` reads, widened exactly to `R`
/// entry by entry as it is used (no widened copy of the values is made).
pub trait Widen<R>: Copy + Send + Sync {
    fn widen(self) -> R;
}

impl<T: Float> Widen<f64> for T {
    #[inline(always)]
    fn widen(self) -> f64 {
        self.to_f64()
    }
}
impl Widen<f32> for f32 {
    #[inline(always)]
    fn widen(self) -> f32 {
        self
    }
}
impl Widen<f32> for f16 {
    #[inline(always)]
    fn widen(self) -> f32 {
        self.to_f32()
    }
}
impl Widen<f32> for bf16 {
    /// A bfloat16 is the high half of a float32.
    #[inline(always)]
    fn widen(self) -> f32 {
        f32::from_bits(u32::from(self.to_bits()) << 16)
    }
}
impl Widen<f32> for F8E4M3 {
    #[inline(always)]
    fn widen(self) -> f32 {
        self.to_f32()
    }
}
impl Widen<f32> for F8E5M2 {
    #[inline(always)]
    fn widen(self) -> f32 {
        self.to_f32()
    }
}

/// `y[start..start + T] = sum over entries (v * x[col][start..start + T])`,
/// the partial sums held in registers: entries alternate between two sets of
/// accumulators, added at the end, so consecutive entries do not wait on each
/// other's additions (`T` of 64 float32 is eight AVX-512 accumulators). A
/// separate multiply and add, never fused, so every instruction set gives the
/// same bits.
#[inline(always)]
fn tile<R: Real, V: Widen<R>, const T: usize>(
    cols: &[u32],
    vals: &[V],
    x: &[R],
    batch: usize,
    start: usize,
    y: &mut [R],
) {
    let (mut even, mut odd) = ([R::default(); T], [R::default(); T]);
    let row = |c: u32| &x[c as usize * batch + start..][..T];
    let mut pairs = cols.chunks_exact(2).zip(vals.chunks_exact(2));
    for (c, v) in pairs.by_ref() {
        let (x0, x1) = (row(c[0]), row(c[1]));
        let (v0, v1) = (v[0].widen(), v[1].widen());
        for j in 0..T {
            even[j] = even[j] + v0 * x0[j];
            odd[j] = odd[j] + v1 * x1[j];
        }
    }
    if cols.len() % 2 == 1 {
        let (c, v) = (cols[cols.len() - 1], vals[vals.len() - 1].widen());
        for (a, &b) in even.iter_mut().zip(row(c)) {
            *a = *a + v * b;
        }
    }
    for j in 0..T {
        y[start + j] = even[j] + odd[j];
    }
}

/// One output row: `y = sum over entries (v * x[col])`, in wide tiles first.
#[inline(always)]
fn row_product<R: Real, V: Widen<R>>(cols: &[u32], vals: &[V], x: &[R], batch: usize, y: &mut [R]) {
    let mut start = 0;
    while start + 64 <= batch {
        tile::<R, V, 64>(cols, vals, x, batch, start, y);
        start += 64;
    }
    while start + 16 <= batch {
        tile::<R, V, 16>(cols, vals, x, batch, start, y);
        start += 16;
    }
    for j in start..batch {
        tile::<R, V, 1>(cols, vals, x, batch, j, y);
    }
}

/// `out (rows, batch) = W (rows, cols) @ x (cols, batch)`, all C order;
/// `values` are W's kept weights in their own type (widened to `R` as they
/// are read), `starts` (if given) their block starts.
#[allow(clippy::too_many_arguments)]
pub fn matmul<R: Real, V: Widen<R>>(
    e: &Expander,
    index: &[u64],
    values: &[V],
    starts: Option<&[usize]>,
    rows: usize,
    x: &[R],
    batch: usize,
    out: &mut [R],
) -> Result<()> {
    let cols = shapes(e, index, rows, batch, x.len(), out.len(), false)?;
    let task_rows = task_rows(cols, rows);
    let level = Level::best();
    e.with_starts(index, starts, values.len(), |starts| {
        let stale = AtomicBool::new(false);
        out.par_chunks_mut(task_rows * batch)
            .enumerate()
            .for_each_init(
                || (vec![0u64; e.bits_words()], Vec::new()),
                |(bits, pos), (task, y)| {
                    let rows = Rows {
                        entries: Entries {
                            e,
                            index,
                            values,
                            starts,
                            cols,
                        },
                        batch,
                        first: task * task_rows,
                    };
                    let fresh = match level {
                        #[cfg(target_arch = "x86_64")]
                        // SAFETY: `Level::best` checked the CPU runs these instructions.
                        Level::Avx512 => unsafe { rows.run_avx512(x, y, bits, pos) },
                        #[cfg(target_arch = "x86_64")]
                        // SAFETY: as above.
                        Level::Avx2 => unsafe { rows.run_avx2(x, y, bits, pos) },
                        _ => rows.run(x, y, bits, pos),
                    };
                    if !fresh {
                        stale.store(true, Ordering::Relaxed);
                    }
                },
            );
        e.cancel().checkpoint();
        !stale.load(Ordering::Relaxed)
    })
}

/// Checks a product's index, operand and output lengths and returns the
/// columns of the pruned tensor viewed as `rows` rows: `W @ x` takes `x` of
/// `(cols, batch)` and writes `(rows, batch)`; with `left`, `x @ W` takes
/// `(batch, rows)` and writes `(batch, cols)`.
pub(crate) fn shapes(
    e: &Expander,
    index: &[u64],
    rows: usize,
    batch: usize,
    x_len: usize,
    out_len: usize,
    left: bool,
) -> Result<usize> {
    let n = e.layout().n_weights;
    if rows == 0 || !n.is_multiple_of(rows) {
        bail!("cannot view {n} weights as {rows} rows");
    }
    let cols = n / rows;
    if cols > u32::MAX as usize {
        bail!("rows of {cols} weights are too long for a product (at most 2^32 - 1)");
    }
    e.check(index, n)?;
    let (inner, x_shape, out_rows, out_cols) = if left {
        (rows, format!("(batch, {rows})"), batch, cols)
    } else {
        (cols, format!("({cols}, batch)"), rows, batch)
    };
    let sizes = |a: usize, b: usize, what: &str| {
        a.checked_mul(b)
            .ok_or_else(|| Error::invalid(format!("{what} = {a} x {b} overflows")))
    };
    if batch == 0 || x_len != sizes(inner, batch, "operand elements")? {
        bail!("operand has {x_len} elements; expected {x_shape} with batch >= 1");
    }
    if out_len != sizes(out_rows, out_cols, "output elements")? {
        bail!("output has {out_len} elements; expected {out_rows} x {out_cols}");
    }
    Ok(cols)
}

/// Rows per parallel task for rows of `cols` weights.
pub(crate) fn task_rows(cols: usize, rows: usize) -> usize {
    (TASK_WEIGHTS / cols).clamp(1, rows)
}

/// One task's rows: `first ..` as many as its piece of the output holds.
struct Rows<'a, V> {
    entries: Entries<'a, V>,
    batch: usize,
    first: usize,
}

impl<V> Rows<'_, V> {
    /// Computes the task's rows; false if a block disagrees with the starts.
    #[inline(always)]
    fn run<R: Real>(&self, x: &[R], y: &mut [R], bits: &mut [u64], pos: &mut Vec<u32>) -> bool
    where
        V: Widen<R>,
    {
        let (batch, n) = (self.batch, y.len() / self.batch);
        let Some(values) = self.entries.rows(self.first, n, bits, pos) else {
            return false;
        };
        let mut a = 0;
        for (r, y) in y.chunks_exact_mut(batch).enumerate() {
            // A wide batch makes one task long: check between rows.
            if self.entries.e.cancel().is_cancelled() {
                return true;
            }
            let b = row_end(pos, a, r, self.entries.cols);
            row_product(&pos[a..b], &values[a..b], x, batch, y);
            a = b;
        }
        true
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn run_avx512<R: Real>(
        &self,
        x: &[R],
        y: &mut [R],
        bits: &mut [u64],
        pos: &mut Vec<u32>,
    ) -> bool
    where
        V: Widen<R>,
    {
        self.run(x, y, bits, pos)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn run_avx2<R: Real>(
        &self,
        x: &[R],
        y: &mut [R],
        bits: &mut [u64],
        pos: &mut Vec<u32>,
    ) -> bool
    where
        V: Widen<R>,
    {
        self.run(x, y, bits, pos)
    }
}

/// A pruned matrix's kept entries, found row range by row range.
pub(crate) struct Entries<'a, V> {
    pub e: &'a Expander,
    pub index: &'a [u64],
    pub values: &'a [V],
    pub starts: &'a [usize],
    pub cols: usize,
}

impl<'a, V> Entries<'a, V> {
    /// Fills `pos` with the kept positions of rows `first .. first + n`
    /// (counted from row `first`'s start) and returns their values; `None`
    /// if a block disagrees with the starts.
    #[inline(always)]
    pub fn rows(
        &self,
        first: usize,
        n: usize,
        bits: &mut [u64],
        pos: &mut Vec<u32>,
    ) -> Option<&'a [V]> {
        let bw = self.e.layout().block_weights();
        let (lo, hi) = (first * self.cols, (first + n) * self.cols);
        pos.clear();
        let mut first_value = None;
        for b in lo / bw..hi.div_ceil(bw) {
            let nw = self.e.block_bits(self.index, b, bits);
            let bits = &bits[..nw];
            let count: usize = bits.iter().map(|w| w.count_ones() as usize).sum();
            if count != self.starts[b + 1] - self.starts[b] {
                return None;
            }
            let base = b * bw;
            let from = lo.saturating_sub(base);
            if first_value.is_none() {
                first_value = Some(self.starts[b] + count_below(bits, from));
            }
            let to = (hi - base).min(64 * nw);
            push_positions(bits, from, to, base.wrapping_sub(lo) as u32, pos);
        }
        Some(&self.values[first_value.unwrap_or(0)..][..pos.len()])
    }
}

/// Row `r`'s entries among the positions [`Entries::rows`] left in `pos`:
/// they start at `a` and end at the returned index; their positions are
/// turned into column numbers in place. (A plain function, not a callback:
/// closures are not compiled with the caller's vector instructions.)
#[inline(always)]
pub(crate) fn row_end(pos: &mut [u32], a: usize, r: usize, cols: usize) -> usize {
    let b = a + pos[a..].partition_point(|&p| (p as usize) < (r + 1) * cols);
    let row_start = (r * cols) as u32;
    pos[a..b].iter_mut().for_each(|p| *p -= row_start);
    b
}

/// Set bits of a bit-packed mask below bit `i`.
fn count_below(bits: &[u64], i: usize) -> usize {
    let (full, rest) = (i / 64, i % 64);
    let mut n: usize = bits[..full].iter().map(|w| w.count_ones() as usize).sum();
    if rest > 0 {
        n += (bits[full] & ((1u64 << rest) - 1)).count_ones() as usize;
    }
    n
}
