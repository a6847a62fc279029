//! Products on the compressed form, computed from the index and the values
//! without a dense `W`: `W @ X` ([`matmul`]) and `X @ W` ([`rmatmul`]), with
//! the pruned tensor viewed as `(rows, cols)`. Here: the element types, the
//! shape checks and the kept entries of a range of rows, which both share.

pub(crate) mod matmul;
pub(crate) mod rmatmul;

use crate::arch::{lanes::push_positions, Isa};
use crate::float8::{F8E4M3, F8E5M2};
use crate::{bail, Error, Expander, Float, Result, Source};
use half::{bf16, f16};

/// Weights per parallel task, about (whole rows are taken).
const TASK_WEIGHTS: usize = 1 << 16;

/// A float type the product runs in.
pub trait Real:
    crate::sys::Zeroable
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
/// The types a float32 product reads through their own `to_f32`.
macro_rules! widen_to_f32 {
    ($($t:ty),*) => {$(
        impl Widen<f32> for $t {
            #[inline(always)]
            fn widen(self) -> f32 {
                self.to_f32()
            }
        }
    )*};
}
widen_to_f32!(f16, F8E4M3, F8E5M2);

impl Widen<f32> for f32 {
    #[inline(always)]
    fn widen(self) -> f32 {
        self
    }
}
impl Widen<f32> for bf16 {
    /// A bfloat16 is the high half of a float32.
    #[inline(always)]
    fn widen(self) -> f32 {
        f32::from_bits(u32::from(self.to_bits()) << 16)
    }
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
pub(super) fn task_rows(cols: usize, rows: usize) -> usize {
    (TASK_WEIGHTS / cols).clamp(1, rows)
}

/// A pruned matrix's kept entries, found row range by row range.
pub(crate) struct Entries<'a, S: ?Sized> {
    pub e: &'a Expander,
    pub isa: Isa,
    pub index: &'a [u64],
    pub values: &'a S,
    pub starts: &'a [usize],
    pub cols: usize,
}

impl<S: ?Sized> Entries<'_, S> {
    /// Fills `pos` with the kept positions of rows `first .. first + n`
    /// (counted from row `first`'s start) and returns their values (from
    /// `buf` where they are decoded); `None` if a block disagrees with the
    /// starts.
    #[inline(always)]
    pub(crate) fn rows<'s, V>(
        &'s self,
        first: usize,
        n: usize,
        bits: &mut [u64],
        pos: &mut Vec<u32>,
        buf: &'s mut Vec<V>,
    ) -> Option<&'s [V]>
    where
        S: Source<V>,
    {
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
            push_positions(self.isa, bits, from, to, base.wrapping_sub(lo) as u32, pos);
        }
        Some(self.values.range(first_value.unwrap_or(0), pos.len(), buf))
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
