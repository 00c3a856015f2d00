//! End-to-end tests of the `tessera` binary: every shipped example
//! round-trips and checks clean, outputs are deterministic, and bad input
//! gives one `error:` line, status 1, no panic and no file left behind.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

const BIN: &str = env!("CARGO_BIN_EXE_tessera");

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("tessera-cli-{}-{name}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn write(&self, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(name);
        fs::write(&p, bytes).unwrap();
        p
    }

    /// The names in the directory, sorted (temporary files included).
    fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn tessera(args: &[&str], cwd: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("the tessera binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts success and returns stdout.
fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Asserts the failure contract: status 1, exactly one stderr line, starting
/// `error: ` and containing `needle`, and no panic.
fn fails(out: Output, needle: &str) -> String {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one stderr line, got:\n{stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    assert!(lines[0].contains(needle), "`{needle}` not in: {stderr}");
    stderr
}

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut v: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "s"))
        .collect();
    v.sort();
    assert!(v.len() >= 2, "examples/ should hold several .s files");
    assert!(v.iter().any(|p| p.ends_with("tiled_matmul.s")));
    v
}

fn stem(p: &Path) -> String {
    p.file_stem().unwrap().to_string_lossy().into_owned()
}

#[test]
fn every_example_round_trips_through_disassembly() {
    let dir = TempDir::new("roundtrip");
    for ex in examples() {
        let name = stem(&ex);
        let (first, listing, second) = (
            format!("{name}.tsr"),
            format!("{name}.dis.s"),
            format!("{name}.2.tsr"),
        );
        ok(tessera(
            &["asm", ex.to_str().unwrap(), "-o", &first],
            &dir.0,
        ));
        ok(tessera(&["disasm", &first, "-o", &listing], &dir.0));
        let stdout = ok(tessera(&["disasm", &first], &dir.0));
        assert_eq!(stdout, fs::read_to_string(dir.path(&listing)).unwrap());
        ok(tessera(&["asm", &listing, "-o", &second], &dir.0));
        assert_eq!(
            fs::read(dir.path(&first)).unwrap(),
            fs::read(dir.path(&second)).unwrap(),
            "{name}: disassembly does not re-assemble to the same bytes"
        );
    }
}

#[test]
fn every_example_checks_clean() {
    let dir = TempDir::new("clean");
    for ex in examples() {
        let src = ex.to_str().unwrap();
        let out = ok(tessera(&["check", src], &dir.0));
        assert!(out.contains("clean"), "{src}:\n{out}");
        let tsr = format!("{}.tsr", stem(&ex));
        ok(tessera(&["asm", src, "-o", &tsr], &dir.0));
        let out = ok(tessera(&["check", &tsr, "--hw", "default"], &dir.0));
        assert!(out.contains("clean"), "{tsr}:\n{out}");
        for q in ["load", "matrix", "vector", "store"] {
            assert!(out.contains(q), "{out}");
        }
    }
}

#[test]
fn outputs_are_byte_identical_across_runs() {
    let (a, b) = (TempDir::new("det-a"), TempDir::new("det-b"));
    for ex in examples() {
        let tsr = format!("{}.tsr", stem(&ex));
        let lst = format!("{}.s", stem(&ex));
        for d in [&a, &b] {
            ok(tessera(&["asm", ex.to_str().unwrap(), "-o", &tsr], &d.0));
            ok(tessera(&["disasm", &tsr, "-o", &lst], &d.0));
        }
        for f in [&tsr, &lst] {
            assert_eq!(fs::read(a.path(f)).unwrap(), fs::read(b.path(f)).unwrap());
        }
    }
    let show = |d: &TempDir| ok(tessera(&["hw", "show", "datacenter"], &d.0));
    assert_eq!(show(&a), show(&b));
    let demo = |d: &TempDir| ok(tessera(&["demo"], &d.0));
    assert_eq!(demo(&a), demo(&b));
}

#[test]
fn malformed_assembly_is_one_error_line_and_no_output() {
    let dir = TempDir::new("bad-asm");
    dir.write(
        "bad.s",
        ".arch default\n.queue load\n    dma.lod x\n    halt\n",
    );
    let out = tessera(&["asm", "bad.s", "-o", "bad.tsr"], &dir.0);
    fails(out, "bad.s:3:");
    assert_eq!(dir.names(), ["bad.s"]);
    // Non-UTF-8 and unbalanced sources fail the same way.
    dir.write("bin.s", [0xff, 0xfe, 0x00, 0x41]);
    fails(tessera(&["asm", "bin.s", "-o", "bin.tsr"], &dir.0), "bin.s");
    dir.write("open.s", ".queue load\n    nop signal=t0\n    halt\n");
    fails(tessera(&["check", "open.s"], &dir.0), "open.s");
    assert_eq!(dir.names(), ["bad.s", "bin.s", "open.s"]);
}

