//! vitrust: Viterbi-based pruning with a fixed, tiny index cost per weight.
//!
//! A pure-Rust core, laid out by pipeline stage: the VD ([`vd`]) and the
//! block layout ([`layout`]); the search and rate control (`search/`);
//! expansion, gather and scatter (`expand/`); products on the compressed
//! form (`products/`); the file (`format/`). `arch/` detects the CPU once and
//! holds every SIMD kernel. The Python binding (`python/`) lives behind the
//! `python` feature.

// Unsafe code lives in `arch` (SIMD) and where the module says why:
// `alloc` (zeroed allocation, byte views), `float8` (its byte view), the
// format's memory map and system calls, and the binding's zero-copy views.
#![deny(unsafe_code)]

#[allow(unsafe_code)]
pub mod alloc;
#[allow(unsafe_code)]
mod arch;
pub mod cancel;
pub mod error;
mod expand;
// Views bytes as the `repr(transparent)` float8 types.
#[allow(unsafe_code)]
pub mod float8;
pub mod format;
pub mod layout;
pub mod pool;
mod products;
pub mod scores;
mod search;
pub mod vd;

#[cfg(feature = "python")]
mod python;

pub use arch::Level;
pub use error::{Error, ErrorKind, Result};
pub use expand::{Decoder, Expander};
pub use layout::Layout;
pub use products::matmul::matmul;
pub use products::rmatmul::{group_rows, rmatmul};
pub use products::{Real, Widen};
pub use scores::{Float, Score, Scores, Weights};
pub use search::rate::{prune_to_rate, RateResult};
pub use search::{BlockResult, Searcher, DEFAULT_MAX_SEARCH_BYTES};
pub use vd::{default_comparator, generate_taps, VdConfig};
