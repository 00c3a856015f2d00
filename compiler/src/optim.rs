//! Optimizer updates written as graph code, one rule per
//! [`Optimizer`], with `torch.optim` semantics. Moments are fp32 states
//! named `{param}.{moment}`; bias corrections use running powers
//! `optim.beta1_power` / `optim.beta2_power` (states starting at 1) so the
//! step number never has to be baked into the program.

use tessera_isa::DType;

use crate::autodiff::Gradients;
use crate::error::IrError;
use crate::ir::{AdamPart, Graph, Op, TensorType, Unary, ValueId};
use crate::setup::Optimizer;

/// Appends the update of every parameter in `grads` (each gradient
/// already averaged over the batch) and the `assign`s that commit it.
///
/// # Errors
/// Only if the graph is inconsistent (a compiler bug).
pub fn update(g: &mut Graph, grads: &Gradients, opt: &Optimizer) -> Result<(), IrError> {
    update_guarded(g, grads, opt, None, false)
}

/// [`update`] where every parameter and state keeps its old value unless
/// the scalar `guard` is non-zero (a step skipped on gradient overflow);
/// with `fused`, AdamW is emitted as fused `adamw` ops.
///
/// # Errors
/// Only if the graph is inconsistent (a compiler bug).
pub fn update_guarded(
    g: &mut Graph,
    grads: &Gradients,
    opt: &Optimizer,
    guard: Option<ValueId>,
    fused: bool,
) -> Result<(), IrError> {
    let mut u = Updater { g, guard };
    if let (
        true,
        Optimizer::AdamW {
            lr,
            beta1,
            beta2,
            eps,
            weight_decay,
        },
    ) = (fused, *opt)
    {
        return fused_adamw(&mut u, grads, (lr, beta1, beta2, eps, weight_decay));
    }
    // Bias-correction powers, advanced once per step.
    let powers = match *opt {
        Optimizer::AdamW { beta1, beta2, .. } | Optimizer::Lamb { beta1, beta2, .. } => {
            Some(u.bias_corrections(beta1, beta2)?)
        }
        Optimizer::Sgd { .. } | Optimizer::Lion { .. } | Optimizer::Adafactor { .. } => None,
    };
    // Adafactor's per-step scalars, shared by every parameter.
    let adafactor = match *opt {
        Optimizer::Adafactor {
            lr, beta2_decay, ..
        } => Some(u.adafactor_schedule(lr, beta2_decay)?),
        _ => None,
    };
    for (p, name, grad) in &grads.params {
        let (p, grad) = (*p, *grad);
        let shape = u.g.ty(p).shape.clone();
        let new_p = match *opt {
            Optimizer::AdamW {
                lr,
                beta1,
                beta2,
                eps,
                weight_decay,
            } => {
                let (c1, c2) = powers.expect("adamw has bias corrections");
                let (m, v) = u.moments(name, &shape, grad, beta1, beta2)?;
                let decayed = u.affine(p, 1.0 - lr * weight_decay, 0.0)?;
                // denom = sqrt(v) / sqrt(1 - beta2^t) + eps
                let sv = u.unary(Unary::Sqrt, v)?;
                let sc2 = u.unary(Unary::Sqrt, c2)?;
                let ratio = u.bin(Op::Div, sv, sc2)?;
                let denom = u.affine(ratio, 1.0, eps)?;
                // step = lr / (1 - beta1^t)
                let rc1 = u.unary(Unary::Recip, c1)?;
                let step = u.affine(rc1, lr, 0.0)?;
                let dir = u.bin(Op::Div, m, denom)?;
                let delta = u.bin(Op::Mul, dir, step)?;
                u.bin(Op::Sub, decayed, delta)?
            }
            Optimizer::Sgd {
                lr,
                momentum,
                weight_decay,
            } => {
                let d = if weight_decay != 0.0 {
                    let wd = u.affine(p, weight_decay, 0.0)?;
                    u.bin(Op::Add, grad, wd)?
                } else {
                    grad
                };
                let step_dir = if momentum != 0.0 {
                    let buf = u.state(&format!("{name}.momentum_buffer"), &shape, 0.0)?;
                    let kept = u.affine(buf, momentum, 0.0)?;
                    let buf = u.bin(Op::Add, kept, d)?;
                    u.assign(&format!("{name}.momentum_buffer"), buf)?;
                    buf
                } else {
                    d
                };
                let delta = u.affine(step_dir, lr, 0.0)?;
                u.bin(Op::Sub, p, delta)?
            }
            Optimizer::Lion {
                lr,
                beta1,
                beta2,
                weight_decay,
            } => {
                let m = u.state(&format!("{name}.exp_avg"), &shape, 0.0)?;
                let mi = u.affine(m, beta1, 0.0)?;
                let gi = u.affine(grad, 1.0 - beta1, 0.0)?;
                let c = u.bin(Op::Add, mi, gi)?;
                let s = u.unary(Unary::Sign, c)?;
                let delta = u.affine(s, lr, 0.0)?;
                let decayed = u.affine(p, 1.0 - lr * weight_decay, 0.0)?;
                let np = u.bin(Op::Sub, decayed, delta)?;
                let mk = u.affine(m, beta2, 0.0)?;
                let gk = u.affine(grad, 1.0 - beta2, 0.0)?;
                let m2 = u.bin(Op::Add, mk, gk)?;
                u.assign(&format!("{name}.exp_avg"), m2)?;
                np
            }
            Optimizer::Lamb {
                lr,
                beta1,
                beta2,
                eps,
                weight_decay,
            } => {
                let (c1, c2) = powers.expect("lamb has bias corrections");
                let (m, v) = u.moments(name, &shape, grad, beta1, beta2)?;
                let mh = u.bin(Op::Div, m, c1)?;
                let vh = u.bin(Op::Div, v, c2)?;
                let sv = u.unary(Unary::Sqrt, vh)?;
                let denom = u.affine(sv, 1.0, eps)?;
                let adam = u.bin(Op::Div, mh, denom)?;
                let upd = if weight_decay != 0.0 {
                    let wd = u.affine(p, weight_decay, 0.0)?;
                    u.bin(Op::Add, adam, wd)?
                } else {
                    adam
                };
                let pn = u.norm(p)?;
                let un = u.norm(upd)?;
                // trust = ||p|| / ||u|| if both are non-zero, else 1
                let both = u.bin(Op::Mul, pn, un)?;
                let ok = u.unary(Unary::NonZero, both)?;
                let ratio = u.bin(Op::Div, pn, un)?;
                let one = u.g.push(
                    Op::Const {
                        value: 1.0,
                        ty: TensorType::scalar(),
                    },
                    &[],
                )?;
                let trust = u.g.push(Op::Where, &[ok, ratio, one])?;
                let scaled = u.bin(Op::Mul, upd, trust)?;
                let delta = u.affine(scaled, lr, 0.0)?;
                u.bin(Op::Sub, p, delta)?
            }
            Optimizer::Adafactor {
                lr,
                eps1,
                eps2,
                clip,
                weight_decay,
                ..
            } => {
                let (one_minus_beta2, rho) = adafactor.expect("adafactor has a schedule");
                u.adafactor(
                    name,
                    (p, grad),
                    (one_minus_beta2, rho),
                    (lr, eps1, eps2, clip, weight_decay),
                )?
            }
        };
        u.assign(name, new_p)?;
    }
    Ok(())
}

