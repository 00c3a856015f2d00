//! Self-checks of the f64 reference models in `tests/reference/`: every op's
//! hand-written backward and every model's whole-loss gradient against
//! central finite differences, training progress, loss invariants (initial
//! loss, ignored labels, causal and padding masks), optimiser updates
//! against hand-computed steps, Hugging Face config parsing, and the
//! safetensors round trip.

mod reference;

use reference::attention::{
    attention, attention_backward, softmax_backward, softmax_masked, AttnShape, Mask,
};
use reference::loss::{cross_entropy, cross_entropy_backward, shift_labels, IGNORE};
use reference::ops::{self, Activation, Layout};
use reference::safetensors_io::{from_safetensors, load, save, to_safetensors};
use reference::weights::param_specs;
use reference::{
    loss, loss_and_grads, train, train_accumulated, Batch, Family, OptState, Optimizer, RefConfig,
    RefError, Rng, Tensor, Weights,
};

type R = Result<(), RefError>;

/// Central-difference step; f64 round-off and truncation both stay near 1e-10.
const H: f64 = 1e-5;

fn close(fd: f64, an: f64, rtol: f64, atol: f64) -> bool {
    (fd - an).abs() <= atol + rtol * fd.abs().max(an.abs())
}

// ---------------------------------------------------------------- op gradients

/// Key flags of the padding-mask cases: position 1 is padding.
static KEYS: [bool; 4] = [true, false, true, true];
/// Cross-entropy targets: a repeated class and one ignored row.
const TARGETS: [i64; 4] = [3, IGNORE, 0, 3];

/// An op's forward over its inputs.
type Forward = dyn Fn(&[Vec<f64>]) -> Vec<f64>;
/// An op's backward: inputs and upstream gradient to one gradient per input.
type Backward = dyn Fn(&[Vec<f64>], &[f64]) -> Vec<Vec<f64>>;

/// One op under test: inputs, forward, and backward given the upstream gradient.
struct OpCase {
    name: &'static str,
    inputs: Vec<Vec<f64>>,
    forward: Box<Forward>,
    backward: Box<Backward>,
}

fn case(
    name: &'static str,
    inputs: Vec<Vec<f64>>,
    forward: impl Fn(&[Vec<f64>]) -> Vec<f64> + 'static,
    backward: impl Fn(&[Vec<f64>], &[f64]) -> Vec<Vec<f64>> + 'static,
) -> OpCase {
    OpCase {
        name,
        inputs,
        forward: Box::new(forward),
        backward: Box::new(backward),
    }
}

fn op_cases() -> Vec<OpCase> {
    let mut r = Rng::new(7);
    let (m, k, n) = (3, 4, 5);
    let ids = vec![2usize, 0, 2, 1];
    let seq = 4;
    let gqa = AttnShape {
        seq,
        heads: 4,
        kv_heads: 2,
        head_dim: 3,
    };
    let mha = AttnShape {
        seq,
        heads: 2,
        kv_heads: 2,
        head_dim: 3,
    };
    let mut v = |len: usize| r.vec(len, -1.5, 1.5);
    let act_case = |name, act: Activation, x: Vec<f64>| {
        case(
            name,
            vec![x],
            move |i| ops::activation(act, &i[0]),
            move |i, dy| vec![ops::activation_backward(act, &i[0], dy)],
        )
    };
    let attn_case = |name, s: AttnShape, mask: Mask<'static>, q, kk, vv| {
        case(
            name,
            vec![q, kk, vv],
            move |i| attention(&i[0], &i[1], &i[2], s, mask).0,
            move |i, dy| {
                let (_, p) = attention(&i[0], &i[1], &i[2], s, mask);
                let (a, b, c) = attention_backward(&i[0], &i[1], &i[2], &p, dy, s);
                vec![a, b, c]
            },
        )
    };
    let softmax_case = |name, mask: Mask<'static>, x| {
        case(
            name,
            vec![x],
            move |i| softmax_masked(&i[0], 4, 4, mask),
            move |i, dy| {
                vec![softmax_backward(
                    &softmax_masked(&i[0], 4, 4, mask),
                    dy,
                    4,
                    4,
                )]
            },
        )
    };
    vec![
        case(
            "matmul",
            vec![v(m * k), v(k * n)],
            move |i| ops::matmul(&i[0], &i[1], m, k, n),
            move |i, dy| {
                let (a, b) = ops::matmul_backward(&i[0], &i[1], dy, m, k, n);
                vec![a, b]
            },
        ),
        case(
            "linear [out, in] with bias",
            vec![v(m * k), v(n * k), v(n)],
            move |i| ops::linear(&i[0], &i[1], Some(&i[2]), m, k, n, Layout::OutIn),
            move |i, dy| {
                let g = ops::linear_backward(&i[0], &i[1], dy, m, k, n, Layout::OutIn);
                vec![g.dx, g.dw, g.db]
            },
        ),
        case(
            "linear [in, out] (Conv1D) with bias",
            vec![v(m * k), v(k * n), v(n)],
            move |i| ops::linear(&i[0], &i[1], Some(&i[2]), m, k, n, Layout::InOut),
            move |i, dy| {
                let g = ops::linear_backward(&i[0], &i[1], dy, m, k, n, Layout::InOut);
                vec![g.dx, g.dw, g.db]
            },
        ),
        {
            let ids2 = ids.clone();
            case(
                "embedding gather / scatter-add (repeated id)",
                vec![v(3 * k)],
                move |i| ops::embedding(&ids, &i[0], k),
                move |_, dy| vec![ops::embedding_backward(&ids2, dy, 3, k)],
            )
        },
        case(
            "layer norm",
            vec![v(m * n), v(n), v(n)],
            move |i| ops::layer_norm(&i[0], &i[1], &i[2], m, n, 1e-5).0,
            move |i, dy| {
                let (_, c) = ops::layer_norm(&i[0], &i[1], &i[2], m, n, 1e-5);
                let (a, b, cc) = ops::layer_norm_backward(&c, &i[1], dy, m, n);
                vec![a, b, cc]
            },
        ),
        case(
            "rms norm",
            vec![v(m * n), v(n)],
            move |i| ops::rms_norm(&i[0], &i[1], m, n, 1e-6).0,
            move |i, dy| {
                let (_, c) = ops::rms_norm(&i[0], &i[1], m, n, 1e-6);
                let (a, b) = ops::rms_norm_backward(&c, &i[1], dy, m, n);
                vec![a, b]
            },
        ),
        act_case("gelu tanh (gelu_new)", Activation::GeluTanh, v(12)),
        act_case("gelu erf", Activation::GeluErf, v(12)),
        act_case("silu", Activation::Silu, v(12)),
        case(
            "swiglu",
            vec![v(10), v(10)],
            |i| ops::swiglu(Activation::Silu, &i[0], &i[1]),
            |i, dy| {
                let (a, b) = ops::swiglu_backward(Activation::Silu, &i[0], &i[1], dy);
                vec![a, b]
            },
        ),
        case(
            "rotary (3 positions, 2 heads, head_dim 4, theta 100)",
            vec![v(3 * 2 * 4)],
            |i| ops::rotary(&i[0], 3, 2, 4, 100.0),
            |_, dy| vec![ops::rotary_backward(dy, 3, 2, 4, 100.0)],
        ),
        case(
            "residual add",
            vec![v(6), v(6)],
            |i| ops::add(&i[0], &i[1]),
            |_, dy| vec![dy.to_vec(), dy.to_vec()],
        ),
        softmax_case("softmax, no mask", Mask::Full, v(16)),
        softmax_case("softmax, causal mask", Mask::Causal, v(16)),
        softmax_case("softmax, padding mask", Mask::Keys(&KEYS), v(16)),
        attn_case(
            "attention, causal, multi-head",
            mha,
            Mask::Causal,
            v(seq * 6),
            v(seq * 6),
            v(seq * 6),
        ),
        attn_case(
            "attention, causal, grouped-query",
            gqa,
            Mask::Causal,
            v(seq * 12),
            v(seq * 6),
            v(seq * 6),
        ),
        attn_case(
            "attention, padding mask",
            mha,
            Mask::Keys(&KEYS),
            v(seq * 6),
            v(seq * 6),
            v(seq * 6),
        ),
        case(
            "cross-entropy (one ignored row, repeated class)",
            vec![v(4 * 5)],
            |i| vec![cross_entropy(&i[0], &TARGETS, 5).map_or(f64::NAN, |c| c.loss)],
            |i, dy| {
                let ce = cross_entropy(&i[0], &TARGETS, 5).expect("valid targets");
                vec![cross_entropy_backward(&ce, &TARGETS, 5, dy[0])]
            },
        ),
    ]
}

