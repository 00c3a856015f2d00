//! Each row-wise op, lowered to a kernel and linked, runs on the functional
//! simulator and agrees with the IR interpreter (which rounds every value
//! to its element type), and the linked program is race-free by the
//! checker. Shapes are chosen so blocks, tails and broadcasts all occur.

use std::collections::HashMap;

use tessera_compiler::ir::eval::{eval, Rounding, Tensor};
use tessera_compiler::ir::{Graph, Mask, Op, TensorType, Unary, ValueId};
use tessera_compiler::lower::link::Linker;
use tessera_compiler::lower::vector_ops::{lower_rowwise, Placement};
use tessera_isa::program::MemSpace;
use tessera_isa::{check, Arch, DType};
use tessera_sim::{numerics, run_functional, Memory};

struct Bump(Vec<u64>);

impl Placement for Bump {
    fn addr(&self, v: ValueId) -> u64 {
        self.0[v.0]
    }
}

fn place(g: &Graph) -> Bump {
    let mut at = 0;
    Bump(
        g.nodes
            .iter()
            .map(|n| {
                let a = at;
                at += n.ty.as_ref().map_or(0, |t| t.bytes()).div_ceil(256) * 256 + 256;
                a
            })
            .collect(),
    )
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
}

fn write(mem: &mut Memory, addr: u64, t: &Tensor, dtype: DType) {
    let size = dtype.size_bytes() as usize;
    let mut bytes = vec![0u8; t.data.len() * size];
    for (i, v) in t.data.iter().enumerate() {
        if dtype == DType::Int32 {
            bytes[i * 4..i * 4 + 4].copy_from_slice(&(*v as i32).to_le_bytes());
        } else {
            numerics::store(dtype, *v as f32, &mut bytes[i * size..(i + 1) * size]);
        }
    }
    mem.write(MemSpace::Hbm, addr, &bytes).unwrap();
}

fn read(mem: &Memory, addr: u64, ty: &TensorType) -> Vec<f64> {
    let size = ty.dtype.size_bytes() as usize;
    let bytes = mem
        .read_vec(MemSpace::Hbm, addr, ty.elements() as usize * size)
        .unwrap();
    bytes
        .chunks(size)
        .map(|c| f64::from(numerics::load(ty.dtype, c)))
        .collect()
}

/// Lowers every non-source node of `g`, runs it, and compares every value.
fn run_and_compare(g: &Graph, arch: &Arch, feeds: &HashMap<String, Tensor>, tol: f64, what: &str) {
    let placement = place(g);
    let mut linker = Linker::new(arch);
    for (i, n) in g.nodes.iter().enumerate() {
        if n.op.is_source() || n.ty.is_none() {
            continue;
        }
        let kernels = lower_rowwise(g, i, &placement)
            .unwrap()
            .unwrap_or_else(|| panic!("{what}: no kernel for {}", n.op.name()));
        for k in kernels {
            let p = k.lower(arch).unwrap_or_else(|e| panic!("{what}: {e}"));
            linker.push(&p, n.op.name()).unwrap();
        }
    }
    let program = linker.finish().unwrap();
    let report = check::check(&program);
    assert!(report.is_clean(), "{what}: {:?}", report.findings);
    let mut mem = Memory::new(arch);
    let reference = eval(g, feeds, Rounding::ToType).unwrap();
    for (i, n) in g.nodes.iter().enumerate() {
        if let (true, Some(ty)) = (n.op.is_source(), &n.ty) {
            write(
                &mut mem,
                placement.0[i],
                reference.values[i].as_ref().unwrap(),
                ty.dtype,
            );
        }
    }
    run_functional(&program, &mut mem, 1 << 40).unwrap_or_else(|e| panic!("{what}: {e}"));
    for (i, n) in g.nodes.iter().enumerate() {
        let Some(ty) = &n.ty else { continue };
        let want = &reference.values[i].as_ref().unwrap().data;
        let got = read(&mem, placement.0[i], ty);
        for (k, (a, b)) in got.iter().zip(want).enumerate() {
            let ok = (a - b).abs() <= tol * (1.0 + b.abs()) || (a.is_nan() && b.is_nan());
            assert!(
                ok,
                "{what}: %{i} {} [{k}]: simulated {a} vs reference {b}",
                n.op.name()
            );
        }
    }
}

