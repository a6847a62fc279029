//! The CPU's instruction sets: detected once, proven by tokens, and the only
//! place in the crate with `target_feature` or SIMD intrinsics.
//!
//! A kernel that needs instructions beyond the portable ones takes a token
//! ([`Isa`], [`BitSliceIsa`]) that can only be made once the CPU was seen to
//! run them (the pattern of `memchr` and BLAKE3), so no safe function can run
//! an instruction the CPU lacks. Code generic over the level implements
//! [`Kernel`]; [`dispatch`] runs it compiled for the token's level.

pub(crate) mod acs;
pub(crate) mod bitmatrix;
pub(crate) mod bitslice;
pub(crate) mod lanes;

use std::sync::OnceLock;

/// Instruction-set levels, from the portable fallback up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Portable,
    Avx2,
    Avx512,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Portable => "portable",
            Level::Avx2 => "avx2",
            Level::Avx512 => "avx512",
        }
    }

    pub fn from_name(name: &str) -> Option<Level> {
        Level::all().into_iter().find(|l| l.name() == name)
    }

    pub fn all() -> [Level; 3] {
        [Level::Portable, Level::Avx2, Level::Avx512]
    }

    /// True when this CPU can run the level.
    pub fn available(self) -> bool {
        match self {
            Level::Portable => true,
            Level::Avx2 => cpu().avx2,
            Level::Avx512 => cpu().avx512,
        }
    }

    /// The best level this CPU runs (detected once).
    pub fn best() -> Level {
        Isa::best().level()
    }
}

/// What the CPU runs, detected once for the process.
struct Cpu {
    avx2: bool,
    avx512: bool,
    /// AVX-512 VBMI and BITALG with BMI2, for the bit-sliced decoder.
    bitslice: bool,
    /// AVX-512 VBMI with GFNI, for the bit-matrix transposes.
    bitmatrix: bool,
}

fn cpu() -> &'static Cpu {
    static CPU: OnceLock<Cpu> = OnceLock::new();
    CPU.get_or_init(detect)
}

#[cfg(target_arch = "x86_64")]
fn detect() -> Cpu {
    let avx512 = detected_avx512();
    Cpu {
        avx2: detected_avx2(),
        avx512,
        bitslice: avx512
            && is_x86_feature_detected!("avx512vbmi")
            && is_x86_feature_detected!("avx512bitalg")
            && is_x86_feature_detected!("bmi2"),
        bitmatrix: avx512
            && is_x86_feature_detected!("avx512vbmi")
            && is_x86_feature_detected!("gfni"),
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> Cpu {
    Cpu {
        avx2: false,
        avx512: false,
        bitslice: false,
        bitmatrix: false,
    }
}

/// Proof that the CPU runs a [`Level`]: made only by checking, so kernels that
/// take one may run the level's instructions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Isa {
    level: Level,
}

impl Isa {
    /// The token of `level`, if this CPU runs it.
    pub fn new(level: Level) -> Option<Isa> {
        level.available().then_some(Isa { level })
    }

    /// The token of the best level this CPU runs.
    pub fn best() -> Isa {
        static BEST: OnceLock<Isa> = OnceLock::new();
        *BEST.get_or_init(|| {
            Level::all()
                .into_iter()
                .rev()
                .find_map(Isa::new)
                .unwrap_or(Isa {
                    level: Level::Portable,
                })
        })
    }

    pub fn level(self) -> Level {
        self.level
    }

    /// True when the token proves AVX-512 (F, BW, VL).
    pub(crate) fn avx512(self) -> bool {
        self.level == Level::Avx512
    }
}

/// Proof that the CPU runs the bit-sliced decoder's instructions.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BitSliceIsa(());

impl BitSliceIsa {
    pub(crate) fn new() -> Option<Self> {
        cpu().bitslice.then_some(BitSliceIsa(()))
    }
}

/// Proof that the CPU runs the bit-matrix transposes' instructions.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BitMatrixIsa(());

impl BitMatrixIsa {
    pub(crate) fn new() -> Option<Self> {
        cpu().bitmatrix.then_some(BitMatrixIsa(()))
    }
}

/// A computation compiled once per level: [`dispatch`] inlines `run` into a
/// function compiled with the level's instructions (`run` should be
/// `#[inline(always)]`; closures it is handed are not compiled that way).
pub(crate) trait Kernel {
    type Output;
    fn run(self, isa: Isa) -> Self::Output;
}

/// Writes, for each level above the portable one, the feature detection and
/// the wrapper compiled with its features, and [`dispatch`] over them: the
/// features of a level are written once, here.
macro_rules! levels {
    ($($level:ident: $wrapper:ident, $detected:ident, [$($feature:tt),+];)+) => {
        $(
            #[cfg(target_arch = "x86_64")]
            fn $detected() -> bool {
                $(is_x86_feature_detected!($feature))&&+
            }

            /// Runs `k` compiled with the level's instructions.
            ///
            /// # Safety
            /// The CPU must run every feature the wrapper enables.
            #[cfg(target_arch = "x86_64")]
            $(#[target_feature(enable = $feature)])+
            unsafe fn $wrapper<K: Kernel>(isa: Isa, k: K) -> K::Output {
                k.run(isa)
            }
        )+

        /// Runs `k` compiled for `isa`'s level.
        pub(crate) fn dispatch<K: Kernel>(isa: Isa, k: K) -> K::Output {
            match isa.level {
                $(
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: an `Isa` is only made for a level the CPU runs,
                    // and the wrapper enables that level's features.
                    Level::$level => unsafe { $wrapper(isa, k) },
                )+
                _ => k.run(isa),
            }
        }
    };
}

levels! {
    Avx512: run_avx512, detected_avx512, ["avx512f", "avx512bw", "avx512vl", "popcnt", "bmi2"];
    Avx2: run_avx2, detected_avx2, ["avx2", "fma", "popcnt", "bmi2"];
}
