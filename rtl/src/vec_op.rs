//! The vector operations the vector lane ([`crate::vec_lane`]) is built
//! for, named by the ISA's own enumerations and encodings: the instruction
//! opcode comes from [`tessera_isa::INSTRUCTIONS`], the operation code from
//! the `op` field's [`Field::to_bits`], so nothing is re-typed.
//!
//! Built in the lane: `v.bin` add, sub, mul, max, min and the comparisons;
//! `v.un` copy (the cast), neg, abs, square, relu, sign, nonfinite;
//! `v.axpby`; `v.sel`; every `v.reduce` ([`crate::vec_reduce`]). Built in
//! the special-function lane ([`crate::vec_special`]): `v.bin div`, `v.un`
//! sqrt, rsqrt and recip, and the `libm` operations of
//! [`crate::libm_graphs::LIBM_OPS`] (`v.un` exp, log, tanh, sigmoid,
//! silu, dsilu, gelu.tanh, dgelu.tanh, gelu.erf, dgelu.erf), transcribed
//! from the `libm` crate's single-precision routines. Refused, naming the
//! operation: `v.bin pow`, which the ISA defines as `libm::powf`.

use tessera_isa::field::{Field, VecBinOp, VecUnOp};
use tessera_isa::inst::desc_of;

use crate::RtlError;

/// An elementwise vector operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VecOp {
    /// `v.bin OP`.
    Bin(VecBinOp),
    /// `v.un OP`.
    Un(VecUnOp),
    /// `v.axpby`: `alpha * a + beta * b`, two rounded products, one rounded sum.
    Axpby,
    /// `v.sel`: `mask != 0 ? a : b`.
    Sel,
}

/// Width of the lane's `op` port: the wider of the `v.bin` and `v.un` fields.
pub const OP_BITS: u32 = if VecBinOp::BITS > VecUnOp::BITS {
    VecBinOp::BITS
} else {
    VecUnOp::BITS
};

impl VecOp {
    /// Every elementwise vector operation of the ISA, built or not.
    pub fn all() -> Vec<VecOp> {
        let mut ops: Vec<VecOp> = VecBinOp::ALL.iter().map(|&o| VecOp::Bin(o)).collect();
        ops.extend(VecUnOp::ALL.iter().map(|&o| VecOp::Un(o)));
        ops.extend([VecOp::Axpby, VecOp::Sel]);
        ops
    }

    /// The instruction's mnemonic.
    pub fn mnemonic(self) -> &'static str {
        match self {
            VecOp::Bin(_) => "v.bin",
            VecOp::Un(_) => "v.un",
            VecOp::Axpby => "v.axpby",
            VecOp::Sel => "v.sel",
        }
    }

    /// The instruction's opcode, from the ISA table.
    pub fn opcode(self) -> u8 {
        desc_of(self.mnemonic()).map_or(0xff, |d| d.opcode)
    }

    /// The `op` field's code (0 for instructions without one).
    pub fn code(self) -> u32 {
        match self {
            VecOp::Bin(o) => o.to_bits() as u32,
            VecOp::Un(o) => o.to_bits() as u32,
            VecOp::Axpby | VecOp::Sel => 0,
        }
    }

    /// The operation as assembly names it (`v.bin max`, `v.axpby`).
    pub fn name(self) -> String {
        match self {
            VecOp::Bin(o) => format!("v.bin {}", o.name()),
            VecOp::Un(o) => format!("v.un {}", o.name()),
            VecOp::Axpby | VecOp::Sel => self.mnemonic().into(),
        }
    }

    /// Whether the special-function lane computes it: division, `pow` and
    /// every unary operation but the sign and class ones, exactly the set
    /// the timing model (`sim/src/timing.rs`, `is_special`) sends through
    /// `vector.special_lanes`.
    pub fn is_special(self) -> bool {
        use VecUnOp as U;
        match self {
            VecOp::Bin(o) => matches!(o, VecBinOp::Div | VecBinOp::Pow),
            VecOp::Un(o) => !matches!(
                o,
                U::Copy | U::Neg | U::Abs | U::Square | U::Relu | U::NonFinite | U::Sign
            ),
            VecOp::Axpby | VecOp::Sel => false,
        }
    }

    /// Whether the lane or the special-function lane computes this operation.
    ///
    /// # Errors
    ///
    /// [`RtlError::Unsupported`] naming the operation and why it is not built.
    pub fn lane_support(self) -> Result<(), RtlError> {
        if crate::libm_graphs::LIBM_OPS.contains(&self) {
            return Ok(());
        }
        let why = match self {
            VecOp::Bin(VecBinOp::Pow) => {
                "the ISA defines it as libm single-precision routines, which are not built in RTL"
            }
            _ => return Ok(()),
        };
        Err(RtlError::Unsupported(format!("{}: {why}", self.name())))
    }

    /// The operations the special-function lane builds, as a report line
    /// names them: `v.bin div, v.un sqrt/rsqrt/...`.
    pub fn special_summary() -> String {
        let built: Vec<VecOp> = VecOp::all()
            .into_iter()
            .filter(|o| o.is_special() && o.lane_support().is_ok())
            .collect();
        let names = |bin: bool| -> Vec<String> {
            built
                .iter()
                .filter_map(|o| match (o, bin) {
                    (VecOp::Bin(b), true) => Some(b.name().to_string()),
                    (VecOp::Un(u), false) => Some(u.name().to_string()),
                    _ => None,
                })
                .collect()
        };
        format!(
            "v.bin {}, v.un {}",
            names(true).join("/"),
            names(false).join("/")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_special_summary_lists_what_the_lane_builds() {
        assert_eq!(
            VecOp::special_summary(),
            "v.bin div, v.un exp/log/sqrt/rsqrt/recip/tanh/sigmoid/gelu.tanh/gelu.erf/silu/dgelu.tanh/dgelu.erf/dsilu"
        );
    }

    #[test]
    fn encodings_come_from_the_isa_and_refusals_name_the_op() {
        assert_eq!(VecOp::Bin(VecBinOp::Max).opcode(), 0x32);
        assert_eq!(VecOp::Un(VecUnOp::Sign).code(), 19);
        assert_eq!(OP_BITS, 5);
        let built = VecOp::all()
            .into_iter()
            .filter(|o| o.lane_support().is_ok())
            .count();
        assert_eq!(built, 32);
        assert!(VecOp::Un(VecUnOp::Rsqrt).is_special());
        assert_eq!(
            VecOp::Bin(VecBinOp::Pow).lane_support().unwrap_err().to_string(),
            "v.bin pow: the ISA defines it as libm single-precision routines, which are not built in RTL"
        );
    }
}
