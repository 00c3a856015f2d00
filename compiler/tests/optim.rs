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

/// `torch.optim.Adafactor`'s single-tensor update, written out in f64 for a
/// matrix (factored second moment) or a vector.
struct TorchAdafactor {
    rows: usize,
    cols: usize,
    row_var: Vec<f64>,
    col_var: Vec<f64>,
    variance: Vec<f64>,
    step: f64,
}

impl TorchAdafactor {
    fn new(rows: usize, cols: usize) -> Self {
        TorchAdafactor {
            rows,
            cols,
            row_var: vec![0.0; rows],
            col_var: vec![0.0; cols],
            variance: vec![0.0; rows * cols],
            step: 0.0,
        }
    }

    /// One step; `matrix` says whether the tensor is 2-D.
    fn step(&mut self, p: &mut [f64], g: &[f64], matrix: bool, lr: f64, wd: f64) {
        let (eps1, eps2, d, decay): (f64, f64, f64, f64) =
            (f64::from(f32::EPSILON), 1e-3, 1.0, -0.8);
        self.step += 1.0;
        let t = self.step;
        let one_minus_beta2 = t.powf(decay);
        let rho = lr.min(1.0 / t.sqrt());
        let rms = |x: &[f64]| (x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64).sqrt();
        let alpha = eps2.max(rms(p)) * rho;
        for v in p.iter_mut() {
            *v *= 1.0 - lr * wd;
        }
        let var: Vec<f64> = if matrix {
            let (r, c) = (self.rows, self.cols);
            for i in 0..r {
                let mean = (0..c).map(|j| g[i * c + j] * g[i * c + j]).sum::<f64>() / c as f64;
                self.row_var[i] += one_minus_beta2 * (mean - self.row_var[i]);
            }
            for j in 0..c {
                let mean = (0..r).map(|i| g[i * c + j] * g[i * c + j]).sum::<f64>() / r as f64;
                self.col_var[j] += one_minus_beta2 * (mean - self.col_var[j]);
            }
            let row_mean = (self.row_var.iter().sum::<f64>() / r as f64).max(eps1);
            (0..r * c)
                .map(|k| self.row_var[k / c] * self.col_var[k % c] / row_mean)
                .collect()
        } else {
            for (v, x) in self.variance.iter_mut().zip(g) {
                *v += one_minus_beta2 * (x * x - *v);
            }
            self.variance.clone()
        };
        let update: Vec<f64> = var
            .iter()
            .zip(g)
            .map(|(v, x)| x / v.max(eps1 * eps1).sqrt())
            .collect();
        let denom = (rms(&update) / d).max(1.0);
        for (v, u) in p.iter_mut().zip(&update) {
            *v -= alpha / denom * u;
        }
    }
}

#[test]
fn adafactor_matches_torch() {
    let (lr, wd) = (0.6, 0.05);
    let (rows, cols) = (3u64, 4u64);
    let mut g = Graph::new("opt");
    let mut params = Vec::new();
    for (name, shape) in [("w", vec![rows, cols]), ("b", vec![cols])] {
        let ty = TensorType::new(&shape, DType::Fp32);
        let p = g
            .push(
                Op::Param {
                    name: name.into(),
                    ty: ty.clone(),
                },
                &[],
            )
            .unwrap();
        let d = g
            .push(
                Op::Input {
                    name: format!("{name}.grad"),
                    ty,
                },
                &[],
            )
            .unwrap();
        params.push((p, name.to_string(), d));
    }
    let opt = Optimizer::from_name("adafactor", lr, (0.9, 0.999), 1e-8, wd).unwrap();
    update(&mut g, &Gradients { params }, &opt).unwrap();

    let n = (rows * cols) as usize;
    let mut w: Vec<f64> = (0..n).map(|k| (k as f64 * 0.37).sin()).collect();
    let mut b: Vec<f64> = (0..cols as usize).map(|k| 0.2 * k as f64 - 0.3).collect();
    let mut feeds: HashMap<String, Tensor> = HashMap::new();
    feeds.insert("w".into(), Tensor::new(&[rows, cols], w.clone()));
    feeds.insert("b".into(), Tensor::new(&[cols], b.clone()));
    let (mut torch_w, mut torch_b) = (
        TorchAdafactor::new(rows as usize, cols as usize),
        TorchAdafactor::new(1, cols as usize),
    );
    // Steps 1 to 3: rho = min(lr, 1/sqrt(t)) switches at t = 3; the matrix
    // gradient jumps 50-fold at step 2, so that update's RMS exceeds 1 and
    // it is clipped.
    for step in 0..3 {
        let gw: Vec<f64> = (0..n)
            .map(|k| ((k * 7 + step * 3) as f64 * 0.53).cos() * if step == 1 { 5.0 } else { 0.1 })
            .collect();
        let gb: Vec<f64> = (0..cols as usize)
            .map(|k| 0.05 * (k as f64 + 1.0) * if step == 1 { -1.0 } else { 1.0 })
            .collect();
        feeds.insert("w.grad".into(), Tensor::new(&[rows, cols], gw.clone()));
        feeds.insert("b.grad".into(), Tensor::new(&[cols], gb.clone()));
        let e = eval(&g, &feeds, Rounding::Exact).unwrap();
        for (name, t) in e.assigned {
            feeds.insert(name, t);
        }
        torch_w.step(&mut w, &gw, true, lr, wd);
        torch_b.step(&mut b, &gb, false, lr, wd);
        for (name, want) in [("w", &w), ("b", &b)] {
            for (got, want) in feeds[name].data.iter().zip(want.iter()) {
                assert!(
                    (got - want).abs() < 1e-12 * (1.0 + want.abs()),
                    "adafactor step {} {name}: {got} vs {want}",
                    step + 1
                );
            }
        }
    }
    // The factored state is sublinear: rows + cols numbers for the matrix.
    assert_eq!(feeds["w.row_var"].data.len(), rows as usize);
    assert_eq!(feeds["w.col_var"].data.len(), cols as usize);
    assert!(!feeds.contains_key("w.variance"));
}