#[test]
fn every_op_backward_matches_central_differences() {
    let mut rng = Rng::new(99);
    for op in op_cases() {
        let out_len = (op.forward)(&op.inputs).len();
        let dy = rng.vec(out_len, -1.0, 1.0);
        let scalar =
            |x: &[Vec<f64>]| -> f64 { (op.forward)(x).iter().zip(&dy).map(|(a, b)| a * b).sum() };
        let analytic = (op.backward)(&op.inputs, &dy);
        assert_eq!(
            analytic.len(),
            op.inputs.len(),
            "{}: one gradient per input",
            op.name
        );
        let mut largest = 0.0f64;
        for (which, input) in op.inputs.iter().enumerate() {
            assert_eq!(
                analytic[which].len(),
                input.len(),
                "{}: input {which} gradient length",
                op.name
            );
            for j in 0..input.len() {
                let mut plus = op.inputs.clone();
                plus[which][j] += H;
                let mut minus = op.inputs.clone();
                minus[which][j] -= H;
                let fd = (scalar(&plus) - scalar(&minus)) / (2.0 * H);
                let an = analytic[which][j];
                largest = largest.max(an.abs());
                assert!(
                    close(fd, an, 1e-6, 1e-9),
                    "{}: input {which}[{j}]: finite difference {fd} vs backward {an}",
                    op.name
                );
            }
        }
        assert!(largest > 1e-3, "{}: gradients are all (near) zero", op.name);
    }
}

/// Forward values fixed by the definitions (not by this implementation).
#[test]
fn op_forwards_match_known_values() {
    let cases: [(&str, f64, f64); 7] = [
        // 0.5 (1 + erf(1 / sqrt 2)) = Phi(1).
        (
            "gelu erf at 1",
            Activation::GeluErf.apply(1.0),
            0.841_344_746_068_542_9,
        ),
        (
            "gelu tanh at 1",
            Activation::GeluTanh.apply(1.0),
            0.841_191_990_608_276_8,
        ),
        (
            "gelu erf at -2",
            Activation::GeluErf.apply(-2.0),
            -0.045_500_263_896_358_41,
        ),
        (
            "silu at 1",
            Activation::Silu.apply(1.0),
            0.731_058_578_630_004_9,
        ),
        // [1, 3]: mean 2, var 1, so (+-1) / sqrt(1 + eps).
        (
            "layer norm of [1, 3]",
            ops::layer_norm(&[1.0, 3.0], &[1.0, 1.0], &[0.0, 0.0], 1, 2, 0.0).0[1],
            1.0,
        ),
        // [3, 4]: mean square 12.5.
        (
            "rms norm of [3, 4]",
            ops::rms_norm(&[3.0, 4.0], &[2.0, 2.0], 1, 2, 0.0).0[0],
            6.0 / 12.5f64.sqrt(),
        ),
        // Position 1, head_dim 2, theta 10: angle 1; [1, 0] -> [cos 1, sin 1].
        (
            "rotary [1, 0] at position 1",
            ops::rotary(&[0.0, 0.0, 1.0, 0.0], 2, 1, 2, 10.0)[3],
            1f64.sin(),
        ),
    ];
    for (what, got, want) in cases {
        assert!((got - want).abs() < 1e-12, "{what}: {got} vs {want}");
    }
    // rotate_half pairs element j with j + head_dim/2: head_dim 4, position 1,
    // theta 10000: inv_freq = [1, 0.01], so x = e_1 rotates by angle 0.01 into e_3.
    let y = ops::rotary(
        &[0.0; 4]
            .iter()
            .chain(&[0.0, 1.0, 0.0, 0.0])
            .copied()
            .collect::<Vec<_>>(),
        2,
        1,
        4,
        10000.0,
    );
    let want = [0.0, 0.0, 0.0, 0.0, 0.0, 0.01f64.cos(), 0.0, 0.01f64.sin()];
    for (g, w) in y.iter().zip(want) {
        assert!((g - w).abs() < 1e-12, "rotate_half convention: {y:?}");
    }
}