fn fp32(shape: &[u64]) -> TensorType {
    TensorType::new(shape, DType::Fp32)
}

/// A graph with parameters `a` (and `b`) and one op.
fn single(
    op: Op,
    shapes: &[(&str, TensorType)],
    rng: &mut Rng,
) -> (Graph, HashMap<String, Tensor>) {
    let mut g = Graph::new("op");
    let mut feeds = HashMap::new();
    let mut ids = Vec::new();
    for (name, ty) in shapes {
        ids.push(
            g.push(
                Op::Param {
                    name: name.to_string(),
                    ty: ty.clone(),
                },
                &[],
            )
            .unwrap(),
        );
        let data = (0..ty.elements())
            .map(|_| rng.next() * 2.0 + if *name == "pos" { 2.5 } else { 0.0 })
            .collect();
        feeds.insert(name.to_string(), Tensor::new(&ty.shape, data));
    }
    g.push(op, &ids).unwrap();
    (g, feeds)
}

#[test]
fn rowwise_ops_match_the_interpreter() {
    let arch = Arch::preset("fpga-8x8").unwrap();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let big = [3u64, 70, 24]; // 210 rows: several blocks and a tail on the small scratchpad
    let cases: Vec<(Op, Vec<(&str, TensorType)>)> = vec![
        (Op::Add, vec![("a", fp32(&big)), ("b", fp32(&big))]),
        (Op::Sub, vec![("a", fp32(&big)), ("b", fp32(&[24]))]),
        (Op::Mul, vec![("a", fp32(&big)), ("b", fp32(&[]))]),
        (Op::Div, vec![("a", fp32(&big)), ("pos", fp32(&[70, 24]))]),
        (Op::Max, vec![("a", fp32(&big)), ("b", fp32(&[24]))]),
        (Op::Min, vec![("a", fp32(&big)), ("b", fp32(&[]))]),
        (
            Op::Affine {
                scale: 0.125,
                shift: -1.5,
            },
            vec![("a", fp32(&big))],
        ),
        (Op::Cast { to: DType::Bf16 }, vec![("a", fp32(&big))]),
        (Op::Unary(Unary::NonZero), vec![("a", fp32(&[4, 5]))]),
        (
            Op::LayerNorm { eps: 1e-5 },
            vec![("a", fp32(&big)), ("w", fp32(&[24])), ("b", fp32(&[24]))],
        ),
        (
            Op::RmsNorm { eps: 1e-6 },
            vec![("a", fp32(&big)), ("w", fp32(&[24]))],
        ),
        (Op::RowMean, vec![("a", fp32(&big))]),
        (Op::LogSoftmax, vec![("a", fp32(&big))]),
        (
            Op::LogSoftmaxGrad,
            vec![("a", fp32(&big)), ("dy", fp32(&big))],
        ),
        (
            Op::LayerNormGradX { eps: 1e-5 },
            vec![("a", fp32(&big)), ("w", fp32(&[24])), ("dy", fp32(&big))],
        ),
        (
            Op::RmsNormGradX { eps: 1e-5 },
            vec![("a", fp32(&big)), ("w", fp32(&[24])), ("dy", fp32(&big))],
        ),
        (
            Op::LayerNormGradW { eps: 1e-5 },
            vec![("a", fp32(&big)), ("dy", fp32(&big))],
        ),
        (
            Op::RmsNormGradW { eps: 1e-5 },
            vec![("a", fp32(&big)), ("dy", fp32(&big))],
        ),
        (Op::Softmax { mask: Mask::None }, vec![("a", fp32(&big))]),
        (
            Op::Softmax { mask: Mask::Causal },
            vec![("a", fp32(&[2, 3, 12, 12]))],
        ),
        (Op::SoftmaxGrad, vec![("a", fp32(&big)), ("dy", fp32(&big))]),
        (Op::SumAll, vec![("a", fp32(&big))]),
        (Op::SumTo { shape: vec![24] }, vec![("a", fp32(&big))]),
    ];
    for (op, shapes) in cases {
        let what = op.name();
        let (g, feeds) = single(op, &shapes, &mut rng);
        run_and_compare(&g, &arch, &feeds, 2e-5, what);
    }
    for u in Unary::ALL {
        if matches!(u, Unary::NonZero) {
            continue;
        }
        let (g, feeds) = single(Op::Unary(u), &[("pos", fp32(&[5, 9]))], &mut rng);
        run_and_compare(&g, &arch, &feeds, 2e-5, u.name());
    }
}

