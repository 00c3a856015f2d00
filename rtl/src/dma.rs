//! The core's DMA queues: the load queue (`dma.load` and `dma.gather`, HBM
//! to scratchpad or accumulator) and the store queue (`dma.store` and
//! `dma.scatter_add`, back to HBM), each a front end ([`crate::frontend`])
//! plus one transfer engine, emitted as a block of the core module by
//! [`dma_block`]. Transposing transfers walk the HBM-side box and scatter
//! (or collect) on chip, so their bursts are the timing model's.
//!
//! `dma.scatter_add` is the store engine's read-modify-write: every burst
//! of a row takes two bus slots, a read slot that latches the HBM burst and
//! the on-chip source bytes, then a write slot that writes their fp32 sums
//! ([`crate::fp32_add`], one adder per 4 bytes of a burst) back. Slots run
//! in the simulator's order (row by row in ascending index, bursts in
//! order), and a write lands at the end of its slot's first cycle, before
//! the next read slot begins, so a repeated index reads the sum its earlier
//! row wrote. A row with a negative index keeps its slots (the timing model
//! counts them: it does not know the indices) and writes nothing.
//!
//! Timing, as `sim/src/timing.rs` states it: a transfer starts when its
//! waited tokens are in and an engine is free; its HBM data arrives
//! `latency` cycles later and then holds the shared HBM bus for its bursts
//! (each row split at burst boundaries), one burst every `K` cycles, `K` =
//! burst bytes / the core's HBM bytes per cycle. The engine copies a burst
//! the first cycle of its slot and signals its tokens the last cycle, so a
//! waiting queue starts the cycle the model's transfer ends. Invariant: `K`
//! is a whole number of cycles, at least 1 ([`cycles_per_burst`] checks).

use tessera_isa::field::{Field, HbmAddr, LocalAddr, Reg, SInt, Space};
use tessera_isa::{Arch, Queue};

use crate::core::{clog2, field, opcode, sext48_of, span, zext_of};
use crate::frontend::FRONTEND;
use crate::RtlError;

/// Cycles one HBM burst holds the core's share of the HBM bus.
///
/// # Errors
/// A share that is not a whole number of cycles per burst, or more than a
/// burst per cycle (the engine copies one burst per cycle at most).
pub fn cycles_per_burst(arch: &Arch) -> Result<u64, RtlError> {
    let per_cycle = arch.hbm_bytes_per_cycle() / f64::from(arch.spec().chip.cores);
    let k = f64::from(arch.spec().dma.burst_bytes) / per_cycle;
    if k >= 1.0 && (k - k.round()).abs() < 1e-9 && k < 65536.0 {
        Ok(k.round() as u64)
    } else {
        Err(RtlError::Unsupported(format!(
            "hbm.bandwidth_gb_per_s: the core's HBM share moves a {}-byte burst in {k} cycles; the generated DMA needs a whole number of cycles per burst, at least 1",
            arch.spec().dma.burst_bytes
        )))
    }
}

fn local_parts() -> ((u32, u32), (u32, u32), (u32, u32)) {
    let r = |n: u8| Reg::new(n).unwrap_or_else(|| unreachable!());
    let o = |n: i64| SInt::<12>::new(n).unwrap_or_else(|| unreachable!());
    let probe = |space, reg, off| {
        LocalAddr {
            space,
            reg: r(reg),
            offset: o(off),
        }
        .to_bits()
    };
    (
        span(probe(Space::Acc, 0, 0) ^ probe(Space::Spad, 0, 0)),
        span(probe(Space::Spad, Reg::COUNT - 1, 0) ^ probe(Space::Spad, 0, 0)),
        span(probe(Space::Spad, 0, -1) ^ probe(Space::Spad, 0, 0)),
    )
}

fn hbm_parts() -> ((u32, u32), (u32, u32)) {
    let probe = |reg: u8, off: i64| {
        HbmAddr {
            reg: Reg::new(reg).unwrap_or_else(|| unreachable!()),
            offset: SInt::<20>::new(off).unwrap_or_else(|| unreachable!()),
        }
        .to_bits()
    };
    (
        span(probe(Reg::COUNT - 1, 0) ^ probe(0, 0)),
        span(probe(0, -1) ^ probe(0, 0)),
    )
}

