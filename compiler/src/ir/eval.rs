//! A reference interpreter for the graph IR in f64: the semantics of every
//! op, written plainly. It is the oracle for the autodiff rules (finite
//! differences) and for the lowered programs' results.
//!
//! With [`Rounding::ToType`] every value is rounded to its element type
//! after it is computed (fp32, bf16, fp16), which mimics a machine storing
//! each tensor in that type; [`Rounding::Exact`] keeps f64 throughout.

use std::collections::{BTreeMap, HashMap};

use half::{bf16, f16};
use tessera_isa::DType;
use thiserror::Error;

use super::{AdamPart, AttentionPart, Graph, Mask, Op, Unary};

/// A dense row-major tensor of f64.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    /// Dimensions.
    pub shape: Vec<u64>,
    /// `shape.iter().product()` values, row-major.
    pub data: Vec<f64>,
}

impl Tensor {
    /// A tensor; `data.len()` must be the product of `shape`.
    pub fn new(shape: &[u64], data: Vec<f64>) -> Tensor {
        debug_assert_eq!(shape.iter().product::<u64>() as usize, data.len());
        Tensor {
            shape: shape.to_vec(),
            data,
        }
    }

    /// A tensor of one repeated value.
    pub fn full(shape: &[u64], value: f64) -> Tensor {
        Tensor {
            shape: shape.to_vec(),
            data: vec![value; shape.iter().product::<u64>() as usize],
        }
    }

    /// A scalar.
    pub fn scalar(value: f64) -> Tensor {
        Tensor {
            shape: Vec::new(),
            data: vec![value],
        }
    }

    fn last(&self) -> usize {
        self.shape.last().copied().unwrap_or(1) as usize
    }
}

/// How values are rounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rounding {
    /// f64 throughout (casts included).
    Exact,
    /// Each value rounded to its element type.
    ToType,
}

/// What went wrong evaluating a graph.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum EvalError {
    /// A parameter or input has no value.
    #[error("no value fed for {kind} `{name}`")]
    Missing { kind: &'static str, name: String },
    /// A fed value has the wrong shape.
    #[error("{kind} `{name}` must have shape {want:?}, got {got:?}")]
    Shape {
        kind: &'static str,
        name: String,
        want: Vec<u64>,
        got: Vec<u64>,
    },
    /// An index (token id, label) is outside its table.
    #[error("node %{node} ({op}): index {index} outside 0..{len}")]
    Index {
        node: usize,
        op: &'static str,
        index: i64,
        len: u64,
    },
}

/// The results of one evaluation.
#[derive(Debug)]
pub struct Evaluation {
    /// Every node's value (`None` for sinks).
    pub values: Vec<Option<Tensor>>,
    /// Named outputs.
    pub outputs: BTreeMap<String, Tensor>,
    /// New values of assigned parameters and states.
    pub assigned: BTreeMap<String, Tensor>,
}

