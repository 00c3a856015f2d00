//! Co-simulation cases: one int8 or bf16 fold (either dataflow) run through the
//! functional simulator (expected results) and the timing simulator (cycles
//! from the preload's start to the compute's end), packaged for the RTL
//! testbench generator; and whole matrix-queue programs with their memory
//! images, packaged as the matrix core's files ([`ProgramRun`]).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{anyhow, Result};
use tessera_isa::asm::assemble;
use tessera_isa::program::MemSpace;
use tessera_isa::{Arch, Dataflow, Op, Program, Queue};
use tessera_rtl::core::{
    byte_image, core_program, core_sources, imem_image, word_image, CoreProgram, CoreShape,
};
use tessera_rtl::core_tb::{core_testbench, image_names, HbmNan, TbMemories};
use tessera_rtl::pe::PeType;
use tessera_rtl::sequence_tb::ScheduledFold;
use tessera_rtl::testbench::FoldCase;
use tessera_sim::{run_functional, timing, Memory};

/// Runs C (m x n) = A (m x k) * W (k x n) with inputs of type `ty` (raw
/// bits, row-major) on `arch` in both simulator modes. Returns the case with
/// its expected C, and the cycles of the fold (preload start to compute end).
///
/// # Errors
/// A fold that does not fit the hardware description, or a simulator error.
pub fn fold(
    arch: &Arch,
    ty: PeType,
    (m, k, n): (usize, usize, usize),
    a: Vec<u16>,
    w: Vec<u16>,
) -> Result<(FoldCase, u64)> {
    let (dt, acc) = match ty {
        PeType::Int8 => ("int8", "int32"),
        PeType::Bf16 => ("bf16", "fp32"),
    };
    let eb = ty.input_bits() as usize / 8;
    let src = format!(
        "\
.region fold
.queue load
    addr.set r1, 0x4000
    dma.load dst=spad[r0], src=hbm[r0], rows={m}, row_bytes={ak}, planes=1, transpose=none
    dma.load dst=spad[r1], src=hbm[r1], rows={k}, row_bytes={wn}, planes=1, transpose=none, signal=t0
    halt
.queue matrix
    addr.set r1, 0x4000
    nop wait=t0
    prof.begin fold
    mm.preload b=spad[r1]:{dt}, k={k}, n={n}, transpose=false
    mm.compute a=spad[r0]:{dt}, c=acc[r0]:{acc}, m={m}, transpose=false, mode=overwrite, signal=t1
    prof.end fold
    halt
.queue store
    addr.set r1, 0x8000
    dma.store dst=hbm[r1], src=acc[r0], rows={m}, row_bytes={nb}, planes=1, transpose=none, wait=t1
    halt
",
        ak = eb * k,
        wn = eb * n,
        nb = 4 * n
    );
    let p = assemble(&src, "fold.s", Some(arch)).map_err(|e| anyhow!("{e}"))?;
    let bytes = |v: &[u16]| -> Vec<u8> {
        v.iter()
            .flat_map(|x| x.to_le_bytes().into_iter().take(eb))
            .collect()
    };
    let mut mem = Memory::new(&p.arch);
    mem.write(MemSpace::Hbm, 0, &bytes(&a))?;
    mem.write(MemSpace::Hbm, 0x4000, &bytes(&w))?;
    run_functional(&p, &mut mem, 1 << 24)?;
    let c = mem
        .read_vec(MemSpace::Hbm, 0x8000, 4 * m * n)?
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let t = timing::run(&p, 1 << 24, &mut |_| {})?;
    let cycles = t
        .regions
        .iter()
        .find(|r| r.name == "fold")
        .map(|r| r.cycles)
        .ok_or_else(|| anyhow!("the fold program lost its profiling region"))?;
    Ok((
        FoldCase {
            ty,
            m,
            k,
            n,
            a,
            w,
            c,
        },
        cycles,
    ))
}

