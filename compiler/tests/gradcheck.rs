//! Finite-difference checks of every autodiff rule: each op alone (on
//! random inputs, with a random linear read-out as the loss), then the
//! whole loss of tiny GPT-2, Llama and BERT models, all in exact f64.

use std::collections::HashMap;

use tessera_compiler::autodiff::backward;
use tessera_compiler::ir::eval::{eval, Rounding, Tensor};
use tessera_compiler::ir::{Graph, Mask, Op, TensorType, Unary, ValueId};
use tessera_compiler::model::{Activation, Family, ModelConfig};
use tessera_compiler::setup::TrainingSetup;
use tessera_compiler::{build, ir};
use tessera_isa::DType;

/// A small deterministic generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }

    fn tensor(&mut self, shape: &[u64], scale: f64, shift: f64) -> Tensor {
        let n = shape.iter().product::<u64>() as usize;
        Tensor::new(shape, (0..n).map(|_| self.next() * scale + shift).collect())
    }
}

fn f32t(shape: &[u64]) -> TensorType {
    TensorType::new(shape, DType::Fp32)
}

/// Checks d(loss)/d(param) for every parameter element (or a sample of
/// `max_coords` of them) against central differences.
fn check(
    g: &Graph,
    loss: ValueId,
    feeds: &HashMap<String, Tensor>,
    max_coords: usize,
    tol: f64,
    what: &str,
) {
    let mut g = g.clone();
    let seed = g
        .push(
            Op::Const {
                value: 1.0,
                ty: TensorType::scalar(),
            },
            &[],
        )
        .unwrap();
    let grads = backward(&mut g, loss, seed).unwrap();
    ir::verify::verify(&g).unwrap();
    assert!(!grads.params.is_empty(), "{what}: no gradients");
    let run = |f: &HashMap<String, Tensor>| eval(&g, f, Rounding::Exact).unwrap();
    let base = run(feeds);
    for (_, name, d) in &grads.params {
        let analytic = base.values[d.0].as_ref().unwrap().data.clone();
        let n = analytic.len();
        let stride = (n / max_coords.max(1)).max(1);
        for k in (0..n).step_by(stride) {
            let h = 1e-6;
            let mut plus = feeds.clone();
            plus.get_mut(name).unwrap().data[k] += h;
            let mut minus = feeds.clone();
            minus.get_mut(name).unwrap().data[k] -= h;
            let lp = run(&plus).values[loss.0].as_ref().unwrap().data[0];
            let lm = run(&minus).values[loss.0].as_ref().unwrap().data[0];
            let numeric = (lp - lm) / (2.0 * h);
            let err = (numeric - analytic[k]).abs() / (1e-3 + numeric.abs().max(analytic[k].abs()));
            assert!(
                err < tol,
                "{what}: d/d {name}[{k}]: analytic {} vs numeric {numeric} (rel err {err:.2e})",
                analytic[k]
            );
        }
    }
}

/// Builds `loss = sum(op(params...) * r)` and checks it.
fn check_op(op: Op, operands: &[(&str, TensorType, Option<Tensor>)], rng: &mut Rng) {
    let mut g = Graph::new("op");
    let mut feeds = HashMap::new();
    let mut ids = Vec::new();
    for (name, ty, value) in operands {
        let v = if ty.dtype == DType::Int32 || name.starts_with("in:") {
            g.push(
                Op::Input {
                    name: name.to_string(),
                    ty: ty.clone(),
                },
                &[],
            )
            .unwrap()
        } else {
            g.push(
                Op::Param {
                    name: name.to_string(),
                    ty: ty.clone(),
                },
                &[],
            )
            .unwrap()
        };
        feeds.insert(
            name.to_string(),
            value
                .clone()
                .unwrap_or_else(|| rng.tensor(&ty.shape, 1.0, 0.0)),
        );
        ids.push(v);
    }
    let name = op.name();
    let y = g.push(op, &ids).unwrap();
    let yt = g.ty(y).clone();
    let r = g
        .push(
            Op::Input {
                name: "readout".into(),
                ty: f32t(&yt.shape),
            },
            &[],
        )
        .unwrap();
    feeds.insert("readout".into(), rng.tensor(&yt.shape, 1.0, 0.0));
    let p = g.push(Op::Mul, &[y, r]).unwrap();
    let loss = g.push(Op::SumAll, &[p]).unwrap();
    check(&g, loss, &feeds, 40, 1e-5, name);
}

