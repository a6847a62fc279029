//! The VD one step at a time (docs/format.md, "The Viterbi decompressor"):
//! the one scalar stepper, which the format's count check runs and the fast
//! decoders are tested against.

use super::VdConfig;

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

/// Calls `f(t, r)` with the register value `r = (state << n_in) | input` of
/// every step `t` of a block of `steps` steps whose input bits are `words`
/// (each block starts in state 0); step `t`'s keep bits are then
/// [`VdConfig::keep_bits`]`(r)`, or an equal, faster evaluation of it.
#[inline]
pub fn for_each_register(
    config: &VdConfig,
    words: &[u64],
    steps: usize,
    mut f: impl FnMut(usize, u32),
) {
    let n_in = config.n_in();
    let state_mask = (1u32 << config.flip_flops()) - 1;
    let mut s = 0u32;
    for t in 0..steps {
        let r = (s << n_in) | read_bits(words, t * n_in as usize, n_in) as u32;
        f(t, r);
        s = r & state_mask;
    }
}

/// The mask of the first `valid` weights of a block of `steps` steps whose
/// input bits are `words`, bit-packed (`valid.div_ceil(64) + 1` words, the
/// last 0), from the plain step: the reference for the fast decoders.
pub fn reference_bits(config: &VdConfig, words: &[u64], steps: usize, valid: usize) -> Vec<u64> {
    let n_out = config.n_out() as usize;
    let mut bits = vec![0u64; valid.div_ceil(64) + 1];
    for_each_register(config, words, steps, |t, r| {
        let keep = config.keep_bits(r);
        for j in 0..n_out {
            let i = t * n_out + j;
            if i < valid && (keep >> j) & 1 == 1 {
                bits[i / 64] |= 1 << (i % 64);
            }
        }
    });
    bits
}
