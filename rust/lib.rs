//! vitrust: Viterbi-based pruning with a fixed, tiny index cost per weight.
//!
//! A pure-Rust core: the VD ([`vd`]), the block layout ([`layout`]), expansion
//! ([`expand`]), the exact trellis search ([`search`]) and rate control
//! ([`rate`]). The Python binding lives behind the `python` feature.

pub mod acs;
pub mod alloc;
mod bitslice;
pub mod cancel;
pub mod cost;
pub mod error;
pub mod expand;
pub mod float8;
pub mod format;
pub mod keep;
pub mod layout;
pub mod matmul;
pub mod pool;
pub mod rate;
pub mod rmatmul;
pub mod scores;
pub mod search;
pub mod values;
pub mod vd;

#[cfg(feature = "python")]
mod python;

pub use error::{Error, ErrorKind, Result};
pub use expand::{Decoder, Expander};
pub use layout::Layout;
pub use rate::{prune_to_rate, RateResult};
pub use scores::{Float, Score, Scores, Weights};
pub use search::{BlockResult, Searcher, DEFAULT_MAX_SEARCH_BYTES};
pub use vd::{default_comparator, generate_taps, VdConfig};