/// Evaluates `g`. Parameters and inputs come from `feeds` by name; states
/// from `feeds` if present, else their initial value.
///
/// # Errors
/// [`EvalError`] for a missing or mis-shaped feed, or an index out of range.
pub fn eval(
    g: &Graph,
    feeds: &HashMap<String, Tensor>,
    rounding: Rounding,
) -> Result<Evaluation, EvalError> {
    let mut values: Vec<Option<Tensor>> = Vec::with_capacity(g.nodes.len());
    let mut outputs = BTreeMap::new();
    let mut assigned = BTreeMap::new();
    for (i, node) in g.nodes.iter().enumerate() {
        let x: Vec<&Tensor> = node
            .inputs
            .iter()
            .map(|v| values[v.0].as_ref().expect("operands are values"))
            .collect();
        let fed =
            |kind: &'static str, name: &str, shape: &[u64]| -> Result<Option<Tensor>, EvalError> {
                match feeds.get(name) {
                    None => Ok(None),
                    Some(t) if t.shape == shape => Ok(Some(t.clone())),
                    Some(t) => Err(EvalError::Shape {
                        kind,
                        name: name.into(),
                        want: shape.to_vec(),
                        got: t.shape.clone(),
                    }),
                }
            };
        let out = match &node.op {
            Op::Param { name, ty } => Some(fed("parameter", name, &ty.shape)?.ok_or_else(
                || EvalError::Missing {
                    kind: "parameter",
                    name: name.clone(),
                },
            )?),
            Op::Input { name, ty } => {
                Some(
                    fed("input", name, &ty.shape)?.ok_or_else(|| EvalError::Missing {
                        kind: "input",
                        name: name.clone(),
                    })?,
                )
            }
            Op::State { name, ty, init } => Some(
                fed("state", name, &ty.shape)?.unwrap_or_else(|| Tensor::full(&ty.shape, *init)),
            ),
            Op::Const { value, ty } => Some(Tensor::full(&ty.shape, *value)),
            Op::Output { name } => {
                outputs.insert(name.clone(), x[0].clone());
                None
            }
            Op::Assign { name } => {
                assigned.insert(name.clone(), x[0].clone());
                None
            }
            Op::Cast { .. } if rounding == Rounding::Exact => Some(x[0].clone()),
            Op::MatMulEpilogue(e) => {
                let product = matmul(x[0], x[1], e.ta, e.tb);
                let rest: Vec<&[f64]> = x[2..].iter().map(|t| t.data.as_slice()).collect();
                let shape = node.ty.as_ref().map(|t| t.shape.as_slice()).unwrap_or(&[]);
                Some(Tensor::new(
                    shape,
                    e.apply(product, &rest, rounding == Rounding::ToType),
                ))
            }
            op => Some(compute(
                i,
                op,
                &x,
                node.ty.as_ref().map(|t| t.shape.as_slice()).unwrap_or(&[]),
            )?),
        };
        let out = match (out, &node.ty) {
            (Some(mut t), Some(ty)) if rounding == Rounding::ToType => {
                round_to(&mut t.data, ty.dtype);
                Some(t)
            }
            (out, _) => out,
        };
        values.push(out);
    }
    Ok(Evaluation {
        values,
        outputs,
        assigned,
    })
}

/// Rounds values to an element type (nearest even).
pub fn round_to(data: &mut [f64], dtype: DType) {
    match dtype {
        DType::Fp32 => data.iter_mut().for_each(|v| *v = f64::from(*v as f32)),
        DType::Bf16 => data
            .iter_mut()
            .for_each(|v| *v = bf16::from_f64(*v).to_f64()),
        DType::Fp16 => data
            .iter_mut()
            .for_each(|v| *v = f16::from_f64(*v).to_f64()),
        // Through fp32, as the vector unit casts (fp8 saturates).
        DType::Fp8E4M3 => data
            .iter_mut()
            .for_each(|v| *v = float8::F8E4M3::from_f32(*v as f32).to_f64()),
        DType::Fp8E5M2 => data
            .iter_mut()
            .for_each(|v| *v = float8::F8E5M2::from_f32(*v as f32).to_f64()),
        _ => {}
    }
}

const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;

/// The elementwise functions.
pub fn unary(f: Unary, x: f64) -> f64 {
    let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
    match f {
        Unary::Neg => -x,
        Unary::Exp => x.exp(),
        Unary::Log => x.ln(),
        Unary::Sqrt => x.sqrt(),
        Unary::Rsqrt => 1.0 / x.sqrt(),
        Unary::Recip => 1.0 / x,
        Unary::Square => x * x,
        Unary::Sign => {
            if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                0.0
            }
        }
        Unary::NonZero => f64::from(u8::from(x != 0.0)),
        Unary::GeluTanh => 0.5 * x * (1.0 + (SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)).tanh()),
        Unary::GeluErf => 0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2)),
        Unary::Silu => x * sigmoid(x),
        Unary::GeluTanhGrad => {
            let t = (SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)).tanh();
            0.5 * (1.0 + t)
                + 0.5 * x * (1.0 - t * t) * SQRT_2_OVER_PI * (1.0 + 3.0 * 0.044715 * x * x)
        }
        Unary::GeluErfGrad => {
            let pdf = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
            0.5 * (1.0 + libm::erf(x / std::f64::consts::SQRT_2)) + x * pdf
        }
        Unary::SiluGrad => {
            let s = sigmoid(x);
            s * (1.0 + x * (1.0 - s))
        }
    }
}

