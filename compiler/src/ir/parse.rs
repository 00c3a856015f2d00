//! The IR's text form, read (see [`super::print`] for the grammar by
//! example). Values may be named freely (`%x`, `%12`); they are renumbered
//! in order of definition. `#` starts a comment. Every node's type is
//! inferred; a written type must match it. Errors give line and column.

use std::collections::HashMap;

use nom::branch::alt;
use nom::bytes::complete::{escaped_transform, is_not, tag, take_while, take_while1};
use nom::character::complete::{char, space0};
use nom::combinator::{opt, recognize, value};
use nom::multi::separated_list0;
use nom::sequence::delimited;
use nom::{IResult, Parser};
use tessera_isa::DType;

use super::op::{Attr, Op};
use super::{Graph, TensorType, ValueId};
use crate::error::IrError;

type Res<'a, T> = IResult<&'a str, T>;

/// One parsed line: `%name = op{attrs}(operands) : type`.
struct Line<'a> {
    def: Option<&'a str>,
    op: &'a str,
    attrs: Vec<(String, Attr)>,
    operands: Vec<(&'a str, usize)>,
    ty: Option<TensorType>,
}

/// Parses the text form. `source` names the input in errors.
///
/// # Errors
/// [`IrError::Parse`] at the first line that does not parse, names an
/// undefined value, or breaks a typing rule.
pub fn parse(text: &str, source: &str) -> Result<Graph, IrError> {
    let err = |line: usize, column: usize, message: String| IrError::Parse {
        source_name: source.to_string(),
        line,
        column,
        message,
    };
    let mut graph: Option<Graph> = None;
    let mut names: HashMap<&str, ValueId> = HashMap::new();
    let mut closed = false;
    let mut node_lines = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line_no = n + 1;
        let code = strip_comment(raw);
        let trimmed = code.trim();
        if trimmed.is_empty() {
            continue;
        }
        let col = |rest: &str| code.len() - rest.len() + 1;
        if closed {
            return Err(err(
                line_no,
                col(code.trim_start()),
                "text after the closing `}`".into(),
            ));
        }
        let Some(g) = graph.as_mut() else {
            let (rest, name) = header(code.trim_start()).map_err(|_| {
                err(
                    line_no,
                    col(code.trim_start()),
                    "expected `graph \"name\" {`".into(),
                )
            })?;
            if !rest.trim().is_empty() {
                return Err(err(line_no, col(rest), "unexpected text after `{`".into()));
            }
            graph = Some(Graph::new(&name));
            continue;
        };
        if trimmed == "}" {
            closed = true;
            continue;
        }
        let start = code.trim_start();
        let (rest, l) = node_line(start).map_err(|e| {
            let at = match &e {
                nom::Err::Error(e) | nom::Err::Failure(e) => e.input,
                nom::Err::Incomplete(_) => "",
            };
            err(
                line_no,
                col(at),
                "expected `%name = op{attrs}(operands) : [shape] dtype`".into(),
            )
        })?;
        if !rest.trim().is_empty() {
            let message = match rest.trim_start().strip_prefix(':') {
                Some(ty) => format!("expected a type `[dims] dtype`, got `{}`", ty.trim()),
                None => format!("unexpected `{}`", rest.trim()),
            };
            return Err(err(line_no, col(rest), message));
        }
        let op = Op::from_parts(l.op, &l.attrs, l.ty.clone())
            .map_err(|m| err(line_no, col(start), m))?;
        let mut inputs = Vec::new();
        for (name, offset) in &l.operands {
            let v = names.get(name).copied().ok_or_else(|| {
                err(
                    line_no,
                    col(start) + offset,
                    format!("undefined value `%{name}`"),
                )
            })?;
            inputs.push(v);
        }
        let id = g.push(op, &inputs).map_err(|e| match e {
            IrError::Verify { rule, op, .. } => err(line_no, col(start), format!("{op}: {rule}")),
            other => other,
        })?;
        node_lines.push((line_no, col(start)));
        let node = &g.nodes[id.0];
        match (l.def, &node.ty) {
            (Some(def), Some(inferred)) => {
                if let Some(written) = &l.ty {
                    if written != inferred {
                        return Err(err(
                            line_no,
                            col(start),
                            format!(
                                "written type {} differs from the inferred {}",
                                super::print::tensor_type(written),
                                super::print::tensor_type(inferred)
                            ),
                        ));
                    }
                }
                if names.insert(def, id).is_some() {
                    return Err(err(
                        line_no,
                        col(start),
                        format!("`%{def}` is defined twice"),
                    ));
                }
            }
            (Some(def), None) => {
                return Err(err(
                    line_no,
                    col(start),
                    format!("`{}` defines no value, but `%{def} =` names one", l.op),
                ))
            }
            (None, Some(_)) => {
                return Err(err(
                    line_no,
                    col(start),
                    format!("the value of `{}` needs a name: `%x = ...`", l.op),
                ))
            }
            (None, None) => {}
        }
    }
    let at_end = text.lines().count().max(1);
    match graph {
        None => Err(err(1, 1, "empty input: expected `graph \"name\" {`".into())),
        Some(_) if !closed => Err(err(at_end, 1, "missing the closing `}`".into())),
        Some(g) => match super::verify::verify(&g) {
            Ok(()) => Ok(g),
            Err(IrError::Verify { node, op, rule }) => {
                let (line, column) = node_lines.get(node).copied().unwrap_or((at_end, 1));
                Err(err(line, column, format!("{op}: {rule}")))
            }
            Err(e) => Err(e),
        },
    }
}

