//! The GEMM kernel generator: one complete, checked program computing
//! C (m x n) = A (m x k) * B (k x n), or C = C_old + A * B, for operands at
//! absolute HBM addresses.
//!
//! [`plan`] picks the tiling from the [`Arch`] (accumulator blocks, reduction
//! chunks, buffer rings) with a small cost model; [`emit`] turns the plan
//! into the four instruction streams joined by tokens `t0`..`t9`. The kernel
//! declares no symbols and brackets the matrix queue's work in one profiling
//! region, so a linker can concatenate kernels. See `docs/gemm.md`.

mod emit;
mod plan;

use tessera_isa::{Arch, DType, Program};

pub use plan::{plan, GemmPlan};

/// How an operand is stored in HBM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Rows of the logical matrix are contiguous (an r x c matrix is r rows of c elements).
    RowMajor,
    /// The logical r x c matrix is stored as its c x r transpose.
    Transposed,
}

/// A matrix operand in HBM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HbmMatrix {
    /// Byte address of element (0, 0) of the stored matrix.
    pub addr: u64,
    /// Bytes between consecutive stored rows; 0 means packed (a stored row's length).
    pub row_stride: u64,
    /// Element type as stored.
    pub dtype: DType,
    pub layout: Layout,
}

/// What C starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CInit {
    /// C = A * B.
    Zero,
    /// C = C_old + A * B, C_old read from C's place in HBM (e.g. gradient accumulation).
    AddToExisting,
}

/// One GEMM to lower.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GemmSpec {
    /// Profiling region wrapping the kernel's matrix work; an identifier.
    pub name: String,
    pub m: u64,
    pub n: u64,
    /// The reduction dimension.
    pub k: u64,
    /// m x k.
    pub a: HbmMatrix,
    /// k x n.
    pub b: HbmMatrix,
    /// m x n; must not overlap A or B.
    pub c: HbmMatrix,
    pub c_init: CInit,
}

/// The activation of a [`GemmEpilogue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// GELU, tanh approximation (`v.un gelu.tanh`).
    GeluTanh,
    /// GELU, erf form (`v.un gelu.erf`).
    GeluErf,
}

/// A vector in HBM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HbmVector {
    /// Byte address of element 0 (elements are contiguous).
    pub addr: u64,
    /// Element type.
    pub dtype: DType,
}

/// What the output path does to each finished block of C, in fp32 on the
/// vector unit, before C (in its own type: the cast comes last) is stored:
/// `C = residual + act(A B + bias)`. The bias slice and the residual block
/// of a block are loaded into the scratchpad once per block; the
/// pre-activation `A B + bias` is stored (fp32) from the accumulator when
/// `pre` is given. Requires [`CInit::Zero`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GemmEpilogue {
    /// `n` elements added to every row of C.
    pub bias: Option<HbmVector>,
    pub act: Option<Activation>,
    /// m x n, added after the activation.
    pub residual: Option<HbmMatrix>,
    /// m x n fp32: where the pre-activation goes.
    pub pre: Option<HbmMatrix>,
}

/// Why a GEMM cannot be lowered for a hardware description.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GemmError {
    #[error("gemm `{name}`: dimension {dim} must be at least 1")]
    ZeroDimension { name: String, dim: char },
    #[error("gemm `{name}`: region name must be an identifier ([A-Za-z_][A-Za-z0-9_.]*)")]
    BadName { name: String },
    #[error("gemm `{name}`: operand {operand} is {dtype}, which the array of `{arch}` does not take (input types: {allowed})")]
    UnsupportedInput {
        name: String,
        operand: char,
        dtype: DType,
        arch: String,
        allowed: String,
    },
    #[error("gemm `{name}`: A is {a} and B is {b}; the array multiplies two floating or two integer inputs")]
    MixedKinds { name: String, a: DType, b: DType },
    #[error("gemm `{name}`: operand {operand} row stride {stride} is shorter than a stored row ({row} bytes)")]
    RowStride {
        name: String,
        operand: char,
        stride: u64,
        row: u64,
    },
    #[error("gemm `{name}`: operand {operand} spans bytes {start}..{end}, beyond the {capacity}-byte HBM")]
    OutOfHbm {
        name: String,
        operand: char,
        start: u64,
        end: u128,
        capacity: u64,
    },
    #[error("gemm `{name}`: C overlaps operand {operand} in HBM")]
    Overlap { name: String, operand: char },
    #[error("gemm `{name}`: no tiling fits `{arch}`: {why}")]
    DoesNotFit {
        name: String,
        arch: String,
        why: String,
    },
    #[error("gemm `{name}`: {rule}")]
    BadEpilogue { name: String, rule: String },
    #[error("gemm `{name}`: generated program is invalid (a compiler bug): {detail}")]
    Internal { name: String, detail: String },
}

/// The type the array accumulates `t` in.
pub fn accumulator_type(t: DType) -> DType {
    if t == DType::Int8 {
        DType::Int32
    } else {
        DType::Fp32
    }
}

