//! The core's vector queue: a front end ([`crate::frontend`]) plus the
//! vector engine that walks `v.bin`, `v.un`, `v.axpby`, `v.sel`,
//! `v.causal`, `v.gather`, `v.scatter_add`, `v.reduce` and `v.fload` over a
//! rows x cols tile (rows x 1 for `elems`-mode gathers and scatter-adds)
//! of the scratchpad or the accumulator with the unit of
//! [`crate::vec_unit`] (`vector.lanes` lanes, `vector.special_lanes`
//! special-function lanes), emitted as a block of the core module by
//! [`vec_block`]; [`walk_vector`] checks a program's vector queue against
//! that subset.
//!
//! Timing, as `sim/src/timing.rs` states it: an engine instruction starts
//! when its waited tokens are in and the previous one has ended, and takes
//! `latency + ceil(elements / lanes)` cycles (`special_lanes` for division
//! and roots, one element for `v.fload`). Elementwise instructions take
//! exactly that: element groups enter the lanes one per cycle from the
//! cycle after the start, and each group is written `latency` cycles
//! later (`v.causal` and `v.gather` pass the fill, the table element or +0
//! through the lanes' copy). A `v.scatter_add` group reads the table,
//! adds in fp32 (`tessera_fp32_add`), rounds to the table's type and
//! writes in the cycle it enters, so the next group reads the new values;
//! lanes of one group that add to one element chain their adders in the
//! simulator's order; its last `latency` cycles write nothing. A
//! reduction runs `ceil(outer / lanes)` rounds of `inner` steps
//! (plus a combine step with `mode=accumulate`) and writes each round the
//! cycle after it; it takes the larger of that + 1 and the model's count
//! ([`reduce_cycles`]). The engine signals its tokens the cycle before it
//! ends, so a waiter starts the cycle the model ends the instruction.
//!
//! Invariants: a destination that overlaps a source is the same tile layout
//! (the lanes read ahead of the writes; [`walk_vector`] checks; a
//! scatter-add's table is read and written as one layout, its source and
//! index vector must not meet it), an index is read from memory in the
//! cycle its element enters the lanes, and `v.shape`, `v.stride` and
//! scalars are latched when an instruction starts.

use tessera_isa::exec::{AccessKind, Frontend};
use tessera_isa::field::{Axis, Field, IndexMode, Reg, Space, VecUnOp, WriteMode};
use tessera_isa::{Arch, DType, Op, Program, Queue, Site};

use crate::core::{clog2, field, opcode, sext48_of, zext_of};
use crate::frontend::FRONTEND;
use crate::vec_op::{VecOp, OP_BITS};
use crate::RtlError;

/// A checked vector queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VectorQueue {
    /// The encoded instructions (a lone `halt` for an empty queue).
    pub words: Vec<u128>,
    /// Cycles the engine's reductions take beyond the timing model's count,
    /// summed over the executed instructions (0: every instruction is exact).
    pub extra_cycles: u64,
}

/// Cycles the core's reduction of a `rows` x `cols` tile along `axis` takes
/// on `lanes` reduction lanes: `ceil(outer / lanes)` rounds of `inner`
/// steps (one more with `accumulate`), plus the last round's write.
pub fn reduce_cycles(rows: u64, cols: u64, axis: Axis, mode: WriteMode, lanes: u64) -> u64 {
    let (outer, inner) = match axis {
        Axis::Rows => (rows, cols),
        Axis::Cols => (cols, rows),
    };
    outer.div_ceil(lanes.max(1)) * (inner + u64::from(mode == WriteMode::Accumulate)) + 1
}

/// The condition "the current instruction goes through the special-function
/// lanes": every operation [`VecOp::is_special`] names, by opcode and `op` code.
fn special_condition(opf: &str) -> String {
    let terms: Vec<String> = VecOp::all()
        .into_iter()
        .filter(|o| o.is_special())
        .map(|o| {
            format!(
                "(v_opc == 8'h{:02x} && {opf} == {OP_BITS}'d{})",
                o.opcode(),
                o.code()
            )
        })
        .collect();
    terms.join("\n        || ")
}

fn unsupported(site: Site, mnemonic: &str, why: String) -> RtlError {
    RtlError::Unsupported(format!("{site} {mnemonic}: {why}"))
}

