//! Lowers the IR's row-wise ops to [`RowKernel`]s: elementwise math with
//! broadcasts, casts, layer and RMS norms with their gradients, softmax
//! (plain, causal, key-masked) and log-softmax with their gradients, and
//! reductions (row means broadcast back included). Every
//! tensor is viewed as `[rows, cols]` with `cols` its last axis.

use tessera_isa::DType;

use super::rowwise::{Accumulator, Extent, Operand, RowKernel};
use crate::error::LowerError;
use crate::ir::{Graph, Mask, Node, Op, Unary, ValueId};

/// Where each value lives in HBM.
pub trait Placement {
    /// Byte address of a value.
    fn addr(&self, v: ValueId) -> u64;
}

fn unsupported(id: usize, node: &Node, rule: &str) -> LowerError {
    LowerError::Unsupported {
        node: id,
        op: node.op.name().to_string(),
        rule: rule.to_string(),
    }
}

/// The vector unit's name of a unary function.
fn vector_unary(u: Unary) -> Option<&'static str> {
    Some(match u {
        Unary::Neg => "neg",
        Unary::Exp => "exp",
        Unary::Log => "log",
        Unary::Sqrt => "sqrt",
        Unary::Rsqrt => "rsqrt",
        Unary::Recip => "recip",
        Unary::Square => "square",
        Unary::Sign => "sign",
        Unary::GeluTanh => "gelu.tanh",
        Unary::GeluErf => "gelu.erf",
        Unary::Silu => "silu",
        Unary::GeluTanhGrad => "dgelu.tanh",
        Unary::GeluErfGrad => "dgelu.erf",
        Unary::SiluGrad => "dsilu",
        Unary::NonZero => return None,
    })
}

