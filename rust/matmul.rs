//! Products on the compressed form: `W @ X` with `W` the pruned tensor viewed
//! as `(rows, cols)` and `X` a dense `(cols, batch)` matrix, computed from the
//! index and the values without a dense `W`. Rows are split across threads;
//! each output row is summed by one thread in C order, so results do not
//! depend on the thread count.

use crate::acs::Level;
use crate::expand::{for_each_set, offsets};
use crate::{bail, Expander, Result};
use rayon::prelude::*;

/// Rows per parallel task.
const ROWS_PER_TASK: usize = 16;

/// A float type the product runs in.
pub trait Real:
    Copy + Send + Sync + Default + std::ops::Add<Output = Self> + std::ops::Mul<Output = Self>
{
}
impl Real for f32 {}
impl Real for f64 {}

/// `y[start..start + T] = sum over entries (v * x[col][start..start + T])`,
/// the partial sums held in registers (`T` of 64 float32 is four independent
/// AVX-512 accumulators). A separate multiply and add, never fused, so every
/// instruction set gives the same bits.
#[inline(always)]
fn tile<R: Real, const T: usize>(
    cols: &[u32],
    vals: &[R],
    x: &[R],
    batch: usize,
    start: usize,
    y: &mut [R],
) {
    let mut acc = [R::default(); T];
    for (&c, &v) in cols.iter().zip(vals) {
        let xs = &x[c as usize * batch + start..][..T];
        for (a, &b) in acc.iter_mut().zip(xs) {
            *a = *a + v * b;
        }
    }
    y[start..start + T].copy_from_slice(&acc);
}

/// One output row: `y = sum over entries (v * x[col])`, in wide tiles first.
#[inline(always)]
fn row_product<R: Real>(cols: &[u32], vals: &[R], x: &[R], batch: usize, y: &mut [R]) {
    let mut start = 0;
    while start + 64 <= batch {
        tile::<R, 64>(cols, vals, x, batch, start, y);
        start += 64;
    }
    while start + 16 <= batch {
        tile::<R, 16>(cols, vals, x, batch, start, y);
        start += 16;
    }
    for j in start..batch {
        y[j] = cols.iter().zip(vals).fold(R::default(), |a, (&c, &v)| {
            a + v * x[c as usize * batch + j]
        });
    }
}

/// `out (rows, batch) = W (rows, cols) @ x (cols, batch)`, all C order;
/// `values` are W's kept weights already converted to `R`.
pub fn matmul<R: Real>(
    e: &Expander,
    index: &[u64],
    values: &[R],
    rows: usize,
    x: &[R],
    batch: usize,
    out: &mut [R],
) -> Result<()> {
    let layout = *e.layout();
    let n = layout.n_weights;
    if rows == 0 || !n.is_multiple_of(rows) {
        bail!("cannot view {n} weights as {rows} rows");
    }
    let cols = n / rows;
    if batch == 0 || x.len() != cols * batch {
        bail!(
            "operand has {} elements; expected ({cols}, batch) with batch >= 1",
            x.len()
        );
    }
    if out.len() != rows * batch {
        bail!(
            "output has {} elements; expected {rows} x {batch}",
            out.len()
        );
    }
    let counts = e.counts(index)?;
    if values.len() != counts.iter().sum::<usize>() {
        bail!(
            "values has {} entries but the index keeps {} weights",
            values.len(),
            counts.iter().sum::<usize>()
        );
    }
    let starts = offsets(&counts);
    let level = Level::best();
    out.par_chunks_mut(ROWS_PER_TASK * batch)
        .enumerate()
        .for_each_init(
            || vec![0u64; e.bits_words()],
            |bits, (task, y)| {
                let rows = Rows {
                    e,
                    index,
                    values,
                    starts: &starts,
                    cols,
                    batch,
                    first: task * ROWS_PER_TASK,
                };
                match level {
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: `Level::best` checked the CPU runs these instructions.
                    Level::Avx512 => unsafe { rows.run_avx512(x, y, bits) },
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: as above.
                    Level::Avx2 => unsafe { rows.run_avx2(x, y, bits) },
                    _ => rows.run(x, y, bits),
                }
            },
        );
    Ok(())
}

/// One task's rows: `first ..` as many as its piece of the output holds.
struct Rows<'a, R> {
    e: &'a Expander,
    index: &'a [u64],
    values: &'a [R],
    starts: &'a [usize],
    cols: usize,
    batch: usize,
    first: usize,
}

impl<R: Real> Rows<'_, R> {
    #[inline(always)]
    fn run(&self, x: &[R], y: &mut [R], bits: &mut [u64]) {
        let (cols, batch) = (self.cols, self.batch);
        let n = self.e.layout().n_weights;
        let bw = self.e.layout().block_weights();
        let rows = y.len() / batch;
        let (lo, hi) = (self.first * cols, ((self.first + rows) * cols).min(n));
        // The task's kept entries as (column, value), with where each row starts.
        let (mut ents_c, mut ents_v, mut row_start) =
            (Vec::new(), Vec::new(), vec![0usize; rows + 1]);
        for b in lo / bw..hi.div_ceil(bw) {
            let nw = self.e.block_bits(self.index, b, bits);
            let base = b * bw;
            let mut k = self.starts[b];
            // The row of the current weight, tracked without a division per weight.
            let mut row = base / cols;
            let mut row_end = (row + 1) * cols;
            for_each_set(&bits[..nw], |i| {
                let pos = base + i;
                if (lo..hi).contains(&pos) {
                    while pos >= row_end {
                        row += 1;
                        row_end += cols;
                    }
                    row_start[row - self.first + 1] += 1;
                    ents_c.push((pos + cols - row_end) as u32);
                    ents_v.push(self.values[k]);
                }
                k += 1;
            });
        }
        for r in 0..rows {
            row_start[r + 1] += row_start[r];
        }
        for (r, y) in y.chunks_exact_mut(batch).enumerate() {
            let (a, b) = (row_start[r], row_start[r + 1]);
            row_product(&ents_c[a..b], &ents_v[a..b], x, batch, y);
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn run_avx512(&self, x: &[R], y: &mut [R], bits: &mut [u64]) {
        self.run(x, y, bits)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn run_avx2(&self, x: &[R], y: &mut [R], bits: &mut [u64]) {
        self.run(x, y, bits)
    }
}