/// Walks the vector queue of `p` (at most [`crate::core::WALK_LIMIT`]
/// instructions) and checks it is in the subset the engine runs.
///
/// # Errors
/// The `libm` operations ([`VecOp::lane_support`]), refused by name; a
/// destination that overlaps a source with another layout; an `addr.step`
/// on an open loop level; an address the simulator rejects.
pub fn walk_vector(p: &Program) -> Result<VectorQueue, RtlError> {
    let code = p.queue(Queue::Vector);
    if code.len() > usize::from(u16::MAX) {
        return Err(RtlError::Unsupported(format!(
            "queue vector: {} instructions; the core's program counter has 16 bits",
            code.len()
        )));
    }
    let v = &p.arch.spec().vector;
    let mut fe = Frontend::new(code);
    let mut steps = 0u64;
    let mut extra = 0u64;
    while let Some((index, inst)) = fe.peek() {
        let site = Site {
            queue: Queue::Vector,
            index,
        };
        let mn = inst.op.mnemonic();
        let op = match inst.op {
            Op::VBin { op, .. } => Some(VecOp::Bin(op)),
            Op::VUn { op, .. } => Some(VecOp::Un(op)),
            _ => None,
        };
        if let Some(op) = op {
            op.lane_support()
                .map_err(|e| RtlError::Unsupported(format!("{site} {e}")))?;
        }
        match inst.op {
            Op::Nop {}
            | Op::Halt {}
            | Op::Loop { .. }
            | Op::AddrSet { .. }
            | Op::ProfBegin { .. }
            | Op::ProfEnd { .. }
            | Op::VShape { .. }
            | Op::VStride { .. }
            | Op::VFset { .. }
            | Op::VFload { .. }
            | Op::VBin { .. }
            | Op::VUn { .. }
            | Op::VAxpby { .. }
            | Op::VSel { .. }
            | Op::VCausal { .. }
            | Op::VGather { .. }
            | Op::VScatterAdd { .. } => {}
            Op::VReduce { axis, mode, .. } => {
                let (rows, cols) = (fe.vector.rows, fe.vector.cols);
                let model = u64::from(v.latency_cycles) + (rows * cols).div_ceil(u64::from(v.lanes));
                let core = reduce_cycles(rows, cols, axis, mode, u64::from(v.lanes));
                extra += core.saturating_sub(model);
            }
            Op::AddrStep { level, .. } => {
                if (level.get() as usize) < fe.loop_indices().count() {
                    return Err(unsupported(
                        site,
                        mn,
                        format!("level {} is an open loop; the core keeps incremental loop terms, so set a level's strides before its loop starts", level.get()),
                    ));
                }
            }
            _ => {
                return Err(unsupported(
                    site,
                    mn,
                    "not in the vector subset the core runs (built: v.shape v.stride v.bin v.un v.axpby v.sel v.reduce v.causal v.gather v.scatter_add v.fset v.fload)".into(),
                ))
            }
        }
        let accesses = fe
            .checked_accesses(inst, &p.symbols, |s| p.arch.capacity(s).get())
            .map_err(|e| unsupported(site, mn, e.to_string()))?;
        for w in accesses.iter().filter(|a| a.kind == AccessKind::Write) {
            for r in accesses.iter().filter(|a| a.kind == AccessKind::Read) {
                let (wr, rr) = (w.region, r.region);
                let meet = wr.space == rr.space
                    && wr
                        .intervals()
                        .iter()
                        .any(|&(s, e)| rr.intervals().iter().any(|&(s2, e2)| s < e2 && s2 < e));
                if meet && wr != rr {
                    return Err(unsupported(
                        site,
                        mn,
                        format!("destination {wr} overlaps source {rr} with another layout; the engine reads ahead of its writes, so in place needs the same tile"),
                    ));
                }
            }
        }
        fe.advance()
            .map_err(|e| unsupported(site, mn, e.to_string()))?;
        steps += 1;
        if steps > crate::core::WALK_LIMIT {
            return Err(RtlError::Unsupported(format!(
                "queue vector: runs more than {} instructions; the generator checks every address by walking it",
                crate::core::WALK_LIMIT
            )));
        }
    }
    let words = if code.is_empty() {
        vec![tessera_isa::Instruction::new(Op::Halt {}).encode()]
    } else {
        code.iter().map(|i| i.encode()).collect()
    };
    Ok(VectorQueue {
        words,
        extra_cycles: extra,
    })
}

/// An instruction field that fills an operand role: `(mnemonic, field, bit
/// offset of the tile inside it)`.
type RoleField = (&'static str, &'static str, u32);

/// The operand roles of the engine and, per role, the instruction fields
/// that fill it. `v.scatter_add`'s table is the `d` role (read and written, row stride
/// `d`), its source the `a` role; a gather's table is `a` (row stride
/// `a`); the index vectors of both are `m` (row stride `m`).
const ROLES: [(&str, &[RoleField]); 4] = [
    (
        "d",
        &[
            ("v.bin", "dst", 0),
            ("v.un", "dst", 0),
            ("v.axpby", "dst", 0),
            ("v.sel", "dst", 0),
            ("v.reduce", "dst", 0),
            ("v.causal", "dst", 0),
            ("v.gather", "dst", 0),
            ("v.scatter_add", "table", 0),
        ],
    ),
    (
        "a",
        &[
            ("v.bin", "a", 0),
            ("v.un", "a", 0),
            ("v.axpby", "a", 0),
            ("v.sel", "a", 0),
            ("v.reduce", "a", 0),
            ("v.fload", "src", 0),
            ("v.causal", "a", 0),
            ("v.gather", "table", 0),
            ("v.scatter_add", "src", 0),
        ],
    ),
    (
        "b",
        &[("v.bin", "b", 2), ("v.axpby", "b", 2), ("v.sel", "b", 2)],
    ),
    (
        "m",
        &[
            ("v.sel", "mask", 0),
            ("v.gather", "idx", 0),
            ("v.scatter_add", "idx", 0),
        ],
    ),
];

/// The element type of an operand that is an address, not a tile: the
/// fp32 scalar of `v.fload`, the int32 index vectors of `v.gather` and
/// `v.scatter_add`.
fn fixed_type(mnemonic: &str, name: &str) -> Option<DType> {
    match (mnemonic, name) {
        ("v.fload", "src") => Some(DType::Fp32),
        ("v.gather" | "v.scatter_add", "idx") => Some(DType::Int32),
        _ => None,
    }
}

/// Sub-fields of a tile: (space, reg, offset, dtype) as `(lsb, bits)`.
fn tile_sub() -> [(u32, u32); 4] {
    let sp = 1;
    let rb = Reg::BITS;
    [
        (0, sp),
        (sp, rb),
        (sp + rb, 12),
        (tessera_isa::field::LocalAddr::BITS, DType::BITS),
    ]
}

/// A mux over the instruction's opcode: `(opcode, expression)` pairs, else `dflt`.
fn mux(arms: &[(u8, String)], dflt: &str) -> String {
    let mut s = String::from("(");
    for (o, e) in arms {
        s.push_str(&format!("(v_opc == 8'h{o:02x}) ? {e} : "));
    }
    s.push_str(dflt);
    s.push(')');
    s
}

