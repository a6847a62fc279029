//! Expansion of an index back into its keep-mask, block by block (each block
//! starts in state 0, so blocks run in parallel). The kept values against the
//! mask (counts, gather, scatter) are in [`crate::values`].

use crate::bitslice::BitSlicer;
use crate::cancel::{self, Cancel};
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

/// Appends runs of bits to a bit-packed buffer. Bits gather in a register and
/// go to memory a word at a time: a read-modify-write per step would chain
/// every step through memory.
#[derive(Default)]
struct BitSink {
    acc: u64,
    fill: usize,
    word: usize,
}

impl BitSink {
    /// Appends the low `width` (1..=64) bits of `bits`.
    #[inline(always)]
    fn push(&mut self, bits: u64, width: usize, out: &mut [u64]) {
        self.acc |= bits << self.fill;
        self.fill += width;
        if self.fill >= 64 {
            out[self.word] = self.acc;
            self.word += 1;
            self.fill -= 64;
            self.acc = if self.fill > 0 {
                bits >> (width - self.fill)
            } else {
                0
            };
        }
    }

    /// Writes the last, partly filled word.
    #[inline(always)]
    fn finish(&self, out: &mut [u64]) {
        if self.fill > 0 {
            out[self.word] = self.acc;
        }
    }
}

