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
    let plan = plan(arch, spec)?;
    let internal = |detail: String| GemmError::Internal {
        name: spec.name.clone(),
        detail,
    };
    let program = emit::emit(arch, spec, &plan).map_err(internal)?;
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
    use crate::lower::reloc::placeholder;
    let lower_err = |e: GemmError| crate::error::LowerError::Kernel {
        kernel: spec.name.clone(),
        rule: e.to_string(),
    };
    let plan = plan(arch, spec).map_err(lower_err)?;
    let mut shape = spec.clone();
    (shape.a.addr, shape.b.addr, shape.c.addr) = (placeholder(0), placeholder(1), placeholder(2));
    let key = format!("gemm {shape:?} {plan:?}");
    cache.get(key, &[spec.a.addr, spec.b.addr, spec.c.addr], || {
        let internal = |detail: String| crate::error::LowerError::Kernel {
            kernel: spec.name.clone(),
            rule: format!("internal error: {detail}"),
        };
        let program = emit::emit(arch, &shape, &plan).map_err(internal)?;
        program
            .validate()
            .map_err(|errors| internal(errors[0].to_string()))?;
        Ok(program)
    })
}
