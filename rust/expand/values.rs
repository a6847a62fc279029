//! The kept values against the mask: where each block's values start, gathering
//! them from a dense array, scattering them back, and the kept positions.
//!
//! Values are stored in C order, so block `b`'s values are
//! `values[starts[b]..starts[b + 1]]`. The starts are derived by expanding; a
//! caller may keep them and hand them back to skip that pass. Handed-back
//! starts are only trusted as far as they are checked: each block's decoded
//! count is compared with them before its values are touched, and a mismatch
//! falls back to fresh starts.

use super::Expander;
use crate::arch::{lanes, Isa};
use crate::sys::Zeroable;
use crate::{bail, Result, Source};
use rayon::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};

impl Expander {
    /// Where each block's values start, with the number of kept weights last
    /// (`n_blocks + 1` entries).
    pub fn starts(&self, index: &[u64]) -> Result<Vec<usize>> {
        self.check(index, self.layout().n_weights)?;
        let n_blocks = self.layout().n_blocks();
        let mut counts = crate::sys::zeros::<usize>(n_blocks + 1, "the block starts")?;
        self.blocks(index, &mut counts[1..], 1, |_, bits, out| {
            out[0] = popcount(bits)
        });
        for b in 1..counts.len() {
            counts[b] += counts[b - 1];
        }
        Ok(counts)
    }

    /// Kept weights per block.
    pub fn counts(&self, index: &[u64]) -> Result<Vec<usize>> {
        Ok(self
            .starts(index)?
            .windows(2)
            .map(|w| w[1] - w[0])
            .collect())
    }

    /// Runs `pass` with block starts for `nnz` values: the given ones if they
    /// are well formed, else (or if `pass` finds a block that disagrees with
    /// them, returning false) fresh ones.
    pub(crate) fn with_starts(
        &self,
        index: &[u64],
        starts: Option<&[usize]>,
        nnz: usize,
        mut pass: impl FnMut(&[usize]) -> bool,
    ) -> Result<()> {
        let n_blocks = self.layout().n_blocks();
        let well_formed = |s: &[usize]| {
            s.len() == n_blocks + 1 && s[0] == 0 && s[n_blocks] == nnz && s.is_sorted()
        };
        if let Some(s) = starts.filter(|s| well_formed(s)) {
            if pass(s) {
                return Ok(());
            }
        }
        let fresh = self.starts(index)?;
        if fresh[n_blocks] != nnz {
            bail!(
                "values has {nnz} entries but the index keeps {} weights",
                fresh[n_blocks]
            );
        }
        if !pass(&fresh) {
            bail!("the index changed while it was being read");
        }
        Ok(())
    }

    /// The kept weights in C order, and their block starts.
    pub fn gather<T: crate::sys::Zeroable + Send + Sync>(
        &self,
        index: &[u64],
        weights: &[T],
    ) -> Result<(Vec<T>, Vec<usize>)> {
        self.check(index, weights.len())?;
        let starts = self.starts(index)?;
        let mut values = crate::sys::zeros(starts[starts.len() - 1], "the kept values")?;
        let bw = self.layout().block_weights();
        split_at_starts(&mut values, &starts)?
            .into_par_iter()
            .enumerate()
            .for_each_init(
                || vec![0u64; self.bits_words()],
                |bits, (b, out)| {
                    if self.cancel().is_cancelled() {
                        return;
                    }
                    let nw = self.block_bits(index, b, bits);
                    let w = &weights[b * bw..];
                    let mut k = 0;
                    for_each_set(&bits[..nw], |i| {
                        out[k] = w[i];
                        k += 1;
                    });
                },
            );
        self.cancel().checkpoint();
        Ok((values, starts))
    }

    /// Fills `out` (length `n_weights`, any prior content) with `values` on
    /// the mask and zero elsewhere. `starts`, if given, are the blocks' value
    /// starts from [`starts`](Self::starts) or [`gather`](Self::gather).
    pub fn scatter<T: Zeroable + Send + Sync + Default, S: Source<T> + ?Sized>(
        &self,
        index: &[u64],
        values: &S,
        starts: Option<&[usize]>,
        out: &mut [T],
    ) -> Result<()> {
        self.check(index, out.len())?;
        let bw = self.layout().block_weights();
        self.with_starts(index, starts, values.len(), |starts| {
            let stale = AtomicBool::new(false);
            self.blocks(index, out, bw, scatter_block(values, starts, &stale));
            !stale.load(Ordering::Relaxed)
        })
    }

