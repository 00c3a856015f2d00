//! The IR verifier, run after every pass in tests and debug builds:
//! operands are defined before use, every node's recorded type is the one
//! its op infers, `assign` targets an existing parameter or state of the
//! same type at most once, and output names are unique.

use std::collections::{HashMap, HashSet};

use super::{Graph, Op};
use crate::error::IrError;

pub(crate) fn error(node: usize, op: &Op, rule: String) -> IrError {
    IrError::Verify {
        node,
        op: op.name().to_string(),
        rule,
    }
}

/// Checks the rules in the module documentation.
///
/// # Errors
/// [`IrError::Verify`] for the first node that breaks one.
pub fn verify(g: &Graph) -> Result<(), IrError> {
    let mut targets = HashMap::new();
    let mut assigned = HashSet::new();
    let mut outputs = HashSet::new();
    for (i, node) in g.nodes.iter().enumerate() {
        let mut types = Vec::new();
        for v in &node.inputs {
            match g
                .nodes
                .get(v.0)
                .filter(|_| v.0 < i)
                .and_then(|n| n.ty.as_ref())
            {
                Some(t) => types.push(t),
                None => {
                    return Err(error(
                        i,
                        &node.op,
                        format!("operand %{} is not a value defined earlier", v.0),
                    ))
                }
            }
        }
        let inferred = node
            .op
            .infer(&types)
            .map_err(|rule| error(i, &node.op, rule))?;
        if inferred != node.ty {
            return Err(error(
                i,
                &node.op,
                format!(
                    "recorded type {:?} differs from the inferred {inferred:?}",
                    node.ty
                ),
            ));
        }
        match &node.op {
            Op::Param { name, ty } | Op::State { name, ty, .. }
                if targets.insert(name.as_str(), ty).is_some() =>
            {
                return Err(error(i, &node.op, format!("`{name}` is declared twice")));
            }
            Op::Assign { name } => {
                let target = targets.get(name.as_str()).ok_or_else(|| {
                    error(i, &node.op, format!("no parameter or state named `{name}`"))
                })?;
                if *target != types[0] {
                    return Err(error(
                        i,
                        &node.op,
                        format!("the new value of `{name}` must have its type"),
                    ));
                }
                if !assigned.insert(name.as_str()) {
                    return Err(error(i, &node.op, format!("`{name}` is assigned twice")));
                }
            }
            Op::Output { name } if !outputs.insert(name.as_str()) => {
                return Err(error(
                    i,
                    &node.op,
                    format!("output `{name}` is defined twice"),
                ));
            }
            _ => {}
        }
    }
    Ok(())
}