#[test]
fn key_masked_softmax_and_where_match_the_interpreter() {
    let arch = Arch::preset("fpga-8x8").unwrap();
    let mut rng = Rng(77);
    let mut g = Graph::new("masked");
    let x = g
        .push(
            Op::Param {
                name: "x".into(),
                ty: fp32(&[2, 2, 6, 6]),
            },
            &[],
        )
        .unwrap();
    let m = g
        .push(
            Op::Param {
                name: "m".into(),
                ty: fp32(&[2, 6]),
            },
            &[],
        )
        .unwrap();
    let c = g
        .push(
            Op::Param {
                name: "c".into(),
                ty: fp32(&[]),
            },
            &[],
        )
        .unwrap();
    let y = g.push(Op::Softmax { mask: Mask::None }, &[x, m]).unwrap();
    g.push(Op::Where, &[c, y, x]).unwrap();
    let mut feeds = HashMap::new();
    feeds.insert(
        "x".into(),
        Tensor::new(&[2, 2, 6, 6], (0..144).map(|_| rng.next() * 3.0).collect()),
    );
    feeds.insert(
        "m".into(),
        Tensor::new(
            &[2, 6],
            vec![1., 1., 0., 1., 1., 0., 1., 1., 1., 1., 0., 0.],
        ),
    );
    feeds.insert("c".into(), Tensor::scalar(1.0));
    run_and_compare(&g, &arch, &feeds, 2e-5, "masked softmax, where true");
    feeds.insert("c".into(), Tensor::scalar(0.0));
    run_and_compare(&g, &arch, &feeds, 2e-5, "where false");
}

/// Lowers the whole graph with the driver (memory reuse off), runs it and
/// compares every fp32 value.
fn run_graph(g: &Graph, arch: &Arch, feeds: &HashMap<String, Tensor>, tol: f64, what: &str) {
    use tessera_compiler::lower::{lower_graph_with, LowerOptions};
    let step = lower_graph_with(
        g,
        arch,
        LowerOptions {
            reuse_memory: false,
        },
    )
    .unwrap_or_else(|e| panic!("{what}: {e}"));
    let report = check::check(&step.program);
    assert!(report.is_clean(), "{what}: {:?}", report.findings);
    let reference = eval(g, feeds, Rounding::ToType).unwrap();
    let mut mem = Memory::new(arch);
    for (i, n) in g.nodes.iter().enumerate() {
        if let (true, Some(ty)) = (n.op.is_source(), &n.ty) {
            write(
                &mut mem,
                step.values[i],
                reference.values[i].as_ref().unwrap(),
                ty.dtype,
            );
        }
    }
    for c in &step.constants {
        let t = Tensor::new(
            &[c.values.len() as u64],
            c.values.iter().map(|v| f64::from(*v)).collect(),
        );
        write(&mut mem, c.addr, &t, DType::Fp32);
    }
    run_functional(&step.program, &mut mem, 1 << 40).unwrap_or_else(|e| panic!("{what}: {e}"));
    for (i, n) in g.nodes.iter().enumerate() {
        let Some(ty) = &n.ty else { continue };
        // An assigned parameter or state holds its new value at the end.
        let want = match &n.op {
            Op::Param { name, .. } | Op::State { name, .. }
                if reference.assigned.contains_key(name) =>
            {
                &reference.assigned[name].data
            }
            _ => &reference.values[i].as_ref().unwrap().data,
        };
        let got = read(&mem, step.values[i], ty);
        for (k, (a, b)) in got.iter().zip(want).enumerate() {
            let ok = (a - b).abs() <= tol * (1.0 + b.abs());
            assert!(
                ok,
                "{what}: %{i} {} [{k}]: simulated {a} vs reference {b}",
                n.op.name()
            );
        }
    }
}

