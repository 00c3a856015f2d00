//! A Tessera chip as a [`LayerTimer`] for the scale-out model: per-layer,
//! head and optimizer times come from compiling one-block models with
//! `tessera_compiler` and timing them with the simulator (the sim crate
//! cannot import the compiler, so this join lives in the root package).
//!
//! Method (`docs/scaleout.md`, "Tessera chips"): for one core's share of
//! the micro-batch (up to [`COMPILED_TOKENS`] tokens), compile and time a 1-block and a 2-block model at stage
//! forward and backward, plus the 1-block whole step. The difference of the
//! two models is one block (forward; backward), the rest of the 1-block
//! model is the head (embedding, final norm, logits, loss), and the step
//! minus the backward stage is the optimizer, as a rate per parameter.
//! Larger micro-batches scale linearly (sequences are independent); times
//! divide by the tensor-parallel degree (the shard of every GEMM and of
//! the attention heads; replicated norms and residuals are divided too, which
//! is exact only with sequence parallelism). Models wider than
//! [`SLICE_HIDDEN`] compile a representative slice: hidden, heads and FFN
//! divided by `k` (head width kept), block time scaled by the FLOP ratio and
//! head time by `k`. Recomputation: full repeats the block forward,
//! selective its attention-core share of the forward FLOPs.

use std::collections::BTreeMap;
use std::sync::Mutex;

use anyhow::{Context, Result};
use tessera_compiler::lower::lower_graph;
use tessera_compiler::model::ModelConfig;
use tessera_compiler::setup::{Precision, TrainingSetup};
use tessera_compiler::{training_graph, Stage};
use tessera_isa::Arch;
use tessera_sim::gpu::GpuModel;
use tessera_sim::scaleout::{LayerTimer, Topology};
use tessera_sim::units::Seconds;
use tessera_sim::workload::{self, Mlp, Recompute, Split, Workload};
use tessera_sim::ModelError;

/// Most tokens per core compiled at once; larger micro-batches scale
/// linearly from this many.
pub const COMPILED_TOKENS: u32 = 4096;

/// Widest block compiled as is; wider models compile a slice.
pub const SLICE_HIDDEN: u64 = 2048;

/// Default per-device link bandwidth of a Tessera chip, GB/s per direction,
/// inside a node (the hardware description has no link fields; an
/// assumption of the NVLink-3 class, overridable with `--link-gbps`).
pub const DEFAULT_LINK_GBPS: f64 = 100.0;
/// Default inter-node bandwidth per Tessera chip, GB/s (200 Gb/s NIC per
/// chip, as an A100 DGX; `--inter-gbps`).
pub const DEFAULT_INTER_GBPS: f64 = 25.0;

/// A GPU with its default (NVLink, inter-node) bandwidths in GB/s per
/// device: inter-node by generation, 12.5 V100, 25 A100, 50 H100/H200.
///
/// # Errors
/// An unknown GPU.
pub fn gpu_with_links(name: &str) -> Result<(GpuModel, f64, f64)> {
    let gpu = GpuModel::builtin(name)?;
    let inter = match gpu.spec.family.as_str() {
        "v100" => 12.5,
        "a100" => 25.0,
        _ => 50.0,
    };
    let link = gpu.spec.nvlink_gbps;
    Ok((gpu, link, inter))
}

/// The default topology of a Tessera chip: 8 per node on switched links of
/// [`DEFAULT_LINK_GBPS`], [`DEFAULT_INTER_GBPS`] between nodes.
pub fn default_topology() -> Topology {
    Topology::dgx(DEFAULT_LINK_GBPS, DEFAULT_INTER_GBPS)
}

/// Usable share of HBM (as for GPUs: the rest goes to buffers and fragmentation).
pub const USABLE_MEMORY: f64 = 0.9;

/// Times of one sequence: block forward and backward, head (forward plus
/// backward), optimizer seconds per parameter.
#[derive(Debug, Clone, Copy, PartialEq)]
struct BaseTimes {
    block_fwd: f64,
    block_bwd: f64,
    head: f64,
    optimizer_per_param: f64,
}

impl BaseTimes {
    /// The times of `f` times as many sequences (optimizer unchanged).
    fn scaled(self, f: f64) -> BaseTimes {
        BaseTimes {
            block_fwd: self.block_fwd * f,
            block_bwd: self.block_bwd * f,
            head: self.head * f,
            ..self
        }
    }
}

