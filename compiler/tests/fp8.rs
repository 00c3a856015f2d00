//! `fp8-mixed`: every bf16 product of the step becomes an fp8 product
//! (e4m3 weights and activations, e5m2 gradients) with per-tensor scales,
//! fp8 copies are shared between the forward and the backward, and the
//! step stays close to the bf16 one.

use std::collections::HashMap;

use tessera_compiler::ir::eval::{eval, Rounding, Tensor};
use tessera_compiler::ir::{Graph, Op};
use tessera_compiler::model::{Family, ModelConfig};
use tessera_compiler::setup::{Precision, TrainingSetup};
use tessera_compiler::{training_graph, Stage};
use tessera_isa::DType;

fn tiny(family: Family) -> ModelConfig {
    let mut m = ModelConfig::preset(match family {
        Family::Gpt2 => "gpt2-small",
        Family::Llama => "llama-7b",
        Family::Bert => "bert-base",
    })
    .unwrap();
    m.name = format!("tiny-{}", family.model_type());
    m.vocab_size = 37;
    m.hidden = 32;
    m.layers = 2;
    m.heads = 2;
    m.kv_heads = if family == Family::Llama { 1 } else { 2 };
    m.ffn_hidden = 64;
    m.max_positions = 16;
    m
}

fn feeds(g: &Graph, vocab: u64) -> HashMap<String, Tensor> {
    let mut out = HashMap::new();
    let mut state = 3u64;
    for node in &g.nodes {
        match &node.op {
            Op::Param { name, ty } => {
                let norm = name.contains("norm")
                    || name.contains("ln_")
                    || name.contains("LayerNorm.weight");
                let data = (0..ty.elements())
                    .map(|_| {
                        state = state
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        let r = ((state >> 33) % 2001) as f64 / 1000.0 - 1.0;
                        if norm {
                            1.0 + 0.1 * r
                        } else {
                            0.2 * r
                        }
                    })
                    .collect();
                out.insert(name.clone(), Tensor::new(&ty.shape, data));
            }
            Op::Input { name, ty } => {
                let n = ty.elements();
                let data = (0..n)
                    .map(|i| match name.as_str() {
                        "attention_mask" => f64::from(i % 7 != 6),
                        "token_type_ids" => 0.0,
                        "labels" if g.name.contains("bert") => {
                            if i % 3 == 0 {
                                ((i * 7) % vocab) as f64
                            } else {
                                -100.0
                            }
                        }
                        _ => ((i * 5 + 3) % vocab) as f64,
                    })
                    .collect();
                out.insert(name.clone(), Tensor::new(&ty.shape, data));
            }
            _ => {}
        }
    }
    out
}

fn operand_type(g: &Graph, v: usize) -> DType {
    g.nodes[v].ty.as_ref().unwrap().dtype
}

#[test]
fn fp8_products_replace_the_bf16_ones_and_stay_close() {
    for family in [Family::Gpt2, Family::Llama, Family::Bert] {
        let m = tiny(family);
        let mut setup = TrainingSetup::new(2, 16);
        setup.precision = Precision::Bf16Mixed;
        // fp8-mixed keeps matmul epilogues unfused; compare like with like.
        setup.fusion.epilogue = false;
        let bf16 = training_graph(&m, &setup, Stage::Step).unwrap();
        setup.precision = Precision::Fp8Mixed;
        let fp8 = training_graph(&m, &setup, Stage::Step).unwrap();
        let what = m.name.clone();

        let products = |g: &Graph| -> Vec<(DType, DType)> {
            g.nodes
                .iter()
                .filter(|n| matches!(n.op, Op::MatMul { .. }))
                .map(|n| {
                    (
                        operand_type(g, n.inputs[0].0),
                        operand_type(g, n.inputs[1].0),
                    )
                })
                .collect()
        };
        let before = products(&bf16);
        let after = products(&fp8);
        assert_eq!(before.len(), after.len(), "{what}: one product for one");
        assert!(
            before.iter().all(|&p| p == (DType::Bf16, DType::Bf16)),
            "{what}"
        );
        let fp8_types = [DType::Fp8E4M3, DType::Fp8E5M2];
        assert!(
            after
                .iter()
                .all(|(a, b)| fp8_types.contains(a) && fp8_types.contains(b)),
            "{what}: {after:?}"
        );
        // Forward products are e4m3 x e4m3; every backward product reads
        // one e5m2 gradient.
        let forward = after
            .iter()
            .filter(|p| **p == (DType::Fp8E4M3, DType::Fp8E4M3))
            .count();
        let backward = after.len() - forward;
        assert!(
            forward > 0 && backward == 2 * forward,
            "{what}: {forward} forward, {backward} backward"
        );
        // Each value is quantized once: the weight and activation copies of
        // the forward serve the backward's products too.
        let amaxes = fp8
            .nodes
            .iter()
            .filter(|n| n.op.name() == "abs_max")
            .count();
        assert!(
            amaxes < 2 * after.len(),
            "{what}: {amaxes} scales for {} products",
            after.len()
        );

        let f = feeds(&bf16, m.vocab_size);
        let a = eval(&bf16, &f, Rounding::ToType).unwrap();
        let b = eval(&fp8, &f, Rounding::ToType).unwrap();
        for (name, tol) in [("loss", 0.02), ("grad_norm", 0.15)] {
            let (x, y) = (a.outputs[name].data[0], b.outputs[name].data[0]);
            assert!(
                (x - y).abs() <= tol * x.abs(),
                "{what} {name}: bf16 {x} vs fp8 {y}"
            );
            assert!(x != y, "{what} {name}: fp8 changed nothing");
        }
    }
}
