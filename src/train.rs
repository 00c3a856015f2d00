//! `tessera train`: compiles one training step and runs it N times on the
//! functional simulator, on real numbers, from a Hugging Face safetensors
//! checkpoint. Parameters and optimizer states stay in the simulated HBM
//! between steps; each step reports its loss and the global L2 norm of the
//! gradients before the update.
//!
//! Checkpoints use Hugging Face's names and layouts: GPT-2's `Conv1D`
//! weights are `[in, out]`, `nn.Linear` weights `[out, in]`; a tied LM head
//! is stored once (a file may also carry it, or GPT-2's `attn.bias` mask
//! buffers, which are ignored). A `transformer.` prefix on GPT-2 names is
//! accepted.

use std::borrow::Cow;
use std::collections::HashMap;

use anyhow::{bail, Context, Result};
use safetensors::{Dtype, SafeTensors, View};
use tessera_compiler::lower::{lower_graph, LoweredStep};
use tessera_compiler::model::{Family, ModelConfig};
use tessera_compiler::setup::TrainingSetup;
use tessera_compiler::{training_graph, Stage};
use tessera_isa::program::MemSpace;
use tessera_isa::{Arch, DType};
use tessera_sim::{numerics, run_functional, Memory};

/// Loss and gradient norm of one step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepRecord {
    /// Mean loss over counted tokens.
    pub loss: f64,
    /// Global L2 norm of the gradients before the update.
    pub grad_norm: f64,
}

/// A named fp32 tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedTensor {
    /// Hugging Face name.
    pub name: String,
    /// Shape.
    pub shape: Vec<u64>,
    /// Values.
    pub data: Vec<f32>,
}

/// The training data of a run.
#[derive(Debug, Clone)]
pub struct TrainData {
    /// Token ids, `[n, batch, seq]` row-major (n >= 1 batches, used in turn).
    pub tokens: Vec<u32>,
    /// Labels (-100 = not counted), same layout; `None` = the tokens
    /// themselves (causal models).
    pub labels: Option<Vec<i32>>,
}

/// Reads the tensors of a safetensors file (F32, F16, BF16, F64 as f32).
///
/// # Errors
/// A malformed file or an unsupported element type, naming the tensor.
pub fn read_safetensors(bytes: &[u8], source: &str) -> Result<Vec<NamedTensor>> {
    let st = SafeTensors::deserialize(bytes)
        .with_context(|| format!("{source}: not a safetensors file"))?;
    let mut names: Vec<String> = st.names().into_iter().map(str::to_string).collect();
    names.sort();
    let mut out = Vec::new();
    for name in names {
        let t = st
            .tensor(&name)
            .with_context(|| format!("{source}: tensor `{name}`"))?;
        let d = t.data();
        let data: Vec<f32> = match t.dtype() {
            Dtype::F32 => d.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            Dtype::F16 => d.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            Dtype::BF16 => d.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            Dtype::F64 => d.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32).collect(),
            other => bail!("{source}: tensor `{name}` has element type {other:?}; expected F32, F16, BF16 or F64"),
        };
        out.push(NamedTensor {
            name,
            shape: t.shape().iter().map(|&s| s as u64).collect(),
            data,
        });
    }
    Ok(out)
}

struct F32View<'a>(&'a NamedTensor, Vec<usize>);

impl View for &F32View<'_> {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }
    fn shape(&self) -> &[usize] {
        &self.1
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Owned(self.0.data.iter().flat_map(|v| v.to_le_bytes()).collect())
    }
    fn data_len(&self) -> usize {
        self.0.data.len() * 4
    }
}

/// Serialises tensors as an f32 safetensors file (names sorted).
///
/// # Errors
/// Only what the safetensors writer reports.
pub fn write_safetensors(tensors: &[NamedTensor]) -> Result<Vec<u8>> {
    let mut sorted: Vec<&NamedTensor> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let views: Vec<(String, F32View)> = sorted
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                F32View(t, t.shape.iter().map(|&s| s as usize).collect()),
            )
        })
        .collect();
    let refs: Vec<(&str, &F32View)> = views.iter().map(|(n, v)| (n.as_str(), v)).collect();
    Ok(safetensors::serialize(refs, None)?)
}

