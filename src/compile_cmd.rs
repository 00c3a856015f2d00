//! `tessera compile`: builds the training-step graph of a model (or reads
//! a hand-edited one) and emits its text form. The model and training
//! setup flags are shared with the commands that run steps.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use tessera_compiler::ir::{parse::parse, print::print, Graph};
use tessera_compiler::model::ModelConfig;
use tessera_compiler::setup::{Optimizer, Precision, Recompute, TrainingSetup};
use tessera_compiler::{training_graph, Stage};

use crate::files;

/// The model and how it is trained.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// A preset name (e.g. gpt2-small, llama-7b, bert-base) or a Hugging Face `config.json`.
    #[arg(long, value_name = "PRESET|CONFIG.json")]
    pub model: String,
    /// Sequences per step.
    #[arg(long, default_value_t = 8)]
    pub batch: u64,
    /// Tokens per sequence.
    #[arg(long, default_value_t = 1024)]
    pub seq: u64,
    /// fp32, bf16-mixed, fp16-mixed or fp8-mixed.
    #[arg(long, default_value = "bf16-mixed")]
    pub precision: String,
    /// adamw, sgd, lion, lamb or adafactor (PyTorch's defaults; takes --lr
    /// and --weight-decay).
    #[arg(long, default_value = "adamw")]
    pub optimizer: String,
    /// Learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Adam/Lion/LAMB betas (SGD: momentum, second ignored).
    #[arg(long, default_value = "0.9,0.999", value_name = "B1,B2")]
    pub betas: String,
    /// Adam/LAMB epsilon (Adafactor keeps PyTorch's).
    #[arg(long, default_value_t = 1e-8)]
    pub eps: f64,
    /// Weight decay (decoupled for AdamW and Lion, coupled for SGD).
    #[arg(long, default_value_t = 0.01)]
    pub weight_decay: f64,
    /// Activation recomputation: none, selective or full.
    #[arg(long, default_value = "none")]
    pub recompute: String,
    /// Micro-batches of `--batch` sequences whose gradients are averaged
    /// before one optimizer step.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub grad_accumulation: u64,
    /// Turn a fusion pass off (repeatable): attention, optimizer, norm,
    /// cross_entropy, epilogue.
    #[arg(long = "no-fuse", value_name = "PASS")]
    pub no_fuse: Vec<String>,
}

impl ModelArgs {
    /// The model description, from a preset or a config file.
    pub fn model(&self) -> Result<ModelConfig> {
        let looks_like_file = self.model.ends_with(".json") || Path::new(&self.model).exists();
        if looks_like_file {
            let path = Path::new(&self.model);
            let text = files::read_text(path)?;
            let mut m = ModelConfig::from_hf_json(&text, &files::shown(path))?;
            if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
                m.name = stem.to_string();
            }
            Ok(m)
        } else {
            Ok(ModelConfig::preset(&self.model)?)
        }
    }

    /// The training setup the flags describe.
    pub fn setup(&self) -> Result<TrainingSetup> {
        let (b1, b2) = self
            .betas
            .split_once(',')
            .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)))
            .with_context(|| {
                format!("--betas must be two numbers `B1,B2`, got `{}`", self.betas)
            })?;
        let mut s = TrainingSetup::new(self.batch, self.seq);
        s.precision = Precision::from_name(&self.precision)?;
        s.optimizer = Optimizer::from_name(
            &self.optimizer,
            self.lr,
            (b1, b2),
            self.eps,
            self.weight_decay,
        )?;
        s.recompute = Recompute::from_name(&self.recompute)?;
        s.grad_accumulation = self.grad_accumulation;
        for pass in &self.no_fuse {
            s.fusion
                .disable(pass)
                .map_err(anyhow::Error::msg)
                .context("--no-fuse")?;
        }
        Ok(s)
    }
}

/// `tessera compile` arguments.
#[derive(Debug, Args)]
pub struct CompileArgs {
    #[command(flatten)]
    model: Option<ModelArgs>,
    /// Read a graph in the IR text form (e.g. one edited by hand) instead of building one.
    #[arg(long, value_name = "FILE.ir", conflicts_with = "model")]
    graph: Option<PathBuf>,
    /// Where the pipeline stops: forward, backward or step.
    #[arg(long, default_value = "step")]
    stage: String,
    /// What to write: `graph` (the IR text form), `tsr` (the lowered
    /// program container, needs `-o`) or `asm` (its assembly).
    #[arg(long, default_value = "graph")]
    emit: String,
    /// Hardware description to lower for (`--emit tsr|asm`).
    #[arg(long, default_value = "default", value_name = "PRESET|FILE.toml")]
    hw: String,
    /// Output file (default: stdout).
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
}

/// Runs `tessera compile`.
pub fn run(args: &CompileArgs) -> Result<()> {
    let graph: Graph = match (&args.graph, &args.model) {
        (Some(path), _) => parse(&files::read_text(path)?, &files::shown(path))?,
        (None, Some(m)) => {
            let stage = match args.stage.as_str() {
                "forward" => Stage::Forward,
                "backward" => Stage::Backward,
                "step" => Stage::Step,
                other => anyhow::bail!("--stage must be forward, backward or step, got `{other}`"),
            };
            training_graph(&m.model()?, &m.setup()?, stage)?
        }
        (None, None) => {
            anyhow::bail!("give a model (--model PRESET|CONFIG.json) or a graph (--graph FILE.ir)")
        }
    };
    let text = match args.emit.as_str() {
        "graph" => print(&graph),
        "tsr" | "asm" => {
            let arch = crate::hw::load(&args.hw)?;
            let step = tessera_compiler::lower::lower_graph(&graph, &arch)?;
            if args.emit == "tsr" {
                let Some(path) = &args.output else {
                    anyhow::bail!(
                        "--emit tsr writes a binary container: give it a file with -o FILE.tsr"
                    );
                };
                return files::write_atomic(path, &step.program.to_bytes());
            }
            tessera_isa::disasm::disassemble(&step.program)
        }
        other => anyhow::bail!("--emit must be graph, tsr or asm, got `{other}`"),
    };
    match &args.output {
        Some(path) => files::write_atomic(path, text.as_bytes()),
        None => files::print(&text),
    }
}
