//! The assembler: Tessera assembly text to a validated [`Program`].
//!
//! Syntax, one statement per line (`;` or `#` starts a comment):
//!
//! ```text
//! .arch default                 ; hardware preset (or pass an Arch)
//! .equ  TILE, 64                ; constant
//! .hbm  A, 0x0, 8192            ; data-layout symbol: name, address, size
//! .region attention             ; profiling region, in id order
//! .queue load                   ; the following instructions go to this queue
//!     addr.set r0, A            ; positional operands in field order...
//! top:                          ; a label: the next instruction's index
//!     dma.load dst=spad[r1+64], src=hbm[r0], rows=8, row_bytes=16, planes=1, transpose=none, signal=t0
//! ```
//!
//! Operands are positional in field order, then `name=value` in any order;
//! every instruction also takes `wait=` and `signal=` token sets. Numbers are
//! decimal or `0x` hex with optional `_` separators; integer operands accept
//! `+`, `-` and `*` expressions over numbers and symbols (`*` binds tighter). The assembler never panics:
//! every problem is an [`AsmError`] with file, line and column.

use std::collections::HashMap;
use std::fmt;

use nom::branch::alt;
use nom::bytes::complete::{tag, take_while, take_while1};
use nom::character::complete::{char, digit1, space0};
use nom::combinator::{opt, recognize};
use nom::{IResult, Parser};

use crate::arch::Arch;
use crate::field::{Field, ParseCx, Sign, Term, TokenSet, Value};
use crate::inst::{Instruction, Op, OperandError, OperandText, Queue};
use crate::program::{MemSpace, Program, Symbol};

/// An assembly error at a place in a source file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsmError {
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (characters).
    pub column: usize,
    pub message: String,
    /// The offending line, trimmed.
    pub text: String,
}

impl fmt::Display for AsmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )?;
        if !self.text.is_empty() {
            let mut t: String = self.text.chars().take(80).collect();
            if t.len() < self.text.len() {
                t.push_str("...");
            }
            write!(f, " (in `{t}`)")?;
        }
        Ok(())
    }
}

impl std::error::Error for AsmError {}

type Res<'a, T> = IResult<&'a str, T>;

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.'
}

fn ident(i: &str) -> Res<'_, &str> {
    recognize((take_while1(is_ident_start), take_while(is_ident_char))).parse(i)
}

fn integer(i: &str) -> Res<'_, i128> {
    let hex = |i| -> Res<'_, i128> {
        let (rest, digits) = (
            alt((tag("0x"), tag("0X"))),
            take_while1(|c: char| c.is_ascii_hexdigit() || c == '_'),
        )
            .map(|(_, d)| d)
            .parse(i)?;
        match i128::from_str_radix(&digits.replace('_', ""), 16) {
            Ok(v) => Ok((rest, v)),
            Err(_) => Err(nom::Err::Failure(nom::error::Error::new(
                i,
                nom::error::ErrorKind::TooLarge,
            ))),
        }
    };
    let dec = |i| -> Res<'_, i128> {
        let (rest, digits) =
            recognize((digit1, take_while(|c: char| c.is_ascii_digit() || c == '_'))).parse(i)?;
        match digits.replace('_', "").parse::<i128>() {
            Ok(v) => Ok((rest, v)),
            Err(_) => Err(nom::Err::Failure(nom::error::Error::new(
                i,
                nom::error::ErrorKind::TooLarge,
            ))),
        }
    };
    alt((hex, dec)).parse(i)
}

