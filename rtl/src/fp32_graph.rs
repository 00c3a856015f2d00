//! A small fp32 dataflow graph: the form in which the special-function
//! lane's `libm` routines ([`crate::libm_graphs`]) are written once, then
//! both interpreted in Rust ([`Graph::eval`], to prove the transcription
//! against the simulator bit for bit) and emitted as combinational Verilog
//! ([`Graph::module`]).
//!
//! Every value is a 32-bit pattern. Nodes are the graph's inputs,
//! constants (bit patterns), fp32 add, subtract, multiply and divide
//! (round to nearest even, subnormals honoured: Rust's `f32` operators in
//! the interpreter, instances of [`crate::fp32_add`], [`crate::fp32_mul`]
//! and [`crate::fp32_divsqrt`] in Verilog; a subtraction adds the negated
//! operand, which IEEE 754 defines it to be), integer and bit operations
//! on the patterns (wrapping add and subtract, and, or, xor, shifts by a
//! constant, unsigned and signed less-than and equality giving 0 or 1),
//! the conversions Rust's `as` does (`f32 as i32`: truncation, saturation,
//! NaN to 0; `i32 as f32`: round to nearest even; [`FP32_TO_INT`],
//! [`FP32_FROM_INT`]) and selects (`c != 0 ? a : b`: each branch of the C
//! code computes, a select chain takes the value of the branch taken).
//!
//! Invariant: nodes refer only to earlier nodes, so the list is in
//! topological order and both the interpreter and the emitter walk it
//! once. The one difference the two forms may show is a NaN's payload (the
//! Verilog operators give the canonical 0x7fc00000, Rust keeps an
//! operand's); the ISA fixes no payload and every check compares NaNs by
//! class.

use crate::fp32_add::FP32_ADD;
use crate::fp32_divsqrt::FP32_DIV;
use crate::fp32_mul::FP32_MUL;
use crate::fp_bits::lead_zeros;
use crate::verilog::{Item, Module, Port, Signedness};

/// The `f32 as i32` module's name.
pub const FP32_TO_INT: &str = "tessera_fp32_to_int";
/// The `i32 as f32` module's name.
pub const FP32_FROM_INT: &str = "tessera_fp32_from_int";

/// A node's value: its index in [`Graph`]'s list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Val(usize);

/// An fp32 arithmetic operation, rounded to nearest even.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FpOp {
    Add,
    Sub,
    Mul,
    Div,
}

/// An operation on two 32-bit patterns; comparisons give 0 or 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IntOp {
    And,
    Or,
    Xor,
    /// Wrapping addition.
    Add,
    /// Wrapping subtraction.
    Sub,
    /// Unsigned `<`.
    Ult,
    /// Two's-complement `<`.
    Slt,
    /// `==`.
    Eq,
}

/// A shift by a constant amount (below 32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShiftOp {
    Shl,
    /// Logical right shift.
    Lshr,
    /// Arithmetic right shift.
    Ashr,
}

/// One node of a [`Graph`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// The graph's input of this index.
    Input(usize),
    /// A constant bit pattern.
    Const(u32),
    Fp(FpOp, Val, Val),
    Int(IntOp, Val, Val),
    Shift(ShiftOp, Val, u32),
    /// `cond != 0 ? a : b`.
    Select(Val, Val, Val),
    /// `f32 as i32`: toward zero, saturating, NaN to 0.
    ToInt(Val),
    /// `i32 as f32`: round to nearest even.
    FromInt(Val),
}

/// An fp32 dataflow graph with named 32-bit inputs and one output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Graph {
    inputs: Vec<String>,
    nodes: Vec<Node>,
    /// Comments placed before node `.0` in the Verilog.
    notes: Vec<(usize, String)>,
}

impl Graph {
    /// A graph with these input names (Verilog identifiers).
    pub fn new(inputs: &[&str]) -> Graph {
        Graph {
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            nodes: Vec::new(),
            notes: Vec::new(),
        }
    }

    fn push(&mut self, n: Node) -> Val {
        self.nodes.push(n);
        Val(self.nodes.len() - 1)
    }

    /// A comment for the Verilog, placed before the next node.
    pub fn note(&mut self, text: &str) {
        self.notes.push((self.nodes.len(), text.into()));
    }

    /// Input `name` (panics on a name not given to [`Graph::new`]: a bug in
    /// the graph's source, not user input).
    pub fn input(&mut self, name: &str) -> Val {
        let i = self
            .inputs
            .iter()
            .position(|n| n == name)
            .unwrap_or_else(|| panic!("graph input {name} is not declared"));
        self.push(Node::Input(i))
    }

    /// A constant bit pattern.
    pub fn bits(&mut self, b: u32) -> Val {
        self.push(Node::Const(b))
    }