/// Lowers `spec` to a complete program for `arch`: every used queue ends in
/// `halt`, only tokens `t0`..`t9` are used and balanced, no symbols are
/// declared, and the matrix queue's work sits in region `spec.name`.
///
/// # Errors
/// A [`GemmError`] naming the operand and the rule broken when the GEMM is
/// malformed or cannot be tiled onto `arch`; never panics.
///
/// ```
/// use tessera_compiler::gemm::{gemm_kernel, CInit, GemmSpec, HbmMatrix, Layout};
/// use tessera_isa::{Arch, DType};
/// let arch = Arch::preset("fpga-8x8")?;
/// let mat = |addr| HbmMatrix { addr, row_stride: 0, dtype: DType::Bf16, layout: Layout::RowMajor };
/// let spec = GemmSpec { name: "g".into(), m: 20, n: 10, k: 12,
///     a: mat(0), b: mat(0x1000), c: mat(0x2000), c_init: CInit::Zero };
/// let p = gemm_kernel(&arch, &spec)?;
/// assert!(tessera_isa::check::check(&p).is_clean());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn gemm_kernel(arch: &Arch, spec: &GemmSpec) -> Result<Program, GemmError> {
    gemm_epilogue_kernel(arch, spec, &GemmEpilogue::default())
}

/// [`gemm_kernel`] with an epilogue applied to each block of C on its way
/// out (see [`GemmEpilogue`]); the intermediate values never reach HBM.
/// An empty epilogue gives exactly [`gemm_kernel`]'s program.
///
/// # Errors
/// As [`gemm_kernel`], and [`GemmError::BadEpilogue`] for an epilogue
/// with C_old, a non-fp32 `pre`, or operands outside HBM.
pub fn gemm_epilogue_kernel(
    arch: &Arch,
    spec: &GemmSpec,
    epi: &GemmEpilogue,
) -> Result<Program, GemmError> {
    let plan = plan::plan_with(arch, spec, epi)?;
    let internal = |detail: String| GemmError::Internal {
        name: spec.name.clone(),
        detail,
    };
    let program = emit::emit(arch, spec, &plan, epi).map_err(internal)?;
    if let Err(errors) = program.validate() {
        return Err(GemmError::Internal {
            name: spec.name.clone(),
            detail: errors[0].to_string(),
        });
    }
    Ok(program)
}

/// [`gemm_kernel`] through a template cache: the spec is checked and
/// planned with its real addresses, then kernels of equal shape and plan
/// are generated once with placeholder addresses and relocated
/// (see [`crate::lower::reloc`]).
///
/// # Errors
/// As [`gemm_kernel`].
pub fn gemm_kernel_cached(
    arch: &Arch,
    spec: &GemmSpec,
    cache: &mut crate::lower::reloc::TemplateCache,
) -> Result<Program, crate::error::LowerError> {
    gemm_epilogue_kernel_cached(arch, spec, &GemmEpilogue::default(), cache)
}

/// [`gemm_epilogue_kernel`] through a template cache, as [`gemm_kernel_cached`].
///
/// # Errors
/// As [`gemm_epilogue_kernel`].
pub fn gemm_epilogue_kernel_cached(
    arch: &Arch,
    spec: &GemmSpec,
    epi: &GemmEpilogue,
    cache: &mut crate::lower::reloc::TemplateCache,
) -> Result<Program, crate::error::LowerError> {
    use crate::lower::reloc::placeholder;
    let lower_err = |e: GemmError| crate::error::LowerError::Kernel {
        kernel: spec.name.clone(),
        rule: e.to_string(),
    };
    let plan = plan::plan_with(arch, spec, epi).map_err(lower_err)?;
    let mut shape = spec.clone();
    (shape.a.addr, shape.b.addr, shape.c.addr) = (placeholder(0), placeholder(1), placeholder(2));
    let mut slots = vec![spec.a.addr, spec.b.addr, spec.c.addr];
    let mut epi_shape = *epi;
    let mut slot = |addr: &mut u64| {
        slots.push(*addr);
        *addr = placeholder(slots.len() - 1);
    };
    if let Some(b) = &mut epi_shape.bias {
        slot(&mut b.addr);
    }
    if let Some(r) = &mut epi_shape.residual {
        slot(&mut r.addr);
    }
    if let Some(p) = &mut epi_shape.pre {
        slot(&mut p.addr);
    }
    let key = if *epi == GemmEpilogue::default() {
        format!("gemm {shape:?} {plan:?}")
    } else {
        format!("gemm {shape:?} {plan:?} {epi_shape:?}")
    };
    cache.get(key, &slots, || {
        let internal = |detail: String| crate::error::LowerError::Kernel {
            kernel: spec.name.clone(),
            rule: format!("internal error: {detail}"),
        };
        let program = emit::emit(arch, &shape, &plan, &epi_shape).map_err(internal)?;
        program
            .validate()
            .map_err(|errors| internal(errors[0].to_string()))?;
        Ok(program)
    })
}
