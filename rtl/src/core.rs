//! The core: the load and store queues ([`crate::dma`]: copies, transposes,
//! gathers and fp32 scatter-adds into HBM), the matrix queue
//! (a [`crate::frontend`] instance, `mm.stride`, the bound operand), 16
//! dependency tokens, HBM, a scratchpad model, the weight-stationary array and
//! the accumulator memory (overwrite, and accumulate with wrapping int32 or
//! [`crate::fp32_add`]). One core per processing-element type.
//!
//! Decoding is derived from the ISA table: opcodes and field positions come
//! from [`tessera_isa::INSTRUCTIONS`], the sub-fields of tile operands from
//! encoding probe values, so nothing is re-typed.
//!
//! Timing (`docs/timing.md`): the front end decodes one instruction per
//! cycle into a queue of engine operations, running ahead of the engine; a
//! preload takes R cycles and starts when the last compute has drained
//! (single-buffered weights) or as the double-buffered rules allow
//! ([`crate::core_weights`]); a compute starts when the weights are in and the
//! previous compute's rows have all entered, streams M rows and its last
//! result leaves the array M + P R + C - 2 cycles after it starts; the
//! accumulator write of each result takes one more cycle. Engine operations
//! take their waited tokens when they start; see `docs/rtl.md` for signals.
//!
//! An output-stationary description gets the same memories, queues and
//! front ends with [`crate::core_os`]'s matrix engine instead of the
//! weight-stationary one ([`core_module`] selects it by `array.dataflow`).

use tessera_isa::exec::Frontend;
use tessera_isa::field::{Field, LocalAddr, Reg, SInt, Space, WriteMode, MAX_LOOP_DEPTH};
use tessera_isa::inst::desc_of;
use tessera_isa::{Arch, Dataflow, Op, Program, Queue, Site};

use crate::array::array;
use crate::fp32_add::{fp32_add, FP32_ADD};
use crate::pe::{pe, Buffering, PeType};
use crate::RtlError;

/// Instructions the static walk of [`core_program`] executes at most.
pub const WALK_LIMIT: u64 = 1 << 22;

/// The load, matrix and store queues of a program, checked to be in the
/// subset the core runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreProgram {
    /// The element type of every matrix operand.
    pub ty: PeType,
    /// The matrix queue's encoded instructions, in order.
    pub words: Vec<u128>,
    /// The load and store queues' encoded instructions (a lone `halt` for an empty queue).
    pub load: Vec<u128>,
    pub store: Vec<u128>,
    /// The vector queue ([`crate::vec_engine::walk_vector`]).
    pub vector: crate::vec_engine::VectorQueue,
    /// HBM bytes the core models: past the last byte the program touches, a multiple of 4.
    pub hbm_bytes: u64,
}

fn unsupported(site: Site, mnemonic: &str, why: String) -> RtlError {
    RtlError::Unsupported(format!("{site} {mnemonic}: {why}"))
}

fn pe_type(t: tessera_isa::DType) -> Option<PeType> {
    PeType::ALL.into_iter().find(|p| p.dtype() == t)
}

/// Whether `op` occupies a DMA or vector engine (not a control or
/// configuration instruction).
fn runs_an_engine(op: &Op) -> bool {
    matches!(
        op,
        Op::DmaLoad { .. }
            | Op::DmaStore { .. }
            | Op::DmaGather { .. }
            | Op::DmaScatterAdd { .. }
            | Op::VBin { .. }
            | Op::VUn { .. }
            | Op::VAxpby { .. }
            | Op::VReduce { .. }
            | Op::VSel { .. }
            | Op::VCausal { .. }
            | Op::VGather { .. }
            | Op::VScatterAdd { .. }
            | Op::VFload { .. }
    )
}

/// Checks that `p` runs on the generated core of its hardware description
/// and returns its queues. The walk executes each queue's front end (at
/// most [`WALK_LIMIT`] instructions each), so every address is checked.
///
/// # Errors
/// A vector instruction the engine refuses ([`crate::vec_engine::walk_vector`]), an instruction outside the subset
/// of its queue (the message names it, e.g. `load#3 dma.load: ...`), operands
/// of a type with no processing element or of two types, A or B outside the
/// scratchpad, C outside the accumulator, result rows that overlap, an
/// `addr.step` on a loop level that is open (the core keeps incremental loop
/// terms), an address the simulator would reject, an HBM share the DMA
/// cannot time ([`crate::dma::cycles_per_burst`]), or a design the array
/// generator refuses. A program with no `mm.preload` runs on the core of the
/// first of `array.input_types` with a processing element when another
/// queue has engine work, and is refused otherwise.
pub fn core_program(p: &Program) -> Result<CoreProgram, RtlError> {
    let arch = &p.arch;
    let os = arch.dataflow() == Dataflow::OutputStationary;
    if os {
        crate::core_os::check_os_arch(arch)?;
    }
    let double = !os && Buffering::of(arch) == Buffering::Double;
    let vector = crate::vec_engine::walk_vector(p)?;
    let mut hbm_end = 0u64;
    let load = walk_dma(p, Queue::Load, &mut hbm_end)?;
    let store = walk_dma(p, Queue::Store, &mut hbm_end)?;
    if !p.queue(Queue::Load).is_empty() || !p.queue(Queue::Store).is_empty() {
        crate::dma::cycles_per_burst(arch)?;
    }
    let code = p.queue(Queue::Matrix);
    if code.len() > usize::from(u16::MAX) {
        return Err(RtlError::Unsupported(format!(
            "queue matrix: {} instructions; the core's program counter has 16 bits",
            code.len()
        )));
    }
    let mut fe = Frontend::new(code);
    let mut ty: Option<PeType> = None;
    let mut steps = 0u64;
    while let Some((index, inst)) = fe.peek() {
        let site = Site {
            queue: Queue::Matrix,
            index,
        };
        let mn = inst.op.mnemonic();
        let mut want = |t: tessera_isa::DType, what: &str| -> Result<(), RtlError> {
            let pt = pe_type(t)
                .filter(|_| arch.supports_input(t))
                .ok_or_else(|| {
                    unsupported(
                        site,
                        mn,
                        format!("{what} is {t}; the core has int8 and bf16 processing elements for the array's input types"),
                    )
                })?;
            match ty {
                Some(have) if have != pt => Err(unsupported(
                    site,
                    mn,
                    format!(
                        "{what} is {t} but earlier operands are {}; one core runs one element type",
                        have.name()
                    ),
                )),
                _ => {
                    ty = Some(pt);
                    Ok(())
                }
            }
        };
        match inst.op {
            Op::Nop {}
            | Op::Halt {}
            | Op::Loop { .. }
            | Op::AddrSet { .. }
            | Op::ProfBegin { .. }
            | Op::ProfEnd { .. }
            | Op::MmStride { .. } => {}
            Op::AddrStep { level, .. } => open_level(&fe, site, mn, level.get())?,
            Op::MmPreload { b, .. } => {
                if double && inst.signal.iter().next().is_some() {
                    // With double buffering a preload may end before the
                    // compute issued ahead of it; in-order completion would
                    // then delay its signal, which the core does not do.
                    return Err(unsupported(
                        site,
                        mn,
                        "signals a token: with array.double_buffered_weights the core does not delay a preload's signal until the compute before it completes; signal from the compute instead".into(),
                    ));
                }
                if b.addr.space != Space::Spad {
                    return Err(unsupported(
                        site,
                        mn,
                        "operand b must be in the scratchpad".into(),
                    ));
                }
                want(b.dtype, "operand b")?;
            }
            Op::MmCompute { a, c, .. } => {
                if a.addr.space != Space::Spad {
                    return Err(unsupported(
                        site,
                        mn,
                        "operand a must be in the scratchpad".into(),
                    ));
                }
                if c.addr.space != Space::Acc {
                    return Err(unsupported(
                        site,
                        mn,
                        "result c must be in the accumulator".into(),
                    ));
                }
                want(a.dtype, "operand a")?;
                if c.dtype != a.dtype.accumulator_type() {
                    return Err(unsupported(
                        site,
                        mn,
                        format!(
                            "result c is {} but {} inputs accumulate in {}",
                            c.dtype,
                            a.dtype,
                            a.dtype.accumulator_type()
                        ),
                    ));
                }
                let n = fe.preload().map_or(0, |b| b.n);
                let stride = fe.matrix.c_stride;
                if stride != 0 && stride < 4 * n {
                    return Err(unsupported(
                        site,
                        mn,
                        format!(
                            "result rows overlap (row stride {stride} < {} bytes)",
                            4 * n
                        ),
                    ));
                }
            }
            _ => {
                return Err(unsupported(
                    site,
                    mn,
                    "not in the matrix subset the core runs".into(),
                ))
            }
        }
        if os {
            crate::core_os::check_os_shape(&inst.op, arch)
                .map_err(|why| unsupported(site, mn, why))?;
        } else if let Op::MmPreload { k, n, .. } = inst.op {
            if k.get() > u64::from(arch.rows()) || n.get() > u64::from(arch.cols()) {
                return Err(unsupported(
                    site,
                    mn,
                    format!(
                        "a {}x{} operand does not fit the {}x{} array",
                        k.get(),
                        n.get(),
                        arch.rows(),
                        arch.cols()
                    ),
                ));
            }
        }
        fe.checked_accesses(inst, &p.symbols, |s| arch.capacity(s).get())
            .map_err(|e| unsupported(site, mn, e.to_string()))?;
        fe.advance()
            .map_err(|e| unsupported(site, mn, e.to_string()))?;
        steps += 1;
        if steps > WALK_LIMIT {
            return Err(RtlError::Unsupported(format!(
                "queue matrix: runs more than {WALK_LIMIT} instructions; the generator checks every address by walking it"
            )));
        }
    }
    // A program without matrix work (a vector kernel with its DMA) runs on
    // the core of the description's first input type with a processing
    // element; its matrix queue only runs control instructions.
    let other_work = [Queue::Load, Queue::Store, Queue::Vector]
        .iter()
        .any(|&q| p.queue(q).iter().any(|i| runs_an_engine(&i.op)));
    let ty = ty
        .or_else(|| {
            other_work
                .then(|| {
                    arch.spec()
                        .array
                        .input_types
                        .iter()
                        .find_map(|&t| pe_type(t))
                })
                .flatten()
        })
        .ok_or_else(|| {
            RtlError::Unsupported("queue matrix: no mm.preload; nothing for the core to run".into())
        })?;
    let words = if code.is_empty() {
        vec![tessera_isa::Instruction::new(Op::Halt {}).encode()]
    } else {
        code.iter().map(|i| i.encode()).collect()
    };
    Ok(CoreProgram {
        ty,
        words,
        load,
        store,
        vector,
        hbm_bytes: hbm_end.max(4).next_multiple_of(4),
    })
}