#[test]
fn truncated_and_corrupted_containers_are_rejected() {
    let dir = TempDir::new("bad-tsr");
    let ex = examples().into_iter().next().unwrap();
    ok(tessera(
        &["asm", ex.to_str().unwrap(), "-o", "good.tsr"],
        &dir.0,
    ));
    let good = fs::read(dir.path("good.tsr")).unwrap();

    for cut in [0, 3, 10, good.len() / 2, good.len() - 1] {
        dir.write("cut.tsr", &good[..cut]);
        fails(tessera(&["check", "cut.tsr"], &dir.0), "cut.tsr");
        fails(
            tessera(&["disasm", "cut.tsr", "-o", "cut.s"], &dir.0),
            "cut.tsr",
        );
        assert!(!dir.path("cut.s").exists());
    }
    for at in [0, 5, 20, good.len() / 2, good.len() - 1] {
        let mut bad = good.clone();
        bad[at] ^= 0x01;
        dir.write("flip.tsr", &bad);
        fails(tessera(&["check", "flip.tsr"], &dir.0), "flip.tsr");
        fails(
            tessera(&["disasm", "flip.tsr", "-o", "flip.s"], &dir.0),
            "flip.tsr",
        );
    }
    let mut bad = good.clone();
    bad[good.len() / 2] ^= 0x01;
    dir.write("flip.tsr", &bad);
    fails(tessera(&["check", "flip.tsr"], &dir.0), "checksum mismatch");
    assert_eq!(dir.names(), ["cut.tsr", "flip.tsr", "good.tsr"]);
}

/// The hardware descriptions shipped in `examples/hw` (used by the FPGA
/// scripts and docs) stay valid.
#[test]
fn example_hardware_descriptions_check_clean() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hw");
    let mut n = 0;
    for e in fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|e| e == "toml") {
            let out = ok(tessera(&["hw", "check", p.to_str().unwrap()], &dir));
            assert!(out.contains(": ok: "), "{out}");
            n += 1;
        }
    }
    assert!(n >= 1, "examples/hw holds no description");
}

#[test]
fn invalid_hardware_toml_names_file_field_and_rule() {
    let dir = TempDir::new("bad-hw");
    let toml = ok(tessera(&["hw", "show", "fpga-8x8"], &dir.0));
    dir.write("ok.toml", &toml);
    ok(tessera(&["hw", "check", "ok.toml"], &dir.0));
    dir.write("hw.toml", toml.replace("rows = 8", "rows = 0"));
    fails(
        tessera(&["hw", "check", "hw.toml"], &dir.0),
        "hw.toml: field `array.rows` must be between 2 and 1024, got 0",
    );
    let ex = examples().into_iter().next().unwrap();
    fails(
        tessera(
            &[
                "asm",
                ex.to_str().unwrap(),
                "-o",
                "x.tsr",
                "--hw",
                "hw.toml",
            ],
            &dir.0,
        ),
        "array.rows",
    );
    dir.write("syntax.toml", "name = \"x\"\n[array\n");
    fails(
        tessera(&["hw", "show", "syntax.toml"], &dir.0),
        "syntax.toml",
    );
    fails(tessera(&["hw", "show", "no-such-preset"], &dir.0), "preset");
    assert_eq!(dir.names(), ["hw.toml", "ok.toml", "syntax.toml"]);
}

#[test]
fn check_refuses_a_program_built_for_other_hardware() {
    let dir = TempDir::new("other-hw");
    let ex = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/tiled_matmul.s");
    ok(tessera(
        &["asm", ex.to_str().unwrap(), "-o", "mm.tsr"],
        &dir.0,
    ));
    fails(
        tessera(&["check", "mm.tsr", "--hw", "fpga-8x8"], &dir.0),
        "mm.tsr: built for hardware `default`",
    );
    // A custom description that differs from the preset only in its numbers.
    let toml = ok(tessera(&["hw", "show", "default"], &dir.0));
    dir.write(
        "fast.toml",
        toml.replace("frequency_mhz = 1000.0", "frequency_mhz = 1200.0"),
    );
    fails(
        tessera(&["check", "mm.tsr", "--hw", "fast.toml"], &dir.0),
        "fingerprint",
    );
}