/// A Tessera chip with a cache of compiled-and-timed block shapes.
#[derive(Debug)]
pub struct TesseraTimer {
    arch: Arch,
    cache: Mutex<BTreeMap<(u32, u8, u32), BaseTimes>>,
}

impl TesseraTimer {
    /// A timer for `arch`.
    pub fn new(arch: Arch) -> TesseraTimer {
        TesseraTimer {
            arch,
            cache: Mutex::new(BTreeMap::new()),
        }
    }

    /// The hardware description.
    pub fn arch(&self) -> &Arch {
        &self.arch
    }

    /// Times of `sequences` sequences on one core.
    fn base(&self, job: &Workload, sequences: u32) -> Result<BaseTimes, ModelError> {
        let prec = match job.precision {
            workload::Precision::Fp32 | workload::Precision::Tf32 => 0u8,
            _ => 1u8,
        };
        let key = (job.seq, prec, sequences);
        // Held while compiling, so parallel plan search compiles each shape
        // once and the other threads wait for it.
        let mut cache = self.lock();
        if let Some(b) = cache.get(&key) {
            return Ok(*b);
        }
        // A micro-batch whose kernels do not fit the core's scratchpad is
        // timed from half as many sequences, scaled linearly.
        let mut n = sequences;
        let b = loop {
            match time_blocks(&self.arch, job, n) {
                Ok(b) => break b.scaled(f64::from(sequences) / f64::from(n)),
                Err(_) if n > 1 => n /= 2,
                Err(e) => {
                    return Err(ModelError::Workload {
                        name: job.name.clone(),
                        field: "tessera",
                        rule: format!("{e:#}"),
                    })
                }
            }
        };
        cache.insert(key, b);
        Ok(b)
    }

