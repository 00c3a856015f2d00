//! `tessera scale` end to end: a fixed plan prints its breakdown, `--search`
//! returns a fitting plan no slower than the alternatives it lists, and bad
//! input (Tessera devices before the compiler joins, impossible plans,
//! unknown names) is one error line with status 1.

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
        &[&base[..], &["--device", "tessera-default"]].concat(),
        "need the compiler",
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
