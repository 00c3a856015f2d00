//! The processing element shell shared by every element type: the weight
//! register (also the preload shift chain), the activation register that
//! moves activations one column right per cycle, and the element type's
//! partial-sum datapath ([`crate::pe_int8`], [`crate::pe_bf16`]) pipelined
//! to the hardware description's stage count. With double-buffered weights
//! the weights flow down a pipeline register per element, each element
//! latches its own into a shadow register when a tag travelling at half
//! speed meets it, and a switch bit travelling with the activations copies
//! the shadow into the active weight register.

use tessera_isa::{Arch, DType};

use crate::pipeline::Datapath;
use crate::verilog::{Item, Module, Port, Signedness};
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

/// How the weights of a weight-stationary processing element are held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Buffering {
    /// One weight register, which is also the preload shift chain: a preload
    /// may only start once the previous compute has drained.
    Single,
    /// A shadow register and an active one. Weights flow down each column
    /// through a pipeline register per element (`w_in` to `w_out`), top row
    /// first, with a tag (`w_tag_in` to `w_tag_out`) that crosses an element
    /// in two cycles, so it meets the weight of row r at row r and the
    /// element latches that weight into its shadow; nothing else writes the
    /// shadow. A switch bit (`prop`) travels right with the first activation
    /// row of every compute; the element multiplies that row by its shadow
    /// weight and copies the shadow into the active register on the same
    /// edge.
    Double,
}

impl Buffering {
    /// The buffering `arch` asks for (`array.double_buffered_weights`).
    pub fn of(arch: &Arch) -> Buffering {
        if arch.spec().array.double_buffered_weights {
            Buffering::Double
        } else {
            Buffering::Single
        }
    }

    /// The processing element's port that passes weights to the element
    /// below: the shift-chain register, or the weight pipeline register.
    pub const fn chain_port(self) -> &'static str {
        match self {
            Buffering::Single => "w",
            Buffering::Double => "w_out",
        }
    }
}

/// The processing element of `ty` with `stages` registers on its
/// partial-sum path (`p_in` to `p_out`) and `buffering` weights.
///
/// # Errors
/// `stages` is 0.
pub fn pe(ty: PeType, stages: u32, buffering: Buffering) -> Result<Module, RtlError> {
    let (w, s) = (ty.input_bits().to_string(), ty.sum_bits().to_string());
    let u = Signedness::Unsigned;
    let mut items = Vec::new();
    let mut body = vec![
        "if (w_shift) w <= w_in;".to_string(),
        "a_out <= a_in;".to_string(),
    ];
    let mut ports = vec![
        Port::input("clk"),
        Port::input("w_shift"),
        Port::input_bus("w_in", &w, u),
        Port::output_reg("w", &w, u),
        Port::input_bus("a_in", &w, u),
        Port::output_reg("a_out", &w, u),
        Port::input_bus("p_in", &s, u),
        Port::output_reg("p_out", &s, u),
    ];
    let mut doc = vec![
        format!(
            "Weight-stationary {} processing element, {stages} pipeline stage(s): the weight",
            ty.name()
        ),
        "register is also the preload shift chain; activations move right one column".into(),
        format!("per cycle and a partial sum leaves p_out {stages} cycle(s) after it enters p_in."),
    ];
    if buffering == Buffering::Double {
        // The datapath multiplies by `w`: here the weight in use this cycle.
        ports[1] = Port::input("w_tag_in");
        ports[3] = Port::output_reg("w_out", &w, u);
        ports.insert(2, Port::output_reg("w_tag_out", "1", u));
        ports.insert(7, Port::input("prop_in"));
        ports.insert(8, Port::output_reg("prop_out", "1", u));
        for (name, width) in [
            ("w_sh", Some(w.clone())),
            ("w_act", Some(w.clone())),
            ("w_tag_mid", None),
        ] {
            items.push(Item::Reg {
                name: name.into(),
                width,
                sign: u,
            });
        }
        items.push(Item::net("w", ty.input_bits(), "prop_in ? w_sh : w_act"));
        body = vec![
            "w_out <= w_in;".into(),
            "w_tag_mid <= w_tag_in;".into(),
            "w_tag_out <= w_tag_mid;".into(),
            "if (w_tag_in) w_sh <= w_in;".into(),
            "if (prop_in) w_act <= w_sh;".into(),
            "a_out <= a_in;".into(),
            "prop_out <= prop_in;".into(),
        ];
        doc[1] =
            "weights flow down through w_out and the element latches the one its tag meets into"
                .into();
        doc.insert(
            2,
            "the shadow w_sh (the tag takes two cycles per element); prop_in marks the first row of a"
                .into(),
        );
        doc.insert(
            3,
            "compute, which uses w_sh and copies it to the active w_act; activations move right one column"
                .into(),
        );
    }
    items.extend(ty.datapath().items(stages)?);
    items.push(Item::Clocked {
        clock: "clk".into(),
        body,
    });
    Ok(Module {
        name: ty.pe_module(),
        doc,
        params: vec![],
        ports,
        items,
    })
}