/// One fold's shape and inputs for [`fold_sequence`]: (m, k, n), A and W
/// as raw bits, row-major.
pub type FoldInput = ((usize, usize, usize), Vec<u16>, Vec<u16>);

/// Runs `folds` back to back in one matrix-queue program on `arch`, one
/// `mm.preload`/`mm.compute` pair each with its own operands, in both
/// simulator modes. Returns each fold with its expected C and the cycles,
/// counted from the first preload's start, at which the timing model starts
/// its preload and its compute, and the program's cycles from the first
/// preload's start to the last compute's end.
///
/// # Errors
/// A fold that does not fit the hardware description (at most 16 folds of
/// at most 16 x 16 x 16), or a simulator error.
pub fn fold_sequence(
    arch: &Arch,
    ty: PeType,
    folds: Vec<FoldInput>,
) -> Result<(Vec<ScheduledFold>, u64)> {
    let (dt, acc) = match ty {
        PeType::Int8 => ("int8", "int32"),
        PeType::Bf16 => ("bf16", "fp32"),
    };
    if folds.is_empty() || folds.len() > 16 {
        return Err(anyhow!(
            "a fold sequence has 1 to 16 folds, not {}",
            folds.len()
        ));
    }
    if let Some(((m, k, n), _, _)) = folds
        .iter()
        .find(|((m, k, n), _, _)| *m > 16 || *k > 16 || *n > 16)
    {
        return Err(anyhow!("a {m}x{k}x{n} fold is larger than 16 x 16 x 16"));
    }
    let eb = ty.input_bits() as usize / 8;
    // A of fold f at spad/HBM 0x1000 f, W at 0x10000 + 0x1000 f, C at acc 0x400 f
    // and HBM 0x20000 + 0x400 f.
    let (mut load, mut mm, mut store) = (String::new(), String::new(), String::new());
    for (f, ((m, k, n), _, _)) in folds.iter().enumerate() {
        let (a, w, c, h) = (
            0x1000 * f,
            0x10000 + 0x1000 * f,
            0x400 * f,
            0x20000 + 0x400 * f,
        );
        let last = if f + 1 == folds.len() {
            ", signal=t0"
        } else {
            ""
        };
        load += &format!(
            "    addr.set r1, {a}\n    dma.load dst=spad[r1], src=hbm[r1], rows={m}, row_bytes={}, planes=1, transpose=none\n    addr.set r1, {w}\n    dma.load dst=spad[r1], src=hbm[r1], rows={k}, row_bytes={}, planes=1, transpose=none{last}\n",
            eb * k,
            eb * n
        );
        let last = if f + 1 == folds.len() {
            ", signal=t1"
        } else {
            ""
        };
        mm += &format!(
            "    addr.set r1, {w}\n    addr.set r2, {a}\n    addr.set r3, {c}\n    mm.preload b=spad[r1]:{dt}, k={k}, n={n}, transpose=false\n    mm.compute a=spad[r2]:{dt}, c=acc[r3]:{acc}, m={m}, transpose=false, mode=overwrite{last}\n"
        );
        let wait = if f == 0 { ", wait=t1" } else { "" };
        store += &format!(
            "    addr.set r1, {c}\n    addr.set r2, {h}\n    dma.store dst=hbm[r2], src=acc[r1], rows={m}, row_bytes={}, planes=1, transpose=none{wait}\n",
            4 * n
        );
    }
    let src = format!(
        ".region folds\n.queue load\n{load}    halt\n.queue matrix\n    nop wait=t0\n    prof.begin folds\n{mm}    prof.end folds\n    halt\n.queue store\n{store}    halt\n"
    );
    let p = assemble(&src, "folds.s", Some(arch)).map_err(|e| anyhow!("{e}"))?;
    let bytes = |v: &[u16]| -> Vec<u8> {
        v.iter()
            .flat_map(|x| x.to_le_bytes().into_iter().take(eb))
            .collect()
    };
    let mut mem = Memory::new(&p.arch);
    for (f, (_, a, w)) in folds.iter().enumerate() {
        mem.write(MemSpace::Hbm, (0x1000 * f) as u64, &bytes(a))?;
        mem.write(MemSpace::Hbm, (0x10000 + 0x1000 * f) as u64, &bytes(w))?;
    }
    run_functional(&p, &mut mem, 1 << 24)?;
    let mut starts: Vec<(&'static str, u64)> = Vec::new();
    let t = timing::run(&p, 1 << 24, &mut |e| {
        if e.site.queue == Queue::Matrix && e.mnemonic.starts_with("mm.") {
            starts.push((e.mnemonic, e.start));
        }
    })?;
    let cycles = t
        .regions
        .iter()
        .find(|r| r.name == "folds")
        .map(|r| r.cycles)
        .ok_or_else(|| anyhow!("the fold program lost its profiling region"))?;
    let origin = starts.first().map_or(0, |s| s.1);
    let mut out = Vec::new();
    for (f, ((m, k, n), a, w)) in folds.into_iter().enumerate() {
        let c = mem
            .read_vec(MemSpace::Hbm, (0x20000 + 0x400 * f) as u64, 4 * m * n)?
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let (pre, comp) = match (starts.get(2 * f), starts.get(2 * f + 1)) {
            (Some(&("mm.preload", p)), Some(&("mm.compute", c))) => (p, c),
            _ => {
                return Err(anyhow!(
                    "the timing trace lost fold {f}'s preload or compute"
                ))
            }
        };
        out.push(ScheduledFold {
            case: FoldCase {
                ty,
                m,
                k,
                n,
                a,
                w,
                c,
            },
            preload_at: (pre - origin) as usize,
            compute_at: (comp - origin) as usize,
        });
    }
    Ok((out, cycles))
}

/// A deterministic fold of type `ty` that fills the array: weight-stationary
/// k = rows, n = cols with m = 2 x rows; output-stationary m = rows, n =
/// cols with k = 2 x rows. int8 inputs include -128 and 127; bf16 inputs
/// are mostly normal numbers of moderate range (so sums cancel and round)
/// with a zero, a subnormal, the largest finite value, an infinity and a NaN.
///
/// # Errors
/// As [`fold`].
pub fn full_fold(arch: &Arch, ty: PeType, seed: u64) -> Result<(FoldCase, u64)> {
    let (r, c) = (arch.rows() as usize, arch.cols() as usize);
    let (m, k) = match arch.dataflow() {
        Dataflow::WeightStationary => (2 * r, r),
        Dataflow::OutputStationary => (r, 2 * r),
    };
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 32) as u32
    };
    let mut elem = |ty: PeType| -> u16 {
        let x = next();
        match ty {
            PeType::Int8 => x as u8 as u16,
            // Sign, exponent 120..135, random fraction.
            PeType::Bf16 => ((x & 0x8000) | ((120 + (x >> 16) % 16) << 7) | (x & 0x7f)) as u16,
        }
    };
    let mut a: Vec<u16> = (0..m * k).map(|_| elem(ty)).collect();
    let w: Vec<u16> = (0..k * c).map(|_| elem(ty)).collect();
    let specials: &[u16] = match ty {
        PeType::Int8 => &[0x80, 0x7f],
        PeType::Bf16 => &[0x0000, 0x0001, 0x7f7f, 0xff80, 0x7fc1],
    };
    // The last rows of A, so the first rows check plain arithmetic.
    let tail = a.len() - specials.len();
    a[tail..].copy_from_slice(specials);
    fold(arch, ty, (m, k, c), a, w)
}

