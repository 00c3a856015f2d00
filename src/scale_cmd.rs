//! `tessera scale`: step time, breakdown and per-device memory of a
//! training job spread over many devices, for a given parallel plan or the
//! fastest plan found by search (with the runners-up).

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use tessera::tessera_timer::{gpu_with_links, TesseraTimer, DEFAULT_INTER_GBPS, DEFAULT_LINK_GBPS};
use tessera_sim::scaleout::collective::AllReduceAlgo;
use tessera_sim::scaleout::search::{search, SearchSpace};
use tessera_sim::scaleout::{
    estimate, Estimate, Fabric, GradSync, LayerTimer, Offload, Plan, Schedule, Topology, Zero,
};
use tessera_sim::workload::{self, AttentionKernel, Precision, Recompute};

use crate::files::{print, write_atomic};
use crate::hw;

/// Options of `tessera scale`.
#[derive(Debug, clap::Args)]
pub struct ScaleArgs {
    /// Built-in model (`gpt3-175b`, `llama-70b`, `gpt-22b`, ...).
    #[arg(long)]
    pub model: String,
    /// Number of devices.
    #[arg(long)]
    pub devices: u32,
    /// Device: a GPU (`v100`, `a100-40gb`, `a100-80gb`, `h100`, `h200`) or `tessera-PRESET`.
    #[arg(long)]
    pub device: String,
    /// Global batch in sequences.
    #[arg(long, default_value_t = 1536)]
    pub batch: u32,
    /// Sequence length (default: the model's).
    #[arg(long)]
    pub seq: Option<u32>,
    /// fp32, tf32, bf16, fp16 or fp8.
    #[arg(long, default_value = "bf16")]
    pub precision: String,
    /// Attention kernel: flash or unfused.
    #[arg(long, default_value = "flash")]
    pub attention: String,
    /// Tensor-parallel degree.
    #[arg(long)]
    pub tp: Option<u32>,
    /// Pipeline-parallel degree.
    #[arg(long)]
    pub pp: Option<u32>,
    /// Data-parallel degree (default: devices / (tp * pp)).
    #[arg(long)]
    pub dp: Option<u32>,
    /// Sequences per micro-batch.
    #[arg(long)]
    pub micro_batch: Option<u32>,
    /// gpipe, 1f1b or interleaved:V.
    #[arg(long, default_value = "1f1b")]
    pub schedule: String,
    /// ZeRO stage 0-3.
    #[arg(long, default_value_t = 0)]
    pub zero: u32,
    /// Sequence parallelism (needs tp > 1).
    #[arg(long)]
    pub sp: bool,
    /// none, selective or full.
    #[arg(long)]
    pub recompute: Option<String>,
    /// Offload optimizer states to the CPU.
    #[arg(long)]
    pub offload_cpu: bool,
    /// Reduce gradients after the backward pass instead of overlapping
    /// bucketed reductions with it.
    #[arg(long)]
    pub no_overlap: bool,
    /// All-reduce algorithm: ring or tree.
    #[arg(long, default_value = "ring")]
    pub allreduce: String,
    /// Topology: switched, ring, torus2d or torus3d.
    #[arg(long, default_value = "switched")]
    pub topology: String,
    /// Link (ring/torus) or intra-node per-device bandwidth, GB/s per direction
    /// (default: the GPU's NVLink; 100 for Tessera chips, whose hardware
    /// description has no link fields).
    #[arg(long)]
    pub link_gbps: Option<f64>,
    /// Inter-node bandwidth per device, GB/s (switched; default by GPU
    /// generation: 12.5 V100, 25 A100, 50 H100/H200; 25 for Tessera chips).
    #[arg(long)]
    pub inter_gbps: Option<f64>,
    /// Devices per node (switched).
    #[arg(long, default_value_t = 8)]
    pub node_size: u32,
    /// Enumerate plans that fit and print the fastest with alternatives.
    #[arg(long)]
    pub search: bool,
    /// Alternatives shown with --search.
    #[arg(long, default_value_t = 5)]
    pub top: usize,
    /// Write the result as JSON.
    #[arg(long, value_name = "OUT.json")]
    pub json: Option<PathBuf>,
}

fn recompute_of(s: &str) -> Result<Recompute> {
    match s {
        "none" => Ok(Recompute::None),
        "selective" => Ok(Recompute::Selective),
        "full" => Ok(Recompute::Full),
        _ => bail!("--recompute `{s}`: expected none, selective or full"),
    }
}

fn schedule_of(s: &str) -> Result<Schedule> {
    match s {
        "gpipe" => Ok(Schedule::GPipe),
        "1f1b" => Ok(Schedule::OneFOneB),
        _ => {
            let v = s
                .strip_prefix("interleaved:")
                .and_then(|v| v.parse::<u32>().ok())
                .filter(|&v| v >= 1)
                .ok_or_else(|| {
                    anyhow!("--schedule `{s}`: expected gpipe, 1f1b or interleaved:V with V >= 1")
                })?;
            Ok(Schedule::Interleaved { v })
        }
    }
}

/// The device of `--device`: a GPU model or a Tessera chip, with its default
/// (intra-node link, inter-node) bandwidths in GB/s.
pub fn device_timer(device: &str) -> Result<(Box<dyn LayerTimer>, f64, f64)> {
    if let Some(preset) = device.strip_prefix("tessera-") {
        let arch = hw::load(preset).context("--device")?;
        // The hardware description has no link fields: documented defaults.
        return Ok((
            Box::new(TesseraTimer::new(arch)),
            DEFAULT_LINK_GBPS,
            DEFAULT_INTER_GBPS,
        ));
    }
    let (gpu, link, inter) = gpu_with_links(device).context("--device")?;
    Ok((Box::new(gpu), link, inter))
}