#[test]
fn every_forward_op_has_a_correct_gradient() {
    let mut rng = Rng(7);
    let p = |name: &'static str, shape: &[u64]| (name, f32t(shape), None);
    let positive = |rng: &mut Rng, shape: &[u64]| Some(rng.tensor(shape, 0.5, 1.5));
    for (op, shape) in [
        (Op::Add, [2u64, 3, 4]),
        (Op::Sub, [2, 3, 4]),
        (Op::Mul, [2, 3, 4]),
    ] {
        check_op(op.clone(), &[p("a", &shape), p("b", &shape)], &mut rng);
        // broadcast a bias and a scalar
        check_op(op.clone(), &[p("a", &shape), p("b", &[4])], &mut rng);
        check_op(op, &[p("a", &shape), p("b", &[])], &mut rng);
    }
    let b = positive(&mut rng, &[4]);
    check_op(Op::Div, &[p("a", &[3, 4]), ("b", f32t(&[4]), b)], &mut rng);
    check_op(
        Op::Affine {
            scale: -1.5,
            shift: 0.25,
        },
        &[p("a", &[3, 4])],
        &mut rng,
    );
    for u in [
        Unary::Neg,
        Unary::Exp,
        Unary::Square,
        Unary::GeluTanh,
        Unary::GeluErf,
        Unary::Silu,
    ] {
        check_op(Op::Unary(u), &[p("x", &[3, 5])], &mut rng);
    }
    for u in [Unary::Log, Unary::Sqrt, Unary::Rsqrt, Unary::Recip] {
        let x = positive(&mut rng, &[3, 5]);
        check_op(Op::Unary(u), &[("x", f32t(&[3, 5]), x)], &mut rng);
    }
    check_op(Op::Cast { to: DType::Fp32 }, &[p("x", &[3, 2])], &mut rng);
    check_op(
        Op::Reshape { shape: vec![6, 2] },
        &[p("x", &[3, 4])],
        &mut rng,
    );
    for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
        let a = if ta { [2, 5, 3] } else { [2, 3, 5] };
        let b = if tb { [2, 4, 5] } else { [2, 5, 4] };
        check_op(
            Op::MatMul {
                ta,
                tb,
                out: DType::Fp32,
            },
            &[p("a", &a), p("b", &b)],
            &mut rng,
        );
        let b2 = if tb { [4, 5] } else { [5, 4] };
        if !ta {
            check_op(
                Op::MatMul {
                    ta,
                    tb,
                    out: DType::Fp32,
                },
                &[p("a", &a), p("b", &b2)],
                &mut rng,
            );
        }
    }
    check_op(Op::SumAll, &[p("x", &[2, 3])], &mut rng);
    check_op(
        Op::Softmax { mask: Mask::None },
        &[p("x", &[2, 3, 5])],
        &mut rng,
    );
    check_op(
        Op::Softmax { mask: Mask::Causal },
        &[p("x", &[2, 2, 4, 4])],
        &mut rng,
    );
    let km = Tensor::new(&[2, 4], vec![1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0]);
    check_op(
        Op::Softmax { mask: Mask::None },
        &[p("x", &[2, 2, 4, 4]), ("in:mask", f32t(&[2, 4]), Some(km))],
        &mut rng,
    );
    for causal in [false, true] {
        check_op(
            Op::Attention { scale: 0.4, causal },
            &[
                p("q", &[2, 4, 5, 3]),
                p("k", &[2, 2, 5, 3]),
                p("v", &[2, 2, 5, 3]),
            ],
            &mut rng,
        );
    }
    let km2 = Tensor::new(
        &[2, 5],
        vec![1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0],
    );
    check_op(
        Op::Attention {
            scale: 0.7,
            causal: false,
        },
        &[
            p("q", &[2, 2, 5, 3]),
            p("k", &[2, 2, 5, 3]),
            p("v", &[2, 2, 5, 3]),
            ("in:mask", f32t(&[2, 5]), Some(km2)),
        ],
        &mut rng,
    );
    check_op(
        Op::LayerNorm { eps: 1e-5 },
        &[p("x", &[3, 6]), p("w", &[6]), p("b", &[6])],
        &mut rng,
    );
    check_op(
        Op::RmsNorm { eps: 1e-6 },
        &[p("x", &[3, 6]), p("w", &[6])],
        &mut rng,
    );
    let ids = Tensor::new(&[2, 3], vec![0.0, 4.0, 2.0, 4.0, 1.0, 0.0]);
    check_op(
        Op::Embedding,
        &[
            p("table", &[5, 3]),
            ("ids", TensorType::new(&[2, 3], DType::Int32), Some(ids)),
        ],
        &mut rng,
    );
    check_op(
        Op::Rope {
            theta: 10000.0,
            inverse: false,
        },
        &[p("x", &[1, 2, 5, 4])],
        &mut rng,
    );
    check_op(Op::SplitHeads { heads: 2 }, &[p("x", &[2, 3, 4])], &mut rng);
    check_op(Op::MergeHeads, &[p("x", &[2, 2, 3, 2])], &mut rng);
    check_op(
        Op::RepeatKv { groups: 3 },
        &[p("x", &[1, 2, 3, 2])],
        &mut rng,
    );
    check_op(
        Op::Slice {
            axis: 1,
            start: 1,
            len: 2,
        },
        &[p("x", &[2, 4, 3])],
        &mut rng,
    );
    check_op(
        Op::Pad {
            axis: 0,
            start: 1,
            total: 4,
        },
        &[p("x", &[2, 3])],
        &mut rng,
    );
    check_op(Op::RowMean, &[p("x", &[3, 5])], &mut rng);
    check_op(Op::LogSoftmax, &[p("x", &[2, 3, 5])], &mut rng);
    for shift in [false, true] {
        let labels = Tensor::new(&[2, 3], vec![1.0, -100.0, 3.0, 0.0, 2.0, 4.0]);
        check_op(
            Op::Nll { shift },
            &[
                p("logp", &[2, 3, 5]),
                (
                    "labels",
                    TensorType::new(&[2, 3], DType::Int32),
                    Some(labels.clone()),
                ),
            ],
            &mut rng,
        );
        check_op(
            Op::CrossEntropy { shift },
            &[
                p("logits", &[2, 3, 5]),
                (
                    "labels",
                    TensorType::new(&[2, 3], DType::Int32),
                    Some(labels),
                ),
            ],
            &mut rng,
        );
    }
}

