//! The compiler's own GEMM kernels (`tessera_compiler::gemm::gemm_kernel`)
//! and hand-written transposing transfers on the generated core: the
//! kernels keep C transposed in the accumulator and store it with
//! `dma.store ... transpose=4` (or, for a bf16 C, cast it on the vector
//! queue and store it with `transpose=2`), and transposed operands come in through
//! `dma.load ... transpose=E`; `dma.gather`; and `dma.scatter_add` (fp32
//! read-modify-write of HBM rows). Each program runs on the functional simulator
//! and on the core under Icarus Verilog; the final accumulator and HBM must
//! be bit-exact and the verdict exactly `ProgramRun::expected_verdict`
//! (`lead` = the first `dma.load`'s index + 1, `run` + 1 = the timing
//! model's total). Mutated transposes, gathers and scatter-adds must fail; Verilator
//! lints the core; a transfer the model ends by its bank cycles is refused.
//!
//! Tests that need a tool say so and pass when it is missing, unless
//! `TESSERA_REQUIRE_TOOLS=1`.

use tessera::cosim::{run_program_hbm, ProgramRun};
use tessera_compiler::gemm::{gemm_kernel, CInit, GemmSpec, HbmMatrix, Layout};
use tessera_isa::asm::assemble;
use tessera_isa::{Arch, DType, Op, Queue};
use tessera_rtl::core::core_module_name;
use tessera_rtl::pe::PeType;

mod hdl;
use hdl::{core_output, scratch, tool, verilator_lint, write_files};

/// `rows` x `cols` array, 8 KiB scratchpad of 8 x 32-byte banks, 4 KiB
/// accumulator; DMA as `fpga-8x8` (one engine, 64-byte bursts, 2 cycles per
/// burst, 12 cycles latency).
fn arch(rows: u32, cols: u32) -> Arch {
    let mut spec = Arch::preset("fpga-8x8").unwrap().spec().clone();
    spec.name = format!("compiled-{rows}x{cols}");
    spec.array.rows = rows;
    spec.array.cols = cols;
    spec.scratchpad.size_kib = 8;
    spec.scratchpad.banks = 8;
    spec.scratchpad.bank_width_bytes = 32;
    spec.accumulator.size_kib = 4;
    Arch::new(spec).unwrap()
}

/// Deterministic bytes: for bf16 (`two_byte`) every element a normal number
/// of moderate range; for fp32 (`four_byte`) small normal values; else any byte.
fn data(len: usize, elem: usize, seed: u64) -> Vec<u8> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 32) as u32
    };
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let x = next();
        match elem {
            2 => out.extend(
                (((x & 0x8000) | ((120 + (x >> 16) % 16) << 7) | (x & 0x7f)) as u16).to_le_bytes(),
            ),
            4 => out.extend(((x & 0x807f_ffff) | ((120 + (x >> 24) % 16) << 23)).to_le_bytes()),
            _ => out.push(x as u8),
        }
    }
    out.truncate(len);
    out
}

/// Runs `r` on the core; its verdict must be exactly the expected one.
fn check(name: &str, r: &ProgramRun) {
    if !tool("iverilog") {
        return;
    }
    let out = core_verdict(name, r, &|t| t);
    assert!(
        out.lines().any(|l| l == r.expected_verdict()),
        "{name}: expected {}, got:\n{out}",
        r.expected_verdict()
    );
}

/// The core's output on `r`'s files, after `mutate` on the core's source.
fn core_verdict(name: &str, r: &ProgramRun, mutate: &dyn Fn(String) -> String) -> String {
    core_output(name, r, mutate)
}

/// Element sizes of the transposing transfers of queue `q`.
fn transposes(r: &ProgramRun, q: Queue) -> Vec<u64> {
    r.program
        .queue(q)
        .iter()
        .filter_map(|i| match i.op {
            Op::DmaLoad { transpose, .. } | Op::DmaStore { transpose, .. } => {
                transpose.element_bytes()
            }
            _ => None,
        })
        .collect()
}

/// One compiled GEMM: input type, (m, n, k), layouts of A and B, C's start.
type GemmCase = (DType, (u64, u64, u64), (Layout, Layout), CInit);

/// Builds and runs case `c` on `arch`: A at 0, B at 0x1000, C at 0x2000.
fn gemm(arch: &Arch, case: GemmCase, seed: u64) -> ProgramRun {
    gemm_out(
        arch,
        case,
        tessera_compiler::gemm::accumulator_type(case.0),
        seed,
    )
}

/// As [`gemm`] with C stored as `out`.
fn gemm_out(
    arch: &Arch,
    (dt, (m, n, k), (la, lb), init): GemmCase,
    out: DType,
    seed: u64,
) -> ProgramRun {
    let mat = |addr, dtype, layout| HbmMatrix {
        addr,
        row_stride: 0,
        dtype,
        layout,
    };
    let spec = GemmSpec {
        name: "g".into(),
        m,
        n,
        k,
        a: mat(0, dt, la),
        b: mat(0x1000, dt, lb),
        c: mat(0x2000, out, Layout::RowMajor),
        c_init: init,
    };
    let p = gemm_kernel(arch, &spec).unwrap();
    let e = dt.size_bytes() as usize;
    let mut hbm = data((m * k) as usize * e, e, seed);
    hbm.resize(0x1000, 0);
    hbm.extend(data((k * n) as usize * e, e, seed ^ 0x55));
    hbm.resize(0x2000, 0);
    if init == CInit::AddToExisting {
        let c = out.size_bytes() as usize;
        hbm.extend(data((m * n) as usize * c, c, seed ^ 0xaa));
    }
    run_program_hbm(p, &hbm, &[], &[]).unwrap()
}

