//! Speed of the main job: compiling a GPT-2 small training step (batch 8 x
//! 1024, bf16-mixed, AdamW) for the `default` preset, and simulating it in
//! timing mode. Targets (issue 4): compile under 1 s, whole `tessera
//! simulate` under 3 s on the 2-core machine.

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use tessera_compiler::lower::lower_graph;
use tessera_compiler::model::ModelConfig;
use tessera_compiler::setup::{Precision, TrainingSetup};
use tessera_compiler::{training_graph, Stage};
use tessera_isa::Arch;

fn setup() -> (ModelConfig, TrainingSetup, Arch) {
    let model = ModelConfig::preset("gpt2-small").expect("preset");
    let mut s = TrainingSetup::new(8, 1024);
    s.precision = Precision::Bf16Mixed;
    (model, s, Arch::preset("default").expect("preset"))
}

fn bench(c: &mut Criterion) {
    let (model, s, arch) = setup();
    let mut group = c.benchmark_group("gpt2_small_step");
    group.sample_size(10);
    group.bench_function("graph", |b| {
        b.iter(|| black_box(training_graph(&model, &s, Stage::Step).expect("graph")))
    });
    let graph = training_graph(&model, &s, Stage::Step).expect("graph");
    group.bench_function("compile", |b| {
        b.iter(|| black_box(lower_graph(&graph, &arch).expect("lowers")))
    });
    let step = lower_graph(&graph, &arch).expect("lowers");
    group.bench_function("simulate", |b| {
        b.iter(|| black_box(tessera_sim::simulate(&step.program, false).expect("runs")))
    });
    group.bench_function("end_to_end", |b| {
        b.iter(|| black_box(tessera::step_sim::simulate_step(&model, &s, &arch).expect("runs")))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