fn tiny(family: Family) -> ModelConfig {
    let mut m = ModelConfig::preset(match family {
        Family::Gpt2 => "gpt2-small",
        Family::Llama => "llama-7b",
        Family::Bert => "bert-base",
    })
    .unwrap();
    m.name = format!("tiny-{}", family.model_type());
    m.vocab_size = 11;
    m.hidden = 8;
    m.layers = 2;
    m.heads = 2;
    m.kv_heads = if family == Family::Llama { 1 } else { 2 };
    m.ffn_hidden = 12;
    m.max_positions = 6;
    if family == Family::Bert {
        m.activation = Activation::GeluErf;
    }
    m
}

/// Feeds for every parameter and input of a model graph.
fn model_feeds(g: &Graph, rng: &mut Rng, vocab: u64) -> HashMap<String, Tensor> {
    let mut feeds = HashMap::new();
    for node in &g.nodes {
        match &node.op {
            Op::Param { name, ty } => {
                let t = if name.contains("LayerNorm.weight")
                    || name.contains("ln_")
                    || name.contains("norm")
                {
                    rng.tensor(&ty.shape, 0.1, 1.0)
                } else {
                    rng.tensor(&ty.shape, 0.3, 0.0)
                };
                feeds.insert(name.clone(), t);
            }
            Op::Input { name, ty } => {
                let n = ty.elements() as usize;
                let data: Vec<f64> = match name.as_str() {
                    "attention_mask" => {
                        (0..n).map(|i| if i % 5 == 4 { 0.0 } else { 1.0 }).collect()
                    }
                    "token_type_ids" => vec![0.0; n],
                    "labels" if g.name.contains("bert") => (0..n)
                        .map(|i| {
                            if i % 3 == 0 {
                                ((i * 7) as u64 % vocab) as f64
                            } else {
                                -100.0
                            }
                        })
                        .collect(),
                    _ => (0..n)
                        .map(|i| ((i * 5 + 3) as u64 % vocab) as f64)
                        .collect(),
                };
                feeds.insert(name.clone(), Tensor::new(&ty.shape, data));
            }
            _ => {}
        }
    }
    feeds
}

