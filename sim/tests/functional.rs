//! Functional simulator against independent references: matrix products and
//! vector operations computed in f64 and rounded once per ISA step, on random
//! inputs including signed zeros, subnormals, infinities and NaNs.

use half::bf16;
use proptest::prelude::*;
use tessera_isa::asm::assemble;
use tessera_isa::program::MemSpace;
use tessera_sim::{run_functional, Memory};

const LIMIT: u64 = 1 << 24;

/// Rounds an f64 to fp32 (exact for one +, -, *, / or sqrt of fp32 operands).
fn f32r(x: f64) -> f32 {
    x as f32
}

fn bf16_bytes(v: &[f32]) -> Vec<u8> {
    v.iter()
        .flat_map(|x| bf16::from_f32(*x).to_le_bytes())
        .collect()
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// C (m x n, fp32) = A (m x k, bf16) * B (k x n, bf16) in one tile on fpga-8x8.
fn matmul_program(m: u64, k: u64, n: u64, accumulate: bool) -> String {
    let mode = if accumulate {
        "accumulate"
    } else {
        "overwrite"
    };
    format!(
        "\
.arch fpga-8x8
.hbm A, 0, {a}
.hbm B, 0x1000, {b}
.hbm C, 0x2000, {c}
.queue load
    addr.set r1, A
    addr.set r2, B
    addr.set r3, 0x2000
    dma.load dst=spad[r0], src=hbm[r1], rows={m}, row_bytes={ka}, planes=1, transpose=none
    dma.load dst=spad[r0+256], src=hbm[r2], rows={k}, row_bytes={nb}, planes=1, transpose=none, signal=t0
    dma.load dst=acc[r0], src=hbm[r3], rows={m}, row_bytes={nc}, planes=1, transpose=none, signal=t1
    halt
.queue matrix
    addr.set r1, 256
    mm.preload b=spad[r1]:bf16, k={k}, n={n}, transpose=false, wait=t0
    mm.compute a=spad[r0]:bf16, c=acc[r0]:fp32, m={m}, transpose=false, mode={mode}, wait=t1, signal=t2
    halt
.queue store
    addr.set r1, C
    dma.store dst=hbm[r1], src=acc[r0], rows={m}, row_bytes={nc}, planes=1, transpose=none, wait=t2
    halt
",
        a = m * k * 2,
        b = k * n * 2,
        c = m * n * 4,
        ka = k * 2,
        nb = n * 2,
        nc = n * 4,
    )
}

fn reference_matmul(
    a: &[f32],
    b: &[f32],
    c0: &[f32],
    m: usize,
    k: usize,
    n: usize,
    accumulate: bool,
) -> Vec<f32> {
    let mut out = vec![0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut s = 0f32;
            for kk in 0..k {
                // bf16 x bf16 products are exact in f64 and in fp32.
                let p = f64::from(a[i * k + kk]) * f64::from(b[kk * n + j]);
                s = f32r(f64::from(s) + p);
            }
            if accumulate {
                s = f32r(f64::from(c0[i * n + j]) + f64::from(s));
            }
            out[i * n + j] = s;
        }
    }
    out
}

