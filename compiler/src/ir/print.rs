//! The IR's text form, written. One node per line:
//!
//! ```text
//! graph "tiny" {
//!   %0 = param{name="wte.weight"} : [64, 16] fp32
//!   %2 = embedding(%0, %1) : [2, 8, 16] fp32
//!   output{name="loss"}(%9)
//! }
//! ```
//!
//! Floats print in Rust's shortest round-trip form, so [`super::parse`]
//! reads back the same bits and print -> parse -> print is the identity.

use std::fmt::Write;

use super::op::Attr;
use super::{Graph, TensorType};

/// The text form of a graph.
pub fn print(g: &Graph) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "graph {} {{", quote(&g.name));
    for (i, node) in g.nodes.iter().enumerate() {
        out.push_str("  ");
        if node.ty.is_some() {
            let _ = write!(out, "%{i} = ");
        }
        out.push_str(node.op.name());
        let attrs = node.op.attrs();
        if !attrs.is_empty() {
            out.push('{');
            for (j, (k, v)) in attrs.iter().enumerate() {
                if j > 0 {
                    out.push_str(", ");
                }
                let _ = write!(out, "{k}={}", attr(v));
            }
            out.push('}');
        }
        if !node.inputs.is_empty() {
            out.push('(');
            for (j, v) in node.inputs.iter().enumerate() {
                if j > 0 {
                    out.push_str(", ");
                }
                let _ = write!(out, "%{}", v.0);
            }
            out.push(')');
        }
        if let Some(ty) = &node.ty {
            let _ = write!(out, " : {}", tensor_type(ty));
        }
        out.push('\n');
    }
    out.push_str("}\n");
    out
}

/// `[a, b] dtype`.
pub fn tensor_type(ty: &TensorType) -> String {
    format!("{} {}", shape(&ty.shape), ty.dtype.name())
}

fn shape(s: &[u64]) -> String {
    let dims: Vec<String> = s.iter().map(u64::to_string).collect();
    format!("[{}]", dims.join(", "))
}

fn attr(a: &Attr) -> String {
    match a {
        Attr::Int(i) => i.to_string(),
        Attr::Float(x) => {
            let s = format!("{x:?}");
            // `{:?}` prints 1.0 as "1.0" and 1e-5 as "1e-5": both parse back as floats.
            s
        }
        Attr::Bool(b) => b.to_string(),
        Attr::Str(s) => quote(s),
        Attr::Word(w) => w.clone(),
        Attr::Shape(s) => shape(s),
    }
}

fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