/// Yosys's data directory, where the FPGA cell simulation models live:
/// `yosys-config --datdir` when available, else Debian's location.
pub fn yosys_datdir() -> PathBuf {
    Command::new("yosys-config")
        .arg("--datdir")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .unwrap_or_else(|| PathBuf::from("/usr/share/yosys"))
}

/// A program (load, matrix and store queues) run by both simulator modes,
/// with the memory images the core starts from and the accumulator and HBM
/// it must end with.
#[derive(Debug)]
pub struct ProgramRun {
    pub program: Program,
    /// The checked matrix queue.
    pub core: CoreProgram,
    /// The whole scratchpad, as the program starts.
    pub spad: Vec<u8>,
    /// The whole accumulator, as the program starts and as the functional simulator leaves it.
    pub acc_in: Vec<u8>,
    pub acc_out: Vec<u8>,
    /// HBM up to `core.hbm_bytes`, as the program starts and as the functional simulator leaves it.
    pub hbm_in: Vec<u8>,
    pub hbm_out: Vec<u8>,
    /// The timing model's total cycles.
    pub cycles: u64,
    /// The model cycle by which the queues' trailing control instructions
    /// end on the core (0 when no queue ends with one).
    pub control_tail: u64,
    /// Index of the first engine instruction in the matrix queue: the first
    /// `mm.preload` (weight-stationary) or `mm.compute` (output-stationary,
    /// whose preloads take no time).
    pub first_engine: usize,
    /// Instructions the timing model executed in no time, `halt` aside
    /// (`nop`, `loop`, `addr.*`, strides, shapes, `prof.*`), all queues
    /// together: the core's front ends decode each in a cycle.
    pub sequencer_instructions: u64,
}