fn compute(node: usize, op: &Op, x: &[&Tensor], shape: &[u64]) -> Result<Tensor, EvalError> {
    let t = |data: Vec<f64>| Tensor::new(shape, data);
    Ok(match op {
        Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Max | Op::Min => {
            let (a, b) = (x[0], x[1]);
            let n = b.data.len();
            let f = |p: f64, q: f64| match op {
                Op::Add => p + q,
                Op::Sub => p - q,
                Op::Mul => p * q,
                Op::Max => p.max(q),
                Op::Min => p.min(q),
                _ => p / q,
            };
            t(a.data
                .iter()
                .enumerate()
                .map(|(i, &p)| f(p, b.data[i % n]))
                .collect())
        }
        Op::Affine { scale, shift } => t(x[0].data.iter().map(|v| v * scale + shift).collect()),
        Op::Unary(f) => t(x[0].data.iter().map(|&v| unary(*f, v)).collect()),
        Op::Cast { to } => {
            let mut d = x[0].data.clone();
            round_to(&mut d, *to);
            t(d)
        }
        Op::Reshape { .. } => t(x[0].data.clone()),
        Op::MatMul { ta, tb, .. } => t(matmul(x[0], x[1], *ta, *tb)),
        Op::SumTo { .. } => {
            let n: u64 = shape.iter().product();
            let mut d = vec![0.0; n as usize];
            for (i, v) in x[0].data.iter().enumerate() {
                d[i % n as usize] += v;
            }
            t(d)
        }
        Op::SumAll => Tensor::scalar(x[0].data.iter().sum()),
        Op::AbsMax => Tensor::scalar(x[0].data.iter().fold(0.0, |m: f64, v| m.max(v.abs()))),
        Op::AllFinite => {
            Tensor::scalar(f64::from(u8::from(x[0].data.iter().all(|v| v.is_finite()))))
        }
        Op::Where => {
            if x[0].data[0] != 0.0 {
                x[1].clone()
            } else {
                x[2].clone()
            }
        }
        Op::Softmax { mask } => t(softmax(x[0], *mask, x.get(1).copied())),
        Op::Attention { scale, causal } => t(attention(x, *scale, *causal, None)),
        Op::AdamW {
            lr,
            beta1,
            beta2,
            eps,
            weight_decay,
            part,
        } => {
            let (sc2, step) = (x[4].data[0], x[5].data[0]);
            t((0..x[0].data.len())
                .map(|i| {
                    let (p, g, m, v) = (x[0].data[i], x[1].data[i], x[2].data[i], x[3].data[i]);
                    let m2 = beta1 * m + (1.0 - beta1) * g;
                    let v2 = beta2 * v + (1.0 - beta2) * (g * g);
                    match part {
                        AdamPart::M => m2,
                        AdamPart::V => v2,
                        AdamPart::P => {
                            p * (1.0 - lr * weight_decay) - m2 / (v2.sqrt() / sc2 + eps) * step
                        }
                    }
                })
                .collect())
        }
        Op::AttentionGrad {
            scale,
            causal,
            part,
        } => t(attention(x, *scale, *causal, Some(*part))),
        Op::SoftmaxGrad => {
            let (y, dy) = (x[0], x[1]);
            let n = y.last();
            let mut d = vec![0.0; y.data.len()];
            for r in 0..y.data.len() / n {
                let row = r * n..(r + 1) * n;
                let s: f64 = y.data[row.clone()]
                    .iter()
                    .zip(&dy.data[row.clone()])
                    .map(|(a, b)| a * b)
                    .sum();
                for j in row {
                    d[j] = y.data[j] * (dy.data[j] - s);
                }
            }
            t(d)
        }
        Op::LayerNorm { eps } | Op::RmsNorm { eps } => {
            let rms = matches!(op, Op::RmsNorm { .. });
            let n = x[0].last();
            let mut d = vec![0.0; x[0].data.len()];
            for (r, row) in x[0].data.chunks(n).enumerate() {
                let (xhat, _) = normalize(row, *eps, rms);
                for j in 0..n {
                    let b = if rms { 0.0 } else { x[2].data[j] };
                    d[r * n + j] = xhat[j] * x[1].data[j] + b;
                }
            }
            t(d)
        }
        Op::LayerNormGradX { eps } | Op::RmsNormGradX { eps } => {
            let rms = matches!(op, Op::RmsNormGradX { .. });
            let (xs, w, dy) = (x[0], x[1], x[2]);
            let n = xs.last();
            let mut d = vec![0.0; xs.data.len()];
            for (r, row) in xs.data.chunks(n).enumerate() {
                let (xhat, inv) = normalize(row, *eps, rms);
                let g: Vec<f64> = (0..n).map(|j| dy.data[r * n + j] * w.data[j]).collect();
                let mean_g = if rms {
                    0.0
                } else {
                    g.iter().sum::<f64>() / n as f64
                };
                let mean_gx = g.iter().zip(&xhat).map(|(a, b)| a * b).sum::<f64>() / n as f64;
                for j in 0..n {
                    d[r * n + j] = inv * (g[j] - mean_g - xhat[j] * mean_gx);
                }
            }
            t(d)
        }
        Op::LayerNormGradW { eps } | Op::RmsNormGradW { eps } => {
            let rms = matches!(op, Op::RmsNormGradW { .. });
            let n = x[0].last();
            let mut d = vec![0.0; n];
            for (r, row) in x[0].data.chunks(n).enumerate() {
                let (xhat, _) = normalize(row, *eps, rms);
                for j in 0..n {
                    d[j] += x[1].data[r * n + j] * xhat[j];
                }
            }
            t(d)
        }
        Op::Embedding => {
            let (table, ids) = (x[0], x[1]);
            let (rows, h) = (table.shape[0], table.shape[1] as usize);
            let mut d = Vec::with_capacity(ids.data.len() * h);
            for &id in &ids.data {
                let id = id as i64;
                if id < 0 || id as u64 >= rows {
                    return Err(EvalError::Index {
                        node,
                        op: "embedding",
                        index: id,
                        len: rows,
                    });
                }
                d.extend_from_slice(&table.data[id as usize * h..(id as usize + 1) * h]);
            }
            t(d)
        }
        Op::EmbeddingGrad { rows } => {
            let (dy, ids) = (x[0], x[1]);
            let h = dy.last();
            let mut d = vec![0.0; *rows as usize * h];
            for (k, &id) in ids.data.iter().enumerate() {
                let id = id as i64;
                if id < 0 {
                    continue;
                }
                if id as u64 >= *rows {
                    return Err(EvalError::Index {
                        node,
                        op: "embedding_grad",
                        index: id,
                        len: *rows,
                    });
                }
                for j in 0..h {
                    d[id as usize * h + j] += dy.data[k * h + j];
                }
            }
            t(d)
        }
        Op::Rope { theta, inverse } => t(rope(x[0], *theta, *inverse)),
        Op::SplitHeads { heads } => {
            let (b, s, w) = (shape[0] as usize, shape[2] as usize, x[0].shape[2] as usize);
            let (h, dd) = (*heads as usize, shape[3] as usize);
            let mut d = vec![0.0; x[0].data.len()];
            for bi in 0..b {
                for hi in 0..h {
                    for si in 0..s {
                        for di in 0..dd {
                            d[((bi * h + hi) * s + si) * dd + di] =
                                x[0].data[(bi * s + si) * w + hi * dd + di];
                        }
                    }
                }
            }
            t(d)
        }
        Op::MergeHeads => {
            let s = &x[0].shape;
            let (b, h, sq, dd) = (s[0] as usize, s[1] as usize, s[2] as usize, s[3] as usize);
            let mut d = vec![0.0; x[0].data.len()];
            for bi in 0..b {
                for hi in 0..h {
                    for si in 0..sq {
                        for di in 0..dd {
                            d[(bi * sq + si) * h * dd + hi * dd + di] =
                                x[0].data[((bi * h + hi) * sq + si) * dd + di];
                        }
                    }
                }
            }
            t(d)
        }
        Op::RepeatKv { groups } | Op::SumKv { groups } => {
            let g = *groups as usize;
            let (big, small) = if matches!(op, Op::RepeatKv { .. }) {
                (shape, &x[0].shape[..])
            } else {
                (&x[0].shape[..], shape)
            };
            let (b, hb) = (big[0] as usize, big[1] as usize);
            let plane = (big[2] * big[3]) as usize;
            let hs = small[1] as usize;
            let mut d = vec![0.0; shape.iter().product::<u64>() as usize];
            for bi in 0..b {
                for h in 0..hb {
                    let (bo, so) = ((bi * hb + h) * plane, (bi * hs + h / g) * plane);
                    for k in 0..plane {
                        if matches!(op, Op::RepeatKv { .. }) {
                            d[bo + k] = x[0].data[so + k];
                        } else {
                            d[so + k] += x[0].data[bo + k];
                        }
                    }
                }
            }
            t(d)
        }
        Op::Slice { axis, start, .. } | Op::Pad { axis, start, .. } => {
            let slice = matches!(op, Op::Slice { .. });
            let a = *axis as usize;
            let (src, dst) = (&x[0].shape, shape);
            let inner: u64 = src[a + 1..].iter().product();
            let outer: u64 = src[..a].iter().product();
            let mut d = vec![0.0; dst.iter().product::<u64>() as usize];
            let (ls, ld) = (src[a], dst[a]);
            let moved = ls.min(ld);
            for o in 0..outer {
                for k in 0..moved {
                    let (ks, kd) = if slice {
                        (k + start, k)
                    } else {
                        (k, k + start)
                    };
                    let (s0, d0) = (
                        ((o * ls + ks) * inner) as usize,
                        ((o * ld + kd) * inner) as usize,
                    );
                    d[d0..d0 + inner as usize].copy_from_slice(&x[0].data[s0..s0 + inner as usize]);
                }
            }
            t(d)
        }
        Op::RowMean => {
            let n = x[0].last();
            let mut d = Vec::with_capacity(x[0].data.len());
            for row in x[0].data.chunks(n) {
                let mean = row.iter().sum::<f64>() / n as f64;
                d.extend(std::iter::repeat_n(mean, n));
            }
            t(d)
        }
        Op::LogSoftmax => {
            let n = x[0].last();
            let mut d = Vec::with_capacity(x[0].data.len());
            for row in x[0].data.chunks(n) {
                let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let lse = max + row.iter().map(|z| (z - max).exp()).sum::<f64>().ln();
                d.extend(row.iter().map(|z| z - lse));
            }
            t(d)
        }
        Op::LogSoftmaxGrad => {
            let (y, dy) = (x[0], x[1]);
            let n = y.last();
            let mut d = Vec::with_capacity(y.data.len());
            for (yr, dr) in y.data.chunks(n).zip(dy.data.chunks(n)) {
                let s: f64 = dr.iter().sum();
                d.extend(yr.iter().zip(dr).map(|(a, b)| b - a.exp() * s));
            }
            t(d)
        }
        Op::CrossEntropy { shift }
        | Op::CrossEntropyGrad { shift }
        | Op::Nll { shift }
        | Op::NllGrad { shift } => {
            let grad = matches!(op, Op::CrossEntropyGrad { .. } | Op::NllGrad { .. });
            // nll / nll_grad read log-probabilities: the loss is -logp[label].
            let nll = matches!(op, Op::Nll { .. } | Op::NllGrad { .. });
            let (logits, labels) = (x[0], x[1]);
            let (b, s, v) = (
                logits.shape[0] as usize,
                logits.shape[1] as usize,
                logits.shape[2] as usize,
            );
            let mut counted = 0usize;
            let mut total = 0.0;
            let mut d = vec![0.0; if grad { logits.data.len() } else { 0 }];
            let mut rows = Vec::new();
            for bi in 0..b {
                for ti in 0..s {
                    let li = if *shift { ti + 1 } else { ti };
                    if li >= s {
                        continue;
                    }
                    let label = labels.data[bi * s + li] as i64;
                    if label == -100 {
                        continue;
                    }
                    if label < 0 || label as usize >= v {
                        return Err(EvalError::Index {
                            node,
                            op: op.name(),
                            index: label,
                            len: v as u64,
                        });
                    }
                    counted += 1;
                    rows.push(((bi * s + ti) * v, label as usize));
                }
            }
            let scale = if grad {
                x[2].data[0] / counted as f64
            } else {
                0.0
            };
            for (base, label) in rows {
                let row = &logits.data[base..base + v];
                if nll {
                    total -= row[label];
                    if grad {
                        d[base + label] = -scale;
                    }
                    continue;
                }
                let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = row.iter().map(|z| (z - max).exp()).sum();
                let lse = max + sum.ln();
                total += lse - row[label];
                if grad {
                    for j in 0..v {
                        let p = (row[j] - lse).exp();
                        d[base + j] = scale * (p - if j == label { 1.0 } else { 0.0 });
                    }
                }
            }
            if grad {
                t(d)
            } else {
                Tensor::scalar(total / counted as f64)
            }
        }
        Op::MatMulEpilogue(_)
        | Op::Param { .. }
        | Op::Input { .. }
        | Op::State { .. }
        | Op::Const { .. }
        | Op::Output { .. }
        | Op::Assign { .. } => {
            unreachable!("sources and sinks are handled by eval")
        }
    })
}