/// Declarations of one role's operand fields: `v_<r>_reg`, `_off`, `_sp`, `_ty`.
fn role_wires(role: &str, fields: &[RoleField]) -> String {
    let [sp, reg, off, ty] = tile_sub();
    let at = |(m, f, o): (&str, &str, u32), (l, b): (u32, u32)| (field(m, f).0 + o + l, b);
    let arms = |sub: (u32, u32), ext: &dyn Fn((u32, u32)) -> String| -> Vec<(u8, String)> {
        fields
            .iter()
            .map(|&f| (opcode(f.0), ext(at(f, sub))))
            .collect()
    };
    let ty_arms: Vec<(u8, String)> = fields
        .iter()
        .map(|&f| match fixed_type(f.0, f.1) {
            Some(t) => (opcode(f.0), format!("3'd{}", t.to_bits())),
            None => (opcode(f.0), zext_of("v_ins", at(f, ty), 3)),
        })
        .collect();
    format!(
        "    wire [RB-1:0] v_{role}_reg = {};\n    wire [47:0] v_{role}_off = {};\n    wire v_{role}_sp = {};\n    wire [2:0] v_{role}_ty = {};\n",
        mux(&arms(reg, &|s| zext_of("v_ins", s, Reg::BITS)), "{RB{1'b0}}"),
        mux(&arms(off, &|s| sext48_of("v_ins", s)), "48'd0"),
        mux(&arms(sp, &|s| zext_of("v_ins", s, 1)), "1'b0"),
        mux(&ty_arms, "3'd0"),
    )
}

/// The Verilog block of the vector queue and engine for a core whose vector
/// instruction memory has `depth` words. It reads the core's `now`-free
/// token state (`tok_pos`, `tok_full`), `error`, the memories `spad` and
/// `acc` and their widths `SA` and `AA`, and drives `v_take`, `v_give`,
/// `v_cgive`, `v_err`, `v_go`, `v_idle` and the write buses `v_we`, `v_wacc`,
/// `v_wsa`, `v_wca`, `v_wd` that the core's memory blocks apply.
pub fn vec_block(arch: &Arch, depth: usize) -> String {
    let v = &arch.spec().vector;
    let es_fn: String = DType::ALL
        .iter()
        .map(|t| {
            format!(
                "            3'd{}: v_es = 48'd{};\n",
                t.to_bits(),
                t.size_bytes()
            )
        })
        .collect();
    let roles: String = ROLES.iter().map(|(r, f)| role_wires(r, f)).collect();
    let op_arms: Vec<(u8, String)> = ["v.bin", "v.un"]
        .iter()
        .map(|m| (opcode(m), zext_of("v_ins", field(m, "op"), OP_BITS)))
        .collect();
    let (bl, _) = field("v.bin", "b");
    let (xl, _) = field("v.axpby", "b");
    let (sl, _) = field("v.sel", "b");
    let kind_arms: Vec<(u8, String)> = [("v.bin", bl), ("v.axpby", xl), ("v.sel", sl)]
        .iter()
        .map(|&(m, l)| (opcode(m), format!("v_ins[{l} +: 2]")))
        .collect();
    let freg_arms: Vec<(u8, String)> = [("v.bin", bl), ("v.axpby", xl), ("v.sel", sl)]
        .iter()
        .map(|&(m, l)| (opcode(m), format!("v_ins[{} +: 3]", l + 2)))
        .collect();
    let red = "v.reduce";
    let mode_arms: Vec<(u8, String)> = ["v.gather", "v.scatter_add"]
        .iter()
        .map(|m| (opcode(m), zext_of("v_ins", field(m, "mode"), 1)))
        .collect();
    let subs: Vec<(&str, String)> = vec![
        ("@FRONTEND@", FRONTEND.into()),
        ("@DEPTH@", depth.to_string()),
        ("@IA@", clog2(depth as u64).max(1).to_string()),
        ("@VL@", v.lanes.to_string()),
        ("@VS@", v.special_lanes.to_string()),
        ("@VLAT@", v.latency_cycles.max(1).to_string()),
        ("@ES_CASES@", es_fn),
        ("@ROLES@", roles),
        ("@OPF@", mux(&op_arms, &format!("{OP_BITS}'d0"))),
        ("@OP_BITS@", OP_BITS.to_string()),
        ("@BKIND@", mux(&kind_arms, "2'd0")),
        ("@BFREG@", mux(&freg_arms, "3'd0")),
        ("@ACC_BIT@", format!("1'b{}", Space::Acc.to_bits())),
        ("@OP_SHAPE@", format!("8'h{:02x}", opcode("v.shape"))),
        ("@OP_STRIDE@", format!("8'h{:02x}", opcode("v.stride"))),
        ("@OP_BIN@", format!("8'h{:02x}", opcode("v.bin"))),
        ("@OP_UN@", format!("8'h{:02x}", opcode("v.un"))),
        ("@OP_AXPBY@", format!("8'h{:02x}", opcode("v.axpby"))),
        ("@OP_SEL@", format!("8'h{:02x}", opcode("v.sel"))),
        ("@OP_RED@", format!("8'h{:02x}", opcode(red))),
        ("@OP_FSET@", format!("8'h{:02x}", opcode("v.fset"))),
        ("@OP_FLOAD@", format!("8'h{:02x}", opcode("v.fload"))),
        ("@ROWS@", zext_of("v_ins", field("v.shape", "rows"), 48)),
        ("@COLS@", zext_of("v_ins", field("v.shape", "cols"), 48)),
        ("@SD@", zext_of("v_ins", field("v.stride", "d"), 48)),
        ("@SAS@", zext_of("v_ins", field("v.stride", "a"), 48)),
        ("@SB@", zext_of("v_ins", field("v.stride", "b"), 48)),
        ("@SM@", zext_of("v_ins", field("v.stride", "m"), 48)),
        ("@FSET_REG@", zext_of("v_ins", field("v.fset", "reg"), 3)),
        ("@FSET_VAL@", zext_of("v_ins", field("v.fset", "value"), 32)),
        ("@FLOAD_REG@", zext_of("v_ins", field("v.fload", "reg"), 3)),
        ("@ALPHA@", zext_of("v_ins", field("v.axpby", "alpha"), 3)),
        ("@BETA@", zext_of("v_ins", field("v.axpby", "beta"), 3)),
        ("@RED_OP@", zext_of("v_ins", field(red, "op"), 2)),
        ("@RED_AXIS@", zext_of("v_ins", field(red, "axis"), 1)),
        ("@RED_MODE@", zext_of("v_ins", field(red, "mode"), 1)),
        ("@AXIS_COLS@", format!("1'b{}", Axis::Cols.to_bits())),
        (
            "@ACCUMULATE@",
            format!("1'b{}", WriteMode::Accumulate.to_bits()),
        ),
        ("@WAIT@", zext_of("v_ins", crate::core::wait_span(), 16)),
        ("@SIGNAL@", zext_of("v_ins", crate::core::signal_span(), 16)),
        ("@SCALAR@", "2'd3".into()),
        ("@RB_BITS@", Reg::BITS.to_string()),
        (
            "@SPECIAL@",
            special_condition(&mux(&op_arms, &format!("{OP_BITS}'d0"))),
        ),
        ("@FETCH_M@", fetch("m")),
        (
            "@FETCH@",
            ["a", "b", "d"].iter().map(|x| fetch(x)).collect(),
        ),
        ("@ROWSRC@", "2'd1".into()),
        ("@OP_CAUSAL@", format!("8'h{:02x}", opcode("v.causal"))),
        ("@OP_GATHER@", format!("8'h{:02x}", opcode("v.gather"))),
        (
            "@OP_SCATTER@",
            format!("8'h{:02x}", opcode("v.scatter_add")),
        ),
        ("@IDX_MODE@", mux(&mode_arms, "1'b0")),
        ("@ELEMS@", format!("1'b{}", IndexMode::Elems.to_bits())),
        ("@COPY@", format!("{OP_BITS}'d{}", VecUnOp::Copy.to_bits())),
        (
            "@CAUSAL_FILL@",
            zext_of("v_ins", field("v.causal", "fill"), 3),
        ),
        ("@CAUSAL_ROW@", sext48_of("v_ins", field("v.causal", "row"))),
        ("@CAUSAL_COL@", sext48_of("v_ins", field("v.causal", "col"))),
        ("@SCATTER_CHAIN@", scatter_chain(v.lanes)),
        ("@COLSRC@", "2'd2".into()),
    ];
    let mut out = VEC_TEMPLATE.to_string();
    // The fetch text has placeholders of its own.
    for (fetch_key, fetch_val) in subs.iter().filter(|(k, _)| k.starts_with("@FETCH")) {
        out = out.replace(fetch_key, fetch_val);
    }
    for (k, val) in subs {
        out = out.replace(k, &val);
    }
    out
}

