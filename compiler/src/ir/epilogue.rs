//! The fused matmul epilogue op, [`Op::MatMulEpilogue`]: a matrix product
//! whose output tiles get a bias row, a GELU, a residual and a cast on their
//! way out of the array, so the intermediate tensors never reach HBM.
//!
//! Text form (attributes in this order):
//!
//! ```text
//! %9 = matmul_epilogue{ta=false, tb=false, bias=true, act=gelu_tanh, residual=false, out=bf16, part=out}(%a, %w, %b) : [8, 1024, 3072] bf16
//! %70 = matmul_epilogue{ta=false, tb=false, bias=true, act=gelu_tanh, residual=false, out=bf16, part=pre}(%a, %w, %b) : [8, 1024, 3072] fp32
//! ```
//!
//! Operands: `a`, `b` as for `matmul`, then the bias `[n]` when `bias`,
//! then (part `out` only) the residual, shaped like the product, when
//! `residual`. Part `out` is `cast_out(residual + act(a b + bias))`, every
//! step in fp32; part `pre` is the fp32 pre-activation `a b + bias` (the
//! backward of the activation reads it, like cuBLASLt's `GELU_AUX`). Both
//! parts of one product are written by one kernel.

use super::op::{Attr, Op, Unary};
use super::TensorType;
use tessera_isa::DType;

/// Which result of a fused epilogue a node gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EpiloguePart {
    /// The finished output.
    Out,
    /// The fp32 pre-activation (product plus bias).
    Pre,
}

/// A fused matmul epilogue. Invariant: `act` is `None`, `GeluTanh` or `GeluErf`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Epilogue {
    /// `a` stored with its last two axes swapped.
    pub ta: bool,
    /// `b` stored with its last two axes swapped.
    pub tb: bool,
    /// A row vector `[n]` is added.
    pub bias: bool,
    /// The activation (a GELU), if any.
    pub act: Option<Unary>,
    /// A tensor shaped like the product is added after the activation.
    pub residual: bool,
    /// The element type of part `out` (the cast, last; fp32 when none).
    pub out: DType,
    /// Which result this node is.
    pub part: EpiloguePart,
}

impl Epilogue {
    /// Operands of this node: `a`, `b`, the bias, and for part `out` the residual.
    pub fn arity(&self) -> usize {
        2 + usize::from(self.bias) + usize::from(self.residual && self.part == EpiloguePart::Out)
    }

    /// The same epilogue's other result.
    pub fn with_part(&self, part: EpiloguePart) -> Epilogue {
        Epilogue { part, ..*self }
    }

    /// The attributes, in text-form order.
    pub fn attrs(&self) -> Vec<(&'static str, Attr)> {
        let act = self.act.map_or("none", Unary::name);
        let part = match self.part {
            EpiloguePart::Out => "out",
            EpiloguePart::Pre => "pre",
        };
        vec![
            ("ta", Attr::Bool(self.ta)),
            ("tb", Attr::Bool(self.tb)),
            ("bias", Attr::Bool(self.bias)),
            ("act", Attr::Word(act.to_string())),
            ("residual", Attr::Bool(self.residual)),
            ("out", Attr::Word(self.out.name().to_string())),
            ("part", Attr::Word(part.to_string())),
        ]
    }