/// `(x - mean) / sqrt(var + eps)` (or `x / sqrt(mean(x^2) + eps)`) and the inverse deviation.
fn normalize(row: &[f64], eps: f64, rms: bool) -> (Vec<f64>, f64) {
    let n = row.len() as f64;
    let mean = if rms {
        0.0
    } else {
        row.iter().sum::<f64>() / n
    };
    let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    let inv = 1.0 / (var + eps).sqrt();
    (row.iter().map(|v| (v - mean) * inv).collect(), inv)
}

fn matmul(a: &Tensor, b: &Tensor, ta: bool, tb: bool) -> Vec<f64> {
    let (ar, br) = (a.shape.len(), b.shape.len());
    let (m, k) = if ta {
        (a.shape[ar - 1], a.shape[ar - 2])
    } else {
        (a.shape[ar - 2], a.shape[ar - 1])
    };
    let n = if tb { b.shape[br - 2] } else { b.shape[br - 1] };
    let (m, k, n) = (m as usize, k as usize, n as usize);
    let batches = a.data.len() / (m * k);
    let shared = br == 2;
    let mut out = vec![0.0; batches * m * n];
    for bt in 0..batches {
        let ao = bt * m * k;
        let bo = if shared { 0 } else { bt * k * n };
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0;
                for p in 0..k {
                    let av = if ta {
                        a.data[ao + p * m + i]
                    } else {
                        a.data[ao + i * k + p]
                    };
                    let bv = if tb {
                        b.data[bo + j * k + p]
                    } else {
                        b.data[bo + p * n + j]
                    };
                    s += av * bv;
                }
                out[(bt * m + i) * n + j] = s;
            }
        }
    }
    out
}