    /// An fp32 constant.
    pub fn float(&mut self, f: f32) -> Val {
        self.bits(f.to_bits())
    }

    /// `round(a + b)`.
    pub fn add(&mut self, a: Val, b: Val) -> Val {
        self.push(Node::Fp(FpOp::Add, a, b))
    }

    /// `round(a - b)`.
    pub fn sub(&mut self, a: Val, b: Val) -> Val {
        self.push(Node::Fp(FpOp::Sub, a, b))
    }

    /// `round(a * b)`.
    pub fn mul(&mut self, a: Val, b: Val) -> Val {
        self.push(Node::Fp(FpOp::Mul, a, b))
    }

    /// `round(a / b)`.
    pub fn div(&mut self, a: Val, b: Val) -> Val {
        self.push(Node::Fp(FpOp::Div, a, b))
    }

    /// `-a` (the sign bit flipped, as Rust's unary minus).
    pub fn neg(&mut self, a: Val) -> Val {
        let s = self.bits(0x8000_0000);
        self.int(IntOp::Xor, a, s)
    }

    /// A two-operand integer or bit operation.
    pub fn int(&mut self, op: IntOp, a: Val, b: Val) -> Val {
        self.push(Node::Int(op, a, b))
    }

    /// `a op k` with a constant integer `k`.
    pub fn int_k(&mut self, op: IntOp, a: Val, k: u32) -> Val {
        let k = self.bits(k);
        self.int(op, a, k)
    }

    /// A shift by the constant `k` (below 32).
    pub fn shift(&mut self, op: ShiftOp, a: Val, k: u32) -> Val {
        assert!(k < 32, "shift by {k}");
        self.push(Node::Shift(op, a, k))
    }

    /// `cond != 0 ? a : b`.
    pub fn select(&mut self, cond: Val, a: Val, b: Val) -> Val {
        self.push(Node::Select(cond, a, b))
    }

    /// `f32 as i32`.
    pub fn to_int(&mut self, a: Val) -> Val {
        self.push(Node::ToInt(a))
    }

    /// `i32 as f32`.
    pub fn from_int(&mut self, a: Val) -> Val {
        self.push(Node::FromInt(a))
    }

    /// The number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the graph has no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// How many fp32 operations of each kind feed `out`: `[add or sub, mul, div, to_int, from_int]`.
    pub fn operator_counts(&self, out: Val) -> [usize; 5] {
        let live = self.live(out);
        let mut c = [0; 5];
        for (i, n) in self.nodes.iter().enumerate() {
            if !live[i] {
                continue;
            }
            match n {
                Node::Fp(FpOp::Add | FpOp::Sub, ..) => c[0] += 1,
                Node::Fp(FpOp::Mul, ..) => c[1] += 1,
                Node::Fp(FpOp::Div, ..) => c[2] += 1,
                Node::ToInt(_) => c[3] += 1,
                Node::FromInt(_) => c[4] += 1,
                _ => {}
            }
        }
        c
    }

    /// The value of `out` for `inputs` (one per declared input), every
    /// node's value going into `vals` (scratch space, reused between calls).
    pub fn eval_with(&self, inputs: &[u32], out: Val, vals: &mut Vec<u32>) -> u32 {
        let f = f32::from_bits;
        vals.clear();
        for n in &self.nodes {
            let v = |x: &Val| vals[x.0];
            let r = match n {
                Node::Input(i) => inputs[*i],
                Node::Const(b) => *b,
                Node::Fp(op, a, b) => {
                    let (a, b) = (f(v(a)), f(v(b)));
                    match op {
                        FpOp::Add => a + b,
                        FpOp::Sub => a - b,
                        FpOp::Mul => a * b,
                        FpOp::Div => a / b,
                    }
                    .to_bits()
                }
                Node::Int(op, a, b) => {
                    let (a, b) = (v(a), v(b));
                    match op {
                        IntOp::And => a & b,
                        IntOp::Or => a | b,
                        IntOp::Xor => a ^ b,
                        IntOp::Add => a.wrapping_add(b),
                        IntOp::Sub => a.wrapping_sub(b),
                        IntOp::Ult => u32::from(a < b),
                        IntOp::Slt => u32::from((a as i32) < (b as i32)),
                        IntOp::Eq => u32::from(a == b),
                    }
                }
                Node::Shift(op, a, k) => match op {
                    ShiftOp::Shl => v(a) << k,
                    ShiftOp::Lshr => v(a) >> k,
                    ShiftOp::Ashr => ((v(a) as i32) >> k) as u32,
                },
                Node::Select(c, a, b) => {
                    if v(c) != 0 {
                        v(a)
                    } else {
                        v(b)
                    }
                }
                Node::ToInt(a) => (f(v(a)) as i32) as u32,
                Node::FromInt(a) => ((v(a) as i32) as f32).to_bits(),
            };
            vals.push(r);
        }
        vals[out.0]
    }

