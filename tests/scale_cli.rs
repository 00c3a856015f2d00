//! `tessera scale` end to end: a fixed plan prints its breakdown, `--search`
//! returns a fitting plan no slower than the alternatives it lists, a
//! Tessera chip (compiler plus timing simulator as layer timer) agrees with
//! the whole-step simulation on one device, and bad input (unknown Tessera
//! presets, impossible plans, unknown names) is one error line with status 1.

use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_tessera");

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("tessera runs")
}

fn fails(args: &[&str], needle: &str) {
    let out = run(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: ") && stderr.contains(needle),
        "`{needle}` not in {stderr}"
    );
}

#[test]
fn fixed_plan_and_search_report_breakdown_memory_and_alternatives() {
    let base = [
        "scale",
        "--model",
        "gpt3-175b",
        "--devices",
        "1024",
        "--device",
        "h100",
    ];
    let out = run(&[
        &base[..],
        &[
            "--tp",
            "8",
            "--pp",
            "8",
            "--dp",
            "16",
            "--schedule",
            "interleaved:2",
            "--recompute",
            "selective",
            "--sp",
        ],
    ]
    .concat());
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    for needle in [
        "tp=8 pp=8 dp=16",
        "pipeline bubble",
        "exposed communication",
        "optimizer states",
        "activations",
    ] {
        assert!(text.contains(needle), "`{needle}` not in\n{text}");
    }
    let dir = std::env::temp_dir().join(format!("tessera-scale-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("s.json");
    let out = run(&[
        &base[..],
        &["--search", "--top", "8", "--json", json.to_str().unwrap()],
    ]
    .concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let best = v["best"]["step"].as_f64().unwrap();
    assert_eq!(v["best"]["fits"], true);
    let alts = v["alternatives"].as_array().unwrap();
    assert_eq!(alts.len(), 8);
    for a in alts {
        assert!(
            a["fits"] == true && a["step"].as_f64().unwrap() >= best,
            "{a}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_input_is_one_error_line() {
    let base = ["scale", "--model", "gpt3-175b", "--devices", "64"];
    fails(
        &[&base[..], &["--device", "tessera-nope"]].concat(),
        "unknown hardware preset `nope`",
    );
    fails(
        &[&base[..], &["--device", "h100", "--tp", "8", "--pp", "3"]].concat(),
        "tp * pp * dp",
    );
    fails(
        &[&base[..], &["--device", "b300"]].concat(),
        "unknown device `b300`",
    );
    fails(
        &[
            "scale",
            "--model",
            "gpt-9",
            "--devices",
            "8",
            "--device",
            "h100",
        ],
        "unknown model",
    );
    fails(
        &[&base[..], &["--device", "v100", "--precision", "fp8"]].concat(),
        "not supported",
    );
    fails(
        &[&base[..], &["--device", "h100", "--schedule", "zigzag"]].concat(),
        "--schedule",
    );
    fails(
        &[
            "scale",
            "--model",
            "gpt-1t",
            "--devices",
            "8",
            "--device",
            "h100",
            "--batch",
            "8",
            "--search",
        ],
        "none fits",
    );
}

fn json_of(args: &[&str], name: &str) -> serde_json::Value {
    let dir = std::env::temp_dir().join(format!("tessera-scale-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("out.json");
    let out = run(&[args, &["--json", path.to_str().unwrap()]].concat());
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    v
}

#[test]
fn tessera_chips_scale_out_from_compiled_blocks() {
    // One device, one micro-batch: the scale-out step (one- and two-block
    // models compiled and timed, head and optimizer separated) is within 5%
    // of the whole 12-block step compiled and simulated at once.
    let one = json_of(
        &[
            "scale",
            "--model",
            "gpt2-small",
            "--devices",
            "1",
            "--device",
            "tessera-default",
            "--seq",
            "128",
            "--batch",
            "4",
            "--micro-batch",
            "4",
        ],
        "one",
    );
    let step = one["best"]["step"].as_f64().unwrap();
    let sim = json_of(
        &[
            "simulate",
            "--model",
            "gpt2-small",
            "--seq",
            "128",
            "--batch",
            "4",
        ],
        "sim",
    );
    let whole = sim["step_seconds"].as_f64().unwrap();
    assert!(
        (step / whole - 1.0).abs() < 0.05,
        "scale-out {step} s against whole-step {whole} s"
    );
    // Tensor parallelism over 2 chips divides the layer compute.
    let tp2 = json_of(
        &[
            "scale",
            "--model",
            "gpt2-small",
            "--devices",
            "2",
            "--device",
            "tessera-default",
            "--seq",
            "128",
            "--batch",
            "4",
            "--micro-batch",
            "4",
            "--tp",
            "2",
        ],
        "tp2",
    );
    let c1 = one["best"]["breakdown"]["compute"].as_f64().unwrap();
    let c2 = tp2["best"]["breakdown"]["compute"].as_f64().unwrap();
    assert!((c2 / c1 - 0.5).abs() < 1e-9, "{c1} {c2}");
    assert!(tp2["best"]["breakdown"]["communication"].as_f64().unwrap() > 0.0);
    // Search on 4 chips returns a fitting plan no slower than the others.
    let found = json_of(
        &[
            "scale",
            "--model",
            "gpt2-small",
            "--devices",
            "4",
            "--device",
            "tessera-default",
            "--seq",
            "128",
            "--batch",
            "16",
            "--search",
            "--top",
            "3",
        ],
        "search",
    );
    let best = found["best"]["step"].as_f64().unwrap();
    assert_eq!(found["best"]["fits"], true);
    for a in found["alternatives"].as_array().unwrap() {
        assert!(a["step"].as_f64().unwrap() >= best, "{a}");
    }
}