#[test]
fn compiled_gemm_kernels_run_on_the_core() {
    use Layout::{RowMajor as R, Transposed as T};
    let cases: &[(u32, u32, GemmCase)] = &[
        (4, 4, (DType::Int8, (10, 9, 7), (R, R), CInit::Zero)),
        (4, 4, (DType::Bf16, (10, 9, 7), (R, R), CInit::Zero)),
        (4, 4, (DType::Int8, (8, 8, 8), (R, R), CInit::AddToExisting)),
        (4, 4, (DType::Bf16, (5, 6, 9), (R, R), CInit::AddToExisting)),
        (4, 4, (DType::Int8, (6, 5, 7), (T, R), CInit::Zero)),
        (4, 4, (DType::Bf16, (6, 5, 7), (R, T), CInit::AddToExisting)),
        (4, 4, (DType::Int8, (7, 6, 5), (T, T), CInit::AddToExisting)),
        (3, 5, (DType::Bf16, (7, 11, 4), (T, R), CInit::Zero)),
        (3, 5, (DType::Int8, (9, 4, 6), (R, T), CInit::Zero)),
    ];
    let (mut loads, mut stores) = (0, 0);
    for (i, &(rows, cols, case)) in cases.iter().enumerate() {
        let r = gemm(&arch(rows, cols), case, i as u64 + 1);
        loads += transposes(&r, Queue::Load).len();
        stores += transposes(&r, Queue::Store).len();
        check(&format!("gemm{i}"), &r);
    }
    // The kernels use both transposing paths.
    assert!(loads > 0 && stores > 0, "{loads} {stores}");
}

/// bf16 GEMMs whose C is bf16: the kernel casts each finished fp32 block
/// on the vector queue (`v.un copy` into the scratchpad) and stores the
/// bf16 block with `transpose=2`, so load, matrix, vector and store queues
/// all run, handing tiles over with tokens.
#[test]
fn compiled_gemm_kernels_with_a_bf16_output_run_their_cast_on_the_core() {
    use Layout::{RowMajor as R, Transposed as T};
    let cases: &[(u32, u32, GemmCase)] = &[
        (4, 4, (DType::Bf16, (10, 9, 7), (R, R), CInit::Zero)),
        (3, 5, (DType::Bf16, (7, 11, 4), (T, R), CInit::Zero)),
        (4, 4, (DType::Bf16, (6, 5, 7), (R, T), CInit::AddToExisting)),
    ];
    for (i, &(rows, cols, case)) in cases.iter().enumerate() {
        // Banks wide enough that the cast's tiles never wait for them (the
        // core does not model bank stalls; `run_program_hbm` refuses them).
        let mut spec = arch(rows, cols).spec().clone();
        spec.scratchpad.banks = 16;
        spec.accumulator.banks = 8;
        let r = gemm_out(&Arch::new(spec).unwrap(), case, DType::Bf16, 40 + i as u64);
        assert!(
            r.program
                .queue(Queue::Vector)
                .iter()
                .any(|i| i.op.mnemonic() == "v.un"),
            "case {i}: the cast runs on the vector queue"
        );
        assert!(transposes(&r, Queue::Store).contains(&2), "case {i}");
        check(&format!("gemm-bf16-out{i}"), &r);
    }
}

/// A transposing load of a `rows` x `row_bytes` box (`planes` planes) with
/// element size `e`, HBM strides `hs` and on-chip strides `ls` (row, plane;
/// 0 = packed), from HBM `src`; then an untransposed store of the on-chip
/// box as it landed (to 0x1000) and a transposing store back (to 0x1800,
/// with the HBM strides), so the final HBM shows both directions. The
/// matrix queue runs one small fold between them (the core needs one).
fn transfer_program(
    (rows, row_bytes, planes): (u64, u64, u64),
    e: u64,
    src: u64,
    hs: (u64, u64),
    ls: (u64, u64),
) -> String {
    let (drows, drb) = (row_bytes / e, rows * e);
    let lrow = if ls.0 == 0 { drb } else { ls.0 };
    let lplane = if ls.1 == 0 { drows * lrow } else { ls.1 };
    format!(
        "\
.queue load
    dma.hstride row={}, plane={}
    dma.lstride row={}, plane={}
    addr.set r0, {src}
    addr.set r1, 256
    dma.load dst=spad[r1], src=hbm[r0], rows={rows}, row_bytes={row_bytes}, planes={planes}, transpose={e}, signal=t0
    halt
.queue matrix
    addr.set r2, 0
    mm.preload b=spad[r2]:int8, k=1, n=1, transpose=false, wait=t0
    mm.compute a=spad[r2]:int8, c=acc[r2]:int32, m=1, transpose=false, mode=overwrite, signal=t1
    halt
.queue store
    dma.hstride row=0, plane=0
    dma.lstride row={lrow}, plane={lplane}
    addr.set r0, 0x1000
    addr.set r1, 256
    dma.store dst=hbm[r0], src=spad[r1], rows={drows}, row_bytes={drb}, planes={planes}, transpose=none, wait=t1
    dma.hstride row={}, plane={}
    dma.lstride row={}, plane={}
    addr.set r0, 0x1800
    dma.store dst=hbm[r0], src=spad[r1], rows={drows}, row_bytes={drb}, planes={planes}, transpose={e}
    halt
",
        hs.0, hs.1, ls.0, ls.1, hs.0, hs.1, ls.0, ls.1
    )
}