/// AdamW as one `adamw` op per parameter and result (the lowering runs
/// the three results of a parameter as one kernel). The bias-correction
/// scalars are computed once for all parameters.
fn fused_adamw(
    u: &mut Updater,
    grads: &Gradients,
    (lr, beta1, beta2, eps, weight_decay): (f64, f64, f64, f64, f64),
) -> Result<(), IrError> {
    let (c1, c2) = u.bias_corrections(beta1, beta2)?;
    let sc2 = u.unary(Unary::Sqrt, c2)?;
    let rc1 = u.unary(Unary::Recip, c1)?;
    let step = u.affine(rc1, lr, 0.0)?;
    for (p, name, grad) in &grads.params {
        let shape = u.g.ty(*p).shape.clone();
        let m = u.state(&format!("{name}.exp_avg"), &shape, 0.0)?;
        let v = u.state(&format!("{name}.exp_avg_sq"), &shape, 0.0)?;
        let operands = [*p, *grad, m, v, sc2, step];
        let mut results = Vec::new();
        for part in [AdamPart::M, AdamPart::V, AdamPart::P] {
            results.push(u.g.push(
                Op::AdamW {
                    lr,
                    beta1,
                    beta2,
                    eps,
                    weight_decay,
                    part,
                },
                &operands,
            )?);
        }
        u.assign(&format!("{name}.exp_avg"), results[0])?;
        u.assign(&format!("{name}.exp_avg_sq"), results[1])?;
        u.assign(name, results[2])?;
    }
    Ok(())
}

struct Updater<'a> {
    g: &'a mut Graph,
    /// Commit only where this scalar is non-zero.
    guard: Option<ValueId>,
}

