//! Element types of the machine: what a byte in the scratchpad, the accumulator
//! or HBM means when an instruction reads it.
//!
//! The encoding (3 bits) is part of the instruction set; `docs/isa.md` lists it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One element type. Floating-point formats follow IEEE 754 (fp32, fp16), the
/// bfloat16 convention (bf16) and the OCP 8-bit float formats (e4m3 "fn" variant
/// without infinities, e5m2 with infinities).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum DType {
    #[serde(rename = "fp32")]
    Fp32,
    #[serde(rename = "bf16")]
    Bf16,
    #[serde(rename = "fp16")]
    Fp16,
    #[serde(rename = "fp8-e4m3")]
    Fp8E4M3,
    #[serde(rename = "fp8-e5m2")]
    Fp8E5M2,
    #[serde(rename = "int8")]
    Int8,
    #[serde(rename = "int32")]
    Int32,
}

impl DType {
    /// Every element type, in encoding order.
    pub const ALL: [DType; 7] = [
        DType::Fp32,
        DType::Bf16,
        DType::Fp16,
        DType::Fp8E4M3,
        DType::Fp8E5M2,
        DType::Int8,
        DType::Int32,
    ];

    /// Size of one element in bytes.
    pub const fn size_bytes(self) -> u64 {
        match self {
            DType::Fp32 | DType::Int32 => 4,
            DType::Bf16 | DType::Fp16 => 2,
            DType::Fp8E4M3 | DType::Fp8E5M2 | DType::Int8 => 1,
        }
    }

    /// The 3-bit code used in instruction words.
    pub const fn code(self) -> u8 {
        match self {
            DType::Fp32 => 0,
            DType::Bf16 => 1,
            DType::Fp16 => 2,
            DType::Fp8E4M3 => 3,
            DType::Fp8E5M2 => 4,
            DType::Int8 => 5,
            DType::Int32 => 6,
        }
    }

    /// Inverse of [`DType::code`].
    pub fn from_code(code: u8) -> Option<DType> {
        DType::ALL.into_iter().find(|d| d.code() == code)
    }

    /// The name used in assembly and in hardware descriptions.
    pub const fn name(self) -> &'static str {
        match self {
            DType::Fp32 => "fp32",
            DType::Bf16 => "bf16",
            DType::Fp16 => "fp16",
            DType::Fp8E4M3 => "fp8-e4m3",
            DType::Fp8E5M2 => "fp8-e5m2",
            DType::Int8 => "int8",
            DType::Int32 => "int32",
        }
    }

    /// True for the integer types.
    pub const fn is_integer(self) -> bool {
        matches!(self, DType::Int8 | DType::Int32)
    }

    /// The accumulation type the systolic array uses for this input type:
    /// int32 for int8, fp32 for every floating-point input.
    pub const fn accumulator_type(self) -> DType {
        if self.is_integer() {
            DType::Int32
        } else {
            DType::Fp32
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DType::ALL
            .into_iter()
            .find(|d| d.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = DType::ALL.iter().map(|d| d.name()).collect();
                format!(
                    "unknown element type `{s}` (expected one of {})",
                    names.join(", ")
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_dense() {
        for (i, d) in DType::ALL.into_iter().enumerate() {
            assert_eq!(d.code() as usize, i);
            assert_eq!(DType::from_code(d.code()), Some(d));
            assert_eq!(d.name().parse::<DType>(), Ok(d));
        }
        assert_eq!(DType::from_code(7), None);
    }
}