    /// The compiled shape of a micro-batch and its time multiplier: the
    /// chip's cores split the micro-batch (as `tessera simulate` splits a
    /// batch), one core's share is compiled up to [`COMPILED_TOKENS`] tokens
    /// and scaled linearly beyond, and tensor parallelism divides the work.
    fn shape(&self, job: &Workload, split: Split) -> (u32, f64) {
        let cores = self.arch.spec().chip.cores.max(1);
        let per_core = job.micro_batch.div_ceil(cores).max(1);
        let cap = (COMPILED_TOKENS / job.seq.max(1)).max(1);
        let n = per_core.min(cap);
        (
            n,
            f64::from(per_core) / f64::from(n) / f64::from(split.tp.max(1)),
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(u32, u8, u32), BaseTimes>> {
        // A poisoned cache only means another thread panicked mid-insert;
        // the map itself is still valid.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn precision_of(p: workload::Precision) -> Precision {
    match p {
        workload::Precision::Fp32 | workload::Precision::Tf32 => Precision::Fp32,
        _ => Precision::Bf16Mixed,
    }
}

/// The compiler model of `job` with `layers` blocks, width divided by `k`.
fn block_model(job: &Workload, layers: u64, k: u32) -> Result<ModelConfig> {
    let base = match (job.masking, job.mlp) {
        (workload::Masking::Bidirectional, _) => "bert-base",
        (_, Mlp::SwiGlu) => "llama-7b",
        _ => "gpt2-small",
    };
    let mut m = ModelConfig::preset(base)?;
    m.name = format!("{}-block{layers}", job.name);
    m.vocab_size = u64::from(job.vocab);
    m.hidden = u64::from(job.hidden / k);
    m.heads = u64::from(job.heads / k);
    m.kv_heads = u64::from((job.kv_heads / k).max(1));
    m.ffn_hidden = u64::from(job.ffn / k);
    m.layers = layers;
    m.max_positions = u64::from(job.seq);
    m.tie_embeddings = job.tied_embedding;
    m.validate()?;
    Ok(m)
}

/// Slice factor: the smallest power of two that brings the hidden size to
/// at most [`SLICE_HIDDEN`] and divides heads, kv heads, hidden and FFN.
fn slice_factor(job: &Workload) -> u32 {
    let mut k = 1u32;
    while u64::from(job.hidden / k) > SLICE_HIDDEN {
        let n = 2 * k;
        if job.heads % n != 0 || job.hidden % n != 0 || job.ffn % n != 0 {
            break;
        }
        if job.kv_heads % n != 0 && job.kv_heads >= n {
            break;
        }
        k = n;
    }
    k
}

/// Forward FLOPs per token of one block: (GEMMs, attention core).
fn block_flops(h: f64, heads: f64, kv: f64, ffn: f64, gated: bool, seq: f64) -> (f64, f64) {
    let dh = h / heads;
    let qkvo = 2.0 * h * (2.0 * h + 2.0 * kv * dh);
    let mlp = 2.0 * h * ffn * if gated { 3.0 } else { 2.0 };
    (qkvo + mlp, 4.0 * seq * h)
}

fn seconds(arch: &Arch, model: &ModelConfig, setup: &TrainingSetup, stage: Stage) -> Result<f64> {
    let graph = training_graph(model, setup, stage)?;
    let step = lower_graph(&graph, arch)
        .with_context(|| format!("compiling {} for `{}`", model.name, arch.name()))?;
    let (report, _) = tessera_sim::simulate(&step.program, false).context("simulating")?;
    Ok(report.seconds)
}

fn time_blocks(arch: &Arch, job: &Workload, sequences: u32) -> Result<BaseTimes> {
    let k = slice_factor(job);
    let one = block_model(job, 1, k)?;
    let two = block_model(job, 2, k)?;
    let mut setup = TrainingSetup::new(u64::from(sequences), u64::from(job.seq));
    setup.precision = precision_of(job.precision);
    let f1 = seconds(arch, &one, &setup, Stage::Forward)?;
    let b1 = seconds(arch, &one, &setup, Stage::Backward)?;
    let s1 = seconds(arch, &one, &setup, Stage::Step)?;
    let f2 = seconds(arch, &two, &setup, Stage::Forward)?;
    let b2 = seconds(arch, &two, &setup, Stage::Backward)?;
    let block_fwd = (f2 - f1).max(0.0);
    let block_bwd = ((b2 - f2) - (b1 - f1)).max(0.0);
    let head = (b1 - block_fwd - block_bwd).max(0.0);
    let optimizer_per_param = (s1 - b1).max(0.0) / one.parameter_count() as f64;
    let gated = job.mlp == Mlp::SwiGlu;
    let full = block_flops(
        f64::from(job.hidden),
        f64::from(job.heads),
        f64::from(job.kv_heads),
        f64::from(job.ffn),
        gated,
        f64::from(job.seq),
    );
    let kf = f64::from(k);
    let slice = block_flops(
        one.hidden as f64,
        one.heads as f64,
        one.kv_heads as f64,
        one.ffn_hidden as f64,
        gated,
        f64::from(job.seq),
    );
    let ratio = (full.0 + full.1) / (slice.0 + slice.1);
    Ok(BaseTimes {
        block_fwd: block_fwd * ratio,
        block_bwd: block_bwd * ratio,
        head: head * kf,
        optimizer_per_param,
    })
}

impl LayerTimer for TesseraTimer {
    fn name(&self) -> String {
        format!("tessera-{}", self.arch.name())
    }

    fn memory_bytes(&self) -> f64 {
        self.arch.hbm_bytes().0 as f64 * USABLE_MEMORY
    }

    fn layer(&self, job: &Workload, split: Split) -> Result<[Seconds; 3], ModelError> {
        let (n, scale) = self.shape(job, split);
        let b = self.base(job, n)?;
        let fwd = b.block_fwd * scale;
        // The compiled step uses the fused attention, whose backward
        // already recomputes the attention core (FlashAttention): selective
        // recomputation is inside the compiled backward time, and full
        // recomputation adds the block's forward once more (what
        // `--recompute full` compiles to).
        let rec = match job.recompute {
            Recompute::None | Recompute::Selective => 0.0,
            Recompute::Full => fwd,
        };
        Ok([Seconds(fwd), Seconds(b.block_bwd * scale), Seconds(rec)])
    }

    fn head(&self, job: &Workload, split: Split) -> Result<Seconds, ModelError> {
        let (n, scale) = self.shape(job, split);
        let b = self.base(job, n)?;
        Ok(Seconds(b.head * scale))
    }

    fn optimizer(&self, job: &Workload, params: f64) -> Result<Seconds, ModelError> {
        let b = self.base(job, 1)?;
        Ok(Seconds(b.optimizer_per_param * params))
    }
}
