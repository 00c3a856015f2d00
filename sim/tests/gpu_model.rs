//! The GPU device model: shipped data parses, step estimates obey the
//! physical bounds (energy between idle and TDP, faster hardware is not
//! slower), the Hugging Face baseline reproduces its source's example, and
//! workloads count parameters as their sources do.

use tessera_sim::gpu::hf::{parse_hf, HfSpeed};
use tessera_sim::gpu::params::builtin_fit;
use tessera_sim::gpu::spec::builtin_devices;
use tessera_sim::gpu::{GpuModel, StepLayout};
use tessera_sim::workload::{self, AttentionKernel, Precision, Recompute, Workload};

const ONE: StepLayout = StepLayout {
    grad_accum: 1,
    optimizer_shards: 1,
};

fn job(name: &str, micro: u32) -> Workload {
    let mut w = workload::preset(name).unwrap();
    w.micro_batch = micro;
    w
}

fn seconds(gpu: &str, w: &Workload) -> f64 {
    GpuModel::builtin(gpu).unwrap().step(w, ONE).unwrap().time.0
}

#[test]
fn every_device_has_fitted_parameters() {
    let fit = builtin_fit().unwrap();
    for d in builtin_devices().unwrap() {
        assert!(fit.family(&d.family).is_ok(), "{} ({})", d.name, d.family);
        assert!(GpuModel::builtin(&d.name).is_ok());
    }
}

#[test]
fn energy_stays_between_idle_and_tdp_power() {
    for (gpu, model, micro) in [
        ("v100", "gpt2-small", 8),
        ("a100-40gb", "gpt2-medium", 4),
        ("a100-80gb", "llama-7b", 1),
        ("h100", "gpt2-xl", 8),
        ("h200", "llama-13b", 2),
    ] {
        let m = GpuModel::builtin(gpu).unwrap();
        let s = m.step(&job(model, micro), ONE).unwrap();
        let watts = s.avg_watts();
        assert!(
            watts >= m.spec.idle_w && watts <= m.spec.tdp_w + 1e-9,
            "{gpu} {model}: {watts} W"
        );
        let t = s.times;
        let parts = t.forward.0 + t.backward.0 + t.recompute.0 + t.optimizer.0;
        assert!((parts - s.time.0).abs() < 1e-12);
        assert!(
            t.backward.0 > t.forward.0,
            "{gpu} {model}: backward is cheaper than forward"
        );
    }
}

#[test]
fn achieved_throughput_never_exceeds_the_spec_peak() {
    for gpu in ["v100", "a100-80gb", "h100", "h200"] {
        let m = GpuModel::builtin(gpu).unwrap();
        let s = m.step(&job("gpt3-175b", 1), ONE).unwrap();
        let achieved = s.model_flops / s.time.0;
        let peak = m.spec.peak_flops(Precision::Mixed16).unwrap();
        assert!(
            achieved < peak && achieved > 0.2 * peak,
            "{gpu}: {achieved:e} of {peak:e}"
        );
    }
}

#[test]
fn faster_hardware_and_kernels_are_faster() {
    let w = job("gpt2-xl", 8);
    assert!(seconds("h100", &w) < seconds("a100-80gb", &w));
    assert!(seconds("a100-80gb", &w) < seconds("v100", &w));
    assert!(seconds("h200", &w) <= seconds("h100", &w));
    assert!(seconds("a100-80gb", &w) <= seconds("a100-40gb", &w));
    let fp8 = Workload {
        precision: Precision::Fp8,
        ..job("llama-13b", 2)
    };
    assert!(seconds("h100", &fp8) < seconds("h100", &job("llama-13b", 2)));
    let mut long = job("gpt2-medium", 2);
    long.seq = 8192;
    let unfused = Workload {
        attention: AttentionKernel::Unfused,
        ..long.clone()
    };
    assert!(seconds("a100-80gb", &long) < seconds("a100-80gb", &unfused));
}