fn strip_comment(line: &str) -> &str {
    // `#` never occurs inside the grammar except in quoted strings.
    let mut in_str = false;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match c {
            '\\' if in_str => escaped = !escaped,
            '"' if !escaped => in_str = !in_str,
            '#' if !in_str => return &line[..i],
            _ => escaped = false,
        }
        if c != '\\' {
            escaped = false;
        }
    }
    line
}

fn header(i: &str) -> Res<'_, String> {
    let (i, _) = (tag("graph"), space0).parse(i)?;
    let (i, name) = string(i)?;
    let (i, _) = (space0, char('{')).parse(i)?;
    Ok((i, name))
}

fn string(i: &str) -> Res<'_, String> {
    alt((
        value(String::new(), tag("\"\"")),
        delimited(
            char('"'),
            escaped_transform(
                is_not("\"\\"),
                '\\',
                alt((
                    value("\"", char('"')),
                    value("\\", char('\\')),
                    value("\n", char('n')),
                )),
            ),
            char('"'),
        ),
    ))
    .parse(i)
}

fn word(i: &str) -> Res<'_, &str> {
    recognize((
        take_while1(|c: char| c.is_ascii_alphabetic() || c == '_'),
        take_while(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
    ))
    .parse(i)
}

fn value_name(i: &str) -> Res<'_, &str> {
    let (i, _) = char('%').parse(i)?;
    take_while1(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.').parse(i)
}

fn uint(i: &str) -> Res<'_, u64> {
    let (rest, digits) = take_while1(|c: char| c.is_ascii_digit()).parse(i)?;
    match digits.parse() {
        Ok(v) => Ok((rest, v)),
        Err(_) => Err(nom::Err::Error(nom::error::Error::new(
            i,
            nom::error::ErrorKind::Digit,
        ))),
    }
}

fn shape(i: &str) -> Res<'_, Vec<u64>> {
    delimited(
        (char('['), space0),
        separated_list0((space0, char(','), space0), uint),
        (space0, char(']')),
    )
    .parse(i)
}

fn number(i: &str) -> Res<'_, Attr> {
    let (rest, text) = recognize((
        opt(char('-')),
        alt((
            tag("inf"),
            tag("NaN"),
            recognize(take_while1(|c: char| {
                c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-')
            })),
        )),
    ))
    .parse(i)?;
    let fail = || nom::Err::Error(nom::error::Error::new(i, nom::error::ErrorKind::Float));
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse()
            .map(|v| (rest, Attr::Int(v)))
            .map_err(|_| fail());
    }
    text.parse()
        .map(|v| (rest, Attr::Float(v)))
        .map_err(|_| fail())
}

fn attr_value(i: &str) -> Res<'_, Attr> {
    alt((
        string.map(Attr::Str),
        shape.map(Attr::Shape),
        number,
        word.map(|w| match w {
            "true" => Attr::Bool(true),
            "false" => Attr::Bool(false),
            w => Attr::Word(w.to_string()),
        }),
    ))
    .parse(i)
}

fn attrs(i: &str) -> Res<'_, Vec<(String, Attr)>> {
    delimited(
        (char('{'), space0),
        separated_list0(
            (space0, char(','), space0),
            (word, space0, char('='), space0, attr_value).map(|(k, _, _, _, v)| (k.to_string(), v)),
        ),
        (space0, char('}')),
    )
    .parse(i)
}

fn tensor_type(i: &str) -> Res<'_, TensorType> {
    let (rest, (s, _, d)) = (shape, space0, word).parse(i)?;
    match d.parse::<DType>() {
        Ok(dtype) => Ok((rest, TensorType { shape: s, dtype })),
        Err(_) => Err(nom::Err::Error(nom::error::Error::new(
            i,
            nom::error::ErrorKind::Tag,
        ))),
    }
}

fn node_line(line: &str) -> Res<'_, Line<'_>> {
    let (i, def) =
        opt((value_name, space0, char('='), space0).map(|(n, _, _, _)| n)).parse(line)?;
    let (i, op) = word(i)?;
    let (i, attrs) = opt(attrs).parse(i)?;
    let operand = |i| {
        let start = i;
        value_name(i).map(|(r, n)| (r, (n, line.len() - start.len())))
    };
    let (i, operands) = opt(delimited(
        (char('('), space0),
        separated_list0((space0, char(','), space0), operand),
        (space0, char(')')),
    ))
    .parse(i)?;
    let (i, ty) = opt((space0, char(':'), space0, tensor_type).map(|(_, _, _, t)| t)).parse(i)?;
    Ok((
        i,
        Line {
            def,
            op,
            attrs: attrs.unwrap_or_default(),
            operands: operands.unwrap_or_default(),
            ty,
        },
    ))
}