fn float(i: &str) -> Res<'_, Value> {
    let exponent = (
        alt((char('e'), char('E'))),
        opt(alt((char('+'), char('-')))),
        digit1,
    );
    let with_dot = recognize((digit1, char('.'), digit1, opt(exponent)));
    let with_exp = recognize((
        digit1,
        alt((char('e'), char('E'))),
        opt(alt((char('+'), char('-')))),
        digit1,
    ));
    let inf = |i| -> Res<'_, &str> {
        let (rest, t) = tag("inf").parse(i)?;
        if rest.starts_with(is_ident_char) {
            return Err(nom::Err::Error(nom::error::Error::new(
                i,
                nom::error::ErrorKind::Tag,
            )));
        }
        Ok((rest, t))
    };
    recognize((opt(char('-')), alt((with_dot, with_exp, inf))))
        .map(|t: &str| Value::Float(t.to_string()))
        .parse(i)
}

fn sign(i: &str) -> Res<'_, Sign> {
    alt((
        char('+').map(|_| Sign::Plus),
        char('-').map(|_| Sign::Minus),
    ))
    .parse(i)
}

fn atom(i: &str) -> Res<'_, Term> {
    alt((
        integer.map(Term::Int),
        ident.map(|s| Term::Name(s.to_string())),
    ))
    .parse(i)
}

/// `atom (* atom)*`
fn term(i: &str) -> Res<'_, Term> {
    let (mut i, first) = atom(i)?;
    let mut factors = vec![first];
    while let Ok((rest, (_, _, _, f))) = (space0, char('*'), space0, atom).parse(i) {
        factors.push(f);
        i = rest;
    }
    Ok((
        i,
        if factors.len() == 1 {
            factors.pop().expect("one factor")
        } else {
            Term::Product(factors)
        },
    ))
}

/// `[-] term ((+|-) term)*`
fn expr(i: &str) -> Res<'_, Value> {
    let (mut i, first_sign) = opt(sign).parse(i)?;
    let (rest, first) = term(i)?;
    i = rest;
    let mut terms = vec![(first_sign.unwrap_or(Sign::Plus), first)];
    while let Ok((rest, (_, s, _, t))) = (space0, sign, space0, term).parse(i) {
        terms.push((s, t));
        i = rest;
    }
    Ok((i, Value::Expr(terms)))
}

/// `(+|-) term ((+|-) term)*`, the offset inside brackets.
fn offset_tail(i: &str) -> Res<'_, Value> {
    let mut terms = Vec::new();
    let mut i = i;
    while let Ok((rest, (_, s, _, t))) = (space0, sign, space0, term).parse(i) {
        terms.push((s, t));
        i = rest;
    }
    if terms.is_empty() {
        terms.push((Sign::Plus, Term::Int(0)));
    }
    Ok((i, Value::Expr(terms)))
}

fn mem(i: &str) -> Res<'_, Value> {
    let (i, (space, _, _, _, reg, offset, _, _)) = (
        alt((tag("spad"), tag("acc"), tag("hbm"))),
        char('['),
        space0,
        space0,
        ident,
        offset_tail,
        space0,
        char(']'),
    )
        .parse(i)?;
    let (i, dtype) = opt((
        char(':'),
        take_while1(|c: char| c.is_ascii_alphanumeric() || c == '-'),
    )
        .map(|(_, d)| d))
    .parse(i)?;
    Ok((
        i,
        Value::Mem {
            space: space.to_string(),
            reg: reg.to_string(),
            offset: Box::new(offset),
            dtype: dtype.map(str::to_string),
        },
    ))
}

/// `name(operand)`: the operand is never itself a call, so parsing does not
/// recurse and nesting depth cannot exhaust the stack.
fn call(i: &str) -> Res<'_, Value> {
    let (i, (name, _, _, v, _, _)) = (
        ident,
        char('('),
        space0,
        alt((mem, float, expr)),
        space0,
        char(')'),
    )
        .parse(i)?;
    Ok((i, Value::Call(name.to_string(), Box::new(v))))
}

fn set(i: &str) -> Res<'_, Value> {
    let (mut i, first) = ident(i)?;
    let mut names = vec![first.to_string()];
    while let Ok((rest, (_, _, _, n))) = (space0, char('|'), space0, ident).parse(i) {
        names.push(n.to_string());
        i = rest;
    }
    if names.len() < 2 {
        return Err(nom::Err::Error(nom::error::Error::new(
            i,
            nom::error::ErrorKind::Char,
        )));
    }
    Ok((i, Value::Set(names)))
}

