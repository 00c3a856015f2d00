//! The generated part of `docs/isa.md`: the instruction reference, written
//! from [`INSTRUCTIONS`], the element-type codes and the enumerated operand
//! fields, so the document cannot drift from the encoder and decoder.
//!
//! `isa/tests/isa_doc.rs` checks that the text between the markers of
//! `docs/isa.md` equals [`instruction_reference`]; `TESSERA_BLESS=1` rewrites it.
//! This module only builds a `String`; it does no IO.

use std::fmt::Write as _;

use crate::dtype::DType;
use crate::field::{
    Axis, Field, HbmAddr, IndexMode, LocalAddr, ReduceOp, Space, Tile, Transpose, VecBinOp, VecSrc,
    VecUnOp, WriteMode,
};
use crate::inst::{InstDesc, FIELDS_START, INSTRUCTIONS, WORD_BITS};

/// The section title of an instruction group.
fn group_title(group: &str) -> String {
    match group {
        "control" => "Control instructions".into(),
        "dma" => "DMA instructions".into(),
        "matrix" => "Matrix instructions".into(),
        "vector" => "Vector instructions".into(),
        other => format!("{other} instructions"),
    }
}

/// Doc-comment text as one line: whitespace runs (line breaks included) become one space.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Text safe inside a Markdown table cell.
fn cell(s: &str) -> String {
    one_line(s).replace('|', "\\|")
}

/// The groups in order of first appearance in the table.
fn groups() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for d in INSTRUCTIONS {
        if !out.contains(&d.group) {
            out.push(d.group);
        }
    }
    out
}

const TABLE_HEAD: &str = "| field | bits | width | syntax | meaning |\n|---|---|---|---|---|\n";

fn row(out: &mut String, name: &str, lsb: u32, bits: u32, syntax: &str, meaning: &str) {
    let _ = writeln!(
        out,
        "| `{name}` | {lsb}..{} | {bits} | {} | {} |",
        lsb + bits,
        cell(syntax),
        cell(meaning)
    );
}

fn word_layout(out: &mut String) {
    out.push_str("## Word layout\n\n");
    let _ = writeln!(
        out,
        "Every instruction is one {WORD_BITS}-bit word, stored little-endian (16 bytes). \
         Bits are numbered from 0, the least significant; `a..b` is bits a to b-1. \
         The header below is the same for every instruction; the operand fields \
         start at bit {FIELDS_START}, in the order each instruction lists them, and \
         every bit above an instruction's last field is reserved and must be zero \
         (the decoder rejects the word otherwise).\n"
    );
    out.push_str(TABLE_HEAD);
    row(
        out,
        "opcode",
        0,
        8,
        "the mnemonic",
        "Selects the instruction; unassigned opcodes do not decode.",
    );
    row(
        out,
        "wait",
        8,
        16,
        "`wait=tA|tB|...` of `t0`..`t15`",
        "Bit t set: the instruction waits until token t is at least 1, then decrements it.",
    );
    row(
        out,
        "signal",
        24,
        16,
        "`signal=tA|tB|...` of `t0`..`t15`",
        "Bit t set: the instruction increments token t when its effects are complete.",
    );
    row(
        out,
        "operands",
        FIELDS_START,
        WORD_BITS - FIELDS_START,
        "per instruction",
        "The instruction's fields, then reserved zero bits.",
    );
    out.push('\n');
}

fn opcode_map(out: &mut String) {
    out.push_str("## Opcode map\n\n");
    out.push_str("| opcode | mnemonic | group | queues |\n|---|---|---|---|\n");
    for d in INSTRUCTIONS {
        let _ = writeln!(
            out,
            "| 0x{:02x} | `{}` | {} | {} |",
            d.opcode,
            d.mnemonic,
            d.group,
            d.queues.names()
        );
    }
    out.push('\n');
}

fn instruction(out: &mut String, d: &InstDesc) {
    let _ = writeln!(out, "### {}\n", d.mnemonic);
    let _ = writeln!(
        out,
        "Opcode `0x{:02x}`; queues: {}.\n",
        d.opcode,
        d.queues.names()
    );
    let _ = writeln!(out, "{}\n", one_line(d.doc));
    let end = d.fields.last().map_or(FIELDS_START, |f| f.lsb + f.bits);
    if d.fields.is_empty() {
        let _ = writeln!(
            out,
            "No operands; bits {FIELDS_START}..{WORD_BITS} are reserved (zero).\n"
        );
        return;
    }
    out.push_str(TABLE_HEAD);
    for f in d.fields {
        row(out, f.name, f.lsb, f.bits, f.syntax, f.doc);
    }
    out.push('\n');
    if end < WORD_BITS {
        let _ = writeln!(out, "Bits {end}..{WORD_BITS} are reserved (zero).\n");
    }
}

