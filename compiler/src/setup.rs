//! The training setup: batch shape, precision, optimizer, recomputation
//! and gradient accumulation. Conventions follow PyTorch (`torch.optim`,
//! `torch.autocast`) so that a run can be compared with a PyTorch run.

use crate::error::SetupError;

/// Numeric recipe of a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Precision {
    /// Everything in fp32.
    Fp32,
    /// bf16 matmul inputs, fp32 accumulation, fp32 master weights, states
    /// and elementwise math.
    Bf16Mixed,
    /// As bf16-mixed with fp16 matmul inputs, plus dynamic loss scaling
    /// (`torch.cuda.amp.GradScaler`): the loss gradient starts at the scale,
    /// gradients are unscaled before the norm and the update, a step with a
    /// non-finite gradient is skipped and halves the scale, and the scale
    /// doubles after `loss_scale_interval` clean steps in a row.
    Fp16Mixed,
    /// As bf16-mixed, with the linear layers' products in fp8 (Micikevicius
    /// et al. 2022): forward operands e4m3, gradient operands e5m2, each
    /// with a dynamic per-tensor scale mapping its amax to the format's
    /// largest finite value (torchao's float8 "dynamic" recipe); the
    /// product is unscaled in fp32. The fused attention core stays bf16.
    Fp8Mixed,
}

impl Precision {
    /// Command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16Mixed => "bf16-mixed",
            Precision::Fp16Mixed => "fp16-mixed",
            Precision::Fp8Mixed => "fp8-mixed",
        }
    }

    /// Parses a command-line name.
    ///
    /// # Errors
    /// [`SetupError::Invalid`] listing the known names.
    pub fn from_name(s: &str) -> Result<Precision, SetupError> {
        match s {
            "fp32" => Ok(Precision::Fp32),
            "bf16-mixed" => Ok(Precision::Bf16Mixed),
            "fp16-mixed" => Ok(Precision::Fp16Mixed),
            "fp8-mixed" => Ok(Precision::Fp8Mixed),
            other => Err(SetupError::Invalid {
                field: "precision".into(),
                rule: format!("must be fp32, bf16-mixed, fp16-mixed or fp8-mixed, got `{other}`"),
            }),
        }
    }
}

/// Which activations the backward pass recomputes instead of keeping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Recompute {
    /// Keep every activation.
    None,
    /// Recompute the attention core (scores, softmax) only: what the fused
    /// attention op's backward does, so this needs that fusion.
    Selective,
    /// Keep only what each block reads from outside itself; recompute the
    /// block before its backward ([`crate::recompute`]).
    Full,
}

impl Recompute {
    /// Parses a command-line name.
    ///
    /// # Errors
    /// [`SetupError::Invalid`] listing the known names.
    pub fn from_name(s: &str) -> Result<Recompute, SetupError> {
        match s {
            "none" => Ok(Recompute::None),
            "selective" => Ok(Recompute::Selective),
            "full" => Ok(Recompute::Full),
            other => Err(SetupError::Invalid {
                field: "recompute".into(),
                rule: format!("must be none, selective or full, got `{other}`"),
            }),
        }
    }
}

/// An optimizer and its hyper-parameters, with `torch.optim` semantics.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Optimizer {
    /// `torch.optim.AdamW` (decoupled weight decay, bias correction).
    AdamW {
        lr: f64,
        beta1: f64,
        beta2: f64,
        eps: f64,
        weight_decay: f64,
    },
    /// `torch.optim.SGD` with momentum (dampening 0, coupled weight decay).
    Sgd {
        lr: f64,
        momentum: f64,
        weight_decay: f64,
    },
    /// Lion (Chen et al. 2023): sign of the interpolated momentum, decoupled decay.
    Lion {
        lr: f64,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
    },
    /// LAMB (You et al. 2020): bias-corrected Adam direction plus decay,
    /// scaled per tensor by the trust ratio ||p|| / ||update|| (1 if either is 0).
    Lamb {
        lr: f64,
        beta1: f64,
        beta2: f64,
        eps: f64,
        weight_decay: f64,
    },
    /// `torch.optim.Adafactor` (Shazeer and Stern 2018, with PyTorch's
    /// conventions): second moments factored into row and column means for
    /// matrices, `beta2_t = 1 - t^beta2_decay`, relative step
    /// `min(lr, 1/sqrt(t))` scaled by `max(eps2, RMS(p))`, update clipped to
    /// RMS `clip`, decoupled weight decay `lr * weight_decay`.
    Adafactor {
        lr: f64,
        beta2_decay: f64,
        eps1: f64,
        eps2: f64,
        clip: f64,
        weight_decay: f64,
    },
}