/// True when variable shifts are single instructions (x86 BMI2).
fn fast_shifts() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static BMI2: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *BMI2.get_or_init(|| is_x86_feature_detected!("bmi2"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

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
            Decoder::BitSliced => crate::bitslice::available(),
        }
    }

    /// True when the decoder handles steps of `n_out` mask bits.
    pub fn supports(self, n_out: usize) -> bool {
        match self {
            Decoder::Steps => true,
            Decoder::BitSliced => n_out <= crate::bitslice::MAX_N_OUT,
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

/// The step loop's tables.
struct StepTables {
    /// The keep bits of one step, indexed by the register `r`.
    table: Vec<u64>,
    /// For `n_in = 1`, `k <= 12`, `n_out <= 16`: the keep bits of four steps at
    /// once, indexed by `(state << 4) | (the four input bits in stream order)`.
    quad: Option<Vec<u64>>,
    k: u32,
    n_in: u32,
    n_out: usize,
}

impl StepTables {
    fn new(config: &VdConfig) -> Self {
        let table = config.keep_table();
        let (k, n_out) = (config.flip_flops(), config.n_out() as usize);
        let quad = (config.n_in() == 1 && k <= 12 && n_out <= 16).then(|| {
            let mask = (1usize << k) - 1;
            (0..1usize << (k + 4))
                .map(|x| {
                    let (mut s, mut bits) = (x >> 4, 0u64);
                    for j in 0..4 {
                        let r = (s << 1) | ((x >> j) & 1);
                        bits |= table[r] << (j * n_out);
                        s = r & mask;
                    }
                    bits
                })
                .collect()
        });
        Self {
            table,
            quad,
            k,
            n_in: config.n_in(),
            n_out,
        }
    }

    /// The step loop, with the fastest shifts the CPU has.
    fn decode(&self, words: &[u64], steps: usize, out: &mut [u64]) {
        out.fill(0);
        match (self.n_in, fast_shifts()) {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `fast_shifts` checked that the CPU has BMI2.
            (1, true) => unsafe { self.run_bmi2(words, steps, out) },
            _ => self.run(words, steps, out),
        }
    }

    /// Writes the mask bits of `steps` steps read from `words` to `out`.
    #[inline(always)]
    fn run(&self, words: &[u64], steps: usize, out: &mut [u64]) {
        let (n_in, n_out) = (self.n_in as usize, self.n_out);
        let state_mask = (1u32 << self.k) - 1;
        let (mut s, mut sink) = (0u32, BitSink::default());
        let mut t = 0;
        if let Some(quad) = &self.quad {
            // Four steps per lookup; the state advances by the four input bits,
            // reversed (the first step's bit ends up highest).
            const REV4: u64 = 0xF7B3_D591_E6A2_C480;
            let width = 4 * n_out;
            while t + 4 <= steps {
                let v = (words[t / 64] >> (t % 64)) & 0xF;
                sink.push(quad[((s as usize) << 4) | v as usize], width, out);
                s = ((s << 4) | ((REV4 >> (4 * v)) & 0xF) as u32) & state_mask;
                t += 4;
            }
        }
        for t in t..steps {
            let u = if n_in == 1 {
                (words[t / 64] >> (t % 64)) & 1
            } else {
                read_bits(words, t * n_in, self.n_in)
            };
            let r = (s << n_in) | u as u32;
            sink.push(self.table[r as usize], n_out, out);
            s = r & state_mask;
        }
        sink.finish(out);
    }

    /// [`run`](Self::run) with one-instruction variable shifts.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "bmi2")]
    unsafe fn run_bmi2(&self, words: &[u64], steps: usize, out: &mut [u64]) {
        self.run(words, steps, out)
    }
}

/// A decoder with the tables it needs (built per expander, so only those of
/// the decoder in use).
enum Kernel {
    Steps(StepTables),
    BitSliced(BitSlicer),
}

impl Kernel {
    fn new(config: &VdConfig, decoder: Decoder) -> Self {
        if decoder == Decoder::BitSliced {
            if let Some(slicer) = BitSlicer::new(config) {
                return Kernel::BitSliced(slicer);
            }
        }
        Kernel::Steps(StepTables::new(config))
    }
}

/// A config's decoder together with the layout it expands.
pub struct Expander {
    config: VdConfig,
    layout: Layout,
    kernel: Kernel,
    /// The token current when the expander was built (see [`crate::cancel`]).
    cancel: Cancel,
}

impl Expander {
    pub fn new(config: &VdConfig, layout: Layout) -> Self {
        Self {
            config: config.clone(),
            layout,
            kernel: Kernel::new(config, Decoder::best(layout.n_out)),
            cancel: cancel::current(),
        }
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
        self.kernel = Kernel::new(&self.config, decoder);
        self
    }

    pub fn decoder(&self) -> Decoder {
        match self.kernel {
            Kernel::Steps(_) => Decoder::Steps,
            Kernel::BitSliced(_) => Decoder::BitSliced,
        }
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
        match &self.kernel {
            // SAFETY: a `BitSliced` kernel is only built where `available()`.
            #[cfg(target_arch = "x86_64")]
            Kernel::BitSliced(slicer) => unsafe { slicer.run(words, steps, out) },
            #[cfg(not(target_arch = "x86_64"))]
            Kernel::BitSliced(_) => unreachable!("bit-slicing needs x86-64"),
            Kernel::Steps(tables) => tables.decode(words, steps, out),
        }
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
            |bits, (b, out)| {
                if self.cancel.is_cancelled() {
                    return;
                }
                let nw = self.block_bits(index, b, bits);
                f(b, &bits[..nw], out)
            },
        );
        self.cancel.checkpoint();
    }

    /// Writes the mask of every weight into `out` (length `n_weights`).
    pub fn mask(&self, index: &[u64], out: &mut [bool]) -> Result<()> {
        self.check(index, out.len())?;
        self.blocks(index, out, self.layout.block_weights(), |_, bits, out| {
            unpack_bools(bits, out)
        });
        Ok(())
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

/// Bit-packed mask to one bool per weight: 64 at a time with AVX-512,
/// else eight at a time through a table.
fn unpack_bools(bits: &[u64], out: &mut [bool]) {
    #[cfg(target_arch = "x86_64")]
    if crate::acs::Level::best() == crate::acs::Level::Avx512 {
        // SAFETY: the CPU runs AVX-512BW (checked by `Level::best`).
        return unsafe { unpack_bools_avx512(bits, out) };
    }
    unpack_bools_table(bits, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn unpack_bools_avx512(bits: &[u64], out: &mut [bool]) {
    use std::arch::x86_64::*;
    let ones = _mm512_set1_epi8(1);
    let full = out.len() / 64;
    let dst = out.as_mut_ptr() as *mut __m512i;
    for (w, &word) in bits[..full].iter().enumerate() {
        _mm512_storeu_si512(dst.add(w), _mm512_maskz_mov_epi8(word, ones));
    }
    unpack_bools_table(&bits[full..], &mut out[full * 64..]);
}

fn unpack_bools_table(bits: &[u64], out: &mut [bool]) {
    static BYTES: [u64; 256] = {
        let mut t = [0u64; 256];
        let mut b = 0;
        while b < 256 {
            let mut j = 0;
            while j < 8 {
                t[b] |= (((b >> j) & 1) as u64) << (8 * j);
                j += 1;
            }
            b += 1;
        }
        t
    };
    // SAFETY: `bool` is one byte and only 0 or 1 is ever written.
    let bytes = unsafe { std::slice::from_raw_parts_mut(out.as_mut_ptr() as *mut u8, out.len()) };
    let mut chunks = bytes.chunks_exact_mut(8);
    for (c, chunk) in chunks.by_ref().enumerate() {
        let byte = (bits[c / 8] >> (8 * (c % 8))) & 0xff;
        chunk.copy_from_slice(&BYTES[byte as usize].to_le_bytes());
    }
    let base = out.len() / 8 * 8;
    for (j, o) in chunks.into_remainder().iter_mut().enumerate() {
        let i = base + j;
        *o = ((bits[i / 64] >> (i % 64)) & 1) as u8;
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

    #[test]
    fn every_unpack_path_agrees_with_the_bits() {
        let bits: Vec<u64> = (0..9u64)
            .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (i << 7))
            .collect();
        for n in [0, 1, 63, 64, 65, 200, 575, 576] {
            let want: Vec<bool> = (0..n)
                .map(|i| (bits[i / 64] >> (i % 64)) & 1 == 1)
                .collect();
            let mut got = vec![false; n];
            unpack_bools_table(&bits, &mut got);
            assert_eq!(got, want, "table, n = {n}");
            let mut got = vec![false; n];
            unpack_bools(&bits, &mut got);
            assert_eq!(got, want, "dispatched, n = {n}");
        }
    }
}
