//! The two 8-bit float formats of safetensors files (OCP FP8): `F8_E4M3`
//! (4 exponent bits, bias 7, no infinities, NaN at `S.1111.111`; as
//! `ml_dtypes.float8_e4m3fn`) and `F8_E5M2` (5 exponent bits, bias 15,
//! IEEE-like infinities and NaNs; as `ml_dtypes.float8_e5m2`).
//!
//! The core only moves their bit patterns and widens them exactly (every
//! 8-bit float is a float32) through a 256-entry table when it needs a number.

/// Decodes an 8-bit float with `m` mantissa bits and exponent bias `bias`;
/// `special` says whether the all-ones exponent is infinity/NaN (E5M2) rather
/// than ordinary numbers with only `S.1111.111` a NaN (E4M3).
const fn decode(bits: u8, m: u32, bias: i32, special: bool) -> f32 {
    let e_max = (1u32 << (7 - m)) - 1;
    let (exp, man) = ((bits as u32 >> m) & e_max, bits as u32 & ((1 << m) - 1));
    let magnitude = if exp == e_max && special {
        if man == 0 {
            f32::INFINITY
        } else {
            f32::NAN
        }
    } else if exp == e_max && man == (1 << m) - 1 {
        f32::NAN
    } else if exp == 0 {
        // Subnormal: man * 2^(1 - bias - m), a normal float32.
        man as f32 * f32::from_bits(((128 - bias - m as i32) as u32) << 23)
    } else {
        f32::from_bits((((exp as i32 - bias + 127) as u32) << 23) | (man << (23 - m)))
    };
    f32::from_bits(magnitude.to_bits() | ((bits as u32 >> 7) << 31))
}

const fn table(m: u32, bias: i32, special: bool) -> [f32; 256] {
    let mut t = [0.0f32; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = decode(i as u8, m, bias, special);
        i += 1;
    }
    t
}

static E4M3: [f32; 256] = table(3, 7, false);
static E5M2: [f32; 256] = table(2, 15, true);

macro_rules! float8 {
    ($name:ident, $table:ident, $doc:literal) => {
        #[doc = $doc]
        #[repr(transparent)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
        pub struct $name(pub u8);

        impl $name {
            /// The exact float32 value.
            #[inline(always)]
            pub fn to_f32(self) -> f32 {
                $table[self.0 as usize]
            }

            /// Bit patterns read as this type (no copy).
            pub fn from_bits_slice(bits: &[u8]) -> &[Self] {
                crate::sys::bytes_as(bits)
            }
        }
    };
}

float8!(
    F8E4M3,
    E4M3,
    "An `F8_E4M3` value (`float8_e4m3fn`) as its bit pattern."
);
float8!(
    F8E5M2,
    E5M2,
    "An `F8_E5M2` value (`float8_e5m2`) as its bit pattern."
);

#[cfg(test)]
mod tests {
    use super::*;

    /// `(-1)^s * 2^e * (1 + f)` written out with `powi`, independently of the
    /// bit assembly above.
    fn reference(bits: u8, m: i32, bias: i32, special: bool) -> f32 {
        let e_bits = 7 - m;
        let (s, e, f) = (
            bits >> 7,
            i32::from((bits >> m) & ((1 << e_bits) - 1) as u8),
            i32::from(bits & ((1 << m) - 1) as u8),
        );
        let all_ones = e == (1 << e_bits) - 1;
        let v = if all_ones && special {
            if f == 0 {
                f64::INFINITY
            } else {
                f64::NAN
            }
        } else if all_ones && f == (1 << m) - 1 {
            f64::NAN
        } else if e == 0 {
            f64::from(f) / f64::from(1 << m) * 2f64.powi(1 - bias)
        } else {
            (1.0 + f64::from(f) / f64::from(1 << m)) * 2f64.powi(e - bias)
        };
        (if s == 1 { -v } else { v }) as f32
    }

    #[test]
    fn tables_match_the_formula() {
        for b in 0..=255u8 {
            for (got, want) in [
                (F8E4M3(b).to_f32(), reference(b, 3, 7, false)),
                (F8E5M2(b).to_f32(), reference(b, 2, 15, true)),
            ] {
                assert!(
                    got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                    "{b:#04x}: {got} vs {want}"
                );
            }
        }
        assert_eq!(F8E4M3(0x7e).to_f32(), 448.0);
        assert_eq!(F8E5M2(0x7b).to_f32(), 57344.0);
        assert_eq!(F8E4M3(0x01).to_f32(), 2f32.powi(-9));
        assert_eq!(F8E5M2(0x01).to_f32(), 2f32.powi(-16));
        assert!(F8E4M3(0x7f).to_f32().is_nan() && F8E4M3(0xff).to_f32().is_nan());
        assert_eq!(F8E5M2(0xfc).to_f32(), f32::NEG_INFINITY);
        assert_eq!(F8E4M3(0x80).to_f32().to_bits(), (-0.0f32).to_bits());
    }
}