impl Optimizer {
    /// The optimizer's name on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Optimizer::AdamW { .. } => "adamw",
            Optimizer::Sgd { .. } => "sgd",
            Optimizer::Lion { .. } => "lion",
            Optimizer::Lamb { .. } => "lamb",
            Optimizer::Adafactor { .. } => "adafactor",
        }
    }

    /// Builds an optimizer from its name and the usual hyper-parameters
    /// (`momentum` is read from `beta1` for SGD). Adafactor takes `lr` and
    /// `weight_decay` and PyTorch's defaults for the rest (`beta2_decay`
    /// -0.8, `eps` (fp32 machine epsilon, 1e-3), `d` 1): `betas` and `eps`
    /// are Adam's and do not apply to it.
    ///
    /// # Errors
    /// An unknown name, or a hyper-parameter outside its range.
    pub fn from_name(
        name: &str,
        lr: f64,
        betas: (f64, f64),
        eps: f64,
        weight_decay: f64,
    ) -> Result<Optimizer, SetupError> {
        let bad = |field: &str, rule: String| {
            Err(SetupError::Invalid {
                field: field.into(),
                rule,
            })
        };
        if !(lr.is_finite() && lr >= 0.0) {
            return bad("lr", format!("must be finite and non-negative, got {lr}"));
        }
        for (field, b) in [("betas[0]", betas.0), ("betas[1]", betas.1)] {
            if !(0.0..1.0).contains(&b) {
                return bad(field, format!("must be in [0, 1), got {b}"));
            }
        }
        if !(eps.is_finite() && eps > 0.0) {
            return bad("eps", format!("must be positive, got {eps}"));
        }
        if !(weight_decay.is_finite() && weight_decay >= 0.0) {
            return bad(
                "weight_decay",
                format!("must be non-negative, got {weight_decay}"),
            );
        }
        let (beta1, beta2) = betas;
        Ok(match name {
            "adamw" => Optimizer::AdamW {
                lr,
                beta1,
                beta2,
                eps,
                weight_decay,
            },
            "sgd" => Optimizer::Sgd {
                lr,
                momentum: beta1,
                weight_decay,
            },
            "lion" => Optimizer::Lion {
                lr,
                beta1,
                beta2,
                weight_decay,
            },
            "lamb" => Optimizer::Lamb {
                lr,
                beta1,
                beta2,
                eps,
                weight_decay,
            },
            "adafactor" => Optimizer::Adafactor {
                lr,
                beta2_decay: -0.8,
                eps1: f64::from(f32::EPSILON),
                eps2: 1e-3,
                clip: 1.0,
                weight_decay,
            },
            other => {
                return bad(
                    "optimizer",
                    format!("must be adamw, sgd, lion, lamb or adafactor, got `{other}`"),
                )
            }
        })
    }
}

/// Everything about a step except the model and the hardware.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainingSetup {
    /// Sequences per micro-batch.
    pub batch: u64,
    /// Tokens per sequence.
    pub seq: u64,
    /// Numeric recipe.
    pub precision: Precision,
    /// Update rule.
    pub optimizer: Optimizer,
    /// Activation recomputation policy.
    pub recompute: Recompute,
    /// Micro-batches whose gradients are averaged before one update.
    pub grad_accumulation: u64,
    /// Fusion passes to run.
    pub fusion: crate::fuse::Fusion,
    /// fp16-mixed: the initial loss scale (PyTorch's default 65536).
    pub loss_scale_init: f64,
    /// fp16-mixed: clean steps before the scale doubles (PyTorch: 2000).
    pub loss_scale_interval: u64,
}

impl TrainingSetup {
    /// The usual defaults: AdamW (lr 1e-3, betas 0.9/0.999, eps 1e-8, wd
    /// 0.01), fp32, no recomputation, no accumulation.
    pub fn new(batch: u64, seq: u64) -> TrainingSetup {
        TrainingSetup {
            batch,
            seq,
            precision: Precision::Fp32,
            optimizer: Optimizer::AdamW {
                lr: 1e-3,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.01,
            },
            recompute: Recompute::None,
            grad_accumulation: 1,
            fusion: crate::fuse::Fusion::ALL,
            loss_scale_init: 65536.0,
            loss_scale_interval: 2000,
        }
    }

    /// Tokens processed per optimizer step.
    pub fn tokens_per_step(&self) -> u64 {
        self.batch * self.seq * self.grad_accumulation
    }
}
