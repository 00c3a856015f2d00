//! The processing element shell shared by every element type: the weight
//! register (also the preload shift chain), the activation register that
//! moves activations one column right per cycle, and the element type's
//! partial-sum datapath ([`crate::pe_int8`], [`crate::pe_bf16`]) pipelined
//! to the hardware description's stage count.

use tessera_isa::DType;

use crate::pipeline::Datapath;
use crate::verilog::{Module, Port, Signedness};
use crate::{pe_bf16, pe_int8, RtlError};

/// An element type the generator builds a processing element for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeType {
    /// int8 x int8 -> int32, wrapping.
    Int8,
    /// bf16 x bf16 -> fp32, a fused multiply-add per step.
    Bf16,
}

impl PeType {
    /// Every generated type, in generation order.
    pub const ALL: [PeType; 2] = [PeType::Int8, PeType::Bf16];

    /// The ISA element type of the inputs.
    pub const fn dtype(self) -> DType {
        match self {
            PeType::Int8 => DType::Int8,
            PeType::Bf16 => DType::Bf16,
        }
    }

    /// Short name used in module and file names.
    pub const fn name(self) -> &'static str {
        match self {
            PeType::Int8 => "int8",
            PeType::Bf16 => "bf16",
        }
    }

    /// Bits of one input element (activation or weight).
    pub const fn input_bits(self) -> u32 {
        match self {
            PeType::Int8 => 8,
            PeType::Bf16 => 16,
        }
    }

    /// Bits of one partial sum (int32 or fp32).
    pub const fn sum_bits(self) -> u32 {
        32
    }

    /// The weight that makes a processing element pass its partial sum
    /// through unchanged, preloaded into the rows a fold leaves unused
    /// (k < R): 0 for int8, and -0 for bf16, since the product with a zero
    /// activation is then -0 and s + -0 = s for every s, -0 included (a +0
    /// product would turn a -0 partial sum into +0).
    pub const fn identity_weight(self) -> u16 {
        match self {
            PeType::Int8 => 0,
            PeType::Bf16 => 0x8000,
        }
    }

    /// The processing element's module name.
    pub fn pe_module(self) -> String {
        format!("tessera_pe_{}", self.name())
    }

    /// The array's module name.
    pub fn array_module(self) -> String {
        format!("tessera_array_{}", self.name())
    }

    /// The element type's partial-sum datapath.
    pub(crate) fn datapath(self) -> Datapath {
        match self {
            PeType::Int8 => pe_int8::datapath(),
            PeType::Bf16 => pe_bf16::datapath(),
        }
    }
}

/// The processing element of `ty` with `stages` registers on its
/// partial-sum path (`p_in` to `p_out`).
///
/// # Errors
/// `stages` is 0.
pub fn pe(ty: PeType, stages: u32) -> Result<Module, RtlError> {
    let (w, s) = (ty.input_bits().to_string(), ty.sum_bits().to_string());
    let u = Signedness::Unsigned;
    let mut items = ty.datapath().items(stages)?;
    items.push(crate::verilog::Item::Clocked {
        clock: "clk".into(),
        body: vec!["if (w_shift) w <= w_in;".into(), "a_out <= a_in;".into()],
    });
    Ok(Module {
        name: ty.pe_module(),
        doc: vec![
            format!(
                "Weight-stationary {} processing element, {stages} pipeline stage(s): the weight",
                ty.name()
            ),
            "register is also the preload shift chain; activations move right one column".into(),
            format!(
                "per cycle and a partial sum leaves p_out {stages} cycle(s) after it enters p_in."
            ),
        ],
        params: vec![],
        ports: vec![
            Port::input("clk"),
            Port::input("w_shift"),
            Port::input_bus("w_in", &w, u),
            Port::output_reg("w", &w, u),
            Port::input_bus("a_in", &w, u),
            Port::output_reg("a_out", &w, u),
            Port::input_bus("p_in", &s, u),
            Port::output_reg("p_out", &s, u),
        ],
        items,
    })
}