fn sub((lsb, _): (u32, u32), (l, b): (u32, u32)) -> (u32, u32) {
    (lsb + l, b)
}

/// The Verilog block of DMA queue `q` (load or store), with the prefix
/// `ld` or `st`, for a core whose instruction memory of that queue has
/// `depth` words. It reads the core's `now`, `tok_pos`, `tok_full`,
/// `<x>_eng_ok`, `<x>_bus_ok` and the memories' widths, and drives
/// `<x>_take`, `<x>_give`, `<x>_cgive`, `<x>_copy`, `<x>_err` and the
/// engine's state (`<x>_zero`: an indexed row with a negative index, whose
/// indices it reads from `spad`/`acc`; the store queue also `st_sa_q`, a
/// scatter-add in flight, and `st_sum`, its write slot's bytes, and it reads
/// `hbm` into its read slot's latch); the core's memory blocks do the
/// copying.
pub fn dma_block(q: Queue, depth: usize) -> String {
    let (x, m, local, hbm, init) = match q {
        Queue::Store => ("st", "dma.store", "src", "dst", "STORE_INIT"),
        _ => ("ld", "dma.load", "dst", "src", "LOAD_INIT"),
    };
    // The counts describe the source box; a transpose gives the destination
    // the transposed box (`@X@_d*`). Load: HBM is the source; store: the destination.
    let (hbox, lbox) = match q {
        Queue::Store => (("@X@_drows", "@X@_drb"), ("@X@_rows", "@X@_rb")),
        _ => (("@X@_rows", "@X@_rb"), ("@X@_drows", "@X@_drb")),
    };
    let rb = clog2(u64::from(Reg::COUNT));
    let (lsp, lreg, loff) = local_parts();
    let (hreg, hoff) = hbm_parts();
    let lf = field(m, local);
    let hf = field(m, hbm);
    // The queue's indexed transfer: its table and on-chip operand share the
    // plain transfer's bit positions (`indexed_fields_match_plain_ones`).
    let indexed = match q {
        Queue::Store => "dma.scatter_add",
        _ => "dma.gather",
    };
    let reg_of = |(l, b): (u32, u32)| format!("ins[{l} +: {b}]");
    // Instruction bits above every field this queue decodes.
    let top = ["dma.hstride", "dma.lstride", m, indexed]
        .iter()
        .filter_map(|d| tessera_isa::inst::desc_of(d))
        .flat_map(|d| d.fields.iter().map(|f| f.lsb + f.bits))
        .max()
        .unwrap_or(128);
    let unused_top = if top < 128 {
        format!("    wire unused_@X@_top = ^ins[127:{top}];\n")
    } else {
        String::new()
    };
    let subs: Vec<(&str, String)> = vec![
        ("@Q@", q.to_string()),
        ("@FRONTEND@", FRONTEND.into()),
        ("@DEPTH@", depth.to_string()),
        ("@IA@", clog2(depth as u64).max(1).to_string()),
        ("@INIT@", init.into()),
        ("@RB@", rb.to_string()),
        ("@HREG@", reg_of(sub(hf, hreg))),
        ("@LREG@", reg_of(sub(lf, lreg))),
        ("@HOFF@", sext48_of("ins", sub(hf, hoff))),
        ("@LOFF@", sext48_of("ins", sub(lf, loff))),
        ("@LSPACE@", zext_of("ins", sub(lf, lsp), 1)),
        ("@ACC_BIT@", format!("1'b{}", Space::Acc.to_bits())),
        ("@ROWS@", zext_of("ins", field(m, "rows"), 48)),
        ("@RBYTES@", zext_of("ins", field(m, "row_bytes"), 48)),
        ("@PLANES@", zext_of("ins", field(m, "planes"), 48)),
        ("@TCODE@", zext_of("ins", field(m, "transpose"), 2)),
        ("@HROWS@", hbox.0.into()),
        ("@HRB@", hbox.1.into()),
        ("@LROWS@", lbox.0.into()),
        ("@LRB@", lbox.1.into()),
        ("@HS_ROW@", zext_of("ins", field("dma.hstride", "row"), 48)),
        (
            "@HS_PLANE@",
            zext_of("ins", field("dma.hstride", "plane"), 48),
        ),
        ("@LS_ROW@", zext_of("ins", field("dma.lstride", "row"), 48)),
        (
            "@LS_PLANE@",
            zext_of("ins", field("dma.lstride", "plane"), 48),
        ),
        ("@OP_HS@", format!("8'h{:02x}", opcode("dma.hstride"))),
        ("@OP_LS@", format!("8'h{:02x}", opcode("dma.lstride"))),
        ("@OP_X@", format!("8'h{:02x}", opcode(m))),
        ("@FP32_ADD@", crate::fp32_add::FP32_ADD.into()),
        ("@WAIT@", zext_of("ins", crate::core::wait_span(), 16)),
        ("@SIGNAL@", zext_of("ins", crate::core::signal_span(), 16)),
        ("@UNUSED_TOP@", unused_top),
    ];
    // The indexed transfer's pieces first: they hold placeholders of the list above.
    let subs = indexed_subs(indexed, lreg, loff, lsp)
        .into_iter()
        .chain(scatter_subs(q == Queue::Store))
        .chain(subs);
    let mut v = DMA_TEMPLATE.to_string();
    for (k, val) in subs {
        v = v.replace(k, &val);
    }
    v.replace("ins[", &format!("{x}_ins[")).replace("@X@", x)
}