    /// The value of `out` for `inputs`.
    pub fn eval(&self, inputs: &[u32], out: Val) -> u32 {
        self.eval_with(inputs, out, &mut Vec::with_capacity(self.nodes.len()))
    }

    /// Which nodes `out` depends on.
    fn live(&self, out: Val) -> Vec<bool> {
        let mut live = vec![false; self.nodes.len()];
        live[out.0] = true;
        for i in (0..self.nodes.len()).rev() {
            if !live[i] {
                continue;
            }
            let mut mark = |v: &Val| live[v.0] = true;
            match &self.nodes[i] {
                Node::Input(_) | Node::Const(_) => {}
                Node::Fp(_, a, b) | Node::Int(_, a, b) => {
                    mark(a);
                    mark(b);
                }
                Node::Shift(_, a, _) | Node::ToInt(a) | Node::FromInt(a) => mark(a),
                Node::Select(c, a, b) => {
                    mark(c);
                    mark(a);
                    mark(b);
                }
            }
        }
        live
    }

    /// The combinational module `name` computing `out` from input ports
    /// named as the graph's inputs (32 bits each) into port `z`: one net
    /// per live node (`n<index>`), one operator instance per fp32
    /// operation and conversion. Inputs the output does not depend on are
    /// still ports (read into an `unused_` net so lint stays quiet).
    pub fn module(&self, name: &str, doc: &[&str], out: Val) -> Module {
        let live = self.live(out);
        let w = |v: &Val| format!("n{}", v.0);
        let mut items = Vec::new();
        let mut notes = self.notes.iter().peekable();
        let mut used_inputs = vec![false; self.inputs.len()];
        for (i, node) in self.nodes.iter().enumerate() {
            while let Some((at, text)) = notes.peek() {
                if *at > i {
                    break;
                }
                items.push(Item::Comment(text.clone()));
                notes.next();
            }
            if !live[i] {
                continue;
            }
            let me = format!("n{i}");
            let net = |rhs: String| Item::net(&me, 32, &rhs);
            let inst = |module: &str, ports: Vec<(&str, String)>| Item::Instance {
                module: module.into(),
                name: format!("u{i}"),
                params: vec![],
                ports: ports.into_iter().map(|(p, n)| (p.to_string(), n)).collect(),
            };
            let wire = Item::Wire {
                name: me.clone(),
                width: Some("32".into()),
                sign: Signedness::Unsigned,
            };
            match node {
                Node::Input(k) => {
                    used_inputs[*k] = true;
                    items.push(net(self.inputs[*k].clone()));
                }
                Node::Const(b) => items.push(net(format!("32'h{b:08x}"))),
                Node::Fp(op, a, b) => {
                    let (module, y) = match op {
                        FpOp::Add => (FP32_ADD, w(b)),
                        FpOp::Sub => {
                            items.push(Item::net(
                                &format!("{me}_nb"),
                                32,
                                &format!("{{~{0}[31], {0}[30:0]}}", w(b)),
                            ));
                            (FP32_ADD, format!("{me}_nb"))
                        }
                        FpOp::Mul => (FP32_MUL, w(b)),
                        FpOp::Div => (FP32_DIV, w(b)),
                    };
                    items.push(wire);
                    items.push(inst(module, vec![("x", w(a)), ("y", y), ("z", me.clone())]));
                }
                Node::Int(op, a, b) => {
                    let (a, b) = (w(a), w(b));
                    items.push(net(match op {
                        IntOp::And => format!("{a} & {b}"),
                        IntOp::Or => format!("{a} | {b}"),
                        IntOp::Xor => format!("{a} ^ {b}"),
                        IntOp::Add => format!("{a} + {b}"),
                        IntOp::Sub => format!("{a} - {b}"),
                        IntOp::Ult => format!("{{31'd0, {a} < {b}}}"),
                        IntOp::Slt => format!("{{31'd0, $signed({a}) < $signed({b})}}"),
                        IntOp::Eq => format!("{{31'd0, {a} == {b}}}"),
                    }));
                }
                Node::Shift(op, a, k) => {
                    let a = w(a);
                    items.push(net(match op {
                        ShiftOp::Shl => format!("{a} << {k}"),
                        ShiftOp::Lshr => format!("{a} >> {k}"),
                        ShiftOp::Ashr => format!("$signed({a}) >>> {k}"),
                    }));
                }
                Node::Select(c, a, b) => {
                    items.push(net(format!("({} != 32'd0) ? {} : {}", w(c), w(a), w(b))))
                }
                Node::ToInt(a) => {
                    items.push(wire);
                    items.push(inst(FP32_TO_INT, vec![("x", w(a)), ("z", me.clone())]));
                }
                Node::FromInt(a) => {
                    items.push(wire);
                    items.push(inst(FP32_FROM_INT, vec![("x", w(a)), ("z", me.clone())]));
                }
            }
        }
        let unused: Vec<&str> = self
            .inputs
            .iter()
            .zip(&used_inputs)
            .filter(|(_, u)| !**u)
            .map(|(n, _)| n.as_str())
            .collect();
        if !unused.is_empty() {
            items.push(Item::net(
                "unused_inputs",
                1,
                &format!("|{{{}}}", unused.join(", ")),
            ));
        }
        items.push(Item::Assign {
            lhs: "z".into(),
            rhs: w(&out),
        });
        let mut ports: Vec<Port> = self
            .inputs
            .iter()
            .map(|n| Port::input_bus(n, "32", Signedness::Unsigned))
            .collect();
        ports.push(Port::output_bus("z", "32"));
        Module {
            name: name.into(),
            doc: doc.iter().map(|d| d.to_string()).collect(),
            params: vec![],
            ports,
            items,
        }
    }
}