/// A sub-field: name, offset within the operand, width.
type SubField = (&'static str, u32, u32);
/// A composite operand: name, syntax, width, sub-fields.
type Composite = (&'static str, &'static str, u32, &'static [SubField]);

/// Sub-field layout of the composite operands, bit offsets within the operand.
/// `composite_layouts_match_the_encoders` checks it against the `Field` impls.
const COMPOSITES: &[Composite] = &[
    (
        "LocalAddr",
        LocalAddr::SYNTAX,
        LocalAddr::BITS,
        &[("space", 0, 1), ("reg", 1, 4), ("offset (signed)", 5, 12)],
    ),
    (
        "Tile",
        Tile::SYNTAX,
        Tile::BITS,
        &[("address (LocalAddr)", 0, 17), ("type code", 17, 3)],
    ),
    (
        "HbmAddr",
        HbmAddr::SYNTAX,
        HbmAddr::BITS,
        &[("reg", 0, 4), ("offset (signed)", 4, 20)],
    ),
    (
        "VecSrc",
        VecSrc::SYNTAX,
        VecSrc::BITS,
        &[
            ("kind: 0 tile, 1 `row(...)`, 2 `col(...)`, 3 scalar", 0, 2),
            ("Tile, or scalar register number", 2, 20),
        ],
    ),
];

fn composites(out: &mut String) {
    out.push_str("## Composite operands\n\n");
    out.push_str(
        "Memory and vector-source operands pack sub-fields, least significant first; \
         bit offsets are within the operand.\n\n",
    );
    out.push_str(
        "| operand | syntax | bits | sub-field | offset | width |\n|---|---|---|---|---|---|\n",
    );
    for (name, syntax, bits, parts) in COMPOSITES {
        for (part, lsb, width) in *parts {
            let _ = writeln!(
                out,
                "| `{name}` | {} | {bits} | {} | {lsb} | {width} |",
                cell(syntax),
                cell(part)
            );
        }
    }
    out.push('\n');
}

fn dtypes(out: &mut String) {
    out.push_str("## Element types\n\n");
    out.push_str(
        "The 3-bit element-type code appears in every tile operand (`:TYPE`). \
         Code 7 is unassigned and does not decode.\n\n",
    );
    out.push_str("| type | code | bytes | kind | array accumulates in |\n|---|---|---|---|---|\n");
    for t in DType::ALL {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | `{}` |",
            t.name(),
            t.to_bits(),
            t.size_bytes(),
            if t.is_integer() {
                "integer"
            } else {
                "floating point"
            },
            t.accumulator_type().name()
        );
    }
    out.push('\n');
}

/// One enumerated field type: its values and codes, and where it is used
/// (fields whose syntax is this type's syntax).
fn enum_table<T: Field + Copy>(
    out: &mut String,
    title: &str,
    all: &[T],
    name: fn(T) -> &'static str,
) {
    let users: Vec<String> = INSTRUCTIONS
        .iter()
        .flat_map(|d| {
            d.fields
                .iter()
                .filter(|f| f.syntax == T::SYNTAX)
                .map(move |f| format!("`{}` {}", d.mnemonic, f.name))
        })
        .collect();
    let _ = writeln!(out, "### {title} ({} bits)\n", T::BITS);
    if !users.is_empty() {
        let _ = writeln!(out, "Used by: {}.\n", users.join(", "));
    }
    out.push_str("| value | code |\n|---|---|\n");
    for v in all {
        let _ = writeln!(out, "| `{}` | {} |", name(*v), v.to_bits());
    }
    out.push('\n');
    let max = 1u128 << T::BITS;
    if (all.len() as u128) < max {
        let _ = writeln!(out, "Other codes below {max} do not decode.\n");
    }
}

fn enums(out: &mut String) {
    out.push_str("## Enumerated operands\n\n");
    out.push_str(
        "Named operand values and their codes; the assembler accepts exactly these names.\n\n",
    );
    enum_table(out, "Space", Space::ALL, Space::name);
    enum_table(out, "WriteMode", WriteMode::ALL, WriteMode::name);
    enum_table(out, "Transpose", Transpose::ALL, Transpose::name);
    enum_table(out, "VecBinOp", VecBinOp::ALL, VecBinOp::name);
    enum_table(out, "VecUnOp", VecUnOp::ALL, VecUnOp::name);
    enum_table(out, "ReduceOp", ReduceOp::ALL, ReduceOp::name);
    enum_table(out, "Axis", Axis::ALL, Axis::name);
    enum_table(out, "IndexMode", IndexMode::ALL, IndexMode::name);
}

/// The generated instruction reference of `docs/isa.md`, as Markdown: the
/// word layout, the opcode map, every instruction by group in table order
/// with its fields, the element types and the enumerated operand values.
/// The output depends only on the instruction table, so it is deterministic.
///
/// ```
/// let md = tessera_isa::doc::instruction_reference();
/// assert!(md.contains("### mm.compute\n"));
/// assert!(md.contains("| `opcode` | 0..8 | 8 |"));
/// ```
pub fn instruction_reference() -> String {
    let mut out = String::from("\n");
    word_layout(&mut out);
    opcode_map(&mut out);
    for g in groups() {
        let _ = writeln!(out, "## {}\n", group_title(g));
        for d in INSTRUCTIONS.iter().filter(|d| d.group == g) {
            instruction(&mut out, d);
        }
    }
    composites(&mut out);
    dtypes(&mut out);
    enums(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::field::{FReg, Reg, SInt};

    #[test]
    fn every_mnemonic_has_a_heading() {
        let md = instruction_reference();
        for d in INSTRUCTIONS {
            assert!(
                md.contains(&format!("\n### {}\n", d.mnemonic)),
                "no heading for {}",
                d.mnemonic
            );
            assert!(md.contains(&format!("Opcode `0x{:02x}`", d.opcode)));
        }
    }

    #[test]
    fn field_rows_show_exclusive_bit_ranges() {
        let md = instruction_reference();
        // dma.load: dst is a 17-bit LocalAddr at bit 40.
        assert!(md.contains("| `dst` | 40..57 | 17 |"), "{md}");
        // Token-set syntax keeps its `|` out of the table structure.
        assert!(md.contains("`wait=tA\\|tB\\|...`"));
    }

    #[test]
    fn composite_layouts_match_the_encoders() {
        let la = LocalAddr {
            space: Space::Acc,
            reg: Reg::new(5).unwrap(),
            offset: SInt::new(-3).unwrap(),
        };
        let t = Tile {
            addr: la,
            dtype: DType::Int32,
        };
        let h = HbmAddr {
            reg: Reg::new(9).unwrap(),
            offset: SInt::new(-7).unwrap(),
        };
        let get = |name: &str, part: usize| {
            let (_, _, bits, parts) = COMPOSITES.iter().find(|c| c.0 == name).unwrap();
            assert_eq!(parts.iter().map(|p| p.2).sum::<u32>(), *bits, "{name}");
            (parts[part].1, (1u128 << parts[part].2) - 1)
        };
        let field = |v: u128, (lsb, mask): (u32, u128)| v >> lsb & mask;
        let b = la.to_bits();
        assert_eq!(field(b, get("LocalAddr", 0)), Space::Acc.to_bits());
        assert_eq!(field(b, get("LocalAddr", 1)), 5);
        assert_eq!(
            field(b, get("LocalAddr", 2)),
            SInt::<12>::new(-3).unwrap().to_bits()
        );
        let b = t.to_bits();
        assert_eq!(field(b, get("Tile", 0)), la.to_bits());
        assert_eq!(field(b, get("Tile", 1)), DType::Int32.to_bits());
        let b = h.to_bits();
        assert_eq!(field(b, get("HbmAddr", 0)), 9);
        assert_eq!(
            field(b, get("HbmAddr", 1)),
            SInt::<20>::new(-7).unwrap().to_bits()
        );
        for (src, kind, payload) in [
            (VecSrc::Tile(t), 0, t.to_bits()),
            (VecSrc::Row(t), 1, t.to_bits()),
            (VecSrc::Col(t), 2, t.to_bits()),
            (VecSrc::Scalar(FReg::new(6).unwrap()), 3, 6),
        ] {
            let b = src.to_bits();
            assert_eq!(field(b, get("VecSrc", 0)), kind);
            assert_eq!(field(b, get("VecSrc", 1)), payload);
        }
    }

    #[test]
    fn output_is_deterministic() {
        assert_eq!(instruction_reference(), instruction_reference());
    }
}
