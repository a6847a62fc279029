//! `W @ X` on the compressed form: `W` the pruned tensor viewed as
//! `(rows, cols)` and `X` a dense `(cols, batch)` matrix. Rows are split
//! across threads; each output row is summed by one thread in C order, so
//! results do not depend on the thread count.

use super::{row_end, shapes, task_rows, Entries, Real, Widen};
use crate::arch::{self, Isa, Kernel};
use crate::{Expander, Result, Source};
use rayon::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};

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
/// are read; encoded ones decoded a task's rows at a time), `starts` (if
/// given) their block starts.
#[allow(clippy::too_many_arguments)]
pub fn matmul<R: Real, V: Widen<R>, S: Source<V> + ?Sized>(
    e: &Expander,
    index: &[u64],
    values: &S,
    starts: Option<&[usize]>,
    rows: usize,
    x: &[R],
    batch: usize,
    out: &mut [R],
) -> Result<()> {
    let cols = shapes(e, index, rows, batch, x.len(), out.len(), false)?;
    let task_rows = task_rows(cols, rows);
    let isa = Isa::best();
    e.with_starts(index, starts, values.len(), |starts| {
        let stale = AtomicBool::new(false);
        out.par_chunks_mut(task_rows * batch)
            .enumerate()
            .for_each_init(
                || (vec![0u64; e.bits_words()], Vec::new(), Vec::new()),
                |(bits, pos, buf), (task, y)| {
                    let rows = Rows {
                        entries: Entries {
                            e,
                            isa,
                            index,
                            values,
                            starts,
                            cols,
                        },
                        batch,
                        first: task * task_rows,
                    };
                    let task = Task {
                        rows: &rows,
                        x,
                        y,
                        bits,
                        pos,
                        buf,
                    };
                    let fresh = arch::dispatch(isa, task);
                    if !fresh {
                        stale.store(true, Ordering::Relaxed);
                    }
                },
            );
        e.cancel().checkpoint();
        !stale.load(Ordering::Relaxed)
    })
}

/// One task's rows: `first ..` as many as its piece of the output holds.
struct Rows<'a, S: ?Sized> {
    entries: Entries<'a, S>,
    batch: usize,
    first: usize,
}

impl<S: ?Sized> Rows<'_, S> {
    /// Computes the task's rows; false if a block disagrees with the starts.
    #[inline(always)]
    fn run<R: Real, V: Widen<R>>(
        &self,
        x: &[R],
        y: &mut [R],
        bits: &mut [u64],
        pos: &mut Vec<u32>,
        buf: &mut Vec<V>,
    ) -> bool
    where
        S: Source<V>,
    {
        let (batch, n) = (self.batch, y.len() / self.batch);
        let Some(values) = self.entries.rows(self.first, n, bits, pos, buf) else {
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
}

/// [`Rows::run`]'s arguments, to compile it once per level.
struct Task<'a, R, V, S: ?Sized> {
    rows: &'a Rows<'a, S>,
    x: &'a [R],
    y: &'a mut [R],
    bits: &'a mut [u64],
    pos: &'a mut Vec<u32>,
    buf: &'a mut Vec<V>,
}

impl<R: Real, V: Widen<R>, S: Source<V> + ?Sized> Kernel for Task<'_, R, V, S> {
    type Output = bool;

    #[inline(always)]
    fn run(self, _isa: Isa) -> bool {
        self.rows.run(self.x, self.y, self.bits, self.pos, self.buf)
    }
}