/// Walks DMA queue `q`: control instructions, `dma.hstride`, `dma.lstride`,
/// `dma.load` and `dma.store` (any transpose), `dma.gather` and
/// `dma.scatter_add` (whose tables the HBM image must cover: their rows
/// depend on data); records the end of the HBM it
/// touches in `hbm_end`. Returns the encoded queue (a lone `halt` if empty).
fn walk_dma(p: &Program, q: Queue, hbm_end: &mut u64) -> Result<Vec<u128>, RtlError> {
    let code = p.queue(q);
    if code.len() > usize::from(u16::MAX) {
        return Err(RtlError::Unsupported(format!(
            "queue {q}: {} instructions; the core's program counter has 16 bits",
            code.len()
        )));
    }
    let mut fe = Frontend::new(code);
    let mut steps = 0u64;
    while let Some((index, inst)) = fe.peek() {
        let site = Site { queue: q, index };
        let mn = inst.op.mnemonic();
        match inst.op {
            Op::Nop {}
            | Op::Halt {}
            | Op::Loop { .. }
            | Op::AddrSet { .. }
            | Op::ProfBegin { .. }
            | Op::ProfEnd { .. }
            | Op::DmaHbmStride { .. }
            | Op::DmaLocalStride { .. }
            | Op::DmaGather { .. }
            | Op::DmaScatterAdd { .. } => {}
            Op::AddrStep { level, .. } => open_level(&fe, site, mn, level.get())?,
            Op::DmaLoad { .. } | Op::DmaStore { .. } => {}
            _ => {
                return Err(unsupported(
                    site,
                    mn,
                    format!("not in the {q} subset the core runs"),
                ))
            }
        }
        let accesses = fe
            .checked_accesses(inst, &p.symbols, |s| p.arch.capacity(s).get())
            .map_err(|e| unsupported(site, mn, e.to_string()))?;
        for a in accesses {
            // An indexed table's extent depends on data (the HBM image covers it).
            if a.region.space == tessera_isa::program::MemSpace::Hbm && !a.indirect {
                if let Some(end) = a.region.end() {
                    *hbm_end = (*hbm_end).max(end);
                }
            }
        }
        fe.advance()
            .map_err(|e| unsupported(site, mn, e.to_string()))?;
        steps += 1;
        if steps > WALK_LIMIT {
            return Err(RtlError::Unsupported(format!(
                "queue {q}: runs more than {WALK_LIMIT} instructions; the generator checks every address by walking it"
            )));
        }
    }
    if code.is_empty() {
        return Ok(vec![tessera_isa::Instruction::new(Op::Halt {}).encode()]);
    }
    Ok(code.iter().map(|i| i.encode()).collect())
}

/// Refuses an `addr.step` on an open loop level.
fn open_level(fe: &Frontend<'_>, site: Site, mn: &str, level: u64) -> Result<(), RtlError> {
    let open = fe.loop_indices().count();
    if (level as usize) < open {
        return Err(unsupported(
            site,
            mn,
            format!("level {level} is an open loop; the core keeps incremental loop terms, so set a level's strides before its loop starts"),
        ));
    }
    Ok(())
}

/// `(lsb, bits)` of `field` of `mnemonic` in the ISA table.
pub(crate) fn field(mnemonic: &str, name: &str) -> (u32, u32) {
    desc_of(mnemonic)
        .and_then(|d| d.fields.iter().find(|f| f.name == name))
        .map_or((0, 0), |f| (f.lsb, f.bits))
}

pub(crate) fn opcode(mnemonic: &str) -> u8 {
    desc_of(mnemonic).map_or(0xff, |d| d.opcode)
}

/// `(lsb, bits)` of the set bits of a probe encoding.
pub(crate) fn span(bits: u128) -> (u32, u32) {
    let lsb = bits.trailing_zeros().min(127);
    (lsb, 128 - bits.leading_zeros() - lsb)
}

/// Positions, inside a tile operand, of its register and offset sub-fields,
/// found by encoding probe values.
fn tile_parts() -> ((u32, u32), (u32, u32)) {
    let probe = |reg: u8, offset: i64| {
        LocalAddr {
            space: Space::Spad,
            reg: Reg::new(reg).unwrap_or(Reg::new(0).unwrap_or_else(|| unreachable!())),
            offset: SInt::<12>::new(offset).unwrap_or_else(|| unreachable!()),
        }
        .to_bits()
    };
    (span(probe(Reg::COUNT - 1, 0)), span(probe(0, -1)))
}