#[test]
fn data_movement_embedding_rope_loss_and_matmul_match_the_interpreter() {
    let arch = Arch::preset("fpga-8x8").unwrap();
    let mut rng = Rng(99);
    let int = |shape: &[u64]| TensorType::new(shape, DType::Int32);
    let ids = Tensor::new(&[2, 5], vec![3., 0., 6., 6., 1., 2., 5., 4., 0., 3.]);
    let labels = Tensor::new(&[2, 5], vec![3., -100., 6., 6., 1., 2., 5., -100., 0., 3.]);
    type Case<'a> = (Op, Vec<(&'a str, TensorType, Option<Tensor>)>);
    let cases: Vec<Case> = vec![
        (
            Op::Rope {
                theta: 10000.0,
                inverse: false,
            },
            vec![("a", fp32(&[2, 2, 8, 8]), None)],
        ),
        (
            Op::Rope {
                theta: 500.0,
                inverse: true,
            },
            vec![("a", fp32(&[1, 3, 5, 4]), None)],
        ),
        (
            Op::Rope {
                theta: 10000.0,
                inverse: true,
            },
            vec![("a", fp32(&[2, 1, 8, 8]), None)],
        ),
        (
            Op::SplitHeads { heads: 3 },
            vec![("a", fp32(&[2, 5, 12]), None)],
        ),
        (Op::MergeHeads, vec![("a", fp32(&[2, 3, 5, 4]), None)]),
        (
            Op::Slice {
                axis: 2,
                start: 4,
                len: 4,
            },
            vec![("a", fp32(&[2, 5, 12]), None)],
        ),
        (
            Op::Slice {
                axis: 0,
                start: 0,
                len: 3,
            },
            vec![("a", fp32(&[7, 6]), None)],
        ),
        (
            Op::Pad {
                axis: 2,
                start: 4,
                total: 12,
            },
            vec![("a", fp32(&[2, 5, 4]), None)],
        ),
        (
            Op::RepeatKv { groups: 3 },
            vec![("a", fp32(&[2, 1, 5, 4]), None)],
        ),
        (
            Op::SumKv { groups: 2 },
            vec![("a", fp32(&[2, 4, 5, 4]), None)],
        ),
        (
            Op::SumTo { shape: vec![5, 6] },
            vec![("a", fp32(&[3, 5, 6]), None)],
        ),
        (
            Op::Embedding,
            vec![
                ("a", fp32(&[7, 6]), None),
                ("ids", int(&[2, 5]), Some(ids.clone())),
            ],
        ),
        (
            Op::EmbeddingGrad { rows: 7 },
            vec![
                ("a", fp32(&[2, 5, 6]), None),
                ("ids", int(&[2, 5]), Some(ids.clone())),
            ],
        ),
        (
            Op::CrossEntropy { shift: true },
            vec![
                ("a", fp32(&[2, 5, 7]), None),
                ("l", int(&[2, 5]), Some(labels.clone())),
            ],
        ),
        (
            Op::CrossEntropy { shift: false },
            vec![
                ("a", fp32(&[2, 5, 7]), None),
                ("l", int(&[2, 5]), Some(labels.clone())),
            ],
        ),
        (
            Op::CrossEntropyGrad { shift: true },
            vec![
                ("a", fp32(&[2, 5, 7]), None),
                ("l", int(&[2, 5]), Some(labels.clone())),
                ("s", fp32(&[]), Some(Tensor::scalar(0.7))),
            ],
        ),
        (
            Op::Nll { shift: true },
            vec![
                ("a", fp32(&[2, 5, 7]), None),
                ("l", int(&[2, 5]), Some(labels.clone())),
            ],
        ),
        (
            Op::Nll { shift: false },
            vec![
                ("a", fp32(&[2, 5, 7]), None),
                ("l", int(&[2, 5]), Some(labels.clone())),
            ],
        ),
        (
            Op::NllGrad { shift: true },
            vec![
                ("a", fp32(&[2, 5, 7]), None),
                ("l", int(&[2, 5]), Some(labels.clone())),
                ("s", fp32(&[]), Some(Tensor::scalar(0.7))),
            ],
        ),
        (
            Op::NllGrad { shift: false },
            vec![
                ("a", fp32(&[2, 5, 7]), None),
                ("l", int(&[2, 5]), Some(labels.clone())),
                ("s", fp32(&[]), Some(Tensor::scalar(1.0))),
            ],
        ),
        (
            Op::CrossEntropyGrad { shift: false },
            vec![
                ("a", fp32(&[2, 5, 7]), None),
                ("l", int(&[2, 5]), Some(labels)),
                ("s", fp32(&[]), Some(Tensor::scalar(1.0))),
            ],
        ),
    ];
    for (op, operands) in cases {
        let what = format!("{op:?}");
        let mut g = Graph::new("op");
        let mut feeds = HashMap::new();
        let mut ids_v = Vec::new();
        for (name, ty, value) in operands {
            ids_v.push(
                g.push(
                    Op::Param {
                        name: name.to_string(),
                        ty: ty.clone(),
                    },
                    &[],
                )
                .unwrap(),
            );
            let t = value.unwrap_or_else(|| {
                Tensor::new(
                    &ty.shape,
                    (0..ty.elements()).map(|_| rng.next() * 2.0).collect(),
                )
            });
            feeds.insert(name.to_string(), t);
        }
        g.push(op, &ids_v).unwrap();
        run_graph(&g, &arch, &feeds, 2e-5, &what);
    }
    // Matrix products: fp32 through three bf16 products, and bf16 directly; batched and shared operands.
    for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
        for dtype in [DType::Fp32, DType::Bf16] {
            let (a, b) = (
                if ta { [2, 9, 5] } else { [2, 5, 9] },
                if tb { [2, 6, 9] } else { [2, 9, 6] },
            );
            let mut g = Graph::new("mm");
            let pa = g
                .push(
                    Op::Param {
                        name: "a".into(),
                        ty: TensorType::new(&a, dtype),
                    },
                    &[],
                )
                .unwrap();
            let pb = g
                .push(
                    Op::Param {
                        name: "b".into(),
                        ty: TensorType::new(&b, dtype),
                    },
                    &[],
                )
                .unwrap();
            g.push(
                Op::MatMul {
                    ta,
                    tb,
                    out: DType::Fp32,
                },
                &[pa, pb],
            )
            .unwrap();
            let mut feeds = HashMap::new();
            feeds.insert(
                "a".into(),
                Tensor::new(&a, (0..90).map(|_| rng.next()).collect()),
            );
            feeds.insert(
                "b".into(),
                Tensor::new(&b, (0..108).map(|_| rng.next()).collect()),
            );
            // bf16_3x leaves about 2^-17 of each product; bf16 inputs multiply exactly.
            run_graph(
                &g,
                &arch,
                &feeds,
                if dtype == DType::Fp32 { 1e-4 } else { 1e-5 },
                &format!("matmul {ta} {tb} {dtype}"),
            );
        }
    }
}

