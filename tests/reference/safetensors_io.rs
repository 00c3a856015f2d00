//! Reading and writing [`Weights`] as safetensors: f32 little-endian on
//! disk (F64, F16 and BF16 are also read), names as Hugging Face spells them.

use std::path::Path;

use safetensors::{Dtype, SafeTensors, View};

use super::error::RefError;
use super::tensor::Tensor;
use super::weights::Weights;

fn st_err(e: safetensors::SafeTensorError) -> RefError {
    RefError::Safetensors(e.to_string())
}

/// One tensor as f32 bytes, for `safetensors::serialize`.
struct F32Bytes {
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl View for &F32Bytes {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

/// Serialises `w` with every value rounded to f32. Deterministic: names
/// are written in sorted order.
///
/// # Errors
/// Only what `safetensors::serialize` reports.
pub fn to_safetensors(w: &Weights) -> Result<Vec<u8>, RefError> {
    let tensors: Vec<(String, F32Bytes)> = w
        .map
        .iter()
        .map(|(name, t)| {
            let bytes = t
                .data
                .iter()
                .flat_map(|&x| (x as f32).to_le_bytes())
                .collect();
            (
                name.clone(),
                F32Bytes {
                    shape: t.shape.clone(),
                    bytes,
                },
            )
        })
        .collect();
    safetensors::serialize(tensors.iter().map(|(n, t)| (n.as_str(), t)), None).map_err(st_err)
}

/// Parses a safetensors buffer into f64 tensors (all names kept; use
/// [`Weights::checked_for`] to match them to a model).
///
/// # Errors
/// A malformed buffer, or a tensor of another dtype than F32, F64, F16, BF16.
pub fn from_safetensors(bytes: &[u8]) -> Result<Weights, RefError> {
    let st = SafeTensors::deserialize(bytes).map_err(st_err)?;
    let mut out = Weights::default();
    for (name, view) in st.tensors() {
        let raw = view.data();
        let data: Vec<f64> = match view.dtype() {
            Dtype::F32 => raw
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64)
                .collect(),
            Dtype::F64 => raw
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
                .collect(),
            Dtype::F16 => raw
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f64())
                .collect(),
            Dtype::BF16 => raw
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f64())
                .collect(),
            other => {
                return Err(RefError::Dtype {
                    name,
                    dtype: format!("{other:?}"),
                })
            }
        };
        let shape = view.shape().to_vec();
        out.map.insert(name, Tensor { shape, data });
    }
    Ok(out)
}

/// Writes `w` to `path` atomically (temporary file, then rename).
///
/// # Errors
/// Serialisation or file-system failures, naming the path.
pub fn save(w: &Weights, path: &Path) -> Result<(), RefError> {
    let bytes = to_safetensors(w)?;
    let io = |source| RefError::Io {
        path: path.display().to_string(),
        source,
    };
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, &bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(e)
    })
}

/// Reads a safetensors file.
///
/// # Errors
/// File-system failures naming the path, or those of [`from_safetensors`].
pub fn load(path: &Path) -> Result<Weights, RefError> {
    let bytes = std::fs::read(path).map_err(|source| RefError::Io {
        path: path.display().to_string(),
        source,
    })?;
    from_safetensors(&bytes)
}
