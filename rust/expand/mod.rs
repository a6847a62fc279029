//! Expansion of an index back into its keep-mask, block by block (each block
//! starts in state 0, so blocks run in parallel; docs/format.md, "Blocks").
//! The decoders are the step loop ([`steps`]) and the bit-sliced one
//! ([`bitslice`]); the kept values against the mask (counts, gather,
//! scatter) are in [`values`]; [`order`] turns a column-major stream into
//! the tensor's C order.

pub(crate) mod bitslice;
pub(crate) mod order;
mod steps;
pub(crate) mod values;

use crate::arch::{self, BitSliceIsa, Isa};
use crate::cancel::{self, Cancel};
use crate::sys::Zeroable;
use crate::vd::check_thresholds;
use crate::vd::keep::FastKeep;
use crate::{bail, Layout, Result, VdConfig};
use bitslice::BitSlicer;
use rayon::prelude::*;
use steps::StepTables;

/// The ways [`Expander::block_bits`] can decode a block, all bit-identical.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoder {
    /// One step (or four, through a table) at a time: any CPU, any config.
    Steps,
    /// Bit-sliced, 512 steps per vector: AVX-512 with VBMI and BITALG, and
    /// at most 16 mask bits per step.
    BitSliced,
}

impl Decoder {
    pub fn all() -> [Decoder; 2] {
        [Decoder::Steps, Decoder::BitSliced]
    }

    /// True when this CPU can run the decoder.
    pub fn available(self) -> bool {
        match self {
            Decoder::Steps => true,
            Decoder::BitSliced => BitSliceIsa::new().is_some(),
        }
    }

    /// True when the decoder handles steps of `n_out` mask bits.
    pub fn supports(self, n_out: usize) -> bool {
        match self {
            Decoder::Steps => true,
            Decoder::BitSliced => n_out <= bitslice::MAX_N_OUT,
        }
    }

    /// The fastest decoder this CPU runs for `n_out` outputs per step:
    /// bit-slicing wherever it applies. Measured, it is about even with the
    /// step loop at `k = 8`, `n_out = 16` (one four-step lookup yields 64
    /// weights), 2.5x faster at `k = 10`, `n_out = 5`, and 2.5-5x where the
    /// step loop has no four-step table (`n_in > 1` or `k > 12`).
    fn best(n_out: usize) -> Decoder {
        let sliced = Decoder::BitSliced;
        if sliced.available() && sliced.supports(n_out) {
            sliced
        } else {
            Decoder::Steps
        }
    }
}

/// A decoder with the tables it needs (built per expander, so only those of
/// the decoder in use).
enum Kernel {
    Steps(StepTables),
    BitSliced(BitSlicer, BitSliceIsa),
    /// The step loop evaluating the gates (no table): per-block thresholds
    /// used by too few steps to repay a table of their own.
    Gates(VdConfig, FastKeep),
}

impl Kernel {
    fn new(config: &VdConfig, decoder: Decoder) -> Self {
        Self::sliced(config, decoder).unwrap_or_else(|| Kernel::Steps(StepTables::new(config)))
    }

    /// The bit-sliced kernel, when it is asked for and the config and CPU allow it.
    fn sliced(config: &VdConfig, decoder: Decoder) -> Option<Self> {
        if decoder != Decoder::BitSliced {
            return None;
        }
        Some(Kernel::BitSliced(
            BitSlicer::new(config)?,
            BitSliceIsa::new()?,
        ))
    }

    /// The kernel of a per-block threshold whose blocks have `steps` steps in
    /// all: a step table only when those steps repay it, so the tables of a
    /// file's thresholds cost memory in proportion to its index.
    fn for_steps(config: &VdConfig, decoder: Decoder, steps: usize) -> Self {
        Self::sliced(config, decoder).unwrap_or_else(|| {
            if steps >= steps::table_entries(config) / 4 {
                Kernel::Steps(StepTables::new(config))
            } else {
                Kernel::Gates(config.clone(), FastKeep::new(config))
            }
        })
    }

    fn decoder(&self) -> Decoder {
        match self {
            Kernel::BitSliced(..) => Decoder::BitSliced,
            Kernel::Steps(_) | Kernel::Gates(..) => Decoder::Steps,
        }
    }

