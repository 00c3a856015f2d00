//! A whole compiled training step on the generated core: a one-layer GPT-2
//! (forward, loss, backward, AdamW) lowered by the compiler for an 8x8
//! bf16 description, its 260 kernels in one program, run by the core under
//! Verilator from the HBM image the functional simulator starts from. The
//! final HBM (parameters, optimizer states, gradients, activations) and
//! accumulator must be the functional simulator's bit for bit, and the
//! cycles the timing model's within the sequencer slack
//! ([`ProgramRun::verdict_within_sequencer_slack`]). A cheaper test walks
//! the compiled steps of both model families under every optimizer and
//! precision through the generator's checks and the co-simulation's
//! conditions, naming what the core does not run.
//!
//! The description is `fpga-8x8` with 64 scratchpad and 32 accumulator
//! banks: with the preset's banks the compiled vector kernels wait for
//! banks in the timing model, which the core's memories (a port per lane)
//! do not reproduce, and `cosim::run_program_hbm` refuses such a program.

mod hdl;

use hdl::{scratch, tool, write_files};
use tessera::cosim::{core_files, run_program_hbm, ProgramRun};
use tessera_compiler::lower::{lower_graph, LoweredStep};
use tessera_compiler::model::ModelConfig;
use tessera_compiler::setup::{Optimizer, Precision, TrainingSetup};
use tessera_compiler::{training_graph, Stage};
use tessera_isa::program::MemSpace;
use tessera_isa::{Arch, DType};
use tessera_sim::{numerics, Memory};

/// A one-layer model of `family` small enough for a cycle-level HDL run:
/// hidden 16 in two heads, feed-forward 24, vocabulary 23, 12 positions.
fn tiny(preset: &str) -> ModelConfig {
    let mut m = ModelConfig::preset(preset).unwrap();
    m.vocab_size = 23;
    m.hidden = 16;
    m.layers = 1;
    m.heads = 2;
    m.kv_heads = 2;
    m.ffn_hidden = 24;
    m.max_positions = 12;
    m
}

/// `fpga-8x8` with enough banks that no compiled kernel waits for one.
fn arch() -> Arch {
    let mut spec = Arch::preset("fpga-8x8").unwrap().spec().clone();
    spec.scratchpad.banks = 64;
    spec.accumulator.banks = 32;
    Arch::new(spec).unwrap()
}

fn lower(model: &ModelConfig, setup: &TrainingSetup) -> Result<LoweredStep, String> {
    let g = training_graph(model, setup, Stage::Step).map_err(|e| e.to_string())?;
    lower_graph(&g, &arch()).map_err(|e| format!("the compiler: {e}"))
}

/// HBM as a step starts: parameters uniform in [-0.2, 0.2) from a fixed
/// linear congruential sequence, token ids and labels `7 i mod vocab`,
/// optimizer states at their initial values, the constant tables.
fn hbm_image(step: &LoweredStep, vocab: u64) -> Vec<u8> {
    let mut mem = Memory::new(&step.program.arch);
    let mut seed = 7u32;
    for b in step.params.iter().chain(&step.inputs) {
        let n = b.ty.elements() as usize;
        let size = b.ty.dtype.size_bytes() as usize;
        let mut bytes = vec![0u8; n * size];
        for (i, out) in bytes.chunks_mut(size).enumerate() {
            if b.ty.dtype == DType::Int32 {
                out.copy_from_slice(&((i as u64 * 7 % vocab) as i32).to_le_bytes());
            } else {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let v = (seed >> 8) as f32 / (1u32 << 24) as f32 * 0.4 - 0.2;
                numerics::store(b.ty.dtype, v, out);
            }
        }
        mem.write(MemSpace::Hbm, b.addr, &bytes).unwrap();
    }
    for (b, init) in &step.states {
        let bytes: Vec<u8> = (0..b.ty.elements())
            .flat_map(|_| (*init as f32).to_le_bytes())
            .collect();
        mem.write(MemSpace::Hbm, b.addr, &bytes).unwrap();
    }
    for c in &step.constants {
        let bytes: Vec<u8> = c.values.iter().flat_map(|v| v.to_le_bytes()).collect();
        mem.write(MemSpace::Hbm, c.addr, &bytes).unwrap();
    }
    mem.read_vec(MemSpace::Hbm, 0, step.hbm_peak as usize)
        .unwrap()
}

/// The step's co-simulation, or why the core does not run it.
fn cosim(model: &ModelConfig, setup: &TrainingSetup) -> Result<(LoweredStep, ProgramRun), String> {
    let step = lower(model, setup)?;
    let hbm = hbm_image(&step, model.vocab_size);
    let run = run_program_hbm(step.program.clone(), &hbm, &[], &[]).map_err(|e| e.to_string())?;
    Ok((step, run))
}

fn setup(precision: Precision, optimizer: &str) -> TrainingSetup {
    let mut s = TrainingSetup::new(1, 8);
    s.precision = precision;
    s.optimizer = Optimizer::from_name(optimizer, 1e-3, (0.9, 0.999), 1e-8, 0.01).unwrap();
    s
}