fn value(i: &str) -> Res<'_, Value> {
    alt((mem, call, set, float, expr)).parse(i)
}

/// One line's statement, without its label and comment.
#[derive(Debug)]
enum Stmt<'a> {
    Empty,
    Directive {
        name: &'a str,
        args: &'a str,
        column: usize,
    },
    Inst {
        mnemonic: &'a str,
        operands: Vec<OperandText>,
        end: usize,
    },
}

struct LineError {
    column: usize,
    message: String,
}

fn col_of(line: &str, rest: &str) -> usize {
    line[..line.len() - rest.len()].chars().count() + 1
}

fn strip_comment(line: &str) -> &str {
    match line.find([';', '#']) {
        Some(i) => &line[..i],
        None => line,
    }
}

/// A label with its column, if the line has one.
type Label<'a> = Option<(&'a str, usize)>;

fn parse_line(line: &str) -> Result<(Label<'_>, Stmt<'_>), LineError> {
    let code = strip_comment(line).trim_end();
    let (rest, _) = space0::<&str, nom::error::Error<&str>>
        .parse(code)
        .expect("space0 never fails");
    let mut rest = rest;
    let mut label = None;
    if let Ok((after, (name, _, _))) =
        (ident, space0, char::<&str, nom::error::Error<&str>>(':')).parse(rest)
    {
        label = Some((name, col_of(code, rest)));
        rest = space0::<&str, nom::error::Error<&str>>
            .parse(after)
            .expect("space0")
            .0;
    }
    if rest.is_empty() {
        return Ok((label, Stmt::Empty));
    }
    if let Some(d) = rest.strip_prefix('.') {
        let column = col_of(code, rest);
        let (args, name) = ident(d).map_err(|_| LineError {
            column: column + 1,
            message: "expected a directive name after `.`".into(),
        })?;
        return Ok((
            label,
            Stmt::Directive {
                name,
                args: args.trim(),
                column,
            },
        ));
    }
    let (mut i, mnemonic) = ident(rest).map_err(|_| LineError {
        column: col_of(code, rest),
        message: "expected a mnemonic, directive or label".into(),
    })?;
    if !i.is_empty() && !i.starts_with([' ', '\t']) {
        return Err(LineError {
            column: col_of(code, i),
            message: format!(
                "unexpected `{}` after the mnemonic",
                i.chars().next().unwrap_or(' ')
            ),
        });
    }
    let mut operands = Vec::new();
    loop {
        i = i.trim_start();
        if i.is_empty() {
            break;
        }
        let column = col_of(code, i);
        let key = (
            ident,
            space0,
            char::<&str, nom::error::Error<&str>>('='),
            space0,
        )
            .parse(i)
            .ok()
            .map(|(after, (k, _, _, _))| {
                i = after;
                k.to_string()
            });
        let (after, v) = value(i).map_err(|_| LineError {
            column: col_of(code, i),
            message:
                "expected an operand: a number, name, float, `space[rN+off]`, `tA|tB` or `f(...)`"
                    .into(),
        })?;
        operands.push(OperandText {
            key,
            value: v,
            column,
        });
        i = after.trim_start();
        if i.is_empty() {
            break;
        }
        match i.strip_prefix(',') {
            Some(after) => i = after,
            None => {
                return Err(LineError {
                    column: col_of(code, i),
                    message: format!(
                        "expected `,` or the end of the line, found `{}`",
                        i.chars().next().unwrap_or(' ')
                    ),
                })
            }
        }
        if i.trim().is_empty() {
            return Err(LineError {
                column: col_of(code, i),
                message: "expected an operand after `,`".into(),
            });
        }
    }
    Ok((
        label,
        Stmt::Inst {
            mnemonic,
            operands,
            end: code.chars().count() + 1,
        },
    ))
}