/// The queue's indexed transfer `mn` (`dma.gather` or `dma.scatter_add`):
/// a third address port (the indices), its counts, the row's HBM address
/// from its index and the flag of a negative index. Rows split into bursts
/// from the row's start (`@X@_g_q`: an indexed transfer in flight).
fn indexed_subs(
    mn: &str,
    lreg: (u32, u32),
    loff: (u32, u32),
    lsp: (u32, u32),
) -> Vec<(&'static str, String)> {
    let idx = field(mn, "idx");
    let reg_of = |(l, b): (u32, u32)| format!("ins[{l} +: {b}]");
    vec![
        ("@NP@", "3".into()),
        ("@IREG@", format!("{}, ", reg_of(sub(idx, lreg)))),
        ("@IS_G@", format!("@X@_opc == 8'h{:02x}", opcode(mn))),
        ("@G_ROWS@", zext_of("ins", field(mn, "rows"), 48)),
        ("@G_RBYTES@", zext_of("ins", field(mn, "row_bytes"), 48)),
        (
            "@GATHER@",
            GATHER_TEMPLATE
                .replace("@IOFF@", &sext48_of("ins", sub(idx, loff)))
                .replace("@ISPACE@", &zext_of("ins", sub(idx, lsp), 1)),
        ),
        ("@HROW@", "@X@_hrg".into()),
        ("@ROOM_OFF@", "(@X@_g_q ? {BB{1'b0}} : @X@_h[BB-1:0])".into()),
        (
            "@GO_G@",
            "            @X@_g_q <= @X@_is_g;\n            @X@_ia_q <= @X@_iea;\n            @X@_iacc_q <= @X@_i_acc;\n".into(),
        ),
    ]
}

/// The store queue's `dma.scatter_add` read-modify-write (`scatter`), or
/// the load queue's nothing: the slot phase, the read slot's latches, the
/// adders, and the engine's hold of its walk over a burst's read slot.
fn scatter_subs(scatter: bool) -> Vec<(&'static str, String)> {
    if !scatter {
        return vec![
            ("@SCATTER@", String::new()),
            ("@SCATTER_HEAD@", String::new()),
            ("@PH_LAST@", String::new()),
            ("@PH_HOLD@", String::new()),
            ("@ON_GATE@", String::new()),
        ];
    }
    vec![
        ("@SCATTER@", SCATTER_TEMPLATE.into()),
        (
            "@SCATTER_HEAD@",
            "    // A scatter-add in flight (the store engine's only indexed transfer)\n    // and its slot phase (0: read slot, 1: write slot).\n    wire @X@_sa_q = @X@_g_q;\n    reg @X@_ph;\n".into(),
        ),
        ("@PH_LAST@", " && (!@X@_sa_q || @X@_ph)".into()),
        (
            "@PH_HOLD@",
            "                end else if (@X@_sa_q && !@X@_ph) begin\n                    // read slot: the walk stays on this burst for its write slot\n".into(),
        ),
        ("@ON_GATE@", " && (!@X@_sa_q || (@X@_ph && !@X@_zero))".into()),
    ]
}

