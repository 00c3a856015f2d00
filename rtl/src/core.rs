//! The matrix core: instruction memory, the matrix queue's front end
//! (decoder, `loop` nesting, `addr.*` registers, `mm.stride`, the bound
//! operand), a scratchpad model for A and B, the weight-stationary array and
//! the accumulator memory (overwrite, and accumulate with wrapping int32 or
//! [`crate::fp32_add`]). One core per processing-element type.
//!
//! Decoding is derived from the ISA table: opcodes and field positions come
//! from [`tessera_isa::INSTRUCTIONS`], the sub-fields of tile operands from
//! encoding probe values, so nothing is re-typed.
//!
//! Timing (`docs/timing.md`, single-buffered weights): the front end decodes
//! one instruction per cycle into a queue of engine operations, running
//! ahead of the engine; a preload starts when the last compute has drained
//! and takes R cycles; a compute starts when the weights are in and the
//! previous compute's rows have all entered, streams M rows and its last
//! result leaves the array M + P R + C - 2 cycles after it starts; the
//! accumulator write of each result takes one more cycle. Dependency tokens
//! are ignored (a matrix-only program has nothing to wait for).

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

/// The matrix queue of a program, checked to be in the subset the core runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreProgram {
    /// The element type of every matrix operand.
    pub ty: PeType,
    /// The encoded instructions, in order.
    pub words: Vec<u128>,
}

fn unsupported(site: Site, mnemonic: &str, why: String) -> RtlError {
    RtlError::Unsupported(format!("{site} {mnemonic}: {why}"))
}

fn pe_type(t: tessera_isa::DType) -> Option<PeType> {
    PeType::ALL.into_iter().find(|p| p.dtype() == t)
}

