//! The step decoder: the VD one step (or, through a table, four) at a time,
//! for any CPU and any config.

use crate::arch::{self, Isa, Kernel};
use crate::vd::keep::FastKeep;
use crate::vd::step::{for_each_register, read_bits};
use crate::VdConfig;

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

/// The step loop's tables.
pub(super) struct StepTables {
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
    pub(super) fn new(config: &VdConfig) -> Self {
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

    /// The step loop; for `n_in = 1` compiled for the CPU's level, whose
    /// one-instruction variable shifts (BMI2) it gains from.
    pub(super) fn decode(&self, words: &[u64], steps: usize, out: &mut [u64]) {
        out.fill(0);
        if self.n_in == 1 {
            let task = Decode {
                tables: self,
                words,
                steps,
                out,
            };
            arch::dispatch(Isa::best(), task)
        } else {
            self.run(words, steps, out)
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
}

/// The step loop without tables: each step's keep bits evaluated from the
/// gates. For per-block thresholds used by too few steps to repay a table.
pub(super) fn decode_gates(
    config: &VdConfig,
    fast: &FastKeep,
    words: &[u64],
    steps: usize,
    out: &mut [u64],
) {
    out.fill(0);
    let n_out = config.n_out() as usize;
    let mut sink = BitSink::default();
    for_each_register(config, words, steps, |_, r| {
        sink.push(fast.keep_bits(r), n_out, out)
    });
    sink.finish(out);
}

/// Table entries [`StepTables::new`] fills for `config`.
pub(super) fn table_entries(config: &VdConfig) -> usize {
    let (k, n_in) = (config.flip_flops(), config.n_in());
    let quad = config.n_in() == 1 && k <= 12 && config.n_out() <= 16;
    (1usize << (k + n_in)) + if quad { 1usize << (k + 4) } else { 0 }
}

/// [`StepTables::decode`]'s arguments, to compile it once per level.
struct Decode<'a> {
    tables: &'a StepTables,
    words: &'a [u64],
    steps: usize,
    out: &'a mut [u64],
}

impl Kernel for Decode<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self, _isa: Isa) {
        self.tables.run(self.words, self.steps, self.out)
    }
}