#[test]
fn check_reports_findings_with_status_1() {
    let dir = TempDir::new("race");
    let ex = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/tiled_matmul.s");
    let src = fs::read_to_string(ex).unwrap();
    // Drop the matrix -> vector token: the cast may now read an unfinished tile.
    let racy = src
        .replace("wait=t2|t5, signal=t3|t4", "wait=t5, signal=t3|t4")
        .replace("signal=t1|t2", "signal=t1");
    assert_ne!(racy, src);
    dir.write("racy.s", racy);
    let out = tessera(&["check", "racy.s"], &dir.0);
    let stdout = text(&out.stdout);
    fails(out, "racy.s");
    assert!(stdout.lines().any(|l| l.starts_with("race: ")), "{stdout}");
    assert!(stdout.contains("vector#"), "{stdout}");
}

#[test]
fn asm_writes_atomically_and_keeps_the_old_output_on_failure() {
    let dir = TempDir::new("atomic");
    dir.write("out.tsr", "previous");
    dir.write("bad.s", ".queue load\n    nop\n");
    fails(
        tessera(&["asm", "bad.s", "-o", "out.tsr"], &dir.0),
        "bad.s:2:",
    );
    assert_eq!(fs::read(dir.path("out.tsr")).unwrap(), b"previous");
    fails(
        tessera(&["asm", "bad.s", "-o", "missing/dir/out.tsr"], &dir.0),
        "bad.s",
    );
    let ex = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/layernorm.s");
    fails(
        tessera(
            &["asm", ex.to_str().unwrap(), "-o", "missing/dir/out.tsr"],
            &dir.0,
        ),
        "missing/dir/out.tsr",
    );
    // A directory in the way: the rename fails and the temporary file goes.
    fs::create_dir(dir.path("taken.tsr")).unwrap();
    fails(
        tessera(&["asm", ex.to_str().unwrap(), "-o", "taken.tsr"], &dir.0),
        "taken.tsr",
    );
    assert_eq!(dir.names(), ["bad.s", "out.tsr", "taken.tsr"]);
    assert!(dir.path("taken.tsr").is_dir());
}

#[test]
fn demo_and_hw_commands_run() {
    let dir = TempDir::new("demo");
    let out = ok(tessera(&["demo"], &dir.0));
    assert!(out.contains("identical bytes"), "{out}");
    assert!(out.contains("clean"), "{out}");
    let list = ok(tessera(&["hw", "list"], &dir.0));
    for name in ["fpga-8x8", "default", "datacenter"] {
        assert!(list.contains(name), "{list}");
    }
    let show = ok(tessera(&["hw", "show", "default"], &dir.0));
    assert!(show.contains("TFLOP/s"), "{show}");
    assert_eq!(dir.names(), Vec::<String>::new());
}

#[test]
fn usage_errors_keep_clap_status_2() {
    let dir = TempDir::new("usage");
    let out = tessera(&["frobnicate"], &dir.0);
    assert_eq!(out.status.code(), Some(2));
    let out = tessera(&["asm"], &dir.0);
    assert_eq!(out.status.code(), Some(2));
}

fn matmul() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/tiled_matmul.s")
        .to_string_lossy()
        .into_owned()
}

