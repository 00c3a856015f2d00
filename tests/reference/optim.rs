//! Optimisers with the update rules of `torch.optim.AdamW` and `SGD`,
//! lucidrains' `lion-pytorch` Lion, and LAMB as in the paper (apex
//! `FusedLAMB` with bias correction, no gradient clipping). Updates are per
//! tensor, in f64.

use super::tensor::Tensor;
use super::weights::Weights;

/// An optimiser and its hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Optimizer {
    /// `torch.optim.AdamW`: `p *= 1 - lr wd`, then Adam with bias correction,
    /// `p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)`.
    AdamW {
        lr: f64,
        beta1: f64,
        beta2: f64,
        eps: f64,
        weight_decay: f64,
    },
    /// `torch.optim.SGD` (dampening 0, no Nesterov): `g += wd p`; the
    /// momentum buffer is `g` at step 1, then `mu buf + g`; `p -= lr buf`.
    Sgd {
        lr: f64,
        momentum: f64,
        weight_decay: f64,
    },
    /// Lion: `p -= lr (sign(b1 m + (1 - b1) g) + wd p)`, then `m = b2 m + (1 - b2) g`.
    Lion {
        lr: f64,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
    },
    /// LAMB: `u = m_hat / (sqrt(v_hat) + eps) + wd p`, trust ratio
    /// `||p|| / ||u||` per tensor (1 when either norm is 0), `p -= lr ratio u`.
    Lamb {
        lr: f64,
        beta1: f64,
        beta2: f64,
        eps: f64,
        weight_decay: f64,
    },
}

impl Optimizer {
    /// AdamW with PyTorch's defaults other than `lr` (betas 0.9/0.999, eps 1e-8, wd 0.01).
    pub fn adamw(lr: f64) -> Optimizer {
        Optimizer::AdamW {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

/// Per-parameter optimiser state. `step` counts updates applied so far.
#[derive(Debug, Clone, Default)]
pub struct OptState {
    pub step: u64,
    /// First moment (AdamW, Lion, LAMB) or momentum buffer (SGD).
    pub m: Weights,
    /// Second moment (AdamW, LAMB).
    pub v: Weights,
}

fn norm(x: &[f64]) -> f64 {
    x.iter().map(|a| a * a).sum::<f64>().sqrt()
}

/// torch's `sign`: 0 at 0.
fn sign(x: f64) -> f64 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

impl Optimizer {
    /// Applies one update to every parameter of `params` that has a gradient.
    pub fn step(&self, state: &mut OptState, params: &mut Weights, grads: &Weights) {
        state.step += 1;
        let t = state.step as f64;
        for (name, p) in params.map.iter_mut() {
            let Some(g) = grads.map.get(name) else {
                continue;
            };
            let g = &g.data;
            let m = &mut state
                .m
                .map
                .entry(name.clone())
                .or_insert_with(|| Tensor::zeros(&p.shape))
                .data;
            let v = &mut state
                .v
                .map
                .entry(name.clone())
                .or_insert_with(|| Tensor::zeros(&p.shape))
                .data;
            let p = &mut p.data;
            match *self {
                Optimizer::AdamW {
                    lr,
                    beta1,
                    beta2,
                    eps,
                    weight_decay,
                } => {
                    let (bc1, bc2) = (1.0 - beta1.powf(t), 1.0 - beta2.powf(t));
                    for j in 0..p.len() {
                        p[j] *= 1.0 - lr * weight_decay;
                        m[j] = beta1 * m[j] + (1.0 - beta1) * g[j];
                        v[j] = beta2 * v[j] + (1.0 - beta2) * g[j] * g[j];
                        let denom = v[j].sqrt() / bc2.sqrt() + eps;
                        p[j] -= lr / bc1 * m[j] / denom;
                    }
                }
                Optimizer::Sgd {
                    lr,
                    momentum,
                    weight_decay,
                } => {
                    for j in 0..p.len() {
                        let d = g[j] + weight_decay * p[j];
                        let d = if momentum == 0.0 {
                            d
                        } else {
                            m[j] = if state.step == 1 {
                                d
                            } else {
                                momentum * m[j] + d
                            };
                            m[j]
                        };
                        p[j] -= lr * d;
                    }
                }
                Optimizer::Lion {
                    lr,
                    beta1,
                    beta2,
                    weight_decay,
                } => {
                    for j in 0..p.len() {
                        let u = sign(beta1 * m[j] + (1.0 - beta1) * g[j]);
                        p[j] -= lr * (u + weight_decay * p[j]);
                        m[j] = beta2 * m[j] + (1.0 - beta2) * g[j];
                    }
                }
                Optimizer::Lamb {
                    lr,
                    beta1,
                    beta2,
                    eps,
                    weight_decay,
                } => {
                    let (bc1, bc2) = (1.0 - beta1.powf(t), 1.0 - beta2.powf(t));
                    let mut u = vec![0.0; p.len()];
                    for j in 0..p.len() {
                        m[j] = beta1 * m[j] + (1.0 - beta1) * g[j];
                        v[j] = beta2 * v[j] + (1.0 - beta2) * g[j] * g[j];
                        u[j] = (m[j] / bc1) / ((v[j] / bc2).sqrt() + eps) + weight_decay * p[j];
                    }
                    let (pn, un) = (norm(p), norm(&u));
                    let ratio = if pn > 0.0 && un > 0.0 { pn / un } else { 1.0 };
                    for j in 0..p.len() {
                        p[j] -= lr * ratio * u[j];
                    }
                }
            }
        }
    }
}