impl ProgramRun {
    /// The verdict the core's testbench must print (`docs/rtl.md`). A
    /// program with a `dma.load` or `dma.gather`: its first transfer starts in the last lead
    /// cycle (lead = its index + 1) and the core then takes the model's total
    /// (run = model - 1), or until its last queue's trailing control
    /// instruction and `halt` have run, one per cycle, if that is later
    /// (run = [`ProgramRun::control_tail`] - 1). A matrix-only program: the core also counts the
    /// accumulator write of the last result (run = model + 1) and its lead-in
    /// is the sequencer instructions before the first engine instruction
    /// ([`ProgramRun::first_engine`]) plus two.
    ///
    /// Vector instructions take the model's count, except reductions whose
    /// rounds are longer (`tessera_rtl::vec_engine::reduce_cycles`): then
    /// the run is a range, `cycles=LO..HI`, HI adding their extra cycles.
    pub fn expected_verdict(&self) -> String {
        let (run, lead) = self.expected_cycles();
        let extra = self.core.vector.extra_cycles;
        if extra == 0 {
            format!("PASS cycles={run} lead={lead}")
        } else {
            format!("PASS cycles={run}..{} lead={lead}", run + extra)
        }
    }

    /// `(run, lead)` cycles the core takes when every instruction takes the
    /// model's count.
    fn expected_cycles(&self) -> (u64, u64) {
        let first_load = self
            .program
            .queue(Queue::Load)
            .iter()
            .position(|i| matches!(i.op.mnemonic(), "dma.load" | "dma.gather"));
        match first_load {
            Some(i) => (
                self.cycles.max(self.control_tail).saturating_sub(1),
                i as u64 + 1,
            ),
            None => (self.cycles + 1, self.first_engine as u64 + 2),
        }
    }

    /// Checks the testbench's verdict line `got` against
    /// [`ProgramRun::expected_verdict`]. A data failure is reported as the
    /// testbench printed it; a core whose data passed but whose cycles are
    /// off says so (`cycles: ...`), so a timing difference never reads as a
    /// wrong result.
    ///
    /// # Errors
    /// A line that is not `PASS cycles=N lead=L`, or cycles outside the expectation.
    pub fn verdict_matches(&self, got: &str) -> std::result::Result<(), String> {
        let got = got.trim();
        let parsed = got.strip_prefix("PASS cycles=").and_then(|rest| {
            let (c, l) = rest.split_once(" lead=")?;
            Some((c.parse::<u64>().ok()?, l.parse::<u64>().ok()?))
        });
        let Some((cycles, lead)) = parsed else {
            return Err(format!("data: {got}"));
        };
        let (run, want_lead) = self.expected_cycles();
        let hi = run + self.core.vector.extra_cycles;
        if lead != want_lead || cycles < run || cycles > hi {
            return Err(format!(
                "cycles: the data is bit-exact but the core printed {got}, expected {}",
                self.expected_verdict()
            ));
        }
        Ok(())
    }