/// `w[lsb +: bits]` zero-extended to `width` bits.
pub(crate) fn zext_of(w: &str, (lsb, bits): (u32, u32), width: u32) -> String {
    let b = bits.min(width);
    if b == width {
        format!("{w}[{lsb} +: {b}]")
    } else {
        format!("{{{}'d0, {w}[{lsb} +: {b}]}}", width - b)
    }
}

/// `w[lsb +: bits]` sign-extended to 48 bits.
pub(crate) fn sext48_of(w: &str, (lsb, bits): (u32, u32)) -> String {
    format!(
        "{{{{{}{{{w}[{}]}}}}, {w}[{lsb} +: {bits}]}}",
        48 - bits,
        lsb + bits - 1
    )
}

fn zext(s: (u32, u32), width: u32) -> String {
    zext_of("ins", s, width)
}

fn sext48(s: (u32, u32)) -> String {
    sext48_of("ins", s)
}

fn token_probe(wait: u16, signal: u16) -> u128 {
    tessera_isa::Instruction {
        op: Op::Nop {},
        wait: tessera_isa::field::TokenSet(wait),
        signal: tessera_isa::field::TokenSet(signal),
    }
    .encode()
}

/// `(lsb, bits)` of the wait-token mask in an instruction word.
pub(crate) fn wait_span() -> (u32, u32) {
    span(token_probe(u16::MAX, 0) ^ token_probe(0, 0))
}

/// `(lsb, bits)` of the signal-token mask in an instruction word.
pub(crate) fn signal_span() -> (u32, u32) {
    span(token_probe(0, u16::MAX) ^ token_probe(0, 0))
}

/// The effective-address expression of tile operand `name` of `mnemonic`:
/// the register's base plus its loop terms plus the offset. (A continuous
/// assignment, not a function: a function call is re-evaluated only when its
/// arguments change, not when the registers it reads do.)
fn tile_ea(mnemonic: &str, name: &str, port: u32) -> String {
    let (lsb, _) = field(mnemonic, name);
    let (_, (ol, ob)) = tile_parts();
    format!("mm_ea[{} +: 48] + {}", 48 * port, sext48((lsb + ol, ob)))
}

/// The register sub-field of tile operand `name` of `mnemonic`.
fn tile_reg(mnemonic: &str, name: &str) -> String {
    let (lsb, _) = field(mnemonic, name);
    let ((rl, rb), _) = tile_parts();
    format!("ins[{} +: {rb}]", lsb + rl)
}

/// The core's module name for `ty`.
pub fn core_module_name(ty: PeType) -> String {
    format!("tessera_core_{}", ty.name())
}

pub(crate) fn clog2(x: u64) -> u32 {
    64 - x.saturating_sub(1).leading_zeros()
}

/// Instruction-memory depth for a program of `len` words: a power of two, at least 2.
pub fn imem_depth(len: usize) -> usize {
    len.max(2).next_power_of_two()
}

/// Sizes of a core's program-dependent memories.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoreShape {
    /// Instruction-memory words of the load, matrix and store queues (each
    /// a power of two, at least 2; see [`imem_depth`]).
    pub depths: [usize; 3],
    /// Instruction-memory words of the vector queue (as `depths`).
    pub vector_depth: usize,
    /// HBM bytes (a multiple of 4, at least 4).
    pub hbm_bytes: u64,
}

impl CoreShape {
    /// The shape that holds `p`.
    pub fn of(p: &CoreProgram) -> CoreShape {
        CoreShape {
            depths: [
                imem_depth(p.load.len()),
                imem_depth(p.words.len()),
                imem_depth(p.store.len()),
            ],
            vector_depth: imem_depth(p.vector.words.len()),
            hbm_bytes: p.hbm_bytes,
        }
    }
}

