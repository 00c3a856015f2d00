//! Every shipped example program through every back end: it assembles,
//! round-trips through the disassembler, passes the dependency checker, runs
//! in functional mode with its results checked against a reference computed
//! here (tiled matmul, LayerNorm, embedding forward and backward), and in
//! timing mode keeps the
//! invariants (each queue's cycle categories sum to the total, DMA bytes are
//! conserved, both modes execute the same instruction counts, and repeated
//! runs give identical reports).

use std::path::PathBuf;

use half::bf16;
use tessera_isa::asm::assemble;
use tessera_isa::check::check;
use tessera_isa::disasm::disassemble;
use tessera_isa::program::MemSpace;
use tessera_sim::{run_functional, simulate, timing, Memory};

/// Deterministic values in [-2, 2), rounded to bf16 so they are exact in every float type.
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            bf16::from_f32(((s >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0).to_f32()
        })
        .collect()
}

fn bf16_bytes(v: &[f32]) -> Vec<u8> {
    v.iter()
        .flat_map(|x| bf16::from_f32(*x).to_le_bytes())
        .collect()
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn read_bf16(mem: &Memory, addr: u64, n: usize) -> Vec<f32> {
    mem.read_vec(MemSpace::Hbm, addr, 2 * n)
        .unwrap()
        .chunks_exact(2)
        .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32())
        .collect()
}

fn read_f32(mem: &Memory, addr: u64, n: usize) -> Vec<f32> {
    mem.read_vec(MemSpace::Hbm, addr, 4 * n)
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Asserts an example's outputs against a reference computed in the test.
type OutputCheck = Box<dyn Fn(&Memory, &str)>;

/// Inputs for an example and the check of its outputs against a reference
/// computed here, independently of the simulator.
struct Inputs {
    name: String,
    writes: Vec<(u64, Vec<u8>)>,
    check: OutputCheck,
}

impl Inputs {
    fn for_example(name: &str, p: &tessera_isa::Program) -> Inputs {
        let sym = |s: &str| {
            p.symbols
                .iter()
                .find(|x| x.name == s)
                .unwrap_or_else(|| panic!("{name}: no symbol {s}"))
                .addr
        };
        match name {
            "tiled_matmul.s" => {
                let (m, k, n) = (256usize, 256usize, 256usize);
                let (a, b) = (values(m * k, 1), values(k * n, 2));
                let (sa, sb, sc) = (sym("A"), sym("B"), sym("C"));
                let writes = vec![(sa, bf16_bytes(&a)), (sb, bf16_bytes(&b))];
                let check = move |mem: &Memory, name: &str| {
                    let c = read_bf16(mem, sc, m * n);
                    for i in 0..m {
                        for j in 0..n {
                            let exact: f64 = (0..k)
                                .map(|kk| f64::from(a[i * k + kk]) * f64::from(b[kk * n + j]))
                                .sum();
                            let got = f64::from(c[i * n + j]);
                            // bf16 output: within one bf16 rounding (2^-8 relative) plus fp32 summation error.
                            assert!(
                                (got - exact).abs() <= exact.abs() / 128.0 + 1e-3,
                                "{name}: C[{i}][{j}] = {got}, exact {exact}"
                            );
                        }
                    }
                };
                Inputs {
                    name: name.into(),
                    writes,
                    check: Box::new(check),
                }
            }
            "embedding.s" => {
                let (s_len, d, vocab) = (64usize, 256usize, 1024usize);
                // Token ids with repeats, so scatter-add must accumulate.
                let ids: Vec<i32> = (0..s_len)
                    .map(|i| ((i * 37) % 50 + (i % 3) * 300) as i32 % vocab as i32)
                    .collect();
                let (wte, wpe, dh) = (
                    values(vocab * d, 3),
                    values(s_len * d, 4),
                    values(s_len * d, 5),
                );
                let (sh, sd) = (sym("H_H"), sym("DWTE"));
                let ids_bytes: Vec<u8> = ids.iter().flat_map(|x| x.to_le_bytes()).collect();
                let writes = vec![
                    (sym("IDS_H"), ids_bytes),
                    (sym("WTE"), f32_bytes(&wte)),
                    (sym("WPE"), f32_bytes(&wpe)),
                    (sym("DH_H"), f32_bytes(&dh)),
                ];
                let check = move |mem: &Memory, name: &str| {
                    let h = read_f32(mem, sh, s_len * d);
                    for i in 0..s_len {
                        for j in 0..d {
                            assert_eq!(
                                h[i * d + j],
                                wte[ids[i] as usize * d + j] + wpe[i * d + j],
                                "{name}: H[{i}][{j}]"
                            );
                        }
                    }
                    let dw = read_f32(mem, sd, vocab * d);
                    let mut want = vec![0f32; vocab * d];
                    for i in 0..s_len {
                        for j in 0..d {
                            want[ids[i] as usize * d + j] += dh[i * d + j];
                        }
                    }
                    assert!(
                        dw == want,
                        "{name}: dWTE differs from the in-order scatter-add"
                    );
                };
                Inputs {
                    name: name.into(),
                    writes,
                    check: Box::new(check),
                }
            }
            "layernorm.s" => {
                let (rows, d) = (128usize, 768usize);
                let (x, gamma, beta) = (values(rows * d, 6), values(d, 7), values(d, 8));
                let sy = sym("Y");
                let writes = vec![
                    (sym("X"), bf16_bytes(&x)),
                    (sym("GAMMA_H"), bf16_bytes(&gamma)),
                    (sym("BETA_H"), bf16_bytes(&beta)),
                ];
                let check = move |mem: &Memory, name: &str| {
                    let y = read_bf16(mem, sy, rows * d);
                    for i in 0..rows {
                        let row = &x[i * d..(i + 1) * d];
                        let mean = row.iter().map(|v| f64::from(*v)).sum::<f64>() / d as f64;
                        let var = row
                            .iter()
                            .map(|v| (f64::from(*v) - mean).powi(2))
                            .sum::<f64>()
                            / d as f64;
                        let rstd = 1.0 / (var + 1e-5).sqrt();
                        for j in 0..d {
                            let want = (f64::from(row[j]) - mean) * rstd * f64::from(gamma[j])
                                + f64::from(beta[j]);
                            let got = f64::from(y[i * d + j]);
                            assert!(
                                (got - want).abs() <= want.abs() / 64.0 + 2e-2,
                                "{name}: Y[{i}][{j}] = {got}, f64 {want}"
                            );
                        }
                    }
                };
                Inputs {
                    name: name.into(),
                    writes,
                    check: Box::new(check),
                }
            }
            // An example without a reference here still runs on zeroed memory.
            other => Inputs {
                name: other.into(),
                writes: Vec::new(),
                check: Box::new(|_, _| {}),
            },
        }
    }

    fn write(&self, mem: &mut Memory) {
        for (addr, bytes) in &self.writes {
            mem.write(MemSpace::Hbm, *addr, bytes).unwrap();
        }
    }

    fn check(&self, mem: &Memory) {
        (self.check)(mem, &self.name);
    }
}

fn examples() -> Vec<(String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut v: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("examples/ exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "s"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("readable example");
            (p.file_name().unwrap().to_string_lossy().into_owned(), text)
        })
        .collect();
    v.sort();
    v
}

