//! vitrust: Viterbi-based pruning with a fixed, tiny index cost per weight.
//!
//! A pure-Rust core, laid out by pipeline stage: the VD ([`VdConfig`]) and
//! the block layout ([`Layout`]); the search and rate control (`search/`);
//! expansion, gather and scatter (`expand/`); the kept values' encodings
//! (`values/`); products on the compressed form (`products/`); the file
//! (`format/`). `arch/` detects the CPU once and
//! holds every SIMD kernel. The Python binding (`python/`) lives behind the
//! `python` feature.

// Unsafe code lives in `arch` (SIMD) and, each allowed where it is declared
// with the reason, in `sys` (allocation, byte views and system calls, each
// behind a safe function) and the binding's zero-copy array views.
#![deny(unsafe_code)]

#[allow(unsafe_code)] // SIMD intrinsics behind capability tokens
mod arch;
pub mod cancel;
mod error;
mod expand;
mod float8;
pub mod format;
mod layout;
pub mod pool;
mod products;
mod scores;
mod search;
#[allow(unsafe_code)] // allocation, byte views and system calls behind safe functions
mod sys;
mod values;
mod vd;

#[cfg(feature = "python")]
mod python;

pub use arch::Level;
pub use error::{Error, ErrorKind, Result};
pub use expand::order::transpose;
pub use expand::{Decoder, Expander};
pub use float8::{F8E4M3, F8E5M2};
pub use layout::Layout;
pub use layout::MAX_BLOCK_STEPS;
pub use pool::{with_threads, MAX_THREADS};
pub use products::matmul::matmul;
pub use products::rmatmul::{group_rows, rmatmul};
pub use products::{Real, Widen};
pub use scores::{Float, Score, Scores, Weights};
pub use search::rate::{prune_to_rate, RateResult};
pub use search::{BlockResult, Searcher, ThresholdSearch, DEFAULT_MAX_SEARCH_BYTES};
pub use values::{encode, kmeans, Decoded, Encoded, Encoding, Source, MAX_GROUP};
pub use vd::step::reference_bits;
pub use vd::{default_comparator, generate_taps, VdConfig};
pub use vd::{MAX_BLOCK_THRESHOLD, MAX_COMPARATOR_BITS, MAX_FLIP_FLOPS, MAX_N_IN, MAX_N_OUT};
