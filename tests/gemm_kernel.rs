//! The compiler's GEMM kernel (`tessera_compiler::gemm`) against the
//! simulator: random shapes with edge tiles, transposed operands, both
//! dataflows, single- and double-buffered weights, transposed C, both `CInit`s and every
//! input type give bit-exact results in functional mode (against a reference
//! that adds up in the machine's order), pass the dependency checker, use
//! only tokens t0..t9, run in timing mode with every MAC counted once and
//! are deterministic; large bf16 GEMMs on the
//! `default` preset reach 90% of array peak in timing mode; bad specs are
//! errors, not panics.

use proptest::prelude::*;
use tessera_compiler::gemm::{gemm_kernel, plan, CInit, GemmError, GemmSpec, HbmMatrix, Layout};
use tessera_isa::check::check;
use tessera_isa::program::MemSpace;
use tessera_isa::{Arch, DType, Dataflow, Queue};
use tessera_sim::{numerics, run_functional, simulate, Memory};

/// The fpga-8x8 core with every input type and small memories, so that
/// blocks, chunks and rings wrap even for small shapes.
fn small_arch(dataflow: Dataflow, double_buffered: bool) -> Arch {
    let mut s = Arch::preset("fpga-8x8").unwrap().spec().clone();
    s.name = "gemm-test".into();
    s.array.dataflow = dataflow;
    s.array.double_buffered_weights = double_buffered;
    s.array.input_types = vec![
        DType::Bf16,
        DType::Fp16,
        DType::Fp8E4M3,
        DType::Fp8E5M2,
        DType::Int8,
    ];
    s.scratchpad.size_kib = 4;
    s.accumulator.size_kib = 1;
    Arch::new(s).unwrap()
}