    /// Builds the op from its attributes.
    ///
    /// # Errors
    /// A message naming the missing or ill-typed attribute.
    pub fn from_attrs(attrs: &[(String, Attr)]) -> Result<Epilogue, String> {
        let get = |key: &str| {
            attrs
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v)
                .ok_or_else(|| format!("`matmul_epilogue` needs attribute `{key}`"))
        };
        let boolean = |key: &str| match get(key)? {
            Attr::Bool(b) => Ok(*b),
            _ => Err(format!(
                "attribute `{key}` of `matmul_epilogue` must be true or false"
            )),
        };
        let word = |key: &str| match get(key)? {
            Attr::Word(w) => Ok(w.clone()),
            _ => Err(format!(
                "attribute `{key}` of `matmul_epilogue` must be a bare word"
            )),
        };
        let act = match word("act")?.as_str() {
            "none" => None,
            "gelu_tanh" => Some(Unary::GeluTanh),
            "gelu_erf" => Some(Unary::GeluErf),
            _ => {
                return Err(
                    "attribute `act` of `matmul_epilogue` must be none, gelu_tanh or gelu_erf"
                        .into(),
                )
            }
        };
        let part = match word("part")?.as_str() {
            "out" => EpiloguePart::Out,
            "pre" => EpiloguePart::Pre,
            _ => return Err("attribute `part` of `matmul_epilogue` must be out or pre".into()),
        };
        Ok(Epilogue {
            ta: boolean("ta")?,
            tb: boolean("tb")?,
            bias: boolean("bias")?,
            act,
            residual: boolean("residual")?,
            out: word("out")?.parse::<DType>()?,
            part,
        })
    }

    /// The plain product this epilogue follows (fp32 accumulation and result).
    pub fn product(&self) -> Op {
        Op::MatMul {
            ta: self.ta,
            tb: self.tb,
            out: DType::Fp32,
        }
    }

    /// The typing rule.
    ///
    /// # Errors
    /// The rule the operands break.
    pub fn infer(&self, t: &[&TensorType]) -> Result<TensorType, String> {
        if t.len() != self.arity() {
            return Err(format!(
                "takes {} operand(s), got {}",
                self.arity(),
                t.len()
            ));
        }
        let Some(product) = self.product().infer(&t[..2])? else {
            return Err("the product has no value".into());
        };
        if self.out.is_integer() {
            return Err(format!("out must be floating, not {}", self.out.name()));
        }
        if self
            .act
            .is_some_and(|u| !matches!(u, Unary::GeluTanh | Unary::GeluErf))
        {
            return Err("act must be none, gelu_tanh or gelu_erf".into());
        }
        let mut next = 2;
        if self.bias {
            let b = t[next];
            if b.shape != [product.last()] || b.dtype.is_integer() {
                return Err(format!(
                    "the bias must be a floating [{}], got {:?} {}",
                    product.last(),
                    b.shape,
                    b.dtype.name()
                ));
            }
            next += 1;
        }
        if self.residual && self.part == EpiloguePart::Out {
            let r = t[next];
            if r.shape != product.shape || r.dtype.is_integer() {
                return Err(format!(
                    "the residual must be a floating {:?}, got {:?} {}",
                    product.shape,
                    r.shape,
                    r.dtype.name()
                ));
            }
        }
        let dtype = match self.part {
            EpiloguePart::Out => self.out,
            EpiloguePart::Pre => DType::Fp32,
        };
        Ok(TensorType {
            shape: product.shape,
            dtype,
        })
    }

    /// The f64 semantics, given the product `a b` (row-major, last axis `n`)
    /// and the remaining operands; `round32` rounds each intermediate to fp32
    /// (the caller rounds the result to its type).
    pub fn apply(&self, product: Vec<f64>, rest: &[&[f64]], round32: bool) -> Vec<f64> {
        let r = |v: f64| if round32 { f64::from(v as f32) } else { v };
        let mut y: Vec<f64> = product.into_iter().map(r).collect();
        let mut next = 0;
        if self.bias {
            let b = rest[next];
            let n = b.len();
            y.iter_mut()
                .enumerate()
                .for_each(|(i, v)| *v = r(*v + b[i % n]));
            next += 1;
        }
        if self.part == EpiloguePart::Pre {
            return y;
        }
        if let Some(u) = self.act {
            y.iter_mut().for_each(|v| *v = r(super::eval::unary(u, *v)));
        }
        if self.residual {
            let res = rest[next];
            y.iter_mut().zip(res).for_each(|(v, q)| *v = r(q + *v));
        }
        y
    }
}