/// The kernels computing node `id` of `g` into its placed output, or
/// `None` if the op is not row-wise.
///
/// # Errors
/// [`LowerError::Unsupported`] for a row-wise op in a form not lowered.
pub fn lower_rowwise(
    g: &Graph,
    id: usize,
    place: &dyn Placement,
) -> Result<Option<Vec<RowKernel>>, LowerError> {
    let node = &g.nodes[id];
    let Some(out_ty) = &node.ty else {
        return Ok(None);
    };
    let x = &node.inputs;
    let full = |v: ValueId| Operand {
        addr: place.addr(v),
        dtype: g.ty(v).dtype,
        extent: Extent::Full,
    };
    let out = Operand {
        addr: place.addr(ValueId(id)),
        dtype: out_ty.dtype,
        extent: Extent::Full,
    };
    let cols = out_ty.last();
    let rows = out_ty.elements() / cols;
    let name = node.op.name().to_string();
    let kernel = |inputs: Vec<Operand>,
                  outputs: Vec<Operand>,
                  temps: Vec<Extent>,
                  scalars: Vec<(u8, f32)>,
                  body: &[&str]| RowKernel {
        name: name.clone(),
        rows,
        cols,
        inputs,
        outputs,
        temps,
        accumulators: Vec::new(),
        scalars,
        body: body.iter().map(|s| s.to_string()).collect(),
        period: None,
    };
    let one = |k: RowKernel| Ok(Some(vec![k]));
    match &node.op {
        Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Max | Op::Min => {
            let vop = match node.op {
                Op::Add => "add",
                Op::Sub => "sub",
                Op::Mul => "mul",
                Op::Max => "max",
                Op::Min => "min",
                _ => "div",
            };
            let (a, b) = (x[0], x[1]);
            let bs = g.ty(b).shape.clone();
            let a_shape = &g.ty(a).shape;
            if bs == *a_shape {
                return one(kernel(
                    vec![full(a), full(b)],
                    vec![out],
                    vec![],
                    vec![],
                    &[
                        "shape full",
                        &format!("v.bin op={vop}, dst=$o0, a=$i0, b=$i1"),
                    ],
                ));
            }
            if bs.is_empty() || bs == [cols] {
                let extent = if bs.is_empty() {
                    Extent::Scalar
                } else {
                    Extent::Row
                };
                let bo = Operand {
                    addr: place.addr(b),
                    dtype: g.ty(b).dtype,
                    extent,
                };
                let b_ref = if bs.is_empty() { "$i1" } else { "row($i1)" };
                return one(kernel(
                    vec![full(a), bo],
                    vec![out],
                    vec![],
                    vec![],
                    &[
                        "shape full",
                        &format!("v.bin op={vop}, dst=$o0, a=$i0, b={b_ref}"),
                    ],
                ));
            }
            // b covers several trailing axes: one kernel per repetition of b.
            let b_elems: u64 = bs.iter().product();
            let reps = out_ty.elements() / b_elems;
            let (ea, eo) = (g.ty(a).dtype.size_bytes(), out_ty.dtype.size_bytes());
            let mut ks = Vec::new();
            for r in 0..reps {
                let mut k = kernel(
                    vec![
                        Operand {
                            addr: place.addr(a) + r * b_elems * ea,
                            dtype: g.ty(a).dtype,
                            extent: Extent::Full,
                        },
                        Operand {
                            addr: place.addr(b),
                            dtype: g.ty(b).dtype,
                            extent: Extent::Full,
                        },
                    ],
                    vec![Operand {
                        addr: out.addr + r * b_elems * eo,
                        ..out
                    }],
                    vec![],
                    vec![],
                    &[
                        "shape full",
                        &format!("v.bin op={vop}, dst=$o0, a=$i0, b=$i1"),
                    ],
                );
                k.rows = b_elems / cols;
                ks.push(k);
            }
            Ok(Some(ks))
        }
        Op::Affine { scale, shift } => {
            let mut body = vec!["shape full".to_string()];
            if *shift == 0.0 {
                body.push("v.bin op=mul, dst=$o0, a=$i0, b=f0".into());
            } else {
                body.push("v.bin op=mul, dst=$t0, a=$i0, b=f0".into());
                body.push("v.bin op=add, dst=$o0, a=$t0, b=f1".into());
            }
            let mut k = kernel(
                vec![full(x[0])],
                vec![out],
                vec![Extent::Full],
                vec![(0, *scale as f32), (1, *shift as f32)],
                &[],
            );
            k.body = body;
            one(k)
        }
        Op::Unary(u) => match vector_unary(*u) {
            Some(v) => one(kernel(
                vec![full(x[0])],
                vec![out],
                vec![],
                vec![],
                &["shape full", &format!("v.un op={v}, dst=$o0, a=$i0")],
            )),
            None => one(kernel(
                vec![full(x[0])],
                vec![out],
                vec![],
                vec![(0, 0.0)],
                &["shape full", "v.bin op=cmp.ne, dst=$o0, a=$i0, b=f0"],
            )),
        },
        Op::Cast { .. } => one(kernel(
            vec![full(x[0])],
            vec![out],
            vec![],
            vec![],
            &["shape full", "v.un op=copy, dst=$o0, a=$i0"],
        )),
        Op::LayerNorm { eps } | Op::RmsNorm { eps } => {
            let rms = matches!(node.op, Op::RmsNorm { .. });
            let row = |v: ValueId| Operand {
                addr: place.addr(v),
                dtype: g.ty(v).dtype,
                extent: Extent::Row,
            };
            let mut inputs = vec![full(x[0]), row(x[1])];
            // xhat in t0, then * weight (+ bias)
            let mut body = normalize_body(rms);
            if rms {
                body.push("v.bin op=mul, dst=$o0, a=$t0, b=row($i1)");
            } else {
                inputs.push(row(x[2]));
                body.extend([
                    "v.bin op=mul, dst=$t0, a=$t0, b=row($i1)",
                    "v.bin op=add, dst=$o0, a=$t0, b=row($i2)",
                ]);
            }
            one(kernel(
                inputs,
                vec![out],
                vec![Extent::Full, Extent::Col],
                vec![(0, (1.0 / cols as f64) as f32), (1, *eps as f32)],
                &body,
            ))
        }
        Op::LayerNormGradX { eps } | Op::RmsNormGradX { eps } => {
            // dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy * w (mean(g) omitted for RMS)
            let rms = matches!(node.op, Op::RmsNormGradX { .. });
            let row = Operand {
                addr: place.addr(x[1]),
                dtype: g.ty(x[1]).dtype,
                extent: Extent::Row,
            };
            let mut body = normalize_body(rms);
            body.extend([
                // t0 = xhat, t1 = rstd; t2 = g
                "v.bin op=mul, dst=$t2, a=$i2, b=row($i1)",
                "v.bin op=mul, dst=$t3, a=$t2, b=$t0",
                "v.reduce op=sum, axis=rows, dst=$t4, a=$t3, mode=overwrite",
                "shape col",
                "v.bin op=mul, dst=$t4, a=$t4, b=f0",
                "shape full",
                "v.bin op=mul, dst=$t3, a=$t0, b=col($t4)",
                "v.bin op=sub, dst=$t2, a=$t2, b=$t3",
            ]);
            if !rms {
                body.extend([
                    "v.bin op=mul, dst=$t3, a=$i2, b=row($i1)",
                    "v.reduce op=sum, axis=rows, dst=$t4, a=$t3, mode=overwrite",
                    "shape col",
                    "v.bin op=mul, dst=$t4, a=$t4, b=f0",
                    "shape full",
                    "v.bin op=sub, dst=$t2, a=$t2, b=col($t4)",
                ]);
            }
            body.push("v.bin op=mul, dst=$o0, a=$t2, b=col($t1)");
            let temps = vec![
                Extent::Full,
                Extent::Col,
                Extent::Full,
                Extent::Full,
                Extent::Col,
            ];
            one(kernel(
                vec![full(x[0]), row, full(x[2])],
                vec![out],
                temps,
                vec![(0, (1.0 / cols as f64) as f32), (1, *eps as f32)],
                &body,
            ))
        }
        Op::LayerNormGradW { eps } | Op::RmsNormGradW { eps } => {
            let rms = matches!(node.op, Op::RmsNormGradW { .. });
            let cols = g.ty(x[0]).last();
            let rows = g.ty(x[0]).elements() / cols;
            let mut body = normalize_body(rms);
            body.extend([
                "v.bin op=mul, dst=$t0, a=$t0, b=$i1",
                "v.reduce op=sum, axis=cols, dst=$a0, a=$t0, mode=$MODE",
            ]);
            let mut k = kernel(
                vec![full(x[0]), full(x[1])],
                vec![],
                vec![Extent::Full, Extent::Col],
                vec![(0, (1.0 / cols as f64) as f32), (1, *eps as f32)],
                &body,
            );
            k.rows = rows;
            k.cols = cols;
            k.accumulators = vec![Accumulator {
                addr: out.addr,
                extent: Extent::Row,
            }];
            one(k)
        }
        Op::Softmax { mask } => {
            let s = &g.ty(x[0]).shape;
            let mut body = vec!["shape full".to_string()];
            let mut temps = vec![Extent::Full, Extent::Col];
            let mut scalars = vec![(0u8, f32::NEG_INFINITY)];
            let mut period = None;
            let inputs = vec![full(x[0])];
            let src = if *mask == Mask::Causal {
                period = Some(s[2]);
                body.push("v.causal dst=$t0, a=$i0, fill=f0, row=$Q0, col=0".into());
                "$t0"
            } else {
                "$i0"
            };
            body.push(format!(
                "v.reduce op=max, axis=rows, dst=$t1, a={src}, mode=overwrite"
            ));
            body.push(format!("v.bin op=sub, dst=$t0, a={src}, b=col($t1)"));
            if x.len() == 2 {
                // Masked keys: exp(-inf) = 0. The mask tile is built from the
                // row mask: (t0 != t0) is 0 for finite scores, plus the mask row.
                temps.push(Extent::Full);
                scalars.push((1, 0.0));
                body.push("v.bin op=cmp.ne, dst=$t2, a=$t0, b=$t0".into());
                body.push("v.bin op=mul, dst=$t2, a=$t2, b=f1".into());
                body.push("v.bin op=add, dst=$t2, a=$t2, b=row($i1)".into());
                body.push("v.sel dst=$t0, mask=$t2, a=$t0, b=f0".into());
            }
            body.extend([
                "v.un op=exp, dst=$t0, a=$t0".to_string(),
                "v.reduce op=sum, axis=rows, dst=$t1, a=$t0, mode=overwrite".to_string(),
                "v.bin op=div, dst=$o0, a=$t0, b=col($t1)".to_string(),
            ]);
            if x.len() == 2 {
                // One kernel per sequence: its key-mask row is the same for every head and query.
                let (b, per) = (s[0], s[1] * s[2]);
                let mut ks = Vec::new();
                for bi in 0..b {
                    let mut k = kernel(Vec::new(), vec![], temps.clone(), scalars.clone(), &[]);
                    k.rows = per;
                    k.inputs = vec![
                        Operand {
                            addr: inputs[0].addr + bi * per * cols * inputs[0].dtype.size_bytes(),
                            ..inputs[0]
                        },
                        Operand {
                            addr: place.addr(x[1]) + bi * cols * g.ty(x[1]).dtype.size_bytes(),
                            dtype: g.ty(x[1]).dtype,
                            extent: Extent::Row,
                        },
                    ];
                    k.outputs = vec![Operand {
                        addr: out.addr + bi * per * cols * out.dtype.size_bytes(),
                        ..out
                    }];
                    k.body = body.clone();
                    k.period = period;
                    ks.push(k);
                }
                return Ok(Some(ks));
            }
            let mut k = kernel(inputs, vec![out], temps, scalars, &[]);
            k.body = body;
            k.period = period;
            one(k)
        }
        Op::SoftmaxGrad => one(kernel(
            vec![full(x[0]), full(x[1])],
            vec![out],
            vec![Extent::Full, Extent::Col],
            vec![],
            &[
                "shape full",
                "v.bin op=mul, dst=$t0, a=$i0, b=$i1",
                "v.reduce op=sum, axis=rows, dst=$t1, a=$t0, mode=overwrite",
                "v.bin op=sub, dst=$t0, a=$i1, b=col($t1)",
                "v.bin op=mul, dst=$o0, a=$i0, b=$t0",
            ],
        )),
        Op::RowMean => one(kernel(
            vec![full(x[0])],
            vec![out],
            vec![Extent::Full, Extent::Col],
            vec![(0, (1.0 / cols as f64) as f32), (1, 0.0)],
            &[
                "shape full",
                "v.reduce op=sum, axis=rows, dst=$t1, a=$i0, mode=overwrite",
                "shape col",
                "v.bin op=mul, dst=$t1, a=$t1, b=f0",
                "shape full",
                // a tile of zeros (x * 0), plus the row means
                "v.bin op=mul, dst=$t0, a=$i0, b=f1",
                "v.bin op=add, dst=$o0, a=$t0, b=col($t1)",
            ],
        )),
        Op::LogSoftmax => one(kernel(
            vec![full(x[0])],
            vec![out],
            vec![Extent::Full, Extent::Full, Extent::Col],
            vec![],
            &[
                "shape full",
                "v.reduce op=max, axis=rows, dst=$t2, a=$i0, mode=overwrite",
                "v.bin op=sub, dst=$t0, a=$i0, b=col($t2)",
                "v.un op=exp, dst=$t1, a=$t0",
                "v.reduce op=sum, axis=rows, dst=$t2, a=$t1, mode=overwrite",
                "shape col",
                "v.un op=log, dst=$t2, a=$t2",
                "shape full",
                "v.bin op=sub, dst=$o0, a=$t0, b=col($t2)",
            ],
        )),
        Op::LogSoftmaxGrad => one(kernel(
            vec![full(x[0]), full(x[1])],
            vec![out],
            vec![Extent::Full, Extent::Col],
            vec![],
            &[
                "shape full",
                "v.reduce op=sum, axis=rows, dst=$t1, a=$i1, mode=overwrite",
                "v.un op=exp, dst=$t0, a=$i0",
                "v.bin op=mul, dst=$t0, a=$t0, b=col($t1)",
                "v.bin op=sub, dst=$o0, a=$i1, b=$t0",
            ],
        )),
        Op::SumAll => {
            let cols = g.ty(x[0]).last();
            let mut k = kernel(
                vec![full(x[0])],
                vec![],
                vec![Extent::Col],
                vec![],
                &[
                    "shape full",
                    "v.reduce op=sum, axis=rows, dst=$t0, a=$i0, mode=overwrite",
                    "shape col",
                    "v.reduce op=sum, axis=cols, dst=$a0, a=$t0, mode=$MODE",
                ],
            );
            k.cols = cols;
            k.rows = g.ty(x[0]).elements() / cols;
            k.accumulators = vec![Accumulator {
                addr: out.addr,
                extent: Extent::Scalar,
            }];
            one(k)
        }
        Op::SumTo { shape } if shape.len() == 1 || shape.is_empty() => {
            let cols = g.ty(x[0]).last();
            if shape.is_empty() {
                return Err(unsupported(id, node, "to a scalar is lowered as sum_all"));
            }
            let mut k = kernel(
                vec![full(x[0])],
                vec![],
                vec![],
                vec![],
                &[
                    "shape full",
                    "v.reduce op=sum, axis=cols, dst=$a0, a=$i0, mode=$MODE",
                ],
            );
            k.cols = cols;
            k.rows = g.ty(x[0]).elements() / cols;
            k.accumulators = vec![Accumulator {
                addr: out.addr,
                extent: Extent::Row,
            }];
            one(k)
        }
        Op::Where => {
            // cond is a scalar: select whole tensors with a scalar mask (cond - 0 != 0).
            let cond = Operand {
                addr: place.addr(x[0]),
                dtype: DType::Fp32,
                extent: Extent::Scalar,
            };
            one(kernel(
                vec![cond, full(x[1]), full(x[2])],
                vec![out],
                vec![Extent::Full],
                vec![(0, 0.0)],
                &[
                    "shape full",
                    // a tile of zeros whatever the data (NaN != NaN gives 1, times 0),
                    // plus the condition: the mask is cond everywhere
                    "v.bin op=cmp.ne, dst=$t0, a=$i1, b=$i1",
                    "v.bin op=mul, dst=$t0, a=$t0, b=f0",
                    "v.bin op=add, dst=$t0, a=$t0, b=$i0",
                    "v.sel dst=$o0, mask=$t0, a=$i1, b=$i2",
                ],
            ))
        }
        _ => Ok(None),
    }
}