/// Names a checkpoint may carry that the compiled step does not take.
fn ignorable(family: Family, tied: bool, name: &str) -> bool {
    match family {
        Family::Gpt2 => {
            name.ends_with(".attn.bias")
                || name.ends_with(".attn.masked_bias")
                || (tied && name == "lm_head.weight")
        }
        Family::Llama => {
            name.ends_with("rotary_emb.inv_freq") || (tied && name == "lm_head.weight")
        }
        Family::Bert => {
            name == "cls.predictions.decoder.weight"
                || name == "cls.predictions.decoder.bias"
                || name.starts_with("bert.pooler.")
                || name == "bert.embeddings.position_ids"
                || name.starts_with("cls.seq_relationship")
        }
    }
}

/// A compiled step and the simulated machine it trains on.
#[derive(Debug)]
pub struct Trainer {
    step: LoweredStep,
    mem: Memory,
    setup: TrainingSetup,
    family: Family,
}

impl Trainer {
    /// Compiles the step and loads the checkpoint into simulated HBM.
    ///
    /// # Errors
    /// A missing, misshapen or unknown tensor (named), or a model that does
    /// not compile for `arch`.
    pub fn new(
        model: &ModelConfig,
        setup: &TrainingSetup,
        arch: &Arch,
        weights: &[NamedTensor],
        source: &str,
    ) -> Result<Trainer> {
        let graph = training_graph(model, setup, Stage::Step)?;
        let step = lower_graph(&graph, arch)
            .with_context(|| format!("compiling {} for `{}`", model.name, arch.name()))?;
        let mut mem = Memory::new(arch);
        let mut by_name: HashMap<String, &NamedTensor> = HashMap::new();
        for t in weights {
            let name = match (model.family, t.name.strip_prefix("transformer.")) {
                (Family::Gpt2, Some(rest)) => rest.to_string(),
                _ => t.name.clone(),
            };
            if ignorable(model.family, model.tie_embeddings, &name) {
                continue;
            }
            if !step.params.iter().any(|p| p.name == name) {
                bail!(
                    "{source}: tensor `{}` is not a parameter of {} ({})",
                    t.name,
                    model.name,
                    model.family.model_type()
                );
            }
            by_name.insert(name, t);
        }
        for p in &step.params {
            let t = by_name
                .get(&p.name)
                .with_context(|| format!("{source}: missing tensor `{}`", p.name))?;
            if t.shape != p.ty.shape {
                bail!(
                    "{source}: tensor `{}` has shape {:?}, the model needs {:?}",
                    t.name,
                    t.shape,
                    p.ty.shape
                );
            }
            write_f32(&mut mem, p.addr, t.data.iter().copied(), p.ty.dtype)?;
        }
        for (s, init) in &step.states {
            write_f32(
                &mut mem,
                s.addr,
                std::iter::repeat_n(*init as f32, s.ty.elements() as usize),
                s.ty.dtype,
            )?;
        }
        for c in &step.constants {
            write_f32(&mut mem, c.addr, c.values.iter().copied(), DType::Fp32)?;
        }
        Ok(Trainer {
            step,
            mem,
            setup: *setup,
            family: model.family,
        })
    }

    /// Runs one step on a batch of `batch * seq` tokens (and labels).
    ///
    /// # Errors
    /// A token or label outside the vocabulary, or a simulator error.
    pub fn step(&mut self, tokens: &[u32], labels: Option<&[i32]>) -> Result<StepRecord> {
        let micro = (self.setup.batch * self.setup.seq) as usize;
        let n = micro * self.setup.grad_accumulation as usize;
        if tokens.len() != n || labels.is_some_and(|l| l.len() != n) {
            bail!("a step needs {n} tokens and labels");
        }
        for input in &self.step.inputs {
            // With gradient accumulation, micro-batch k's inputs are `NAME.k`.
            let (base, k) = match input.name.rsplit_once('.') {
                Some((b, k)) if k.bytes().all(|c| c.is_ascii_digit()) => (b, k.parse::<usize>()?),
                _ => (input.name.as_str(), 0),
            };
            let range = k * micro..(k + 1) * micro;
            let tok = &tokens[range.clone()];
            let values: Vec<f32> = match base {
                "input_ids" => tok.iter().map(|&t| t as f32).collect(),
                "labels" => match labels {
                    Some(l) => l[range].iter().map(|&t| t as f32).collect(),
                    None if self.family.is_causal() => tok.iter().map(|&t| t as f32).collect(),
                    None => bail!("a masked-LM model needs --labels (-100 marks positions that are not predicted)"),
                },
                "token_type_ids" => vec![0.0; micro],
                "attention_mask" => vec![1.0; micro],
                other => bail!("no data for input `{other}`"),
            };
            write_f32(
                &mut self.mem,
                input.addr,
                values.into_iter(),
                input.ty.dtype,
            )?;
        }
        run_functional(&self.step.program, &mut self.mem, u64::MAX)
            .context("running the step on the functional simulator")?;
        let out = |name: &str| -> Result<f64> {
            let b = self
                .step
                .outputs
                .iter()
                .find(|o| o.name == name)
                .with_context(|| format!("the step has no output `{name}`"))?;
            let bytes = self.mem.read_vec(MemSpace::Hbm, b.addr, 4)?;
            Ok(f64::from(numerics::load(DType::Fp32, &bytes)))
        };
        Ok(StepRecord {
            loss: out("loss")?,
            grad_norm: out("grad_norm")?,
        })
    }