/// `f32 as i32` (Rust's saturating cast): port `x` (fp32 bits) in, `z` out.
pub fn fp32_to_int() -> Module {
    let n = Item::net;
    Module {
        name: FP32_TO_INT.into(),
        doc: vec![
            "fp32 to int32 as Rust's `as`: toward zero, saturating, NaN to 0. Combinational."
                .into(),
        ],
        params: vec![],
        ports: vec![
            Port::input_bus("x", "32", Signedness::Unsigned),
            Port::output_bus("z", "32"),
        ],
        items: vec![
            n("e", 8, "x[30:23]"),
            n("nan", 1, "e == 8'hff && x[22:0] != 23'd0"),
            Item::Comment("|x| >= 2^31 saturates (infinity too); |x| < 1 truncates to 0.".into()),
            n("big", 1, "e >= 8'd158"),
            n("below_one", 1, "e < 8'd127"),
            n("m", 32, "{8'd0, 1'b1, x[22:0]}"),
            n(
                "mag",
                32,
                "(e >= 8'd150) ? (m << (e - 8'd150)) : (m >> (8'd150 - e))",
            ),
            Item::Assign {
                lhs: "z".into(),
                rhs: "(nan | below_one) ? 32'd0 : big ? (x[31] ? 32'h80000000 : 32'h7fffffff) : x[31] ? 32'd0 - mag : mag".into(),
            },
        ],
    }
}

/// `i32 as f32` (round to nearest even): port `x` (int32) in, `z` (fp32 bits) out.
pub fn fp32_from_int() -> Module {
    let n = Item::net;
    Module {
        name: FP32_FROM_INT.into(),
        doc: vec!["int32 to fp32 as Rust's `as`: round to nearest even. Combinational.".into()],
        params: vec![],
        ports: vec![
            Port::input_bus("x", "32", Signedness::Unsigned),
            Port::output_bus("z", "32"),
        ],
        items: vec![
            n("mag", 32, "x[31] ? 32'd0 - x : x"),
            n("lz", 6, &lead_zeros("mag", 32, 6)),
            Item::Comment("The leading one at bit 31 has the biased exponent 158.".into()),
            n("nrm", 32, "mag << lz"),
            n("up", 1, "nrm[7] & (nrm[6:0] != 7'd0 | nrm[8])"),
            n(
                "rounded",
                31,
                "{8'd158 - {2'd0, lz}, nrm[30:8]} + {30'd0, up}",
            ),
            n("unused_lead", 1, "nrm[31]"),
            Item::Assign {
                lhs: "z".into(),
                rhs: "(mag == 32'd0) ? 32'd0 : {x[31], rounded}".into(),
            },
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interpreter_computes_as_rust_does() {
        let mut g = Graph::new(&["x", "y"]);
        let x = g.input("x");
        let y = g.input("y");
        let q = g.div(x, y);
        let k = g.to_int(q);
        let kf = g.from_int(k);
        let lt = g.int(IntOp::Slt, k, y);
        let out = g.select(lt, kf, q);
        let f = |a: f32, b: f32| g.eval(&[a.to_bits(), b.to_bits()], out);
        // 7 / 2 = 3.5 -> 3 -> 3.0; y's pattern is a large positive int, so 3 < it.
        assert_eq!(f(7.0, 2.0), 3.0f32.to_bits());
        // -7 / -2 = 3.5: the pattern of -2.0 is a negative int32, so q is kept.
        assert_eq!(f(-7.0, -2.0), 3.5f32.to_bits());
        assert_eq!(g.operator_counts(out), [0, 0, 1, 1, 1]);
        let v = g.module("t", &["test"], out).to_verilog();
        assert!(v.contains("tessera_fp32_div u2"), "{v}");
        assert!(v.contains("$signed(n3) < $signed(n1)"), "{v}");
    }
}
