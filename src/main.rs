//! The `tessera` command: assemble, disassemble, check and simulate
//! programs, inspect hardware descriptions, and run the demo.
//!
//! This is the only place that touches the outside world (files, exit
//! status); the library crates stay pure. Every failure prints exactly one
//! `error: ...` line to stderr and exits with status 1; usage errors keep
//! clap's status 2.

mod calibrate_cmd;
mod check_cmd;
mod compare_cmd;
mod compile_cmd;
mod demo;
mod files;
mod gemm_cmd;
mod hw;
mod rtl_cmd;
mod rtl_vector;
mod scale_cmd;
mod sim_cmd;
mod simulate_cmd;
mod train_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Co-design toolkit for a systolic-array ASIC that trains Transformers.
#[derive(Debug, Parser)]
#[command(name = "tessera", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Assemble `FILE.s` into a validated `.tsr` program container.
    Asm {
        /// Assembly source.
        input: PathBuf,
        /// Output container (default: the input with extension `.tsr`).
        #[arg(short, long, value_name = "FILE.tsr")]
        output: Option<PathBuf>,
        /// Hardware description: a preset name or a `.toml` file (default:
        /// the source's `.arch`, else the `default` preset).
        #[arg(long, value_name = "PRESET|FILE.toml")]
        hw: Option<String>,
    },
    /// Print the assembly of a `.tsr` program; it assembles back to the same bytes.
    Disasm {
        /// Program container.
        input: PathBuf,
        /// Write the assembly here instead of stdout.
        #[arg(short, long, value_name = "OUT.s")]
        output: Option<PathBuf>,
    },
    /// Validate a program and run the dependency checker (races, deadlocks,
    /// token balance, addresses); exit status 1 on any finding.
    Check {
        /// A `.tsr` container or `.s` assembly.
        input: PathBuf,
        /// Hardware description the program must have been built for.
        #[arg(long, value_name = "PRESET|FILE.toml")]
        hw: Option<String>,
    },
    /// Simulate a program: cycles, utilization, energy and where the time
    /// went (timing mode), or its values (`--functional`).
    Sim(sim_cmd::SimArgs),
    /// Generate the Verilog of a hardware description with a self-checking
    /// testbench and a synthesis script; run them when the tools are installed.
    Rtl(rtl_cmd::RtlArgs),
    /// Lower and time every GEMM of a SCALE-Sim topology (`--config` a
    /// SCALE-Sim `.cfg`, or `--hw`), writing a COMPUTE_REPORT-shaped CSV and JSON.
    Gemm(gemm_cmd::GemmArgs),
    /// Inspect hardware descriptions.
    Hw {
        #[command(subcommand)]
        command: HwCommand,
    },
    /// The main job: compile one training step of a model (forward, loss,
    /// backward, optimizer) for a hardware description, simulate it in
    /// timing mode and report step time, tokens/s, MFU, energy, power, peak
    /// HBM and the top operators.
    Simulate(simulate_cmd::SimulateArgs),
    /// Tessera and a GPU on the same training job: step time, tokens/s,
    /// MFU, energy per step and tokens per joule, with their ratios.
    Compare(compare_cmd::CompareArgs),
    /// Train a model on the functional simulator, on real numbers, from a
    /// safetensors checkpoint: per-step loss and gradient norm as JSON.
    Train(train_cmd::TrainArgs),
    /// Build the training-step graph of a model (forward, loss, backward,
    /// optimizer) and print its IR, or read and check a hand-edited one.
    Compile(compile_cmd::CompileArgs),
    /// Fit the GPU device model to published training measurements and
    /// report held-out errors next to the Hugging Face baseline.
    Calibrate(calibrate_cmd::CalibrateArgs),
    /// Step time, breakdown and per-device memory of a training job on many
    /// devices, for a given parallel plan or the fastest found by `--search`.
    Scale(scale_cmd::ScaleArgs),
    /// Assemble, check, disassemble and re-assemble the built-in tiled
    /// matrix-multiply example, and summarise it.
    Demo,
}

#[derive(Debug, Subcommand)]
enum HwCommand {
    /// Print the canonical TOML of a description plus derived figures.
    Show {
        /// A preset name or a `.toml` file.
        #[arg(value_name = "PRESET|FILE.toml")]
        hw: String,
    },
    /// List the built-in presets.
    List,
    /// Validate a hardware description.
    Check {
        /// A `.toml` file (or a preset name).
        #[arg(value_name = "FILE.toml")]
        hw: String,
    },
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Asm { input, output, hw } => files::asm(&input, output.as_deref(), hw.as_deref()),
        Command::Disasm { input, output } => files::disasm(&input, output.as_deref()),
        Command::Check { input, hw } => check_cmd::run(&input, hw.as_deref()),
        Command::Hw { command } => match command {
            HwCommand::Show { hw } => hw::show(&hw),
            HwCommand::List => hw::list(),
            HwCommand::Check { hw } => hw::check(&hw),
        },
        Command::Sim(args) => sim_cmd::run(&args),
        Command::Rtl(args) => rtl_cmd::run(&args),
        Command::Compile(args) => compile_cmd::run(&args),
        Command::Simulate(args) => simulate_cmd::run(&args),
        Command::Train(args) => train_cmd::run(&args),
        Command::Compare(args) => compare_cmd::run(&args),
        Command::Gemm(args) => gemm_cmd::run(&args),
        Command::Calibrate(args) => calibrate_cmd::run(&args),
        Command::Scale(args) => scale_cmd::run(&args),
        Command::Demo => demo::run(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` joins the context chain with ": "; keep it to one line.
            let msg = format!("{e:#}").replace(['\n', '\r'], " ");
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}
