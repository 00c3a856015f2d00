//! Lowers `matmul_epilogue` (see [`crate::ir::epilogue`]): one GEMM kernel
//! per batch element whose output path adds the bias, stores the
//! pre-activation (when the backward reads it), applies the GELU, adds the
//! residual and casts, tile by tile, so no intermediate reaches HBM.

use tessera_isa::DType;

use super::vector_ops::Placement;
use super::Kernel;
use crate::error::LowerError;
use crate::gemm::{Activation, CInit, GemmEpilogue, GemmSpec, HbmMatrix, HbmVector, Layout};
use crate::ir::{Epilogue, EpiloguePart, Graph, Op, Unary, ValueId};

/// The kernels of node `id`, a `matmul_epilogue`, writing its value to
/// `out` and (part `out` only) the pre-activation to `pre` when given.
///
/// # Errors
/// [`LowerError::Unsupported`] for fp32 operands (the array takes bf16 or
/// fp16; the unfused product splits fp32 into three products).
pub fn epilogue_kernels(
    g: &Graph,
    id: usize,
    out: u64,
    pre: Option<u64>,
    cx: &dyn Placement,
) -> Result<Vec<Kernel>, LowerError> {
    let node = &g.nodes[id];
    let Op::MatMulEpilogue(e) = node.op else {
        return Ok(Vec::new());
    };
    let x = &node.inputs;
    let (a, b) = (g.ty(x[0]), g.ty(x[1]));
    if a.dtype == DType::Fp32 || b.dtype == DType::Fp32 {
        return Err(LowerError::Unsupported {
            node: id,
            op: node.op.name().into(),
            rule: "fused epilogues take bf16 or fp16 operands, not fp32".into(),
        });
    }
    let (ar, br) = (a.shape.len(), b.shape.len());
    let (m, k) = if e.ta {
        (a.shape[ar - 1], a.shape[ar - 2])
    } else {
        (a.shape[ar - 2], a.shape[ar - 1])
    };
    let n = if e.tb {
        b.shape[br - 2]
    } else {
        b.shape[br - 1]
    };
    let batches: u64 = a.shape[..ar - 2].iter().product();
    let shared = br == 2;
    let layout = |t: bool| {
        if t {
            Layout::Transposed
        } else {
            Layout::RowMajor
        }
    };
    let mat = |addr: u64, dtype: DType| HbmMatrix {
        addr,
        row_stride: 0,
        dtype,
        layout: Layout::RowMajor,
    };
    // Part `pre` alone is the product plus bias, stored in fp32.
    let (kind, out_t) = match e.part {
        EpiloguePart::Out => (e, e.out),
        EpiloguePart::Pre => (
            Epilogue {
                act: None,
                residual: false,
                ..e
            },
            DType::Fp32,
        ),
    };
    let bias = kind.bias.then(|| x[2]);
    let residual = kind.residual.then(|| x[2 + usize::from(kind.bias)]);
    let mn = m * n;
    let mut ks = Vec::new();
    for bi in 0..batches {
        let spec = GemmSpec {
            name: "matmul_epilogue".into(),
            m,
            n,
            k,
            a: HbmMatrix {
                addr: cx.addr(x[0]) + bi * m * k * a.dtype.size_bytes(),
                row_stride: 0,
                dtype: a.dtype,
                layout: layout(e.ta),
            },
            b: HbmMatrix {
                addr: cx.addr(x[1])
                    + if shared {
                        0
                    } else {
                        bi * k * n * b.dtype.size_bytes()
                    },
                row_stride: 0,
                dtype: b.dtype,
                layout: layout(e.tb),
            },
            c: mat(out + bi * mn * out_t.size_bytes(), out_t),
            c_init: CInit::Zero,
        };
        let epi = GemmEpilogue {
            bias: bias.map(|v| HbmVector {
                addr: cx.addr(v),
                dtype: g.ty(v).dtype,
            }),
            act: kind.act.map(|u| match u {
                Unary::GeluErf => Activation::GeluErf,
                _ => Activation::GeluTanh,
            }),
            residual: residual.map(|v: ValueId| {
                let t = g.ty(v).dtype;
                mat(cx.addr(v) + bi * mn * t.size_bytes(), t)
            }),
            pre: pre.map(|p| mat(p + bi * mn * 4, DType::Fp32)),
        };
        ks.push(Kernel::GemmEpilogue(spec, epi));
    }
    Ok(ks)
}