    /// As [`ProgramRun::verdict_matches`], for a program outside the exact
    /// relation's conditions because its queues put sequencer instructions
    /// between engine instructions more densely than the front ends' one
    /// decode per cycle hides (compiled kernels: `docs/rtl.md`). The data
    /// must be bit-exact; the core must never be faster than the model
    /// (cycles and lead each at least the exact relation's); and lead plus
    /// cycles may exceed the exact relation's by at most one cycle per
    /// sequencer instruction the model executed
    /// ([`ProgramRun::sequencer_instructions`]). Returns the core's
    /// `(cycles, lead)`.
    ///
    /// # Errors
    /// A line that is not `PASS cycles=N lead=L`, or cycles outside those bounds.
    pub fn verdict_within_sequencer_slack(
        &self,
        got: &str,
    ) -> std::result::Result<(u64, u64), String> {
        let got = got.trim();
        let parsed = got.strip_prefix("PASS cycles=").and_then(|rest| {
            let (c, l) = rest.split_once(" lead=")?;
            Some((c.parse::<u64>().ok()?, l.parse::<u64>().ok()?))
        });
        let Some((cycles, lead)) = parsed else {
            return Err(format!("data: {got}"));
        };
        let (run, want_lead) = self.expected_cycles();
        let hi = run + self.core.vector.extra_cycles + want_lead + self.sequencer_instructions;
        if cycles < run || lead < want_lead || cycles + lead > hi {
            return Err(format!(
                "cycles: the data is bit-exact but the core printed {got}; the model allows cycles >= {run}, lead >= {want_lead} and cycles + lead <= {hi} ({} sequencer instructions)",
                self.sequencer_instructions
            ));
        }
        Ok((cycles, lead))
    }
}

/// Runs `p` (no vector queue) from a scratchpad starting with `spad` and
/// an accumulator starting with `acc` (the rest zero) in both simulator
/// modes; HBM is zero.
///
/// # Errors
/// As [`run_program_hbm`].
pub fn run_program(p: Program, spad: &[u8], acc: &[u8]) -> Result<ProgramRun> {
    run_program_hbm(p, &[], spad, acc)
}