/// Adafactor's update (factored second moment for a matrix, full for a
/// vector, relative step, clipping) lowered as graph code: every
/// intermediate value of two steps agrees with the interpreter.
#[test]
fn adafactor_update_matches_the_interpreter() {
    use tessera_compiler::autodiff::Gradients;
    use tessera_compiler::optim::update;
    use tessera_compiler::setup::Optimizer;
    let arch = Arch::preset("fpga-8x8").unwrap();
    let mut rng = Rng(4242);
    let mut g = Graph::new("adafactor");
    let mut params = Vec::new();
    for (name, shape) in [("w", vec![20u64, 12]), ("b", vec![12])] {
        let p = g
            .push(
                Op::Param {
                    name: name.into(),
                    ty: fp32(&shape),
                },
                &[],
            )
            .unwrap();
        let d = g
            .push(
                Op::Input {
                    name: format!("{name}.grad"),
                    ty: fp32(&shape),
                },
                &[],
            )
            .unwrap();
        params.push((p, name.to_string(), d));
    }
    let opt = Optimizer::from_name("adafactor", 0.01, (0.9, 0.999), 1e-8, 0.1).unwrap();
    update(&mut g, &Gradients { params }, &opt).unwrap();
    let mut feeds = HashMap::new();
    for node in &g.nodes {
        if let Op::Param { name, ty } | Op::Input { name, ty } = &node.op {
            let data = (0..ty.elements()).map(|_| rng.next()).collect();
            feeds.insert(name.clone(), Tensor::new(&ty.shape, data));
        }
    }
    run_graph(&g, &arch, &feeds, 1e-4, "adafactor step 1");
    // Step 2 from the states step 1 left (t = 2: beta2_t and rho change).
    let after = eval(&g, &feeds, Rounding::ToType).unwrap();
    for (name, t) in after.assigned {
        feeds.insert(name, t);
    }
    run_graph(&g, &arch, &feeds, 1e-4, "adafactor step 2");
}