/// An indexed transfer (`dma.gather` in the load engine, `dma.scatter_add`
/// in the store engine): row r's HBM address is the table's plus idx[r] x
/// the HBM row stride, idx[r] read (int32) from the scratchpad or the
/// accumulator as the row starts; a negative index (`@X@_zero`) makes a
/// gather write zeros and a scatter-add skip the row; bursts split at
/// `burst_bytes` from the row's start, as the timing model counts them
/// (rows x ceil(row_bytes / burst), twice for a scatter-add).
const GATHER_TEMPLATE: &str = r#"    // Indexed transfer: the indices' address, and row r's index and HBM row.
    wire [47:0] @X@_iea = @X@_ea[96 +: 48] + @IOFF@;
    wire @X@_i_acc = @ISPACE@ == @ACC_BIT@;
    reg @X@_g_q, @X@_iacc_q;
    reg [47:0] @X@_ia_q;
    wire [47:0] @X@_ix = @X@_ia_q + {@X@_r[45:0], 2'b00};
    wire [47:0] @X@_ix1 = @X@_ix + 48'd1;
    wire [47:0] @X@_ix2 = @X@_ix + 48'd2;
    wire [47:0] @X@_ix3 = @X@_ix + 48'd3;
    wire [31:0] @X@_kv = @X@_iacc_q ? acc[@X@_ix[AA+1:2]]
        : {spad[@X@_ix3[SA-1:0]], spad[@X@_ix2[SA-1:0]], spad[@X@_ix1[SA-1:0]], spad[@X@_ix[SA-1:0]]};
    wire unused_@X@_ix = ^{@X@_ix[47:AA+2], @X@_ix[1:0], @X@_ix1[47:SA], @X@_ix2[47:SA], @X@_ix3[47:SA], @X@_ix[47:SA], @X@_r[47:46]};
    wire [47:0] @X@_hrg = @X@_g_q ? @X@_hp + {17'd0, @X@_kv[30:0]} * @X@_hrs_q : @X@_hr;
    wire @X@_zero = @X@_g_q && @X@_kv[31];
"#;

/// `dma.scatter_add` in the store engine. `@X@_ph` is the slot phase (0:
/// read slot, 1: write slot) of the current burst; the read slot's copy
/// cycle latches the HBM burst (`@X@_old`) and the on-chip source bytes
/// (`@X@_src`), and each 4-byte element of the burst (its rows start
/// element-aligned: `row_bytes` and `burst_bytes` are multiples of 4) has
/// an fp32 adder, `@X@_sum` = old + source, which the core writes to HBM in
/// the write slot's copy cycle. Invariant: the write of a burst lands
/// before the next read slot's copy cycle (at least one cycle later), so
/// the read sees every earlier write of the transfer.
const SCATTER_TEMPLATE: &str = r#"    // dma.scatter_add: the slot phase, read-slot latches and the fp32 adders.
    reg [BURST*8-1:0] @X@_old, @X@_src;
    wire [BURST*8-1:0] @X@_sum;
    wire @X@_rd = @X@_copy && @X@_sa_q && !@X@_ph && !@X@_zero;
    always @(posedge clk)
        if (rst || @X@_go) @X@_ph <= 1'b0;
        else if (@X@_copy && @X@_sa_q) @X@_ph <= !@X@_ph;
    integer @X@_sb;
    always @(posedge clk)
        for (@X@_sb = 0; @X@_sb < BURST; @X@_sb = @X@_sb + 1)
            if (@X@_rd) begin
                @X@_old[@X@_sb*8 +: 8] <= hbm[@X@_hb[@X@_sb*HA +: HA]];
                @X@_src[@X@_sb*8 +: 8] <= @X@_acc ? acc_byte(@X@_lb[@X@_sb*LW +: AA+2]) : spad[@X@_lb[@X@_sb*LW +: SA]];
            end
    generate
        for (g = 0; g < BURST / 4; g = g + 1) begin : g_@X@_sum
            @FP32_ADD@ u_add (.x(@X@_old[g*32 +: 32]), .y(@X@_src[g*32 +: 32]), .z(@X@_sum[g*32 +: 32]));
        end
    endgenerate
"#;

const DMA_TEMPLATE: &str = r#"
    // -------------------------------------------------------------- @Q@ queue
    wire [127:0] @X@_ins;
    wire @X@_halted, @X@_ctrl, @X@_adv;
    wire [@NP@*48-1:0] @X@_ea;
    @FRONTEND@ #(.IMEM_DEPTH(@DEPTH@), .IA(@IA@), .IMEM_INIT(@INIT@), .NP(@NP@)) u_@X@_fe (
        .clk(clk), .rst(rst), .adv(@X@_adv), .ins(@X@_ins), .halted(@X@_halted), .ctrl(@X@_ctrl),
        .ra({@IREG@@HREG@, @LREG@}), .ea(@X@_ea));
    wire [7:0] @X@_opc = ins[0 +: 8];
    wire [15:0] @X@_wt = @WAIT@;
    wire [15:0] @X@_sg = @SIGNAL@;
    wire @X@_is_hs = @X@_opc == @OP_HS@;
    wire @X@_is_ls = @X@_opc == @OP_LS@;
    wire @X@_is_g = @IS_G@;
    wire @X@_is_x = @X@_opc == @OP_X@ || @X@_is_g;
    wire @X@_known = @X@_ctrl | @X@_is_hs | @X@_is_ls | @X@_is_x;
@UNUSED_TOP@    // Strides (0 = packed) and the box of the current instruction.
    reg [47:0] @X@_hrow, @X@_hplane, @X@_lrow, @X@_lplane;
    wire [47:0] @X@_hea = @X@_ea[48 +: 48] + @HOFF@;
    wire [47:0] @X@_lea = @X@_ea[0 +: 48] + @LOFF@;
    wire @X@_in_acc = @LSPACE@ == @ACC_BIT@;
    wire [47:0] @X@_rows = @X@_is_g ? @G_ROWS@ : @ROWS@;
    wire [47:0] @X@_rb = @X@_is_g ? @G_RBYTES@ : @RBYTES@;
    wire [47:0] @X@_planes = @X@_is_g ? 48'd1 : @PLANES@;
    // Transpose: element size E = 1 << sh bytes (code 1, 2, 3: E = 1, 2, 4);
    // the destination box is (row_bytes / E) rows of rows x E bytes.
    wire [1:0] @X@_tcode = @X@_is_g ? 2'd0 : @TCODE@;
    wire @X@_tr = @X@_tcode != 2'd0;
    wire [1:0] @X@_sh = @X@_tcode - {1'b0, @X@_tr};
    wire [47:0] @X@_drows = @X@_tr ? @X@_rb >> @X@_sh : @X@_rows;
    wire [47:0] @X@_drb = @X@_tr ? @X@_rows << @X@_sh : @X@_rb;
    wire [47:0] @X@_hrs = (@X@_hrow != 48'd0) ? @X@_hrow : @HRB@;
    wire [47:0] @X@_hps = (@X@_hplane != 48'd0) ? @X@_hplane : @HROWS@ * @X@_hrs;
    wire [47:0] @X@_lrs = (@X@_lrow != 48'd0) ? @X@_lrow : @LRB@;
    wire [47:0] @X@_lps = (@X@_lplane != 48'd0) ? @X@_lplane : @LROWS@ * @X@_lrs;

    // Issue: waited tokens at least 1, signalled ones below 255; a transfer
    // also needs a free engine; a control instruction that signals is a fence
    // and waits for the transfer in flight to finish.
    reg @X@_busy, @X@_bus, @X@_last, @X@_acc;
    wire @X@_fin;
    wire @X@_tok_ok = ((@X@_wt & ~tok_pos) == 16'd0) && ((@X@_sg & tok_full) == 16'd0);
    wire @X@_want = !rst && !error && !@X@_halted && @X@_known && @X@_tok_ok;
    wire @X@_want_x = @X@_want && @X@_is_x && !@X@_busy;
    wire @X@_go = @X@_want_x && @X@_eng_ok;
    assign @X@_adv = @X@_want && (@X@_is_x ? @X@_go : !(@X@_sg != 16'd0 && @X@_busy && !@X@_fin));
    wire @X@_err = !rst && !@X@_halted && !@X@_known;
    assign @X@_take = @X@_adv ? @X@_wt : 16'd0;
    assign @X@_cgive = (@X@_adv && !@X@_is_x) ? @X@_sg : 16'd0;
    always @(posedge clk) begin
        if (rst) begin
            @X@_hrow <= 48'd0;
            @X@_hplane <= 48'd0;
            @X@_lrow <= 48'd0;
            @X@_lplane <= 48'd0;
        end else if (@X@_adv) begin
            if (@X@_is_hs) begin
                @X@_hrow <= @HS_ROW@;
                @X@_hplane <= @HS_PLANE@;
            end
            if (@X@_is_ls) begin
                @X@_lrow <= @LS_ROW@;
                @X@_lplane <= @LS_PLANE@;
            end
        end
    end

    // Engine: latency, then the HBM-side box's bursts on the HBM bus, one
    // every K cycles. It walks the HBM box (row r, byte x of the row); the
    // on-chip byte is lr + x untransposed, else lr + (x >> sh) lrs + x mod E,
    // where lr steps by E per HBM row (the element's place in its on-chip
    // row) instead of by the on-chip row stride.
    reg [31:0] @X@_ready_at;
    reg [47:0] @X@_hr, @X@_hp, @X@_lr, @X@_lp, @X@_hrs_q, @X@_hps_q, @X@_lrs_q, @X@_lps_q;
    reg [47:0] @X@_rb_q, @X@_rows_q, @X@_planes_q, @X@_o, @X@_r, @X@_p, @X@_lstep_q;
    reg [15:0] @X@_sig_q;
    reg [KW-1:0] @X@_k;
    reg @X@_tr_q;
    reg [1:0] @X@_sh_q;
@GATHER@@SCATTER_HEAD@    wire [47:0] @X@_h = @HROW@ + @X@_o;
    wire [47:0] @X@_room = BURST - {{(48-BB){1'b0}}, @ROOM_OFF@};
    wire [47:0] @X@_rest = @X@_rb_q - @X@_o;
    wire [47:0] @X@_len = (@X@_rest < @X@_room) ? @X@_rest : @X@_room;
    wire @X@_eor = @X@_rest == @X@_len;
    wire @X@_eop = @X@_eor && @X@_r + 48'd1 == @X@_rows_q;
    wire @X@_final = @X@_eop && @X@_p + 48'd1 == @X@_planes_q@PH_LAST@;
    wire @X@_req_bus = @X@_busy && !@X@_bus && now >= @X@_ready_at;
    wire @X@_copy = (@X@_req_bus && @X@_bus_ok) || (@X@_bus && !@X@_last && @X@_k == {KW{1'b0}});
    assign @X@_fin = @X@_busy && ((K == 1 && @X@_copy && @X@_final) || (@X@_last && @X@_k == ONE_K));
    assign @X@_give = @X@_fin ? @X@_sig_q : 16'd0;
    always @(posedge clk) begin
        if (rst) begin
            @X@_busy <= 1'b0;
            @X@_bus <= 1'b0;
            @X@_last <= 1'b0;
            @X@_k <= {KW{1'b0}};
        end else if (@X@_go) begin
            @X@_busy <= 1'b1;
            @X@_bus <= 1'b0;
            @X@_last <= 1'b0;
            @X@_ready_at <= now + LAT;
            @X@_hr <= @X@_hea;
            @X@_hp <= @X@_hea;
            @X@_lr <= @X@_lea;
            @X@_lp <= @X@_lea;
            @X@_acc <= @X@_in_acc;
            @X@_hrs_q <= @X@_hrs;
            @X@_hps_q <= @X@_hps;
            @X@_lrs_q <= @X@_lrs;
            @X@_lps_q <= @X@_lps;
            @X@_rb_q <= @HRB@;
            @X@_rows_q <= @HROWS@;
            @X@_lstep_q <= @X@_tr ? 48'd1 << @X@_sh : @X@_lrs;
            @X@_tr_q <= @X@_tr;
            @X@_sh_q <= @X@_sh;
            @X@_planes_q <= @X@_planes;
            @X@_o <= 48'd0;
            @X@_r <= 48'd0;
            @X@_p <= 48'd0;
            @X@_sig_q <= @X@_sg;
@GO_G@        end else if (@X@_fin) begin
            @X@_busy <= 1'b0;
            @X@_bus <= 1'b0;
            @X@_last <= 1'b0;
        end else begin
            if (@X@_req_bus && @X@_bus_ok) @X@_bus <= 1'b1;
            if (@X@_copy) begin
                @X@_k <= K_MINUS_1;
                if (@X@_final) begin
                    @X@_last <= 1'b1;
@PH_HOLD@                end else if (!@X@_eor) begin
                    @X@_o <= @X@_o + @X@_len;
                end else begin
                    @X@_o <= 48'd0;
                    if (@X@_eop) begin
                        @X@_r <= 48'd0;
                        @X@_p <= @X@_p + 48'd1;
                        @X@_hp <= @X@_hp + @X@_hps_q;
                        @X@_hr <= @X@_hp + @X@_hps_q;
                        @X@_lp <= @X@_lp + @X@_lps_q;
                        @X@_lr <= @X@_lp + @X@_lps_q;
                    end else begin
                        @X@_r <= @X@_r + 48'd1;
                        @X@_hr <= @X@_hr + @X@_hrs_q;
                        @X@_lr <= @X@_lr + @X@_lstep_q;
                    end
                end
            end else if (@X@_k != {KW{1'b0}}) begin
                @X@_k <= @X@_k - ONE_K;
            end
        end
    end
    // Byte lanes of the current burst: HBM and on-chip addresses, and whether the lane moves.
    wire [BURST*HA-1:0] @X@_hb;
    wire [BURST*LW-1:0] @X@_lb;
    wire [BURST-1:0] @X@_on;
    generate
        for (g = 0; g < BURST; g = g + 1) begin : g_@X@_lane
            localparam [47:0] LANE = g;
            wire [47:0] hx = @X@_h + LANE;
            wire [47:0] xo = @X@_o + LANE;
            wire [47:0] mask = (48'd1 << @X@_sh_q) - 48'd1;
            wire [47:0] lx = @X@_lr + (@X@_tr_q ? ((xo >> @X@_sh_q) * @X@_lrs_q) + (xo & mask) : xo);
            assign @X@_hb[g*HA +: HA] = hx[HA-1:0];
            assign @X@_lb[g*LW +: LW] = lx[LW-1:0];
            assign @X@_on[g] = @X@_copy && LANE < @X@_len@ON_GATE@;
            wire unused_@X@_lane = ^{hx[47:HA], lx[47:LW]};
        end
    endgenerate
@SCATTER@"#;

#[cfg(test)]
mod tests {
    use super::*;

    /// The engines decode an indexed transfer's table and on-chip operand
    /// with the plain transfer's field positions, and both indexed
    /// transfers with one index field.
    #[test]
    fn indexed_fields_match_plain_ones() {
        assert_eq!(field("dma.gather", "dst"), field("dma.load", "dst"));
        assert_eq!(field("dma.gather", "table"), field("dma.load", "src"));
        assert_eq!(field("dma.scatter_add", "table"), field("dma.store", "dst"));
        assert_eq!(field("dma.scatter_add", "src"), field("dma.store", "src"));
        assert_eq!(field("dma.scatter_add", "idx"), field("dma.gather", "idx"));
    }

    /// Only the store engine gets the read-modify-write, with one fp32
    /// adder per four bytes of a burst.
    #[test]
    fn the_store_engine_alone_adds() {
        let store = dma_block(Queue::Store, 4);
        let load = dma_block(Queue::Load, 4);
        assert!(store.contains("st_sum") && store.contains(crate::fp32_add::FP32_ADD));
        assert!(!load.contains("_sum") && !load.contains(crate::fp32_add::FP32_ADD));
        for text in [&store, &load] {
            // `@NAME@`: an '@', capitals or '_', an '@'.
            let left = text.match_indices('@').find(|&(i, _)| {
                let rest = &text[i + 1..];
                let n = rest
                    .find(|c: char| !(c.is_ascii_uppercase() || c == '_'))
                    .unwrap_or(rest.len());
                n > 0 && rest[n..].starts_with('@')
            });
            assert_eq!(left, None, "a placeholder is left");
        }
    }
}