#[test]
fn sim_writes_the_documented_json_and_a_perfetto_trace() {
    let dir = TempDir::new("sim");
    let table = ok(tessera(
        &[
            "sim",
            &matmul(),
            "--json",
            "a.json",
            "--trace",
            "a.trace.json",
        ],
        &dir.0,
    ));
    for line in [
        "cycles",
        "utilization",
        "energy",
        "queue",
        "busy",
        "token wait",
        "memory wait",
    ] {
        assert!(table.contains(line), "`{line}` not in the table:\n{table}");
    }
    let json: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.path("a.json")).unwrap()).unwrap();
    for key in [
        "cycles",
        "seconds",
        "flops",
        "utilization",
        "energy_joules",
        "average_power_watts",
        "engines",
    ] {
        assert!(json.get(key).is_some(), "JSON lacks `{key}`: {json}");
    }
    let cycles = json["cycles"].as_u64().unwrap();
    for q in ["load", "matrix", "vector", "store"] {
        let e = &json["engines"][q];
        let sum: u64 = [
            "busy_cycles",
            "token_wait_cycles",
            "memory_wait_cycles",
            "idle_cycles",
        ]
        .iter()
        .map(|k| e[k].as_u64().unwrap())
        .sum();
        assert_eq!(sum, cycles, "{q}: {e}");
    }
    // 2 * 256^3 operations for the 256 x 256 x 256 GEMM.
    assert_eq!(json["flops"].as_u64(), Some(2 * 256 * 256 * 256));
    let trace: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.path("a.trace.json")).unwrap()).unwrap();
    let events = trace["traceEvents"].as_array().unwrap();
    let tracks: Vec<&str> = events
        .iter()
        .filter(|e| e["name"] == "thread_name")
        .map(|e| e["args"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(tracks, ["load", "matrix", "vector", "store"]);
    assert!(events
        .iter()
        .any(|e| e["ph"] == "X" && e["name"] == "mm.compute"));

    // Byte-identical on a second run.
    ok(tessera(
        &[
            "sim",
            &matmul(),
            "--json",
            "b.json",
            "--trace",
            "b.trace.json",
        ],
        &dir.0,
    ));
    assert_eq!(
        fs::read(dir.path("a.json")).unwrap(),
        fs::read(dir.path("b.json")).unwrap()
    );
    assert_eq!(
        fs::read(dir.path("a.trace.json")).unwrap(),
        fs::read(dir.path("b.trace.json")).unwrap()
    );
}

#[test]
fn sim_refuses_other_hardware_and_leaves_no_output() {
    let dir = TempDir::new("sim-hw");
    ok(tessera(&["asm", &matmul(), "-o", "m.tsr"], &dir.0));
    fails(
        tessera(
            &["sim", "m.tsr", "--hw", "fpga-8x8", "--json", "out.json"],
            &dir.0,
        ),
        "built for hardware `default`",
    );
    assert_eq!(dir.names(), ["m.tsr"]);
    // A racy, deadlocking program is an error naming the stuck instructions.
    dir.write("dead.s", ".queue load\n    nop wait=t1, signal=t0\n    halt\n.queue store\n    nop wait=t0, signal=t1\n    halt\n");
    fails(
        tessera(&["sim", "dead.s", "--json", "d.json"], &dir.0),
        "deadlock: no queue can proceed: load#0 (nop) waits for t1",
    );
    assert!(!dir.path("d.json").exists());
}

#[test]
fn functional_sim_loads_and_dumps_symbols() {
    let dir = TempDir::new("sim-functional");
    // C = A * B on one 8x8 int8 tile, with A and B given as files.
    let src = "\
.arch fpga-8x8
.hbm A, 0x0, 64
.hbm B, 0x100, 64
.hbm C, 0x200, 256
.queue load
    addr.set r1, A
    addr.set r2, B
    addr.set r3, 0x100
    dma.load dst=spad[r0], src=hbm[r1], rows=8, row_bytes=8, planes=1, transpose=none
    dma.load dst=spad[r3], src=hbm[r2], rows=8, row_bytes=8, planes=1, transpose=none, signal=t0
    halt
.queue matrix
    addr.set r3, 0x100
    mm.preload b=spad[r3]:int8, k=8, n=8, transpose=false, wait=t0
    mm.compute a=spad[r0]:int8, c=acc[r0]:int32, m=8, transpose=false, mode=overwrite, signal=t1
    halt
.queue store
    addr.set r1, C
    dma.store dst=hbm[r1], src=acc[r0], rows=8, row_bytes=32, planes=1, transpose=none, wait=t1
    halt
";
    dir.write("mm.s", src);
    let a: Vec<u8> = (0..64).map(|i| (i as i8 - 32) as u8).collect();
    let b: Vec<u8> = (0..64).map(|i| ((i * 3) % 17) as u8).collect();
    dir.write("a.bin", &a);
    dir.write("b.bin", &b);
    let out = ok(tessera(
        &[
            "sim",
            "mm.s",
            "--functional",
            "--load",
            "A=a.bin",
            "--load",
            "B=b.bin",
            "--dump",
            "C=c.bin",
            "--json",
            "f.json",
        ],
        &dir.0,
    ));
    assert!(out.contains("instructions executed"), "{out}");
    let c = fs::read(dir.path("c.bin")).unwrap();
    for i in 0..8 {
        for j in 0..8 {
            let want: i32 = (0..8)
                .map(|k| i32::from(a[i * 8 + k] as i8) * i32::from(b[k * 8 + j] as i8))
                .sum();
            let got =
                i32::from_le_bytes(c[(i * 8 + j) * 4..(i * 8 + j) * 4 + 4].try_into().unwrap());
            assert_eq!(got, want, "C[{i}][{j}]");
        }
    }
    let json: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.path("f.json")).unwrap()).unwrap();
    assert_eq!(json["mode"], "functional");
    assert_eq!(json["executed_instructions"]["matrix"], 4);
    // A --load of the wrong size is refused before anything runs.
    dir.write("short.bin", [0u8; 3]);
    fails(
        tessera(
            &["sim", "mm.s", "--functional", "--load", "A=short.bin"],
            &dir.0,
        ),
        "holds 3 bytes, the symbol is 64 bytes",
    );
    fails(
        tessera(
            &["sim", "mm.s", "--functional", "--dump", "Z=z.bin"],
            &dir.0,
        ),
        "no HBM symbol `Z`",
    );
}