/// The fp8 rewrite of a bf16 product (amax, scale, cast, fp8 product,
/// unscale), lowered: every value agrees with the interpreter, for e4m3
/// operands and for an e5m2 gradient operand.
#[test]
fn fp8_scaled_products_match_the_interpreter() {
    use tessera_compiler::fp8;
    let arch = Arch::preset("default").unwrap();
    let mut rng = Rng(77);
    for gradient_operand in [false, true] {
        let mut g = Graph::new("fp8");
        let x = g
            .push(
                Op::Param {
                    name: "x".into(),
                    ty: fp32(&[2, 12, 40]),
                },
                &[],
            )
            .unwrap();
        let w = g
            .push(
                Op::Param {
                    name: "w".into(),
                    ty: fp32(&[40, 24]),
                },
                &[],
            )
            .unwrap();
        let xc = g.push(Op::Cast { to: DType::Bf16 }, &[x]).unwrap();
        let wc = g.push(Op::Cast { to: DType::Bf16 }, &[w]).unwrap();
        let y = g
            .push(
                Op::MatMul {
                    ta: false,
                    tb: false,
                    out: DType::Fp32,
                },
                &[xc, wc],
            )
            .unwrap();
        g.push(Op::Output { name: "y".into() }, &[y]).unwrap();
        let seed = gradient_operand.then_some(x);
        let g = fp8::rewrite(&g, seed).unwrap();
        let formats: Vec<DType> = g
            .nodes
            .iter()
            .filter(|n| matches!(n.op, Op::Cast { .. }))
            .map(|n| n.ty.as_ref().unwrap().dtype)
            .collect();
        let want_x = if gradient_operand {
            DType::Fp8E5M2
        } else {
            DType::Fp8E4M3
        };
        assert_eq!(formats, [want_x, DType::Fp8E4M3]);
        let mut feeds = HashMap::new();
        for (name, shape, scale) in [("x", vec![2u64, 12, 40], 3.0), ("w", vec![40, 24], 0.05)] {
            let n: u64 = shape.iter().product();
            let data = (0..n).map(|_| rng.next() * scale).collect();
            feeds.insert(name.to_string(), Tensor::new(&shape, data));
        }
        run_graph(&g, &arch, &feeds, 1e-5, "fp8 product");
    }
}

