//! Fits each device family's efficiency parameters to calibration points
//! and measures the error on points left out of the fit (stratified k-fold
//! cross-validation), next to the Hugging Face speed-fit baseline on the
//! same held-out points.
//!
//! Objective: mean squared log error of predicted tokens/s per GPU, plus a
//! weak pull (weight [`PRIOR_WEIGHT`]) of each log-parameter towards its
//! prior so parameters the data barely constrains stay sensible.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::gpu::dataset::CalPoint;
use crate::gpu::fit::nelder_mead;
use crate::gpu::hf::HfSpeed;
use crate::gpu::model::GpuModel;
use crate::gpu::params::{FamilyParams, FitFile, PARAM_NAMES};
use crate::gpu::spec::DeviceSpec;
use crate::model_error::ModelError;
use crate::units::Seconds;
use crate::workload::{AttentionKernel, Op, Precision};

/// Weight of the pull towards the priors.
pub const PRIOR_WEIGHT: f64 = 1e-3;

/// Evaluations per fitted parameter in one Nelder–Mead run.
pub const EVALS_PER_PARAM: usize = 300;

/// Lower and upper bounds of each parameter (in [`PARAM_NAMES`] order).
const BOUNDS: [(f64, f64); 9] = [
    (0.05, 1.0),
    (0.05, 1.0),
    (0.05, 1.0),
    (0.05, 1.0),
    (1.0, 4096.0),
    (0.05, 1.5),
    (0.05, 1.5),
    (0.05, 1.0),
    (0.1, 200.0),
];

/// Error figures of one group (or of all points).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupError {
    /// Group name, or `overall`.
    pub group: String,
    /// Points in the group.
    pub points: usize,
    /// Mean absolute percentage error on held-out points.
    pub heldout_mape: f64,
    /// Largest absolute percentage error on a held-out point.
    pub heldout_max: f64,
    /// Mean absolute percentage error of the final fit on its own points.
    pub insample_mape: f64,
    /// The Hugging Face baseline's held-out MAPE on the same points.
    pub hf_heldout_mape: f64,
}

/// One point's measured and predicted throughput (tokens/s per GPU).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PointResult {
    pub line: usize,
    pub group: String,
    pub device: String,
    pub model: String,
    pub measured: f64,
    pub heldout: f64,
    pub insample: f64,
    pub hf_heldout: f64,
}

/// The calibration result: fitted parameters and error tables.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CalibrationReport {
    /// Folds of the cross-validation.
    pub folds: usize,
    /// Per group, sorted by name, then `overall` last.
    pub groups: Vec<GroupError>,
    /// Every point.
    pub points: Vec<PointResult>,
    /// Parameters fitted on all points.
    #[serde(skip)]
    pub fit: Vec<FamilyParams>,
}

impl CalibrationReport {
    /// The `overall` row.
    pub fn overall(&self) -> &GroupError {
        &self.groups[self.groups.len() - 1]
    }
}

/// A point with its operators precomputed, for fast repeated evaluation.
struct Prepared<'a> {
    point: &'a CalPoint,
    spec: &'a DeviceSpec,
    ops: Vec<Op>,
    optimizer: Vec<Op>,
}

impl Prepared<'_> {
    fn predict(&self, params: &FamilyParams) -> f64 {
        let gpu = GpuModel {
            spec: self.spec.clone(),
            params: params.clone(),
        };
        let p = self.point.job.precision;
        let accum = f64::from(self.point.layout.grad_accum.max(1));
        let mut t = Seconds::ZERO;
        for op in &self.ops {
            t += gpu.op_time(op, p).unwrap_or(Seconds(f64::INFINITY)) * accum;
        }
        for op in &self.optimizer {
            t += gpu.op_time(op, p).unwrap_or(Seconds(f64::INFINITY));
        }
        self.point.job.tokens() * accum / t.0
    }
}