/// Fused attention, or (with `grad`) one of its gradients; operands as
/// [`Op::Attention`] / [`Op::AttentionGrad`] take them.
fn attention(x: &[&Tensor], scale: f64, causal: bool, grad: Option<AttentionPart>) -> Vec<f64> {
    let (q, k, v) = (x[0], x[1], x[2]);
    let (b, h, s, d) = (
        q.shape[0] as usize,
        q.shape[1] as usize,
        q.shape[2] as usize,
        q.shape[3] as usize,
    );
    let kv = k.shape[1] as usize;
    let group = h / kv;
    let mask = x.get(if grad.is_some() { 5 } else { 3 }).copied();
    let at = |t: &Tensor, bi: usize, hi: usize, heads: usize, i: usize, c: usize| {
        t.data[((bi * heads + hi) * s + i) * d + c]
    };
    let out_len = match grad {
        Some(AttentionPart::K | AttentionPart::V) => k.data.len(),
        _ => q.data.len(),
    };
    let mut out = vec![0.0; out_len];
    for bi in 0..b {
        for hi in 0..h {
            let kh = hi / group;
            // probabilities P (s x s)
            let mut p = vec![0.0; s * s];
            for i in 0..s {
                let keep = |j: usize| {
                    (!causal || j <= i) && mask.is_none_or(|m| m.data[bi * s + j] != 0.0)
                };
                let sc: Vec<f64> = (0..s)
                    .map(|j| {
                        scale
                            * (0..d)
                                .map(|c| at(q, bi, hi, h, i, c) * at(k, bi, kh, kv, j, c))
                                .sum::<f64>()
                    })
                    .collect();
                let max = (0..s)
                    .filter(|&j| keep(j))
                    .map(|j| sc[j])
                    .fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = (0..s)
                    .filter(|&j| keep(j))
                    .map(|j| (sc[j] - max).exp())
                    .sum();
                for j in 0..s {
                    p[i * s + j] = if keep(j) {
                        (sc[j] - max).exp() / sum
                    } else {
                        0.0
                    };
                }
            }
            let Some(part) = grad else {
                for i in 0..s {
                    for c in 0..d {
                        out[((bi * h + hi) * s + i) * d + c] =
                            (0..s).map(|j| p[i * s + j] * at(v, bi, kh, kv, j, c)).sum();
                    }
                }
                continue;
            };
            let d_o = x[4];
            // dP = dO V^T, dS = P * (dP - rowsum(P * dP))
            let mut ds = vec![0.0; s * s];
            for i in 0..s {
                let dp: Vec<f64> = (0..s)
                    .map(|j| {
                        (0..d)
                            .map(|c| at(d_o, bi, hi, h, i, c) * at(v, bi, kh, kv, j, c))
                            .sum()
                    })
                    .collect();
                let row: f64 = (0..s).map(|j| p[i * s + j] * dp[j]).sum();
                for j in 0..s {
                    ds[i * s + j] = p[i * s + j] * (dp[j] - row);
                }
            }
            for i in 0..s {
                for c in 0..d {
                    match part {
                        AttentionPart::Q => {
                            out[((bi * h + hi) * s + i) * d + c] = scale
                                * (0..s)
                                    .map(|j| ds[i * s + j] * at(k, bi, kh, kv, j, c))
                                    .sum::<f64>();
                        }
                        AttentionPart::K => {
                            // row i here is key j = i
                            out[((bi * kv + kh) * s + i) * d + c] += scale
                                * (0..s)
                                    .map(|r| ds[r * s + i] * at(q, bi, hi, h, r, c))
                                    .sum::<f64>();
                        }
                        AttentionPart::V => {
                            out[((bi * kv + kh) * s + i) * d + c] += (0..s)
                                .map(|r| p[r * s + i] * at(d_o, bi, hi, h, r, c))
                                .sum::<f64>();
                        }
                    }
                }
            }
        }
    }
    out
}