#[test]
fn rtl_writes_design_testbench_script_and_report() {
    let dir = TempDir::new("rtl");
    // A 4x4 variant of the FPGA preset keeps synthesis quick.
    let toml = ok(tessera(&["hw", "show", "fpga-8x8"], &dir.0))
        .replace("rows = 8", "rows = 4")
        .replace("cols = 8", "cols = 4");
    dir.write(
        "hw4.toml",
        toml.replace("name = \"fpga-8x8\"", "name = \"fpga-4x4\""),
    );
    let out = ok(tessera(
        &[
            "rtl", "--hw", "hw4.toml", "--out", "gen", "--target", "generic",
        ],
        &dir.0,
    ));
    assert!(out.contains("4x4 weight-stationary array"), "{out}");
    let gen = dir.path("gen");
    for f in [
        "tessera_pe_int8.v",
        "tessera_array_int8.v",
        "tessera_pe_bf16.v",
        "tessera_array_bf16.v",
        "tb_fold_int8.v",
        "tb_fold_bf16.v",
        "tessera_core_int8.v",
        "tessera_core_bf16.v",
        "tessera_fp32_add.v",
        "tessera_vec_lane.v",
        "tessera_vec_unit.v",
        "tb_vec_lane.v",
        "tb_core_int8.v",
        "tessera_imem_bf16.hex",
        "synth_generic_int8.ys",
        "synth_generic_bf16.ys",
        "report.json",
        "report.md",
    ] {
        assert!(gen.join(f).exists(), "{f} missing");
    }
    let report: serde_json::Value =
        serde_json::from_slice(&fs::read(gen.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["array"]["rows"], 4);
    for (i, input) in ["int8", "bf16"].into_iter().enumerate() {
        let a = &report["arrays"][i];
        assert_eq!(a["input"], input, "{report}");
        // 2R + C + M - 2 with M = 2R: the fold the testbench runs.
        assert_eq!(a["testbench_cycles_expected"], 2 * 4 + 4 + 8 - 2);
        // No open place and route for the generic target.
        assert_eq!(a["place_and_route"]["status"], "skipped", "{report}");
        if std::env::var_os("TESSERA_REQUIRE_TOOLS").is_some() {
            assert_eq!(a["rtl_simulation"]["status"], "passed", "{report}");
            assert_eq!(
                a["post_synthesis_simulation"]["status"], "passed",
                "{report}"
            );
            assert!(
                a["resources"]["flip_flops"].as_u64().unwrap() > 0,
                "{report}"
            );
        }
    }
    for (i, input) in ["int8", "bf16"].into_iter().enumerate() {
        let c = &report["cores"][i];
        assert_eq!(c["input"], input, "{report}");
        assert_eq!(c["program"], "built-in", "{report}");
        if std::env::var_os("TESSERA_REQUIRE_TOOLS").is_some() {
            assert_eq!(c["rtl_simulation"]["status"], "passed", "{report}");
        }
    }
    assert_eq!(report["vector"]["top"], "tessera_vec_unit", "{report}");
    if std::env::var_os("TESSERA_REQUIRE_TOOLS").is_some() {
        assert_eq!(
            report["vector"]["rtl_simulation"]["status"], "passed",
            "{report}"
        );
    }
    // Bad options are refused before anything is written (double-buffered
    // descriptions are accepted now: tests/rtl_core_db.rs).
    fails(
        tessera(
            &["rtl", "--hw", "fpga-8x8", "--out", "no", "--freq", "0"],
            &dir.0,
        ),
        "--freq 0: must be a clock",
    );
    assert!(!dir.path("no").exists());
}

#[test]
fn compile_emits_a_graph_that_reads_back_and_rejects_bad_models() {
    let dir = TempDir::new("compile");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = root.join("examples/models/llama-tiny.json");
    let config = config.to_str().unwrap();
    let args = [
        "compile",
        "--model",
        config,
        "--batch",
        "2",
        "--seq",
        "8",
        "--optimizer",
        "lion",
    ];
    let text = ok(tessera(&args, &dir.0));
    assert!(
        text.starts_with("graph \"llama-tiny_train_step\" {\n"),
        "{}",
        &text[..80]
    );
    assert!(text.contains("assign{name=\"model.layers.1.mlp.down_proj.weight.exp_avg\"}"));
    assert_eq!(ok(tessera(&args, &dir.0)), text, "deterministic");
    // The emitted graph, written to a file, reads back and prints the same.
    let mut with_out = args.to_vec();
    with_out.extend(["-o", "step.ir"]);
    ok(tessera(&with_out, &dir.0));
    assert_eq!(
        ok(tessera(&["compile", "--graph", "step.ir"], &dir.0)),
        text
    );
    // A hand edit that breaks typing is reported at its line.
    let broken = text
        .replacen(": [2, 8] int32", ": [2, 9] int32", 1)
        .replacen("%2 = embedding(%1, %0)", "%2 = embedding(%0, %1)", 1);
    dir.write("broken.ir", broken);
    let e = fails(
        tessera(&["compile", "--graph", "broken.ir"], &dir.0),
        "broken.ir:",
    );
    assert!(e.contains("broken.ir:4:3: embedding:"), "{e}");
    // The lowered step as a container: the dependency checker accepts it and the simulator runs it.
    let mut tsr = args.to_vec();
    tsr.extend(["--emit", "tsr", "--hw", "fpga-8x8", "-o", "step.tsr"]);
    ok(tessera(&tsr, &dir.0));
    let report = ok(tessera(&["check", "step.tsr"], &dir.0));
    assert!(report.contains("clean: no races, deadlocks"), "{report}");
    assert!(ok(tessera(&["sim", "step.tsr"], &dir.0)).contains("cycles"));
    fails(
        tessera(
            &["compile", "--model", config, "--seq", "8", "--emit", "tsr"],
            &dir.0,
        ),
        "give it a file with -o",
    );
    fails(
        tessera(&["compile", "--model", "gpt9"], &dir.0),
        "unknown model preset `gpt9`",
    );
    dir.write("t5.json", r#"{"model_type": "t5"}"#);
    fails(
        tessera(&["compile", "--model", "t5.json"], &dir.0),
        "t5.json: unsupported model_type `t5`",
    );
    fails(
        tessera(
            &["compile", "--model", "gpt2-small", "--seq", "4096"],
            &dir.0,
        ),
        "exceeds the model's 1024 positions",
    );
    fails(
        tessera(
            &["compile", "--model", "gpt2-small", "--precision", "fp4"],
            &dir.0,
        ),
        "`precision` must be",
    );
    let out = tessera(
        &[
            "compile",
            "--model",
            "gpt2-small",
            "--seq",
            "4096",
            "-o",
            "x.ir",
        ],
        &dir.0,
    );
    fails(out, "positions");
    assert!(!dir.path("x.ir").exists());
}

/// A checkpoint for `config` with small deterministic values (norm weights 1).
fn checkpoint(config: &Path) -> Vec<u8> {
    use tessera::train::{write_safetensors, NamedTensor};
    use tessera_compiler::model::ModelConfig;
    use tessera_compiler::setup::TrainingSetup;
    let m = ModelConfig::from_hf_json(&fs::read_to_string(config).unwrap(), "c").unwrap();
    let g = tessera_compiler::training_graph(
        &m,
        &TrainingSetup::new(1, 4),
        tessera_compiler::Stage::Forward,
    )
    .unwrap();
    let mut seed = 1u32;
    let tensors: Vec<NamedTensor> = g
        .params()
        .map(|(v, name)| {
            let ty = g.ty(v);
            let data = (0..ty.elements())
                .map(|_| {
                    seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    if name.ends_with("ln_1.weight")
                        || name.ends_with("ln_2.weight")
                        || name == "ln_f.weight"
                    {
                        1.0
                    } else {
                        (seed >> 8) as f32 / (1u32 << 24) as f32 * 0.04 - 0.02
                    }
                })
                .collect();
            NamedTensor {
                name: name.to_string(),
                shape: ty.shape.clone(),
                data,
            }
        })
        .collect();
    write_safetensors(&tensors).unwrap()
}

#[test]
fn train_writes_losses_and_weights_and_rejects_bad_data() {
    let dir = TempDir::new("train");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = root.join("examples/models/gpt2-tiny.json");
    dir.write("init.safetensors", checkpoint(&config));
    let tokens: Vec<u8> = (0..32u16)
        .flat_map(|i| ((i * 13 + 1) % 97).to_le_bytes())
        .collect();
    dir.write("tokens.bin", &tokens);
    let config = config.to_str().unwrap();
    let base = [
        "train",
        "--model",
        config,
        "--weights",
        "init.safetensors",
        "--tokens",
        "tokens.bin",
        "--batch",
        "2",
        "--seq",
        "8",
        "--steps",
        "3",
        "--hw",
        "fpga-8x8",
        "--precision",
        "fp32",
        "--lr",
        "0.01",
    ];
    let mut args = base.to_vec();
    args.extend(["--json", "out.json", "--save-weights", "final.safetensors"]);
    let text = ok(tessera(&args, &dir.0));
    assert_eq!(text.lines().count(), 3, "{text}");
    let json: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.path("out.json")).unwrap()).unwrap();
    let steps = json["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 3);
    let losses: Vec<f64> = steps.iter().map(|s| s["loss"].as_f64().unwrap()).collect();
    assert!(
        (losses[0] - 97f64.ln()).abs() < 0.1,
        "initial loss near ln(vocab): {losses:?}"
    );
    assert!(losses[2] < losses[0], "{losses:?}");
    assert!(steps.iter().all(|s| s["grad_norm"].as_f64().unwrap() > 0.0));
    // Deterministic, and the saved weights reload and continue from where training stopped.
    assert_eq!(ok(tessera(&args, &dir.0)), text);
    let saved = tessera::train::read_safetensors(
        &fs::read(dir.path("final.safetensors")).unwrap(),
        "final",
    )
    .unwrap();
    assert_eq!(
        saved.len(),
        2 + 2 * 12 + 2,
        "wte, wpe, 12 tensors per block, ln_f"
    );
    // Bad data: one error line, status 1, no output files.
    dir.write("odd.bin", [1u8, 2, 3]);
    let mut bad = base.to_vec();
    bad[6] = "odd.bin";
    bad.extend(["--json", "bad.json"]);
    fails(
        tessera(&bad, &dir.0),
        "uint16 tokens need an even number of bytes",
    );
    dir.write("big.bin", [200u8, 0].repeat(16));
    bad[6] = "big.bin";
    fails(
        tessera(&bad, &dir.0),
        "token 200 at position 0 is outside the vocabulary of 97",
    );
    bad[6] = "tokens.bin";
    bad[4] = "tokens.bin";
    fails(tessera(&bad, &dir.0), "not a safetensors file");
    assert!(!dir.path("bad.json").exists());
}

#[test]
fn simulate_reports_the_documented_figures() {
    let dir = TempDir::new("simulate");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = root.join("examples/models/llama-tiny.json");
    let args = [
        "simulate",
        "--model",
        config.to_str().unwrap(),
        "--batch",
        "2",
        "--seq",
        "16",
        "--hw",
        "fpga-8x8",
        "--json",
        "s.json",
    ];
    let text = ok(tessera(&args, &dir.0));
    assert!(
        text.contains("MFU") && text.contains("top operators"),
        "{text}"
    );
    let j: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.path("s.json")).unwrap()).unwrap();
    for key in [
        "step_seconds",
        "tokens_per_second",
        "mfu",
        "energy_joules",
        "joules_per_token",
        "average_power_watts",
        "hbm_peak_bytes",
    ] {
        assert!(
            j[key].as_f64().is_some_and(|v| v > 0.0),
            "{key}: {}",
            j[key]
        );
    }
    let (s, t) = (
        j["step_seconds"].as_f64().unwrap(),
        j["tokens_per_second"].as_f64().unwrap(),
    );
    assert!(
        (s * t - 32.0).abs() < 1e-6,
        "tokens/s x step time = tokens per step"
    );
    assert!(j["mfu"].as_f64().unwrap() < 1.0);
    let shares: f64 = j["top_operators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["share"].as_f64().unwrap())
        .sum();
    assert!(
        (shares - 1.0).abs() < 1e-9,
        "kernels account for the whole step: {shares}"
    );
    let first = fs::read(dir.path("s.json")).unwrap();
    ok(tessera(&args, &dir.0));
    assert_eq!(
        fs::read(dir.path("s.json")).unwrap(),
        first,
        "deterministic"
    );
    fails(
        tessera(
            &[
                "simulate",
                "--model",
                "gpt2-small",
                "--batch",
                "3",
                "--hw",
                "datacenter",
            ],
            &dir.0,
        ),
        "multiple of the 4 cores",
    );
    // A model that does not fit: one line naming the sizes, before any kernel is built.
    fails(
        tessera(&["simulate", "--model", "gpt3-175b", "--batch", "1", "--seq", "2048", "--json", "big.json"], &dir.0),
        "the parameters, optimizer states and inputs need 2095251129088 bytes of HBM, the hardware has 34359738368",
    );
    assert!(!dir.path("big.json").exists());
    // The fusion report: attention fusion saves HBM traffic and time.
    let mut with_report = args.to_vec();
    with_report.push("--fusion-report");
    let text = ok(tessera(&with_report, &dir.0));
    assert!(text.contains("fusion attention"), "{text}");
    let j: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.path("s.json")).unwrap()).unwrap();
    let f = &j["fusions"][0];
    assert_eq!(f["name"], "attention");
    assert!(f["hbm_bytes_saved"].as_i64().unwrap() > 0, "{f}");
    fails(
        tessera(
            &["simulate", "--model", "gpt2-small", "--no-fuse", "nothing"],
            &dir.0,
        ),
        "unknown fusion `nothing`",
    );
    // The recomputation report: each policy keeps less than the one before
    // (at 64 positions, where activations outweigh the rest).
    let mut with_report = args.to_vec();
    with_report[6] = "64";
    with_report.push("--recompute-report");
    let text = ok(tessera(&with_report, &dir.0));
    assert!(text.contains("recompute     peak HBM"), "{text}");
    let j: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.path("s.json")).unwrap()).unwrap();
    let policies = j["recompute"].as_array().unwrap();
    let names: Vec<&str> = policies
        .iter()
        .map(|p| p["policy"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["none", "selective", "full"]);
    let peaks: Vec<u64> = policies
        .iter()
        .map(|p| p["hbm_peak_bytes"].as_u64().unwrap())
        .collect();
    assert!(peaks[0] > peaks[1] && peaks[1] > peaks[2], "{peaks:?}");
}

