//! Optimizer graph code against `torch.optim`'s update formulas, computed
//! by hand in the test for two steps on a two-element tensor.

use std::collections::HashMap;

use tessera_compiler::autodiff::Gradients;
use tessera_compiler::ir::eval::{eval, Rounding, Tensor};
use tessera_compiler::ir::{Graph, Op, TensorType};
use tessera_compiler::optim::update;
use tessera_compiler::setup::Optimizer;
use tessera_isa::DType;

/// Runs two steps of `opt` from p0 with gradients g1, g2; returns p after each.
fn run(opt: &Optimizer, p0: [f64; 2], grads: [[f64; 2]; 2]) -> Vec<[f64; 2]> {
    let mut g = Graph::new("opt");
    let ty = TensorType::new(&[2], DType::Fp32);
    let p = g
        .push(
            Op::Param {
                name: "w".into(),
                ty: ty.clone(),
            },
            &[],
        )
        .unwrap();
    let d = g
        .push(
            Op::Input {
                name: "grad".into(),
                ty,
            },
            &[],
        )
        .unwrap();
    update(
        &mut g,
        &Gradients {
            params: vec![(p, "w".into(), d)],
        },
        opt,
    )
    .unwrap();
    let mut feeds: HashMap<String, Tensor> = HashMap::new();
    feeds.insert("w".into(), Tensor::new(&[2], p0.to_vec()));
    let mut out = Vec::new();
    for grad in grads {
        feeds.insert("grad".into(), Tensor::new(&[2], grad.to_vec()));
        let e = eval(&g, &feeds, Rounding::Exact).unwrap();
        for (name, t) in e.assigned {
            feeds.insert(name, t);
        }
        let w = &feeds["w"].data;
        out.push([w[0], w[1]]);
    }
    out
}

fn close(a: &[[f64; 2]], b: &[[f64; 2]], what: &str) {
    for (x, y) in a.iter().flatten().zip(b.iter().flatten()) {
        assert!(
            (x - y).abs() < 1e-12 * (1.0 + y.abs()),
            "{what}: {a:?} vs {b:?}"
        );
    }
}

const P0: [f64; 2] = [0.5, -1.25];
const G: [[f64; 2]; 2] = [[0.1, -0.3], [-0.2, 0.05]];

#[test]
fn adamw_matches_torch() {
    let (lr, b1, b2, eps, wd) = (1e-2, 0.9, 0.999, 1e-8, 0.1);
    let mut p = P0;
    let (mut m, mut v) = ([0.0; 2], [0.0; 2]);
    let mut want = Vec::new();
    for (t, g) in G.iter().enumerate() {
        let t = t as i32 + 1;
        for i in 0..2 {
            p[i] *= 1.0 - lr * wd;
            m[i] = b1 * m[i] + (1.0 - b1) * g[i];
            v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
            let (c1, c2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
            let denom = v[i].sqrt() / c2.sqrt() + eps;
            p[i] -= lr / c1 * m[i] / denom;
        }
        want.push(p);
    }
    let opt = Optimizer::AdamW {
        lr,
        beta1: b1,
        beta2: b2,
        eps,
        weight_decay: wd,
    };
    close(&run(&opt, P0, G), &want, "adamw");
}

#[test]
fn sgd_momentum_matches_torch() {
    let (lr, mom, wd) = (0.1, 0.9, 0.01);
    let mut p = P0;
    let mut buf: Option<[f64; 2]> = None;
    let mut want = Vec::new();
    for g in G {
        let d = [g[0] + wd * p[0], g[1] + wd * p[1]];
        // torch: the first step's buffer is the gradient itself.
        let b = match buf {
            None => d,
            Some(b) => [mom * b[0] + d[0], mom * b[1] + d[1]],
        };
        buf = Some(b);
        p = [p[0] - lr * b[0], p[1] - lr * b[1]];
        want.push(p);
    }
    close(
        &run(
            &Optimizer::Sgd {
                lr,
                momentum: mom,
                weight_decay: wd,
            },
            P0,
            G,
        ),
        &want,
        "sgd",
    );
}

#[test]
fn lion_matches_the_paper() {
    let (lr, b1, b2, wd) = (1e-3, 0.9, 0.99, 0.5);
    let mut p = P0;
    let mut m = [0.0; 2];
    let mut want = Vec::new();
    for g in G {
        for i in 0..2 {
            let c = b1 * m[i] + (1.0 - b1) * g[i];
            p[i] = p[i] * (1.0 - lr * wd) - lr * c.signum();
            m[i] = b2 * m[i] + (1.0 - b2) * g[i];
        }
        want.push(p);
    }
    close(
        &run(
            &Optimizer::Lion {
                lr,
                beta1: b1,
                beta2: b2,
                weight_decay: wd,
            },
            P0,
            G,
        ),
        &want,
        "lion",
    );
}

#[test]
fn lamb_matches_the_paper() {
    let (lr, b1, b2, eps, wd) = (1e-2, 0.9, 0.999, 1e-6, 0.01);
    let mut p = P0;
    let (mut m, mut v) = ([0.0; 2], [0.0; 2]);
    let mut want = Vec::new();
    for (t, g) in G.iter().enumerate() {
        let t = t as i32 + 1;
        let mut u = [0.0; 2];
        for i in 0..2 {
            m[i] = b1 * m[i] + (1.0 - b1) * g[i];
            v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
            let mh = m[i] / (1.0 - b1.powi(t));
            let vh = v[i] / (1.0 - b2.powi(t));
            u[i] = mh / (vh.sqrt() + eps) + wd * p[i];
        }
        let pn = (p[0] * p[0] + p[1] * p[1]).sqrt();
        let un = (u[0] * u[0] + u[1] * u[1]).sqrt();
        let trust = if pn > 0.0 && un > 0.0 { pn / un } else { 1.0 };
        p = [p[0] - lr * trust * u[0], p[1] - lr * trust * u[1]];
        want.push(p);
    }
    let opt = Optimizer::Lamb {
        lr,
        beta1: b1,
        beta2: b2,
        eps,
        weight_decay: wd,
    };
    close(&run(&opt, P0, G), &want, "lamb");
    // A zero parameter falls back to a trust ratio of 1.
    let zero = run(&opt, [0.0, 0.0], [[0.1, -0.3], [0.1, -0.3]]);
    assert!((zero[0][0] + lr * (1.0 + 0.0)).abs() < 1e-6, "{zero:?}");
}
