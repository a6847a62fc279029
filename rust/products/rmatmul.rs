//! `X @ W` on the compressed form: `X` a dense `(batch, rows)` matrix and `W`
//! the pruned tensor viewed as `(rows, cols)`.
//!
//! Each kept entry `(r, c, v)` adds `v * X[:, r]` to output column `c`, so rows
//! of `W` cannot be split across threads without two threads adding to one
//! column. The rows are cut instead into a fixed number of groups (set by the
//! shape alone, never by the thread count); each group sums into its own
//! partial result, and the partials are added in group order. Results are
//! therefore the same on any number of threads.

use super::{row_end, shapes, task_rows, Entries, Real, Widen};
use crate::arch::{self, Isa, Kernel};
use crate::{Error, Expander, Result, Source};
use rayon::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};

/// Most row groups, and the most bytes their partial results may take.
const MAX_GROUPS: usize = 8;
const PARTIAL_BYTES: usize = 256 << 20;

/// Batch columns per tile: a partial result is kept as tiles of `cols x TILE`,
/// so the tile being added to stays in cache however large the batch.
const TILE: usize = 16;

/// Rows per group of `X @ W` for these shapes: up to eight groups, fewer when
/// their partial results (`cols * batch` elements each) would pass 256 MiB.
pub fn group_rows(rows: usize, cols: usize, batch: usize, elem_bytes: usize) -> usize {
    let each = cols
        .saturating_mul(batch.next_multiple_of(TILE))
        .saturating_mul(elem_bytes)
        .max(1);
    rows.div_ceil((PARTIAL_BYTES / each).clamp(1, MAX_GROUPS))
}

/// `out (batch, cols) = x (batch, rows) @ W (rows, cols)`, all C order;
/// `values` are W's kept weights in their own type (widened to `R` as they
/// are read; encoded ones decoded a task's rows at a time), `starts` (if
/// given) their block starts.
#[allow(clippy::too_many_arguments)]
pub fn rmatmul<R: Real, V: Widen<R>, S: Source<V> + ?Sized>(
    e: &Expander,
    index: &[u64],
    values: &S,
    starts: Option<&[usize]>,
    rows: usize,
    x: &[R],
    batch: usize,
    out: &mut [R],
) -> Result<()> {
    let cols = shapes(e, index, rows, batch, x.len(), out.len(), true)?;
    // X's columns as contiguous rows, so each entry adds one contiguous run.
    let mut xt = crate::sys::zeros::<R>(x.len(), "the transposed operand")?;
    xt.par_chunks_mut(batch).enumerate().for_each(|(r, xr)| {
        xr.iter_mut()
            .enumerate()
            .for_each(|(b, v)| *v = x[b * rows + r])
    });
    let isa = Isa::best();
    let per_group = group_rows(rows, cols, batch, std::mem::size_of::<R>());
    let g = rows.div_ceil(per_group);
    // Group `g`'s partial result, batch column `b`, output column `c` sits at
    // ((g * tiles + b / TILE) * cols + c) * TILE + b % TILE.
    let tiled = batch
        .checked_next_multiple_of(TILE)
        .ok_or_else(|| Error::invalid(format!("batch = {batch} is too large")))?;
    let each = crate::sys::product(cols, tiled, "partial result (cols x batch)")?;
    let total = crate::sys::product(g, each, "partial results (groups x cols x batch)")?;
    let mut partial = crate::sys::zeros::<R>(total, "the partial results")?;
    e.with_starts(index, starts, values.len(), |starts| {
        let stale = AtomicBool::new(false);
        partial
            .par_chunks_mut(each)
            .enumerate()
            .for_each(|(group, acc)| {
                acc.fill(R::default());
                let first = group * per_group;
                let part = Group {
                    entries: Entries {
                        e,
                        isa,
                        index,
                        values,
                        starts,
                        cols,
                    },
                    batch,
                    first,
                    end: (first + per_group).min(rows),
                };
                let task = GroupTask {
                    group: &part,
                    xt: &xt,
                    acc,
                    _values: std::marker::PhantomData,
                };
                let fresh = arch::dispatch(isa, task);
                if !fresh {
                    stale.store(true, Ordering::Relaxed);
                }
            });
        e.cancel().checkpoint();
        !stale.load(Ordering::Relaxed)
    })?;
    // Add the groups in order into the first, a run of columns at a time
    // (contiguous adds), then write it out transposed.
    let (first, rest) = partial.split_at_mut(each);
    let run = 64 * TILE;
    first.par_chunks_mut(run).enumerate().for_each(|(i, sum)| {
        for group in rest.chunks_exact(each) {
            let part = &group[i * run..][..sum.len()];
            sum.iter_mut().zip(part).for_each(|(s, &p)| *s = *s + p);
        }
    });
    out.par_chunks_mut(cols).enumerate().for_each(|(b, row)| {
        let tile = &first[(b / TILE) * cols * TILE + b % TILE..];
        row.iter_mut()
            .enumerate()
            .for_each(|(c, o)| *o = tile[c * TILE]);
    });
    Ok(())
}