#[test]
fn compare_on_n_devices_runs_both_sides_through_the_scale_out_model() {
    let dir = TempDir::new("compare-n");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = root.join("examples/models/gpt2-tiny.json");
    let base = [
        "compare",
        "--model",
        config.to_str().unwrap(),
        "--batch",
        "2",
        "--seq",
        "32",
        "--hw",
        "fpga-8x8",
        "--gpu",
        "a100-80gb",
    ];
    let one_text = ok(tessera(
        &[&base[..], &["--json", "one.json"]].concat(),
        &dir.0,
    ));
    let text = ok(tessera(
        &[&base[..], &["--devices", "4", "--json", "four.json"]].concat(),
        &dir.0,
    ));
    assert!(
        text.contains("4 x tessera-fpga-8x8") && text.contains("4 x a100-80gb"),
        "{one_text}\n{text}"
    );
    let read = |name: &str| -> serde_json::Value {
        serde_json::from_str(&fs::read_to_string(dir.path(name)).unwrap()).unwrap()
    };
    let (one, four) = (read("one.json"), read("four.json"));
    assert_eq!(four["devices"], 4);
    for side in ["tessera", "gpu"] {
        let plan = four["plans"][side].as_str().unwrap();
        assert!(plan.contains("tp=1 pp=1 dp=4"), "{plan}");
        // Data parallel over 4: at most 4x one device, and communication
        // costs less than half of it on this small job.
        let ratio = four[side]["tokens_per_second"].as_f64().unwrap()
            / one[side]["tokens_per_second"].as_f64().unwrap();
        assert!(ratio > 2.0 && ratio <= 4.0 * 1.1, "{side}: {ratio}");
    }
    let searched = ok(tessera(
        &[&base[..], &["--devices", "4", "--search"]].concat(),
        &dir.0,
    ));
    assert!(searched.contains("tessera plan: tp="), "{searched}");
    fails(
        tessera(&[&base[..], &["--devices", "0"]].concat(), &dir.0),
        "--devices must be at least 1",
    );
}

