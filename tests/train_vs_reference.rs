//! The proof that compiled steps train: tiny GPT-2, Llama and BERT models
//! train for 20 steps on the functional simulator, and every step's loss
//! (and gradient norm) matches the independent f64 reference in
//! `tests/reference/` — within 1e-4 relative in fp32 and 2e-2 in
//! bf16-mixed — starting from the same safetensors checkpoint.

mod reference;

use tessera::train::{read_safetensors, train, TrainData};
use tessera_compiler::model::ModelConfig;
use tessera_compiler::setup::{Optimizer, Precision, TrainingSetup};
use tessera_isa::Arch;

const GPT2: &str = r#"{"model_type": "gpt2", "n_embd": 16, "n_layer": 2, "n_head": 2, "n_positions": 16, "vocab_size": 37}"#;
const LLAMA: &str = r#"{"model_type": "llama", "hidden_size": 16, "intermediate_size": 24, "num_attention_heads": 4,
    "num_key_value_heads": 2, "num_hidden_layers": 2, "max_position_embeddings": 16, "vocab_size": 37, "rms_norm_eps": 1e-6}"#;
const BERT: &str = r#"{"model_type": "bert", "hidden_size": 16, "intermediate_size": 32, "num_attention_heads": 2,
    "num_hidden_layers": 2, "max_position_embeddings": 16, "type_vocab_size": 2, "vocab_size": 37}"#;

struct Case {
    config: &'static str,
    optimizer: &'static str,
    lr: f64,
}

/// `(loss, grad_norm)` per step.
type Records = Vec<(f64, f64)>;

/// Trains `steps` steps both ways and returns (simulated, reference) records.
fn run(case: &Case, precision: Precision, steps: usize) -> (Records, Records) {
    let (batch, seq) = (2usize, 8usize);
    let cfg = reference::RefConfig::from_hf_json(case.config).unwrap();
    // The checkpoint: reference initial weights, rounded to f32 by the safetensors round trip.
    let bytes =
        reference::safetensors_io::to_safetensors(&reference::weights::Weights::init(&cfg, 7))
            .unwrap();
    let mut ref_weights = reference::safetensors_io::from_safetensors(&bytes).unwrap();
    let tokens: Vec<u32> = (0..batch * seq)
        .map(|i| ((i * 11 + 5) % 37) as u32)
        .collect();
    let bert = case.config.contains("bert");
    let labels: Option<Vec<i64>> = bert.then(|| {
        (0..batch * seq)
            .map(|i| {
                if i % 3 == 1 {
                    ((i * 7) % 37) as i64
                } else {
                    -100
                }
            })
            .collect()
    });
    let (b1, b2) = (0.9, 0.999);
    let ref_opt = match case.optimizer {
        "adamw" => reference::Optimizer::AdamW {
            lr: case.lr,
            beta1: b1,
            beta2: b2,
            eps: 1e-8,
            weight_decay: 0.01,
        },
        "sgd" => reference::Optimizer::Sgd {
            lr: case.lr,
            momentum: 0.9,
            weight_decay: 0.01,
        },
        "lion" => reference::Optimizer::Lion {
            lr: case.lr,
            beta1: b1,
            beta2: 0.99,
            weight_decay: 0.01,
        },
        _ => reference::Optimizer::Lamb {
            lr: case.lr,
            beta1: b1,
            beta2: b2,
            eps: 1e-6,
            weight_decay: 0.01,
        },
    };
    let want = reference::train(
        &cfg,
        &mut ref_weights,
        &tokens,
        labels.as_deref(),
        batch,
        seq,
        steps,
        &ref_opt,
    )
    .unwrap();

    let model = ModelConfig::from_hf_json(case.config, "config.json").unwrap();
    let mut setup = TrainingSetup::new(batch as u64, seq as u64);
    setup.precision = precision;
    let (betas, eps) = match case.optimizer {
        "sgd" => ((0.9, 0.0), 1e-8),
        "lion" => ((b1, 0.99), 1e-8),
        "lamb" => ((b1, b2), 1e-6),
        _ => ((b1, b2), 1e-8),
    };
    setup.optimizer = Optimizer::from_name(case.optimizer, case.lr, betas, eps, 0.01).unwrap();
    let weights = read_safetensors(&bytes, "init.safetensors").unwrap();
    let data = TrainData {
        tokens,
        labels: labels.map(|l| l.iter().map(|&x| x as i32).collect()),
    };
    let arch = Arch::preset("fpga-8x8").unwrap();
    let (got, _) = train(
        &model,
        &setup,
        &arch,
        &weights,
        "init.safetensors",
        &data,
        steps as u64,
    )
    .unwrap();
    (
        got.iter().map(|r| (r.loss, r.grad_norm)).collect(),
        want.iter().map(|r| (r.loss, r.grad_norm)).collect(),
    )
}

