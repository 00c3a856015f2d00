//! Turns rows of `training_measurements.csv` into calibration points: a
//! workload on one device, its data-parallel layout, and the measured
//! throughput in tokens per second per GPU. Rows that a single-device model
//! cannot predict (time to train, TPUs, tensor/pipeline parallel runs,
//! unclear FLOP conventions, low confidence) are skipped with a reason.
//!
//! Assumptions where a source leaves a field blank are listed in
//! [`ASSUMPTIONS`] and in `docs/gpu_model.md`.

use crate::gpu::csv::Table;
use crate::gpu::model::StepLayout;
use crate::model_error::ModelError;
use crate::workload::{AttentionKernel, Fusion, Masking, Mlp, Precision, Recompute, Workload};

/// Groups whose rows are calibration points.
pub const GROUPS: [&str; 4] = [
    "mosaicml_mpt_benchmarks",
    "flashattention",
    "single_and_node_gpu",
    "llmc_nanogpt",
];

/// Defaults used where the source gives no value.
pub const ASSUMPTIONS: &[&str] = &[
    "micro-batch not given: 16k tokens per micro-batch for GPT runs (FlashAttention tables); NVIDIA DLE BERT: the README's A100 batches (128 fp32/tf32, 256 mixed at seq 128; 16 / 32 at seq 512) on every GPU, accumulated to 8192 (seq 128) / 4096 (seq 512) sequences per GPU and step",
    "NVIDIA DLE BERT (21.11 and later) loads data with LDDL sequence binning (bin size 64, scripts/run_pretraining_lddl): a batch is padded only to its bin's bound, so the computed sequence is shorter than the nominal one; mean binned length 124 of 128 (10% short sequences, BERT's short_seq_prob) and 288 of 512 (Wikipedia at 512 is about half padding, Krell et al. 2021, plus half a bin); the model runs that length and the measured sequences/s are compared at it",
    "heads not given: head width 128",
    "vocabulary: MPT 50368, GPT-2/GPT-3 50257 (llm.c 50304), BERT 15% of 30522 (the masked-LM head sees only masked positions), Transformer-XL 20000 (the head cluster of its adaptive softmax)",
    "Transformer-XL rows are predicted and listed but not fitted nor counted overall: relative-position attention and adaptive softmax are not in the workload description",
    "feed-forward size 4 x hidden, GELU MLP",
    "communication of data-parallel runs is overlapped with compute (not modelled here)",
    "A100 of unstated memory size: a100-40gb",
];

/// One calibration point.
#[derive(Debug, Clone, PartialEq)]
pub struct CalPoint {
    /// 1-based line of the data row in the CSV (header is line 1).
    pub line: usize,
    /// Data group.
    pub group: String,
    /// Device name in `data/gpu_devices.toml`.
    pub device: String,
    /// The job on one device.
    pub job: Workload,
    /// Micro-batches per step and optimizer sharding.
    pub layout: StepLayout,
    /// Measured throughput, tokens per second per GPU.
    pub tokens_per_s: f64,
    /// Whether the workload description covers the run. Points that it
    /// does not (Transformer-XL: relative-position attention and adaptive
    /// softmax) are predicted and reported but neither fitted nor counted
    /// in the overall error.
    pub in_scope: bool,
}

/// A row that was not used, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    /// 1-based CSV line.
    pub line: usize,
    /// Group of the row.
    pub group: String,
    /// Why it was not used.
    pub reason: String,
}

fn device_of(hw: &str) -> Option<&'static str> {
    let h = hw.to_ascii_lowercase();
    if h.contains("h100") {
        Some("h100")
    } else if h.contains("a100") {
        if h.contains("80") {
            Some("a100-80gb")
        } else {
            Some("a100-40gb")
        }
    } else if h.contains("v100") {
        if h.contains("16gb") {
            Some("v100-16gb")
        } else {
            Some("v100")
        }
    } else {
        None
    }
}

