//! `tessera train`: trains a model on the functional simulator from a
//! safetensors checkpoint and token files, writing per-step loss and
//! gradient norm as JSON and, optionally, the final weights.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde_json::json;
use tessera::train::{read_safetensors, train, write_safetensors, TrainData};

use crate::compile_cmd::ModelArgs;
use crate::files::{print, shown, write_atomic};
use crate::hw;

/// `tessera train` arguments.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Initial weights (Hugging Face names and layouts).
    #[arg(long, value_name = "MODEL.safetensors")]
    weights: PathBuf,
    /// Token ids, uint16 little-endian, row-major [n, batch, seq]; the n
    /// batches are used in turn.
    #[arg(long, value_name = "TOKENS.bin")]
    tokens: PathBuf,
    /// Labels, int32 little-endian, same layout (-100: not predicted).
    /// Causal models default to the tokens (the loss shifts them).
    #[arg(long, value_name = "LABELS.bin")]
    labels: Option<PathBuf>,
    /// Optimizer steps.
    #[arg(long, default_value_t = 1)]
    steps: u64,
    /// Hardware description: a preset name or a TOML file.
    #[arg(long, default_value = "default", value_name = "PRESET|FILE.toml")]
    hw: String,
    /// Write `{"steps":[{"step":0,"loss":..,"grad_norm":..},..]}` here.
    #[arg(long, value_name = "OUT.json")]
    json: Option<PathBuf>,
    /// Write the trained weights here (f32, Hugging Face names).
    #[arg(long, value_name = "FINAL.safetensors")]
    save_weights: Option<PathBuf>,
}

fn read(path: &PathBuf) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", shown(path)))
}

/// Runs `tessera train`.
pub fn run(args: &TrainArgs) -> Result<()> {
    let model = args.model.model()?;
    let setup = args.model.setup()?;
    let arch = hw::load(&args.hw)?;
    let weights = read_safetensors(&read(&args.weights)?, &shown(&args.weights))?;
    let tok_bytes = read(&args.tokens)?;
    if tok_bytes.len() % 2 != 0 {
        bail!(
            "{}: uint16 tokens need an even number of bytes, got {}",
            shown(&args.tokens),
            tok_bytes.len()
        );
    }
    let tokens: Vec<u32> = tok_bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_le_bytes([c[0], c[1]])))
        .collect();
    let labels = match &args.labels {
        Some(p) => {
            let b = read(p)?;
            if b.len() % 4 != 0 {
                bail!(
                    "{}: int32 labels need a multiple of 4 bytes, got {}",
                    shown(p),
                    b.len()
                );
            }
            Some(
                b.chunks(4)
                    .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            )
        }
        None => None,
    };
    let data = TrainData { tokens, labels };
    let (records, trainer) = train(
        &model,
        &setup,
        &arch,
        &weights,
        &shown(&args.weights),
        &data,
        args.steps,
    )?;
    let steps: Vec<_> = records
        .iter()
        .enumerate()
        .map(|(i, r)| json!({"step": i, "loss": r.loss, "grad_norm": r.grad_norm}))
        .collect();
    if let Some(path) = &args.json {
        let mut text = serde_json::to_string_pretty(&json!({ "steps": steps }))?;
        text.push('\n');
        write_atomic(path, text.as_bytes())?;
    }
    if let Some(path) = &args.save_weights {
        write_atomic(path, &write_safetensors(&trainer.weights()?)?)?;
    }
    let mut out = String::new();
    for (i, r) in records.iter().enumerate() {
        out += &format!(
            "step {i:>4}  loss {:.6}  grad_norm {:.6}\n",
            r.loss, r.grad_norm
        );
    }
    print(&out)
}
