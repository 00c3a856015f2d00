//! The graph IR: a training step as a list of tensor operations in
//! topological order (SSA: every node defines at most one value, `%id`,
//! and uses only values defined before it).
//!
//! The IR has a text form ([`print`], [`parse`]) for which print -> parse ->
//! print is the identity, a verifier ([`verify`]) that infers and checks
//! every node's type, and a reference interpreter ([`eval`]) in f64 used to
//! test autodiff by finite differences.

pub mod epilogue;
pub mod eval;
pub mod op;
pub mod parse;
pub mod print;
pub mod verify;

pub use epilogue::{Epilogue, EpiloguePart};
pub use op::{AdamPart, AttentionPart, Mask, Op, Unary};
use tessera_isa::DType;

/// A value: the output of node `ValueId.0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId(pub usize);

/// Shape and element type of a tensor. A shape of `[]` is a scalar.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TensorType {
    /// Dimensions, outermost first.
    pub shape: Vec<u64>,
    /// Element type.
    pub dtype: DType,
}

impl TensorType {
    /// A tensor type.
    pub fn new(shape: &[u64], dtype: DType) -> TensorType {
        TensorType {
            shape: shape.to_vec(),
            dtype,
        }
    }

    /// An fp32 scalar.
    pub fn scalar() -> TensorType {
        TensorType {
            shape: Vec::new(),
            dtype: DType::Fp32,
        }
    }

    /// Number of elements.
    pub fn elements(&self) -> u64 {
        self.shape.iter().product()
    }

    /// Size in bytes.
    pub fn bytes(&self) -> u64 {
        self.elements() * self.dtype.size_bytes()
    }

    /// The last dimension (1 for a scalar).
    pub fn last(&self) -> u64 {
        self.shape.last().copied().unwrap_or(1)
    }
}

/// One operation. `ty` is the type of its value, `None` for sinks
/// (`output`, `assign`).
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// What it computes.
    pub op: Op,
    /// Operands, all defined earlier.
    pub inputs: Vec<ValueId>,
    /// The value's type (as inferred by the verifier).
    pub ty: Option<TensorType>,
}

/// A graph: nodes in topological order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Graph {
    /// Name printed in the header.
    pub name: String,
    /// The nodes; node `i` defines value `%i`.
    pub nodes: Vec<Node>,
}

impl Graph {
    /// An empty graph.
    pub fn new(name: &str) -> Graph {
        Graph {
            name: name.to_string(),
            nodes: Vec::new(),
        }
    }

    /// Appends a node, inferring its type.
    ///
    /// # Errors
    /// [`crate::error::IrError::Verify`] if the operands do not fit the op.
    pub fn push(&mut self, op: Op, inputs: &[ValueId]) -> Result<ValueId, crate::error::IrError> {
        let id = self.nodes.len();
        let types: Vec<&TensorType> = inputs
            .iter()
            .map(|v| {
                self.nodes
                    .get(v.0)
                    .filter(|_| v.0 < id)
                    .and_then(|n| n.ty.as_ref())
                    .ok_or_else(|| {
                        verify::error(id, &op, format!("operand %{} is not a defined value", v.0))
                    })
            })
            .collect::<Result<_, _>>()?;
        let ty = op
            .infer(&types)
            .map_err(|rule| verify::error(id, &op, rule))?;
        self.nodes.push(Node {
            op,
            inputs: inputs.to_vec(),
            ty,
        });
        Ok(ValueId(id))
    }

    /// The type of a value (sinks have none).
    pub fn ty(&self, v: ValueId) -> &TensorType {
        self.nodes[v.0]
            .ty
            .as_ref()
            .expect("values refer to typed nodes")
    }

    /// Node ids of the parameters, in order, with their names.
    pub fn params(&self) -> impl Iterator<Item = (ValueId, &str)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| match &n.op {
                Op::Param { name, .. } => Some((ValueId(i), name.as_str())),
                _ => None,
            })
    }

    /// Number of trainable parameter elements.
    pub fn parameter_elements(&self) -> u64 {
        self.params().map(|(v, _)| self.ty(v).elements()).sum()
    }
}