#[test]
fn compare_puts_tessera_beside_a_gpu() {
    let dir = TempDir::new("compare");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = root.join("examples/models/gpt2-tiny.json");
    let args = [
        "compare",
        "--model",
        config.to_str().unwrap(),
        "--batch",
        "2",
        "--seq",
        "32",
        "--hw",
        "fpga-8x8",
        "--gpu",
        "a100-80gb",
        "--json",
        "c.json",
    ];
    let text = ok(tessera(&args, &dir.0));
    assert!(
        text.contains("tessera-fpga-8x8")
            && text.contains("a100-80gb")
            && text.contains("tokens/J"),
        "{text}"
    );
    let j: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.path("c.json")).unwrap()).unwrap();
    for side in ["tessera", "gpu"] {
        for key in [
            "step_seconds",
            "tokens_per_second",
            "mfu",
            "energy_joules",
            "tokens_per_joule",
        ] {
            assert!(
                j[side][key].as_f64().is_some_and(|v| v > 0.0),
                "{side}.{key}"
            );
        }
    }
    let r = j["ratio_tessera_over_gpu"]["tokens_per_second"]
        .as_f64()
        .unwrap();
    let want = j["tessera"]["tokens_per_second"].as_f64().unwrap()
        / j["gpu"]["tokens_per_second"].as_f64().unwrap();
    assert!((r - want).abs() < 1e-12 * want);
    fails(
        tessera(
            &["compare", "--model", "gpt2-small", "--gpu", "tpu9"],
            &dir.0,
        ),
        "tpu9",
    );
}
