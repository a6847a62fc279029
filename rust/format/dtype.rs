//! The element types a vitrust file carries, and their safetensors names.

use crate::Result;
use half::{bf16, f16};
use safetensors::Dtype as St;

/// Element types of plain tensors; [`DType::is_value`] marks those a pruned
/// tensor's values may have. Data is always little-endian, as in safetensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    Bool,
    U8,
    I8,
    U16,
    I16,
    F16,
    BF16,
    U32,
    I32,
    F32,
    U64,
    I64,
    F64,
    F8E4M3,
    F8E5M2,
}

const ALL: [DType; 15] = [
    DType::Bool,
    DType::U8,
    DType::I8,
    DType::U16,
    DType::I16,
    DType::F16,
    DType::BF16,
    DType::U32,
    DType::I32,
    DType::F32,
    DType::U64,
    DType::I64,
    DType::F64,
    DType::F8E4M3,
    DType::F8E5M2,
];

impl DType {
    /// The safetensors name (`"F32"`, ...), also used in vitrust's metadata.
    pub fn name(self) -> &'static str {
        match self {
            Self::Bool => "BOOL",
            Self::U8 => "U8",
            Self::I8 => "I8",
            Self::U16 => "U16",
            Self::I16 => "I16",
            Self::F16 => "F16",
            Self::BF16 => "BF16",
            Self::U32 => "U32",
            Self::I32 => "I32",
            Self::F32 => "F32",
            Self::U64 => "U64",
            Self::I64 => "I64",
            Self::F64 => "F64",
            Self::F8E4M3 => "F8_E4M3",
            Self::F8E5M2 => "F8_E5M2",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        ALL.into_iter().find(|d| d.name() == name)
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Self::Bool | Self::U8 | Self::I8 | Self::F8E4M3 | Self::F8E5M2 => 1,
            Self::U16 | Self::I16 | Self::F16 | Self::BF16 => 2,
            Self::U32 | Self::I32 | Self::F32 => 4,
            Self::U64 | Self::I64 | Self::F64 => 8,
        }
    }

    /// A floating type that a pruned tensor's values may have.
    pub fn is_value(self) -> bool {
        matches!(
            self,
            Self::F16 | Self::BF16 | Self::F32 | Self::F64 | Self::F8E4M3 | Self::F8E5M2
        )
    }

    /// The dtype of an encoding's side table for values of this type: the
    /// type itself, float32 for float64 (encodings compute in float32), and
    /// `None` for the 8-bit floats, which are not encoded.
    pub fn table_dtype(self) -> Option<Self> {
        match self {
            Self::F16 | Self::BF16 | Self::F32 => Some(self),
            Self::F64 => Some(Self::F32),
            _ => None,
        }
    }

    /// `x` rounded to this table type (to nearest, ties to even) and back.
    pub fn round_f32(self, x: f32) -> f32 {
        match self {
            Self::F16 => f16::from_f32(x).to_f32(),
            Self::BF16 => bf16::from_f32(x).to_f32(),
            _ => x,
        }
    }

    /// True when this table type holds `x` exactly.
    pub fn holds_f32(self, x: f32) -> bool {
        self.round_f32(x).to_bits() == x.to_bits() || x.is_nan()
    }

    /// Table entries as little-endian bytes of this table type (each one it
    /// holds exactly).
    pub fn f32_bytes(self, table: &[f32]) -> Result<Vec<u8>> {
        let mut out = crate::sys::with_capacity(table.len() * self.size(), "a side table")?;
        for &x in table {
            match self {
                Self::F16 => out.extend_from_slice(&f16::from_f32(x).to_le_bytes()),
                Self::BF16 => out.extend_from_slice(&bf16::from_f32(x).to_le_bytes()),
                _ => out.extend_from_slice(&x.to_le_bytes()),
            }
        }
        Ok(out)
    }

    /// Little-endian bytes of this table type as float32 (exactly).
    pub fn bytes_f32(self, bytes: &[u8]) -> Result<Vec<f32>> {
        let mut out = crate::sys::with_capacity(bytes.len() / self.size(), "a side table")?;
        match self {
            Self::F16 => out.extend(
                bytes
                    .chunks_exact(2)
                    .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()),
            ),
            Self::BF16 => out.extend(
                bytes
                    .chunks_exact(2)
                    .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32()),
            ),
            _ => out.extend(
                bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            ),
        }
        Ok(out)
    }

    pub fn to_safetensors(self) -> St {
        match self {
            Self::Bool => St::BOOL,
            Self::U8 => St::U8,
            Self::I8 => St::I8,
            Self::U16 => St::U16,
            Self::I16 => St::I16,
            Self::F16 => St::F16,
            Self::BF16 => St::BF16,
            Self::U32 => St::U32,
            Self::I32 => St::I32,
            Self::F32 => St::F32,
            Self::U64 => St::U64,
            Self::I64 => St::I64,
            Self::F64 => St::F64,
            Self::F8E4M3 => St::F8_E4M3,
            Self::F8E5M2 => St::F8_E5M2,
        }
    }

    /// `None` for the safetensors types vitrust does not carry (F8_E8M0,
    /// the FNUZ float8 variants, complex, ...).
    pub fn from_safetensors(d: St) -> Option<Self> {
        ALL.into_iter().find(|x| x.to_safetensors() == d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for d in ALL {
            assert_eq!(DType::from_name(d.name()), Some(d));
            assert_eq!(DType::from_safetensors(d.to_safetensors()), Some(d));
            assert_eq!(d.to_safetensors().bitsize(), 8 * d.size());
        }
        assert_eq!(DType::from_name("C64"), None);
    }
}