fn topology(args: &ScaleArgs, link: f64, inter: f64) -> Result<Topology> {
    let inter = args.inter_gbps.unwrap_or(inter);
    let mut t = Topology::dgx(args.link_gbps.unwrap_or(link), inter);
    t.fabric = match args.topology.as_str() {
        "switched" => Fabric::Switched {
            node_size: args.node_size,
            inter_gbps: inter,
        },
        "ring" => Fabric::Ring,
        "torus2d" => Fabric::Torus { dims: 2 },
        "torus3d" => Fabric::Torus { dims: 3 },
        other => bail!("--topology `{other}`: expected switched, ring, torus2d or torus3d"),
    };
    t.validate()?;
    Ok(t)
}

fn gb(bytes: f64) -> f64 {
    bytes / 1e9
}

fn describe(e: &Estimate, out: &mut String) {
    let b = &e.breakdown;
    let step = e.step.0;
    let _ = writeln!(out, "plan: {}", e.plan);
    let _ = writeln!(
        out,
        "step time {:.3} s, {:.0} tokens/s, pipeline bubble {:.1}% of pipelined time",
        step,
        e.tokens_per_s,
        100.0 * e.bubble_fraction
    );
    for (name, t) in [
        ("compute", b.compute),
        ("recompute", b.recompute),
        ("exposed communication", b.communication),
        ("pipeline bubble", b.bubble),
        ("optimizer", b.optimizer),
    ] {
        let _ = writeln!(
            out,
            "  {name:<22} {:>10.4} s {:>6.1}%",
            t.0,
            100.0 * t.0 / step
        );
    }
    let m = &e.memory;
    let _ = writeln!(
        out,
        "memory per device {:.2} GB ({}):",
        gb(m.total()),
        if e.fits { "fits" } else { "does NOT fit" }
    );
    for (name, v) in [
        ("weights", m.weights),
        ("gradients", m.gradients),
        ("optimizer states", m.optimizer),
        ("activations", m.activations),
    ] {
        let _ = writeln!(out, "  {name:<22} {:>10.2} GB", gb(v));
    }
}

/// Runs `tessera scale`.
pub fn run(args: &ScaleArgs) -> Result<()> {
    let (timer, link, inter) = device_timer(&args.device)?;
    let timer = timer.as_ref();
    let mut job = workload::preset(&args.model).context("--model")?;
    if let Some(s) = args.seq {
        job.seq = s;
    }
    job.precision = Precision::parse(&args.precision).context("--precision")?;
    job.attention = match args.attention.as_str() {
        "flash" => AttentionKernel::Flash,
        "unfused" => AttentionKernel::Unfused,
        other => bail!("--attention `{other}`: expected flash or unfused"),
    };
    if args.devices == 0 || args.batch == 0 {
        bail!("--devices and --batch must be at least 1");
    }
    let topo = topology(args, link, inter)?;
    let recompute = args.recompute.as_deref().map(recompute_of).transpose()?;
    let mut text = format!(
        "{} ({:.1} B parameters), global batch {} x {} tokens, on {} x {}\n",
        job.name,
        job.params() / 1e9,
        args.batch,
        job.seq,
        args.devices,
        timer.name()
    );
    let json = if args.search {
        let space = SearchSpace {
            tp: args.tp,
            pp: args.pp,
            dp: args.dp,
            micro_batch: args.micro_batch,
            recompute,
        };
        let found = search(timer, &topo, &job, args.devices, args.batch, &space)?;
        let _ = writeln!(text, "searched; {} plans fit. fastest:", found.len());
        describe(&found[0], &mut text);
        let _ = writeln!(text, "alternatives:");
        for e in found.iter().skip(1).take(args.top) {
            let _ = writeln!(
                text,
                "  {:.3} s  {:>6.1} GB  {}",
                e.step.0,
                gb(e.memory.total()),
                e.plan
            );
        }
        serde_json::json!({"best": found[0], "alternatives": found.iter().skip(1).take(args.top).collect::<Vec<_>>()})
    } else {
        let tp = args.tp.unwrap_or(1);
        let pp = args.pp.unwrap_or(1);
        let dp = args.dp.unwrap_or(args.devices / (tp * pp).max(1));
        let plan = Plan {
            tp,
            pp,
            dp,
            micro_batch: args.micro_batch.unwrap_or(1),
            schedule: schedule_of(&args.schedule)?,
            zero: match args.zero {
                0 => Zero::None,
                1 => Zero::Stage1,
                2 => Zero::Stage2,
                3 => Zero::Stage3,
                z => bail!("--zero {z}: expected 0, 1, 2 or 3"),
            },
            sequence_parallel: args.sp,
            recompute: recompute.unwrap_or(Recompute::None),
            offload: if args.offload_cpu {
                Offload::Cpu
            } else {
                Offload::None
            },
            all_reduce: match args.allreduce.as_str() {
                "ring" => AllReduceAlgo::Ring,
                "tree" => AllReduceAlgo::Tree,
                other => bail!("--allreduce `{other}`: expected ring or tree"),
            },
            grad_sync: if args.no_overlap {
                GradSync::AfterBackward
            } else {
                GradSync::Overlapped
            },
        };
        let e = estimate(timer, &topo, &job, &plan, args.devices, args.batch)?;
        describe(&e, &mut text);
        serde_json::json!({"best": e})
    };
    if let Some(path) = &args.json {
        let s = serde_json::to_string_pretty(&json).context("serialising the result")?;
        write_atomic(path, format!("{s}\n").as_bytes())?;
    }
    print(&text)
}