/// The read-add-write of a `v.scatter_add` group, lane by lane in the
/// simulator's order: lane g adds its source element to the table
/// element's old value (`tessera_fp32_add`, round to nearest even), rounds
/// the sum to the table's type, and writes it at the end of the cycle, so
/// the next group reads it from memory. Within a group, lane g's old value
/// is the new value of the highest earlier lane that adds to the same
/// element (read back as the table type, as the simulator's next read
/// would), else memory's; only the last lane of a group that adds to an
/// element writes it. A chain of up to `lanes` adders when every lane hits
/// one element.
fn scatter_chain(lanes: u32) -> String {
    let hit =
        |h: u32, g: u32| format!("v_sc_on[{h}] && v_sc_ad[{h}*48 +: 48] == v_sc_ad[{g}*48 +: 48]");
    let mut s = String::from("    // Scatter-add: the read-add-write chain of a group.\n");
    for g in 0..lanes {
        let mut old = format!("v_sc_old[{g}*32 +: 32]");
        for h in 0..g {
            old = format!("({}) ? v_sc_n{h} : {old}", hit(h, g));
        }
        let later: Vec<String> = (g + 1..lanes).map(|h| format!("({})", hit(h, g))).collect();
        let last = if later.is_empty() {
            String::new()
        } else {
            format!(" && !({})", later.join(" || "))
        };
        s.push_str(&format!(
            "    wire [31:0] v_sc_x{g} = {old};
    wire [31:0] v_sc_s{g}, v_sc_z{g}, v_sc_n{g};
    tessera_fp32_add u_sc_add{g} (.x(v_sc_x{g}), .y(v_sc_src[{g}*32 +: 32]), .z(v_sc_s{g}));
    tessera_vec_narrow u_sc_nr{g} (.x(v_sc_s{g}), .ty(v_dty), .z(v_sc_z{g}));
    tessera_vec_widen u_sc_wd{g} (.raw(v_sc_z{g}), .ty(v_dty), .z(v_sc_n{g}));
    assign v_sc_z[{g}*32 +: 32] = v_sc_z{g};
    assign v_sc_we[{g}] = v_sc_on[{g}]{last};
"
        ));
    }
    s.push_str(&format!(
        "    wire unused_v_sc = ^v_sc_n{};\n",
        lanes.saturating_sub(1)
    ));
    s
}

