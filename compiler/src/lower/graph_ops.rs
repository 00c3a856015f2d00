//! Lowers the IR ops that are not row-wise vector math: matrix products
//! (through the GEMM kernel, batched), data movement (heads, slices,
//! padding, kv repetition), embeddings and their gradients, rotary
//! embeddings, cross-entropy and its gradient.

use std::fmt::Write;

use tessera_isa::asm::assemble;
use tessera_isa::{Arch, DType, Program};

use super::copy::BoxCopy;
use super::rowwise::{Accumulator, Extent, Operand, RowKernel};
use super::vector_ops::Placement;
use super::Kernel;
use crate::error::LowerError;
use crate::gemm::{CInit, GemmSpec, HbmMatrix, Layout};
use crate::ir::{Graph, Op, ValueId};

/// What op lowering may ask of the lowering driver.
pub trait Context: Placement {
    /// HBM scratch of `bytes` bytes, live while this node's kernels run.
    fn scratch(&mut self, bytes: u64) -> u64;
    /// The persistent cosine and signed-sine tables of a rotary embedding
    /// (see [`rope_table_values`]), planned before lowering.
    fn rope_tables(&self, theta: f64, seq: u64, dim: u64, inverse: bool) -> Option<(u64, u64)>;
    /// The hardware.
    fn arch(&self) -> &Arch;
    /// The fused attention forward kernel for `spec` (generated once per shape).
    ///
    /// # Errors
    /// As [`super::attention::attention_forward`].
    fn attention_forward(
        &mut self,
        spec: &super::attention::AttentionSpec,
    ) -> Result<Program, LowerError>;
}

fn kernel_error(name: &str, rule: String) -> LowerError {
    LowerError::Kernel {
        kernel: name.to_string(),
        rule,
    }
}