/// (rows, row_bytes, planes), E, HBM source, HBM strides, on-chip strides.
type TransferCase = ((u64, u64, u64), u64, u64, (u64, u64), (u64, u64));

/// Hand-written transposing loads and stores: E = 1, 2, 4, packed and
/// strided, one to three planes, HBM boxes that start mid-burst and
/// mid-element.
fn transfer_runs() -> Vec<(String, ProgramRun)> {
    let cases: &[TransferCase] = &[
        ((4, 8, 1), 1, 0, (0, 0), (0, 0)),
        ((5, 12, 2), 1, 61, (20, 112), (8, 112)),
        ((3, 8, 1), 2, 0, (0, 0), (0, 0)),
        ((6, 10, 3), 2, 33, (14, 96), (16, 96)),
        ((9, 16, 1), 4, 0, (0, 0), (0, 0)),
        ((3, 24, 2), 4, 50, (28, 90), (20, 128)),
    ];
    let a = arch(2, 2);
    cases
        .iter()
        .enumerate()
        .map(|(i, &(shape, e, src, hs, ls))| {
            let text = transfer_program(shape, e, src, hs, ls);
            let p = assemble(&text, "t.s", Some(&a)).unwrap_or_else(|e| panic!("{e}\n{text}"));
            let hbm = data(0x1000, 1, i as u64 + 7);
            let r = run_program_hbm(p, &hbm, &[], &[]).unwrap_or_else(|e| panic!("{e}\n{text}"));
            (format!("transfer{i}"), r)
        })
        .collect()
}

#[test]
fn hand_written_transposing_transfers_run_on_the_core() {
    for (name, r) in transfer_runs() {
        check(&name, &r);
    }
}

#[test]
fn mutated_transposes_fail() {
    if !tool("iverilog") {
        return;
    }
    let runs = transfer_runs();
    let mutants: [(&str, &str, &str); 3] = [
        (
            "load element size doubled",
            "ld_lstep_q <= ld_tr ? 48'd1 << ld_sh : ld_lrs;",
            "ld_lstep_q <= ld_tr ? 48'd2 << ld_sh : ld_lrs;",
        ),
        (
            "store row step the on-chip row stride",
            "st_lstep_q <= st_tr ? 48'd1 << st_sh : st_lrs;",
            "st_lstep_q <= st_lrs;",
        ),
        (
            "store destination box untransposed",
            "wire [47:0] st_drows = st_tr ? st_rb >> st_sh : st_rows;",
            "wire [47:0] st_drows = st_rows;",
        ),
    ];
    for (what, from, to) in mutants {
        let mutate = |t: String| {
            assert!(t.contains(from), "{what}: pattern not in the core");
            t.replace(from, to)
        };
        // Every mutant breaks at least one of the transfers (not every
        // transfer takes every path: a store mutant spares the loads).
        let failed = runs.iter().any(|(name, r)| {
            let out = core_verdict(&format!("{name}-mutant"), r, &mutate);
            !out.lines().any(|l| l == r.expected_verdict())
        });
        assert!(failed, "mutant passed every transfer: {what}");
    }
}