/// The raw bits of operand `x` of a lane: `es` bytes at its address `<x>_ad`
/// from the scratchpad or the accumulator (direct memory indexing, so a
/// write to the memory is seen without an address change).
fn fetch(x: &str) -> String {
    let mut s = String::new();
    for k in 0..4 {
        s.push_str(&format!(
            "            wire [47:0] {x}_x{k} = {x}_ad + 48'd{k};
            wire [31:0] {x}_w{k} = acc[{x}_x{k}[AA+1:2]];
            wire [7:0] {x}_b{k} = (v_{x}sp == @ACC_BIT@) ? {x}_w{k}[{{{x}_x{k}[1:0], 3'b000}} +: 8] : spad[{x}_x{k}[SA-1:0]];
"
        ));
    }
    s.push_str(&format!(
        "            wire [31:0] {x}_raw = {{(v_{x}es > 48'd3) ? {x}_b3 : 8'd0, (v_{x}es > 48'd2) ? {x}_b2 : 8'd0, (v_{x}es > 48'd1) ? {x}_b1 : 8'd0, {x}_b0}};
            wire {x}_raw_hi = ^{{{x}_x0, {x}_x1, {x}_x2, {x}_x3, {x}_w0, {x}_w1, {x}_w2, {x}_w3}};
"
    ));
    s
}

const VEC_TEMPLATE: &str = r#"
    // ------------------------------------------------------------- vector queue
    localparam VL = @VL@, VS = @VS@, VLAT = @VLAT@, RB = @RB_BITS@;
    localparam [47:0] VL48 = VL, VS48 = VS, VLAT48 = VLAT;
    wire [127:0] v_ins;
    wire v_halted, v_ctrl, v_adv;
    wire [4*48-1:0] v_ea;
    wire [7:0] v_opc = v_ins[0 +: 8];
@ROLES@    @FRONTEND@ #(.IMEM_DEPTH(@DEPTH@), .IA(@IA@), .IMEM_INIT(VECTOR_INIT), .NP(4)) u_v_fe (
        .clk(clk), .rst(rst), .adv(v_adv), .ins(v_ins), .halted(v_halted), .ctrl(v_ctrl),
        .ra({v_m_reg, v_b_reg, v_a_reg, v_d_reg}), .ea(v_ea));
    wire [15:0] v_wt = @WAIT@;
    wire [15:0] v_sg = @SIGNAL@;
    wire v_is_shape = v_opc == @OP_SHAPE@;
    wire v_is_stride = v_opc == @OP_STRIDE@;
    wire v_is_fset = v_opc == @OP_FSET@;
    wire v_is_fload = v_opc == @OP_FLOAD@;
    wire v_is_red = v_opc == @OP_RED@;
    wire v_is_elem = v_opc == @OP_BIN@ || v_opc == @OP_UN@ || v_opc == @OP_AXPBY@ || v_opc == @OP_SEL@;
    wire v_is_causal = v_opc == @OP_CAUSAL@;
    wire v_is_gather = v_opc == @OP_GATHER@;
    wire v_is_scatter = v_opc == @OP_SCATTER@;
    wire v_is_index = v_is_gather | v_is_scatter;
    // An `elems` gather or scatter-add walks a rows x 1 tile: one element per row.
    wire v_cur_elems = v_is_index && @IDX_MODE@ == @ELEMS@;
    // Instructions that walk a tile's elements through the lanes group by group.
    wire v_is_walk = v_is_elem | v_is_causal | v_is_index;
    wire v_eng = v_is_fload | v_is_red | v_is_walk;
    wire v_known = v_ctrl | v_is_shape | v_is_stride | v_is_fset | v_eng;
    function [47:0] v_es(input [2:0] t);
    begin
        case (t)
@ES_CASES@            default: v_es = 48'd1;
        endcase
    end
    endfunction
    // Shape, strides (0 = packed) and the scalar registers.
    reg [47:0] v_rows, v_cols, v_sd, v_sa, v_sb, v_sm;
    reg [31:0] v_f [0:7];
    wire [1:0] v_bkind = @BKIND@;
    wire [2:0] v_bfreg = @BFREG@;
    wire v_cur_red_cols = @RED_AXIS@ == @AXIS_COLS@;
    // Operand bases and row steps of the current instruction.
    wire [47:0] v_d_ea = v_ea[0 +: 48] + v_d_off;
    wire [47:0] v_a_ea = v_ea[48 +: 48] + v_a_off;
    wire [47:0] v_b_ea = v_ea[96 +: 48] + v_b_off;
    wire [47:0] v_m_ea = v_ea[144 +: 48] + v_m_off;
    // Packed row lengths: a gather's `elems` destination and a scatter-add's
    // `elems` source are one column, index vectors one int32.
    wire [47:0] v_tcols = v_cur_elems ? 48'd1 : v_cols;
    wire [47:0] v_a_cols = (v_cur_elems && v_is_scatter) ? 48'd1 : v_cols;
    wire [47:0] v_d_str = (v_sd != 48'd0) ? v_sd : ((v_is_red && !v_cur_red_cols) || (v_cur_elems && v_is_gather) ? 48'd1 : v_cols) * v_es(v_d_ty);
    wire [47:0] v_a_str = (v_sa != 48'd0) ? v_sa : v_a_cols * v_es(v_a_ty);
    wire [47:0] v_b_str = (v_sb != 48'd0) ? v_sb : ((v_bkind == @COLSRC@) ? 48'd1 : v_cols) * v_es(v_b_ty);
    wire [47:0] v_m_str = (v_sm != 48'd0) ? v_sm : (v_is_index ? 48'd1 : v_cols) * v_es(v_m_ty);
    // Cycles: the model's latency + ceil(elements / lanes), a reduction's rounds if longer.
    wire [47:0] v_n = v_rows * v_tcols;
    wire v_cur_special = @SPECIAL@;
    wire [47:0] v_width = v_cur_special ? VS48 : VL48;
    wire [47:0] v_groups = v_is_fload ? 48'd1 : (v_n + v_width - 48'd1) / v_width;
    wire [47:0] v_outer = v_cur_red_cols ? v_cols : v_rows;
    wire [47:0] v_inner = v_cur_red_cols ? v_rows : v_cols;
    wire v_cur_acc = @RED_MODE@ == @ACCUMULATE@;
    wire [47:0] v_rounds = (v_outer + VL48 - 48'd1) / VL48;
    wire [47:0] v_red_cyc = v_rounds * (v_inner + {47'd0, v_cur_acc}) + 48'd1;
    wire [47:0] v_model = VLAT48 + v_groups;
    wire [47:0] v_dur = (v_is_red && v_red_cyc > v_model) ? v_red_cyc : v_model;

    // Issue: waited tokens at least 1, signalled ones below 255; an engine
    // instruction also needs the previous one ended; a control instruction
    // that signals is a fence and waits for the engine's last cycle.
    reg [47:0] v_left;
    reg [15:0] v_sig_q;
    wire v_tok_ok = ((v_wt & ~tok_pos) == 16'd0) && ((v_sg & tok_full) == 16'd0);
    wire v_want = !rst && !error && !v_halted && v_known && v_tok_ok;
    assign v_go = v_want && v_eng && v_left <= 48'd1;
    assign v_adv = v_want && (v_eng ? v_go : !(v_sg != 16'd0 && v_left > 48'd2));
    assign v_err = !rst && !v_halted && !v_known;
    assign v_take = v_adv ? v_wt : 16'd0;
    assign v_cgive = (v_adv && !v_eng) ? v_sg : 16'd0;
    assign v_give = (v_left == 48'd2) ? v_sig_q : 16'd0;
    assign v_idle = v_left == 48'd0;

    // The instruction in flight, latched when it starts.
    reg [7:0] v_opq;
    // v.causal: fill value and the sequence positions of row 0 and column 0;
    // v.gather / v.scatter_add and their mode.
    reg v_caus, v_gat, v_sca, v_elm;
    reg [31:0] v_cfill;
    reg [47:0] v_crow, v_ccol;
    reg [@OP_BITS@-1:0] v_opf;
    reg v_red, v_fl, v_racc, v_rcols, v_special;
    reg [1:0] v_rop, v_bk;
    reg [2:0] v_flreg, v_dty, v_aty, v_bty, v_mty;
    reg v_dsp, v_asp, v_bsp, v_msp;
    reg [47:0] v_db, v_ab, v_bb, v_mb, v_dst, v_ast, v_bst, v_mst, v_des, v_aes, v_bes, v_mes;
    reg [47:0] v_nq, v_colsq, v_outq, v_inq, v_wq, v_gleft, v_e;
    reg [31:0] v_alpha, v_beta, v_bscalar;
    reg [47:0] v_round, v_k, v_wround;
    reg v_comb, v_ract, v_wr, v_flrd;
    reg [VL*48-1:0] v_pi, v_pj;
    // (i, j) + n elements along the rows of a tile of `cols` columns (n <= VL).
    function [95:0] v_step(input [47:0] i, input [47:0] j, input [47:0] cols, input [47:0] n);
        integer s;
        reg [47:0] ii, jj, sn;
    begin
        ii = i;
        jj = j;
        sn = 48'd0;
        for (s = 0; s < VL; s = s + 1) begin
            if (sn < n) begin
                jj = jj + 48'd1;
                if (jj == cols) begin
                    jj = 48'd0;
                    ii = ii + 48'd1;
                end
            end
            sn = sn + 48'd1;
        end
        v_step = {ii, jj};
    end
    endfunction
    integer vl;
    always @(posedge clk) begin
        if (rst) begin
            v_left <= 48'd0;
            v_gleft <= 48'd0;
            v_ract <= 1'b0;
            v_wr <= 1'b0;
            v_caus <= 1'b0;
            v_gat <= 1'b0;
            v_sca <= 1'b0;
            v_elm <= 1'b0;
            v_comb <= 1'b0;
            v_flrd <= 1'b0;
            v_rows <= 48'd1;
            v_cols <= 48'd1;
            v_sd <= 48'd0;
            v_sa <= 48'd0;
            v_sb <= 48'd0;
            v_sm <= 48'd0;
            v_sig_q <= 16'd0;
        end else begin
            if (v_left != 48'd0) v_left <= v_left - 48'd1;
            v_flrd <= 1'b0;
            v_wr <= 1'b0;
            if (v_gleft != 48'd0) begin
                v_gleft <= v_gleft - 48'd1;
                v_e <= v_e + v_wq;
                for (vl = 0; vl < VL; vl = vl + 1)
                    {v_pi[vl*48 +: 48], v_pj[vl*48 +: 48]} <= v_step(v_pi[vl*48 +: 48], v_pj[vl*48 +: 48], v_colsq, v_wq);
            end
            if (v_ract) begin
                if (v_comb || (v_k + 48'd1 == v_inq && !v_racc)) begin
                    v_comb <= 1'b0;
                    v_k <= 48'd0;
                    v_wr <= 1'b1;
                    v_wround <= v_round;
                    v_round <= v_round + 48'd1;
                    if ((v_round + 48'd1) * VL48 >= v_outq) v_ract <= 1'b0;
                end else if (v_k + 48'd1 == v_inq) begin
                    v_comb <= 1'b1;
                end else begin
                    v_k <= v_k + 48'd1;
                end
            end
            if (v_adv && v_is_shape) begin
                v_rows <= @ROWS@;
                v_cols <= @COLS@;
            end
            if (v_adv && v_is_stride) begin
                v_sd <= @SD@;
                v_sa <= @SAS@;
                v_sb <= @SB@;
                v_sm <= @SM@;
            end
            if (v_go) begin
                v_left <= v_dur;
                v_sig_q <= v_sg;
                // v.causal and v.gather pass their chosen operand through the lanes' copy.
                v_opq <= (v_is_causal || v_is_gather) ? @OP_UN@ : v_opc;
                v_opf <= (v_is_causal || v_is_gather) ? @COPY@ : @OPF@;
                v_caus <= v_is_causal;
                v_gat <= v_is_gather;
                v_sca <= v_is_scatter;
                v_elm <= v_cur_elems;
                v_cfill <= v_f[@CAUSAL_FILL@];
                v_crow <= @CAUSAL_ROW@;
                v_ccol <= @CAUSAL_COL@;
                v_special <= v_cur_special;
                v_red <= v_is_red;
                v_fl <= v_is_fload;
                v_flrd <= v_is_fload;
                v_flreg <= @FLOAD_REG@;
                v_rop <= @RED_OP@;
                v_racc <= v_cur_acc;
                v_rcols <= v_cur_red_cols;
                v_bk <= v_bkind;
                v_dty <= v_d_ty;
                v_aty <= v_a_ty;
                v_bty <= v_b_ty;
                v_mty <= v_m_ty;
                v_dsp <= v_d_sp;
                v_asp <= v_a_sp;
                v_bsp <= v_b_sp;
                v_msp <= v_m_sp;
                v_db <= v_d_ea;
                v_ab <= v_a_ea;
                v_bb <= v_b_ea;
                v_mb <= v_m_ea;
                v_dst <= v_d_str;
                v_ast <= v_a_str;
                v_bst <= v_b_str;
                v_mst <= v_m_str;
                v_des <= v_es(v_d_ty);
                v_aes <= v_es(v_a_ty);
                v_bes <= v_es(v_b_ty);
                v_mes <= v_es(v_m_ty);
                v_nq <= v_n;
                v_colsq <= v_tcols;
                v_outq <= v_outer;
                v_inq <= v_inner;
                v_wq <= v_width;
                v_gleft <= v_is_walk ? v_groups : 48'd0;
                v_e <= 48'd0;
                v_alpha <= v_f[@ALPHA@];
                v_beta <= v_f[@BETA@];
                v_bscalar <= v_f[v_bfreg];
                v_ract <= v_is_red;
                v_round <= 48'd0;
                v_k <= 48'd0;
                v_comb <= 1'b0;
                for (vl = 0; vl < VL; vl = vl + 1)
                    {v_pi[vl*48 +: 48], v_pj[vl*48 +: 48]} <= v_step(48'd0, 48'd0, v_tcols, {16'd0, vl[31:0]});
            end
        end
    end

    // Per lane (the unit's `w` is the result as the destination's bits): the element's position, its operands' addresses and raw bits.
    wire [VL*32-1:0] v_af, v_bf, v_mf, v_rx, v_ry, v_racc_o;
    wire [VL-1:0] v_lane_on, v_bad;
    wire [VL*32-1:0] v_y, v_w;
    wire [VS-1:0] v_sbad;
    wire [VS*32-1:0] v_sy, v_sw;
    wire v_issue = v_gleft != 48'd0;
    wire [31:0] v_araw;
    wire [VL*48-1:0] v_dad, v_wad;
    wire [VL-1:0] v_won;
    wire [VL*32-1:0] v_wz;
    wire [VL-1:0] v_sc_on, v_sc_we;
    wire [VL*48-1:0] v_sc_ad;
    wire [VL*32-1:0] v_sc_old, v_sc_src, v_sc_z;
    generate
        for (g = 0; g < VL; g = g + 1) begin : g_vlane
            localparam [47:0] LI = g;
            wire [47:0] pi = v_pi[g*48 +: 48];
            wire [47:0] pj = v_pj[g*48 +: 48];
            wire [47:0] o_cur = v_round * VL48 + LI;
            wire [47:0] o_w = v_wround * VL48 + LI;
            // The index of row pi (v.gather, v.scatter_add), read first: it
            // selects the table's row (`rows`) or column (`elems`).
            wire [47:0] m_ad = v_mb + pi * v_mst + ((v_gat || v_sca) ? 48'd0 : pj) * v_mes;
@FETCH_M@            wire [47:0] kx = {{16{m_raw[31]}}, m_raw};
            wire kneg = m_raw[31];
            wire [47:0] ei = v_red ? (v_rcols ? v_k : o_cur) : ((v_gat && !v_elm) ? kx : pi);
            wire [47:0] ej = v_red ? (v_rcols ? o_cur : v_k) : ((v_gat && v_elm) ? kx : pj);
            wire [47:0] di = v_red ? (v_rcols ? 48'd0 : o_cur) : ((v_sca && !v_elm) ? kx : pi);
            wire [47:0] dj = v_red ? (v_rcols ? o_cur : 48'd0) : ((v_sca && v_elm) ? kx : pj);
            wire [47:0] a_ad = v_ab + ei * v_ast + ej * v_aes;
            wire [47:0] b_ad = v_bb + ((v_bk == @ROWSRC@) ? 48'd0 : pi) * v_bst + ((v_bk == @COLSRC@) ? 48'd0 : pj) * v_bes;
            wire [47:0] d_ad = v_db + di * v_dst + dj * v_des;
            assign v_dad[g*48 +: 48] = d_ad;
            assign v_wad[g*48 +: 48] = v_db + (v_rcols ? 48'd0 : o_w) * v_dst + (v_rcols ? o_w : 48'd0) * v_des;
            assign v_lane_on[g] = v_issue && LI < v_wq && v_e + LI < v_nq;
@FETCH@            if (g == 0) begin : g_fl
                assign v_araw = a_raw;
            end
            wire [31:0] a_f;
            tessera_vec_widen u_wa (.raw(a_raw), .ty(v_aty), .z(a_f));
            // v.causal: the fill where col + j > row + i; v.gather: +0 for a negative index.
            wire masked = $signed(v_ccol + pj) > $signed(v_crow + pi);
            assign v_af[g*32 +: 32] = (v_caus && masked) ? v_cfill : ((v_gat && kneg) ? 32'd0 : a_f);
            wire [31:0] b_f;
            tessera_vec_widen u_wb (.raw(b_raw), .ty(v_bty), .z(b_f));
            assign v_bf[g*32 +: 32] = (v_bk == @SCALAR@) ? v_bscalar : b_f;
            tessera_vec_widen u_wm (.raw(m_raw), .ty(v_mty), .z(v_mf[g*32 +: 32]));
            wire [31:0] d_f;
            tessera_vec_widen u_wd (.raw(d_raw), .ty(v_dty), .z(d_f));
            assign v_rx[g*32 +: 32] = v_comb ? d_f : v_af[g*32 +: 32];
            tessera_vec_narrow u_nr (.x(v_racc_o[g*32 +: 32]), .ty(v_dty), .z(v_ry[g*32 +: 32]));
            if (g < VS) begin : g_sp
                assign v_wz[g*32 +: 32] = v_special ? v_sw[g*32 +: 32] : v_w[g*32 +: 32];
            end else begin : g_nsp
                assign v_wz[g*32 +: 32] = v_w[g*32 +: 32];
            end
            // v.scatter_add: the lane's table element, its old value (as the
            // table type reads), the source element; a negative index is skipped.
            assign v_sc_on[g] = v_sca && v_lane_on[g] && !kneg;
            assign v_sc_ad[g*48 +: 48] = d_ad;
            assign v_sc_old[g*32 +: 32] = d_f;
            assign v_sc_src[g*32 +: 32] = a_f;
            wire unused_v_lane = ^{a_raw_hi, b_raw_hi, m_raw_hi, d_raw_hi};
        end
    endgenerate
@SCATTER_CHAIN@    wire v_out_valid;
    tessera_vec_unit #(.LANES(VL), .SPECIAL(VS)) u_vec (
        .clk(clk), .rst(rst), .in_valid(v_issue), .opcode(v_opq), .op(v_opf), .ty(v_dty),
        .a(v_af), .b(v_bf), .mask(v_mf), .alpha(v_alpha), .beta(v_beta),
        .out_valid(v_out_valid), .bad(v_bad), .y(v_y), .w(v_w),
        .red_en(v_ract), .red_start(v_ract && !v_comb && v_k == 48'd0), .red_combine(v_comb),
        .red_op(v_rop), .red_x(v_rx), .red_acc(v_racc_o), .s_bad(v_sbad), .s_y(v_sy), .s_w(v_sw));
    // Element writes follow their group through VLAT stages; a reduction
    // round's results are written the cycle after its last step; a
    // scatter-add group's at the end of the cycle that reads it.
    reg [VL-1:0] v_dl_on [0:VLAT-1];
    reg [VL*48-1:0] v_dl_ad [0:VLAT-1];
    integer vs;
    always @(posedge clk) begin
        for (vs = 0; vs < VLAT; vs = vs + 1) begin
            v_dl_on[vs] <= rst ? {VL{1'b0}} : (vs == 0 ? (v_sca ? {VL{1'b0}} : v_lane_on) : v_dl_on[vs == 0 ? 0 : vs - 1]);
            v_dl_ad[vs] <= vs == 0 ? v_dad : v_dl_ad[vs == 0 ? 0 : vs - 1];
        end
    end
    genvar vbk;
    generate
        for (g = 0; g < VL; g = g + 1) begin : g_vwr
            localparam [47:0] LI = g;
            wire el = v_dl_on[VLAT-1][g];
            wire rw = v_wr && v_wround * VL48 + LI < v_outq;
            wire sw = v_sc_we[g];
            assign v_won[g] = el | rw | sw;
            wire [47:0] ad = sw ? v_sc_ad[g*48 +: 48] : (el ? v_dl_ad[VLAT-1][g*48 +: 48] : v_wad[g*48 +: 48]);
            wire [31:0] z = sw ? v_sc_z[g*32 +: 32] : (el ? v_wz[g*32 +: 32] : v_ry[g*32 +: 32]);
            for (vbk = 0; vbk < 4; vbk = vbk + 1) begin : g_byte
                localparam [47:0] BI = vbk;
                wire [47:0] x = ad + BI;
                wire unused_vx = ^x;
                assign v_we[g*4 + vbk] = v_won[g] && BI < v_des;
                assign v_wsa[(g*4 + vbk)*SA +: SA] = x[SA-1:0];
                assign v_wca[(g*4 + vbk)*(AA+2) +: AA+2] = x[AA+1:0];
                assign v_wd[(g*4 + vbk)*8 +: 8] = z[vbk*8 +: 8];
            end
        end
    endgenerate
    assign v_wacc = v_dsp == @ACC_BIT@;
    // Scalar registers: v.fset at issue, v.fload the cycle after it starts
    // (a later v.fset in the same cycle wins).
    integer vf;
    always @(posedge clk) begin
        if (rst) begin
            for (vf = 0; vf < 8; vf = vf + 1) v_f[vf] <= 32'd0;
        end else begin
            if (v_flrd) v_f[v_flreg] <= v_araw[31:0];
            if (v_adv && v_is_fset) v_f[@FSET_REG@] <= @FSET_VAL@;
        end
    end
    wire unused_v = ^{v_bad, v_sbad, v_y, v_sy, v_out_valid, v_fl, v_asp, v_bsp, v_msp, v_ins[127:120]};
"#;