#[test]
fn there_are_examples_and_a_tiled_matmul_among_them() {
    let names: Vec<String> = examples().into_iter().map(|(n, _)| n).collect();
    assert!(names.iter().any(|n| n.contains("matmul")), "{names:?}");
}

#[test]
fn every_example_checks_and_runs_in_both_modes() {
    for (name, text) in examples() {
        let p = assemble(&text, &name, None).unwrap_or_else(|e| panic!("{e}"));
        let again = assemble(&disassemble(&p), &name, Some(&p.arch)).unwrap();
        assert_eq!(
            again.to_bytes(),
            p.to_bytes(),
            "{name}: disassembly does not reassemble"
        );

        let report = check(&p);
        let findings: Vec<String> = report.findings.iter().map(ToString::to_string).collect();
        assert!(findings.is_empty(), "{name}: {findings:?}");

        let mut mem = Memory::new(&p.arch);
        let inputs = Inputs::for_example(&name, &p);
        inputs.write(&mut mem);
        let f = run_functional(&p, &mut mem, 1 << 28).unwrap_or_else(|e| panic!("{name}: {e}"));
        inputs.check(&mem);

        let t = timing::run(&p, 1 << 28, &mut |_| {}).unwrap_or_else(|e| panic!("{name}: {e}"));
        for (q, e) in t.engines.iter().enumerate() {
            assert_eq!(e.total(), t.cycles, "{name}: queue {q} {e:?}");
        }
        let executed: Vec<u64> = t.engines.iter().map(|e| e.executed).collect();
        assert_eq!(
            executed,
            f.executed.to_vec(),
            "{name}: modes executed different streams"
        );
        assert_eq!(
            executed,
            report.executed.to_vec(),
            "{name}: checker and simulator disagree"
        );
        let c = &t.counters;
        assert_eq!(c.dma_load_source_bytes, c.dma_load_dest_bytes, "{name}");
        assert_eq!(c.dma_store_source_bytes, c.dma_store_dest_bytes, "{name}");

        let (r1, tr1) = simulate(&p, true).unwrap();
        let (r2, tr2) = simulate(&p, true).unwrap();
        assert_eq!(r1, r2, "{name}");
        assert_eq!(tr1, tr2, "{name}");
        assert!(r1.cycles > 0 && r1.energy_joules > 0.0, "{name}");
    }
}
