//! The int8 partial-sum datapath, matching the functional simulator:
//! int8 x int8 products are exact in 16 bits (-128 x -128 = 16384) and the
//! column sum wraps in 32-bit two's complement. Three segments: the first
//! half of the partial-product tree ([`crate::arith`]), its second half,
//! then the add, with the incoming partial sum carried alongside. Two
//! stages register the four pair sums (halfway through the multiplier,
//! which balances the stages better than registering the product: on an
//! ECP5 the 8x8 array's critical path is the activation net's fan-out into
//! the partial products), three also register the product.

use crate::arith::{mul8_first_half, mul8_second_half, Operands};
use crate::pipeline::{carry, Carry, Datapath, Segment};
use crate::verilog::{Item, Signedness};

/// The datapath of [`crate::pe::pe`] for int8.
pub fn datapath() -> Datapath {
    let mut s0 = vec![Item::Comment(
        "segment 0: partial products of a x w, summed in pairs".into(),
    )];
    s0.extend(mul8_first_half("s0_m", "a_in", "w", Operands::Signed));
    s0.push(Item::net("s0_pin", 32, "p_in"));
    let mut s1 = vec![Item::Comment("segment 1: the exact 16-bit product".into())];
    s1.extend(mul8_second_half("s1_m", "s1_prod"));
    Datapath {
        segments: vec![
            Segment {
                items: s0,
                out: vec![
                    carry("m_q0", 16),
                    carry("m_q1", 16),
                    carry("m_q2", 16),
                    carry("m_q3", 16),
                    carry("pin", 32),
                ],
            },
            Segment {
                items: s1,
                out: vec![
                    Carry {
                        name: "prod",
                        width: 16,
                        sign: Signedness::Unsigned,
                    },
                    carry("pin", 32),
                ],
            },
            Segment {
                items: vec![
                    Item::Comment("segment 2: the wrapping 32-bit accumulate".into()),
                    Item::net("s2_res", 32, "s2_pin + {{16{s2_prod[15]}}, s2_prod}"),
                ],
                out: vec![],
            },
        ],
        cut_order: vec![0, 1],
        res_width: 32,
        product_cut_order: vec![0, 1],
        sum_carries: vec!["pin"],
    }
}