#[test]
fn tiny_models_have_correct_gradients() {
    let mut rng = Rng(11);
    for family in [Family::Gpt2, Family::Llama, Family::Bert] {
        let m = tiny(family);
        let setup = TrainingSetup::new(2, 5);
        let fwd = build::forward(&m, &setup).unwrap();
        let feeds = model_feeds(&fwd.graph, &mut rng, m.vocab_size);
        check(&fwd.graph, fwd.loss, &feeds, 6, 1e-4, family.model_type());
    }
}

/// The fused matmul epilogue, every combination the fusion pass can form
/// (cast is exact in f64): its rule reads the `pre` part for the GELU.
#[test]
fn matmul_epilogue_has_correct_gradients() {
    use tessera_compiler::ir::{Epilogue, EpiloguePart};
    let mut rng = Rng(13);
    let cases = [
        // (bias, act, residual, out, ta, tb)
        (true, None, false, DType::Fp32, false, false),
        (
            true,
            Some(Unary::GeluTanh),
            false,
            DType::Bf16,
            false,
            false,
        ),
        (true, Some(Unary::GeluErf), true, DType::Fp32, false, true),
        (false, Some(Unary::GeluTanh), true, DType::Fp32, true, false),
        (false, None, true, DType::Fp32, false, true),
        (true, None, true, DType::Fp16, false, false),
    ];
    for (bias, act, residual, out, ta, tb) in cases {
        let e = Epilogue {
            ta,
            tb,
            bias,
            act,
            residual,
            out,
            part: EpiloguePart::Out,
        };
        // A transposed left operand is 2-D (the batched form has no rule).
        let a: &[u64] = if ta { &[4, 3] } else { &[2, 3, 4] };
        let y: &[u64] = if ta { &[3, 5] } else { &[2, 3, 5] };
        let b = if tb { [5, 4] } else { [4, 5] };
        let mut operands = vec![("a", f32t(a), None), ("b", f32t(&b), None)];
        if bias {
            operands.push(("bias", f32t(&[5]), None));
        }
        if residual {
            operands.push(("res", f32t(y), None));
        }
        check_op(Op::MatMulEpilogue(e), &operands, &mut rng);
    }
}

/// Fused and unfused bf16-mixed training steps of tiny models compute the
/// same loss, gradient norm and updated parameters (exact f64 evaluation),
/// and the fused step really contains `matmul_epilogue` ops.
#[test]
fn fused_epilogues_match_the_unfused_chain() {
    use tessera_compiler::fuse::Fusion;
    use tessera_compiler::setup::Precision;
    use tessera_compiler::step::{training_graph, Stage};
    let mut rng = Rng(17);
    for family in [Family::Gpt2, Family::Llama, Family::Bert] {
        let m = tiny(family);
        let mut setup = TrainingSetup::new(2, 5);
        setup.precision = Precision::Bf16Mixed;
        setup.fusion = Fusion::ALL;
        let fused = training_graph(&m, &setup, Stage::Step).unwrap();
        setup.fusion.disable("epilogue").unwrap();
        let plain = training_graph(&m, &setup, Stage::Step).unwrap();
        let count = |g: &Graph| {
            g.nodes
                .iter()
                .filter(|n| matches!(n.op, Op::MatMulEpilogue(_)))
                .count()
        };
        assert!(count(&fused) > 0, "{}: nothing fused", m.name);
        assert_eq!(count(&plain), 0);
        let feeds = model_feeds(&fused, &mut rng, m.vocab_size);
        let (f, p) = (
            eval(&fused, &feeds, Rounding::Exact).unwrap(),
            eval(&plain, &feeds, Rounding::Exact).unwrap(),
        );
        let close = |x: f64, y: f64| (x - y).abs() <= 1e-9 * (1.0 + x.abs().max(y.abs()));
        assert_eq!(
            f.outputs.keys().collect::<Vec<_>>(),
            p.outputs.keys().collect::<Vec<_>>()
        );
        for (name, t) in f.outputs.iter().chain(&f.assigned) {
            let u = p
                .outputs
                .get(name)
                .or_else(|| p.assigned.get(name))
                .unwrap();
            for (x, y) in t.data.iter().zip(&u.data) {
                assert!(
                    close(*x, *y),
                    "{}: {name}: fused {x} vs unfused {y}",
                    m.name
                );
            }
        }
        assert_eq!(f.assigned.len(), p.assigned.len());
    }
}