/// Runs `p` (no vector queue) from HBM starting with `hbm`, a scratchpad
/// starting with `spad` and an accumulator starting with `acc` (the rest
/// zero) in both simulator modes.
///
/// # Errors
/// A program the core does not run, `hbm` larger than the HBM, a simulator
/// error, a program whose matrix or vector queue waits for memory banks
/// (the core's scratchpad model has a port per array row and column and the
/// vector engine one per lane, so it cannot reproduce bank stalls), or one
/// with a DMA transfer the timing model ends by its on-chip bank cycles
/// rather than its HBM bursts (the core's DMA engine times HBM bursts only).
pub fn run_program_hbm(p: Program, hbm: &[u8], spad: &[u8], acc: &[u8]) -> Result<ProgramRun> {
    let mut core = core_program(&p).map_err(|e| anyhow!("{e}"))?;
    core.hbm_bytes = core.hbm_bytes.max((hbm.len() as u64).next_multiple_of(4));
    let mut mem = Memory::new(&p.arch);
    mem.write(MemSpace::Hbm, 0, hbm)?;
    mem.write(MemSpace::Spad, 0, spad)?;
    mem.write(MemSpace::Acc, 0, acc)?;
    let cap = |s: MemSpace| p.arch.capacity(s).get() as usize;
    let spad_img = mem.read_vec(MemSpace::Spad, 0, cap(MemSpace::Spad))?;
    let acc_in = mem.read_vec(MemSpace::Acc, 0, cap(MemSpace::Acc))?;
    let hbm_in = mem.read_vec(MemSpace::Hbm, 0, core.hbm_bytes as usize)?;
    run_functional(&p, &mut mem, 1 << 26)?;
    let acc_out = mem.read_vec(MemSpace::Acc, 0, cap(MemSpace::Acc))?;
    let hbm_out = mem.read_vec(MemSpace::Hbm, 0, core.hbm_bytes as usize)?;
    // Per queue, the last instruction before `halt` the model ran: a
    // control instruction there (a final `nop wait=...`) ends the queue on
    // the core two cycles after it starts (it, then `halt`, one per cycle).
    let mut last: [Option<(u64, bool)>; 4] = [None; 4];
    let mut sequencer_instructions = 0u64;
    let t = timing::run(&p, 1 << 26, &mut |e| {
        if e.mnemonic != "halt" {
            last[e.site.queue.index()] = Some((e.start, e.end == e.start));
            sequencer_instructions += u64::from(e.end == e.start);
        }
    })?;
    let control_tail = last
        .iter()
        .flatten()
        .filter(|(_, control)| *control)
        .map(|(start, _)| start + 2)
        .max()
        .unwrap_or(0);
    for q in [Queue::Matrix, Queue::Vector] {
        let stall = t.engines[q.index()].memory_wait;
        if stall > 0 {
            return Err(anyhow!(
                "the {} queue waits {stall} cycles for scratchpad or accumulator banks, which the core does not model; use more banks or narrower operands",
                q.name()
            ));
        }
    }
    if t.dma_bank_bound > 0 {
        return Err(anyhow!(
            "DMA transfers take {} cycles in all longer for on-chip banks than for their HBM bursts, which the core's DMA does not model; use more or wider banks",
            t.dma_bank_bound
        ));
    }
    // Weight-stationary: the first preload; output-stationary: the first
    // compute (its preload binds B in the front end and takes no time).
    let first_op = match p.arch.dataflow() {
        Dataflow::WeightStationary => "mm.preload",
        Dataflow::OutputStationary => "mm.compute",
    };
    let first_engine = p
        .queue(Queue::Matrix)
        .iter()
        .position(|i| i.op.mnemonic() == first_op)
        .unwrap_or(0);
    Ok(ProgramRun {
        program: p,
        core,
        spad: spad_img,
        acc_in,
        acc_out,
        hbm_in,
        hbm_out,
        cycles: t.cycles,
        control_tail,
        first_engine,
        sequencer_instructions,
    })
}

/// Every file the core's simulation needs, `(name, text)`: the design, the
/// testbench `tb_core_{ty}.v` and the memory images.
///
/// # Errors
/// A design the generator refuses.
pub fn core_files(run: &ProgramRun) -> Result<Vec<(String, String)>> {
    let arch = &run.program.arch;
    let ty = run.core.ty;
    let shape = CoreShape::of(&run.core);
    let mut files = core_sources(arch, ty, shape).map_err(|e| anyhow!("{e}"))?;
    let bits = |n: u64| (64 - n.saturating_sub(1).leading_zeros()).max(1);
    let words = run.acc_out.len() as u64 / 4;
    let mem = TbMemories {
        acc_words: words,
        acc_aw: bits(words),
        hbm_bytes: run.core.hbm_bytes,
        hbm_aw: bits(run.core.hbm_bytes),
        hbm_nan: if run
            .program
            .queue(Queue::Store)
            .iter()
            .any(|i| matches!(i.op, Op::DmaScatterAdd { .. }))
        {
            HbmNan::ByClass
        } else {
            HbmNan::Exact
        },
    };
    files.push((
        format!("tb_core_{}.v", ty.name()),
        core_testbench(ty, mem, 2 * run.cycles + 1000),
    ));
    let [imem, spad, acc, expect, load, store, hbm, expect_hbm, vector] = image_names(ty);
    files.push((
        vector,
        imem_image(&run.core.vector.words, shape.vector_depth),
    ));
    files.push((imem, imem_image(&run.core.words, shape.depths[1])));
    files.push((load, imem_image(&run.core.load, shape.depths[0])));
    files.push((store, imem_image(&run.core.store, shape.depths[2])));
    files.push((spad, byte_image(&run.spad)));
    files.push((acc, word_image(&run.acc_in)));
    files.push((expect, word_image(&run.acc_out)));
    files.push((hbm, byte_image(&run.hbm_in)));
    files.push((expect_hbm, word_image(&run.hbm_out)));
    Ok(files)
}

