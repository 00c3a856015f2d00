//! `tessera sim`: runs a program in timing mode (default) or functional mode
//! and writes the summary, JSON statistics and a Perfetto trace.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use tessera_isa::program::MemSpace;
use tessera_isa::Program;
use tessera_sim::{run_functional, simulate, Memory};

use crate::files::{load_program, print, shown, write_atomic};
use crate::hw;

/// Options of `tessera sim`.
#[derive(Debug, clap::Args)]
pub struct SimArgs {
    /// Program to run: a `.tsr` container, or `.s` assembly (assembled first).
    pub program: PathBuf,
    /// Hardware description: a preset name or a TOML file. It must be the
    /// one the program was built for.
    #[arg(long)]
    pub hw: Option<String>,
    /// Execute on real values instead of timing: every HBM symbol starts with
    /// deterministic pseudo-random values (or `--load`), and a checksum of
    /// each symbol is printed afterwards.
    #[arg(long)]
    pub functional: bool,
    /// Functional mode: load a symbol's bytes from a file, `NAME=FILE`.
    #[arg(long, value_name = "NAME=FILE", requires = "functional")]
    pub load: Vec<String>,
    /// Functional mode: write a symbol's final bytes to a file, `NAME=FILE`.
    #[arg(long, value_name = "NAME=FILE", requires = "functional")]
    pub dump: Vec<String>,
    /// Write machine-readable statistics here.
    #[arg(long, value_name = "OUT.json")]
    pub json: Option<PathBuf>,
    /// Write a Chrome/Perfetto trace-event file here (one track per queue).
    #[arg(long, value_name = "OUT.json", conflicts_with = "functional")]
    pub trace: Option<PathBuf>,
}

/// Deterministic bytes for symbol `name`: a splitmix64 stream seeded by the
/// name, so the same program always starts from the same memory.
fn seeded_bytes(name: &str, len: usize) -> Vec<u8> {
    let mut seed = name.bytes().fold(0x9e37_79b9_7f4a_7c15u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn split_assignment(s: &str, flag: &str) -> Result<(String, PathBuf)> {
    match s.split_once('=') {
        Some((name, file)) if !name.is_empty() && !file.is_empty() => {
            Ok((name.to_string(), PathBuf::from(file)))
        }
        _ => bail!("{flag} `{s}`: expected NAME=FILE"),
    }
}

/// `tessera sim`.
pub fn run(args: &SimArgs) -> Result<()> {
    let hw = args.hw.as_deref().map(hw::load).transpose()?;
    let program = load_program(&args.program, hw.as_ref())?;
    let name = shown(&args.program);
    if args.functional {
        return run_functional_mode(args, &program);
    }
    let (report, trace) = simulate(&program, args.trace.is_some()).with_context(|| name.clone())?;
    print(&report.to_table())?;
    if let Some(path) = &args.json {
        let mut text = serde_json::to_string_pretty(&report).context("serialising the report")?;
        text.push('\n');
        write_atomic(path, text.as_bytes())?;
    }
    if let (Some(path), Some(trace)) = (&args.trace, trace) {
        write_atomic(path, trace.as_bytes())?;
    }
    Ok(())
}

fn run_functional_mode(args: &SimArgs, p: &Program) -> Result<()> {
    let name = shown(&args.program);
    let mut mem = Memory::new(&p.arch);
    let mut loads = Vec::new();
    for l in &args.load {
        loads.push(split_assignment(l, "--load")?);
    }
    for s in p.symbols.iter().filter(|s| s.space == MemSpace::Hbm) {
        let bytes = match loads.iter().find(|(n, _)| *n == s.name) {
            Some((_, file)) => {
                let b = std::fs::read(file)
                    .with_context(|| format!("--load {}: reading {}", s.name, file.display()))?;
                if b.len() as u64 != s.size {
                    bail!(
                        "--load {}: {} holds {} bytes, the symbol is {} bytes",
                        s.name,
                        file.display(),
                        b.len(),
                        s.size
                    );
                }
                b
            }
            None => seeded_bytes(&s.name, s.size as usize),
        };
        mem.write(MemSpace::Hbm, s.addr, &bytes)
            .with_context(|| format!("{name}: symbol {}", s.name))?;
    }
    for (n, _) in &loads {
        if !p
            .symbols
            .iter()
            .any(|s| s.space == MemSpace::Hbm && s.name == *n)
        {
            bail!("--load {n}: the program has no HBM symbol `{n}`");
        }
    }
    let mut dumps = Vec::new();
    for d in &args.dump {
        let (n, file) = split_assignment(d, "--dump")?;
        if !p
            .symbols
            .iter()
            .any(|s| s.space == MemSpace::Hbm && s.name == n)
        {
            bail!("--dump {n}: the program has no HBM symbol `{n}`");
        }
        dumps.push((n, file));
    }
    let seeded: Vec<&str> = p
        .symbols
        .iter()
        .filter(|s| s.space == MemSpace::Hbm && !loads.iter().any(|(n, _)| *n == s.name))
        .map(|s| s.name.as_str())
        .collect();
    let stats = run_functional(p, &mut mem, tessera_sim::functional::DEFAULT_LIMIT).with_context(|| {
        if seeded.is_empty() {
            name.clone()
        } else {
            format!("{name} (symbols {} held pseudo-random bytes; give real inputs such as token ids with --load NAME=FILE)", seeded.join(", "))
        }
    })?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "functional run on `{}`: {} instructions executed",
        p.arch.name(),
        stats.executed.iter().sum::<u64>()
    );
    let _ = writeln!(
        out,
        "{:<20} {:>18} {:>12}  fnv1a-64",
        "symbol", "address", "bytes"
    );
    let mut json_symbols = serde_json::Map::new();
    for s in p.symbols.iter().filter(|s| s.space == MemSpace::Hbm) {
        let bytes = mem
            .read_vec(MemSpace::Hbm, s.addr, s.size as usize)
            .with_context(|| format!("{name}: symbol {}", s.name))?;
        let h = tessera_isa::arch::fnv1a64(&bytes);
        let _ = writeln!(
            out,
            "{:<20} {:>#18x} {:>12}  {h:016x}",
            s.name, s.addr, s.size
        );
        json_symbols.insert(s.name.clone(), serde_json::json!({ "address": s.addr, "bytes": s.size, "fnv1a64": format!("{h:016x}") }));
        if let Some((_, file)) = dumps.iter().find(|(n, _)| *n == s.name) {
            write_atomic(file, &bytes)?;
        }
    }
    print(&out)?;
    if let Some(path) = &args.json {
        let executed: serde_json::Map<String, serde_json::Value> = tessera_isa::Queue::ALL
            .iter()
            .map(|q| {
                (
                    q.name().to_string(),
                    serde_json::json!(stats.executed[q.index()]),
                )
            })
            .collect();
        let doc = serde_json::json!({ "mode": "functional", "hardware": p.arch.name(), "executed_instructions": executed, "symbols": json_symbols });
        let mut text = serde_json::to_string_pretty(&doc).context("serialising the report")?;
        text.push('\n');
        write_atomic(path, text.as_bytes())?;
    }
    Ok(())
}