// ------------------------------------------------------------- model gradients

/// Weights with every tensor (biases and norm scales too) away from its
/// special initial value, so that no gradient is trivially zero.
fn random_weights(c: &RefConfig, seed: u64) -> Weights {
    let mut w = Weights::init(c, seed);
    let mut rng = Rng::new(seed ^ 0x5eed);
    for t in w.map.values_mut() {
        for x in &mut t.data {
            *x += rng.range(-0.3, 0.3);
        }
    }
    w
}

struct ModelCase {
    name: &'static str,
    config: RefConfig,
    labels: Option<Vec<i64>>,
    mask: Option<Vec<u8>>,
}

fn model_cases() -> Vec<ModelCase> {
    let untied_gpt2 = RefConfig {
        tie_word_embeddings: false,
        ..RefConfig::tiny_gpt2()
    };
    let tied_llama = RefConfig {
        tie_word_embeddings: true,
        num_kv_heads: 1,
        ..RefConfig::tiny_llama()
    };
    let mlm = vec![5, IGNORE, 17, IGNORE, IGNORE, 3, IGNORE, 40, 2, IGNORE];
    vec![
        ModelCase {
            name: "gpt2 (tied head)",
            config: RefConfig::tiny_gpt2(),
            labels: None,
            mask: None,
        },
        ModelCase {
            name: "gpt2 (untied head, -100 labels)",
            config: untied_gpt2,
            labels: Some(vec![1, 2, IGNORE, 4, 5, 6, 7, IGNORE, 9, 10]),
            mask: None,
        },
        ModelCase {
            name: "llama (GQA 4/2, untied)",
            config: RefConfig::tiny_llama(),
            labels: None,
            mask: None,
        },
        ModelCase {
            name: "llama (MQA 4/1, tied)",
            config: tied_llama,
            labels: None,
            mask: None,
        },
        ModelCase {
            name: "bert (MLM)",
            config: RefConfig::tiny_bert(),
            labels: Some(mlm.clone()),
            mask: None,
        },
        ModelCase {
            name: "bert (MLM, padding mask)",
            config: RefConfig::tiny_bert(),
            labels: Some(mlm),
            mask: Some(vec![1, 1, 1, 1, 0, 1, 1, 1, 0, 0]),
        },
    ]
}

const TOKENS: [u32; 10] = [3, 17, 5, 3, 60, 9, 40, 2, 33, 17];

#[test]
fn every_model_gradient_matches_central_differences() -> R {
    for mc in model_cases() {
        let c = &mc.config;
        let w = random_weights(c, 11);
        let batch = Batch {
            tokens: &TOKENS,
            labels: mc.labels.as_deref(),
            attention_mask: mc.mask.as_deref(),
            batch: 2,
            seq: 5,
        };
        let (_, grads) = loss_and_grads(c, &w, &batch)?;
        assert_eq!(
            grads.map.keys().collect::<Vec<_>>(),
            w.map.keys().collect::<Vec<_>>(),
            "{}: a gradient for every parameter",
            mc.name
        );
        let mut rng = Rng::new(5);
        let mut checked = 0;
        for (name, t) in &w.map {
            // Two random coordinates, plus the row of the first token in an
            // embedding table (tied tables get both head and input gradients).
            let mut coords = vec![rng.below(t.len()), rng.below(t.len())];
            if t.shape.len() == 2 && t.shape[0] == c.vocab_size {
                coords.push(TOKENS[0] as usize * t.shape[1] + rng.below(t.shape[1]));
            }
            for j in coords {
                let at = |delta: f64| -> Result<f64, RefError> {
                    let mut p = w.clone();
                    if let Some(t) = p.map.get_mut(name) {
                        t.data[j] += delta;
                    }
                    loss(c, &p, &batch)
                };
                let fd = (at(H)? - at(-H)?) / (2.0 * H);
                let an = grads.map[name].data[j];
                assert!(
                    close(fd, an, 1e-5, 1e-9),
                    "{}: d loss / d {name}[{j}]: finite difference {fd} vs backward {an}",
                    mc.name
                );
                checked += usize::from(an.abs() > 1e-6);
            }
        }
        assert!(
            checked > 2 * w.map.len() / 2,
            "{}: too many zero gradients ({checked})",
            mc.name
        );
    }
    Ok(())
}

// ------------------------------------------------------------------ training

fn lm_batch(c: &RefConfig, seed: u64, batch: usize, seq: usize) -> Vec<u32> {
    let mut r = Rng::new(seed);
    (0..batch * seq)
        .map(|_| r.below(c.vocab_size) as u32)
        .collect()
}

/// MLM labels: every third position predicts its token, the rest are -100.
fn mlm_labels(tokens: &[u32]) -> Vec<i64> {
    tokens
        .iter()
        .enumerate()
        .map(|(i, &t)| if i % 3 == 0 { t as i64 } else { IGNORE })
        .collect()
}

#[test]
fn twenty_adamw_steps_reduce_the_loss_of_every_family() -> R {
    for c in [
        RefConfig::tiny_gpt2(),
        RefConfig::tiny_llama(),
        RefConfig::tiny_bert(),
    ] {
        let (batch, seq) = (2, 8);
        let tokens = lm_batch(&c, 3, batch, seq);
        let labels = (c.family == Family::Bert).then(|| mlm_labels(&tokens));
        let mut w = Weights::init(&c, 1);
        let start = std::time::Instant::now();
        let rec = train(
            &c,
            &mut w,
            &tokens,
            labels.as_deref(),
            batch,
            seq,
            20,
            &Optimizer::adamw(1e-2),
        )?;
        let elapsed = start.elapsed();
        // Step 0 reports the loss and gradient norm of the initial weights.
        let b = Batch {
            tokens: &tokens,
            labels: labels.as_deref(),
            attention_mask: None,
            batch,
            seq,
        };
        let (l0, g0) = loss_and_grads(&c, &Weights::init(&c, 1), &b)?;
        assert_eq!((rec[0].loss, rec[0].grad_norm), (l0, g0.global_norm()));
        assert_eq!(rec.len(), 20);
        assert!(
            rec.iter().all(|r| r.loss.is_finite() && r.grad_norm > 0.0),
            "{:?}: {rec:?}",
            c.family
        );
        let (first, last) = (rec[0].loss, rec[19].loss);
        assert!(last < 0.5 * first, "{:?}: loss {first} -> {last}", c.family);
        assert!(
            elapsed.as_secs_f64() < 5.0,
            "{:?}: 20 steps took {elapsed:?}",
            c.family
        );
    }
    Ok(())
}