/// Which compiled steps the core runs: every optimizer of both decoder
/// families in fp32 and bf16-mixed pass the generator's checks and the
/// co-simulation's conditions; fp16-mixed and fp8-mixed put their products
/// on types the 8x8 description's processing elements do not take, and the
/// compiler refuses them naming the operand's type.
#[test]
fn compiled_steps_the_core_runs() {
    let mut table = Vec::new();
    for preset in ["gpt2-small", "llama-7b"] {
        let model = tiny(preset);
        for precision in [
            Precision::Bf16Mixed,
            Precision::Fp8Mixed,
            Precision::Fp16Mixed,
            Precision::Fp32,
        ] {
            for optimizer in ["adamw", "sgd", "lion", "lamb", "adafactor"] {
                let verdict = match cosim(&model, &setup(precision, optimizer)) {
                    Ok((step, run)) => format!(
                        "runs: {} kernels, {} model cycles",
                        step.kernels, run.cycles
                    ),
                    Err(e) => format!("refused: {e}"),
                };
                table.push(format!(
                    "{} {} {optimizer}: {verdict}",
                    model.family.model_type(),
                    precision.name()
                ));
            }
        }
    }
    let table = table.join("\n");
    eprintln!("{table}");
    for line in table.lines() {
        let runs = line.contains(": runs:");
        let expect_runs = line.contains(" bf16-mixed ") || line.contains(" fp32 ");
        assert_eq!(runs, expect_runs, "{line}");
        if !runs {
            assert!(
                line.contains("which the array of `fpga-8x8` does not take"),
                "{line}"
            );
        }
    }
}

/// Runs `step`'s co-simulation on the core under Verilator; returns the
/// verdict line and the core's `(cycles, lead)`.
fn on_the_core(name: &str, run: &ProgramRun) -> (String, (u64, u64)) {
    let dir = scratch(name);
    let sources = write_files(&dir, &core_files(run).unwrap());
    let out = hdl::verilator_run(&dir, &sources);
    let verdict = out
        .lines()
        .find(|l| l.starts_with("PASS") || l.starts_with("FAIL"))
        .unwrap_or(&out)
        .to_string();
    let got = run
        .verdict_within_sequencer_slack(&verdict)
        .unwrap_or_else(|e| panic!("{name} on the core: {e}"));
    if std::env::var_os("KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    (verdict, got)
}

/// The steps [`a_whole_training_step_runs_on_the_core_bit_exact`] runs:
/// the GPT-2 step in bf16-mixed with AdamW, or with `TESSERA_ALL_STEPS`
/// set (`scripts/rtl_steps.sh`) every step [`compiled_steps_the_core_runs`]
/// accepts, a Verilator build of about a minute each.
fn steps_to_run() -> Vec<(&'static str, Precision, &'static str)> {
    if std::env::var_os("TESSERA_ALL_STEPS").is_none() {
        return vec![("gpt2-small", Precision::Bf16Mixed, "adamw")];
    }
    let mut all = Vec::new();
    for preset in ["gpt2-small", "llama-7b"] {
        for precision in [Precision::Bf16Mixed, Precision::Fp32] {
            for optimizer in ["adamw", "sgd", "lion", "lamb", "adafactor"] {
                all.push((preset, precision, optimizer));
            }
        }
    }
    all
}

/// A whole step on the core under Verilator: every byte of HBM the step
/// writes and the accumulator as the functional simulator leaves them, in
/// the timing model's cycles plus at most one per sequencer instruction.
#[test]
fn a_whole_training_step_runs_on_the_core_bit_exact() {
    for (preset, precision, optimizer) in steps_to_run() {
        let model = tiny(preset);
        let name = format!(
            "{}-{}-{optimizer}",
            model.family.model_type(),
            precision.name()
        );
        let (step, run) = cosim(&model, &setup(precision, optimizer)).unwrap();
        assert!(step.kernels > 150, "{name}: {} kernels", step.kernels);
        assert!(
            run.hbm_out != run.hbm_in,
            "{name}: the step writes its parameters, states and activations"
        );
        if !tool("verilator") {
            return;
        }
        let t0 = std::time::Instant::now();
        let (verdict, (cycles, lead)) = on_the_core(&name, &run);
        println!(
            "{name}: {} kernels, {} model cycles, {} sequencer instructions: {verdict} (+{:.1} %, {:.0} s)",
            step.kernels,
            run.cycles,
            run.sequencer_instructions,
            (cycles as f64 / run.cycles as f64 - 1.0) * 100.0,
            t0.elapsed().as_secs_f64()
        );
        // The slack is what the front ends' decode costs, a few cycles a kernel.
        assert!(
            cycles < run.cycles + run.cycles / 5 && lead < 16,
            "{name}: {cycles} core cycles against {} in the model",
            run.cycles
        );
    }
}