/// Parses `a, b, c` directive arguments as values.
fn directive_args(args: &str) -> Option<Vec<Value>> {
    let mut out = Vec::new();
    let mut i = args.trim();
    if i.is_empty() {
        return Some(out);
    }
    loop {
        let (rest, v) = value(i).ok()?;
        out.push(v);
        i = rest.trim_start();
        if i.is_empty() {
            return Some(out);
        }
        i = i.strip_prefix(',')?.trim_start();
    }
}

/// Where each instruction came from, to report later errors at their line.
#[derive(Debug, Default, Clone)]
struct LineTable {
    queues: [Vec<usize>; 4],
    symbols: Vec<usize>,
}

/// Assembles `source`. The hardware description is `hw` when given (a
/// `.arch` directive must then name it), else the preset named by `.arch`,
/// else the `default` preset.
///
/// # Errors
/// The first problem, with `file` (used only in the message), line and column.
///
/// ```
/// let src = ".arch fpga-8x8\n.queue load\n    nop signal=t0\n    halt\n.queue store\n    nop wait=t0\n    halt\n";
/// let p = tessera_isa::asm::assemble(src, "demo.s", None)?;
/// assert_eq!(p.len(), 4);
/// # Ok::<(), tessera_isa::asm::AsmError>(())
/// ```
pub fn assemble(source: &str, file: &str, hw: Option<&Arch>) -> Result<Program, AsmError> {
    let lines: Vec<&str> = source.lines().collect();
    let err = |line: usize, column: usize, message: String| AsmError {
        file: file.to_string(),
        line: line + 1,
        column,
        message,
        text: lines
            .get(line)
            .map_or(String::new(), |l| strip_comment(l).trim().to_string()),
    };

    // Pass 1: syntax, directives, labels.
    let mut parsed = Vec::with_capacity(lines.len());
    let mut cx = ParseCx::default();
    let mut labels: [HashMap<String, usize>; 4] = Default::default();
    let mut counts = [0usize; 4];
    let mut queue: Option<Queue> = None;
    let mut arch_name: Option<(String, usize)> = None;
    let mut symbols = Vec::new();
    let mut table = LineTable::default();
    for (n, line) in lines.iter().enumerate() {
        let (label, stmt) = parse_line(line).map_err(|e| err(n, e.column, e.message))?;
        if let Some((name, column)) = label {
            let q =
                queue.ok_or_else(|| err(n, column, "label outside a `.queue` section".into()))?;
            if labels[q.index()]
                .insert(name.to_string(), counts[q.index()])
                .is_some()
            {
                return Err(err(
                    n,
                    column,
                    format!("label `{name}` is defined twice in queue {q}"),
                ));
            }
        }
        match &stmt {
            Stmt::Empty => {}
            Stmt::Inst { .. } => {
                let q = queue
                    .ok_or_else(|| err(n, 1, "instruction outside a `.queue` section".into()))?;
                counts[q.index()] += 1;
                table.queues[q.index()].push(n);
            }
            Stmt::Directive { name, args, column } => {
                let column = *column;
                let bad = |what: &str| err(n, column, format!(".{name} expects {what}"));
                match *name {
                    "arch" => {
                        let ok = !args.is_empty()
                            && args
                                .chars()
                                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
                        if !ok {
                            return Err(bad("a hardware preset name"));
                        }
                        if arch_name.is_some() {
                            return Err(err(n, column, "`.arch` given twice".into()));
                        }
                        arch_name = Some((args.to_string(), n));
                    }
                    "queue" => {
                        queue = Some(
                            Queue::from_name(args)
                                .ok_or_else(|| bad("one of load, matrix, vector, store"))?,
                        );
                    }
                    "equ" => {
                        let v = directive_args(args).ok_or_else(|| bad("`NAME, VALUE`"))?;
                        let [name_v, val] = v.as_slice() else {
                            return Err(bad("`NAME, VALUE`"));
                        };
                        let sym = name_v.as_name().ok_or_else(|| bad("`NAME, VALUE`"))?;
                        let value = cx.eval(val).map_err(|m| err(n, column, m))?;
                        if cx.symbols.insert(sym.to_string(), value).is_some() {
                            return Err(err(n, column, format!("symbol `{sym}` is defined twice")));
                        }
                    }
                    "hbm" | "spad" | "acc" => {
                        let v = directive_args(args).ok_or_else(|| bad("`NAME, ADDRESS, SIZE`"))?;
                        let [name_v, addr, size] = v.as_slice() else {
                            return Err(bad("`NAME, ADDRESS, SIZE`"));
                        };
                        let sym = name_v
                            .as_name()
                            .ok_or_else(|| bad("`NAME, ADDRESS, SIZE`"))?;
                        let to_u64 = |v: &Value, what: &str| -> Result<u64, AsmError> {
                            let x = cx.eval(v).map_err(|m| err(n, column, m))?;
                            u64::try_from(x).map_err(|_| {
                                err(n, column, format!("{what} {x} is negative or too large"))
                            })
                        };
                        let addr = to_u64(addr, "address")?;
                        let size = to_u64(size, "size")?;
                        if cx
                            .symbols
                            .insert(sym.to_string(), i128::from(addr))
                            .is_some()
                        {
                            return Err(err(n, column, format!("symbol `{sym}` is defined twice")));
                        }
                        let space = match *name {
                            "hbm" => MemSpace::Hbm,
                            "spad" => MemSpace::Spad,
                            _ => MemSpace::Acc,
                        };
                        symbols.push(Symbol {
                            name: sym.to_string(),
                            space,
                            addr,
                            size,
                        });
                        table.symbols.push(n);
                    }
                    "region" => {
                        let ok = ident(args).is_ok_and(|(rest, _)| rest.is_empty());
                        if !ok {
                            return Err(bad("a region name"));
                        }
                        if cx.regions.iter().any(|r| r == args) {
                            return Err(err(
                                n,
                                column,
                                format!("region `{args}` is declared twice"),
                            ));
                        }
                        cx.regions.push(args.to_string());
                    }
                    other => return Err(err(n, column, format!("unknown directive `.{other}`"))),
                }
            }
        }
        parsed.push((stmt, queue));
    }

    let arch = match (hw, &arch_name) {
        (Some(a), Some((name, n))) if a.name() != name => {
            return Err(err(
                *n,
                1,
                format!(
                    "`.arch {name}` does not match the hardware description `{}` given",
                    a.name()
                ),
            ))
        }
        (Some(a), _) => a.clone(),
        (None, Some((name, n))) => Arch::preset(name).map_err(|e| {
            err(
                *n,
                1,
                format!("{e}; pass --hw FILE.toml for a custom design"),
            )
        })?,
        (None, None) => Arch::preset("default").expect("the default preset is valid"),
    };

    // Pass 2: operands.
    let mut program = Program::new(arch);
    program.symbols = symbols;
    for (n, (stmt, q)) in parsed.into_iter().enumerate() {
        let Stmt::Inst {
            mnemonic,
            operands,
            end,
        } = stmt
        else {
            continue;
        };
        let q = q.expect("instructions have a queue (checked in pass 1)");
        cx.labels = std::mem::take(&mut labels[q.index()]);
        cx.here = program.queues[q.index()].len();
        let inst =
            build(mnemonic, &operands, end, &mut cx).map_err(|e| err(n, e.column, e.message));
        labels[q.index()] = std::mem::take(&mut cx.labels);
        program.queues[q.index()].push(inst?);
    }
    program.regions = cx.regions;

    if let Err(errors) = program.validate() {
        let e = &errors[0];
        let line = match e.site {
            Some(site) => table.queues[site.queue.index()][site.index],
            None => {
                let i = program
                    .symbols
                    .iter()
                    .position(|s| e.rule.contains(&format!("`{}`", s.name)))
                    .unwrap_or(0);
                table.symbols.get(i).copied().unwrap_or(0)
            }
        };
        let column = lines
            .get(line)
            .map_or(1, |l| l.len() - l.trim_start().len() + 1);
        return Err(err(line, column, e.to_string()));
    }
    Ok(program)
}