/// `xhat` into t0 and `rstd` into t1 for input i0 (f0 = 1/cols, f1 = eps).
fn normalize_body(rms: bool) -> Vec<&'static str> {
    if rms {
        vec![
            "shape full",
            "v.reduce op=sumsq, axis=rows, dst=$t1, a=$i0, mode=overwrite",
            "shape col",
            "v.bin op=mul, dst=$t1, a=$t1, b=f0",
            "v.bin op=add, dst=$t1, a=$t1, b=f1",
            "v.un op=rsqrt, dst=$t1, a=$t1",
            "shape full",
            "v.bin op=mul, dst=$t0, a=$i0, b=col($t1)",
        ]
    } else {
        vec![
            "shape full",
            "v.reduce op=sum, axis=rows, dst=$t1, a=$i0, mode=overwrite",
            "shape col",
            "v.bin op=mul, dst=$t1, a=$t1, b=f0",
            "shape full",
            "v.bin op=sub, dst=$t0, a=$i0, b=col($t1)",
            "v.reduce op=sumsq, axis=rows, dst=$t1, a=$t0, mode=overwrite",
            "shape col",
            "v.bin op=mul, dst=$t1, a=$t1, b=f0",
            "v.bin op=add, dst=$t1, a=$t1, b=f1",
            "v.un op=rsqrt, dst=$t1, a=$t1",
            "shape full",
            "v.bin op=mul, dst=$t0, a=$t0, b=col($t1)",
        ]
    }
}