/// Fused matmul epilogues (one GEMM kernel per batch element, the chain
/// applied to each output tile) against the interpreter: with and without
/// a `pre` sibling (written by the same kernel), every optional part,
/// transposed operands, shapes with tails, and products short enough in m
/// to run transposed (the bias then broadcasts down columns).
#[test]
fn matmul_epilogues_match_the_interpreter() {
    use tessera_compiler::ir::{Epilogue, EpiloguePart};
    let mut rng = Rng(7);
    let bf16 = |s: &[u64]| TensorType::new(s, DType::Bf16);
    // (arch, batch, m, k, n, tb, bias, act, residual, out, with pre)
    let cases = [
        (
            "fpga-8x8",
            2,
            13,
            10,
            19,
            false,
            true,
            Some(Unary::GeluTanh),
            true,
            DType::Bf16,
            true,
        ),
        (
            "fpga-8x8",
            1,
            9,
            16,
            12,
            true,
            true,
            Some(Unary::GeluErf),
            false,
            DType::Fp32,
            true,
        ),
        (
            "fpga-8x8",
            2,
            11,
            8,
            9,
            false,
            true,
            None,
            true,
            DType::Fp32,
            false,
        ),
        (
            "fpga-8x8",
            1,
            3,
            12,
            40,
            false,
            true,
            Some(Unary::GeluTanh),
            false,
            DType::Bf16,
            true,
        ),
        (
            "fpga-8x8",
            1,
            10,
            9,
            7,
            true,
            false,
            Some(Unary::GeluTanh),
            true,
            DType::Fp32,
            true,
        ),
        (
            "fpga-8x8",
            1,
            12,
            8,
            10,
            false,
            false,
            None,
            false,
            DType::Bf16,
            false,
        ),
        (
            "fpga-8x8",
            1,
            12,
            8,
            10,
            false,
            true,
            Some(Unary::GeluErf),
            false,
            DType::Fp32,
            false,
        ),
        (
            "default",
            1,
            64,
            256,
            300,
            false,
            true,
            Some(Unary::GeluTanh),
            true,
            DType::Bf16,
            true,
        ),
    ];
    for (arch, batch, m, k, n, tb, bias, act, residual, out, with_pre) in cases {
        let arch = Arch::preset(arch).unwrap();
        let e = Epilogue {
            ta: false,
            tb,
            bias,
            act,
            residual,
            out,
            part: EpiloguePart::Out,
        };
        let mut g = Graph::new("epilogue");
        let mut feeds = HashMap::new();
        let mut param = |g: &mut Graph, name: &str, ty: TensorType| {
            let data = (0..ty.elements()).map(|_| rng.next() * 2.0).collect();
            feeds.insert(name.to_string(), Tensor::new(&ty.shape, data));
            g.push(
                Op::Param {
                    name: name.into(),
                    ty,
                },
                &[],
            )
            .unwrap()
        };
        let a = param(&mut g, "a", bf16(&[batch, m, k]));
        let ws = if tb { [n, k] } else { [k, n] };
        let w = param(&mut g, "w", bf16(&ws));
        let mut operands = vec![a, w];
        if bias {
            operands.push(param(&mut g, "bias", fp32(&[n])));
        }
        let pre_operands = operands.clone();
        if residual {
            operands.push(param(&mut g, "res", fp32(&[batch, m, n])));
        }
        g.push(Op::MatMulEpilogue(e), &operands).unwrap();
        if with_pre {
            let pre = Op::MatMulEpilogue(e.with_part(EpiloguePart::Pre));
            g.push(pre, &pre_operands).unwrap();
        }
        let what = format!("{m}x{k}x{n} tb={tb} {e:?} pre={with_pre}");
        let tol = if out == DType::Fp32 { 1e-4 } else { 1e-2 };
        run_graph(&g, &arch, &feeds, tol, &what);
    }
}