/// The core's built-in test program for `ty` on `arch`: a loop of two
/// folds, each a full preload (k = rows, n = cols, the same B) and a compute
/// of m = 2 x rows (output-stationary: k = 2 x rows and m = rows), that
/// accumulate into one result (no sequencer
/// instruction between engine operations, so the front end keeps ahead of
/// double-buffered weights too), from deterministic scratchpad data (int8
/// with -128 and 127; bf16 normals of moderate range with a zero, a
/// subnormal and the largest finite value). A at 0, B at half the
/// scratchpad, C at 0 in the accumulator.
///
/// # Errors
/// As [`run_program`].
pub fn builtin_program(arch: &Arch, ty: PeType) -> Result<ProgramRun> {
    let (r, c) = (arch.rows() as usize, arch.cols() as usize);
    let (t, acc) = match ty {
        PeType::Int8 => ("int8", "int32"),
        PeType::Bf16 => ("bf16", "fp32"),
    };
    let eb = ty.input_bits() as usize / 8;
    // A fold that fills the array: weight-stationary k = rows with m = 2 x
    // rows; output-stationary m = rows with k = 2 x rows.
    let (m, k) = match arch.dataflow() {
        Dataflow::WeightStationary => (2 * r, r),
        Dataflow::OutputStationary => (r, 2 * r),
    };
    let a_bytes = m * k * eb;
    let b_at = arch.scratchpad_bytes().get() as usize / 2;
    let src = format!(
        "\
.queue matrix
    addr.set r1, {b_at}
    addr.set r2, 0
    addr.set r3, 0
    addr.step r2, 0, {a_bytes}
    loop 2, body_end
    mm.preload b=spad[r1]:{t}, k={k}, n={c}, transpose=false
    mm.compute a=spad[r2]:{t}, c=acc[r3]:{acc}, m={m}, transpose=false, mode=accumulate
body_end:
    halt
"
    );
    let p = assemble(&src, "builtin.s", Some(arch)).map_err(|e| anyhow!("{e}"))?;
    let mut s = 0x2545_f491_4f6c_dd1du64;
    let mut elem = move |i: usize| -> u16 {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        let x = (s >> 32) as u32;
        match (ty, i % 29) {
            (PeType::Int8, 0) => 0x80,
            (PeType::Int8, 1) => 0x7f,
            (PeType::Int8, _) => x as u8 as u16,
            (PeType::Bf16, 0) => 0x0000,
            (PeType::Bf16, 1) => 0x0001,
            (PeType::Bf16, 2) => 0x7f7f,
            (PeType::Bf16, _) => ((x & 0x8000) | ((120 + (x >> 16) % 16) << 7) | (x & 0x7f)) as u16,
        }
    };
    let bytes = |v: Vec<u16>| -> Vec<u8> {
        v.iter()
            .flat_map(|x| x.to_le_bytes().into_iter().take(eb))
            .collect()
    };
    let mut spad = bytes((0..2 * m * k).map(&mut elem).collect());
    spad.resize(b_at, 0);
    spad.extend(bytes((0..k * c).map(&mut elem).collect()));
    run_program(p, &spad, &[])
}