/// The Verilog of the core of `ty` for `arch` with memories of `shape`.
/// The memories load `$readmemh` images named by the parameters
/// `LOAD_INIT`, `IMEM_INIT` (the matrix queue), `STORE_INIT`, `SPAD_INIT`,
/// `ACC_INIT` and `HBM_INIT`.
///
/// Ports: `clk`, `rst` (synchronous), `done` (every queue halted and every
/// transfer and result written), `error` (an opcode outside a queue's
/// subset), `lead_cycles` (cycles after reset before the first engine
/// instruction of any queue starts), `run_cycles` (cycles from then until
/// `done`), and debug read ports of the accumulator (`dbg_addr`, a word
/// index, to `dbg_data`) and of HBM (`dbg_hbm_addr` to `dbg_hbm_data`).
/// The DMA needs whole cycles per burst: with another HBM share the core
/// is generated with the nearest whole number, at least 1, and
/// [`core_program`] refuses programs that use DMA.
pub fn core_module(arch: &Arch, ty: PeType, shape: CoreShape) -> String {
    let imem_depth = shape.depths[1];
    let k = crate::dma::cycles_per_burst(arch).unwrap_or_else(|_| {
        let per = arch.hbm_bytes_per_cycle() / f64::from(arch.spec().chip.cores);
        ((f64::from(arch.spec().dma.burst_bytes) / per).round() as u64).clamp(1, 65535)
    });
    let burst = u64::from(arch.spec().dma.burst_bytes);
    let hbm_aw = clog2(shape.hbm_bytes).max(1);
    let (r, c, p) = (arch.rows(), arch.cols(), arch.pe_stages());
    let w = ty.input_bits();
    let es = w / 8;
    let acc_words = arch.accumulator_bytes().get() / 4;
    let acc_aw = clog2(acc_words).max(1);
    let imem_aw = clog2(imem_depth as u64).max(1);
    let pr = p * r;
    let lv = clog2(MAX_LOOP_DEPTH as u64);
    let nregs = u32::from(Reg::COUNT);
    let rb = clog2(u64::from(Reg::COUNT));
    let op = |m: &str| format!("8'h{:02x}", opcode(m));
    let adder = match ty {
        PeType::Int8 => "            assign sum_c = old_c + p_c;".to_string(),
        PeType::Bf16 => {
            format!("            {FP32_ADD} u_add (.x(p_c), .y(old_c), .z(sum_c));")
        }
    };
    let tag_line = if pr == 1 {
        "    always @(posedge clk) tag_dl <= rst ? {TW{1'b0}} : tag_in;".to_string()
    } else {
        "    always @(posedge clk) tag_dl <= rst ? {TW*P*R{1'b0}} : {tag_dl[TW*(P*R-1)-1:0], tag_in};"
            .to_string()
    };
    let tag_cols = match c {
        1 => "    wire [TW-1:0] tag_col_flat = tag_dl[TW*P*R-1 -: TW];\n    wire tag_cols_busy = 1'b0;".to_string(),
        _ => format!(
            "    reg [TW*(C-1)-1:0] tag_cols;
    always @(posedge clk) tag_cols <= rst ? {{TW*(C-1){{1'b0}}}} : {};
    wire [TW*C-1:0] tag_col_flat = {{tag_cols, tag_dl[TW*P*R-1 -: TW]}};
    reg tag_cols_busy;
    integer tc;
    always @* begin
        tag_cols_busy = 1'b0;
        for (tc = 0; tc < C - 1; tc = tc + 1) tag_cols_busy = tag_cols_busy | tag_cols[tc*TW + TW - 1];
    end",
            if c == 2 {
                "tag_dl[TW*P*R-1 -: TW]"
            } else {
                "{tag_cols[TW*(C-2)-1:0], tag_dl[TW*P*R-1 -: TW]}"
            }
        ),
    };
    // A compute's signal leaves the tag chain EARLY cycles before its last
    // write (column C - 1, chain entry P R + C - 1; entry 0 is the streamed
    // row), so it is visible the cycle the timing model ends the compute. That
    // is safe when its consumer, a DMA queue, touches memory no sooner than
    // `latency` >= 2 cycles after it starts; otherwise it leaves with the write.
    let early = if arch.hbm_latency_cycles().get() >= 2 {
        2
    } else {
        0
    };
    let entry = u64::from(pr + c - 1).saturating_sub(early);
    let sig_tag = if entry == 0 {
        "tag_in".to_string()
    } else if entry <= u64::from(pr) {
        format!("tag_dl[TW*{} +: TW]", entry - 1)
    } else {
        format!("tag_cols[TW*{} +: TW]", entry - u64::from(pr) - 1)
    };
    // One element of W bits at `rd_addr` (a wire of each generate block
    // that reads the scratchpad), indexed directly: a function call in a
    // continuous assignment is re-evaluated only when its arguments change
    // (Icarus Verilog), so a word written under an unchanged address
    // would be read stale.
    let rd_word = if es == 1 {
        "spad[rd_addr]".to_string()
    } else {
        "{spad[rd_addr + SA_ONE], spad[rd_addr]}".to_string()
    };
    let os = arch.dataflow() == Dataflow::OutputStationary;
    let (engine, mut subs) = if os {
        (
            crate::core_os::OS_ENGINE,
            crate::core_os::os_subs(early == 2),
        )
    } else {
        let mut subs = crate::core_weights::weight_subs(Buffering::of(arch), r, p);
        subs.extend([
            (
                "@PAD_LINE@",
                format!(
                    "    localparam [W-1:0] PAD = {w}'h{:x};",
                    ty.identity_weight()
                ),
            ),
            (
                "@TAG_PARAM@",
                "    // Tag of one streamed row: valid, accumulate, n, signal mask, word address of its C row.\n    localparam TW = 1 + 1 + 16 + 16 + AA;\n".into(),
            ),
            ("@DATAFLOW@", "weight-stationary".into()),
        ]);
        (WS_ENGINE, subs)
    };
    subs.extend([
        ("@MM_ISSUE@", MM_ISSUE.into()),
        ("@MM_UNUSED@", MM_UNUSED.into()),
        ("@TY@", ty.name().into()),
        ("@MODULE@", core_module_name(ty)),
        (
            "@ARRAY@",
            if os {
                crate::array_os::os_array_module(ty)
            } else {
                ty.array_module()
            },
        ),
        ("@R@", r.to_string()),
        ("@VL@", arch.spec().vector.lanes.to_string()),
        ("@C@", c.to_string()),
        ("@P@", p.to_string()),
        ("@W@", w.to_string()),
        ("@ES@", es.to_string()),
        ("@IMEM_DEPTH@", imem_depth.to_string()),
        ("@IMEM_AW@", imem_aw.to_string()),
        ("@SPAD_BYTES@", arch.scratchpad_bytes().get().to_string()),
        ("@ACC_WORDS@", acc_words.to_string()),
        ("@HBM_BYTES@", shape.hbm_bytes.to_string()),
        ("@HBM_AW@", hbm_aw.to_string()),
        (
            "@LW@",
            clog2(arch.scratchpad_bytes().get())
                .max(acc_aw + 2)
                .to_string(),
        ),
        ("@BURST@", burst.to_string()),
        ("@BB@", clog2(burst).to_string()),
        ("@K@", k.to_string()),
        ("@KW@", (clog2(k + 1).max(1)).to_string()),
        ("@LAT@", arch.hbm_latency_cycles().get().to_string()),
        ("@ENGINES@", arch.spec().dma.engines.to_string()),
        (
            "@LOAD@",
            crate::dma::dma_block(Queue::Load, shape.depths[0]),
        ),
        (
            "@STORE@",
            crate::dma::dma_block(Queue::Store, shape.depths[2]),
        ),
        (
            "@VECTOR@",
            crate::vec_engine::vec_block(arch, shape.vector_depth),
        ),
        ("@FRONTEND@", crate::frontend::FRONTEND.into()),
        ("@WAIT@", zext(wait_span(), 16)),
        ("@SIGNAL@", zext(signal_span(), 16)),
        ("@PRE_B_REG@", tile_reg("mm.preload", "b")),
        ("@CMP_A_REG@", tile_reg("mm.compute", "a")),
        ("@CMP_C_REG@", tile_reg("mm.compute", "c")),
        ("@ACC_AW@", acc_aw.to_string()),
        ("@NREGS@", nregs.to_string()),
        ("@RB@", rb.to_string()),
        ("@LV@", lv.to_string()),
        ("@LD@", MAX_LOOP_DEPTH.to_string()),
        ("@NL@", (nregs as usize * MAX_LOOP_DEPTH).to_string()),
        ("@OPC@", zext((0, 8), 8)),
        ("@OP_NOP@", op("nop")),
        ("@OP_HALT@", op("halt")),
        ("@OP_LOOP@", op("loop")),
        ("@OP_ASET@", op("addr.set")),
        ("@OP_ASTEP@", op("addr.step")),
        ("@OP_PBEG@", op("prof.begin")),
        ("@OP_PEND@", op("prof.end")),
        ("@OP_MSTR@", op("mm.stride")),
        ("@OP_PRE@", op("mm.preload")),
        ("@OP_CMP@", op("mm.compute")),
        ("@LOOP_COUNT@", zext(field("loop", "count"), 32)),
        ("@LOOP_END@", zext(field("loop", "end"), 16)),
        ("@ASET_REG@", zext(field("addr.set", "reg"), rb)),
        ("@ASET_BASE@", zext(field("addr.set", "base"), 48)),
        ("@ASTEP_REG@", zext(field("addr.step", "reg"), rb)),
        ("@ASTEP_LVL@", zext(field("addr.step", "level"), lv)),
        ("@ASTEP_STRIDE@", sext48(field("addr.step", "stride"))),
        ("@MSTR_A@", zext(field("mm.stride", "a"), 48)),
        ("@MSTR_B@", zext(field("mm.stride", "b"), 48)),
        ("@MSTR_C@", zext(field("mm.stride", "c"), 48)),
        ("@PRE_B@", tile_ea("mm.preload", "b", 0)),
        ("@PRE_K@", zext(field("mm.preload", "k"), 16)),
        ("@PRE_N@", zext(field("mm.preload", "n"), 16)),
        ("@PRE_TR@", zext(field("mm.preload", "transpose"), 1)),
        ("@CMP_A@", tile_ea("mm.compute", "a", 1)),
        ("@CMP_C@", tile_ea("mm.compute", "c", 2)),
        ("@CMP_M@", zext(field("mm.compute", "m"), 16)),
        ("@CMP_TR@", zext(field("mm.compute", "transpose"), 1)),
        ("@CMP_MODE@", zext(field("mm.compute", "mode"), 1)),
        (
            "@ACCUMULATE@",
            format!("1'b{}", WriteMode::Accumulate.to_bits()),
        ),
        ("@ADDER@", adder),
        ("@TAG_LINE@", tag_line),
        ("@SIG_TAG@", sig_tag),
        ("@TAG_COLS@", tag_cols),
        ("@RD_WORD@", rd_word),
        (
            "@SA_ONE@",
            if es == 1 {
                String::new()
            } else {
                "    localparam [SA-1:0] SA_ONE = 1;\n".into()
            },
        ),
    ]);
    let mut v = format!("{CORE_HEAD}{engine}");
    for (k, val) in subs {
        v = v.replace(k, &val);
    }
    v
}

/// Every Verilog file of the core of `ty`: `(file name, text)` for the
/// processing element, the array, the fp32 adder (bf16 only) and the core.
///
/// # Errors
/// A pipeline depth the processing element generator refuses.
pub fn core_sources(
    arch: &Arch,
    ty: PeType,
    shape: CoreShape,
) -> Result<Vec<(String, String)>, RtlError> {
    let header = format!(
        "// Generated by tessera-rtl for hardware `{}` (fingerprint {:016x}). Do not edit.\n",
        arch.name(),
        arch.fingerprint()
    );
    let mut files = if arch.dataflow() == Dataflow::OutputStationary {
        crate::core_os::os_array_files(arch, ty, &header)?
    } else {
        vec![
            (
                format!("{}.v", ty.pe_module()),
                format!(
                    "{header}{}",
                    pe(ty, arch.pe_stages(), Buffering::of(arch))?.to_verilog()
                ),
            ),
            (
                format!("{}.v", ty.array_module()),
                format!(
                    "{header}{}",
                    array(ty, arch.rows(), arch.cols(), Buffering::of(arch)).to_verilog()
                ),
            ),
        ]
    };
    if ty == PeType::Bf16 {
        files.push((format!("{FP32_ADD}.v"), format!("{header}{}", fp32_add())));
    }
    // The vector unit's modules (its fp32 adder is the bf16 core's).
    for (name, text) in crate::vec_unit::vec_sources(arch) {
        if !files.iter().any(|(n, _)| *n == name) {
            files.push((name, format!("{header}{text}")));
        }
    }
    files.push((
        format!("{}.v", crate::frontend::FRONTEND),
        format!("{header}{}", crate::frontend::frontend_module()),
    ));
    files.push((
        format!("{}.v", core_module_name(ty)),
        format!("{header}{}", core_module(arch, ty, shape)),
    ));
    Ok(files)
}

/// A `$readmemh` image of instruction words, padded with zero words to `depth`.
pub fn imem_image(words: &[u128], depth: usize) -> String {
    let mut s = String::with_capacity(33 * depth);
    for i in 0..depth {
        s.push_str(&format!("{:032x}\n", words.get(i).copied().unwrap_or(0)));
    }
    s
}

/// A `$readmemh` image of bytes, one per line.
pub fn byte_image(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(3 * bytes.len());
    for b in bytes {
        s.push_str(&format!("{b:02x}\n"));
    }
    s
}

/// A `$readmemh` image of little-endian 32-bit words.
pub fn word_image(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(9 * bytes.len() / 4);
    for w in bytes.chunks(4) {
        let mut b = [0u8; 4];
        b[..w.len()].copy_from_slice(w);
        s.push_str(&format!("{:08x}\n", u32::from_le_bytes(b)));
    }
    s
}

/// The core up to its matrix engine: memories, tokens, the DMA and vector
/// queues and the matrix queue's front end and operand decode. A matrix
/// engine ([`WS_ENGINE`] or [`crate::core_os`]'s) completes the module.
const CORE_HEAD: &str = r#"// Core (@TY@): load, matrix and store queues with their front ends, 16
// dependency tokens, HBM (a byte memory sized to the program), the DMA
// engines, a scratchpad, the @R@ x @C@ @DATAFLOW@ array (@P@
// stage(s) per PE) and the accumulator memory.
module @MODULE@ #(
    parameter IMEM_DEPTH = @IMEM_DEPTH@,
    parameter SPAD_BYTES = @SPAD_BYTES@,
    parameter ACC_WORDS = @ACC_WORDS@,
    parameter HBM_BYTES = @HBM_BYTES@,
    parameter IMEM_INIT = "tessera_imem.hex",
    parameter LOAD_INIT = "tessera_load.hex",
    parameter STORE_INIT = "tessera_store.hex",
    parameter VECTOR_INIT = "tessera_vector.hex",
    parameter SPAD_INIT = "tessera_spad.hex",
    parameter ACC_INIT = "tessera_acc.hex",
    parameter HBM_INIT = "tessera_hbm.hex"
) (
    input wire clk,
    input wire rst,
    output wire done,
    output reg error,
    output reg [31:0] lead_cycles,
    output reg [31:0] run_cycles,
    input wire [@ACC_AW@-1:0] dbg_addr,
    output wire [31:0] dbg_data,
    input wire [@HBM_AW@-1:0] dbg_hbm_addr,
    output wire [7:0] dbg_hbm_data
);
    localparam R = @R@, C = @C@, P = @P@, W = @W@, ES = @ES@;
    localparam SA = $clog2(SPAD_BYTES), AA = @ACC_AW@, HA = @HBM_AW@, LW = @LW@;
@SA_ONE@@PAD_LINE@
    localparam FD = 4;
    // DMA: bytes per burst (BB bits of offset), cycles per burst, HBM latency.
    localparam BURST = @BURST@, BB = @BB@, K = @K@, KW = @KW@;
    localparam [KW-1:0] ONE_K = 1, K_MINUS_1 = K - 1;
    localparam [31:0] LAT = @LAT@;
    localparam ENGINES = @ENGINES@;
@TAG_PARAM@
    // ---------------------------------------------------------------- memories
    reg [7:0] spad [0:SPAD_BYTES-1];
    reg [31:0] acc [0:ACC_WORDS-1];
    reg [7:0] hbm [0:HBM_BYTES-1];
    // Synthesis leaves the data memories uninitialised.
    initial begin
`ifndef SYNTHESIS
        $readmemh(SPAD_INIT, spad);
        $readmemh(ACC_INIT, acc);
        $readmemh(HBM_INIT, hbm);
`endif
    end
    assign dbg_data = acc[dbg_addr];
    assign dbg_hbm_data = hbm[dbg_hbm_addr];
    function [7:0] acc_byte(input [AA+1:0] a);
    begin
        acc_byte = acc[a[AA+1:2]][{a[1:0], 3'b000} +: 8];
    end
    endfunction
    genvar g;
    reg [31:0] now;
    always @(posedge clk) now <= rst ? 32'd0 : now + 32'd1;

    // ------------------------------------------------------------------ tokens
    // 16 counting tokens of 8 bits: a wait takes one at issue, a signal gives
    // one when its instruction's effects are complete.
    reg [16*8-1:0] tok;
    // Per token, the cycles its oldest and second-oldest unconsumed signals
    // became visible (a third's is taken as the cycle it moves up): the
    // timing model's token time, which the DMA engine arbiter compares.
    reg [16*32-1:0] tok_a, tok_b;
    wire [15:0] tok_pos, tok_full;
    wire [15:0] ld_take, ld_give, ld_cgive, st_take, st_give, st_cgive, mm_take, mm_cgive, mm_pgive, mm_tgive;
    wire [15:0] v_take, v_give, v_cgive;
    wire [15:0] tok_take = ld_take | st_take | mm_take | v_take;
    generate
        for (g = 0; g < 16; g = g + 1) begin : g_tok
            wire [7:0] cnt = tok[g*8 +: 8];
            wire [7:0] gives = {7'd0, ld_give[g]} + {7'd0, ld_cgive[g]} + {7'd0, st_give[g]}
                + {7'd0, st_cgive[g]} + {7'd0, mm_cgive[g]} + {7'd0, mm_pgive[g]} + {7'd0, mm_tgive[g]}
                + {7'd0, v_give[g]} + {7'd0, v_cgive[g]};
            wire [7:0] left = cnt - {7'd0, tok_take[g]};
            wire [31:0] a = tok_a[g*32 +: 32];
            wire [31:0] b = tok_b[g*32 +: 32];
            wire [31:0] a1 = tok_take[g] ? ((cnt >= 8'd2) ? b : now) : a;
            wire [31:0] b1 = tok_take[g] ? now : b;
            assign tok_pos[g] = cnt != 8'd0;
            assign tok_full[g] = cnt == 8'hff;
            always @(posedge clk) begin
                tok[g*8 +: 8] <= rst ? 8'd0 : left + gives;
                tok_a[g*32 +: 32] <= (left == 8'd0 && gives != 8'd0) ? now + 32'd1 : a1;
                tok_b[g*32 +: 32] <= ((left == 8'd0 && gives >= 8'd2) || (left == 8'd1 && gives != 8'd0)) ? now + 32'd1 : b1;
            end
        end
    endgenerate
    // The timing model's ready time of a DMA queue's instruction: its queue's
    // issue cycle (the last transfer's start + 1) or its waited tokens' time.
    // (The token times are an argument: a function call in a continuous
    // assignment is re-evaluated only when its arguments change.)
    function [31:0] ready_time(input [31:0] issue, input [15:0] waits, input [16*32-1:0] at);
        integer t;
    begin
        ready_time = issue;
        for (t = 0; t < 16; t = t + 1)
            if (waits[t] && at[t*32 +: 32] > ready_time) ready_time = at[t*32 +: 32];
    end
    endfunction

    // ------------------------------------------------- DMA engine and bus grants
    // One engine per DMA queue; with one engine in the hardware description the
    // two queues share it, the one the timing model finds ready first (load on
    // a tie) going first. The HBM bus goes to the transfer that started first
    // (load on a tie).
    wire ld_eng_ok, st_eng_ok, ld_bus_ok, st_bus_ok;
    reg [31:0] ld_issue, st_issue;
    wire st_older = ready_time(st_issue, st_wt, tok_a) < ready_time(ld_issue, ld_wt, tok_a);
    generate
        if (ENGINES == 1) begin : g_one_engine
            assign ld_eng_ok = !st_busy && !(st_want_x && st_older);
            assign st_eng_ok = !ld_busy && !(ld_want_x && !st_older);
        end else begin : g_engines
            assign ld_eng_ok = 1'b1;
            assign st_eng_ok = 1'b1;
        end
    endgenerate
    always @(posedge clk) begin
        ld_issue <= rst ? 32'd0 : ld_go ? now + 32'd1 : ld_issue;
        st_issue <= rst ? 32'd0 : st_go ? now + 32'd1 : st_issue;
    end
    wire st_first = st_ready_at < ld_ready_at;
    assign ld_bus_ok = !st_bus && !(st_req_bus && st_first);
    assign st_bus_ok = !ld_bus && !(ld_req_bus && !st_first);
@LOAD@
@STORE@

    // The vector queue and engine; its memory writes are applied below.
    wire v_go, v_err, v_idle, v_wacc;
    wire [@VL@*4-1:0] v_we;
    wire [@VL@*4*SA-1:0] v_wsa;
    wire [@VL@*4*(AA+2)-1:0] v_wca;
    wire [@VL@*4*8-1:0] v_wd;
@VECTOR@

    // HBM writes (the store queue: a copied byte, or a scatter-add's sum in
    // its write slot) and on-chip writes of the load and vector queues.
    integer b;
    always @(posedge clk)
        for (b = 0; b < BURST; b = b + 1)
            if (st_on[b]) hbm[st_hb[b*HA +: HA]] <= st_sa_q ? st_sum[b*8 +: 8] : st_acc ? acc_byte(st_lb[b*LW +: AA+2]) : spad[st_lb[b*LW +: SA]];
    always @(posedge clk) begin
        for (b = 0; b < BURST; b = b + 1)
            if (ld_on[b] && !ld_acc) spad[ld_lb[b*LW +: SA]] <= ld_zero ? 8'd0 : hbm[ld_hb[b*HA +: HA]];
        for (b = 0; b < @VL@ * 4; b = b + 1)
            if (v_we[b] && !v_wacc) spad[v_wsa[b*SA +: SA]] <= v_wd[b*8 +: 8];
    end

    // ------------------------------------------------------------ matrix queue
    wire [127:0] ins;
    wire mm_halted, mm_ctrl, mm_adv;
    wire [3*48-1:0] mm_ea;
    @FRONTEND@ #(.IMEM_DEPTH(IMEM_DEPTH), .IA(@IMEM_AW@), .IMEM_INIT(IMEM_INIT), .NP(3)) u_mm_fe (
        .clk(clk), .rst(rst), .adv(mm_adv), .ins(ins), .halted(mm_halted), .ctrl(mm_ctrl),
        .ra({@CMP_C_REG@, @CMP_A_REG@, @PRE_B_REG@}), .ea(mm_ea));
    reg [47:0] sa, sb, sc;
    reg [15:0] bk, bn;
    wire [7:0] opc = @OPC@;
    wire [15:0] mm_wt = @WAIT@;
    wire [15:0] mm_sg = @SIGNAL@;
    wire is_mstr = opc == @OP_MSTR@;
    wire is_pre = opc == @OP_PRE@;
    wire is_cmp = opc == @OP_CMP@;
    wire known = mm_ctrl | is_mstr | is_pre | is_cmp;
    // mm.preload: the first B row to enter (row k-1), the steps between rows and columns.
    wire [47:0] p_k = {32'd0, @PRE_K@};
    wire [47:0] p_n = {32'd0, @PRE_N@};
    wire p_tr = @PRE_TR@;
    wire [47:0] p_ea = @PRE_B@;
    wire [47:0] p_str = (sb != 48'd0) ? sb : (p_tr ? p_k : p_n) * ES;
    wire [47:0] p_rstep = p_tr ? ES : p_str;
    wire [47:0] p_cstep = p_tr ? p_str : ES;
@P_FIRST@
    // mm.compute: A's first row, steps between rows and columns; C's first row and row step.
    wire [47:0] c_m = {32'd0, @CMP_M@};
    wire c_tr = @CMP_TR@;
    wire c_acc = @CMP_MODE@ == @ACCUMULATE@;
    wire [47:0] c_aea = @CMP_A@;
    wire [47:0] c_cea = @CMP_C@;
    wire [47:0] c_str = (sa != 48'd0) ? sa : (c_tr ? c_m : {32'd0, bk}) * ES;
    wire [47:0] c_rstep = c_tr ? ES : c_str;
    wire [47:0] c_cstep = c_tr ? c_str : ES;
    wire [47:0] c_cstr = (sc != 48'd0) ? sc : {32'd0, bn} * 4;

"#;

/// The weight-stationary matrix engine: the engine-operation queue, the
/// preload and compute sequencer, the array and its accumulator writes, and
/// the core's completion and cycle counters (it follows [`CORE_HEAD`]).
/// How both matrix engines issue from the matrix queue: an engine
/// operation (`eng`) enters the engine's queue when it has room; a control
/// instruction waits for the queued operations to start (and, if it signals,
/// for the matrix unit to finish); tokens are taken when an operation starts.
const MM_ISSUE: &str = r#"    wire mm_want = !rst && !error && !mm_halted && known && (mm_sg & tok_full) == 16'd0;
    assign mm_adv = mm_want && (eng ? q_count != FD
        : (mm_wt == 16'd0 || (q_count == 3'd0 && (mm_wt & ~tok_pos) == 16'd0)) && (mm_sg == 16'd0 || mm_idle));
    wire mm_err = !rst && !mm_halted && !known;
    wire push = mm_adv && eng;
    wire go;
    assign mm_cgive = (mm_adv && !eng) ? mm_sg : 16'd0;
    assign mm_take = ((mm_adv && !eng) ? mm_wt : 16'd0) | (go ? q_wait[q_head] : 16'd0);"#;

/// The matrix queue's decoded fields whose high bits checked programs leave
/// zero (both engines).
const MM_UNUSED: &str = r#"    // Address bits above the memories' sizes are zero in checked programs.
    wire unused_bits = ^{p_first[47:SA], c_aea[47:SA], p_rstep[47:SA], p_cstep[47:SA],
        c_rstep[47:SA], c_cstep[47:SA], c_cea[47:AA+2], c_cea[1:0], c_cstr[47:AA+2], c_cstr[1:0],
        c_m[47:16], p_k[47:16], p_n[47:16], ins[127:40]};"#;

const WS_ENGINE: &str = r#"    // Engine-operation queue.
    reg [2:0] q_count;
    reg [1:0] q_head, q_tail;
    reg q_pre [0:FD-1];
    reg [SA-1:0] q_addr [0:FD-1];
    reg [SA-1:0] q_rstep [0:FD-1];
    reg [SA-1:0] q_cstep [0:FD-1];
    reg [15:0] q_k [0:FD-1];
    reg [15:0] q_n [0:FD-1];
    reg [15:0] q_m [0:FD-1];
    reg [AA-1:0] q_caddr [0:FD-1];
    reg [AA-1:0] q_cstr [0:FD-1];
    reg q_acc [0:FD-1];
    reg [15:0] q_wait [0:FD-1];
    reg [15:0] q_sig [0:FD-1];
    wire eng = is_pre | is_cmp;
    wire mm_idle;
    // Engine operations take their waited tokens when they start; a control
    // instruction waits for the queued ones to start first, and one that
    // signals waits for the matrix unit to finish.
@MM_ISSUE@
    always @(posedge clk) begin
        if (rst) begin
            sa <= 48'd0;
            sb <= 48'd0;
            sc <= 48'd0;
            bk <= 16'd0;
            bn <= 16'd0;
        end else if (mm_adv) begin
            if (is_mstr) begin
                sa <= @MSTR_A@;
                sb <= @MSTR_B@;
                sc <= @MSTR_C@;
            end
            if (is_pre) begin
                bk <= p_k[15:0];
                bn <= p_n[15:0];
            end
        end
    end
    always @(posedge clk) error <= !rst && (error || mm_err || ld_err || st_err || v_err);

    always @(posedge clk) begin
        if (rst) begin
            q_count <= 3'd0;
            q_head <= 2'd0;
            q_tail <= 2'd0;
        end else begin
            if (push) begin
                q_pre[q_tail] <= is_pre;
                q_addr[q_tail] <= is_pre ? p_first[SA-1:0] : c_aea[SA-1:0];
                q_rstep[q_tail] <= is_pre ? p_rstep[SA-1:0] : c_rstep[SA-1:0];
                q_cstep[q_tail] <= is_pre ? p_cstep[SA-1:0] : c_cstep[SA-1:0];
                q_k[q_tail] <= is_pre ? p_k[15:0] : bk;
                q_n[q_tail] <= is_pre ? p_n[15:0] : bn;
                q_m[q_tail] <= c_m[15:0];
                q_caddr[q_tail] <= c_cea[AA+1:2];
                q_cstr[q_tail] <= c_cstr[AA+1:2];
                q_acc[q_tail] <= c_acc;
                q_wait[q_tail] <= mm_wt;
                q_sig[q_tail] <= mm_sg;
                q_tail <= q_tail + 2'd1;
            end
            if (go) q_head <= q_head + 2'd1;
            q_count <= q_count + {2'd0, push} - {2'd0, go};
        end
    end
@MM_UNUSED@

    // ------------------------------------------------------------------ engine
    reg [15:0] pre_left, str_left;
    reg [31:0] drain_left;
    reg [15:0] b_row, b_k, b_n, a_k, a_n;
    reg [SA-1:0] b_ptr, b_rstep, b_cstep, a_ptr, a_rstep, a_cstep;
    reg [AA-1:0] c_ptr, c_step;
    reg a_acc;
    reg [15:0] a_sig, b_sig;
    reg started;
    wire h_valid = q_count != 3'd0 && (q_wait[q_head] & ~tok_pos) == 16'd0;
@DB_REGS@    wire go_pre = h_valid && q_pre[q_head] && pre_left <= 16'd1 && @PRE_FREE@;
    wire go_cmp = h_valid && !q_pre[q_head] && @W_READY@ && str_left <= 16'd1;
    // A preload signals the cycle before its last; a compute two cycles before
    // its last row writes its last column (see EARLY in the generator).
    // (Both are visible the cycle the timing model ends the instruction.)
    generate
        if (R == 1) begin : g_pgive1
            assign mm_pgive = go_pre ? q_sig[q_head] : 16'd0;
        end else begin : g_pgive
            assign mm_pgive = (pre_left == 16'd2) ? b_sig : 16'd0;
        end
    endgenerate
    assign go = go_pre | go_cmp;
@DB_COUNTERS@    always @(posedge clk) begin
        if (rst) begin
            pre_left <= 16'd0;
            str_left <= 16'd0;
            drain_left <= 32'd0;
            started <= 1'b0;
            b_sig <= 16'd0;
        end else begin
            if (go || ld_go || st_go || v_go) started <= 1'b1;
            if (go_pre) begin
                b_sig <= q_sig[q_head];
                pre_left <= R;
                b_row <= @B_ROW0@;
                b_ptr <= q_addr[q_head];
                b_rstep <= q_rstep[q_head];
                b_cstep <= q_cstep[q_head];
                b_k <= q_k[q_head];
                b_n <= q_n[q_head];
            end else if (pre_left != 16'd0) begin
                pre_left <= pre_left - 16'd1;
@B_STEP@
            end
            if (go_cmp) begin
                str_left <= q_m[q_head];
                drain_left <= {16'd0, q_m[q_head]} + P * R + C - 2;
                a_ptr <= q_addr[q_head];
                a_rstep <= q_rstep[q_head];
                a_cstep <= q_cstep[q_head];
                a_k <= q_k[q_head];
                a_n <= q_n[q_head];
                a_acc <= q_acc[q_head];
                a_sig <= q_sig[q_head];
                c_ptr <= q_caddr[q_head];
                c_step <= q_cstr[q_head];
            end else begin
                if (str_left != 16'd0) begin
                    str_left <= str_left - 16'd1;
                    a_ptr <= a_ptr + a_rstep;
                    c_ptr <= c_ptr + c_step;
                end
                if (drain_left != 32'd0) drain_left <= drain_left - 32'd1;
            end
        end
    end

@W_FEED@    wire [R*W-1:0] a_left;
    wire [C*32-1:0] p_bottom;
    wire [C*W-1:0] unused_w_bottom;
    wire [R*W-1:0] unused_a_right;
    generate
        // A: row r of the array reads A[i][r] (0 for r >= k), delayed by P*r cycles.
        for (g = 0; g < R; g = g + 1) begin : g_arow
            localparam [SA-1:0] RI = g;
            wire [SA-1:0] rd_addr = a_ptr + RI * a_cstep;
            wire [W-1:0] din = (str_left != 16'd0 && g < a_k) ? @RD_WORD@ : {W{1'b0}};
            if (g == 0) begin : g_direct
                assign a_left[0 +: W] = din;
            end else if (P * g == 1) begin : g_skew1
                reg [W-1:0] line;
                always @(posedge clk) line <= rst ? {W{1'b0}} : din;
                assign a_left[g*W +: W] = line;
            end else begin : g_skew
                localparam LEN = W * P * g;
                reg [LEN-1:0] line;
                always @(posedge clk) line <= rst ? {LEN{1'b0}} : {line[LEN-W-1:0], din};
                assign a_left[g*W +: W] = line[LEN-1 -: W];
            end
        end
    endgenerate
    @ARRAY@ #(.ROWS(R), .COLS(C)) u_array (
        .clk(clk),
@ARRAY_W_PORTS@        .w_top(w_top),
        .w_bottom(unused_w_bottom),
        .a_left(a_left),
        .a_right(unused_a_right),
        .p_bottom(p_bottom)
    );

    // Row tags follow the partial sums: P*R cycles down to column 0, one column per cycle.
    wire [TW-1:0] tag_in = {str_left != 16'd0, a_acc, a_n, (str_left == 16'd1) ? a_sig : 16'd0, c_ptr};
    reg [TW*P*R-1:0] tag_dl;
@TAG_LINE@
@TAG_COLS@
    reg tag_dl_busy;
    integer td;
    always @* begin
        tag_dl_busy = 1'b0;
        for (td = 0; td < P * R; td = td + 1) tag_dl_busy = tag_dl_busy | tag_dl[td*TW + TW - 1];
    end

    // Accumulator writes: column c writes C[i][c] the cycle it leaves the array.
    wire [C-1:0] wen;
    wire [C*AA-1:0] widx;
    wire [C*32-1:0] wdata;
    generate
        for (g = 0; g < C; g = g + 1) begin : g_wb
            localparam [AA-1:0] CJ = g;
            wire [TW-1:0] t = tag_col_flat[g*TW +: TW];
            wire [AA-1:0] idx = t[AA-1:0] + CJ;
            wire [31:0] p_c = p_bottom[g*32 +: 32];
            wire [31:0] old_c = acc[idx];
            wire [31:0] sum_c;
@ADDER@
            assign wen[g] = t[TW-1] && g < t[AA + 16 +: 16];
            assign widx[g*AA +: AA] = idx;
            assign wdata[g*32 +: 32] = t[TW-2] ? sum_c : p_c;
        end
    endgenerate
    wire [TW-1:0] t_sig = @SIG_TAG@;
    assign mm_tgive = t_sig[TW-1] ? t_sig[AA +: 16] : 16'd0;
    // Accumulator writes: the array's results, then the load queue's bytes.
    integer wc;
    always @(posedge clk) begin
        for (wc = 0; wc < C; wc = wc + 1)
            if (wen[wc]) acc[widx[wc*AA +: AA]] <= wdata[wc*32 +: 32];
        for (b = 0; b < BURST; b = b + 1)
            if (ld_on[b] && ld_acc)
                acc[ld_lb[b*LW + 2 +: AA]][{ld_lb[b*LW +: 2], 3'b000} +: 8] <= ld_zero ? 8'd0 : hbm[ld_hb[b*HA +: HA]];
        for (b = 0; b < @VL@ * 4; b = b + 1)
            if (v_we[b] && v_wacc)
                acc[v_wca[b*(AA+2) + 2 +: AA]][{v_wca[b*(AA+2) +: 2], 3'b000} +: 8] <= v_wd[b*8 +: 8];
    end

    assign mm_idle = q_count == 3'd0 && pre_left == 16'd0 && str_left == 16'd0
        && drain_left == 32'd0 && !tag_dl_busy && !tag_cols_busy && !tag_col_flat[TW-1];
    assign done = mm_halted && mm_idle && ld_halted && !ld_busy && st_halted && !st_busy && v_halted && v_idle;
    always @(posedge clk) begin
        if (rst) begin
            lead_cycles <= 32'd0;
            run_cycles <= 32'd0;
        end else if (!started) begin
            lead_cycles <= lead_cycles + 32'd1;
        end else if (!done) begin
            run_cycles <= run_cycles + 32'd1;
        end
    end
endmodule
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_fields_fit_the_core_datapath() {
        // The core zero- or sign-extends each field; none may be wider than its register.
        for (m, f, width) in [
            ("loop", "count", 32),
            ("loop", "end", 16),
            ("addr.set", "base", 48),
            ("addr.step", "stride", 48),
            ("mm.stride", "a", 48),
            ("mm.preload", "k", 16),
            ("mm.preload", "n", 16),
            ("mm.compute", "m", 16),
            ("mm.compute", "mode", 1),
        ] {
            let (_, bits) = field(m, f);
            assert!(bits > 0 && bits <= width, "{m}.{f}: {bits} bits");
        }
        assert_eq!(tile_parts(), ((1, 4), (5, 12)));
    }

    /// Names of the functions in `v` whose bodies read a memory array.
    fn memory_functions(v: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut current: Option<String> = None;
        for line in v.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("function ") {
                let name = rest.split('(').next().unwrap_or_default();
                current = name.split_whitespace().last().map(str::to_string);
            } else if line.starts_with("endfunction") {
                current = None;
            } else if let Some(f) = &current {
                if ["spad[", "acc[", "hbm["].iter().any(|m| line.contains(m)) && !out.contains(f) {
                    out.push(f.clone());
                }
            }
        }
        out
    }

    /// A function call in a continuous assignment is re-evaluated only
    /// when its arguments change (Icarus Verilog): a memory read inside it
    /// goes stale when the word is written under an unchanged address.
    /// This once fed a compiled training step's matrix engine the scores
    /// from before the causal mask, on Icarus only. Every core variant
    /// reads memories in continuous assignments by direct indexing.
    #[test]
    fn no_continuous_assignment_reads_memory_through_a_function() {
        let base = Arch::preset("fpga-8x8").unwrap().spec().clone();
        let shape = CoreShape {
            depths: [4, 4, 4],
            vector_depth: 4,
            hbm_bytes: 64,
        };
        let mut checked = 0;
        for (dataflow, double) in [
            (Dataflow::WeightStationary, false),
            (Dataflow::WeightStationary, true),
            (Dataflow::OutputStationary, false),
        ] {
            let mut spec = base.clone();
            spec.array.dataflow = dataflow;
            spec.array.double_buffered_weights = double;
            let arch = Arch::new(spec).unwrap();
            for ty in [PeType::Int8, PeType::Bf16] {
                let v = core_module(&arch, ty, shape);
                let placeholder = v
                    .split('@')
                    .skip(1)
                    .any(|t| t.starts_with(|c: char| c.is_ascii_uppercase()));
                assert!(!placeholder, "a placeholder is left in the core");
                let readers = memory_functions(&v);
                for line in v.lines().map(str::trim) {
                    let continuous = line.starts_with("assign ")
                        || (line.starts_with("wire ") && line.contains(" = "));
                    for f in readers.iter().filter(|_| continuous) {
                        assert!(
                            !line.contains(&format!("{f}(")),
                            "{dataflow:?} double={double} {}: `{line}` calls `{f}`, which reads a memory",
                            ty.name()
                        );
                    }
                }
                assert!(v.contains("rd_addr"), "the operand reads are direct");
                checked += 1;
            }
        }
        assert_eq!(checked, 6);
    }
}