fn same(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

fn special_bf16() -> impl Strategy<Value = f32> {
    prop_oneof![
        6 => (-8.0f32..8.0).prop_map(|x| bf16::from_f32(x).to_f32()),
        1 => prop::sample::select(vec![0.0f32, -0.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, 1.0e-39, -3.0e-40, 3.0e38])
            .prop_map(|x| bf16::from_f32(x).to_f32()),
        1 => any::<u16>().prop_map(|b| bf16::from_bits(b).to_f32()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn matmul_matches_stepwise_reference(
        (m, k, n, a, b, c0) in (1usize..=8, 1usize..=8, 1usize..=8).prop_flat_map(|(m, k, n)| (
            Just(m), Just(k), Just(n),
            prop::collection::vec(special_bf16(), m * k),
            prop::collection::vec(special_bf16(), k * n),
            prop::collection::vec(-4.0f32..4.0, m * n),
        )),
        accumulate in any::<bool>(),
    ) {
        let p = assemble(&matmul_program(m as u64, k as u64, n as u64, accumulate), "mm.s", None).unwrap();
        let mut mem = Memory::new(&p.arch);
        mem.write(MemSpace::Hbm, 0, &bf16_bytes(&a)).unwrap();
        mem.write(MemSpace::Hbm, 0x1000, &bf16_bytes(&b)).unwrap();
        let c_init: Vec<u8> = c0.iter().flat_map(|x| x.to_le_bytes()).collect();
        mem.write(MemSpace::Hbm, 0x2000, &c_init).unwrap();
        run_functional(&p, &mut mem, LIMIT).unwrap();
        let got = f32s(&mem.read_vec(MemSpace::Hbm, 0x2000, m * n * 4).unwrap());
        let want = reference_matmul(&a, &b, &c0, m, k, n, accumulate);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            prop_assert!(same(*g, *w), "element {}: got {:e}, want {:e}", i, g, w);
        }
    }
}

#[test]
fn int8_matmul_wraps_in_int32() {
    let src = "\
.arch fpga-8x8
.queue load
    addr.set r1, 0x100
    dma.load dst=spad[r0], src=hbm[r0], rows=2, row_bytes=2, planes=1, transpose=none
    dma.load dst=spad[r1], src=hbm[r1], rows=2, row_bytes=2, planes=1, transpose=none, signal=t0
    halt
.queue matrix
    addr.set r1, 0x100
    mm.preload b=spad[r1]:int8, k=2, n=2, transpose=false, wait=t0
    mm.compute a=spad[r0]:int8, c=acc[r0]:int32, m=2, transpose=false, mode=overwrite, signal=t1
    halt
.queue store
    addr.set r1, 0x200
    dma.store dst=hbm[r1], src=acc[r0], rows=2, row_bytes=8, planes=1, transpose=none, wait=t1
    halt
";
    let p = assemble(src, "i8.s", None).unwrap();
    let mut mem = Memory::new(&p.arch);
    // A = [[-128, 127], [1, -1]], B = [[-128, 2], [-128, 3]]
    mem.write(MemSpace::Hbm, 0, &[0x80, 0x7f, 1, 0xff]).unwrap();
    mem.write(MemSpace::Hbm, 0x100, &[0x80, 2, 0x80, 3])
        .unwrap();
    run_functional(&p, &mut mem, LIMIT).unwrap();
    let c: Vec<i32> = mem
        .read_vec(MemSpace::Hbm, 0x200, 16)
        .unwrap()
        .chunks_exact(4)
        .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    assert_eq!(
        c,
        vec![
            -128 * -128 + 127 * -128,
            -128 * 2 + 127 * 3,
            -128 + 128,
            2 - 3
        ]
    );
}

#[test]
fn transposing_load_and_gather() {
    let src = "\
.arch fpga-8x8
.queue load
    addr.set r1, 0x100
    addr.set r2, 0x200
    dma.load dst=spad[r0], src=hbm[r0], rows=2, row_bytes=6, planes=1, transpose=2
    dma.load dst=spad[r2], src=hbm[r2], rows=1, row_bytes=12, planes=1, transpose=none
    dma.gather dst=spad[r1], table=hbm[r1], idx=spad[r2], rows=3, row_bytes=4, signal=t0
    halt
.queue store
    addr.set r1, 0x100
    addr.set r3, 0x300
    dma.store dst=hbm[r3], src=spad[r0], rows=1, row_bytes=12, planes=1, transpose=none, wait=t0
    addr.set r3, 0x400
    dma.store dst=hbm[r3], src=spad[r1], rows=1, row_bytes=12, planes=1, transpose=none
    halt
";
    let p = assemble(src, "t.s", None).unwrap();
    let mut mem = Memory::new(&p.arch);
    // A 2x3 matrix of u16: [[1,2,3],[4,5,6]] -> transposed 3x2 [[1,4],[2,5],[3,6]].
    let a: Vec<u8> = [1u16, 2, 3, 4, 5, 6]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    mem.write(MemSpace::Hbm, 0, &a).unwrap();
    let table: Vec<u8> = (0..16u8).collect();
    mem.write(MemSpace::Hbm, 0x100, &table).unwrap();
    let idx: Vec<u8> = [2i32, -1, 0].iter().flat_map(|v| v.to_le_bytes()).collect();
    mem.write(MemSpace::Hbm, 0x200, &idx).unwrap();
    run_functional(&p, &mut mem, LIMIT).unwrap();
    let t: Vec<u16> = mem
        .read_vec(MemSpace::Hbm, 0x300, 12)
        .unwrap()
        .chunks_exact(2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .collect();
    assert_eq!(t, vec![1, 4, 2, 5, 3, 6]);
    assert_eq!(
        mem.read_vec(MemSpace::Hbm, 0x400, 12).unwrap(),
        vec![8, 9, 10, 11, 0, 0, 0, 0, 0, 1, 2, 3]
    );
}

/// Runs `v.<op line>` on a 4x8 fp32 tile `a` (and `b`), returning the fp32 result.
fn run_vector(op_line: &str, a: &[f32], b: &[f32]) -> Vec<f32> {
    let src = format!(
        "\
.arch fpga-8x8
.queue load
    addr.set r1, 0x100
    dma.load dst=spad[r0], src=hbm[r0], rows=1, row_bytes=128, planes=1, transpose=none
    dma.load dst=spad[r1], src=hbm[r1], rows=1, row_bytes=128, planes=1, transpose=none, signal=t0
    halt
.queue vector
    addr.set r1, 0x100
    addr.set r2, 0x200
    v.shape rows=4, cols=8
    v.fset f1, 0.5
    v.fset f2, -2.0
    {op_line}, wait=t0, signal=t1
    halt
.queue store
    addr.set r2, 0x200
    dma.store dst=hbm[r2], src=spad[r2], rows=1, row_bytes=128, planes=1, transpose=none, wait=t1
    halt
"
    );
    let p = assemble(&src, "v.s", None).unwrap();
    let mut mem = Memory::new(&p.arch);
    mem.write(
        MemSpace::Hbm,
        0,
        &a.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<_>>(),
    )
    .unwrap();
    mem.write(
        MemSpace::Hbm,
        0x100,
        &b.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<_>>(),
    )
    .unwrap();
    run_functional(&p, &mut mem, LIMIT).unwrap();
    f32s(&mem.read_vec(MemSpace::Hbm, 0x200, 128).unwrap())
}

#[test]
fn correctly_rounded_vector_ops_match_f64_exactly() {
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ((s >> 11) as f64 / (1u64 << 53) as f64 * 20.0 - 10.0) as f32
    };
    let a: Vec<f32> = (0..32).map(|_| rnd()).collect();
    let b: Vec<f32> = (0..32).map(|_| rnd()).collect();
    type F = fn(f64, f64) -> f64;
    let cases: [(&str, F); 5] = [
        ("add", |x, y| x + y),
        ("sub", |x, y| x - y),
        ("mul", |x, y| x * y),
        ("div", |x, y| x / y),
        ("max", |x, y| x.max(y)),
    ];
    for (op, f) in cases {
        let got = run_vector(
            &format!("v.bin op={op}, dst=spad[r2]:fp32, a=spad[r0]:fp32, b=spad[r1]:fp32"),
            &a,
            &b,
        );
        for i in 0..32 {
            let want = f32r(f(f64::from(a[i]), f64::from(b[i])));
            assert!(
                same(got[i], want),
                "{op}({}, {}) = {}, want {}",
                a[i],
                b[i],
                got[i],
                want
            );
        }
    }
    // Broadcasts: row(b) uses b's first row for every row; col(b) b's first column; f2 a scalar.
    let got = run_vector(
        "v.bin op=add, dst=spad[r2]:fp32, a=spad[r0]:fp32, b=row(spad[r1]:fp32)",
        &a,
        &b,
    );
    assert!((0..32).all(|i| same(got[i], f32r(f64::from(a[i]) + f64::from(b[i % 8])))));
    let got = run_vector(
        "v.bin op=mul, dst=spad[r2]:fp32, a=spad[r0]:fp32, b=f2",
        &a,
        &b,
    );
    assert!((0..32).all(|i| same(got[i], f32r(f64::from(a[i]) * -2.0))));
    let got = run_vector(
        "v.axpby dst=spad[r2]:fp32, a=spad[r0]:fp32, b=spad[r1]:fp32, alpha=f1, beta=f2",
        &a,
        &b,
    );
    for i in 0..32 {
        let want =
            f32r(f64::from(f32r(0.5 * f64::from(a[i]))) + f64::from(f32r(-2.0 * f64::from(b[i]))));
        assert!(same(got[i], want), "axpby {i}");
    }
    let abs: Vec<f32> = a.iter().map(|x| x.abs() + 0.5).collect();
    let got = run_vector("v.un op=sqrt, dst=spad[r2]:fp32, a=spad[r0]:fp32", &abs, &b);
    assert!((0..32).all(|i| same(got[i], f32r(f64::from(abs[i]).sqrt()))));
    // Row reductions into a column, ascending order, each step rounded.
    let got = run_vector(
        "v.reduce op=sum, axis=rows, dst=spad[r2]:fp32, a=spad[r0]:fp32, mode=overwrite",
        &a,
        &b,
    );
    for r in 0..4 {
        let want = (0..8).fold(0f32, |acc, j| {
            f32r(f64::from(acc) + f64::from(a[r * 8 + j]))
        });
        assert!(same(got[r], want), "row {r} sum");
    }
}

#[test]
fn transcendental_ops_are_within_a_few_ulps_of_f64() {
    let a: Vec<f32> = (0..32).map(|i| (i as f32 - 15.5) / 4.0).collect();
    let pos: Vec<f32> = a.iter().map(|x| x.abs() + 0.1).collect();
    type F = fn(f64) -> f64;
    // Bounds in fp32 ulps: libm's single-precision routines are within 1-2 ulps;
    // compositions (sigmoid, GELU) add a few roundings.
    let cases: [(&str, &[f32], F, f64); 7] = [
        ("exp", &a, f64::exp, 2.0),
        ("log", &pos, f64::ln, 2.0),
        ("tanh", &a, f64::tanh, 2.0),
        ("rsqrt", &pos, |x| 1.0 / x.sqrt(), 2.0),
        ("sigmoid", &a, |x| 1.0 / (1.0 + (-x).exp()), 4.0),
        (
            "gelu.erf",
            &a,
            |x| 0.5 * x * libm::erfc(-x / std::f64::consts::SQRT_2),
            8.0,
        ),
        (
            "gelu.tanh",
            &a,
            |x| {
                0.5 * x
                    * (1.0
                        + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh())
            },
            8.0,
        ),
    ];
    for (op, input, f, ulps) in cases {
        let got = run_vector(
            &format!("v.un op={op}, dst=spad[r2]:fp32, a=spad[r0]:fp32"),
            input,
            &a,
        );
        for i in 0..32 {
            let want = f(f64::from(input[i]));
            let ulp = f64::from(f32r(want).abs()) * f64::from(f32::EPSILON);
            assert!(
                (f64::from(got[i]) - want).abs() <= ulps * ulp + 1e-30,
                "{op}({}) = {}, f64 {want}",
                input[i],
                got[i]
            );
        }
    }
}

#[test]
fn causal_mask_and_deadlock() {
    let a = vec![1.0f32; 32];
    let got = run_vector(
        "v.fset f3, -inf\n    v.causal dst=spad[r2]:fp32, a=spad[r0]:fp32, fill=f3, row=2, col=0",
        &a,
        &a,
    );
    for i in 0..4 {
        for j in 0..8 {
            let want = if j > i + 2 { f32::NEG_INFINITY } else { 1.0 };
            assert_eq!(got[i * 8 + j], want, "({i}, {j})");
        }
    }
    let src = ".arch fpga-8x8\n.queue load\n    nop wait=t1, signal=t0\n    halt\n.queue store\n    nop wait=t0, signal=t1\n    halt\n";
    let p = assemble(src, "d.s", None).unwrap();
    let e = run_functional(&p, &mut Memory::new(&p.arch), LIMIT)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "deadlock: no queue can proceed: load#0 (nop) waits for t1; store#0 (nop) waits for t0"
    );
}

#[test]
fn out_of_bounds_names_the_instruction() {
    let src = ".arch fpga-8x8\n.queue load\n    addr.set r1, 65530\n    dma.load dst=spad[r1], src=hbm[r0], rows=1, row_bytes=16, planes=1, transpose=none\n    halt\n";
    let p = assemble(src, "o.s", None).unwrap();
    let e = run_functional(&p, &mut Memory::new(&p.arch), LIMIT)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "load#1 (dma.load): spad[0xfffa..0x1000a) is outside the 65536 bytes of spad"
    );
}