fn assert_close(case: &Case, precision: Precision, tol: f64) {
    let (got, want) = run(case, precision, 20);
    let first = want[0].0;
    let last = want[19].0;
    assert!(last < first, "the reference must learn: {first} -> {last}");
    for (s, ((gl, gn), (wl, wn))) in got.iter().zip(&want).enumerate() {
        let rel = (gl - wl).abs() / wl.abs();
        assert!(
            rel <= tol,
            "{} {:?} step {s}: loss {gl} vs reference {wl} (relative {rel:.2e})",
            case.config,
            precision
        );
        // Lion's sign() turns rounding-sized momentum differences into
        // full-size steps on a few coordinates, so its gradient norms drift
        // further apart than its losses do.
        let norm_tol = if case.optimizer == "lion" {
            1e-2
        } else {
            10.0 * tol
        };
        let reln = (gn - wn).abs() / wn.abs();
        assert!(
            reln <= norm_tol,
            "{} step {s}: grad norm {gn} vs reference {wn} (relative {reln:.2e})",
            case.config
        );
    }
}

#[test]
fn gpt2_trains_like_the_reference() {
    assert_close(
        &Case {
            config: GPT2,
            optimizer: "adamw",
            lr: 1e-2,
        },
        Precision::Fp32,
        1e-4,
    );
}

#[test]
fn llama_trains_like_the_reference() {
    assert_close(
        &Case {
            config: LLAMA,
            optimizer: "adamw",
            lr: 1e-2,
        },
        Precision::Fp32,
        1e-4,
    );
}

#[test]
fn bert_trains_like_the_reference() {
    assert_close(
        &Case {
            config: BERT,
            optimizer: "adamw",
            lr: 1e-2,
        },
        Precision::Fp32,
        1e-4,
    );
}

#[test]
fn other_optimizers_train_like_the_reference() {
    assert_close(
        &Case {
            config: GPT2,
            optimizer: "sgd",
            lr: 0.1,
        },
        Precision::Fp32,
        1e-4,
    );
    assert_close(
        &Case {
            config: LLAMA,
            optimizer: "lion",
            lr: 1e-3,
        },
        Precision::Fp32,
        1e-4,
    );
    assert_close(
        &Case {
            config: BERT,
            optimizer: "lamb",
            lr: 1e-2,
        },
        Precision::Fp32,
        1e-4,
    );
}

#[test]
fn bf16_mixed_training_stays_within_two_percent() {
    for config in [GPT2, LLAMA, BERT] {
        assert_close(
            &Case {
                config,
                optimizer: "adamw",
                lr: 1e-2,
            },
            Precision::Bf16Mixed,
            2e-2,
        );
    }
}

/// Two accumulated micro-batches per step: the mean loss and the averaged
/// gradients match the reference's `train_accumulated`.
#[test]
fn gradient_accumulation_matches_the_reference() {
    let (batch, seq, micro) = (2usize, 8usize, 2usize);
    let cfg = reference::RefConfig::from_hf_json(LLAMA).unwrap();
    let bytes =
        reference::safetensors_io::to_safetensors(&reference::weights::Weights::init(&cfg, 3))
            .unwrap();
    let mut ref_weights = reference::safetensors_io::from_safetensors(&bytes).unwrap();
    let tokens: Vec<u32> = (0..micro * batch * seq)
        .map(|i| ((i * 7 + 2) % 37) as u32)
        .collect();
    let n = batch * seq;
    let batches: Vec<reference::Batch> = (0..micro)
        .map(|k| reference::Batch {
            tokens: &tokens[k * n..(k + 1) * n],
            labels: None,
            attention_mask: None,
            batch,
            seq,
        })
        .collect();
    let opt = reference::Optimizer::AdamW {
        lr: 1e-2,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.01,
    };
    let want = reference::train_accumulated(&cfg, &mut ref_weights, &batches, 5, &opt).unwrap();

    let model = ModelConfig::from_hf_json(LLAMA, "config.json").unwrap();
    let mut setup = TrainingSetup::new(batch as u64, seq as u64);
    setup.precision = Precision::Fp32;
    setup.grad_accumulation = micro as u64;
    setup.optimizer = Optimizer::from_name("adamw", 1e-2, (0.9, 0.999), 1e-8, 0.01).unwrap();
    let weights = read_safetensors(&bytes, "init.safetensors").unwrap();
    let data = TrainData {
        tokens,
        labels: None,
    };
    let arch = Arch::preset("fpga-8x8").unwrap();
    let (got, _) = train(
        &model,
        &setup,
        &arch,
        &weights,
        "init.safetensors",
        &data,
        5,
    )
    .unwrap();
    for (s, (g, w)) in got.iter().zip(&want).enumerate() {
        let rel = (g.loss - w.loss).abs() / w.loss.abs();
        assert!(
            rel <= 1e-4,
            "step {s}: loss {} vs reference {} ({rel:.2e})",
            g.loss,
            w.loss
        );
        let reln = (g.grad_norm - w.grad_norm).abs() / w.grad_norm;
        assert!(
            reln <= 1e-3,
            "step {s}: grad norm {} vs reference {}",
            g.grad_norm,
            w.grad_norm
        );
    }
}