#[test]
fn every_optimizer_trains_and_accumulation_matches_the_full_batch() -> R {
    let c = RefConfig::tiny_gpt2();
    let tokens = lm_batch(&c, 4, 2, 6);
    let opts = [
        Optimizer::adamw(1e-2),
        Optimizer::Sgd {
            lr: 0.5,
            momentum: 0.9,
            weight_decay: 0.0,
        },
        Optimizer::Lion {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.99,
            weight_decay: 0.1,
        },
        Optimizer::Lamb {
            lr: 1e-2,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-6,
            weight_decay: 0.01,
        },
    ];
    for opt in opts {
        let mut full = Weights::init(&c, 2);
        let rec = train(&c, &mut full, &tokens, None, 2, 6, 10, &opt)?;
        assert!(rec[9].loss < rec[0].loss, "{opt:?}: {rec:?}");
        // Two micro-batches of one sequence each count the same number of
        // tokens, so their mean loss and gradient equal the full batch's.
        let mut acc = Weights::init(&c, 2);
        let micro: Vec<Batch> = tokens
            .chunks(6)
            .map(|t| Batch {
                tokens: t,
                labels: None,
                attention_mask: None,
                batch: 1,
                seq: 6,
            })
            .collect();
        let rec2 = train_accumulated(&c, &mut acc, &micro, 10, &opt)?;
        for (a, b) in rec.iter().zip(&rec2) {
            assert!(
                (a.loss - b.loss).abs() < 1e-9 * a.loss,
                "{opt:?}: {a:?} vs {b:?}"
            );
            assert!(
                (a.grad_norm - b.grad_norm).abs() < 1e-9 * a.grad_norm,
                "{opt:?}: {a:?} vs {b:?}"
            );
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- invariants

#[test]
fn initial_loss_is_near_ln_vocab_for_small_init() -> R {
    for c in [
        RefConfig::tiny_gpt2(),
        RefConfig::tiny_llama(),
        RefConfig::tiny_bert(),
    ] {
        let tokens = lm_batch(&c, 8, 2, 8);
        // BERT sees its own (unmasked) input, so its labels are other tokens.
        let labels = mlm_labels(&lm_batch(&c, 10, 2, 8));
        let b = Batch {
            tokens: &tokens,
            labels: (c.family == Family::Bert).then_some(labels.as_slice()),
            attention_mask: None,
            batch: 2,
            seq: 8,
        };
        let l = loss(&c, &Weights::init(&c, 9), &b)?;
        let ln_v = (c.vocab_size as f64).ln();
        assert!(
            (l - ln_v).abs() < 0.05,
            "{:?}: {l} vs ln(vocab) {ln_v}",
            c.family
        );
    }
    Ok(())
}

/// The loss of `labels` with only position `t` counted.
fn loss_at(
    c: &RefConfig,
    w: &Weights,
    tokens: &[u32],
    labels: &[i64],
    t: usize,
    mask: Option<&[u8]>,
) -> Result<f64, RefError> {
    let only: Vec<i64> = labels
        .iter()
        .enumerate()
        .map(|(i, &l)| if i == t { l } else { IGNORE })
        .collect();
    loss(
        c,
        w,
        &Batch {
            tokens,
            labels: Some(&only),
            attention_mask: mask,
            batch: 1,
            seq: tokens.len(),
        },
    )
}

#[test]
fn ignored_labels_do_not_count_and_the_mean_is_over_counted_tokens() -> R {
    for c in [
        RefConfig::tiny_gpt2(),
        RefConfig::tiny_llama(),
        RefConfig::tiny_bert(),
    ] {
        let w = random_weights(&c, 4);
        let tokens = lm_batch(&c, 12, 1, 8);
        let labels: Vec<i64> = vec![7, 9, IGNORE, 11, IGNORE, IGNORE, 2, 50];
        let all = loss(
            &c,
            &w,
            &Batch {
                tokens: &tokens,
                labels: Some(&labels),
                attention_mask: None,
                batch: 1,
                seq: 8,
            },
        )?;
        // Causal models: logits t predict labels[t + 1]; BERT: labels[t].
        let counted: Vec<usize> = match c.family {
            Family::Bert => (0..8).filter(|&t| labels[t] != IGNORE).collect(),
            _ => (1..8).filter(|&t| labels[t] != IGNORE).collect(),
        };
        let mut sum = 0.0;
        for &t in &counted {
            sum += loss_at(&c, &w, &tokens, &labels, t, None)?;
        }
        let mean = sum / counted.len() as f64;
        assert!(
            (all - mean).abs() < 1e-12,
            "{:?}: {all} vs mean of counted {mean}",
            c.family
        );
        let none = vec![IGNORE; 8];
        let nan = loss(
            &c,
            &w,
            &Batch {
                tokens: &tokens,
                labels: Some(&none),
                attention_mask: None,
                batch: 1,
                seq: 8,
            },
        )?;
        assert!(
            nan.is_nan(),
            "{:?}: all-ignored loss is 0/0 as in PyTorch, got {nan}",
            c.family
        );
    }
    Ok(())
}

#[test]
fn causal_loss_at_t_ignores_later_tokens_and_bert_padding_is_invisible() -> R {
    for c in [
        RefConfig::tiny_gpt2(),
        RefConfig::tiny_llama(),
        RefConfig::tiny_bert(),
    ] {
        let w = random_weights(&c, 6);
        let tokens = lm_batch(&c, 13, 1, 8);
        let labels: Vec<i64> = tokens.iter().map(|&t| t as i64).collect();
        // Predicting labels[4] (causal: from logits at 3; BERT: at 4).
        let base = loss_at(&c, &w, &tokens, &labels, 4, None)?;
        let changed = |pos: usize| -> Result<f64, RefError> {
            let mut t = tokens.clone();
            t[pos] = (t[pos] + 1) % c.vocab_size as u32;
            loss_at(&c, &w, &t, &labels, 4, None)
        };
        let later = changed(6)?;
        let earlier = changed(1)?;
        assert!(
            (earlier - base).abs() > 1e-6,
            "{:?}: earlier tokens must matter",
            c.family
        );
        if c.family == Family::Bert {
            assert!(
                (later - base).abs() > 1e-6,
                "{:?}: BERT is bidirectional",
                c.family
            );
            // With positions 6 and 7 padded, their tokens no longer matter.
            let mask = [1, 1, 1, 1, 1, 1, 0, 0];
            let padded = loss_at(&c, &w, &tokens, &labels, 4, Some(&mask))?;
            let mut t = tokens.clone();
            t[6] = (t[6] + 5) % c.vocab_size as u32;
            t[7] = (t[7] + 9) % c.vocab_size as u32;
            let padded2 = loss_at(&c, &w, &t, &labels, 4, Some(&mask))?;
            assert!(
                (padded - padded2).abs() < 1e-14,
                "padding leaked: {padded} vs {padded2}"
            );
            assert!(
                (padded - base).abs() > 1e-6,
                "the mask must change attention"
            );
        } else {
            assert!(
                (later - base).abs() < 1e-14,
                "{:?}: future token leaked: {base} vs {later}",
                c.family
            );
            let at3 = changed(3)?;
            assert!(
                (at3 - base).abs() > 1e-6,
                "{:?}: the token at t matters",
                c.family
            );
        }
    }
    Ok(())
}

#[test]
fn causal_labels_shift_left_by_one() {
    let labels = [1, 2, 3, 4, 5, 6];
    assert_eq!(
        shift_labels(&labels, 2, 3),
        vec![2, 3, IGNORE, 5, 6, IGNORE]
    );
}

#[test]
fn bad_inputs_are_errors_naming_the_field() {
    let c = RefConfig::tiny_gpt2();
    let b = RefConfig::tiny_bert();
    let t = [1u32, 2, 3, 4];
    let big = [1u32, 2, 3, 64];
    let bad_label = [1i64, 2, 3, 99];
    let zero_mask = [0u8, 0, 1, 1];
    let cases: Vec<(&RefConfig, Batch, &str)> = vec![
        (
            &c,
            Batch {
                tokens: &t,
                labels: None,
                attention_mask: None,
                batch: 1,
                seq: 3,
            },
            "tokens: 4 tokens for batch 1 x seq 3",
        ),
        (
            &c,
            Batch {
                tokens: &big,
                labels: None,
                attention_mask: None,
                batch: 1,
                seq: 4,
            },
            "tokens: token 64 is outside vocab_size 64",
        ),
        (
            &c,
            Batch {
                tokens: &t,
                labels: Some(&bad_label),
                attention_mask: None,
                batch: 1,
                seq: 4,
            },
            "labels: label 99 at row 2 is neither -100 nor in 0..64",
        ),
        (
            &c,
            Batch {
                tokens: &t,
                labels: None,
                attention_mask: Some(&[1, 1, 1, 1]),
                batch: 1,
                seq: 4,
            },
            "attention_mask: only BERT takes an attention mask here",
        ),
        (
            &b,
            Batch {
                tokens: &t,
                labels: None,
                attention_mask: None,
                batch: 1,
                seq: 4,
            },
            "labels: BERT's MLM loss needs labels",
        ),
        (
            &b,
            Batch {
                tokens: &t,
                labels: Some(&[1, 2, 3, 4]),
                attention_mask: Some(&zero_mask),
                batch: 2,
                seq: 2,
            },
            "attention_mask: a sequence masks every position",
        ),
        (
            &c,
            Batch {
                tokens: &[1; 17],
                labels: None,
                attention_mask: None,
                batch: 1,
                seq: 17,
            },
            "seq: 17 exceeds max_positions 16",
        ),
    ];
    for (cfg, batch, want) in cases {
        let w = Weights::init(cfg, 0);
        match loss(cfg, &w, &batch) {
            Err(e) => assert_eq!(e.to_string(), want),
            Ok(l) => panic!("expected `{want}`, got loss {l}"),
        }
    }
}

// ---------------------------------------------------------------- optimisers

/// Two steps on p = [1, -2] with g1 = [0.5, -0.25], g2 = [-0.125, 0.75]. Step-1
/// values are worked out by hand in the comments; step-2 values were computed
/// separately from the published update rules.
#[test]
fn optimizer_updates_match_hand_computed_steps() {
    let cases: [(&str, Optimizer, [f64; 2], [f64; 2]); 4] = [
        // p *= 1 - 0.1 * 0.1 -> [0.99, -1.98]; m_hat = g, sqrt(v_hat) = |g|;
        // p -= 0.1 * g / (|g| + 1e-8) -> 0.99 - 0.1 (1 - 2e-8) = 0.890000002.
        (
            "adamw",
            Optimizer::AdamW {
                lr: 0.1,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.1,
            },
            [0.890000002, -1.8800000039999998],
            [0.8341531861477056, -1.9106189864058514],
        ),
        // d = g + 0.1 p = [0.6, -0.45]; buf = d; p -= 0.1 d -> [0.94, -1.955].
        // Step 2: d = [-0.031, 0.5545]; buf = 0.9 [0.6, -0.45] + d; p -= 0.1 buf.
        (
            "sgd momentum",
            Optimizer::Sgd {
                lr: 0.1,
                momentum: 0.9,
                weight_decay: 0.1,
            },
            [0.94, -1.955],
            [0.8891, -1.96995],
        ),
        // sign(0.1 g) = [1, -1]; p = p - 0.1 (u + 0.1 p) = [0.89, -1.88].
        // Step 2: m = 0.01 g1; sign(0.9 m + 0.1 g2) = [-1, 1]; p = 0.99 p - 0.1 u.
        (
            "lion",
            Optimizer::Lion {
                lr: 0.1,
                beta1: 0.9,
                beta2: 0.99,
                weight_decay: 0.1,
            },
            [0.89, -1.88],
            [0.9811, -1.9612],
        ),
        // u = g / (|g| + 1e-6) + 0.1 p ~ [1.1, -1.2]; ratio = |p| / |u| = sqrt 5 / sqrt 2.65;
        // p -= 0.1 ratio u.
        (
            "lamb",
            Optimizer::Lamb {
                lr: 0.1,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-6,
                weight_decay: 0.1,
            },
            [0.8489032552549325, -1.8351674372963767],
            [0.6725142075884574, -1.9340191770902098],
        ),
    ];
    let grad = |g: [f64; 2]| Weights {
        map: [(
            "p".to_string(),
            Tensor {
                shape: vec![2],
                data: g.to_vec(),
            },
        )]
        .into(),
    };
    for (name, opt, step1, step2) in cases {
        let mut p = grad([1.0, -2.0]);
        let mut st = OptState::default();
        opt.step(&mut st, &mut p, &grad([0.5, -0.25]));
        let got1 = p.map["p"].data.clone();
        opt.step(&mut st, &mut p, &grad([-0.125, 0.75]));
        let got2 = p.map["p"].data.clone();
        for (got, want) in [(got1, step1), (got2, step2)] {
            for (g, w) in got.iter().zip(want) {
                assert!((g - w).abs() < 1e-12, "{name}: {got:?} vs {want:?}");
            }
        }
    }
}

#[test]
fn lamb_trust_ratio_is_one_for_a_zero_parameter() {
    let opt = Optimizer::Lamb {
        lr: 0.1,
        beta1: 0.9,
        beta2: 0.999,
        eps: 0.0,
        weight_decay: 0.0,
    };
    let mut p = Weights {
        map: [("p".to_string(), Tensor::zeros(&[2]))].into(),
    };
    let g = Weights {
        map: [(
            "p".to_string(),
            Tensor {
                shape: vec![2],
                data: vec![2.0, -3.0],
            },
        )]
        .into(),
    };
    opt.step(&mut OptState::default(), &mut p, &g);
    assert_eq!(p.map["p"].data, vec![-0.1, 0.1]);
}

// ------------------------------------------------------------------- configs

#[test]
fn hugging_face_configs_parse_with_transformers_defaults() -> R {
    let gpt2 = RefConfig::from_hf_json(
        r#"{"model_type": "gpt2", "n_embd": 16, "n_layer": 2, "n_head": 2, "n_positions": 16,
            "vocab_size": 64, "activation_function": "gelu_new", "layer_norm_epsilon": 1e-05}"#,
    )?;
    assert_eq!(gpt2, RefConfig::tiny_gpt2());
    let llama = RefConfig::from_hf_json(
        r#"{"model_type": "llama", "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-06,
            "rope_theta": 10000.0, "max_position_embeddings": 64, "vocab_size": 64,
            "hidden_act": "silu", "rope_scaling": null}"#,
    )?;
    assert_eq!(llama, RefConfig::tiny_llama());
    let bert = RefConfig::from_hf_json(
        r#"{"model_type": "bert", "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
            "intermediate_size": 32, "hidden_act": "gelu", "max_position_embeddings": 16,
            "type_vocab_size": 2, "layer_norm_eps": 1e-12, "vocab_size": 64}"#,
    )?;
    assert_eq!(bert, RefConfig::tiny_bert());
    // Defaults of GPT2Config (n_inner = 4 n_embd, tied) and LlamaConfig (kv heads = heads).
    let d = RefConfig::from_hf_json(r#"{"model_type": "gpt2"}"#)?;
    assert_eq!(
        (
            d.hidden_size,
            d.intermediate_size,
            d.vocab_size,
            d.tie_word_embeddings
        ),
        (768, 3072, 50257, true)
    );
    let d = RefConfig::from_hf_json(
        r#"{"model_type": "llama", "num_attention_heads": 8, "hidden_size": 64}"#,
    )?;
    assert_eq!(
        (d.num_kv_heads, d.head_dim, d.tie_word_embeddings),
        (8, 8, false)
    );
    Ok(())
}

#[test]
fn bad_configs_are_errors_naming_the_field() {
    let cases = [
        (r#"{"model_type": "t5"}"#, "config field `model_type`: \"t5\" is not gpt2, llama or bert"),
        (r#"{"n_embd": 8}"#, "config field `model_type`: is required"),
        (r#"{"model_type": "gpt2", "n_embd": "wide"}"#, "config field `n_embd`: \"wide\" is not a non-negative integer"),
        (r#"{"model_type": "gpt2", "n_embd": 10, "n_head": 4}"#, "config field `num_heads`: 4 heads do not divide hidden size 10 evenly"),
        (r#"{"model_type": "llama", "num_attention_heads": 4, "num_key_value_heads": 3}"#, "config field `num_kv_heads`: 3 does not divide num_heads 4"),
        (r#"{"model_type": "llama", "rope_scaling": {"type": "linear", "factor": 2.0}}"#, "config field `rope_scaling`: only null is supported"),
        (r#"{"model_type": "bert", "hidden_act": "relu"}"#, "config field `hidden_act`: \"relu\" is not gelu_new, gelu_pytorch_tanh, gelu, silu or swish"),
        (r#"{"model_type": "bert", "hidden_size": 0}"#, "config field `hidden_size`: must be positive"),
    ];
    for (json, want) in cases {
        match RefConfig::from_hf_json(json) {
            Err(e) => assert_eq!(e.to_string(), want, "{json}"),
            Ok(c) => panic!("{json}: expected `{want}`, got {c:?}"),
        }
    }
    let err = RefConfig::from_hf_json("{")
        .map(|_| ())
        .map_err(|e| e.to_string());
    assert!(
        matches!(&err, Err(m) if m.starts_with("config.json: EOF")),
        "{err:?}"
    );
}

// ---------------------------------------------------------------- weights, IO

/// Expected `(name, shape)` pairs.
type NamesAndShapes = &'static [(&'static str, &'static [usize])];

#[test]
fn weight_names_follow_hugging_face() {
    let want: [(RefConfig, NamesAndShapes, &[&str]); 3] = [
        (
            RefConfig::tiny_gpt2(),
            &[
                ("wte.weight", &[64, 16]),
                ("wpe.weight", &[16, 16]),
                ("h.1.attn.c_attn.weight", &[16, 48]),
                ("h.0.attn.c_attn.bias", &[48]),
                ("h.0.mlp.c_fc.weight", &[16, 64]),
                ("h.0.mlp.c_proj.weight", &[64, 16]),
                ("ln_f.bias", &[16]),
            ],
            &["lm_head.weight"],
        ),
        (
            RefConfig::tiny_llama(),
            &[
                ("model.embed_tokens.weight", &[64, 16]),
                ("model.layers.1.self_attn.q_proj.weight", &[16, 16]),
                ("model.layers.0.self_attn.k_proj.weight", &[8, 16]),
                ("model.layers.0.self_attn.o_proj.weight", &[16, 16]),
                ("model.layers.0.mlp.down_proj.weight", &[16, 32]),
                ("model.norm.weight", &[16]),
                ("lm_head.weight", &[64, 16]),
            ],
            &["model.layers.0.self_attn.q_proj.bias"],
        ),
        (
            RefConfig::tiny_bert(),
            &[
                ("bert.embeddings.token_type_embeddings.weight", &[2, 16]),
                ("bert.encoder.layer.1.attention.self.key.bias", &[16]),
                ("bert.encoder.layer.0.intermediate.dense.weight", &[32, 16]),
                ("bert.encoder.layer.0.output.LayerNorm.weight", &[16]),
                ("cls.predictions.transform.LayerNorm.bias", &[16]),
                ("cls.predictions.bias", &[64]),
            ],
            &["cls.predictions.decoder.weight", "bert.pooler.dense.weight"],
        ),
    ];
    for (c, present, absent) in want {
        let specs = param_specs(&c);
        for (name, shape) in present {
            let s = specs.iter().find(|s| s.name == *name);
            assert_eq!(
                s.map(|s| s.shape.as_slice()),
                Some(*shape),
                "{:?}: {name}",
                c.family
            );
        }
        for name in absent {
            assert!(
                specs.iter().all(|s| s.name != *name),
                "{:?}: {name} must not be stored",
                c.family
            );
        }
    }
    assert_eq!(param_specs(&RefConfig::tiny_gpt2()).len(), 2 + 2 * 12 + 2);
}

#[test]
fn init_is_deterministic_and_seeded() {
    let c = RefConfig::tiny_llama();
    assert_eq!(Weights::init(&c, 3), Weights::init(&c, 3));
    assert_ne!(Weights::init(&c, 3), Weights::init(&c, 4));
    let w = Weights::init(&c, 3);
    let e = &w.map["model.embed_tokens.weight"].data;
    let mean = e.iter().sum::<f64>() / e.len() as f64;
    let std = (e.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / e.len() as f64).sqrt();
    assert!(
        mean.abs() < 0.003 && (std - 0.02).abs() < 0.003,
        "mean {mean} std {std}"
    );
    assert!(w.map["model.norm.weight"].data.iter().all(|&x| x == 1.0));
}

#[test]
fn safetensors_round_trip_keeps_names_shapes_and_f32_values() -> R {
    let dir = std::env::temp_dir().join(format!("tessera-ref-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|source| RefError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    for c in [
        RefConfig::tiny_gpt2(),
        RefConfig::tiny_llama(),
        RefConfig::tiny_bert(),
    ] {
        let w = random_weights(&c, 21);
        let path = dir.join(format!("{:?}.safetensors", c.family));
        save(&w, &path)?;
        let back = load(&path)?.checked_for(&c)?;
        let mut rounded = w.clone();
        rounded
            .map
            .values_mut()
            .for_each(|t| t.data.iter_mut().for_each(|x| *x = *x as f32 as f64));
        assert_eq!(back, rounded, "{:?}", c.family);
        // Writing is deterministic.
        assert_eq!(to_safetensors(&w)?, to_safetensors(&back)?);
    }
    std::fs::remove_dir_all(&dir).map_err(|source| RefError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    Ok(())
}

#[test]
fn checkpoints_are_matched_to_the_model() -> R {
    let c = RefConfig::tiny_gpt2();
    let w = Weights::init(&c, 1);
    // A tied copy of the head, as GPT2LMHeadModel checkpoints may carry, is dropped.
    let mut with_head = w.clone();
    with_head
        .map
        .insert("lm_head.weight".into(), w.map["wte.weight"].clone());
    with_head
        .map
        .insert("h.0.attn.bias".into(), Tensor::zeros(&[1, 1, 16, 16]));
    assert_eq!(with_head.checked_for(&c)?, w);
    let mut missing = w.clone();
    missing.map.remove("h.1.ln_2.bias");
    let mut reshaped = w.clone();
    reshaped
        .map
        .insert("wpe.weight".into(), Tensor::zeros(&[8, 16]));
    let mut extra = w.clone();
    extra
        .map
        .insert("transformer.wte.weight".into(), Tensor::zeros(&[1]));
    let cases = [
        (missing, "weight `h.1.ln_2.bias` is missing"),
        (
            reshaped,
            "weight `wpe.weight` has shape [8, 16], expected [16, 16]",
        ),
        (
            extra,
            "weight `transformer.wte.weight` is not expected for this model",
        ),
    ];
    for (weights, want) in cases {
        assert_eq!(
            weights
                .checked_for(&c)
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Err(want.to_string())
        );
    }
    // Other float dtypes read back; integers are rejected by name.
    let bf = [0x80u8, 0x3f, 0x00, 0xc0]; // bf16 1.0, -2.0
    let f64s: Vec<u8> = [0.1f64].iter().flat_map(|x| x.to_le_bytes()).collect();
    let ints = [1u8, 0, 0, 0];
    let views = [
        (
            "a",
            safetensors::tensor::TensorView::new(safetensors::Dtype::BF16, vec![2], &bf)
                .map_err(|e| RefError::Safetensors(e.to_string()))?,
        ),
        (
            "b",
            safetensors::tensor::TensorView::new(safetensors::Dtype::F64, vec![1], &f64s)
                .map_err(|e| RefError::Safetensors(e.to_string()))?,
        ),
    ];
    let bytes =
        safetensors::serialize(views, None).map_err(|e| RefError::Safetensors(e.to_string()))?;
    let read = from_safetensors(&bytes)?;
    assert_eq!(read.map["a"].data, vec![1.0, -2.0]);
    assert_eq!(read.map["b"].data, vec![0.1]);
    let int_view = safetensors::tensor::TensorView::new(safetensors::Dtype::I32, vec![1], &ints)
        .map_err(|e| RefError::Safetensors(e.to_string()))?;
    let bytes = safetensors::serialize([("ids", int_view)], None)
        .map_err(|e| RefError::Safetensors(e.to_string()))?;
    assert_eq!(
        from_safetensors(&bytes)
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Err("safetensors tensor `ids` has dtype I32, expected F32, F64, F16 or BF16".to_string())
    );
    assert!(from_safetensors(b"not a safetensors file").is_err());
    Ok(())
}

// -------------------------------------------------------------- independence

/// The oracle must not share code with what it checks: no file of
/// `tests/reference/` names a Tessera crate.
#[test]
fn reference_imports_no_tessera_crate() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "rs"));
    assert!(files.len() >= 10, "found only {files:?}");
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        for (n, line) in text.lines().enumerate() {
            assert!(
                !line.contains(concat!("tessera", "_")) && !line.contains(concat!("tessera", "::")),
                "{}:{}: {line}",
                path.display(),
                n + 1
            );
        }
    }
}

// ------------------------------------------------------------- composition

/// With every block's output projections zeroed, each block is the identity
/// (GPT-2, Llama: zero residual branch; BERT: LayerNorm of an already
/// normalised input), so the loss must equal embeddings -> final norm ->
/// head computed directly here.
#[test]
fn zeroed_blocks_reduce_each_model_to_embedding_norm_and_head() -> R {
    let zero_suffixes = [
        "attn.c_proj.weight",
        "attn.c_proj.bias",
        "mlp.c_proj.weight",
        "mlp.c_proj.bias",
        "self_attn.o_proj.weight",
        "mlp.down_proj.weight",
        "attention.output.dense.weight",
        "attention.output.dense.bias",
        "output.dense.weight",
        "output.dense.bias",
    ];
    for c in [
        RefConfig::tiny_gpt2(),
        RefConfig::tiny_llama(),
        RefConfig::tiny_bert(),
    ] {
        let mut w = random_weights(&c, 31);
        for (name, t) in w.map.iter_mut() {
            let in_block =
                name.starts_with("h.") || name.contains("layers.") || name.contains("layer.");
            if in_block && zero_suffixes.iter().any(|s| name.ends_with(s)) {
                t.data.fill(0.0);
            }
        }
        let (seq, h, v) = (6, c.hidden_size, c.vocab_size);
        let tokens = lm_batch(&c, 14, 1, seq);
        let ids: Vec<usize> = tokens.iter().map(|&t| t as usize).collect();
        let pos: Vec<usize> = (0..seq).collect();
        let labels: Vec<i64> = lm_batch(&c, 15, 1, seq).iter().map(|&t| t as i64).collect();
        let g = |n: &str| w.map[n].data.clone();
        let (logits, targets) = match c.family {
            Family::Gpt2 => {
                let x = ops::add(
                    &ops::embedding(&ids, &g("wte.weight"), h),
                    &ops::embedding(&pos, &g("wpe.weight"), h),
                );
                let (y, _) =
                    ops::layer_norm(&x, &g("ln_f.weight"), &g("ln_f.bias"), seq, h, c.norm_eps);
                let l = ops::linear(&y, &g("wte.weight"), None, seq, h, v, Layout::OutIn);
                (l, shift_labels(&labels, 1, seq))
            }
            Family::Llama => {
                let x = ops::embedding(&ids, &g("model.embed_tokens.weight"), h);
                let (y, _) = ops::rms_norm(&x, &g("model.norm.weight"), seq, h, c.norm_eps);
                let l = ops::linear(&y, &g("lm_head.weight"), None, seq, h, v, Layout::OutIn);
                (l, shift_labels(&labels, 1, seq))
            }
            Family::Bert => {
                let e = |n: &str| g(&format!("bert.embeddings.{n}"));
                let x = ops::add(
                    &ops::add(
                        &ops::embedding(&ids, &e("word_embeddings.weight"), h),
                        &ops::embedding(&pos, &e("position_embeddings.weight"), h),
                    ),
                    &ops::embedding(&[0; 6], &e("token_type_embeddings.weight"), h),
                );
                let (mut x, _) = ops::layer_norm(
                    &x,
                    &e("LayerNorm.weight"),
                    &e("LayerNorm.bias"),
                    seq,
                    h,
                    c.norm_eps,
                );
                for l in 0..c.num_layers {
                    for ln in ["attention.output.LayerNorm", "output.LayerNorm"] {
                        let p = |s: &str| g(&format!("bert.encoder.layer.{l}.{ln}.{s}"));
                        x = ops::layer_norm(&x, &p("weight"), &p("bias"), seq, h, c.norm_eps).0;
                    }
                }
                let t = |n: &str| g(&format!("cls.predictions.transform.{n}"));
                let y = ops::linear(
                    &x,
                    &t("dense.weight"),
                    Some(&t("dense.bias")),
                    seq,
                    h,
                    h,
                    Layout::OutIn,
                );
                let y = ops::activation(Activation::GeluErf, &y);
                let (y, _) = ops::layer_norm(
                    &y,
                    &t("LayerNorm.weight"),
                    &t("LayerNorm.bias"),
                    seq,
                    h,
                    c.norm_eps,
                );
                let l = ops::linear(
                    &y,
                    &e("word_embeddings.weight"),
                    Some(&g("cls.predictions.bias")),
                    seq,
                    h,
                    v,
                    Layout::OutIn,
                );
                (l, labels.clone())
            }
        };
        let want = cross_entropy(&logits, &targets, v)?.loss;
        let got = loss(
            &c,
            &w,
            &Batch {
                tokens: &tokens,
                labels: Some(&labels),
                attention_mask: None,
                batch: 1,
                seq,
            },
        )?;
        assert!(
            (got - want).abs() < 1e-12,
            "{:?}: {got} vs {want}",
            c.family
        );
    }
    Ok(())
}
