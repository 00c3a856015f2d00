//! Pipelined datapaths of the processing elements: a datapath is a list of
//! combinational segments, and the boundary between two segments is either
//! a register or a plain wire. The hardware description's stage count P
//! decides which boundaries are registered (the datapath names them in order
//! of benefit), so one description of the arithmetic serves every P.
//!
//! Naming: segment i reads and defines nets `s{i}_{name}`; the boundary
//! after segment i turns each carried `s{i}_{name}` into `s{i+1}_{name}`, so
//! a value that a later segment needs is simply carried through the
//! boundaries between. The last segment defines `s{n-1}_res`, which reaches
//! the `p_out` register through any extra delay registers: the partial sum
//! always crosses exactly P registers, the timing model's assumption.
//!
//! The same datapath also serves the output-stationary processing element
//! ([`Datapath::accumulator_items`]), where `p_in` is the element's own
//! accumulator: there only the product is pipelined (the leading
//! boundaries, which carry nothing computed from `p_in`) and the
//! accumulate closes in one cycle.

use crate::verilog::{Item, Signedness};
use crate::RtlError;

/// A value handed from one segment to the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Carry {
    pub name: &'static str,
    pub width: u32,
    pub sign: Signedness,
}

/// An unsigned carried value.
pub const fn carry(name: &'static str, width: u32) -> Carry {
    Carry {
        name,
        width,
        sign: Signedness::Unsigned,
    }
}

/// One combinational segment and the values that cross the boundary after
/// it (empty for the last segment, which defines `s{i}_res`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub items: Vec<Item>,
    pub out: Vec<Carry>,
}

/// A processing element's partial-sum datapath.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datapath {
    pub segments: Vec<Segment>,
    /// Boundaries (index i = after segment i) in the order they are
    /// registered as P grows; every boundary appears once.
    pub cut_order: Vec<usize>,
    /// Width of `res` and `p_out`.
    pub res_width: u32,
    /// The product boundaries, in the order they are registered in the
    /// output-stationary form: every value crossing them is computed from
    /// the operands `a_in` and `w` alone, except the carries named in
    /// `sum_carries`, which only pass `p_in`-derived values through.
    pub product_cut_order: Vec<usize>,
    /// Carries computed from `p_in` alone (never registered in the
    /// output-stationary form, where `p_in` is the accumulator).
    pub sum_carries: Vec<&'static str>,
}

fn width(w: u32) -> Option<String> {
    (w > 1).then(|| w.to_string())
}

impl Datapath {
    /// The items of the datapath with `stages` registers on the partial-sum
    /// path, the last of them `p_out` (declared by the caller as an output
    /// register): the first `stages - 1` boundaries of `cut_order` are
    /// registered, and stages beyond the boundaries become delay registers.
    ///
    /// # Errors
    /// `stages` is 0.
    pub fn items(&self, stages: u32) -> Result<Vec<Item>, RtlError> {
        if stages == 0 {
            return Err(RtlError::Unsupported(
                "array.pe_pipeline_stages: must be at least 1".into(),
            ));
        }
        let cuts = (stages as usize - 1).min(self.cut_order.len());
        let registered = &self.cut_order[..cuts];
        let mut items = Vec::new();
        let mut clocked = Vec::new();
        let last = self.segments.len() - 1;
        for (i, seg) in self.segments.iter().enumerate() {
            items.extend(seg.items.iter().cloned());
            if i == last {
                break;
            }
            let reg = registered.contains(&i);
            items.push(Item::Comment(format!(
                "boundary {i}: {}",
                if reg { "pipeline register" } else { "wire" }
            )));
            for c in &seg.out {
                let (from, to) = (format!("s{i}_{}", c.name), format!("s{}_{}", i + 1, c.name));
                if reg {
                    items.push(Item::Reg {
                        name: to.clone(),
                        width: width(c.width),
                        sign: c.sign,
                    });
                    clocked.push(format!("{to} <= {from};"));
                } else {
                    items.push(Item::Net {
                        name: to,
                        width: width(c.width),
                        sign: c.sign,
                        rhs: from,
                    });
                }
            }
        }
        let mut res = format!("s{last}_res");
        for d in 0..stages as usize - 1 - cuts {
            let name = format!("delay{d}_res");
            items.push(Item::Reg {
                name: name.clone(),
                width: width(self.res_width),
                sign: Signedness::Unsigned,
            });
            clocked.push(format!("{name} <= {res};"));
            res = name;
        }
        clocked.push(format!("p_out <= {res};"));
        items.push(Item::Clocked {
            clock: "clk".into(),
            body: clocked,
        });
        Ok(items)
    }
}