fn family_of<'a>(devices: &'a [DeviceSpec], name: &str) -> Result<&'a DeviceSpec, ModelError> {
    devices
        .iter()
        .find(|d| d.name == name)
        .ok_or_else(|| ModelError::Unknown {
            what: "device",
            name: name.to_string(),
            known: devices
                .iter()
                .map(|d| d.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Which parameters the points of one family constrain.
fn active(points: &[&Prepared]) -> Vec<usize> {
    let mut on = [false; 9];
    for p in points {
        let job = &p.point.job;
        on[match job.precision {
            Precision::Fp32 => 0,
            Precision::Tf32 => 1,
            Precision::Mixed16 => 2,
            Precision::Fp8 => 3,
        }] = true;
        if job.precision == Precision::Fp8 {
            on[2] = true;
        }
        match job.attention {
            AttentionKernel::Flash => on[5] = true,
            AttentionKernel::FlashV1 => on[6] = true,
            AttentionKernel::Unfused => {}
        }
        on[4] = true;
        on[7] = true;
        on[8] = true;
    }
    (0..9).filter(|&i| on[i]).collect()
}

fn fit_family(name: &str, points: &[&Prepared]) -> FamilyParams {
    let prior = FamilyParams::prior(name);
    let p0 = prior.values();
    let idx = active(points);
    if points.is_empty() || idx.is_empty() {
        return prior;
    }
    let build = |x: &[f64]| {
        let mut v = p0;
        for (k, &i) in idx.iter().enumerate() {
            v[i] = x[k].exp().clamp(BOUNDS[i].0, BOUNDS[i].1);
        }
        prior.with_values(&v)
    };
    let mut objective = |x: &[f64]| {
        let params = build(x);
        let mut sum = 0.0;
        let mut total = 0.0;
        for p in points {
            let e = (p.predict(&params) / p.point.tokens_per_s).ln();
            sum += if e.is_finite() { e * e } else { 1e6 };
            total += 1.0;
        }
        let pull: f64 = idx
            .iter()
            .enumerate()
            .map(|(k, &i)| (x[k] - p0[i].ln()).powi(2))
            .sum();
        sum / total + PRIOR_WEIGHT * pull
    };
    let x0: Vec<f64> = idx.iter().map(|&i| p0[i].ln()).collect();
    let (x, _) = nelder_mead(&mut objective, &x0, 0.4, EVALS_PER_PARAM * idx.len());
    // A second start from the first result escapes collapsed simplices.
    let (x, _) = nelder_mead(&mut objective, &x, 0.1, EVALS_PER_PARAM * idx.len());
    build(&x)
}

fn fit_all(prepared: &[&Prepared], families: &[String]) -> Vec<FamilyParams> {
    families
        .iter()
        .map(|f| {
            let mine: Vec<&Prepared> = prepared
                .iter()
                .copied()
                .filter(|p| &p.spec.family == f)
                .collect();
            fit_family(f, &mine)
        })
        .collect()
}

/// HF baseline for held-out points: published V100 constants; for other
/// families the multiplicative constant refitted on the training points
/// ("different GPUs had close results with a different multiplicative
/// constant", Le Scao 2020).
fn hf_fit(train: &[&Prepared], hf_v100: &HfSpeed, family: &str) -> HfSpeed {
    if family == "v100" {
        return hf_v100.clone();
    }
    let unit = HfSpeed {
        k: 1.0,
        ..hf_v100.clone()
    };
    let logs: Vec<f64> = train
        .iter()
        .filter(|p| p.spec.family == family)
        .map(|p| (p.point.tokens_per_s / unit.tokens_per_s(&p.point.job)).ln())
        .collect();
    let k = if logs.is_empty() {
        hf_v100.k
    } else {
        (logs.iter().sum::<f64>() / logs.len() as f64).exp()
    };
    HfSpeed { k, ..unit }
}

fn ape(pred: f64, meas: f64) -> f64 {
    100.0 * ((pred - meas) / meas).abs()
}

/// Fits the parameters on all points and cross-validates with `folds`
/// stratified folds (the i-th point of each group goes to fold `i % folds`).
///
/// # Errors
/// [`ModelError::Unknown`] for a point on a device not in `devices`, or
/// [`ModelError::Data`] when `hf` has no `V100` row or `folds < 2`.
pub fn calibrate(
    points: &[CalPoint],
    devices: &[DeviceSpec],
    hf: &[HfSpeed],
    folds: usize,
) -> Result<CalibrationReport, ModelError> {
    if folds < 2 {
        return Err(ModelError::Data {
            file: "calibration".into(),
            detail: "cross-validation needs at least 2 folds".into(),
        });
    }
    let hf_v100 = hf
        .iter()
        .find(|h| h.gpu == "V100")
        .ok_or(ModelError::Data {
            file: "hf_speed_model.csv".into(),
            detail: "no `V100` row".into(),
        })?;
    let mut prepared = Vec::with_capacity(points.len());
    for p in points {
        p.job.validate()?;
        let spec = family_of(devices, &p.device)?;
        let shard = p.job.params() / f64::from(p.layout.optimizer_shards.max(1));
        prepared.push(Prepared {
            point: p,
            spec,
            ops: p.job.micro_batch_ops(),
            optimizer: p.job.optimizer_ops(shard),
        });
    }
    let mut families: Vec<String> = devices.iter().map(|d| d.family.clone()).collect();
    families.sort();
    families.dedup();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let fold_of: Vec<usize> = points
        .iter()
        .map(|p| {
            let n = seen.entry(p.group.as_str()).or_insert(0);
            *n += 1;
            (*n - 1) % folds
        })
        .collect();
    let mut heldout = vec![0.0; points.len()];
    let mut hf_heldout = vec![0.0; points.len()];
    for fold in 0..folds {
        let train: Vec<&Prepared> = prepared
            .iter()
            .zip(&fold_of)
            .filter(|(p, &f)| f != fold && p.point.in_scope)
            .map(|(p, _)| p)
            .collect();
        let fitted = fit_all(&train, &families);
        for (i, p) in prepared.iter().enumerate() {
            if fold_of[i] != fold {
                continue;
            }
            let params = fitted
                .iter()
                .find(|f| f.name == p.spec.family)
                .unwrap_or(&fitted[0]);
            heldout[i] = p.predict(params);
            hf_heldout[i] = hf_fit(&train, hf_v100, &p.spec.family).tokens_per_s(&p.point.job);
        }
    }
    let all: Vec<&Prepared> = prepared.iter().filter(|p| p.point.in_scope).collect();
    let fit = fit_all(&all, &families);
    let results: Vec<PointResult> = prepared
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let params = fit
                .iter()
                .find(|f| f.name == p.spec.family)
                .unwrap_or(&fit[0]);
            PointResult {
                line: p.point.line,
                group: if p.point.in_scope {
                    p.point.group.clone()
                } else {
                    // Out-of-scope points (Transformer-XL: relative-position
                    // attention and adaptive softmax) are named by model, so
                    // the row is not read as part of their source group.
                    let family = p.point.job.name.split(' ').next().unwrap_or("");
                    format!("{family} (not fitted)")
                },
                device: p.point.device.clone(),
                model: p.point.job.name.clone(),
                measured: p.point.tokens_per_s,
                heldout: heldout[i],
                insample: p.predict(params),
                hf_heldout: hf_heldout[i],
            }
        })
        .collect();
    let mut names: Vec<String> = results.iter().map(|r| r.group.clone()).collect();
    names.sort();
    names.dedup();
    names.push("overall".into());
    let groups = names
        .into_iter()
        .map(|g| {
            let rows: Vec<&PointResult> = results
                .iter()
                .filter(|r| {
                    if g == "overall" {
                        !r.group.ends_with("(not fitted)")
                    } else {
                        r.group == g
                    }
                })
                .collect();
            let n = rows.len().max(1) as f64;
            let mean = |f: &dyn Fn(&PointResult) -> f64| rows.iter().map(|r| f(r)).sum::<f64>() / n;
            GroupError {
                points: rows.len(),
                heldout_mape: mean(&|r| ape(r.heldout, r.measured)),
                heldout_max: rows
                    .iter()
                    .map(|r| ape(r.heldout, r.measured))
                    .fold(0.0, f64::max),
                insample_mape: mean(&|r| ape(r.insample, r.measured)),
                hf_heldout_mape: mean(&|r| ape(r.hf_heldout, r.measured)),
                group: g,
            }
        })
        .collect();
    Ok(CalibrationReport {
        folds,
        groups,
        points: results,
        fit,
    })
}

/// The fit as the `data/gpu_fit.toml` file.
pub fn fit_file(
    report: &CalibrationReport,
    command: &str,
    data: &str,
    data_bytes: &[u8],
) -> FitFile {
    FitFile {
        command: command.to_string(),
        data: data.to_string(),
        data_fnv1a: format!("{:016x}", fnv1a(data_bytes)),
        points: report
            .points
            .iter()
            .filter(|p| !p.group.ends_with("(not fitted)"))
            .count(),
        family: report.fit.clone(),
    }
}

/// FNV-1a 64-bit hash.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The report as a fixed-width text table.
pub fn report_table(report: &CalibrationReport) -> String {
    use std::fmt::Write as _;
    let mut s = format!(
        "GPU model calibration: {} points, {}-fold cross-validation (stratified by group)\n\
         throughput error in tokens/s per GPU; MAPE = mean absolute percentage error\n\n",
        report.points.len(),
        report.folds
    );
    let _ = writeln!(
        s,
        "{:<28} {:>6} {:>14} {:>12} {:>14} {:>16}",
        "group", "points", "held-out MAPE", "held-out max", "in-sample MAPE", "HF baseline MAPE"
    );
    for g in &report.groups {
        let _ = writeln!(
            s,
            "{:<28} {:>6} {:>13.1}% {:>11.1}% {:>13.1}% {:>15.1}%",
            g.group, g.points, g.heldout_mape, g.heldout_max, g.insample_mape, g.hf_heldout_mape
        );
    }
    s.push_str("\nfitted parameters (all points):\n");
    let _ = write!(s, "{:<8}", "family");
    for n in PARAM_NAMES {
        let _ = write!(s, " {n:>16}");
    }
    s.push('\n');
    for f in &report.fit {
        let _ = write!(s, "{:<8}", f.name);
        for v in f.values() {
            let _ = write!(s, " {v:>16.4}");
        }
        s.push('\n');
    }
    s
}