/// One group of rows, `first .. end`, summed into its partial result.
struct Group<'a, S: ?Sized> {
    entries: Entries<'a, S>,
    batch: usize,
    first: usize,
    end: usize,
}

impl<S: ?Sized> Group<'_, S> {
    /// `acc[c] += v * xt[r]` for every entry, rows in order, a task's worth
    /// of rows at a time, one batch tile after another; false if a block
    /// disagrees with the starts.
    #[inline(always)]
    fn run<R: Real, V: Widen<R>>(&self, xt: &[R], acc: &mut [R]) -> bool
    where
        S: Source<V>,
    {
        let (batch, cols) = (self.batch, self.entries.cols);
        let step = task_rows(cols, self.end - self.first);
        let (mut bits, mut pos) = (vec![0u64; self.entries.e.bits_words()], Vec::new());
        let mut buf = Vec::new();
        for first in (self.first..self.end).step_by(step) {
            if self.entries.e.cancel().is_cancelled() {
                return true;
            }
            let n = step.min(self.end - first);
            let Some(values) = self.entries.rows(first, n, &mut bits, &mut pos, &mut buf) else {
                return false;
            };
            let mut rows = Vec::with_capacity(n);
            let mut a = 0;
            for r in 0..n {
                let b = row_end(&mut pos, a, r, cols);
                rows.push((r, b - a));
                a = b;
            }
            for (t, tile) in acc.chunks_exact_mut(cols * TILE).enumerate() {
                let width = TILE.min(batch - t * TILE);
                let mut a = 0;
                for &(r, len) in &rows {
                    let xr = &xt[(first + r) * batch + t * TILE..][..width];
                    let entries = pos[a..a + len].iter().zip(&values[a..a + len]);
                    if width == TILE {
                        // A copy in registers: a slice of `xt` could alias `tile`
                        // for all the compiler knows, which keeps the loop scalar.
                        let xr: [R; TILE] = *<&[R; TILE]>::try_from(xr).expect("a full tile");
                        for (&c, &v) in entries {
                            let sum: &mut [R; TILE] = (&mut tile[c as usize * TILE..][..TILE])
                                .try_into()
                                .expect("a full tile");
                            add_scaled(sum, v.widen(), &xr);
                        }
                    } else {
                        for (&c, &v) in entries {
                            add_scaled(&mut tile[c as usize * TILE..][..width], v.widen(), xr);
                        }
                    }
                    a += len;
                }
            }
        }
        true
    }
}

/// [`Group::run`]'s arguments, to compile it once per level.
struct GroupTask<'a, R, V, S: ?Sized> {
    group: &'a Group<'a, S>,
    xt: &'a [R],
    acc: &'a mut [R],
    _values: std::marker::PhantomData<V>,
}

impl<R: Real, V: Widen<R>, S: Source<V> + ?Sized> Kernel for GroupTask<'_, R, V, S> {
    type Output = bool;

    #[inline(always)]
    fn run(self, _isa: Isa) -> bool {
        self.group.run::<R, V>(self.xt, self.acc)
    }
}

/// `sum += v * x`, a separate multiply and add as in `W @ X`.
#[inline(always)]
fn add_scaled<R: Real>(sum: &mut [R], v: R, x: &[R]) {
    for (s, &x) in sum.iter_mut().zip(x) {
        *s = *s + v * x;
    }
}