fn build(
    mnemonic: &str,
    operands: &[OperandText],
    end: usize,
    cx: &mut ParseCx,
) -> Result<Instruction, OperandError> {
    let mut wait = TokenSet::EMPTY;
    let mut signal = TokenSet::EMPTY;
    let mut rest = Vec::with_capacity(operands.len());
    for o in operands {
        match o.key.as_deref() {
            Some(k @ ("wait" | "signal")) => {
                let set = TokenSet::parse(&o.value, cx).map_err(|m| OperandError {
                    column: o.column,
                    message: format!("operand `{k}`: {m}"),
                })?;
                let slot = if k == "wait" { &mut wait } else { &mut signal };
                if !slot.is_empty() {
                    return Err(OperandError {
                        column: o.column,
                        message: format!("operand `{k}` given twice"),
                    });
                }
                *slot = set;
            }
            _ => rest.push(o.clone()),
        }
    }
    let op = Op::parse(mnemonic, &rest, end, cx)?.ok_or_else(|| OperandError {
        column: 1,
        message: format!("unknown mnemonic `{mnemonic}`"),
    })?;
    Ok(Instruction { op, wait, signal })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err_of(src: &str) -> String {
        assemble(src, "t.s", None).unwrap_err().to_string()
    }

    #[test]
    fn errors_point_at_line_and_column() {
        assert_eq!(
            err_of(".queue load\n    dma.lod x\n"),
            "t.s:2:1: unknown mnemonic `dma.lod` (in `dma.lod x`)"
        );
        assert_eq!(
            err_of(".queue load\n  addr.set r16, 0\n  halt\n"),
            "t.s:2:12: operand `reg`: expected an address register r0 to r15 (in `addr.set r16, 0`)"
        );
        assert_eq!(
            err_of(".queue load\n  addr.set r1 0\n"),
            "t.s:2:15: expected `,` or the end of the line, found `0` (in `addr.set r1 0`)"
        );
        assert_eq!(
            err_of("  nop\n"),
            "t.s:1:1: instruction outside a `.queue` section (in `nop`)"
        );
        assert!(err_of(".queue vector\n  v.fset f0\n  halt\n").contains("missing operand `value`"));
        assert!(err_of(".queue load\n  mm.stride a=1, b=2, c=3\n  halt\n")
            .contains("runs only on the matrix queue"));
        assert!(err_of(".queue load\n  nop\n").contains("last instruction of a queue must be halt"));
        assert!(err_of(".arch nope\n").contains("unknown hardware preset `nope`"));
        assert!(
            err_of(".queue load\n  loop 3, nowhere\n  halt\n").contains("unknown label `nowhere`")
        );
    }

    #[test]
    fn expressions_symbols_and_labels_resolve() {
        let src = "\
.arch fpga-8x8
.equ T, 16
.hbm A, 0x100, 64
.queue load
    addr.set r0, A + T - 1 + 2 * T * 3  ; comment
    loop 4, done
    nop
done:
    halt
";
        let p = assemble(src, "t.s", None).unwrap();
        let q = p.queue(Queue::Load);
        assert_eq!(q.len(), 4);
        let Op::AddrSet { base, .. } = q[0].op else {
            panic!("{:?}", q[0])
        };
        assert_eq!(base.get(), 0x100 + 15 + 96);
        let Op::Loop { count, end } = q[1].op else {
            panic!()
        };
        assert_eq!((count.get(), end.body_len()), (4, 1));
        assert_eq!(p.symbols[0].name, "A");
    }
}
