//! The front door for a training step's numbers: validates a batch,
//! applies the loss convention of the family (causal shift or MLM), and
//! dispatches to the model's forward and hand-written backward.

use super::config::{Family, RefConfig};
use super::error::RefError;
use super::loss::{shift_labels, IGNORE};
use super::weights::Weights;
use super::{bert, gpt2, llama};

/// One batch of `batch` sequences of `seq` tokens, row-major.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    pub tokens: &'a [u32],
    /// Causal models: labels before the shift (None: the tokens themselves).
    /// BERT: MLM labels, [`IGNORE`] (-100) where nothing is predicted; required.
    pub labels: Option<&'a [i64]>,
    /// BERT only: 1 = attend to this key, 0 = padding (Hugging Face's
    /// `attention_mask`). None: attend everywhere.
    pub attention_mask: Option<&'a [u8]>,
    pub batch: usize,
    pub seq: usize,
}

/// A validated batch as the models consume it.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub ids: Vec<usize>,
    /// Per row `(b, t)`: the class its logits must predict, or [`IGNORE`].
    pub targets: Vec<i64>,
    /// Per row: whether the position may be attended to (BERT padding).
    pub keys: Option<Vec<bool>>,
    pub batch: usize,
    pub seq: usize,
}

impl Prepared {
    /// Rows (token positions) in the batch.
    pub fn rows(&self) -> usize {
        self.batch * self.seq
    }
}

fn input(what: &'static str, rule: String) -> RefError {
    RefError::Input { what, rule }
}

/// Checks `b` against `c` and applies the family's label convention.
///
/// # Errors
/// Lengths that disagree with `batch * seq`, a token out of the vocabulary,
/// a sequence longer than the position table, missing BERT labels, an
/// attention mask on a decoder, a mask value other than 0/1, or a sequence
/// whose mask is all 0.
pub fn prepare(c: &RefConfig, b: &Batch) -> Result<Prepared, RefError> {
    let n = b.batch * b.seq;
    if n == 0 {
        return Err(input("batch", "batch and seq must be positive".into()));
    }
    if b.tokens.len() != n {
        return Err(input(
            "tokens",
            format!(
                "{} tokens for batch {} x seq {}",
                b.tokens.len(),
                b.batch,
                b.seq
            ),
        ));
    }
    if b.seq > c.max_positions {
        return Err(input(
            "seq",
            format!("{} exceeds max_positions {}", b.seq, c.max_positions),
        ));
    }
    if let Some(t) = b.tokens.iter().find(|&&t| t as usize >= c.vocab_size) {
        return Err(input(
            "tokens",
            format!("token {t} is outside vocab_size {}", c.vocab_size),
        ));
    }
    if let Some(l) = b.labels {
        if l.len() != n {
            return Err(input(
                "labels",
                format!("{} labels for {n} tokens", l.len()),
            ));
        }
    }
    let ids: Vec<usize> = b.tokens.iter().map(|&t| t as usize).collect();
    let keys = match (b.attention_mask, c.family) {
        (None, _) => None,
        (Some(_), Family::Gpt2 | Family::Llama) => {
            return Err(input(
                "attention_mask",
                "only BERT takes an attention mask here".into(),
            ))
        }
        (Some(m), Family::Bert) => {
            if m.len() != n || m.iter().any(|&x| x > 1) {
                return Err(input(
                    "attention_mask",
                    format!("needs {n} values, each 0 or 1"),
                ));
            }
            if m.chunks(b.seq).any(|s| s.iter().all(|&x| x == 0)) {
                return Err(input(
                    "attention_mask",
                    "a sequence masks every position".into(),
                ));
            }
            Some(m.iter().map(|&x| x == 1).collect())
        }
    };
    let targets = match c.family {
        Family::Gpt2 | Family::Llama => {
            let labels: Vec<i64> = match b.labels {
                Some(l) => l.to_vec(),
                None => b.tokens.iter().map(|&t| t as i64).collect(),
            };
            shift_labels(&labels, b.batch, b.seq)
        }
        Family::Bert => match b.labels {
            Some(l) => l.to_vec(),
            None => return Err(input("labels", "BERT's MLM loss needs labels".into())),
        },
    };
    Ok(Prepared {
        ids,
        targets,
        keys,
        batch: b.batch,
        seq: b.seq,
    })
}

/// The mean loss of `b` and the gradient of every parameter, under its
/// Hugging Face name (tied weights: one summed gradient).
///
/// # Errors
/// Those of [`prepare`], a missing weight, or a label out of range.
pub fn loss_and_grads(c: &RefConfig, w: &Weights, b: &Batch) -> Result<(f64, Weights), RefError> {
    let p = prepare(c, b)?;
    match c.family {
        Family::Gpt2 => gpt2::run(c, w, &p),
        Family::Llama => llama::run(c, w, &p),
        Family::Bert => bert::run(c, w, &p),
    }
}

/// The mean loss of `b` alone.
///
/// # Errors
/// As [`loss_and_grads`].
pub fn loss(c: &RefConfig, w: &Weights, b: &Batch) -> Result<f64, RefError> {
    Ok(loss_and_grads(c, w, b)?.0)
}
