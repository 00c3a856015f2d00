//! Training loops over fixed data: loss and gradients from the model, the
//! global gradient norm before the update, then one optimiser step; with
//! optional gradient accumulation over micro-batches (mean of their losses
//! and gradients, as Hugging Face's Trainer does with equal-size micro-batches).

use super::config::RefConfig;
use super::error::RefError;
use super::model::{loss_and_grads, Batch};
use super::optim::{OptState, Optimizer};
use super::weights::Weights;

/// What one training step reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepRecord {
    /// Mean loss before the update (mean over micro-batches when accumulating).
    pub loss: f64,
    /// Global L2 norm of the (averaged) gradient before the update, as
    /// `torch.nn.utils.clip_grad_norm_` returns it.
    pub grad_norm: f64,
}

/// Trains `weights` in place for `steps` steps on the same batch.
///
/// # Errors
/// Those of [`loss_and_grads`].
#[allow(clippy::too_many_arguments)]
pub fn train(
    config: &RefConfig,
    weights: &mut Weights,
    tokens: &[u32],
    labels: Option<&[i64]>,
    batch: usize,
    seq: usize,
    steps: usize,
    optimizer: &Optimizer,
) -> Result<Vec<StepRecord>, RefError> {
    let b = Batch {
        tokens,
        labels,
        attention_mask: None,
        batch,
        seq,
    };
    train_accumulated(config, weights, &[b], steps, optimizer)
}

/// Trains `weights` in place for `steps` steps; each step averages the loss
/// and gradients of every micro-batch in `micro` before one update.
///
/// # Errors
/// No micro-batch, or those of [`loss_and_grads`].
pub fn train_accumulated(
    config: &RefConfig,
    weights: &mut Weights,
    micro: &[Batch],
    steps: usize,
    optimizer: &Optimizer,
) -> Result<Vec<StepRecord>, RefError> {
    if micro.is_empty() {
        return Err(RefError::Input {
            what: "micro-batches",
            rule: "at least one is needed".into(),
        });
    }
    let mut state = OptState::default();
    let mut records = Vec::with_capacity(steps);
    let scale = 1.0 / micro.len() as f64;
    for _ in 0..steps {
        let mut loss = 0.0;
        let mut grads = weights.zeros_like();
        for b in micro {
            let (l, g) = loss_and_grads(config, weights, b)?;
            loss += l * scale;
            for (name, t) in &g.map {
                let scaled: Vec<f64> = t.data.iter().map(|x| x * scale).collect();
                grads.accumulate(name, &t.shape, &scaled);
            }
        }
        let grad_norm = grads.global_norm();
        optimizer.step(&mut state, weights, &grads);
        records.push(StepRecord { loss, grad_norm });
    }
    Ok(records)
}