impl Datapath {
    /// The output-stationary form: `p_in` is the processing element's own
    /// accumulator and `s{n-1}_res` its next value, combinational from
    /// `p_in`; `stages - 1` registers sit on the product only. The first of
    /// them register boundaries of `product_cut_order`, the rest delay the
    /// operand-derived carries of its last boundary; carries in
    /// `sum_carries` stay wires. The caller declares `a_in`, `w`, `p_in`
    /// and the accumulator register.
    ///
    /// # Errors
    /// `stages` is 0.
    pub fn accumulator_items(&self, stages: u32) -> Result<Vec<Item>, RtlError> {
        if stages == 0 {
            return Err(RtlError::Unsupported(
                "array.pe_pipeline_stages: must be at least 1".into(),
            ));
        }
        let regs = stages as usize - 1;
        let cuts = regs.min(self.product_cut_order.len());
        let registered = &self.product_cut_order[..cuts];
        let delay_at = self.product_cut_order.iter().copied().max();
        let mut items = Vec::new();
        let mut clocked = Vec::new();
        let last = self.segments.len() - 1;
        for (i, seg) in self.segments.iter().enumerate() {
            items.extend(seg.items.iter().cloned());
            if i == last {
                break;
            }
            let depth = usize::from(registered.contains(&i))
                + if delay_at == Some(i) { regs - cuts } else { 0 };
            items.push(Item::Comment(format!(
                "boundary {i}: {depth} register(s) on the product"
            )));
            for c in &seg.out {
                let (from, to) = (format!("s{i}_{}", c.name), format!("s{}_{}", i + 1, c.name));
                let n = if self.sum_carries.contains(&c.name) {
                    0
                } else {
                    depth
                };
                if n == 0 {
                    items.push(Item::Net {
                        name: to,
                        width: width(c.width),
                        sign: c.sign,
                        rhs: from,
                    });
                    continue;
                }
                let mut prev = from;
                for d in 1..=n {
                    let name = if d == n {
                        to.clone()
                    } else {
                        format!("s{i}_{}_d{d}", c.name)
                    };
                    items.push(Item::Reg {
                        name: name.clone(),
                        width: width(c.width),
                        sign: c.sign,
                    });
                    clocked.push(format!("{name} <= {prev};"));
                    prev = name;
                }
            }
        }
        if !clocked.is_empty() {
            items.push(Item::Clocked {
                clock: "clk".into(),
                body: clocked,
            });
        }
        Ok(items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verilog::Item;

    fn two_segments() -> Datapath {
        Datapath {
            segments: vec![
                Segment {
                    items: vec![Item::net("s0_x", 4, "p_in")],
                    out: vec![carry("x", 4)],
                },
                Segment {
                    items: vec![Item::net("s1_res", 4, "s1_x + 4'd1")],
                    out: vec![],
                },
            ],
            cut_order: vec![0],
            res_width: 4,
            product_cut_order: vec![0],
            sum_carries: vec![],
        }
    }

    fn text(items: &[Item]) -> String {
        crate::verilog::Module {
            name: "m".into(),
            doc: vec![],
            params: vec![],
            ports: vec![],
            items: items.to_vec(),
        }
        .to_verilog()
    }

    #[test]
    fn stages_register_boundaries_then_add_delays() {
        let d = two_segments();
        let one = text(&d.items(1).unwrap());
        assert!(one.contains("wire [4-1:0] s1_x = s0_x;"), "{one}");
        assert!(one.contains("p_out <= s1_res;"), "{one}");
        let two = text(&d.items(2).unwrap());
        assert!(
            two.contains("reg [4-1:0] s1_x;") && two.contains("s1_x <= s0_x;"),
            "{two}"
        );
        let three = text(&d.items(3).unwrap());
        assert!(
            three.contains("delay0_res <= s1_res;") && three.contains("p_out <= delay0_res;"),
            "{three}"
        );
        assert!(d.items(0).is_err());
    }

    #[test]
    fn accumulator_form_registers_the_product_only() {
        let mut d = two_segments();
        let one = text(&d.accumulator_items(1).unwrap());
        assert!(one.contains("wire [4-1:0] s1_x = s0_x;"), "{one}");
        assert!(!one.contains("always"), "{one}");
        let three = text(&d.accumulator_items(3).unwrap());
        assert!(
            three.contains("s0_x_d1 <= s0_x;") && three.contains("s1_x <= s0_x_d1;"),
            "{three}"
        );
        assert!(!three.contains("p_out"), "{three}");
        d.sum_carries = vec!["x"];
        let sum = text(&d.accumulator_items(3).unwrap());
        assert!(sum.contains("wire [4-1:0] s1_x = s0_x;"), "{sum}");
        assert!(d.accumulator_items(0).is_err());
    }
}
