//! The fusion passes: data-driven rewrites of IR text (`tests/ir/fusion.txt`
//! holds each input graph and the graph `fuse` makes of it with every
//! fusion on; `TESSERA_BLESS=1` rewrites the expected graphs), and the
//! unfused and fused forms of tiny GPT-2, Llama and BERT models giving the
//! same loss and gradients in the f64 evaluator.

use std::collections::HashMap;

use tessera_compiler::autodiff::backward;
use tessera_compiler::build;
use tessera_compiler::fuse::{fuse, Fusion};
use tessera_compiler::ir::eval::{eval, Rounding, Tensor};
use tessera_compiler::ir::{parse::parse, print::print, verify::verify, Graph, Op, TensorType};
use tessera_compiler::model::{Family, ModelConfig};
use tessera_compiler::setup::TrainingSetup;

#[test]
fn fusion_rewrites_match_the_corpus() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ir/fusion.txt");
    let corpus = std::fs::read_to_string(path).unwrap();
    let mut blessed = String::new();
    let mut failures = Vec::new();
    for case in corpus.split("\n=====\n") {
        let (input, expected) = case
            .split_once("\n-----\n")
            .expect("each case has input ----- expected graph");
        let got = match parse(input, "case.ir") {
            Ok(g) => match fuse(&g, Fusion::ALL) {
                Ok(f) => {
                    verify(&f).unwrap();
                    print(&f)
                }
                Err(e) => format!("error: {e}"),
            },
            Err(e) => format!("error: {e}"),
        };
        if got.trim_end() != expected.trim_end() {
            failures.push(format!(
                "input:\n{input}\nexpected:\n{}\ngot:\n{got}",
                expected.trim_end()
            ));
        }
        blessed.push_str(&format!("{input}\n-----\n{}\n=====\n", got.trim_end()));
    }
    if std::env::var_os("TESSERA_BLESS").is_some() {
        let text = blessed.trim_end_matches("=====\n").trim_end_matches('\n');
        std::fs::write(path, text.to_string() + "\n").unwrap();
        return;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
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
    m
}

/// Deterministic feeds: parameters from a fixed pattern (norm weights
/// near 1), ids in range, every third BERT label counted.
fn feeds(g: &Graph, vocab: u64) -> HashMap<String, Tensor> {
    let mut out = HashMap::new();
    for (k, node) in g.nodes.iter().enumerate() {
        let (name, ty) = match &node.op {
            Op::Param { name, ty } | Op::Input { name, ty } => (name, ty),
            _ => continue,
        };
        let n = ty.elements() as usize;
        let data: Vec<f64> = match name.as_str() {
            "attention_mask" => (0..n).map(|i| f64::from(i % 5 != 4)).collect(),
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
            "input_ids" | "labels" => (0..n)
                .map(|i| ((i * 5 + 3) as u64 % vocab) as f64)
                .collect(),
            _ => {
                let base = if ty.shape.len() == 1 && name.contains("orm") || name.contains("ln_") {
                    1.0
                } else {
                    0.0
                };
                (0..n)
                    .map(|i| base + 0.3 * (((i * 37 + k * 11) % 23) as f64 / 11.0 - 1.0))
                    .collect()
            }
        };
        out.insert(name.clone(), Tensor::new(&ty.shape, data));
    }
    out
}

/// Loss and parameter gradients (by name) of a forward graph.
fn loss_and_grads(g: &Graph, feeds: &HashMap<String, Tensor>) -> (f64, Vec<(String, Vec<f64>)>) {
    let mut g = g.clone();
    let loss = g
        .nodes
        .iter()
        .find_map(|n| matches!(&n.op, Op::Output { name } if name == "loss").then(|| n.inputs[0]))
        .unwrap();
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
    verify(&g).unwrap();
    let ev = eval(&g, feeds, Rounding::Exact).unwrap();
    let value = |v: tessera_compiler::ir::ValueId| ev.values[v.0].as_ref().unwrap().data.clone();
    let mut out: Vec<(String, Vec<f64>)> = grads
        .params
        .iter()
        .map(|(_, name, d)| (name.clone(), value(*d)))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    (value(loss)[0], out)
}

fn count(g: &Graph, f: impl Fn(&Op) -> bool) -> usize {
    g.nodes.iter().filter(|n| f(&n.op)).count()
}

#[test]
fn unfused_and_fused_models_have_the_same_loss_and_gradients() {
    let fused_only = |names: &[&str]| {
        let mut f = Fusion::ALL;
        for n in Fusion::NAMES {
            if !names.contains(&n) {
                f.disable(n).unwrap();
            }
        }
        f
    };
    for family in [Family::Gpt2, Family::Llama, Family::Bert] {
        let m = tiny(family);
        let fwd = build::forward(&m, &TrainingSetup::new(2, 5)).unwrap();
        let feeds = feeds(&fwd.graph, m.vocab_size);
        let unfused = fuse(&fwd.graph, Fusion::NONE).unwrap();
        let is_fused = |op: &Op| {
            matches!(
                op,
                Op::LayerNorm { .. } | Op::RmsNorm { .. } | Op::CrossEntropy { .. }
            )
        };
        let is_primitive = |op: &Op| matches!(op, Op::RowMean | Op::LogSoftmax | Op::Nll { .. });
        assert_eq!(count(&unfused, is_fused), 0, "{}", m.name);
        let (loss0, grads0) = loss_and_grads(&unfused, &feeds);
        assert!(loss0.is_finite() && loss0 > 0.0, "{}: loss {loss0}", m.name);
        for names in [
            &["norm"][..],
            &["cross_entropy"],
            &["norm", "cross_entropy"],
        ] {
            let g = fuse(&fwd.graph, fused_only(names)).unwrap();
            verify(&g).unwrap();
            let norms = count(&g, |op| {
                matches!(op, Op::LayerNorm { .. } | Op::RmsNorm { .. })
            });
            let ces = count(&g, |op| matches!(op, Op::CrossEntropy { .. }));
            let want_norms = match family {
                Family::Gpt2 => 2 * m.layers as usize + 1,
                Family::Llama => 2 * m.layers as usize + 1,
                Family::Bert => 2 * m.layers as usize + 2,
            };
            assert_eq!(
                norms,
                if names.contains(&"norm") {
                    want_norms
                } else {
                    0
                }
            );
            assert_eq!(ces, usize::from(names.contains(&"cross_entropy")));
            if names.len() == 2 {
                assert_eq!(count(&g, is_primitive), 0, "{}: {}", m.name, print(&g));
            }
            let (loss, grads) = loss_and_grads(&g, &feeds);
            let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * (1.0 + a.abs().max(b.abs()));
            assert!(
                close(loss, loss0),
                "{} {names:?}: loss {loss} vs {loss0}",
                m.name
            );
            assert_eq!(grads.len(), grads0.len());
            for ((name, d), (name0, d0)) in grads.iter().zip(&grads0) {
                assert_eq!(name, name0);
                for (k, (a, b)) in d.iter().zip(d0).enumerate() {
                    assert!(
                        close(*a, *b),
                        "{} {names:?}: d {name}[{k}]: {a} vs {b}",
                        m.name
                    );
                }
            }
        }
    }
}
