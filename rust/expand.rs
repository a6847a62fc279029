//! Expansion of an index back into its keep-mask, and the operations built on
//! it: kept counts, gathering the kept values, scattering them into a dense
//! array. Each block starts in state 0, so blocks run in parallel.

use crate::{bail, Layout, Result, VdConfig};
use rayon::prelude::*;

/// Reads `n` (<= 4) bits at bit position `pos` of a little-endian bit stream.
#[inline]
pub fn read_bits(words: &[u64], pos: usize, n: u32) -> u64 {
    let (w, o) = (pos / 64, pos % 64);
    let mut v = words[w] >> o;
    if o + n as usize > 64 {
        v |= words[w + 1] << (64 - o);
    }
    v & ((1 << n) - 1)
}

/// A config's keep table together with the layout it expands.
pub struct Expander {
    table: Vec<u64>,
    k: u32,
    n_in: u32,
    layout: Layout,
}

impl Expander {
    pub fn new(config: &VdConfig, layout: Layout) -> Self {
        Self {
            table: config.keep_table(),
            k: config.flip_flops(),
            n_in: config.n_in(),
            layout,
        }
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Calls `f(t, bits)` with the keep bits of every step of block `b`,
    /// bits for positions past the tensor's end cleared.
    #[inline]
    fn steps(&self, index: &[u64], b: usize, mut f: impl FnMut(usize, u64)) {
        let words = &index[self.layout.words(b)];
        let steps = self.layout.steps(b);
        let n_out = self.layout.n_out;
        let valid = self.layout.weights(b).len();
        let state_mask = (1u32 << self.k) - 1;
        let mut s = 0u32;
        for t in 0..steps {
            let r = (s << self.n_in) | read_bits(words, t * self.n_in as usize, self.n_in) as u32;
            let mut bits = self.table[r as usize];
            let left = valid - t * n_out;
            if left < 64 {
                bits &= (1u64 << left) - 1;
            }
            f(t, bits);
            s = r & state_mask;
        }
    }

    /// Writes the mask of every weight into `out` (length `n_weights`).
    pub fn mask(&self, index: &[u64], out: &mut [bool]) -> Result<()> {
        self.check(index, out.len())?;
        let n_out = self.layout.n_out;
        out.par_chunks_mut(self.layout.block_weights())
            .enumerate()
            .for_each(|(b, out)| {
                self.steps(index, b, |t, bits| {
                    let end = ((t + 1) * n_out).min(out.len());
                    let row = &mut out[t * n_out..end];
                    for (j, o) in row.iter_mut().enumerate() {
                        *o = (bits >> j) & 1 != 0;
                    }
                })
            });
        Ok(())
    }

    /// Kept weights per block.
    pub fn counts(&self, index: &[u64]) -> Result<Vec<usize>> {
        self.check(index, self.layout.n_weights)?;
        Ok((0..self.layout.n_blocks())
            .into_par_iter()
            .map(|b| {
                let mut n = 0;
                self.steps(index, b, |_, bits| n += bits.count_ones() as usize);
                n
            })
            .collect())
    }

    /// The kept weights, in C order.
    pub fn gather<T: Copy + Send + Sync + Default>(
        &self,
        index: &[u64],
        weights: &[T],
    ) -> Result<Vec<T>> {
        let counts = self.counts(index)?;
        self.check(index, weights.len())?;
        let mut values = vec![T::default(); counts.iter().sum()];
        let n_out = self.layout.n_out;
        split_by(&mut values, &counts)
            .into_par_iter()
            .enumerate()
            .for_each(|(b, out)| {
                let w = &weights[self.layout.weights(b)];
                let mut k = 0;
                self.steps(index, b, |t, mut bits| {
                    while bits != 0 {
                        out[k] = w[t * n_out + bits.trailing_zeros() as usize];
                        k += 1;
                        bits &= bits - 1;
                    }
                })
            });
        Ok(values)
    }

    /// Fills `out` (length `n_weights`) with `values` on the mask and zero elsewhere.
    pub fn scatter<T: Copy + Send + Sync + Default>(
        &self,
        index: &[u64],
        values: &[T],
        out: &mut [T],
    ) -> Result<()> {
        let counts = self.counts(index)?;
        self.check(index, out.len())?;
        let nnz: usize = counts.iter().sum();
        if values.len() != nnz {
            bail!(
                "values has {} entries but the index keeps {nnz} weights",
                values.len()
            );
        }
        let mut starts = Vec::with_capacity(counts.len());
        counts.iter().fold(0, |s, &c| {
            starts.push(s);
            s + c
        });
        let n_out = self.layout.n_out;
        out.par_chunks_mut(self.layout.block_weights())
            .enumerate()
            .for_each(|(b, out)| {
                let mut v = values[starts[b]..].iter();
                self.steps(index, b, |t, bits| {
                    let end = ((t + 1) * n_out).min(out.len());
                    let row = &mut out[t * n_out..end];
                    for (j, o) in row.iter_mut().enumerate() {
                        *o = if (bits >> j) & 1 != 0 {
                            *v.next().unwrap_or(&T::default())
                        } else {
                            T::default()
                        };
                    }
                })
            });
        Ok(())
    }

    fn check(&self, index: &[u64], n: usize) -> Result<()> {
        self.layout.check_index(index.len())?;
        if n != self.layout.n_weights {
            bail!(
                "array has {n} elements, but the index describes {} weights",
                self.layout.n_weights
            );
        }
        Ok(())
    }
}

/// Splits `s` into consecutive pieces of the given lengths (which sum to its length).
pub fn split_by<'a, T>(mut s: &'a mut [T], lens: &[usize]) -> Vec<&'a mut [T]> {
    lens.iter()
        .map(|&n| {
            let (head, tail) = std::mem::take(&mut s).split_at_mut(n);
            s = tail;
            head
        })
        .collect()
}