fn softmax(x: &Tensor, mask: Mask, key_mask: Option<&Tensor>) -> Vec<f64> {
    let n = x.last();
    let rank = x.shape.len();
    let (heads, queries) = if rank == 4 {
        (x.shape[1] as usize, x.shape[2] as usize)
    } else {
        (1, 1)
    };
    let mut d = vec![0.0; x.data.len()];
    for (r, row) in x.data.chunks(n).enumerate() {
        let (q, b) = (r % queries, r / (queries * heads));
        let keep = |j: usize| {
            (mask != Mask::Causal || j <= q) && key_mask.is_none_or(|km| km.data[b * n + j] != 0.0)
        };
        let max = (0..n)
            .filter(|&j| keep(j))
            .map(|j| row[j])
            .fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = (0..n)
            .filter(|&j| keep(j))
            .map(|j| (row[j] - max).exp())
            .sum();
        for j in 0..n {
            d[r * n + j] = if keep(j) {
                (row[j] - max).exp() / sum
            } else {
                0.0
            };
        }
    }
    d
}

fn rope(x: &Tensor, theta: f64, inverse: bool) -> Vec<f64> {
    let (s, dd) = (x.shape[2] as usize, x.shape[3] as usize);
    let half = dd / 2;
    let sign = if inverse { -1.0 } else { 1.0 };
    let mut out = x.data.clone();
    for (r, row) in x.data.chunks(dd).enumerate() {
        let pos = (r % s) as f64;
        for j in 0..half {
            let inv_freq = theta.powf(-((2 * j) as f64) / dd as f64);
            let (sin, cos) = (pos * inv_freq).sin_cos();
            let (a, b) = (row[j], row[j + half]);
            out[r * dd + j] = a * cos - sign * b * sin;
            out[r * dd + j + half] = b * cos + sign * a * sin;
        }
    }
    out
}