impl Updater<'_> {
    /// `(1 - beta1^t, 1 - beta2^t)` from running powers advanced once per step.
    fn bias_corrections(&mut self, beta1: f64, beta2: f64) -> Result<(ValueId, ValueId), IrError> {
        let p1 = self.state("optim.beta1_power", &[], 1.0)?;
        let p2 = self.state("optim.beta2_power", &[], 1.0)?;
        let p1 = self.affine(p1, beta1, 0.0)?;
        let p2 = self.affine(p2, beta2, 0.0)?;
        self.assign("optim.beta1_power", p1)?;
        self.assign("optim.beta2_power", p2)?;
        Ok((self.affine(p1, -1.0, 1.0)?, self.affine(p2, -1.0, 1.0)?))
    }

    fn state(&mut self, name: &str, shape: &[u64], init: f64) -> Result<ValueId, IrError> {
        self.g.push(
            Op::State {
                name: name.into(),
                ty: TensorType::new(shape, DType::Fp32),
                init,
            },
            &[],
        )
    }

    fn assign(&mut self, name: &str, v: ValueId) -> Result<(), IrError> {
        let v = match self.guard {
            Some(ok) => {
                let old = self.g.nodes.iter().position(|n| match &n.op {
                    Op::Param { name: n2, .. } | Op::State { name: n2, .. } => n2 == name,
                    _ => false,
                });
                match old {
                    Some(old) => self.g.push(Op::Where, &[ok, v, ValueId(old)])?,
                    None => v,
                }
            }
            None => v,
        };
        self.g
            .push(Op::Assign { name: name.into() }, &[v])
            .map(|_| ())
    }

    fn affine(&mut self, x: ValueId, scale: f64, shift: f64) -> Result<ValueId, IrError> {
        self.g.push(Op::Affine { scale, shift }, &[x])
    }

    fn unary(&mut self, f: Unary, x: ValueId) -> Result<ValueId, IrError> {
        self.g.push(Op::Unary(f), &[x])
    }

    fn bin(&mut self, op: Op, a: ValueId, b: ValueId) -> Result<ValueId, IrError> {
        self.g.push(op, &[a, b])
    }

    fn scalar(&mut self, value: f64) -> Result<ValueId, IrError> {
        self.g.push(
            Op::Const {
                value,
                ty: TensorType::scalar(),
            },
            &[],
        )
    }

    /// Root mean square of all elements.
    fn rms(&mut self, x: ValueId) -> Result<ValueId, IrError> {
        let n = self.g.ty(x).elements() as f64;
        let sq = self.unary(Unary::Square, x)?;
        let s = self.g.push(Op::SumAll, &[sq])?;
        let mean = self.affine(s, 1.0 / n, 0.0)?;
        self.unary(Unary::Sqrt, mean)
    }

    /// `a + w (b - a)` (`torch.lerp`).
    fn lerp(&mut self, a: ValueId, b: ValueId, w: ValueId) -> Result<ValueId, IrError> {
        let d = self.bin(Op::Sub, b, a)?;
        let wd = self.bin(Op::Mul, d, w)?;
        self.bin(Op::Add, a, wd)
    }

    /// Adafactor's step counter and the scalars derived from it:
    /// `(1 - beta2_t, rho_t) = (t^beta2_decay, min(lr, 1/sqrt(t)))`.
    fn adafactor_schedule(
        &mut self,
        lr: f64,
        beta2_decay: f64,
    ) -> Result<(ValueId, ValueId), IrError> {
        let step = self.state("optim.step", &[], 0.0)?;
        let t = self.affine(step, 1.0, 1.0)?;
        self.assign("optim.step", t)?;
        let log_t = self.unary(Unary::Log, t)?;
        let scaled = self.affine(log_t, beta2_decay, 0.0)?;
        let one_minus_beta2 = self.unary(Unary::Exp, scaled)?;
        let inv_sqrt = self.unary(Unary::Rsqrt, t)?;
        let lr = self.scalar(lr)?;
        let rho = self.bin(Op::Min, inv_sqrt, lr)?;
        Ok((one_minus_beta2, rho))
    }

    /// One parameter's Adafactor update (`torch.optim.Adafactor`, single
    /// tensor path): matrices keep a row factor `[rows, 1]` and a column
    /// factor `[1, cols]` of the squared-gradient means, vectors the full
    /// second moment. Returns the new parameter.
    fn adafactor(
        &mut self,
        name: &str,
        (p, grad): (ValueId, ValueId),
        (one_minus_beta2, rho): (ValueId, ValueId),
        (lr, eps1, eps2, clip, weight_decay): (f64, f64, f64, f64, f64),
    ) -> Result<ValueId, IrError> {
        let shape = self.g.ty(p).shape.clone();
        // alpha = max(eps2, RMS(p)) * rho, from the parameter before decay.
        let rms_p = self.rms(p)?;
        let eps2 = self.scalar(eps2)?;
        let scale = self.bin(Op::Max, rms_p, eps2)?;
        let alpha = self.bin(Op::Mul, scale, rho)?;
        let decayed = self.affine(p, 1.0 - lr * weight_decay, 0.0)?;
        let g2 = self.unary(Unary::Square, grad)?;
        let variance = if let [rows, cols] = shape[..] {
            // Row means of g^2 as a matrix-vector product with ones, as
            // the array computes them; column means by summing rows.
            let ones = self.g.push(
                Op::Const {
                    value: 1.0 / cols as f64,
                    ty: TensorType::new(&[cols, 1], DType::Fp32),
                },
                &[],
            )?;
            let row_mean = self.g.push(
                Op::MatMul {
                    ta: false,
                    tb: false,
                    out: DType::Fp32,
                },
                &[g2, ones],
            )?;
            let col_sum = self.g.push(Op::SumTo { shape: vec![cols] }, &[g2])?;
            let col_mean = self.affine(col_sum, 1.0 / rows as f64, 0.0)?;
            let col_mean = self.g.push(
                Op::Reshape {
                    shape: vec![1, cols],
                },
                &[col_mean],
            )?;
            let row_name = format!("{name}.row_var");
            let col_name = format!("{name}.col_var");
            let row_var = self.state(&row_name, &[rows, 1], 0.0)?;
            let col_var = self.state(&col_name, &[1, cols], 0.0)?;
            let row_var = self.lerp(row_var, row_mean, one_minus_beta2)?;
            let col_var = self.lerp(col_var, col_mean, one_minus_beta2)?;
            self.assign(&row_name, row_var)?;
            self.assign(&col_name, col_var)?;
            // V = (R C) / max(mean(R), eps1): an outer product (k = 1).
            let outer = self.g.push(
                Op::MatMul {
                    ta: false,
                    tb: false,
                    out: DType::Fp32,
                },
                &[row_var, col_var],
            )?;
            let row_total = self.g.push(Op::SumAll, &[row_var])?;
            let row_mean_all = self.affine(row_total, 1.0 / rows as f64, 0.0)?;
            let floor = self.scalar(eps1)?;
            let denom = self.bin(Op::Max, row_mean_all, floor)?;
            self.bin(Op::Div, outer, denom)?
        } else {
            let var_name = format!("{name}.variance");
            let v = self.state(&var_name, &shape, 0.0)?;
            let v = self.lerp(v, g2, one_minus_beta2)?;
            self.assign(&var_name, v)?;
            v
        };
        // U = g / sqrt(max(V, eps1^2)); clipped to RMS `clip`.
        let floor = self.scalar(eps1 * eps1)?;
        let clamped = self.bin(Op::Max, variance, floor)?;
        let inv = self.unary(Unary::Rsqrt, clamped)?;
        let update = self.bin(Op::Mul, inv, grad)?;
        let rms_u = self.rms(update)?;
        let ratio = self.affine(rms_u, 1.0 / clip, 0.0)?;
        let one = self.scalar(1.0)?;
        let denom = self.bin(Op::Max, ratio, one)?;
        let step = self.bin(Op::Div, alpha, denom)?;
        let delta = self.bin(Op::Mul, update, step)?;
        self.bin(Op::Sub, decayed, delta)
    }

    fn norm(&mut self, x: ValueId) -> Result<ValueId, IrError> {
        let sq = self.unary(Unary::Square, x)?;
        let s = self.g.push(Op::SumAll, &[sq])?;
        self.unary(Unary::Sqrt, s)
    }

    /// Adam's first and second moments, updated and assigned.
    fn moments(
        &mut self,
        name: &str,
        shape: &[u64],
        grad: ValueId,
        beta1: f64,
        beta2: f64,
    ) -> Result<(ValueId, ValueId), IrError> {
        let m = self.state(&format!("{name}.exp_avg"), shape, 0.0)?;
        let v = self.state(&format!("{name}.exp_avg_sq"), shape, 0.0)?;
        let mk = self.affine(m, beta1, 0.0)?;
        let gk = self.affine(grad, 1.0 - beta1, 0.0)?;
        let m = self.bin(Op::Add, mk, gk)?;
        let vk = self.affine(v, beta2, 0.0)?;
        let g2 = self.unary(Unary::Square, grad)?;
        let gk2 = self.affine(g2, 1.0 - beta2, 0.0)?;
        let v = self.bin(Op::Add, vk, gk2)?;
        self.assign(&format!("{name}.exp_avg"), m)?;
        self.assign(&format!("{name}.exp_avg_sq"), v)?;
        Ok((m, v))
    }
}