/// A `[rows, cols]` fp32 tile of zeros written to `addr` by the vector unit
/// (any value times 0 is 0 or NaN; NaN lanes are then replaced by 0).
pub fn zero_fill(name: &str, addr: u64, elements: u64) -> Vec<Kernel> {
    let cols = (1..=4096u64).rev().find(|c| elements % c == 0).unwrap_or(1);
    vec![Kernel::Row(RowKernel {
        name: name.to_string(),
        rows: elements / cols,
        cols,
        inputs: Vec::new(),
        outputs: vec![Operand {
            addr,
            dtype: DType::Fp32,
            extent: Extent::Full,
        }],
        temps: vec![Extent::Full],
        accumulators: Vec::new(),
        scalars: vec![(0, 0.0)],
        body: [
            "shape full",
            "v.bin op=mul, dst=$o0, a=$o0, b=f0",
            "v.bin op=cmp.eq, dst=$t0, a=$o0, b=$o0",
            "v.sel dst=$o0, mask=$t0, a=$o0, b=f0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        period: None,
    })]
}

/// The kernels of node `id`, or `None` if it is not handled here.
///
/// # Errors
/// [`LowerError`] if a shape cannot be lowered on this hardware.
pub fn lower_node(
    g: &Graph,
    id: usize,
    cx: &mut dyn Context,
) -> Result<Option<Vec<Kernel>>, LowerError> {
    let node = &g.nodes[id];
    let Some(out_ty) = node.ty.clone() else {
        return Ok(None);
    };
    let x = &node.inputs;
    let out = cx.addr(ValueId(id));
    let name = node.op.name();
    let e = |v: ValueId| g.ty(v).dtype.size_bytes();
    Ok(Some(match &node.op {
        Op::MatMul { ta, tb, out: odt } => {
            let (a, b) = (g.ty(x[0]).clone(), g.ty(x[1]).clone());
            let (ar, br) = (a.shape.len(), b.shape.len());
            let (m, k) = if *ta {
                (a.shape[ar - 1], a.shape[ar - 2])
            } else {
                (a.shape[ar - 2], a.shape[ar - 1])
            };
            let n = if *tb {
                b.shape[br - 2]
            } else {
                b.shape[br - 1]
            };
            let batches: u64 = a.shape[..ar - 2].iter().product();
            let shared = br == 2;
            let ec = odt.size_bytes();
            let layout = |t: bool| {
                if t {
                    Layout::Transposed
                } else {
                    Layout::RowMajor
                }
            };
            // fp32 operands on a bf16 array: three bf16 products (hi*hi + hi*lo + lo*hi), TPU "bf16_3x".
            let split = a.dtype == DType::Fp32 || b.dtype == DType::Fp32;
            let mut ks = Vec::new();
            let (mut a_parts, mut b_parts) = (
                vec![(cx.addr(x[0]), a.dtype)],
                vec![(cx.addr(x[1]), b.dtype)],
            );
            if split {
                let (pa, pb) = (cx.addr(x[0]), cx.addr(x[1]));
                a_parts = split_bf16(cx, &mut ks, pa, a.dtype, a.elements())?;
                b_parts = split_bf16(cx, &mut ks, pb, b.dtype, b.elements())?;
            }
            // Small terms first, so the large one rounds last.
            let terms: Vec<(usize, usize)> = if split {
                vec![(1, 0), (0, 1), (0, 0)]
            } else {
                vec![(0, 0)]
            };
            for bi in 0..batches {
                for (t, &(ia, ib)) in terms.iter().enumerate() {
                    let (aa, adt) = a_parts[ia.min(a_parts.len() - 1)];
                    let (ba, bdt) = b_parts[ib.min(b_parts.len() - 1)];
                    let spec = GemmSpec {
                        name: "matmul".into(),
                        m,
                        n,
                        k,
                        a: HbmMatrix {
                            addr: aa + bi * m * k * adt.size_bytes(),
                            row_stride: 0,
                            dtype: adt,
                            layout: layout(*ta),
                        },
                        b: HbmMatrix {
                            addr: if shared {
                                ba
                            } else {
                                ba + bi * k * n * bdt.size_bytes()
                            },
                            row_stride: 0,
                            dtype: bdt,
                            layout: layout(*tb),
                        },
                        c: HbmMatrix {
                            addr: out + bi * m * n * ec,
                            row_stride: 0,
                            dtype: *odt,
                            layout: Layout::RowMajor,
                        },
                        c_init: if t == 0 {
                            CInit::Zero
                        } else {
                            CInit::AddToExisting
                        },
                    };
                    ks.push(Kernel::Gemm(spec));
                }
            }
            ks
        }
        Op::Reshape { .. } => Vec::new(), // aliases its operand (see the planner)
        Op::SplitHeads { heads } => {
            let s = &g.ty(x[0]).shape;
            let (b, sq, w, el) = (s[0], s[1], s[2], e(x[0]));
            let d = w / heads;
            vec![Kernel::Copy(BoxCopy {
                name: name.into(),
                src: cx.addr(x[0]),
                dst: out,
                outer: (b, sq * w * el, sq * w * el),
                planes: (*heads, d * el, sq * d * el),
                rows: (sq, w * el, d * el),
                row_bytes: d * el,
            })]
        }
        Op::MergeHeads => {
            let s = &g.ty(x[0]).shape;
            let (b, h, sq, d, el) = (s[0], s[1], s[2], s[3], e(x[0]));
            vec![Kernel::Copy(BoxCopy {
                name: name.into(),
                src: cx.addr(x[0]),
                dst: out,
                outer: (b, h * sq * d * el, h * sq * d * el),
                planes: (h, sq * d * el, d * el),
                rows: (sq, d * el, h * d * el),
                row_bytes: d * el,
            })]
        }
        Op::Slice { axis, start, len }
        | Op::Pad {
            axis,
            start,
            total: len,
        } => {
            let is_slice = matches!(node.op, Op::Slice { .. });
            let src_shape = &g.ty(x[0]).shape;
            let a = *axis as usize;
            let el = e(x[0]);
            let outer: u64 = src_shape[..a].iter().product();
            let inner: u64 = src_shape[a + 1..].iter().product();
            // `len` is the slice's length, or the padded axis's total.
            let (src_dim, dst_dim) = (src_shape[a], *len);
            let moved = if is_slice { *len } else { src_dim };
            let (src_off, dst_off) = if is_slice {
                (start * inner * el, 0)
            } else {
                (0, start * inner * el)
            };
            let mut ks = Vec::new();
            if !is_slice {
                ks.extend(zero_fill("pad", out, out_ty.elements()));
            }
            let (src_row, dst_row) = (src_dim * inner * el, dst_dim * inner * el);
            let bytes = moved * inner * el;
            let copy = if bytes <= 65_535 {
                BoxCopy {
                    name: name.into(),
                    src: cx.addr(x[0]) + src_off,
                    dst: out + dst_off,
                    outer: (1, 0, 0),
                    planes: (outer, src_row, dst_row),
                    rows: (1, bytes, bytes),
                    row_bytes: bytes,
                }
            } else if inner * el <= 65_535 {
                BoxCopy {
                    name: name.into(),
                    src: cx.addr(x[0]) + src_off,
                    dst: out + dst_off,
                    outer: (1, 0, 0),
                    planes: (outer, src_row, dst_row),
                    rows: (moved, inner * el, inner * el),
                    row_bytes: inner * el,
                }
            } else {
                return Err(kernel_error(
                    name,
                    format!("rows of {} bytes are too long to move", inner * el),
                ));
            };
            ks.push(Kernel::Copy(copy));
            ks
        }
        Op::RepeatKv { groups } => {
            let s = &g.ty(x[0]).shape;
            let (b, kv, plane) = (s[0], s[1], s[2] * s[3] * e(x[0]));
            let row = s[3] * e(x[0]);
            (0..*groups)
                .map(|r| {
                    Kernel::Copy(BoxCopy {
                        name: name.into(),
                        src: cx.addr(x[0]),
                        dst: out + r * plane,
                        outer: (b * kv, plane, groups * plane),
                        planes: (1, plane, plane),
                        rows: (s[2], row, row),
                        row_bytes: row,
                    })
                })
                .collect()
        }
        Op::SumKv { groups } => {
            let s = &g.ty(x[0]).shape;
            let (b, hb, sq, d) = (s[0], s[1], s[2], s[3]);
            let el = e(x[0]);
            let kv = hb / groups;
            let plane = sq * d;
            let mut ks = Vec::new();
            for bi in 0..b {
                for h in 0..kv {
                    let base = cx.addr(x[0]) + (bi * hb + h * groups) * plane * el;
                    let inputs: Vec<Operand> = (0..*groups)
                        .map(|r| Operand {
                            addr: base + r * plane * el,
                            dtype: g.ty(x[0]).dtype,
                            extent: Extent::Full,
                        })
                        .collect();
                    let mut body = vec!["shape full".to_string()];
                    if *groups == 1 {
                        body.push("v.un op=copy, dst=$o0, a=$i0".into());
                    } else {
                        body.push("v.bin op=add, dst=$t0, a=$i0, b=$i1".into());
                        for r in 2..*groups {
                            body.push(format!("v.bin op=add, dst=$t0, a=$t0, b=$i{r}"));
                        }
                        body.push("v.un op=copy, dst=$o0, a=$t0".into());
                    }
                    ks.push(Kernel::Row(RowKernel {
                        name: name.into(),
                        rows: sq,
                        cols: d,
                        inputs,
                        outputs: vec![Operand {
                            addr: out + (bi * kv + h) * plane * 4,
                            dtype: DType::Fp32,
                            extent: Extent::Full,
                        }],
                        temps: vec![Extent::Full],
                        accumulators: Vec::new(),
                        scalars: Vec::new(),
                        body,
                        period: None,
                    }));
                }
            }
            ks
        }
        Op::Embedding => {
            let (table, ids) = (g.ty(x[0]).clone(), g.ty(x[1]).clone());
            vec![Kernel::Program(embedding_gather(
                cx.arch(),
                cx.addr(x[0]),
                cx.addr(x[1]),
                out,
                ids.elements(),
                table.shape[1] * table.dtype.size_bytes(),
            )?)]
        }
        Op::EmbeddingGrad { rows } => {
            let h = g.ty(x[0]).last();
            let n = g.ty(x[1]).elements();
            let mut ks = zero_fill("embedding_grad", out, rows * h);
            ks.push(Kernel::Program(embedding_scatter(
                cx.arch(),
                out,
                cx.addr(x[0]),
                cx.addr(x[1]),
                n,
                h * 4,
            )?));
            ks
        }
        Op::Rope { theta, inverse } => {
            let s = &g.ty(x[0]).shape;
            let (sq, d) = (s[2], s[3]);
            let half = d / 2;
            if half * 4 > 2047 {
                return Err(kernel_error(
                    name,
                    format!("head dimension {d} exceeds the 1022 the operand offsets allow"),
                ));
            }
            let (cos_addr, sin_addr) = cx
                .rope_tables(*theta, sq, d, *inverse)
                .ok_or_else(|| kernel_error(name, "its tables were not planned".into()))?;
            let body = vec![
                format!("v.stride d={}, a={}, b=0, m=0", d * 4, d * 4),
                format!("v.shape rows=$ROWS, cols={half}"),
                format!("v.un op=copy, dst=$t0, a=$i0@{}", half * 4),
                format!("v.un op=copy, dst=$t0@{}, a=$i0", half * 4),
                "v.stride d=0, a=0, b=0, m=0".into(),
                "shape full".into(),
                "v.bin op=mul, dst=$t0, a=$t0, b=$i2".into(),
                "v.bin op=mul, dst=$t1, a=$i0, b=$i1".into(),
                "v.bin op=add, dst=$o0, a=$t1, b=$t0".into(),
            ];
            let rows = g.ty(x[0]).elements() / d;
            vec![Kernel::Row(RowKernel {
                name: name.into(),
                rows,
                cols: d,
                inputs: vec![
                    Operand {
                        addr: cx.addr(x[0]),
                        dtype: g.ty(x[0]).dtype,
                        extent: Extent::Full,
                    },
                    Operand {
                        addr: cos_addr,
                        dtype: DType::Fp32,
                        extent: Extent::Periodic(sq),
                    },
                    Operand {
                        addr: sin_addr,
                        dtype: DType::Fp32,
                        extent: Extent::Periodic(sq),
                    },
                ],
                outputs: vec![Operand {
                    addr: out,
                    dtype: out_ty.dtype,
                    extent: Extent::Full,
                }],
                temps: vec![Extent::Full, Extent::Full],
                accumulators: Vec::new(),
                scalars: Vec::new(),
                body,
                period: Some(sq),
            })]
        }
        Op::CrossEntropy { shift }
        | Op::CrossEntropyGrad { shift }
        | Op::Nll { shift }
        | Op::NllGrad { shift } => cross_entropy(g, id, *shift, cx)?,
        Op::AbsMax => {
            let t = g.ty(x[0]).clone();
            let cols = t.last();
            vec![Kernel::Row(RowKernel {
                name: name.into(),
                rows: t.elements() / cols,
                cols,
                inputs: vec![Operand {
                    addr: cx.addr(x[0]),
                    dtype: t.dtype,
                    extent: Extent::Full,
                }],
                outputs: Vec::new(),
                temps: vec![Extent::Full, Extent::Col],
                accumulators: vec![Accumulator {
                    addr: cx.addr(ValueId(id)),
                    extent: Extent::Scalar,
                }],
                scalars: Vec::new(),
                body: [
                    "shape full",
                    "v.un op=abs, dst=$t0, a=$i0",
                    "v.reduce op=max, axis=rows, dst=$t1, a=$t0, mode=overwrite",
                    "shape col",
                    "v.reduce op=max, axis=cols, dst=$a0, a=$t1, mode=$MODE",
                ]
                .iter()
                .map(|l| l.to_string())
                .collect(),
                period: None,
            })]
        }
        Op::AllFinite => {
            // any = max over elements of nonfinite(x); out = 1 - any.
            let t = g.ty(x[0]).clone();
            let cols = t.last();
            let any = cx.scratch(4);
            let body = |lines: &[&str]| lines.iter().map(|l| l.to_string()).collect();
            vec![
                Kernel::Row(RowKernel {
                    name: name.into(),
                    rows: t.elements() / cols,
                    cols,
                    inputs: vec![Operand {
                        addr: cx.addr(x[0]),
                        dtype: t.dtype,
                        extent: Extent::Full,
                    }],
                    outputs: Vec::new(),
                    temps: vec![Extent::Full, Extent::Col],
                    accumulators: vec![Accumulator {
                        addr: any,
                        extent: Extent::Scalar,
                    }],
                    scalars: Vec::new(),
                    body: body(&[
                        "shape full",
                        "v.un op=nonfinite, dst=$t0, a=$i0",
                        "v.reduce op=max, axis=rows, dst=$t1, a=$t0, mode=overwrite",
                        "shape col",
                        "v.reduce op=max, axis=cols, dst=$a0, a=$t1, mode=$MODE",
                    ]),
                    period: None,
                }),
                Kernel::Row(RowKernel {
                    name: name.into(),
                    rows: 1,
                    cols: 1,
                    inputs: vec![Operand {
                        addr: any,
                        dtype: DType::Fp32,
                        extent: Extent::Full,
                    }],
                    outputs: vec![Operand {
                        addr: out,
                        dtype: DType::Fp32,
                        extent: Extent::Full,
                    }],
                    temps: vec![Extent::Full],
                    accumulators: Vec::new(),
                    scalars: vec![(0, -1.0), (1, 1.0)],
                    body: body(&[
                        "shape full",
                        "v.bin op=mul, dst=$t0, a=$i0, b=f0",
                        "v.bin op=add, dst=$o0, a=$t0, b=f1",
                    ]),
                    period: None,
                }),
            ]
        }
        Op::Attention { scale, causal } => {
            let q = g.ty(x[0]).clone();
            let lse = cx.scratch(q.shape[0] * q.shape[1] * q.shape[2] * 4);
            let spec = super::attention::AttentionSpec {
                name: "attention".into(),
                batch: q.shape[0],
                heads: q.shape[1],
                kv_heads: g.ty(x[1]).shape[1],
                seq: q.shape[2],
                head_dim: q.shape[3],
                q: cx.addr(x[0]),
                k: cx.addr(x[1]),
                v: cx.addr(x[2]),
                input_type: q.dtype,
                o: out,
                lse,
                scale: *scale,
                causal: *causal,
                key_mask: x.get(3).map(|m| cx.addr(*m)),
            };
            vec![Kernel::Program(cx.attention_forward(&spec)?)]
        }
        Op::SumTo { shape } => {
            // out = sum over r of in[r]: chains of up to 12 addends per kernel.
            let t: u64 = shape.iter().product();
            let cols = out_ty.last();
            let reps = g.ty(x[0]).elements() / t;
            let el = e(x[0]);
            let src = cx.addr(x[0]);
            let mut ks = Vec::new();
            let mut r = 0;
            while r < reps {
                let n = (reps - r).min(12);
                let mut inputs: Vec<Operand> = (r..r + n)
                    .map(|k| Operand {
                        addr: src + k * t * el,
                        dtype: g.ty(x[0]).dtype,
                        extent: Extent::Full,
                    })
                    .collect();
                if r > 0 {
                    inputs.push(Operand {
                        addr: out,
                        dtype: DType::Fp32,
                        extent: Extent::Full,
                    });
                }
                let mut body = vec![
                    "shape full".to_string(),
                    "v.un op=copy, dst=$t0, a=$i0".to_string(),
                ];
                for k in 1..inputs.len() {
                    body.push(format!("v.bin op=add, dst=$t0, a=$t0, b=$i{k}"));
                }
                body.push("v.un op=copy, dst=$o0, a=$t0".into());
                ks.push(Kernel::Row(RowKernel {
                    name: name.into(),
                    rows: t / cols,
                    cols,
                    inputs,
                    outputs: vec![Operand {
                        addr: out,
                        dtype: DType::Fp32,
                        extent: Extent::Full,
                    }],
                    temps: vec![Extent::Full],
                    accumulators: Vec::new(),
                    scalars: Vec::new(),
                    body,
                    period: None,
                }));
                r += n;
            }
            ks
        }
        _ => return Ok(None),
    }))
}

/// Rotary tables `[seq, dim]` fp32: `cat(cos, cos)` and `cat(-sin, sin)`
/// (the sine negated for the inverse rotation), with Hugging Face's
/// `inv_freq[i] = theta^(-2i/dim)`.
pub fn rope_table_values(theta: f64, seq: u64, dim: u64, inverse: bool) -> (Vec<f32>, Vec<f32>) {
    let half = dim / 2;
    let sign = if inverse { -1.0 } else { 1.0 };
    let (mut cos, mut sin) = (Vec::new(), Vec::new());
    for p in 0..seq {
        for j in 0..dim {
            let i = j % half;
            let inv_freq = theta.powf(-((2 * i) as f64) / dim as f64);
            let (sv, cv) = (p as f64 * inv_freq).sin_cos();
            cos.push(cv as f32);
            sin.push((if j < half { -sv } else { sv } * sign) as f32);
        }
    }
    (cos, sin)
}

/// Splits an fp32 tensor into bf16 `hi = bf16(x)` and `lo = bf16(x - hi)`.
fn split_bf16(
    cx: &mut dyn Context,
    ks: &mut Vec<Kernel>,
    addr: u64,
    dtype: DType,
    elements: u64,
) -> Result<Vec<(u64, DType)>, LowerError> {
    if dtype != DType::Fp32 {
        return Ok(vec![(addr, dtype)]);
    }
    let (hi, lo) = (cx.scratch(elements * 2), cx.scratch(elements * 2));
    let cols = (1..=1024u64).rev().find(|c| elements % c == 0).unwrap_or(1);
    ks.push(Kernel::Row(RowKernel {
        name: "split_bf16".into(),
        rows: elements / cols,
        cols,
        inputs: vec![Operand {
            addr,
            dtype,
            extent: Extent::Full,
        }],
        outputs: vec![
            Operand {
                addr: hi,
                dtype: DType::Bf16,
                extent: Extent::Full,
            },
            Operand {
                addr: lo,
                dtype: DType::Bf16,
                extent: Extent::Full,
            },
        ],
        temps: vec![Extent::Full],
        accumulators: Vec::new(),
        scalars: Vec::new(),
        body: [
            "shape full",
            "v.un op=copy, dst=$o0, a=$i0",
            "v.bin op=sub, dst=$t0, a=$i0, b=$o0",
            "v.un op=copy, dst=$o1, a=$t0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        period: None,
    }));
    Ok(vec![(hi, DType::Bf16), (lo, DType::Bf16)])
}

/// Rows per gather/scatter block: the DMA `rows` field and half the scratchpad.
fn index_block(arch: &Arch, row_bytes: u64) -> Result<u64, LowerError> {
    let half = arch.capacity(tessera_isa::program::MemSpace::Spad).0 / 2;
    let rows = (half / (row_bytes + 4)).min(4095);
    if rows == 0 || row_bytes > 65_535 {
        return Err(kernel_error(
            "embedding",
            format!("rows of {row_bytes} bytes do not fit the scratchpad or the DMA"),
        ));
    }
    Ok(rows)
}

/// One block of an indexed kernel: ids `first..first + rows`, staged in
/// scratchpad buffer `base` with its ids at `idx`.
struct IndexBlock {
    first: u64,
    rows: u64,
    base: u64,
    idx: u64,
}

/// The loop shared by the gather and scatter-add kernels: blocks of ids
/// through two scratchpad buffers, the load queue filling one (t0, load ->
/// store) while the store queue drains the other and frees it (t1, store ->
/// load, 2 initial credits). `load` and `store` write each block's code.
fn indexed_kernel(
    arch: &Arch,
    name: &str,
    (n, row_bytes): (u64, u64),
    (load_prologue, store_prologue): (&str, &str),
    mut load: impl FnMut(&mut String, &IndexBlock),
    mut store: impl FnMut(&mut String, &IndexBlock),
) -> Result<Program, LowerError> {
    let block = index_block(arch, row_bytes)?;
    let half = arch.capacity(tessera_isa::program::MemSpace::Spad).0 / 2;
    let mut lq = format!("{load_prologue}\n");
    let mut sq = format!("prof.begin {name}\n{store_prologue}\nnop signal=t1\nnop signal=t1\n");
    let (mut first, mut b) = (0, 0);
    while first < n {
        let rows = block.min(n - first);
        let base = (b % 2) * half;
        let at = IndexBlock {
            first,
            rows,
            base,
            idx: base + block * row_bytes,
        };
        load(&mut lq, &at);
        store(&mut sq, &at);
        first += rows;
        b += 1;
    }
    let _ = writeln!(lq, "nop wait=t1\nnop wait=t1");
    let _ = writeln!(sq, "prof.end {name}");
    let src = format!(".queue load\n{lq}halt\n.queue store\n{sq}halt\n");
    assemble(&src, name, Some(arch))
        .map_err(|e| kernel_error(name, format!("internal assembly error: {e}")))
}

/// out[i] = table[ids[i]] for `n` ids: the load queue reads a block of ids
/// and gathers their rows; the store queue writes them out.
fn embedding_gather(
    arch: &Arch,
    table: u64,
    ids: u64,
    out: u64,
    n: u64,
    row_bytes: u64,
) -> Result<Program, LowerError> {
    indexed_kernel(
        arch,
        "embedding",
        (n, row_bytes),
        ("", "dma.hstride row=0, plane=0\ndma.lstride row=0, plane=0"),
        |q, at| {
            let _ = writeln!(
                q,
                "addr.set r1, {}\naddr.set r2, {}\nnop wait=t1\n\
                 dma.hstride row=0, plane=0\ndma.lstride row=0, plane=0\n\
                 dma.load dst=spad[r2], src=hbm[r1], rows=1, row_bytes={}, planes=1, transpose=none\n\
                 dma.hstride row={row_bytes}, plane=0\ndma.lstride row={row_bytes}, plane=0\n\
                 addr.set r1, {table}\naddr.set r3, {}\n\
                 dma.gather dst=spad[r3], table=hbm[r1], idx=spad[r2], rows={}, row_bytes={row_bytes}, signal=t0",
                ids + at.first * 4,
                at.idx,
                at.rows * 4,
                at.base,
                at.rows
            );
        },
        |q, at| {
            let _ = writeln!(
                q,
                "addr.set r1, {}\naddr.set r2, {}\n\
                 dma.store dst=hbm[r1], src=spad[r2], rows={}, row_bytes={row_bytes}, planes=1, transpose=none, wait=t0, signal=t1",
                out + at.first * row_bytes,
                at.base,
                at.rows
            );
        },
    )
}

/// table[ids[i]] += dy[i] (fp32 rows, ascending i, negative ids skipped).
fn embedding_scatter(
    arch: &Arch,
    table: u64,
    dy: u64,
    ids: u64,
    n: u64,
    row_bytes: u64,
) -> Result<Program, LowerError> {
    indexed_kernel(
        arch,
        "embedding_grad",
        (n, row_bytes),
        (
            "dma.hstride row=0, plane=0\ndma.lstride row=0, plane=0",
            &format!("dma.hstride row={row_bytes}, plane=0\ndma.lstride row={row_bytes}, plane=0"),
        ),
        |q, at| {
            let _ = writeln!(
                q,
                "nop wait=t1\naddr.set r1, {}\naddr.set r2, {}\n\
                 dma.load dst=spad[r2], src=hbm[r1], rows=1, row_bytes={}, planes=1, transpose=none\n\
                 addr.set r1, {}\naddr.set r2, {}\n\
                 dma.load dst=spad[r2], src=hbm[r1], rows={}, row_bytes={row_bytes}, planes=1, transpose=none, signal=t0",
                ids + at.first * 4,
                at.idx,
                at.rows * 4,
                dy + at.first * row_bytes,
                at.base,
                at.rows
            );
        },
        |q, at| {
            let _ = writeln!(
                q,
                "addr.set r1, {table}\naddr.set r2, {}\naddr.set r3, {}\n\
                 dma.scatter_add table=hbm[r1], src=spad[r2], idx=spad[r3], rows={}, row_bytes={row_bytes}, wait=t0, signal=t1",
                at.base,
                at.idx,
                at.rows
            );
        },
    )
}

/// Cross-entropy (mean over counted tokens) and its gradient, or the
/// negative log-likelihood of log-probabilities (`nll`, `nll_grad`: the
/// same kernels without the log-sum-exp). One kernel per sequence when
/// labels are shifted (row t predicts label t+1; the last row of each
/// sequence is not counted), else one over all rows.
fn cross_entropy(
    g: &Graph,
    id: usize,
    shift: bool,
    cx: &mut dyn Context,
) -> Result<Vec<Kernel>, LowerError> {
    let node = &g.nodes[id];
    let grad = matches!(node.op, Op::CrossEntropyGrad { .. } | Op::NllGrad { .. });
    let nll_of_logp = matches!(node.op, Op::Nll { .. } | Op::NllGrad { .. });
    let (fwd_name, grad_name) = if nll_of_logp {
        ("nll", "nll_grad")
    } else {
        ("cross_entropy", "cross_entropy_grad")
    };
    let x = &node.inputs;
    let s = &g.ty(x[0]).shape;
    let (b, sq, v) = (s[0], s[1], s[2]);
    let ldt = g.ty(x[0]).dtype;
    let (logits, labels) = (cx.addr(x[0]), cx.addr(x[1]));
    let out = cx.addr(ValueId(id));
    // (first row, rows, first label) per segment
    let segments: Vec<(u64, u64, u64)> = if shift {
        (0..b)
            .filter(|_| sq > 1)
            .map(|bi| (bi * sq, sq - 1, bi * sq + 1))
            .collect()
    } else {
        vec![(0, b * sq, 0)]
    };
    let parts = segments.len() as u64;
    // Per-segment token counts, and (the loss only) per-segment sums of nll.
    let count = cx.scratch(parts.max(1) * 4);
    let nll = if grad {
        0
    } else {
        cx.scratch(parts.max(1) * 4)
    };
    let mut ks = Vec::new();
    // Per segment: sum of nll and number of counted tokens (labels != -100).
    let lse_body = [
        "shape full",
        "v.reduce op=max, axis=rows, dst=$t1, a=$i0, mode=overwrite",
        "v.bin op=sub, dst=$t0, a=$i0, b=col($t1)",
        "v.un op=exp, dst=$t0, a=$t0",
        "v.reduce op=sum, axis=rows, dst=$t2, a=$t0, mode=overwrite",
        "shape col",
        "v.un op=log, dst=$t2, a=$t2",
        "v.bin op=add, dst=$t2, a=$t2, b=$t1",
    ];
    let label_operand = |first_label: u64| Operand {
        addr: labels + first_label * 4,
        dtype: DType::Int32,
        extent: Extent::Col,
    };
    for (p, &(first, rows, first_label)) in segments.iter().enumerate() {
        let p = p as u64;
        if grad {
            // The gradient needs only the number of counted tokens, from the
            // labels: not the per-row losses, which cost a pass over the logits.
            ks.push(Kernel::Row(RowKernel {
                name: grad_name.into(),
                rows,
                cols: 1,
                inputs: vec![label_operand(first_label)],
                outputs: Vec::new(),
                temps: vec![Extent::Col],
                accumulators: vec![Accumulator {
                    addr: count + p * 4,
                    extent: Extent::Scalar,
                }],
                scalars: vec![(0, -100.0)],
                body: [
                    "shape col",
                    "v.bin op=cmp.ne, dst=$t0, a=$i0, b=f0",
                    "v.reduce op=sum, axis=cols, dst=$a0, a=$t0, mode=$MODE",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect(),
                period: None,
            }));
            continue;
        }
        // t2 = lse (cross-entropy) or 0 (nll of log-probabilities), minus the picked entry.
        let mut body: Vec<String> = if nll_of_logp {
            vec![
                "shape col".to_string(),
                "v.bin op=cmp.ne, dst=$t2, a=$i1, b=$i1".to_string(),
            ]
        } else {
            lse_body.iter().map(|s| s.to_string()).collect()
        };
        body.extend(
            [
                "shape full",
                "v.gather mode=elems, dst=$t3, table=$i0, idx=$i1!",
                "shape col",
                "v.bin op=sub, dst=$t2, a=$t2, b=$t3",
                "v.bin op=cmp.ne, dst=$t3, a=$i1, b=f0",
                "v.bin op=mul, dst=$t2, a=$t2, b=$t3",
                "v.reduce op=sum, axis=cols, dst=$a0, a=$t2, mode=$MODE",
                "v.reduce op=sum, axis=cols, dst=$a1, a=$t3, mode=$MODE",
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        ks.push(Kernel::Row(RowKernel {
            name: fwd_name.into(),
            rows,
            cols: v,
            inputs: vec![
                Operand {
                    addr: logits + first * v * ldt.size_bytes(),
                    dtype: ldt,
                    extent: Extent::Full,
                },
                label_operand(first_label),
            ],
            outputs: Vec::new(),
            temps: vec![Extent::Full, Extent::Col, Extent::Col, Extent::Col],
            accumulators: vec![
                Accumulator {
                    addr: nll + p * 4,
                    extent: Extent::Scalar,
                },
                Accumulator {
                    addr: count + p * 4,
                    extent: Extent::Scalar,
                },
            ],
            scalars: vec![(0, -100.0)],
            body,
            period: None,
        }));
    }
    // Totals: loss = sum(nll) / sum(count); for the gradient, scale = dloss / sum(count).
    let total = |body: &[&str], inputs: Vec<Operand>, out_addr: u64| {
        Kernel::Row(RowKernel {
            name: fwd_name.into(),
            rows: 1,
            cols: parts.max(1),
            inputs,
            outputs: vec![Operand {
                addr: out_addr,
                dtype: DType::Fp32,
                extent: Extent::Col,
            }],
            temps: vec![Extent::Col, Extent::Col],
            accumulators: Vec::new(),
            scalars: Vec::new(),
            body: body.iter().map(|s| s.to_string()).collect(),
            period: None,
        })
    };
    let full = |addr| Operand {
        addr,
        dtype: DType::Fp32,
        extent: Extent::Full,
    };
    if !grad {
        ks.push(total(
            &[
                "shape full",
                "v.reduce op=sum, axis=rows, dst=$t0, a=$i0, mode=overwrite",
                "v.reduce op=sum, axis=rows, dst=$t1, a=$i1, mode=overwrite",
                "shape col",
                "v.bin op=div, dst=$o0, a=$t0, b=$t1",
            ],
            vec![full(nll), full(count)],
            out,
        ));
        return Ok(ks);
    }
    let scale = cx.scratch(4);
    ks.push(total(
        &[
            "shape full",
            "v.reduce op=sum, axis=rows, dst=$t1, a=$i0, mode=overwrite",
            "shape col",
            "v.bin op=cmp.ne, dst=$t0, a=$t1, b=$t1",
            "v.bin op=add, dst=$t0, a=$t0, b=$i1",
            "v.bin op=div, dst=$o0, a=$t0, b=$t1",
        ],
        vec![
            full(count),
            Operand {
                addr: cx.addr(x[2]),
                dtype: DType::Fp32,
                extent: Extent::Scalar,
            },
        ],
        scale,
    ));
    // d logits = (softmax - onehot(label)) * valid * scale; uncounted rows are 0.
    if shift {
        for bi in 0..b {
            ks.extend(zero_fill(grad_name, out + (bi * sq + sq - 1) * v * 4, v));
        }
    }
    for &(first, rows, first_label) in &segments {
        // o0 = exp(logits - max) (cross-entropy) or zeros (nll), worked on in
        // the output buffer itself (no full-size temporary); t2 = c = valid *
        // scale; t0 = c / sum; t1 = -c.
        let head: &[&str] = if nll_of_logp {
            &["shape full", "v.bin op=cmp.ne, dst=$o0, a=$i0, b=$i0"]
        } else {
            &[
                "shape full",
                "v.reduce op=max, axis=rows, dst=$t0, a=$i0, mode=overwrite",
                "v.bin op=sub, dst=$o0, a=$i0, b=col($t0)",
                "v.un op=exp, dst=$o0, a=$o0",
                "v.reduce op=sum, axis=rows, dst=$t1, a=$o0, mode=overwrite",
            ]
        };
        let coefficients = [
            "shape col",
            "v.bin op=cmp.ne, dst=$t2, a=$i1, b=f0",
            "v.bin op=mul, dst=$t2, a=$t2, b=$i2",
        ];
        // d = e * (c / s) - c at the label: the normalisation folded into the
        // one product (one reciprocal per row), the one-hot a scatter of -c
        // (rows with ignored labels have c = 0 and a skipped negative index).
        let tail: &[&str] = if nll_of_logp {
            &[
                "v.un op=neg, dst=$t1, a=$t2",
                "shape full",
                "v.scatter_add mode=elems, table=$o0, src=$t1, idx=$i1!",
            ]
        } else {
            &[
                "v.un op=recip, dst=$t0, a=$t1",
                "v.bin op=mul, dst=$t0, a=$t0, b=$t2",
                "v.un op=neg, dst=$t1, a=$t2",
                "shape full",
                "v.bin op=mul, dst=$o0, a=$o0, b=col($t0)",
                "v.scatter_add mode=elems, table=$o0, src=$t1, idx=$i1!",
            ]
        };
        let body = head.iter().chain(&coefficients).chain(tail);
        ks.push(Kernel::Row(RowKernel {
            name: grad_name.into(),
            rows,
            cols: v,
            inputs: vec![
                Operand {
                    addr: logits + first * v * ldt.size_bytes(),
                    dtype: ldt,
                    extent: Extent::Full,
                },
                label_operand(first_label),
                Operand {
                    addr: scale,
                    dtype: DType::Fp32,
                    extent: Extent::Scalar,
                },
            ],
            outputs: vec![Operand {
                addr: out + first * v * 4,
                dtype: DType::Fp32,
                extent: Extent::Full,
            }],
            temps: vec![Extent::Col, Extent::Col, Extent::Col],
            accumulators: Vec::new(),
            scalars: vec![(0, -100.0)],
            body: body.map(|s| s.to_string()).collect(),
            period: None,
        }));
    }
    Ok(ks)
}

/// The fused AdamW kernel of node `i` and its siblings: outputs m', v', p'
/// at `parts` (scratch for a result nothing reads), with the roundings of
/// the unfused graph code (`v.axpby` rounds both products and the sum).
pub fn adamw_kernel(
    g: &Graph,
    i: usize,
    parts: [Option<u64>; 3],
    cx: &mut dyn Context,
) -> Result<Kernel, LowerError> {
    let node = &g.nodes[i];
    let Op::AdamW {
        lr,
        beta1,
        beta2,
        eps,
        weight_decay,
        ..
    } = node.op
    else {
        return Err(kernel_error("adamw", "not an adamw node".into()));
    };
    let x = &node.inputs;
    let ty = g.ty(x[0]).clone();
    let cols = ty.last();
    let full = |v: ValueId, cx: &dyn Context| Operand {
        addr: cx.addr(v),
        dtype: DType::Fp32,
        extent: Extent::Full,
    };
    let scalar = |v: ValueId, cx: &dyn Context| Operand {
        addr: cx.addr(v),
        dtype: DType::Fp32,
        extent: Extent::Scalar,
    };
    let mut outputs = Vec::new();
    for slot in parts {
        let addr = match slot {
            Some(a) => a,
            None => cx.scratch(ty.bytes()),
        };
        outputs.push(Operand {
            addr,
            dtype: DType::Fp32,
            extent: Extent::Full,
        });
    }
    let body = [
        "shape full",
        "v.axpby dst=$o0, a=$i2, b=$i1, alpha=f0, beta=f1",
        "v.un op=square, dst=$t0, a=$i1",
        "v.axpby dst=$o1, a=$i3, b=$t0, alpha=f2, beta=f3",
        "v.un op=sqrt, dst=$t0, a=$o1",
        "v.bin op=div, dst=$t0, a=$t0, b=$i4",
        "v.bin op=add, dst=$t0, a=$t0, b=f4",
        "v.bin op=div, dst=$t0, a=$o0, b=$t0",
        "v.bin op=mul, dst=$t0, a=$t0, b=$i5",
        "v.bin op=mul, dst=$t1, a=$i0, b=f5",
        "v.bin op=sub, dst=$o2, a=$t1, b=$t0",
    ];
    Ok(Kernel::Row(RowKernel {
        name: "adamw".into(),
        rows: ty.elements() / cols,
        cols,
        inputs: vec![
            full(x[0], cx),
            full(x[1], cx),
            full(x[2], cx),
            full(x[3], cx),
            scalar(x[4], cx),
            scalar(x[5], cx),
        ],
        outputs,
        temps: vec![Extent::Full, Extent::Full],
        accumulators: Vec::new(),
        scalars: vec![
            (0, beta1 as f32),
            (1, (1.0 - beta1) as f32),
            (2, beta2 as f32),
            (3, (1.0 - beta2) as f32),
            (4, eps as f32),
            (5, (1.0 - lr * weight_decay) as f32),
        ],
        body: body.iter().map(|l| l.to_string()).collect(),
        period: None,
    }))
}
