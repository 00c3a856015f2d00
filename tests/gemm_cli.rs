//! `tessera gemm` on SCALE-Sim's own inputs (`data/scalesim`): its compute
//! cycles are SCALE-Sim's weight-stationary formula plus one (the same
//! relation as the bare timing model: SCALE-Sim prints the last cycle's
//! index), total cycles are at least the compute cycles and within 1% of
//! them, DRAM bytes are what the DMA moved, the CSV has SCALE-Sim's
//! COMPUTE_REPORT columns, outputs are deterministic, and bad inputs give
//! one `error:` line, exit status 1 and no output file.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_tessera");

fn data(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data/scalesim")
        .join(name)
        .display()
        .to_string()
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tessera-gemm-cli-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn tessera(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

/// Rows of a CSV with a trailing comma on every line, cells trimmed.
fn csv(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(|l| {
            let mut cells: Vec<String> = l.split(',').map(|c| c.trim().to_string()).collect();
            cells.pop();
            cells
        })
        .collect()
}

#[test]
fn bert_gemms_match_scalesim_compute_cycles() {
    let dir = scratch("bert");
    let (out_csv, out_json) = (dir.join("report.csv"), dir.join("report.json"));
    let args = [
        "gemm",
        "--topology",
        &data("bert_base_gemms.csv"),
        "--config",
        &data("ws32_calc.cfg"),
        "--csv",
        out_csv.to_str().unwrap(),
        "--json",
        out_json.to_str().unwrap(),
    ];
    let o = tessera(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ours = csv(&fs::read_to_string(&out_csv).unwrap());
    let theirs = csv(&fs::read_to_string(data("COMPUTE_REPORT_ws32_calc.csv")).unwrap());
    assert_eq!(ours[0][..7], theirs[0][..]);
    assert_eq!(ours.len(), theirs.len());
    let json: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&out_json).unwrap()).unwrap();
    for (i, (row, want)) in ours[1..].iter().zip(&theirs[1..]).enumerate() {
        let n = |cells: &[String], c: usize| cells[c].parse::<u64>().unwrap();
        let (total, stall) = (n(row, 2), n(row, 3));
        let compute = n(row, 8);
        assert_eq!(compute, n(want, 2) + 1, "layer {i}: compute cycles");
        assert_eq!(total - stall, compute);
        assert!(n(row, 1) >= total && total >= compute);
        assert!(
            (stall as f64) < 0.01 * compute as f64,
            "layer {i}: {stall} stall cycles"
        );
        let layer = &json["layers"][i];
        let (m, nn, k) = (
            layer["m"].as_u64().unwrap(),
            layer["n"].as_u64().unwrap(),
            layer["k"].as_u64().unwrap(),
        );
        assert_eq!(layer["macs"].as_u64().unwrap(), m * nn * k);
        assert_eq!(layer["compute_cycles"].as_u64().unwrap(), compute);
        // C is written once; A is read once per 32-column tile of C and B
        // once per accumulator block of 512 rows (the whole M here).
        assert_eq!(layer["dram_write_bytes"].as_u64().unwrap(), m * nn * 2);
        let reads = m * k * 2 * nn.div_ceil(32) + k * nn * 2;
        assert_eq!(layer["dram_read_bytes"].as_u64().unwrap(), reads);
    }
    // Deterministic: a second run writes the same bytes.
    let first = fs::read(&out_csv).unwrap();
    assert!(tessera(&args).status.success());
    assert_eq!(fs::read(&out_csv).unwrap(), first);
}

#[test]
fn bad_inputs_are_one_line_errors_without_output() {
    let dir = scratch("bad");
    let cfg = fs::read_to_string(data("ws32_calc.cfg")).unwrap();
    let cases = [
        (
            "t.csv",
            "Layer,M,N,K,\nx,1,0,3,\n",
            "ws32_calc.cfg",
            cfg.clone(),
            "t.csv:2: field `N`",
        ),
        (
            "t.csv",
            "Layer,M,N,K,\nx,4,4,4,\n",
            "c.cfg",
            cfg.replace("ws", "is"),
            "c.cfg:14: field `Dataflow`: input-stationary",
        ),
        (
            "t.csv",
            "Layer,M,N,K,\nx,4,4,4,\n",
            "c.cfg",
            cfg.replace("ArrayHeight:    32", "ArrayHeight: 0"),
            "c.cfg:5: field `ArrayHeight`",
        ),
        (
            "t.csv",
            "Layer,M,N,K,\nx,4,4,4,\nhuge,18446744073709551615,4,4,\n",
            "ws32_calc.cfg",
            cfg.clone(),
            "layer `huge`: a 18446744073709551615 x 4 operand does not fit",
        ),
    ];
    for (topo_name, topo, cfg_name, cfg_text, want) in cases {
        let (t, c, out) = (dir.join(topo_name), dir.join(cfg_name), dir.join("out.csv"));
        fs::write(&t, topo).unwrap();
        fs::write(&c, &cfg_text).unwrap();
        let o = tessera(&[
            "gemm",
            "--topology",
            t.to_str().unwrap(),
            "--config",
            c.to_str().unwrap(),
            "--csv",
            out.to_str().unwrap(),
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("error: ") && err.contains(want), "{err}");
        assert!(!out.exists());
    }
}