    fn decode(&self, words: &[u64], steps: usize, out: &mut [u64]) {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::BitSliced(slicer, isa) => slicer.run(*isa, words, steps, out),
            #[cfg(not(target_arch = "x86_64"))]
            Kernel::BitSliced(..) => unreachable!("bit-slicing needs x86-64"),
            Kernel::Steps(tables) => tables.decode(words, steps, out),
            Kernel::Gates(config, fast) => steps::decode_gates(config, fast, words, steps, out),
        }
    }
}

/// The kernels of an expander: one for the config's threshold, or one per
/// threshold the blocks use.
enum Kernels {
    One(Kernel),
    PerBlock {
        /// Indexed by threshold; `None` for thresholds no block uses.
        by_threshold: Vec<Option<Kernel>>,
        thresholds: Vec<u8>,
    },
}

impl Kernels {
    fn new(
        config: &VdConfig,
        layout: &Layout,
        thresholds: Option<&[u8]>,
        decoder: Decoder,
    ) -> Result<Self> {
        let Some(thresholds) = thresholds else {
            return Ok(Kernels::One(Kernel::new(config, decoder)));
        };
        check_thresholds(config, layout, thresholds)?;
        let mut steps = vec![0usize; 256];
        for (b, &t) in thresholds.iter().enumerate() {
            steps[usize::from(t)] += layout.steps(b);
        }
        let by_threshold = steps
            .iter()
            .enumerate()
            .map(|(t, &n)| {
                (n > 0)
                    .then(|| config.with_threshold(t as u32))
                    .transpose()
                    .map(|c| c.map(|c| Kernel::for_steps(&c, decoder, n)))
            })
            .collect::<Result<_>>()?;
        Ok(Kernels::PerBlock {
            by_threshold,
            thresholds: thresholds.to_vec(),
        })
    }

    fn of_block(&self, b: usize) -> &Kernel {
        match self {
            Kernels::One(k) => k,
            Kernels::PerBlock {
                by_threshold,
                thresholds,
            } => by_threshold[usize::from(thresholds[b])]
                .as_ref()
                .expect("a kernel for every threshold in use"),
        }
    }

    fn thresholds(&self) -> Option<&[u8]> {
        match self {
            Kernels::One(_) => None,
            Kernels::PerBlock { thresholds, .. } => Some(thresholds),
        }
    }
}

/// A config's decoder together with the layout it expands.
pub struct Expander {
    config: VdConfig,
    layout: Layout,
    kernels: Kernels,
    /// The token current when the expander was built (see [`crate::cancel`]).
    cancel: Cancel,
}

impl Expander {
    pub fn new(config: &VdConfig, layout: Layout) -> Self {
        let decoder = Decoder::best(layout.n_out);
        Self {
            config: config.clone(),
            layout,
            kernels: Kernels::One(Kernel::new(config, decoder)),
            cancel: cancel::current(),
        }
    }

    /// An expander whose block `b` compares with `thresholds[b]` (format v2),
    /// or with the config's threshold when `thresholds` is `None`.
    pub fn with_thresholds(
        config: &VdConfig,
        layout: Layout,
        thresholds: Option<&[u8]>,
    ) -> Result<Self> {
        let decoder = Decoder::best(layout.n_out);
        Ok(Self {
            config: config.clone(),
            layout,
            kernels: Kernels::new(config, &layout, thresholds, decoder)?,
            cancel: cancel::current(),
        })
    }

    /// This expander with `decoder` forced, to compare or time decoders.
    ///
    /// # Panics
    /// If the CPU cannot run `decoder`, or it does not handle this config.
    pub fn with_decoder(mut self, decoder: Decoder) -> Self {
        assert!(
            decoder.available(),
            "{decoder:?} needs instructions this CPU lacks"
        );
        assert!(
            decoder.supports(self.layout.n_out),
            "{decoder:?} does not handle {} mask bits per step",
            self.layout.n_out
        );
        let thresholds = self.kernels.thresholds().map(<[u8]>::to_vec);
        self.kernels = Kernels::new(&self.config, &self.layout, thresholds.as_deref(), decoder)
            .expect("thresholds checked when the expander was built");
        self
    }

    /// The decoder of the config's threshold (or of the first block's).
    pub fn decoder(&self) -> Decoder {
        self.kernels.of_block(0).decoder()
    }

