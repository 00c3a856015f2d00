//! `tessera calibrate`: fits the GPU device model to the shipped (or a
//! given) calibration data, prints held-out errors per data group next to
//! the Hugging Face baseline, and writes the fitted parameters file.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use tessera_sim::gpu::calibrate::{calibrate, fit_file, report_table};
use tessera_sim::gpu::{dataset, hf, spec};

use crate::files::{print, read_text, shown, write_atomic};

/// The measurements shipped in `data/calibration/`, compiled in so the
/// default run works from any directory.
const SHIPPED_MEASUREMENTS: &str = include_str!("../data/calibration/training_measurements.csv");
const SHIPPED_HF: &str = include_str!("../data/calibration/hf_speed_model.csv");

/// Options of `tessera calibrate`.
#[derive(Debug, clap::Args)]
pub struct CalibrateArgs {
    /// Directory with `training_measurements.csv` and `hf_speed_model.csv`
    /// (default: the copies shipped in `data/calibration/`).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Write the fitted parameters here (the repository keeps them in
    /// `data/gpu_fit.toml`, which the GPU model compiles in).
    #[arg(long, value_name = "FILE.toml")]
    pub out: Option<PathBuf>,
    /// Write the full report (groups and every point) as JSON.
    #[arg(long, value_name = "REPORT.json")]
    pub json: Option<PathBuf>,
    /// Cross-validation folds.
    #[arg(long, default_value_t = 5, value_name = "K")]
    pub folds: usize,
}

/// Runs `tessera calibrate`.
pub fn run(args: &CalibrateArgs) -> Result<()> {
    let (measurements, hf_text, data_name) = match &args.data {
        Some(dir) => (
            read_text(&dir.join("training_measurements.csv"))?,
            read_text(&dir.join("hf_speed_model.csv"))?,
            shown(&dir.join("training_measurements.csv")),
        ),
        None => (
            SHIPPED_MEASUREMENTS.to_string(),
            SHIPPED_HF.to_string(),
            "data/calibration/training_measurements.csv".to_string(),
        ),
    };
    let hf_name = match &args.data {
        Some(dir) => shown(&dir.join("hf_speed_model.csv")),
        None => "data/calibration/hf_speed_model.csv".into(),
    };
    let (points, skipped) = dataset::load(&measurements, &data_name)?;
    let hf = hf::parse_hf(&hf_text, &hf_name)?;
    let devices = spec::builtin_devices()?;
    let report = calibrate(&points, &devices, &hf, args.folds)?;
    let mut text = report_table(&report);
    text.push_str(&format!(
        "\n{} rows skipped (scale-out validations, time-to-train, TPUs, low confidence); see --json\n",
        skipped.len()
    ));
    if let Some(out) = &args.out {
        let command = match &args.data {
            Some(_) => format!(
                "tessera calibrate --data DIR --folds {} --out FILE",
                args.folds
            ),
            None => format!(
                "tessera calibrate --folds {} --out data/gpu_fit.toml",
                args.folds
            ),
        };
        let file = fit_file(&report, &command, &data_name, measurements.as_bytes());
        write_atomic(out, file.to_toml().as_bytes())?;
        text.push_str(&format!("wrote {}\n", shown(out)));
    }
    if let Some(json) = &args.json {
        write_json(json, &report, &skipped)?;
    }
    print(&text)
}

fn write_json(
    path: &Path,
    report: &tessera_sim::gpu::CalibrationReport,
    skipped: &[dataset::Skipped],
) -> Result<()> {
    let skipped: Vec<serde_json::Value> = skipped
        .iter()
        .map(|s| serde_json::json!({"line": s.line, "group": s.group, "reason": s.reason}))
        .collect();
    let value = serde_json::json!({
        "folds": report.folds,
        "groups": report.groups,
        "points": report.points,
        "skipped": skipped,
        "assumptions": dataset::ASSUMPTIONS,
    });
    let text = serde_json::to_string_pretty(&value).context("serialising the report")?;
    write_atomic(path, format!("{text}\n").as_bytes())
}