fn precision_of(p: &str, device: &str) -> Precision {
    let p = p.to_ascii_lowercase();
    if p.contains("fp8") {
        Precision::Fp8
    } else if p == "tf32" {
        Precision::Tf32
    } else if p == "fp32" {
        if device.starts_with("v100") {
            Precision::Fp32
        } else {
            Precision::Tf32
        }
    } else {
        Precision::Mixed16
    }
}

fn attention_of(implementation: &str, model: &str) -> AttentionKernel {
    let i = implementation.to_ascii_lowercase();
    // nanoGPT's bench.py at 5a725d90 (2022-12-29) predates its use of
    // PyTorch's fused scaled-dot-product attention.
    if i.contains("without flashattention")
        || i.contains("nanogpt bench.py")
        || model.contains("BERT")
        || model.contains("Transformer-XL")
    {
        AttentionKernel::Unfused
    } else if i == "flashattention"
        || i.contains("flash-attention training scripts (flashattention")
    {
        AttentionKernel::FlashV1
    } else {
        AttentionKernel::Flash
    }
}

/// NVIDIA DLE BERT micro-batch per GPU (README, A100 rows; the V100 rows
/// give none and are assumed the same).
fn bert_micro_batch(seq: u32, p: Precision) -> u32 {
    let half = matches!(p, Precision::Mixed16 | Precision::Fp8);
    match (seq <= 128, half) {
        (true, false) => 128,
        (true, true) => 256,
        (false, false) => 16,
        (false, true) => 32,
    }
}

/// NVIDIA DLE BERT sequences per GPU per optimizer step (LAMB).
fn bert_sequences_per_step(seq: u32) -> u32 {
    if seq <= 128 {
        8192
    } else {
        4096
    }
}

/// Mean padded length of a batch under LDDL binning (bin size 64), see
/// [`ASSUMPTIONS`]: 124 of 128, 288 of 512; other lengths unchanged.
fn binned_len(seq: u32) -> u32 {
    match seq {
        128 => 124,
        512 => 288,
        s => s,
    }
}

fn field_u32(t: &Table, r: usize, c: &str) -> Result<Option<u32>, ModelError> {
    let s = t.get(r, c)?;
    Ok(s.parse::<u32>().ok())
}

/// Reads every row; returns the calibration points and the skipped rows.
///
/// # Errors
/// [`ModelError::Data`] when a required column is missing.
pub fn load(text: &str, file: &str) -> Result<(Vec<CalPoint>, Vec<Skipped>), ModelError> {
    let t = Table::parse(text, file)?;
    let mut points = Vec::new();
    let mut skipped = Vec::new();
    for r in 0..t.len() {
        let line = r + 2;
        let group = t.get(r, "group")?.to_string();
        match point(&t, r, &group)? {
            Ok(p) => points.push(p),
            Err(reason) => skipped.push(Skipped {
                line,
                group,
                reason,
            }),
        }
    }
    Ok((points, skipped))
}