#[test]
fn verilator_lints_the_transposing_core_clean() {
    if !tool("verilator") {
        return;
    }
    let dir = scratch("lint");
    for (rows, cols) in [(4, 4), (3, 5)] {
        let r = gemm(
            &arch(rows, cols),
            (
                DType::Bf16,
                (5, 6, 7),
                (Layout::Transposed, Layout::RowMajor),
                CInit::Zero,
            ),
            3,
        );
        // One type a shape (each lint covers the libm datapath too).
        {
            let ty = if rows == cols {
                PeType::Int8
            } else {
                PeType::Bf16
            };
            let shape = tessera_rtl::core::CoreShape::of(&r.core);
            let files = tessera_rtl::core::core_sources(&r.program.arch, ty, shape).unwrap();
            let names = write_files(&dir, &files);
            if let Err(e) = verilator_lint(&dir, &core_module_name(ty), &names) {
                panic!("{ty:?} {rows}x{cols}:\n{e}");
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A transfer the timing model ends by its on-chip bank cycles (16 one-byte
/// rows 256 bytes apart, all in one bank: 16 cycles against one 2-cycle HBM
/// burst, so 14 longer) is refused
/// by the co-simulation: the core's DMA times HBM bursts only, so no
/// verdict would be exact.
#[test]
fn a_transfer_bound_by_on_chip_banks_is_refused() {
    let text = "\
.queue load
    dma.lstride row=256, plane=0
    dma.load dst=spad[r0], src=hbm[r0], rows=1, row_bytes=16, planes=1, transpose=1, signal=t0
    halt
.queue matrix
    mm.preload b=spad[r0]:int8, k=1, n=1, transpose=false, wait=t0
    halt
";
    let p = assemble(text, "banks.s", Some(&arch(2, 2))).unwrap();
    let e = run_program_hbm(p, &data(64, 1, 1), &[], &[])
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("DMA transfers take 14 cycles in all longer for on-chip banks"),
        "{e}"
    );
}

/// `dma.gather` cases: (indices, row_bytes, HBM row stride, on-chip row
/// stride; strides 0 = packed).
type GatherCase = (&'static [i32], u64, u64, u64);

/// Gathers from a table at HBM 0x105 (eight rows) by `idx`, loaded to the
/// scratchpad and the accumulator first: once into the scratchpad (stored
/// back to HBM 0x1800 so the final HBM shows it) and once into the
/// accumulator.
fn gather_run(name: &str, (idx, rb, hs, ls): GatherCase, seed: u64) -> (String, ProgramRun) {
    let n = idx.len();
    let text = format!(
        "\
.queue load
    addr.set r0, 0
    addr.set r1, 4000
    addr.set r4, 2048
    dma.load dst=spad[r1], src=hbm[r0], rows=1, row_bytes={ib}, planes=1, transpose=none
    dma.load dst=acc[r4], src=hbm[r0], rows=1, row_bytes={ib}, planes=1, transpose=none
    dma.hstride row={hs}, plane=0
    dma.lstride row={ls}, plane=0
    addr.set r2, 0x105
    addr.set r3, 1024
    dma.gather dst=spad[r3], table=hbm[r2], idx=spad[r1], rows={n}, row_bytes={rb}
    dma.gather dst=acc[r0+64], table=hbm[r2], idx=acc[r4], rows={n}, row_bytes={rb}, signal=t0
    halt
.queue matrix
    addr.set r2, 0
    addr.set r3, 3072
    mm.preload b=spad[r2]:int8, k=1, n=1, transpose=false, wait=t0
    mm.compute a=spad[r2]:int8, c=acc[r3]:int32, m=1, transpose=false, mode=overwrite, signal=t1
    halt
.queue store
    dma.lstride row={ls}, plane=0
    addr.set r0, 0x1800
    addr.set r1, 1024
    dma.store dst=hbm[r0], src=spad[r1], rows={n}, row_bytes={rb}, planes=1, transpose=none, wait=t1
    halt
",
        ib = 4 * n
    );
    let p =
        assemble(&text, "gather.s", Some(&arch(2, 2))).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let mut hbm: Vec<u8> = idx.iter().flat_map(|i| i.to_le_bytes()).collect();
    hbm.resize(0x105, 0);
    hbm.extend(data(0x1000 - 0x105, 1, seed));
    let r = run_program_hbm(p, &hbm, &[], &[]).unwrap_or_else(|e| panic!("{e}\n{text}"));
    (name.to_string(), r)
}

/// Negative indices (zero rows), repeats, packed and strided rows, rows
/// of one and two bursts, a table that starts mid-burst.
fn gather_runs() -> Vec<(String, ProgramRun)> {
    let cases: [GatherCase; 3] = [
        (&[3, -1, 0, 7, 3], 12, 0, 0),
        (&[5, 1, -7, 1, 0, 6], 70, 80, 72),
        (&[2, 0, -1], 8, 100, 16),
    ];
    cases
        .iter()
        .enumerate()
        .map(|(i, &c)| gather_run(&format!("gather{i}"), c, i as u64 + 3))
        .collect()
}

#[test]
fn gathers_run_on_the_core() {
    for (name, r) in gather_runs() {
        check(&name, &r);
    }
}

#[test]
fn mutated_gathers_fail() {
    if !tool("iverilog") {
        return;
    }
    let runs = gather_runs();
    let mutants: [(&str, &str, &str); 3] = [
        (
            "negative index copies the table",
            "wire ld_zero = ld_g_q && ld_kv[31];",
            "wire ld_zero = 1'b0;",
        ),
        (
            "gather bursts split at HBM boundaries",
            "(ld_g_q ? {BB{1'b0}} : ld_h[BB-1:0])",
            "ld_h[BB-1:0]",
        ),
        (
            "index read one entry late",
            "wire [47:0] ld_ix = ld_ia_q + {ld_r[45:0], 2'b00};",
            "wire [47:0] ld_ix = ld_ia_q + {ld_r[45:0], 2'b00} + 48'd4;",
        ),
    ];
    for (what, from, to) in mutants {
        let mutate = |t: String| {
            assert!(t.contains(from), "{what}: pattern not in the core");
            t.replace(from, to)
        };
        let failed = runs.iter().any(|(name, r)| {
            let out = core_verdict(&format!("{name}-mutant"), r, &mutate);
            !out.lines().any(|l| l == r.expected_verdict())
        });
        assert!(failed, "mutant passed every gather: {what}");
    }
}

/// A `dma.scatter_add` case: indices (the first non-negative), row_bytes
/// (at least 12), HBM row stride, on-chip row stride (strides 0 = packed,
/// at most 88), HBM cycles per burst (1, 2 or 4), HBM latency in cycles
/// (at 100 MHz) and the core's element type.
type ScatterCase<'a> = (&'a [i32], u64, u64, u64, u32, u32, PeType);

/// HBM bytes of the scatter-add programs: indices at 0, the scratchpad
/// source rows at 0x100, the accumulator's at 0x480, the table (eight rows)
/// at 0x814, four bytes past a burst boundary.
const SCATTER_HBM: usize = 0xc00;
const SCATTER_TABLE: usize = 0x814;

/// fp32 bytes for a scatter-add: a third specials (signed zeros, the
/// smallest and largest subnormals, the largest finite value, infinities,
/// NaNs, one and the next value after it), the rest normal numbers whose
/// exponents lie within 8 of each other, so most sums round.
fn fp32_data(count: usize, seed: u64) -> Vec<u8> {
    const SPECIALS: [u32; 14] = [
        0x0000_0000,
        0x8000_0000,
        0x0000_0001,
        0x8000_0001,
        0x007f_ffff,
        0x807f_ffff,
        0x7f7f_ffff,
        0xff7f_ffff,
        0x7f80_0000,
        0xff80_0000,
        0x7fc0_0000,
        0xffa0_0001,
        0x3f80_0000,
        0x3f80_0001,
    ];
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 32) as u32
    };
    (0..count)
        .flat_map(|_| {
            let x = next();
            let w = if x % 3 == 0 {
                SPECIALS[(x >> 8) as usize % SPECIALS.len()]
            } else {
                (x & 0x807f_ffff) | ((124 + (x >> 24) % 8) << 23)
            };
            w.to_le_bytes()
        })
        .collect()
}

/// Two scatter-adds into one table (eight rows at [`SCATTER_TABLE`], HBM row
/// stride `hs`): first the scratchpad's rows by the scratchpad's indices,
/// then the accumulator's rows by the accumulator's indices (the same
/// list), so a row gets up to twice as many sums as its index repeats.
/// The load queue brings indices and rows in; the matrix queue runs one
/// small fold (the core needs one) between the loads and the store queue.
/// Row 0 of the scratchpad's source cancels its table row's first element
/// to +0, adds -0 to -0 and a negative subnormal to a positive one, and
/// row 0 of the accumulator's adds -0 to each; where idx[0] does not
/// repeat, the simulator's results must be +0, -0 and -2^-148.
fn scatter_run(name: &str, case: ScatterCase, seed: u64) -> (String, ProgramRun) {
    let (idx, rb, hs, ls, k, lat, ty) = case;
    let n = idx.len();
    let (b, c) = match ty {
        PeType::Int8 => ("int8", "int32"),
        PeType::Bf16 => ("bf16", "fp32"),
    };
    let text = format!(
        "\
.queue load
    addr.set r0, 0
    addr.set r1, 4000
    addr.set r4, 2048
    dma.load dst=spad[r1], src=hbm[r0], rows=1, row_bytes={ib}, planes=1, transpose=none
    dma.load dst=acc[r4], src=hbm[r0], rows=1, row_bytes={ib}, planes=1, transpose=none
    dma.hstride row={ls}, plane=0
    dma.lstride row={ls}, plane=0
    addr.set r2, 0x100
    addr.set r3, 1024
    dma.load dst=spad[r3], src=hbm[r2], rows={n}, row_bytes={rb}, planes=1, transpose=none
    dma.load dst=acc[r0], src=hbm[r2+0x380], rows={n}, row_bytes={rb}, planes=1, transpose=none, signal=t0
    halt
.queue matrix
    addr.set r2, 0
    addr.set r3, 3072
    mm.preload b=spad[r2]:{b}, k=1, n=1, transpose=false, wait=t0
    mm.compute a=spad[r2]:{b}, c=acc[r3]:{c}, m=1, transpose=false, mode=overwrite, signal=t1
    halt
.queue store
    dma.hstride row={hs}, plane=0
    dma.lstride row={ls}, plane=0
    addr.set r0, 0
    addr.set r1, 4000
    addr.set r2, {table:#x}
    addr.set r3, 1024
    addr.set r4, 2048
    dma.scatter_add table=hbm[r2], src=spad[r3], idx=spad[r1], rows={n}, row_bytes={rb}, wait=t1
    dma.scatter_add table=hbm[r2], src=acc[r0], idx=acc[r4], rows={n}, row_bytes={rb}
    halt
",
        ib = 4 * n,
        table = SCATTER_TABLE,
    );
    let mut spec = arch(2, 2).spec().clone();
    spec.array.input_types = vec![ty.dtype()];
    // 64-byte bursts: 6.4 GB/s at 100 MHz is 1 cycle a burst.
    spec.hbm.bandwidth_gb_per_s = 6.4 / f64::from(k);
    spec.hbm.latency_ns = 10.0 * f64::from(lat);
    let arch = Arch::new(spec).unwrap();
    let p = assemble(&text, "scatter.s", Some(&arch)).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let mut hbm: Vec<u8> = idx.iter().flat_map(|i| i.to_le_bytes()).collect();
    hbm.resize(0x100, 0);
    hbm.extend(fp32_data((SCATTER_HBM - 0x100) / 4, seed));
    // Row 0's specials, against its table row as the transfer starts.
    let put =
        |hbm: &mut Vec<u8>, at: usize, w: u32| hbm[at..at + 4].copy_from_slice(&w.to_le_bytes());
    let stride = if hs == 0 { rb } else { hs } as usize;
    let t = SCATTER_TABLE + stride * usize::try_from(idx[0]).expect("idx[0] >= 0");
    put(&mut hbm, t, 0x3fc0_0001);
    put(&mut hbm, 0x100, 0xbfc0_0001);
    put(&mut hbm, t + 4, 0x8000_0000);
    put(&mut hbm, 0x104, 0x8000_0000);
    put(&mut hbm, t + 8, 0x0000_0001);
    put(&mut hbm, 0x108, 0x8000_0003);
    // The accumulator's row 0 (the second transfer) adds -0 to each.
    for e in 0..3 {
        put(&mut hbm, 0x480 + 4 * e, 0x8000_0000);
    }
    let r = run_program_hbm(p, &hbm, &[], &[]).unwrap_or_else(|e| panic!("{e}\n{text}"));
    // The first sums are the specials' (the simulator agrees).
    let word = |at: usize| u32::from_le_bytes(r.hbm_out[at..at + 4].try_into().unwrap());
    if !idx[1..].contains(&idx[0]) {
        assert_eq!(
            (word(t), word(t + 4), word(t + 8)),
            (0, 0x8000_0000, 0x8000_0002),
            "{name}: the specials of row 0",
        );
    }
    assert_ne!(r.hbm_in, r.hbm_out, "{name}: the table changes");
    (name.to_string(), r)
}

/// Negative indices, repeats adjacent and far apart, the table's first and
/// last rows; packed and strided rows of one and two bursts, all starting
/// mid-burst (the table is 4 bytes past a burst boundary); 1 and 2 cycles a
/// burst; int8 and bf16 cores.
fn scatter_runs() -> Vec<(String, ProgramRun)> {
    let cases: [ScatterCase; 5] = [
        (&[0, -1, 3, 7, 3, 3], 12, 0, 0, 2, 12, PeType::Int8),
        (&[5, 5, 1, -7, 1, 0, 6], 72, 80, 80, 1, 12, PeType::Int8),
        (&[2, 2, 2, -1, 0], 16, 0, 32, 1, 12, PeType::Int8),
        (&[7, 0, 7, 7, -100], 64, 64, 0, 1, 12, PeType::Bf16),
        (&[1, 6, 6, 4, 6], 20, 24, 0, 2, 12, PeType::Bf16),
    ];
    cases
        .iter()
        .enumerate()
        .map(|(i, &c)| scatter_run(&format!("scatter{i}"), c, i as u64 + 11))
        .collect()
}

#[test]
fn scatter_adds_run_on_the_core() {
    for (name, r) in scatter_runs() {
        eprintln!(
            "{name}: model {} cycles, {}",
            r.cycles,
            r.expected_verdict()
        );
        check(&name, &r);
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 8, ..Default::default() })]

    /// Random index lists (negative, repeated, first and last table rows),
    /// row lengths of one and two bursts, packed and strided rows, 1, 2 or 4
    /// cycles a burst, latency 6 or 12 cycles, int8 or bf16 core, random
    /// data: bit-exact and run + 1 = model.
    #[test]
    fn random_scatter_adds_match_the_simulator(
        first in 0i32..8,
        rest in proptest::collection::vec(-3i32..8, 0..8),
        words in 3u64..=18,
        hs_pad in proptest::option::of(0u64..=4),
        ls_pad in proptest::option::of(0u64..=4),
        k in proptest::sample::select(vec![1u32, 2, 4]),
        lat in proptest::sample::select(vec![6u32, 12]),
        bf16 in proptest::prelude::any::<bool>(),
        seed in proptest::prelude::any::<u64>(),
    ) {
        let idx: Vec<i32> = std::iter::once(first).chain(rest).collect();
        let rb = 4 * words;
        let stride = |pad: Option<u64>| pad.map_or(0, |p| rb + 4 * p);
        let ty = if bf16 { PeType::Bf16 } else { PeType::Int8 };
        let (name, r) = scatter_run(
            "prop-scatter",
            (&idx, rb, stride(hs_pad), stride(ls_pad), k, lat, ty),
            seed,
        );
        check(&name, &r);
    }
}

/// `verilator --lint-only -Wall` of the scatter-add cases' cores (int8 and
/// bf16, one and two cycles a burst), without waivers.
#[test]
fn verilator_lints_the_scatter_add_cores_clean() {
    if !tool("verilator") {
        return;
    }
    let dir = scratch("lint-scatter");
    for (name, r) in scatter_runs() {
        let files = tessera::cosim::core_files(&r).unwrap();
        let names: Vec<String> = write_files(&dir, &files)
            .into_iter()
            .filter(|n| !n.starts_with("tb_"))
            .collect();
        if let Err(e) = verilator_lint(&dir, &core_module_name(r.core.ty), &names) {
            panic!("{name}:\n{e}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The scatter-add verdict of `r` with `mutate` applied to the file named
/// `file` (the core or its fp32 adder), `name` its scratch directory.
fn scatter_verdict(
    name: &str,
    r: &ProgramRun,
    file: &str,
    mutate: &dyn Fn(String) -> String,
) -> String {
    let dir = scratch(name);
    let files: Vec<(String, String)> = tessera::cosim::core_files(r)
        .unwrap()
        .into_iter()
        .map(|(n, t)| {
            if n.starts_with(file) {
                (n.clone(), mutate(t))
            } else {
                (n, t)
            }
        })
        .collect();
    let out = hdl::iverilog_files(&dir, &files);
    let _ = std::fs::remove_dir_all(&dir);
    out
}

/// A change to a generated source's text.
type Mutation = Box<dyn Fn(String) -> String>;

/// Mutants of the read-modify-write that must fail on at least one case
/// (the stale-row one only where a burst takes one cycle and a one-burst
/// row's index repeats at once: scatter2 and scatter3).
#[test]
fn mutated_scatter_adds_fail() {
    if !tool("iverilog") {
        return;
    }
    let runs = scatter_runs();
    // A write that lands a cycle after its slot (a posted write without
    // forwarding): with one cycle a burst, the next row's read slot reads
    // the table before it, so an adjacent repeated index adds to a stale row.
    let posted = |t: String| {
        let write = "if (st_on[b]) hbm[st_hb[b*HA +: HA]] <= st_sa_q ? st_sum[b*8 +: 8] : ";
        let late = "reg [BURST-1:0] pw_on; reg [BURST*HA-1:0] pw_a; reg [BURST*8-1:0] pw_d;
    always @(posedge clk) begin pw_on <= st_sa_q ? st_on : {BURST{1'b0}}; pw_a <= st_hb; pw_d <= st_sum; end
    integer b;";
        assert!(t.contains(write) && t.contains("    integer b;"));
        t.replacen("    integer b;", late, 1).replace(
            write,
            "if (pw_on[b]) hbm[pw_a[b*HA +: HA]] <= pw_d[b*8 +: 8];\n            else if (st_on[b] && !st_sa_q) hbm[st_hb[b*HA +: HA]] <= ",
        )
    };
    let replace = |from: &'static str, to: &'static str| {
        move |t: String| {
            assert!(t.contains(from), "pattern not in the source: {from}");
            t.replace(from, to)
        }
    };
    let mutants: Vec<(&str, &str, Mutation)> = vec![
        (
            "the source written without adding",
            "tessera_core_",
            Box::new(replace(
                "st_sa_q ? st_sum[b*8 +: 8]",
                "st_sa_q ? st_src[b*8 +: 8]",
            )),
        ),
        (
            "a negative index not skipped",
            "tessera_core_",
            Box::new(replace("(st_ph && !st_zero)", "st_ph")),
        ),
        (
            "a repeated index reads a stale row",
            "tessera_core_",
            Box::new(posted),
        ),
        (
            "the adder truncates instead of rounding to nearest even",
            "tessera_fp32_add",
            Box::new(replace(
                "wire up = n[2] & (n[1] | n[0] | n[3]);",
                "wire up = 1'b0;",
            )),
        ),
        (
            "scatter-add bursts split at HBM boundaries",
            "tessera_core_",
            Box::new(replace(
                "(st_g_q ? {BB{1'b0}} : st_h[BB-1:0])",
                "st_h[BB-1:0]",
            )),
        ),
        (
            "one bus slot a burst (no write slot)",
            "tessera_core_",
            Box::new(replace(" && (!st_sa_q || st_ph);", ";")),
        ),
    ];
    for (what, file, mutate) in &mutants {
        let failed = runs.iter().any(|(name, r)| {
            let out = scatter_verdict(&format!("{name}-mutant"), r, file, mutate);
            !out.lines().any(|l| l == r.expected_verdict())
        });
        assert!(failed, "mutant passed every scatter-add: {what}");
    }
}

/// The compiler's node context for one `embedding_grad` node: dy, ids and
/// the gradient table at fixed HBM addresses (no scratch, rotary tables or
/// attention).
struct EmbeddingPlaces(Arch, [u64; 3]);

impl tessera_compiler::lower::vector_ops::Placement for EmbeddingPlaces {
    fn addr(&self, v: tessera_compiler::ir::ValueId) -> u64 {
        self.1[v.0]
    }
}

impl tessera_compiler::lower::graph_ops::Context for EmbeddingPlaces {
    fn scratch(&mut self, _bytes: u64) -> u64 {
        unreachable!("embedding_grad takes no HBM scratch")
    }
    fn rope_tables(&self, _: f64, _: u64, _: u64, _: bool) -> Option<(u64, u64)> {
        None
    }
    fn arch(&self) -> &Arch {
        &self.0
    }
    fn attention_forward(
        &mut self,
        _: &tessera_compiler::lower::attention::AttentionSpec,
    ) -> Result<tessera_isa::Program, tessera_compiler::error::LowerError> {
        unreachable!("embedding_grad has no attention")
    }
}

/// The compiler's own embedding-gradient kernel (`graph_ops::lower_node`
/// on `embedding_grad`: table[ids[i]] += dy[i], negative ids skipped) for
/// dy [2, 5, 6] and ids [2, 5] (-100 twice, 3 and 6 repeated) into a 7-row
/// table, run on the core: its load and store queues as compiled
/// (blocks of ids and dy rows loaded, `dma.scatter_add` from the
/// scratchpad), with a matrix queue of one preload added (the core needs
/// one; it touches nothing the kernel reads or writes). The table starts
/// at zero, as the node's zero-fill kernel (on the vector queue) leaves it.
#[test]
fn the_compiled_embedding_gradient_runs_on_the_core() {
    use tessera_compiler::ir::{Graph, Op as IrOp, TensorType};
    let arch = arch(4, 4);
    let mut g = Graph::new("embedding_grad");
    let param = |g: &mut Graph, name: &str, shape: &[u64], dtype| {
        g.push(
            IrOp::Param {
                name: name.into(),
                ty: TensorType::new(shape, dtype),
            },
            &[],
        )
        .unwrap()
    };
    let dy = param(&mut g, "dy", &[2, 5, 6], DType::Fp32);
    let ids = param(&mut g, "ids", &[2, 5], DType::Int32);
    let out = g.push(IrOp::EmbeddingGrad { rows: 7 }, &[dy, ids]).unwrap();
    let (dy_at, ids_at, table_at) = (0x0u64, 0x400u64, 0x800u64);
    let mut cx = EmbeddingPlaces(arch.clone(), [dy_at, ids_at, table_at]);
    let kernels = tessera_compiler::lower::graph_ops::lower_node(&g, out.0, &mut cx)
        .unwrap()
        .expect("embedding_grad is lowered here");
    let scatter = kernels
        .iter()
        .find_map(|k| match k {
            tessera_compiler::lower::Kernel::Program(p)
                if p.queue(Queue::Store)
                    .iter()
                    .any(|i| matches!(i.op, Op::DmaScatterAdd { .. })) =>
            {
                Some(p)
            }
            _ => None,
        })
        .expect("a kernel that scatter-adds");
    let text = format!(
        "{}\n.queue matrix\n{}    addr.set r1, 0x1f00\n    mm.preload b=spad[r1]:int8, k=1, n=1, transpose=false\n    halt\n",
        tessera_isa::disasm::disassemble(scatter),
        // The preload starts after the kernel's first load, so the lead is that load's.
        "    nop\n".repeat(8)
    );
    let p =
        assemble(&text, "embedding_grad.s", Some(&arch)).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let idx: [i32; 10] = [3, -100, 6, 6, 1, 2, 5, -100, 0, 3];
    let mut hbm = fp32_data(60, 21);
    hbm.resize(ids_at as usize, 0);
    hbm.extend(idx.iter().flat_map(|i| i.to_le_bytes()));
    hbm.resize(table_at as usize + 7 * 24, 0);
    let r = run_program_hbm(p, &hbm, &[], &[]).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_ne!(r.hbm_in, r.hbm_out, "the table changes");
    if !tool("iverilog") {
        return;
    }
    // Run: exactly the model's (run + 1 = model). Lead: the kernel's first
    // load waits (`nop wait=t1`, load#w) for a token the store queue's
    // first `nop signal=t1` (store#s) gives in its issue cycle s, visible
    // at s + 1; the front ends issue one instruction a cycle, so the load
    // (load#l) starts at max(l, s + 1 + l - w) and lead is that + 1 (the
    // model runs the sequencer instructions in zero time, so the verdict's
    // lead = l + 1 assumes no such wait).
    let at = |q: Queue, f: &dyn Fn(&tessera_isa::Instruction) -> bool| {
        r.program.queue(q).iter().position(f).unwrap() as u64
    };
    let t1 = |i: &tessera_isa::Instruction| i.op.mnemonic() == "nop";
    let w = at(Queue::Load, &|i| t1(i) && i.wait.iter().next().is_some());
    let s = at(Queue::Store, &|i| t1(i) && i.signal.iter().next().is_some());
    let l = at(Queue::Load, &|i| i.op.mnemonic() == "dma.load");
    let (run, _) = hdl::pass_cycles(&r.expected_verdict()).unwrap();
    let out = core_verdict("embedding-grad", &r, &|t| t);
    assert_eq!(
        hdl::pass_cycles(&out),
        Some((run, l.max(s + 1 + l - w) + 1)),
        "{out}"
    );
}