/// Deterministic xorshift stream.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// An element of type `t`: small integers for int8/int32, otherwise a
    /// value in [-2, 2) rounded to `t`.
    fn element(&mut self, t: DType) -> Vec<u8> {
        let mut out = vec![0u8; t.size_bytes() as usize];
        let x = match t {
            DType::Int8 | DType::Int32 => (self.next() % 255) as f32 - 127.0,
            _ => ((self.next() >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0,
        };
        numerics::store(t, x, &mut out);
        out
    }
}

/// Writes a random logical rows x cols matrix stored as `mat` says; returns
/// the logical element bytes, row-major.
fn fill(mem: &mut Memory, rng: &mut Rng, mat: &HbmMatrix, rows: u64, cols: u64) -> Vec<Vec<u8>> {
    let e = mat.dtype.size_bytes();
    let (srows, scols) = match mat.layout {
        Layout::RowMajor => (rows, cols),
        Layout::Transposed => (cols, rows),
    };
    let stride = if mat.row_stride == 0 {
        scols * e
    } else {
        mat.row_stride
    };
    let mut logical = vec![Vec::new(); (rows * cols) as usize];
    for sr in 0..srows {
        for sc in 0..scols {
            let v = rng.element(mat.dtype);
            mem.write(MemSpace::Hbm, mat.addr + sr * stride + sc * e, &v)
                .unwrap();
            let (r, c) = match mat.layout {
                Layout::RowMajor => (sr, sc),
                Layout::Transposed => (sc, sr),
            };
            logical[(r * cols + c) as usize] = v;
        }
    }
    logical
}

/// C as the machine computes it: per reduction chunk of `k_chunk`, a fused
/// multiply-add chain (wrapping int32 for int8) in increasing k from +0,
/// added to the accumulator (which starts from C_old or the first chunk),
/// then rounded to C's type.
fn reference(
    spec: &GemmSpec,
    k_chunk: u64,
    a: &[Vec<u8>],
    b: &[Vec<u8>],
    c_old: &[Vec<u8>],
) -> Vec<Vec<u8>> {
    let (m, n, k) = (spec.m, spec.n, spec.k);
    let int = spec.a.dtype == DType::Int8;
    let ct = spec.c.dtype;
    let mut out = Vec::new();
    for i in 0..m {
        for j in 0..n {
            let av = |kk: u64| &a[(i * k + kk) as usize];
            let bv = |kk: u64| &b[(kk * n + j) as usize];
            let old = &c_old[(i * n + j) as usize];
            let mut bytes = vec![0u8; ct.size_bytes() as usize];
            if int {
                let mut acc: Option<i32> = (spec.c_init == CInit::AddToExisting).then(|| {
                    let mut w = [0u8; 4];
                    numerics::store(DType::Int32, numerics::load(ct, old), &mut w);
                    if ct == DType::Int32 {
                        w.copy_from_slice(old);
                    }
                    i32::from_le_bytes(w)
                });
                for l0 in (0..k).step_by(k_chunk as usize) {
                    let mut s = 0i32;
                    for kk in l0..(l0 + k_chunk).min(k) {
                        s = s.wrapping_add(i32::from(av(kk)[0] as i8) * i32::from(bv(kk)[0] as i8));
                    }
                    acc = Some(acc.map_or(s, |x| x.wrapping_add(s)));
                }
                let acc = acc.unwrap().to_le_bytes();
                if ct == DType::Int32 {
                    bytes.copy_from_slice(&acc);
                } else {
                    numerics::store(ct, numerics::load(DType::Int32, &acc), &mut bytes);
                }
            } else {
                let mut acc: Option<f32> =
                    (spec.c_init == CInit::AddToExisting).then(|| numerics::load(ct, old));
                for l0 in (0..k).step_by(k_chunk as usize) {
                    let mut s = 0.0f32;
                    for kk in l0..(l0 + k_chunk).min(k) {
                        s = numerics::load(spec.a.dtype, av(kk))
                            .mul_add(numerics::load(spec.b.dtype, bv(kk)), s);
                    }
                    acc = Some(acc.map_or(s, |x| x + s));
                }
                numerics::store(ct, acc.unwrap(), &mut bytes);
            }
            out.push(bytes);
        }
    }
    out
}

/// Runs `spec` on `arch` in functional mode with random operands and
/// compares C with the reference; also checks the program statically.
fn check_gemm(arch: &Arch, spec: &GemmSpec, seed: u64) {
    let p = gemm_kernel(arch, spec).unwrap();
    let report = check(&p);
    assert!(report.is_clean(), "{:?}", report.findings);
    for q in Queue::ALL {
        for inst in p.queue(q) {
            assert!(
                (inst.wait.0 | inst.signal.0) >> 10 == 0,
                "{inst:?} uses t10..t15"
            );
        }
    }
    assert!(p.symbols.is_empty());
    assert_eq!(p.regions, vec![spec.name.clone()]);
    assert_eq!(gemm_kernel(arch, spec).unwrap().to_bytes(), p.to_bytes());
    // Timing mode runs it too (no deadlock), moving every byte it loads.
    let t = tessera_sim::run_timing(&p, 1 << 30, &mut |_| {}).unwrap();
    let c = t.counters;
    assert_eq!(c.dma_load_source_bytes, c.dma_load_dest_bytes);
    assert_eq!(c.dma_store_source_bytes, c.dma_store_dest_bytes);
    assert_eq!(c.macs.iter().sum::<u64>(), spec.m * spec.n * spec.k);

    let mut mem = Memory::new(arch);
    let mut rng = Rng(seed | 1);
    let a = fill(&mut mem, &mut rng, &spec.a, spec.m, spec.k);
    let b = fill(&mut mem, &mut rng, &spec.b, spec.k, spec.n);
    let c_old = fill(&mut mem, &mut rng, &spec.c, spec.m, spec.n);
    run_functional(&p, &mut mem, 1 << 30).unwrap();
    let k_chunk = plan(arch, spec).unwrap().k_chunk;
    let want = reference(spec, k_chunk, &a, &b, &c_old);
    let ec = spec.c.dtype.size_bytes();
    let transposed = spec.c.layout == Layout::Transposed;
    let stride = match (spec.c.row_stride, transposed) {
        (0, false) => spec.n * ec,
        (0, true) => spec.m * ec,
        (s, _) => s,
    };
    for i in 0..spec.m {
        for j in 0..spec.n {
            let (r, c) = if transposed { (j, i) } else { (i, j) };
            let got = mem
                .read_vec(
                    MemSpace::Hbm,
                    spec.c.addr + r * stride + c * ec,
                    ec as usize,
                )
                .unwrap();
            assert_eq!(
                got,
                want[(i * spec.n + j) as usize],
                "C[{i}][{j}] of {spec:?}"
            );
        }
    }
}

/// A spec with A, B and C placed one after another, each row padded by `pad` elements.
#[allow(clippy::too_many_arguments)]
fn spec(
    (m, n, k): (u64, u64, u64),
    (ta, tb, tc): (DType, DType, DType),
    (la, lb, lc): (Layout, Layout, Layout),
    pad: u64,
    c_init: CInit,
) -> GemmSpec {
    let mat = |addr: u64, dtype: DType, layout: Layout, cols: u64| HbmMatrix {
        addr,
        row_stride: if pad == 0 {
            0
        } else {
            (cols + pad) * dtype.size_bytes()
        },
        dtype,
        layout,
    };
    let a_cols = if la == Layout::RowMajor { k } else { m };
    let b_cols = if lb == Layout::RowMajor { n } else { k };
    let c_cols = if lc == Layout::RowMajor { n } else { m };
    let a = mat(64, ta, la, a_cols);
    let b = mat(64 * 1024, tb, lb, b_cols);
    let c = mat(128 * 1024, tc, lc, c_cols);
    GemmSpec {
        name: "gemm.test".into(),
        m,
        n,
        k,
        a,
        b,
        c,
        c_init,
    }
}

fn layouts() -> impl Strategy<Value = Layout> {
    prop_oneof![Just(Layout::RowMajor), Just(Layout::Transposed)]
}

/// Input and output types the array supports together.
fn types() -> impl Strategy<Value = (DType, DType, DType)> {
    prop_oneof![
        Just((DType::Bf16, DType::Bf16, DType::Bf16)),
        Just((DType::Bf16, DType::Bf16, DType::Fp32)),
        Just((DType::Fp16, DType::Bf16, DType::Fp16)),
        Just((DType::Fp8E4M3, DType::Fp8E5M2, DType::Bf16)),
        Just((DType::Int8, DType::Int8, DType::Int32)),
        Just((DType::Int8, DType::Int8, DType::Int8)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn random_gemms_are_bit_exact(
        m in 1u64..40, n in 1u64..30, k in 1u64..40,
        ts in types(), la in layouts(), lb in layouts(), lc in layouts(),
        pad in 0u64..3,
        add in any::<bool>(),
        flow in 0usize..3,
        seed in any::<u64>(),
    ) {
        let arch = match flow {
            0 => small_arch(Dataflow::WeightStationary, false),
            1 => small_arch(Dataflow::WeightStationary, true),
            _ => small_arch(Dataflow::OutputStationary, false),
        };
        let c_init = if add { CInit::AddToExisting } else { CInit::Zero };
        check_gemm(&arch, &spec((m, n, k), ts, (la, lb, lc), pad, c_init), seed);
    }
}

#[test]
fn edge_cases_are_bit_exact() {
    let ws = small_arch(Dataflow::WeightStationary, true);
    let os = small_arch(Dataflow::OutputStationary, false);
    let bf = (DType::Bf16, DType::Bf16, DType::Bf16);
    let rm = (Layout::RowMajor, Layout::RowMajor, Layout::RowMajor);
    for arch in [&ws, &os] {
        for shape in [(1, 1, 1), (8, 8, 8), (9, 9, 9), (70, 17, 3), (3, 5, 90)] {
            check_gemm(arch, &spec(shape, bf, rm, 0, CInit::Zero), 1);
            check_gemm(arch, &spec(shape, bf, rm, 1, CInit::AddToExisting), 2);
        }
    }
    // The default preset's own memories, with a shape that has edge tiles.
    let default = Arch::preset("default").unwrap();
    let tt = (Layout::Transposed, Layout::Transposed, Layout::Transposed);
    check_gemm(&default, &spec((130, 129, 131), bf, tt, 0, CInit::Zero), 3);
    let fp32_out = (DType::Bf16, DType::Bf16, DType::Fp32);
    check_gemm(
        &default,
        &spec((131, 130, 129), fp32_out, tt, 1, CInit::AddToExisting),
        4,
    );
}

/// Utilization of the matrix work in timing mode: MACs over cycles times PEs.
fn utilization(arch: &Arch, (m, n, k): (u64, u64, u64), la: Layout, lb: Layout) -> f64 {
    let bf = (DType::Bf16, DType::Bf16, DType::Bf16);
    let mut s = spec((m, n, k), bf, (la, lb, Layout::RowMajor), 0, CInit::Zero);
    s.b.addr = 1 << 30;
    s.c.addr = 2 << 30;
    let p = gemm_kernel(arch, &s).unwrap();
    let (report, _) = simulate(&p, false).unwrap();
    let pes = u64::from(arch.rows()) * u64::from(arch.cols());
    (m * n * k) as f64 / (report.cycles * pes) as f64
}

#[test]
fn large_bf16_gemms_reach_ninety_percent_of_peak_on_default() {
    let arch = Arch::preset("default").unwrap();
    let (r, t) = (Layout::RowMajor, Layout::Transposed);
    for (shape, la, lb) in [
        ((4096, 4096, 4096), r, r),
        ((8192, 768, 3072), r, r),
        ((8192, 2304, 768), r, r),
        // dX = dY W^T: B transposed.
        ((8192, 768, 3072), r, t),
        // dW = X^T dY: the reduction runs over the 8192 tokens.
        ((768, 3072, 8192), t, r),
    ] {
        let u = utilization(&arch, shape, la, lb);
        assert!(u >= 0.90, "{shape:?}: {u:.4}");
    }
}

/// Without double-buffered weights a fold costs 2R + C + M - 2 cycles, so a
/// short M (768 rows in dW = X^T dY) wastes the array; the planner computes
/// C^T = B^T A^T instead, streaming the 3072-long dimension.
#[test]
fn short_m_is_swapped_on_single_buffered_weights() {
    let mut s = Arch::preset("default").unwrap().spec().clone();
    s.name = "default-single-buffered".into();
    s.array.double_buffered_weights = false;
    let arch = Arch::new(s).unwrap();
    let (r, t) = (Layout::RowMajor, Layout::Transposed);
    let bf = (DType::Bf16, DType::Bf16, DType::Bf16);
    let shape = (768, 3072, 8192);
    let mut g = spec(shape, bf, (t, r, r), 0, CInit::Zero);
    g.b.addr = 1 << 30;
    g.c.addr = 2 << 30;
    assert!(plan(&arch, &g).unwrap().swapped);
    // Streaming 768 rows would give at most 768 / (768 + 382) = 66.8%.
    let u = utilization(&arch, shape, t, r);
    assert!(u >= 0.85, "{u:.4}");
}

#[test]
fn bad_specs_are_errors_naming_the_rule() {
    let arch = small_arch(Dataflow::WeightStationary, false);
    let bf = (DType::Bf16, DType::Bf16, DType::Bf16);
    let rm = (Layout::RowMajor, Layout::RowMajor, Layout::RowMajor);
    let base = spec((8, 8, 8), bf, rm, 0, CInit::Zero);
    type Edit = fn(&mut GemmSpec);
    let cases: [(Edit, &str); 9] = [
        (|s| s.n = u64::MAX, "operand B spans bytes"),
        (|s| s.m = 0, "dimension m must be at least 1"),
        (
            |s| s.name = "1bad".into(),
            "region name must be an identifier",
        ),
        (
            |s| s.a.dtype = DType::Fp32,
            "operand A is fp32, which the array",
        ),
        (|s| s.b.dtype = DType::Int8, "A is bf16 and B is int8"),
        (|s| s.k = 0, "dimension k must be at least 1"),
        (|s| s.a.row_stride = 2, "operand A row stride 2 is shorter"),
        (|s| s.b.addr = 1 << 40, "operand B spans bytes"),
        (|s| s.c.addr = 100, "C overlaps operand A"),
    ];
    for (edit, want) in cases {
        let mut s = base.clone();
        edit(&mut s);
        let e: GemmError = gemm_kernel(&arch, &s).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains(want), "{msg}");
        assert!(msg.starts_with("gemm `"), "{msg}");
    }
}