    /// [`scatter`](Self::scatter) into a new vector.
    pub fn scatter_vec<T: Zeroable + Send + Sync + Default, S: Source<T> + ?Sized>(
        &self,
        index: &[u64],
        values: &S,
        starts: Option<&[usize]>,
    ) -> Result<Vec<T>> {
        let n = self.layout().n_weights;
        self.check(index, n)?;
        let mut out = crate::sys::output(n, "the dense array")?;
        self.with_starts(index, starts, values.len(), |starts| {
            let stale = AtomicBool::new(false);
            self.blocks_into(index, &mut out, scatter_block(values, starts, &stale));
            !stale.load(Ordering::Relaxed)
        })?;
        Ok(out)
    }
}

/// Scatters block `b`'s values onto its mask bits (every element of `out`
/// written), or sets `stale` when the block's count disagrees with `starts`.
fn scatter_block<'a, T: Zeroable + Default + Copy + Sync, S: Source<T> + ?Sized>(
    values: &'a S,
    starts: &'a [usize],
    stale: &'a AtomicBool,
) -> impl Fn(usize, &[u64], &mut [T]) + Sync + Send + 'a {
    let isa = Isa::best();
    move |b, bits, out| {
        // Encoded values decode into a buffer of the block's (stored ones
        // are borrowed; an empty vector allocates nothing).
        let mut buf = Vec::new();
        let v = values.range(starts[b], starts[b + 1] - starts[b], &mut buf);
        if popcount(bits) != v.len() {
            stale.store(true, Ordering::Relaxed);
            return;
        }
        // 4- and 8-byte values (float32, float64) take AVX-512 expand-loads.
        if lanes::scatter_lanes(isa, bits, v, out) {
            return;
        }
        out.fill(T::default());
        let mut k = 0;
        for_each_set(bits, |i| {
            out[i] = v[k];
            k += 1;
        });
    }
}

fn popcount(bits: &[u64]) -> usize {
    bits.iter().map(|w| w.count_ones() as usize).sum()
}

/// Calls `f(i)` for every set bit `i` of a bit-packed mask, in order.
#[inline]
pub(crate) fn for_each_set(bits: &[u64], mut f: impl FnMut(usize)) {
    for (w, &word) in bits.iter().enumerate() {
        let mut x = word;
        while x != 0 {
            f(w * 64 + x.trailing_zeros() as usize);
            x &= x - 1;
        }
    }
}

/// Splits `s` into the consecutive pieces `starts[b]..starts[b + 1]` (the
/// starts run from 0 to its length).
pub(crate) fn split_at_starts<'a, T>(
    mut s: &'a mut [T],
    starts: &[usize],
) -> Result<Vec<&'a mut [T]>> {
    let mut pieces = crate::sys::with_capacity(starts.len() - 1, "the blocks' values")?;
    for w in starts.windows(2) {
        let (head, tail) = std::mem::take(&mut s).split_at_mut(w[1] - w[0]);
        s = tail;
        pieces.push(head);
    }
    Ok(pieces)
}

#[cfg(test)]
mod tests {
    use crate::arch::{lanes::push_positions, Isa};

    #[test]
    fn positions_agree_with_a_scan_of_the_bits() {
        let bits: Vec<u64> = (0..7u64)
            .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (i << 9))
            .collect();
        for (from, to) in [
            (0, 448),
            (0, 0),
            (3, 64),
            (64, 128),
            (5, 6),
            (63, 65),
            (17, 400),
        ] {
            let want: Vec<u32> = (from..to)
                .filter(|&i| (bits[i / 64] >> (i % 64)) & 1 == 1)
                .map(|i| i as u32 + 1000)
                .collect();
            let mut got = vec![7u32];
            push_positions(Isa::best(), &bits, from, to, 1000, &mut got);
            assert_eq!(got[0], 7);
            assert_eq!(&got[1..], &want[..], "{from}..{to}");
        }
    }
}