fn point(t: &Table, r: usize, group: &str) -> Result<Result<CalPoint, String>, ModelError> {
    if !GROUPS.contains(&group) {
        return Ok(Err(
            "group is a scale-out validation or not a GPU step measurement".into(),
        ));
    }
    if t.get(r, "confidence")? == "low" {
        return Ok(Err("low confidence".into()));
    }
    let metric = t.get(r, "metric")?;
    let Some(device) = device_of(t.get(r, "hardware")?) else {
        return Ok(Err("not a modelled GPU".into()));
    };
    let model = t.get(r, "model")?;
    let (Some(layers), Some(hidden), Some(seq)) = (
        field_u32(t, r, "n_layers")?,
        field_u32(t, r, "hidden")?,
        field_u32(t, r, "seq_len")?,
    ) else {
        return Ok(Err("model shape or sequence length not given".into()));
    };
    let Some(n) = field_u32(t, r, "n_accel")? else {
        return Ok(Err("device count not given".into()));
    };
    let heads = field_u32(t, r, "n_heads")?.unwrap_or((hidden / 128).max(1));
    let bert = model.contains("BERT");
    let txl = model.contains("Transformer-XL");
    let vocab = if model.starts_with("MPT") {
        50368
    } else if bert {
        // The masked-LM head runs only on the ~15% masked positions.
        30522 * 15 / 100
    } else if txl {
        20000
    } else if t.get(r, "implementation")?.contains("llm.c") {
        50304
    } else {
        50257
    };
    let precision = precision_of(t.get(r, "precision")?, device);
    let dle_bert = bert && t.get(r, "implementation")?.contains("NVIDIA DLE");
    let micro = match field_u32(t, r, "micro_batch")? {
        Some(m) => m,
        None if bert => bert_micro_batch(seq, precision),
        None => (16384 / seq).max(1),
    };
    let other = t.get(r, "other_parallel")?;
    let grad_accum = other
        .split(';')
        .find_map(|s| {
            s.trim()
                .strip_prefix("grad_accum ")
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(if bert {
            bert_sequences_per_step(seq) / micro
        } else {
            1
        });
    // The nominal length counts throughput; the binned length is computed.
    let nominal_seq = seq;
    let seq = if dle_bert { binned_len(seq) } else { seq };
    let sharded = other.contains("FSDP") || other.contains("ZeRO");
    let recompute = if other.contains("activation_checkpointing True") {
        Recompute::Full
    } else {
        Recompute::None
    };
    let implementation = t.get(r, "implementation")?;
    let job = Workload {
        name: model.to_string(),
        layers,
        hidden,
        heads,
        kv_heads: heads,
        ffn: 4 * hidden,
        mlp: Mlp::Gelu,
        vocab,
        tied_embedding: true,
        seq,
        memory_len: if txl { seq } else { 0 },
        micro_batch: micro,
        masking: if bert {
            Masking::Bidirectional
        } else {
            Masking::Causal
        },
        precision,
        attention: attention_of(implementation, model),
        recompute,
        fusion: if implementation.contains("llm.c") || implementation.contains("fused MLP") {
            Fusion::Fused
        } else {
            Fusion::Framework
        },
    };
    if job.validate().is_err() {
        return Ok(Err("model shape breaks a workload rule".into()));
    }
    let value = match t.get(r, "value")?.parse::<f64>() {
        Ok(v) => v,
        Err(_) => return Ok(Err("value is not a number".into())),
    };
    let nf = f64::from(n);
    let tokens_per_s = match metric {
        "throughput_tokens_per_s_total" => value / nf,
        // Sequences/s at the computed (binned) length: the model's
        // tokens/s over that length is the same sequence rate.
        "throughput_sequences_per_s" => value * f64::from(seq) / nf,
        "step_time" | "iteration_time" => {
            let Some(global) = field_u32(t, r, "global_batch_seqs")? else {
                return Ok(Err("global batch not given".into()));
            };
            let ms = if t.get(r, "unit")? == "ms" { 1e-3 } else { 1.0 };
            f64::from(global) * f64::from(seq) / (value * ms) / nf
        }
        "training_tflops_per_gpu" => {
            let seq = nominal_seq;
            // FlashAttention-2 convention: 6 * params + 12 * layers * hidden * seq per token.
            let per_token =
                6.0 * job.params() + 12.0 * f64::from(layers) * f64::from(hidden) * f64::from(seq);
            value * 1e12 / per_token
        }
        _ => {
            return Ok(Err(format!(
                "metric `{metric}` is not a step time or throughput"
            )))
        }
    };
    // Per-GPU sequences per step: from the global batch when the source
    // gives it, so gradient accumulation is counted.
    let layout = StepLayout {
        grad_accum,
        optimizer_shards: if sharded { n } else { 1 },
    };
    Ok(Ok(CalPoint {
        line: r + 2,
        group: group.to_string(),
        device: device.to_string(),
        job,
        layout,
        tokens_per_s,
        in_scope: !txl,
    }))
}