#[test]
fn recomputation_and_accumulation_cost_what_they_should() {
    let m = GpuModel::builtin("a100-80gb").unwrap();
    let base = job("gpt-7.5b", 1);
    let none = m.step(&base, ONE).unwrap();
    let sel = m
        .step(
            &Workload {
                recompute: Recompute::Selective,
                ..base.clone()
            },
            ONE,
        )
        .unwrap();
    let full = m
        .step(
            &Workload {
                recompute: Recompute::Full,
                ..base.clone()
            },
            ONE,
        )
        .unwrap();
    assert!(none.time < sel.time && sel.time < full.time);
    // Full recomputation repeats the forward pass: between 1/4 and 1/2 more.
    let extra = full.time.0 / none.time.0 - 1.0;
    assert!((0.2..0.5).contains(&extra), "{extra}");
    // Accumulation repeats the micro-batch, not the optimizer.
    let acc = m
        .step(
            &base,
            StepLayout {
                grad_accum: 4,
                optimizer_shards: 1,
            },
        )
        .unwrap();
    assert!((acc.times.optimizer.0 - none.times.optimizer.0).abs() < 1e-15);
    assert!((acc.times.forward.0 - 4.0 * none.times.forward.0).abs() < 1e-12);
}

#[test]
fn missing_precisions_are_errors_not_guesses() {
    let w = Workload {
        precision: Precision::Tf32,
        ..job("gpt2-small", 1)
    };
    let e = GpuModel::builtin("v100")
        .unwrap()
        .step(&w, ONE)
        .unwrap_err();
    assert!(e.to_string().contains("not supported"), "{e}");
    let fp8 = Workload {
        precision: Precision::Fp8,
        ..job("gpt2-small", 1)
    };
    assert!(GpuModel::builtin("a100-80gb")
        .unwrap()
        .step(&fp8, ONE)
        .is_err());
    assert!(GpuModel::builtin("tpu-v9").is_err());
}

#[test]
fn hf_speed_fit_reproduces_its_sources_examples() {
    let hf = parse_hf(
        include_str!("../../data/calibration/hf_speed_model.csv"),
        "hf_speed_model.csv",
    )
    .unwrap();
    let v100: &HfSpeed = hf.iter().find(|h| h.gpu == "V100").unwrap();
    // NOTES.md: V100, depth = width/128, batch 64, O0: width 512 -> 1.88e12,
    // width 1024 -> 8.45e12 FLO/s; O1: 2.22e12 and 1.00e13.
    for (width, o0, o1) in [(512u32, 1.88e12, 2.22e12), (1024, 8.45e12, 1.00e13)] {
        let w = Workload {
            layers: width / 128,
            hidden: width,
            heads: 8,
            kv_heads: 8,
            micro_batch: 64,
            precision: Precision::Fp32,
            ..job("gpt2-small", 64)
        };
        let got0 = v100.flo_per_s(&w);
        let got1 = v100.flo_per_s(&Workload {
            precision: Precision::Mixed16,
            ..w
        });
        assert!((got0 / o0 - 1.0).abs() < 0.01, "{width}: {got0:e}");
        assert!((got1 / o1 - 1.0).abs() < 0.01, "{width}: {got1:e}");
    }
}

#[test]
fn presets_count_parameters_like_their_sources() {
    for (name, billions, tol) in [
        ("gpt3-175b", 175.0, 0.01),
        ("gpt2-small", 0.124, 0.02),
        ("gpt2-xl", 1.558, 0.01),
        ("bert-large", 0.335, 0.03),
        ("llama-7b", 6.74, 0.01),
        ("llama-70b", 69.0, 0.01),
        ("gpt-1t", 1008.0, 0.01),
        ("gpt-145.6b", 145.6, 0.01),
    ] {
        let p = workload::preset(name).unwrap().params() / 1e9;
        assert!((p / billions - 1.0).abs() < tol, "{name}: {p} B");
    }
    let bad = Workload {
        heads: 7,
        ..job("gpt2-small", 1)
    };
    let e = bad.validate().unwrap_err().to_string();
    assert!(e.contains("`heads`") && e.contains("divide"), "{e}");
    assert!(workload::preset("gpt-5").is_err());
}