    /// Each block's threshold, when blocks have their own.
    pub fn thresholds(&self) -> Option<&[u8]> {
        self.kernels.thresholds()
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The cancel token long loops over this expander's blocks check.
    pub(crate) fn cancel(&self) -> &Cancel {
        &self.cancel
    }

    /// Writes block `b`'s mask as bits (bit `i` of word `i / 64` for the
    /// block's weight `i`) into `out`, which holds at least
    /// [`bits_words`](Self::bits_words) words; bits past the tensor's end are 0.
    /// Bit-packed, the mask of a block stays in L1 for the passes that follow.
    pub fn block_bits(&self, index: &[u64], b: usize, out: &mut [u64]) -> usize {
        let words = &index[self.layout.words(b)];
        let valid = self.layout.weights(b).len();
        let nw = valid.div_ceil(64);
        let out = &mut out[..nw + 1];
        let steps = self.layout.steps(b);
        self.kernels.of_block(b).decode(words, steps, out);
        if !valid.is_multiple_of(64) {
            out[nw - 1] &= (1u64 << (valid % 64)) - 1;
        }
        out[nw] = 0;
        nw
    }

    /// Scratch words [`block_bits`](Self::block_bits) needs.
    pub fn bits_words(&self) -> usize {
        self.layout.block_weights().div_ceil(64) + 1
    }

    /// Runs `f(b, bits, out)` for every block in parallel, with block `b`'s
    /// mask bits and its piece of `out` (`per_block` elements per block).
    /// Once cancelled, the remaining blocks are skipped and a checkpoint
    /// after them unwinds (see [`crate::cancel`]).
    pub(crate) fn blocks<T: Send>(
        &self,
        index: &[u64],
        out: &mut [T],
        per_block: usize,
        f: impl Fn(usize, &[u64], &mut [T]) + Sync,
    ) {
        out.par_chunks_mut(per_block).enumerate().for_each_init(
            || vec![0u64; self.bits_words()],
            |bits, (b, out)| self.run_block(index, bits, b, out, &f),
        );
        self.cancel.checkpoint();
    }

    /// [`blocks`](Self::blocks) over one element per weight of `out`, which
    /// holds them or is empty with room for them (see [`crate::sys::par_fill`]:
    /// a new output is zeroed block by block, in cache, as it is written).
    pub(crate) fn blocks_into<T: Zeroable + Send>(
        &self,
        index: &[u64],
        out: &mut Vec<T>,
        f: impl Fn(usize, &[u64], &mut [T]) + Sync + Send,
    ) {
        crate::sys::par_fill(
            out,
            self.layout.n_weights,
            self.layout.block_weights(),
            || self.cancel.is_cancelled(),
            || vec![0u64; self.bits_words()],
            |bits, b, out| self.run_block(index, bits, b, out, &f),
        );
        self.cancel.checkpoint();
    }

    fn run_block<T>(
        &self,
        index: &[u64],
        bits: &mut [u64],
        b: usize,
        out: &mut [T],
        f: &impl Fn(usize, &[u64], &mut [T]),
    ) {
        if self.cancel.is_cancelled() {
            return;
        }
        let nw = self.block_bits(index, b, bits);
        f(b, &bits[..nw], out)
    }

    /// Writes the mask of every weight into `out` (length `n_weights`).
    pub fn mask(&self, index: &[u64], out: &mut [bool]) -> Result<()> {
        self.check(index, out.len())?;
        let isa = Isa::best();
        self.blocks(index, out, self.layout.block_weights(), |_, bits, out| {
            arch::lanes::unpack_bools(isa, bits, out)
        });
        Ok(())
    }

    /// The mask of every weight, in a new vector.
    pub fn mask_vec(&self, index: &[u64]) -> Result<Vec<bool>> {
        self.check(index, self.layout.n_weights)?;
        let isa = Isa::best();
        // Each block's bools are stored once, into memory no pass zeroes.
        let out = crate::sys::par_write(
            self.layout.n_weights,
            self.layout.block_weights(),
            "the keep-mask",
            || self.cancel.is_cancelled(),
            || vec![0u64; self.bits_words()],
            |bits, b, out| {
                let nw = self.block_bits(index, b, bits);
                arch::lanes::unpack_bools_into(isa, &bits[..nw], out)
            },
        )?;
        self.cancel.checkpoint();
        Ok(out)
    }

    pub(crate) fn check(&self, index: &[u64], n: usize) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fastest_supported_decoder_is_chosen() {
        for n_out in [1, 5, 16, 17, 64] {
            let cfg = VdConfig::from_seed(10, 1, n_out, 5, 3, 0).unwrap();
            let layout = Layout::new(&cfg, 10_000, 64).unwrap();
            let e = Expander::new(&cfg, layout);
            let sliced = Decoder::BitSliced.available() && n_out <= 16;
            let want = if sliced {
                Decoder::BitSliced
            } else {
                Decoder::Steps
            };
            assert_eq!(e.decoder(), want, "n_out = {n_out}");
            assert_eq!(e.with_decoder(Decoder::Steps).decoder(), Decoder::Steps);
        }
    }

    /// Per-block thresholds: every block decodes as a v1 block of its own
    /// threshold, on every decoder, including the gates-only step loop that
    /// thresholds used by few steps get at 14 flip-flops.
    #[test]
    fn per_block_thresholds_decode_each_block_with_its_own() {
        use crate::vd::step::reference_bits;
        for (k, n_in, n_out, nc, steps, n) in [
            (10, 1, 5, 5, 64, 5_000),
            (14, 2, 10, 6, 16, 2_000),
            (6, 3, 9, 3, 7, 900),
        ] {
            let cfg = VdConfig::from_seed(k, n_in, n_out, nc, 1, 9).unwrap();
            let layout = Layout::new(&cfg, n, steps).unwrap();
            let index: Vec<u64> = (0..layout.index_len() as u64)
                .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17))
                .collect();
            let top = (1u32 << nc).min(255);
            let th: Vec<u8> = (0..layout.n_blocks())
                .map(|b| (1 + (b as u32 * 7) % top) as u8)
                .collect();
            for decoder in Decoder::all() {
                if !decoder.available() || !decoder.supports(n_out as usize) {
                    continue;
                }
                let e = Expander::with_thresholds(&cfg, layout, Some(&th))
                    .unwrap()
                    .with_decoder(decoder);
                let mut bits = vec![0u64; e.bits_words()];
                for b in 0..layout.n_blocks() {
                    let c = cfg.with_threshold(u32::from(th[b])).unwrap();
                    let valid = layout.weights(b).len();
                    let want = reference_bits(&c, &index[layout.words(b)], layout.steps(b), valid);
                    let nw = e.block_bits(&index, b, &mut bits);
                    assert_eq!(&bits[..nw], &want[..nw], "{decoder:?} k = {k}, block {b}");
                }
                let kept: usize = e.counts(&index).unwrap().iter().sum();
                let counted = crate::format::kept_count(&cfg, &layout, &index, Some(&th)).unwrap();
                assert_eq!(kept, counted, "k = {k}");
            }
        }
    }

    #[test]
    fn thresholds_out_of_range_or_of_the_wrong_count_are_refused() {
        let cfg = VdConfig::from_seed(8, 1, 5, 3, 2, 1).unwrap();
        let layout = Layout::new(&cfg, 1_000, 50).unwrap();
        for th in [vec![0u8; 4], vec![9u8; 4], vec![1u8; 3]] {
            assert!(Expander::with_thresholds(&cfg, layout, Some(&th)).is_err());
        }
        assert!(Expander::with_thresholds(&cfg, layout, Some(&[8u8; 4])).is_ok());
    }

    #[test]
    fn every_unpack_path_agrees_with_the_bits() {
        let bits: Vec<u64> = (0..9u64)
            .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (i << 7))
            .collect();
        for n in [0, 1, 63, 64, 65, 200, 575, 576] {
            let want: Vec<bool> = (0..n)
                .map(|i| (bits[i / 64] >> (i % 64)) & 1 == 1)
                .collect();
            // The portable level is the table alone.
            for isa in crate::Level::all().into_iter().filter_map(Isa::new) {
                let mut got = vec![false; n];
                arch::lanes::unpack_bools(isa, &bits, &mut got);
                assert_eq!(got, want, "{isa:?}, n = {n}");
                let mut fresh = vec![std::mem::MaybeUninit::uninit(); n];
                let got = arch::lanes::unpack_bools_into(isa, &bits, &mut fresh);
                assert_eq!(got, &want[..], "into, {isa:?}, n = {n}");
            }
        }
    }
}