    /// The current parameters, by Hugging Face name.
    ///
    /// # Errors
    /// Only a simulator memory error.
    pub fn weights(&self) -> Result<Vec<NamedTensor>> {
        self.step
            .params
            .iter()
            .map(|p| {
                let bytes = self
                    .mem
                    .read_vec(MemSpace::Hbm, p.addr, p.ty.bytes() as usize)?;
                let data = bytes
                    .chunks(4)
                    .map(|c| numerics::load(DType::Fp32, c))
                    .collect();
                Ok(NamedTensor {
                    name: p.name.clone(),
                    shape: p.ty.shape.clone(),
                    data,
                })
            })
            .collect()
    }
}

fn write_f32(
    mem: &mut Memory,
    addr: u64,
    values: impl Iterator<Item = f32>,
    dtype: DType,
) -> Result<()> {
    let size = dtype.size_bytes() as usize;
    let mut bytes = Vec::new();
    for v in values {
        let mut b = [0u8; 4];
        if dtype == DType::Int32 {
            b = (v as i32).to_le_bytes();
        } else {
            numerics::store(dtype, v, &mut b[..size]);
        }
        bytes.extend_from_slice(&b[..size]);
    }
    mem.write(MemSpace::Hbm, addr, &bytes)?;
    Ok(())
}

/// Trains for `steps` steps, cycling through the batches of `data`.
///
/// # Errors
/// As [`Trainer::new`] and [`Trainer::step`], or data whose length is not
/// a whole number of batches.
pub fn train(
    model: &ModelConfig,
    setup: &TrainingSetup,
    arch: &Arch,
    weights: &[NamedTensor],
    source: &str,
    data: &TrainData,
    steps: u64,
) -> Result<(Vec<StepRecord>, Trainer)> {
    let n = (setup.batch * setup.seq * setup.grad_accumulation) as usize;
    if data.tokens.is_empty() || data.tokens.len() % n != 0 {
        bail!(
            "the tokens hold {} values, not a whole number of steps of {} micro-batch(es) of {} x {}",
            data.tokens.len(),
            setup.grad_accumulation,
            setup.batch,
            setup.seq
        );
    }
    if let Some(l) = &data.labels {
        if l.len() != data.tokens.len() {
            bail!(
                "the labels hold {} values, the tokens {}",
                l.len(),
                data.tokens.len()
            );
        }
    }
    for (i, &t) in data.tokens.iter().enumerate() {
        if u64::from(t) >= model.vocab_size {
            bail!(
                "token {t} at position {i} is outside the vocabulary of {}",
                model.vocab_size
            );
        }
    }
    if let Some(l) = &data.labels {
        if let Some((i, &t)) = l
            .iter()
            .enumerate()
            .find(|(_, &t)| t != -100 && (t < 0 || t as u64 >= model.vocab_size))
        {
            bail!(
                "label {t} at position {i} is neither -100 nor inside the vocabulary of {}",
                model.vocab_size
            );
        }
    }
    let mut trainer = Trainer::new(model, setup, arch, weights, source)?;
    let batches = data.tokens.len() / n;
    let mut records = Vec::new();
    for s in 0..steps as usize {
        let b = s % batches;
        let labels = data.labels.as_ref().map(|l| &l[b * n..(b + 1) * n]);
        records.push(
            trainer
                .step(&data.tokens[b * n..(b + 1) * n], labels)
                .with_context(|| format!("step {s}"))?,
        );
    }
    Ok((records, trainer))
}