/// Checks that `p` runs on the generated core of its hardware description
/// and returns its matrix queue. The walk executes the queue's front end
/// (at most [`WALK_LIMIT`] instructions), so every address is checked.
///
/// # Errors
/// A program with instructions in other queues, an instruction outside the
/// matrix subset, operands of a type with no processing element or of two
/// types, A or B outside the scratchpad, C outside the accumulator, result
/// rows that overlap, an `addr.step` on a loop level that is open (the core
/// keeps incremental loop terms), an address the simulator would reject, or
/// a design the array generator refuses.
pub fn core_program(p: &Program) -> Result<CoreProgram, RtlError> {
    let arch = &p.arch;
    if arch.dataflow() != Dataflow::WeightStationary {
        return Err(RtlError::Unsupported(
            "array.dataflow: only weight-stationary arrays are generated".into(),
        ));
    }
    if arch.spec().array.double_buffered_weights {
        return Err(RtlError::Unsupported(
            "array.double_buffered_weights: the generated core has single-buffered weights; set it to false".into(),
        ));
    }
    for q in [Queue::Load, Queue::Vector, Queue::Store] {
        if !p.queue(q).is_empty() {
            return Err(RtlError::Unsupported(format!(
                "queue {q}: the generated core runs the matrix queue only; the {q} queue must be empty"
            )));
        }
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
            Op::AddrStep { level, .. } => {
                let open = fe.loop_indices().count();
                if (level.get() as usize) < open {
                    return Err(unsupported(
                        site,
                        mn,
                        format!("level {} is an open loop; the core keeps incremental loop terms, so set a level's strides before its loop starts", level.get()),
                    ));
                }
            }
            Op::MmPreload { b, .. } => {
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
        if let Op::MmPreload { k, n, .. } = inst.op {
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
    let ty = ty.ok_or_else(|| {
        RtlError::Unsupported("queue matrix: no mm.preload; nothing for the core to run".into())
    })?;
    Ok(CoreProgram {
        ty,
        words: code.iter().map(|i| i.encode()).collect(),
    })
}

/// `(lsb, bits)` of `field` of `mnemonic` in the ISA table.
fn field(mnemonic: &str, name: &str) -> (u32, u32) {
    desc_of(mnemonic)
        .and_then(|d| d.fields.iter().find(|f| f.name == name))
        .map_or((0, 0), |f| (f.lsb, f.bits))
}

fn opcode(mnemonic: &str) -> u8 {
    desc_of(mnemonic).map_or(0xff, |d| d.opcode)
}

/// `(lsb, bits)` of the set bits of a probe encoding.
fn span(bits: u128) -> (u32, u32) {
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

/// `ins[lsb +: bits]` zero-extended to `width` bits.
fn zext((lsb, bits): (u32, u32), width: u32) -> String {
    let b = bits.min(width);
    if b == width {
        format!("ins[{lsb} +: {b}]")
    } else {
        format!("{{{}'d0, ins[{lsb} +: {b}]}}", width - b)
    }
}

/// `ins[lsb +: bits]` sign-extended to 48 bits.
fn sext48((lsb, bits): (u32, u32)) -> String {
    format!(
        "{{{{{}{{ins[{}]}}}}, ins[{lsb} +: {bits}]}}",
        48 - bits,
        lsb + bits - 1
    )
}

/// The effective-address expression of tile operand `name` of `mnemonic`:
/// the register's base plus its loop terms plus the offset. (A continuous
/// assignment, not a function: a function call is re-evaluated only when its
/// arguments change, not when the registers it reads do.)
fn tile_ea(mnemonic: &str, name: &str) -> String {
    let (lsb, _) = field(mnemonic, name);
    let ((rl, rb), (ol, ob)) = tile_parts();
    let reg = format!("ins[{} +: {rb}]", lsb + rl);
    let lv = clog2(MAX_LOOP_DEPTH as u64);
    let mut terms = vec![format!("base[{reg}]")];
    terms.extend((0..MAX_LOOP_DEPTH).map(|l| format!("lacc[{{{reg}, {lv}'d{l}}}]")));
    terms.push(sext48((lsb + ol, ob)));
    terms.join(" + ")
}

/// The core's module name for `ty`.
pub fn core_module_name(ty: PeType) -> String {
    format!("tessera_core_{}", ty.name())
}

fn clog2(x: u64) -> u32 {
    64 - x.saturating_sub(1).leading_zeros()
}

/// Instruction-memory depth for a program of `len` words: a power of two, at least 2.
pub fn imem_depth(len: usize) -> usize {
    len.max(2).next_power_of_two()
}

/// The Verilog of the core of `ty` for `arch` with an instruction memory of
/// `imem_depth` words (a power of two, at least 2). The memories load
/// `$readmemh` images named by the parameters `IMEM_INIT`, `SPAD_INIT` and
/// `ACC_INIT`.
///
/// Ports: `clk`, `rst` (synchronous), `done` (the queue halted and every
/// result is written), `error` (an opcode outside the matrix subset),
/// `lead_cycles` (cycles after reset before the first engine instruction
/// starts), `run_cycles` (cycles from then until `done`), and a debug read
/// port of the accumulator, `dbg_addr` (word index) to `dbg_data`, and a
/// scratchpad write port (`spad_we`, `spad_waddr`, `spad_wdata`) for a loader.
pub fn core_module(arch: &Arch, ty: PeType, imem_depth: usize) -> String {
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
    let rd = if es == 1 {
        "        rd = spad[a];".to_string()
    } else {
        "        rd = {spad[a + SA_ONE], spad[a]};".to_string()
    };
    let subs: Vec<(&str, String)> = vec![
        ("@TY@", ty.name().into()),
        ("@MODULE@", core_module_name(ty)),
        ("@ARRAY@", ty.array_module()),
        ("@R@", r.to_string()),
        ("@C@", c.to_string()),
        ("@P@", p.to_string()),
        ("@W@", w.to_string()),
        ("@ES@", es.to_string()),
        ("@PAD@", format!("{w}'h{:x}", ty.identity_weight())),
        ("@IMEM_DEPTH@", imem_depth.to_string()),
        ("@IMEM_AW@", imem_aw.to_string()),
        ("@SPAD_BYTES@", arch.scratchpad_bytes().get().to_string()),
        ("@ACC_WORDS@", acc_words.to_string()),
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
        ("@PRE_B@", tile_ea("mm.preload", "b")),
        ("@PRE_K@", zext(field("mm.preload", "k"), 16)),
        ("@PRE_N@", zext(field("mm.preload", "n"), 16)),
        ("@PRE_TR@", zext(field("mm.preload", "transpose"), 1)),
        ("@CMP_A@", tile_ea("mm.compute", "a")),
        ("@CMP_C@", tile_ea("mm.compute", "c")),
        ("@CMP_M@", zext(field("mm.compute", "m"), 16)),
        ("@CMP_TR@", zext(field("mm.compute", "transpose"), 1)),
        ("@CMP_MODE@", zext(field("mm.compute", "mode"), 1)),
        (
            "@ACCUMULATE@",
            format!("1'b{}", WriteMode::Accumulate.to_bits()),
        ),
        ("@ADDER@", adder),
        ("@TAG_LINE@", tag_line),
        ("@TAG_COLS@", tag_cols),
        ("@RD@", rd),
        (
            "@SA_ONE@",
            if es == 1 {
                String::new()
            } else {
                "    localparam [SA-1:0] SA_ONE = 1;\n".into()
            },
        ),
    ];
    let mut v = CORE_TEMPLATE.to_string();
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
    imem_depth: usize,
) -> Result<Vec<(String, String)>, RtlError> {
    let header = format!(
        "// Generated by tessera-rtl for hardware `{}` (fingerprint {:016x}). Do not edit.\n",
        arch.name(),
        arch.fingerprint()
    );
    let mut files = vec![
        (
            format!("{}.v", ty.pe_module()),
            format!(
                "{header}{}",
                pe(ty, arch.pe_stages(), Buffering::Single)?.to_verilog()
            ),
        ),
        (
            format!("{}.v", ty.array_module()),
            format!(
                "{header}{}",
                array(ty, arch.rows(), arch.cols(), Buffering::Single).to_verilog()
            ),
        ),
    ];
    if ty == PeType::Bf16 {
        files.push((format!("{FP32_ADD}.v"), format!("{header}{}", fp32_add())));
    }
    files.push((
        format!("{}.v", core_module_name(ty)),
        format!("{header}{}", core_module(arch, ty, imem_depth)),
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

const CORE_TEMPLATE: &str = r#"// Matrix core (@TY@): instruction memory, matrix-queue front end, scratchpad
// model, @R@ x @C@ weight-stationary array (@P@ stage(s) per PE), accumulator memory.
module @MODULE@ #(
    parameter IMEM_DEPTH = @IMEM_DEPTH@,
    parameter SPAD_BYTES = @SPAD_BYTES@,
    parameter ACC_WORDS = @ACC_WORDS@,
    parameter IMEM_INIT = "tessera_imem.hex",
    parameter SPAD_INIT = "tessera_spad.hex",
    parameter ACC_INIT = "tessera_acc.hex"
) (
    input wire clk,
    input wire rst,
    output wire done,
    output reg error,
    output reg [31:0] lead_cycles,
    output reg [31:0] run_cycles,
    input wire [@ACC_AW@-1:0] dbg_addr,
    output wire [31:0] dbg_data,
    // Scratchpad write port (for a loader; DMA comes later).
    input wire spad_we,
    input wire [$clog2(SPAD_BYTES)-1:0] spad_waddr,
    input wire [7:0] spad_wdata
);
    localparam R = @R@, C = @C@, P = @P@, W = @W@, ES = @ES@;
    localparam SA = $clog2(SPAD_BYTES), AA = @ACC_AW@, IA = @IMEM_AW@;
@SA_ONE@    localparam [W-1:0] PAD = @PAD@;
    localparam FD = 4;
    // Tag of one streamed row: valid, accumulate, n, word address of its C row.
    localparam TW = 1 + 1 + 16 + AA;

    // ---------------------------------------------------------------- memories
    reg [127:0] imem [0:IMEM_DEPTH-1];
    reg [7:0] spad [0:SPAD_BYTES-1];
    reg [31:0] acc [0:ACC_WORDS-1];
    // Synthesis keeps the program and leaves the data memories uninitialised.
    initial begin
        $readmemh(IMEM_INIT, imem);
`ifndef SYNTHESIS
        $readmemh(SPAD_INIT, spad);
        $readmemh(ACC_INIT, acc);
`endif
    end
    always @(posedge clk) if (spad_we) spad[spad_waddr] <= spad_wdata;
    assign dbg_data = acc[dbg_addr];
    function [W-1:0] rd(input [SA-1:0] a);
    begin
@RD@
    end
    endfunction

    // --------------------------------------------------------------- front end
    reg [15:0] pc;
    reg halted;
    reg [47:0] base [0:@NREGS@-1];
    reg [47:0] stride [0:@NL@-1];
    // lacc[{r, l}] = stride(r)[l] * index[l], kept incrementally.
    reg [47:0] lacc [0:@NL@-1];
    reg [2:0] depth;
    reg [15:0] lstart [0:@LD@-1];
    reg [15:0] lend [0:@LD@-1];
    reg [31:0] lcnt [0:@LD@-1];
    reg [31:0] lidx [0:@LD@-1];
    reg [47:0] sa, sb, sc;
    reg [15:0] bk, bn;

    wire [127:0] ins = imem[pc[IA-1:0]];
    wire [7:0] opc = @OPC@;
    wire is_nop = opc == @OP_NOP@;
    wire is_halt = opc == @OP_HALT@;
    wire is_loop = opc == @OP_LOOP@;
    wire is_aset = opc == @OP_ASET@;
    wire is_astep = opc == @OP_ASTEP@;
    wire is_prof = opc == @OP_PBEG@ || opc == @OP_PEND@;
    wire is_mstr = opc == @OP_MSTR@;
    wire is_pre = opc == @OP_PRE@;
    wire is_cmp = opc == @OP_CMP@;
    wire known = is_nop | is_halt | is_loop | is_aset | is_astep | is_prof | is_mstr | is_pre | is_cmp;

    wire [31:0] f_count = @LOOP_COUNT@;
    wire [15:0] f_body = @LOOP_END@;
    wire [@RB@-1:0] f_sreg = @ASET_REG@;
    wire [47:0] f_base = @ASET_BASE@;
    wire [@RB@-1:0] f_treg = @ASTEP_REG@;
    wire [@LV@-1:0] f_lvl = @ASTEP_LVL@;
    wire [47:0] f_stride = @ASTEP_STRIDE@;

    // mm.preload: the first B row to enter (row k-1), the steps between rows and columns.
    wire [47:0] p_k = {32'd0, @PRE_K@};
    wire [47:0] p_n = {32'd0, @PRE_N@};
    wire p_tr = @PRE_TR@;
    wire [47:0] p_ea = @PRE_B@;
    wire [47:0] p_str = (sb != 48'd0) ? sb : (p_tr ? p_k : p_n) * ES;
    wire [47:0] p_rstep = p_tr ? ES : p_str;
    wire [47:0] p_cstep = p_tr ? p_str : ES;
    wire [47:0] p_first = p_ea + (p_k - 48'd1) * p_rstep;
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

    // Loop back-edges and exits after the current instruction.
    reg [15:0] nx_pc;
    reg [2:0] nx_depth;
    reg back, go_on;
    reg [@LV@-1:0] back_lvl;
    integer l;
    always @* begin
        nx_pc = pc + 16'd1;
        nx_depth = depth;
        back = 1'b0;
        back_lvl = 0;
        go_on = 1'b1;
        for (l = @LD@ - 1; l >= 0; l = l - 1)
            if (go_on && l[2:0] < depth) begin
                if (nx_pc == lend[l]) begin
                    if (lidx[l] + 32'd1 < lcnt[l]) begin
                        nx_pc = lstart[l];
                        back = 1'b1;
                        back_lvl = l[@LV@-1:0];
                        go_on = 1'b0;
                    end else begin
                        nx_depth = l[2:0];
                    end
                end else begin
                    go_on = 1'b0;
                end
            end
    end

    // Engine-operation queue.
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
    wire eng = is_pre | is_cmp;
    wire adv = !rst && !halted && !error && !(eng && q_count == FD);
    wire push = adv && eng;
    wire go;

    integer i, j;
    always @(posedge clk) begin
        if (rst) begin
            pc <= 16'd0;
            halted <= 1'b0;
            error <= 1'b0;
            depth <= 3'd0;
            sa <= 48'd0;
            sb <= 48'd0;
            sc <= 48'd0;
            bk <= 16'd0;
            bn <= 16'd0;
            for (i = 0; i < @NREGS@; i = i + 1) base[i] <= 48'd0;
            for (i = 0; i < @NL@; i = i + 1) begin
                stride[i] <= 48'd0;
                lacc[i] <= 48'd0;
            end
        end else if (adv) begin
            if (!known) begin
                error <= 1'b1;
            end else if (is_halt) begin
                halted <= 1'b1;
            end else if (is_loop) begin
                lstart[depth[@LV@-1:0]] <= pc + 16'd1;
                lend[depth[@LV@-1:0]] <= pc + 16'd1 + f_body;
                lcnt[depth[@LV@-1:0]] <= f_count;
                lidx[depth[@LV@-1:0]] <= 32'd0;
                for (i = 0; i < @NREGS@; i = i + 1) lacc[{i[@RB@-1:0], depth[@LV@-1:0]}] <= 48'd0;
                depth <= depth + 3'd1;
                pc <= pc + 16'd1;
            end else begin
                pc <= nx_pc;
                depth <= nx_depth;
                if (back) begin
                    lidx[back_lvl] <= lidx[back_lvl] + 32'd1;
                    for (i = 0; i < @NREGS@; i = i + 1)
                        lacc[{i[@RB@-1:0], back_lvl}] <= lacc[{i[@RB@-1:0], back_lvl}] + stride[{i[@RB@-1:0], back_lvl}];
                end
                for (j = 0; j < @LD@; j = j + 1)
                    if (j[2:0] >= nx_depth && j[2:0] < depth)
                        for (i = 0; i < @NREGS@; i = i + 1) lacc[{i[@RB@-1:0], j[@LV@-1:0]}] <= 48'd0;
                if (is_aset) begin
                    base[f_sreg] <= f_base;
                    for (j = 0; j < @LD@; j = j + 1) begin
                        stride[{f_sreg, j[@LV@-1:0]}] <= 48'd0;
                        lacc[{f_sreg, j[@LV@-1:0]}] <= 48'd0;
                    end
                end
                if (is_astep) stride[{f_treg, f_lvl}] <= f_stride;
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
    end

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
                q_tail <= q_tail + 2'd1;
            end
            if (go) q_head <= q_head + 2'd1;
            q_count <= q_count + {2'd0, push} - {2'd0, go};
        end
    end
    // Address bits above the memories' sizes are zero in checked programs.
    wire unused_bits = ^{p_first[47:SA], c_aea[47:SA], p_rstep[47:SA], p_cstep[47:SA],
        c_rstep[47:SA], c_cstep[47:SA], c_cea[47:AA+2], c_cea[1:0], c_cstr[47:AA+2], c_cstr[1:0],
        c_m[47:16], p_k[47:16], p_n[47:16], ins[127:8]};

    // ------------------------------------------------------------------ engine
    reg [15:0] pre_left, str_left;
    reg [31:0] drain_left;
    reg [15:0] b_row, b_k, b_n, a_k, a_n;
    reg [SA-1:0] b_ptr, b_rstep, b_cstep, a_ptr, a_rstep, a_cstep;
    reg [AA-1:0] c_ptr, c_step;
    reg a_acc;
    reg started;
    wire h_valid = q_count != 3'd0;
    wire go_pre = h_valid && q_pre[q_head] && pre_left <= 16'd1 && str_left <= 16'd1 && drain_left <= 32'd1;
    wire go_cmp = h_valid && !q_pre[q_head] && pre_left <= 16'd1 && str_left <= 16'd1;
    assign go = go_pre | go_cmp;
    always @(posedge clk) begin
        if (rst) begin
            pre_left <= 16'd0;
            str_left <= 16'd0;
            drain_left <= 32'd0;
            started <= 1'b0;
        end else begin
            if (go) started <= 1'b1;
            if (go_pre) begin
                pre_left <= R;
                b_row <= R - 1;
                b_ptr <= q_addr[q_head];
                b_rstep <= q_rstep[q_head];
                b_cstep <= q_cstep[q_head];
                b_k <= q_k[q_head];
                b_n <= q_n[q_head];
            end else if (pre_left != 16'd0) begin
                pre_left <= pre_left - 16'd1;
                b_row <= b_row - 16'd1;
                if (b_row < b_k) b_ptr <= b_ptr - b_rstep;
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

    // Weights: rows >= k and columns >= n get the identity weight.
    wire w_shift = pre_left != 16'd0;
    wire [C*W-1:0] w_top;
    wire [R*W-1:0] a_left;
    wire [C*32-1:0] p_bottom;
    wire [C*W-1:0] unused_w_bottom;
    wire [R*W-1:0] unused_a_right;
    genvar g;
    generate
        for (g = 0; g < C; g = g + 1) begin : g_wcol
            localparam [SA-1:0] CI = g;
            assign w_top[g*W +: W] = (b_row < b_k && g < b_n) ? rd(b_ptr + CI * b_cstep) : PAD;
        end
        // A: row r of the array reads A[i][r] (0 for r >= k), delayed by P*r cycles.
        for (g = 0; g < R; g = g + 1) begin : g_arow
            localparam [SA-1:0] RI = g;
            wire [W-1:0] din = (str_left != 16'd0 && g < a_k) ? rd(a_ptr + RI * a_cstep) : {W{1'b0}};
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
        .w_shift(w_shift),
        .w_top(w_top),
        .w_bottom(unused_w_bottom),
        .a_left(a_left),
        .a_right(unused_a_right),
        .p_bottom(p_bottom)
    );

    // Row tags follow the partial sums: P*R cycles down to column 0, one column per cycle.
    wire [TW-1:0] tag_in = {str_left != 16'd0, a_acc, a_n, c_ptr};
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
            assign wen[g] = t[TW-1] && g < t[AA +: 16];
            assign widx[g*AA +: AA] = idx;
            assign wdata[g*32 +: 32] = t[TW-2] ? sum_c : p_c;
        end
    endgenerate
    integer wc;
    always @(posedge clk)
        for (wc = 0; wc < C; wc = wc + 1)
            if (wen[wc]) acc[widx[wc*AA +: AA]] <= wdata[wc*32 +: 32];

    assign done = halted && q_count == 3'd0 && pre_left == 16'd0 && str_left == 16'd0
        && drain_left == 32'd0 && !tag_dl_busy && !tag_cols_busy && !tag_col_flat[TW-1];
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
}
