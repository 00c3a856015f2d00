//! Operand fields: each type has a fixed width in the instruction word, an
//! encoding, and a text form. A value of a field type is always encodable, so
//! encoding an instruction cannot fail.
//!
//! The instruction table (`inst.rs`) lists fields by type; the encoder,
//! decoder, assembler, disassembler and `docs/isa.md` all derive from the
//! [`Field`] impls here.

use std::collections::HashMap;
use std::fmt::{self, Write as _};

use crate::dtype::DType;

/// An operand value as written in assembly, before it is checked against the
/// field that receives it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `a + 4 - B`: integer literals and symbol names joined by `+` and `-`.
    Expr(Vec<(Sign, Term)>),
    /// A floating-point literal, kept as text so it is rounded once, to fp32.
    Float(String),
    /// `spad[r1+16]:bf16`, `hbm[r0]`.
    Mem {
        space: String,
        reg: String,
        offset: Box<Value>,
        dtype: Option<String>,
    },
    /// `row(...)`, `col(...)`, `nan(0x7fc00001)`.
    Call(String, Box<Value>),
    /// `t0|t3`.
    Set(Vec<String>),
}

/// Sign of one term of an [`Value::Expr`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sign {
    Plus,
    Minus,
}

/// One term of an [`Value::Expr`].
#[derive(Debug, Clone, PartialEq)]
pub enum Term {
    Int(i128),
    Name(String),
    /// `a * b * ...`: binds tighter than `+` and `-`.
    Product(Vec<Term>),
}

impl Value {
    /// A single bare name or unsigned decimal literal, as text: the forms an
    /// enumerated operand takes.
    pub fn as_word(&self) -> Option<String> {
        match self {
            Value::Expr(terms) => match terms.as_slice() {
                [(Sign::Plus, Term::Name(n))] => Some(n.clone()),
                [(Sign::Plus, Term::Int(i))] => Some(i.to_string()),
                _ => None,
            },
            _ => None,
        }
    }

    /// The identifier, if this value is a single bare name.
    pub fn as_name(&self) -> Option<&str> {
        match self {
            Value::Expr(terms) => match terms.as_slice() {
                [(Sign::Plus, Term::Name(n))] => Some(n),
                _ => None,
            },
            _ => None,
        }
    }
}

/// What the assembler knows while converting operands: symbol values, labels
/// of the current queue, the instruction's own index, and profiling regions.
#[derive(Debug, Default)]
pub struct ParseCx {
    /// `.equ` constants and data-layout symbol addresses.
    pub symbols: HashMap<String, i128>,
    /// Label name to instruction index in the current queue.
    pub labels: HashMap<String, usize>,
    /// Index of the instruction being assembled within its queue.
    pub here: usize,
    /// Profiling region names; new names are appended.
    pub regions: Vec<String>,
}

impl ParseCx {
    /// Evaluates an integer expression.
    ///
    /// # Errors
    /// A message naming the unknown symbol or the non-integer value.
    pub fn eval(&self, v: &Value) -> Result<i128, String> {
        let Value::Expr(terms) = v else {
            return Err("expected an integer expression".into());
        };
        let mut acc: i128 = 0;
        for (sign, term) in terms {
            let t = self.term(term)?;
            acc = match sign {
                Sign::Plus => acc.checked_add(t),
                Sign::Minus => acc.checked_sub(t),
            }
            .ok_or("integer expression overflows")?;
        }
        Ok(acc)
    }

    fn term(&self, t: &Term) -> Result<i128, String> {
        match t {
            Term::Int(i) => Ok(*i),
            Term::Name(n) => self
                .symbols
                .get(n)
                .copied()
                .ok_or_else(|| format!("unknown symbol `{n}`")),
            Term::Product(factors) => factors.iter().try_fold(1i128, |acc, f| {
                acc.checked_mul(self.term(f)?)
                    .ok_or_else(|| "integer expression overflows".to_string())
            }),
        }
    }
}

/// What the disassembler knows while printing operands.
#[derive(Debug)]
pub struct WriteCx<'a> {
    /// Index of the instruction being printed within its queue.
    pub here: usize,
    /// Profiling region names.
    pub regions: &'a [String],
}

/// Label the disassembler gives instruction `index` of a queue.
pub fn label_name(index: usize) -> String {
    format!("L{index}")
}

/// One operand field: its width, its syntax and its conversions.
pub trait Field: Sized {
    /// Width in the instruction word.
    const BITS: u32;
    /// The text form, as `docs/isa.md` shows it.
    const SYNTAX: &'static str;
    /// The encoding; always below `2^BITS`.
    fn to_bits(&self) -> u128;
    /// Inverse of `to_bits`; `None` for a bit pattern that is no value.
    fn from_bits(bits: u128) -> Option<Self>;
    /// Appends the text form.
    fn write(&self, out: &mut String, cx: &WriteCx<'_>);
    /// Converts an assembly operand.
    ///
    /// # Errors
    /// A message saying what was expected.
    fn parse(v: &Value, cx: &mut ParseCx) -> Result<Self, String>;
}

const fn mask(bits: u32) -> u128 {
    if bits >= 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    }
}

/// An unsigned immediate of `B` bits.
///
/// The immediates are packed (alignment 1) so that an [`crate::inst::Instruction`]
/// takes 52 bytes instead of 112: a compiled training step holds millions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(C, packed)]
pub struct UInt<const B: u32>(u64);

impl<const B: u32> UInt<B> {
    /// Largest value.
    pub const MAX: u64 = mask(B) as u64;

    /// `None` when `v` does not fit in `B` bits.
    pub const fn new(v: u64) -> Option<Self> {
        if v <= Self::MAX {
            Some(UInt(v))
        } else {
            None
        }
    }

    /// The value.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl<const B: u32> Field for UInt<B> {
    const BITS: u32 = B;
    const SYNTAX: &'static str = "unsigned integer";
    fn to_bits(&self) -> u128 {
        u128::from(self.0)
    }
    fn from_bits(bits: u128) -> Option<Self> {
        Self::new(u64::try_from(bits).ok()?)
    }
    fn write(&self, out: &mut String, _: &WriteCx<'_>) {
        let _ = write!(out, "{}", { self.0 });
    }
    fn parse(v: &Value, cx: &mut ParseCx) -> Result<Self, String> {
        let i = cx.eval(v)?;
        u64::try_from(i)
            .ok()
            .and_then(Self::new)
            .ok_or_else(|| format!("{i} does not fit in {B} unsigned bits (0 to {})", Self::MAX))
    }
}

/// A count from 1 to `2^B - 1` (zero is no valid encoding).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(C, packed)]
pub struct Count<const B: u32>(u64);

impl<const B: u32> Count<B> {
    /// Largest value.
    pub const MAX: u64 = mask(B) as u64;

    /// `None` when `v` is zero or does not fit in `B` bits.
    pub const fn new(v: u64) -> Option<Self> {
        if v >= 1 && v <= Self::MAX {
            Some(Count(v))
        } else {
            None
        }
    }

    /// The value, at least 1.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl<const B: u32> Field for Count<B> {
    const BITS: u32 = B;
    const SYNTAX: &'static str = "count, at least 1";
    fn to_bits(&self) -> u128 {
        u128::from(self.0)
    }
    fn from_bits(bits: u128) -> Option<Self> {
        Self::new(u64::try_from(bits).ok()?)
    }
    fn write(&self, out: &mut String, _: &WriteCx<'_>) {
        let _ = write!(out, "{}", { self.0 });
    }
    fn parse(v: &Value, cx: &mut ParseCx) -> Result<Self, String> {
        let i = cx.eval(v)?;
        u64::try_from(i)
            .ok()
            .and_then(Self::new)
            .ok_or_else(|| format!("{i} is not a count from 1 to {}", Self::MAX))
    }
}

/// A two's-complement signed immediate of `B` bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(C, packed)]
pub struct SInt<const B: u32>(i64);

impl<const B: u32> SInt<B> {
    /// Smallest value.
    pub const MIN: i64 = -(1i64 << (B - 1));
    /// Largest value.
    pub const MAX: i64 = (1i64 << (B - 1)) - 1;

    /// `None` when `v` does not fit in `B` signed bits.
    pub const fn new(v: i64) -> Option<Self> {
        if v >= Self::MIN && v <= Self::MAX {
            Some(SInt(v))
        } else {
            None
        }
    }

    /// The value.
    pub const fn get(self) -> i64 {
        self.0
    }
}

impl<const B: u32> Field for SInt<B> {
    const BITS: u32 = B;
    const SYNTAX: &'static str = "signed integer";
    fn to_bits(&self) -> u128 {
        (self.0 as i128 as u128) & mask(B)
    }
    fn from_bits(bits: u128) -> Option<Self> {
        if bits > mask(B) {
            return None;
        }
        let shift = 128 - B;
        Some(SInt(((bits << shift) as i128 >> shift) as i64))
    }
    fn write(&self, out: &mut String, _: &WriteCx<'_>) {
        let _ = write!(out, "{}", { self.0 });
    }
    fn parse(v: &Value, cx: &mut ParseCx) -> Result<Self, String> {
        let i = cx.eval(v)?;
        i64::try_from(i).ok().and_then(Self::new).ok_or_else(|| {
            format!(
                "{i} does not fit in {B} signed bits ({} to {})",
                Self::MIN,
                Self::MAX
            )
        })
    }
}

/// A flag written `true` or `false`.
impl Field for bool {
    const BITS: u32 = 1;
    const SYNTAX: &'static str = "`true` or `false`";
    fn to_bits(&self) -> u128 {
        u128::from(*self)
    }
    fn from_bits(bits: u128) -> Option<Self> {
        match bits {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }
    fn write(&self, out: &mut String, _: &WriteCx<'_>) {
        out.push_str(if *self { "true" } else { "false" });
    }
    fn parse(v: &Value, _: &mut ParseCx) -> Result<Self, String> {
        match v.as_name() {
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            _ => Err("expected `true` or `false`".into()),
        }
    }
}

/// Declares a field enum with a fixed encoding and one name per value.
macro_rules! named_field {
    ($(#[$meta:meta])* $name:ident : $bits:literal { $($(#[$vmeta:meta])* $variant:ident = $code:literal => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            /// Every value, in encoding order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The assembly name.
            pub const fn name(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl Field for $name {
            const BITS: u32 = $bits;
            const SYNTAX: &'static str = concat!($("`", $text, "` "),+);
            fn to_bits(&self) -> u128 {
                match self { $($name::$variant => $code),+ }
            }
            fn from_bits(bits: u128) -> Option<Self> {
                match bits { $($code => Some($name::$variant),)+ _ => None }
            }
            fn write(&self, out: &mut String, _: &WriteCx<'_>) {
                out.push_str(self.name());
            }
            fn parse(v: &Value, _: &mut ParseCx) -> Result<Self, String> {
                match v.as_word().as_deref() {
                    $(Some($text) => Ok($name::$variant),)+
                    _ => Err(format!("expected one of {}", Self::SYNTAX.trim_end())),
                }
            }
        }
    };
}

named_field!(
    /// Which on-chip memory an address names.
    Space: 1 {
        /// The scratchpad: operands and vector data.
        Spad = 0 => "spad",
        /// The accumulator: wide (32-bit) matrix results.
        Acc = 1 => "acc",
    }
);

named_field!(
    /// Whether a result overwrites or adds to what the destination holds.
    WriteMode: 1 {
        Overwrite = 0 => "overwrite",
        Accumulate = 1 => "accumulate",
    }
);

named_field!(
    /// Element size of a transposing DMA, or no transpose.
    Transpose: 2 {
        None = 0 => "none",
        /// Transpose 1-byte elements.
        B1 = 1 => "1",
        /// Transpose 2-byte elements.
        B2 = 2 => "2",
        /// Transpose 4-byte elements.
        B4 = 3 => "4",
    }
);

impl Transpose {
    /// Element size in bytes, `None` for no transpose.
    pub fn element_bytes(self) -> Option<u64> {
        match self {
            Transpose::None => None,
            Transpose::B1 => Some(1),
            Transpose::B2 => Some(2),
            Transpose::B4 => Some(4),
        }
    }
}

named_field!(
    /// Elementwise binary operations of the vector unit, computed in fp32.
    VecBinOp: 4 {
        Add = 0 => "add",
        Sub = 1 => "sub",
        Mul = 2 => "mul",
        Div = 3 => "div",
        Max = 4 => "max",
        Min = 5 => "min",
        /// 1.0 where a < b, else 0.0.
        CmpLt = 6 => "cmp.lt",
        /// 1.0 where a <= b, else 0.0.
        CmpLe = 7 => "cmp.le",
        /// 1.0 where a == b, else 0.0.
        CmpEq = 8 => "cmp.eq",
        /// 1.0 where a != b, else 0.0.
        CmpNe = 9 => "cmp.ne",
        /// a raised to the power b.
        Pow = 10 => "pow",
    }
);

named_field!(
    /// Elementwise unary operations of the vector unit, computed in fp32.
    VecUnOp: 5 {
        /// Copy (with a cast when the types differ).
        Copy = 0 => "copy",
        Neg = 1 => "neg",
        Abs = 2 => "abs",
        Exp = 3 => "exp",
        Log = 4 => "log",
        Sqrt = 5 => "sqrt",
        Rsqrt = 6 => "rsqrt",
        Recip = 7 => "recip",
        Square = 8 => "square",
        Tanh = 9 => "tanh",
        Sigmoid = 10 => "sigmoid",
        Relu = 11 => "relu",
        /// GELU, tanh approximation (GPT-2's `gelu_new`).
        GeluTanh = 12 => "gelu.tanh",
        /// GELU with the exact erf (BERT's `gelu`).
        GeluErf = 13 => "gelu.erf",
        /// x * sigmoid(x).
        Silu = 14 => "silu",
        /// Derivative of `gelu.tanh` at x.
        DGeluTanh = 15 => "dgelu.tanh",
        /// Derivative of `gelu.erf` at x.
        DGeluErf = 16 => "dgelu.erf",
        /// Derivative of `silu` at x.
        DSilu = 17 => "dsilu",
        /// 1.0 where x is infinite or NaN, else 0.0 (loss-scaling overflow check).
        NonFinite = 18 => "nonfinite",
        /// -1.0, 0.0 or 1.0 (Lion's update).
        Sign = 19 => "sign",
    }
);

named_field!(
    /// Reductions of the vector unit.
    ReduceOp: 2 {
        Sum = 0 => "sum",
        Max = 1 => "max",
        Min = 2 => "min",
        /// Sum of squares (norms).
        SumSq = 3 => "sumsq",
    }
);

named_field!(
    /// Direction of a reduction.
    Axis: 1 {
        /// Reduce each row to one element: the result is a column.
        Rows = 0 => "rows",
        /// Reduce each column to one element: the result is a row.
        Cols = 1 => "cols",
    }
);

named_field!(
    /// What an index selects in gather and scatter-add.
    IndexMode: 1 {
        /// Index i selects row idx[i] of the table.
        Rows = 0 => "rows",
        /// Index i selects element idx[i] of row i.
        Elems = 1 => "elems",
    }
);

impl Field for DType {
    const BITS: u32 = 3;
    const SYNTAX: &'static str = "`fp32` `bf16` `fp16` `fp8-e4m3` `fp8-e5m2` `int8` `int32`";
    fn to_bits(&self) -> u128 {
        u128::from(self.code())
    }
    fn from_bits(bits: u128) -> Option<Self> {
        DType::from_code(u8::try_from(bits).ok()?)
    }
    fn write(&self, out: &mut String, _: &WriteCx<'_>) {
        out.push_str(self.name());
    }
    fn parse(v: &Value, _: &mut ParseCx) -> Result<Self, String> {
        v.as_name()
            .ok_or_else(|| "expected an element type".to_string())?
            .parse()
    }
}

fn parse_indexed(v: &Value, prefix: char, limit: u8, what: &str) -> Result<u8, String> {
    let err = || format!("expected {what} {prefix}0 to {prefix}{}", limit - 1);
    let name = v.as_name().ok_or_else(err)?;
    let rest = name.strip_prefix(prefix).ok_or_else(err)?;
    if rest.is_empty() || (rest.len() > 1 && rest.starts_with('0')) {
        return Err(err());
    }
    let i: u8 = rest.parse().map_err(|_| err())?;
    if i >= limit {
        return Err(err());
    }
    Ok(i)
}

/// One of the 16 address registers `r0`..`r15` of a queue's address generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reg(u8);

impl Reg {
    /// Number of address registers per queue.
    pub const COUNT: u8 = 16;

    /// `None` for `i >= 16`.
    pub const fn new(i: u8) -> Option<Reg> {
        if i < Self::COUNT {
            Some(Reg(i))
        } else {
            None
        }
    }

    /// The register number.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

impl Field for Reg {
    const BITS: u32 = 4;
    const SYNTAX: &'static str = "`r0`..`r15`";
    fn to_bits(&self) -> u128 {
        u128::from(self.0)
    }
    fn from_bits(bits: u128) -> Option<Self> {
        Reg::new(u8::try_from(bits).ok()?)
    }
    fn write(&self, out: &mut String, _: &WriteCx<'_>) {
        let _ = write!(out, "r{}", self.0);
    }
    fn parse(v: &Value, _: &mut ParseCx) -> Result<Self, String> {
        parse_indexed(v, 'r', Self::COUNT, "an address register").map(Reg)
    }
}

/// One of the 8 fp32 scalar registers `f0`..`f7` of the vector unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FReg(u8);

impl FReg {
    /// Number of scalar registers.
    pub const COUNT: u8 = 8;

    /// `None` for `i >= 8`.
    pub const fn new(i: u8) -> Option<FReg> {
        if i < Self::COUNT {
            Some(FReg(i))
        } else {
            None
        }
    }

    /// The register number.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

impl Field for FReg {
    const BITS: u32 = 3;
    const SYNTAX: &'static str = "`f0`..`f7`";
    fn to_bits(&self) -> u128 {
        u128::from(self.0)
    }
    fn from_bits(bits: u128) -> Option<Self> {
        FReg::new(u8::try_from(bits).ok()?)
    }
    fn write(&self, out: &mut String, _: &WriteCx<'_>) {
        let _ = write!(out, "f{}", self.0);
    }
    fn parse(v: &Value, _: &mut ParseCx) -> Result<Self, String> {
        parse_indexed(v, 'f', Self::COUNT, "a scalar register").map(FReg)
    }
}

/// Loop nesting level `0` (outermost) to `3` that an address stride applies to.
pub type Level = UInt<2>;

/// Maximum loop nesting depth per queue.
pub const MAX_LOOP_DEPTH: usize = 4;

/// Extracts `(reg, offset)` from `SPACE[rN + expr]`.
fn parse_mem<const B: u32>(
    v: &Value,
    cx: &mut ParseCx,
    spaces: &[&str],
) -> Result<(String, Reg, SInt<B>, Option<String>), String> {
    let Value::Mem {
        space,
        reg,
        offset,
        dtype,
    } = v
    else {
        return Err(format!(
            "expected a memory operand `{}[rN+offset]`",
            spaces.join("|")
        ));
    };
    if !spaces.contains(&space.as_str()) {
        return Err(format!(
            "expected a {} address, got `{space}[...]`",
            spaces.join(" or ")
        ));
    }
    let r = Reg::parse(
        &Value::Expr(vec![(Sign::Plus, Term::Name(reg.clone()))]),
        cx,
    )?;
    let off = SInt::<B>::parse(offset, cx).map_err(|e| format!("address offset: {e}"))?;
    Ok((space.clone(), r, off, dtype.clone()))
}

fn write_mem(out: &mut String, space: &str, reg: Reg, offset: i64) {
    let _ = match offset {
        0 => write!(out, "{space}[r{}]", reg.0),
        o if o < 0 => write!(out, "{space}[r{}-{}]", reg.0, o.unsigned_abs()),
        o => write!(out, "{space}[r{}+{o}]", reg.0),
    };
}

/// An on-chip byte address: a space, an address register and a signed offset.
/// The effective address is the register's generated address plus the offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LocalAddr {
    pub space: Space,
    pub reg: Reg,
    pub offset: SInt<12>,
}

impl Field for LocalAddr {
    const BITS: u32 = 17;
    const SYNTAX: &'static str = "`spad[rN+off]` or `acc[rN+off]`, off 12-bit signed";
    fn to_bits(&self) -> u128 {
        self.space.to_bits() | self.reg.to_bits() << 1 | self.offset.to_bits() << 5
    }
    fn from_bits(bits: u128) -> Option<Self> {
        Some(LocalAddr {
            space: Space::from_bits(bits & 1)?,
            reg: Reg::from_bits(bits >> 1 & 0xf)?,
            offset: SInt::from_bits(bits >> 5)?,
        })
    }
    fn write(&self, out: &mut String, _: &WriteCx<'_>) {
        write_mem(out, self.space.name(), self.reg, self.offset.get());
    }
    fn parse(v: &Value, cx: &mut ParseCx) -> Result<Self, String> {
        let (space, reg, offset, dtype) = parse_mem(v, cx, &["spad", "acc"])?;
        if dtype.is_some() {
            return Err("this operand takes no element type".into());
        }
        let space = if space == "spad" {
            Space::Spad
        } else {
            Space::Acc
        };
        Ok(LocalAddr { space, reg, offset })
    }
}

/// An on-chip tile operand: an address and the element type stored there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tile {
    pub addr: LocalAddr,
    pub dtype: DType,
}

impl Field for Tile {
    const BITS: u32 = 20;
    const SYNTAX: &'static str = "`spad[rN+off]:TYPE` or `acc[rN+off]:TYPE`";
    fn to_bits(&self) -> u128 {
        self.addr.to_bits() | self.dtype.to_bits() << LocalAddr::BITS
    }
    fn from_bits(bits: u128) -> Option<Self> {
        Some(Tile {
            addr: LocalAddr::from_bits(bits & mask(LocalAddr::BITS))?,
            dtype: DType::from_bits(bits >> LocalAddr::BITS)?,
        })
    }
    fn write(&self, out: &mut String, cx: &WriteCx<'_>) {
        self.addr.write(out, cx);
        out.push(':');
        out.push_str(self.dtype.name());
    }
    fn parse(v: &Value, cx: &mut ParseCx) -> Result<Self, String> {
        let (space, reg, offset, dtype) = parse_mem(v, cx, &["spad", "acc"])?;
        let dtype: DType = dtype
            .ok_or("this operand needs an element type, e.g. `spad[r1]:bf16`")?
            .parse()?;
        let space = if space == "spad" {
            Space::Spad
        } else {
            Space::Acc
        };
        Ok(Tile {
            addr: LocalAddr { space, reg, offset },
            dtype,
        })
    }
}

/// An HBM byte address: an address register and a signed offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HbmAddr {
    pub reg: Reg,
    pub offset: SInt<20>,
}

impl Field for HbmAddr {
    const BITS: u32 = 24;
    const SYNTAX: &'static str = "`hbm[rN+off]`, off 20-bit signed";
    fn to_bits(&self) -> u128 {
        self.reg.to_bits() | self.offset.to_bits() << 4
    }
    fn from_bits(bits: u128) -> Option<Self> {
        Some(HbmAddr {
            reg: Reg::from_bits(bits & 0xf)?,
            offset: SInt::from_bits(bits >> 4)?,
        })
    }
    fn write(&self, out: &mut String, _: &WriteCx<'_>) {
        write_mem(out, "hbm", self.reg, self.offset.get());
    }
    fn parse(v: &Value, cx: &mut ParseCx) -> Result<Self, String> {
        let (_, reg, offset, dtype) = parse_mem(v, cx, &["hbm"])?;
        if dtype.is_some() {
            return Err("this operand takes no element type".into());
        }
        Ok(HbmAddr { reg, offset })
    }
}

/// The second source of a vector operation: a tile, a row broadcast down
/// every row, a column broadcast across every column, or a scalar register.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VecSrc {
    /// Element (i, j) of a tile shaped like the destination.
    Tile(Tile),
    /// Element (0, j): one row, the same for every row i.
    Row(Tile),
    /// Element (i, 0): one value per row.
    Col(Tile),
    /// One scalar for every element.
    Scalar(FReg),
}

impl Field for VecSrc {
    const BITS: u32 = 22;
    const SYNTAX: &'static str = "a tile, `row(TILE)`, `col(TILE)` or `fN`";
    fn to_bits(&self) -> u128 {
        match self {
            VecSrc::Tile(t) => t.to_bits() << 2,
            VecSrc::Row(t) => 1 | t.to_bits() << 2,
            VecSrc::Col(t) => 2 | t.to_bits() << 2,
            VecSrc::Scalar(f) => 3 | f.to_bits() << 2,
        }
    }
    fn from_bits(bits: u128) -> Option<Self> {
        let payload = bits >> 2;
        match bits & 3 {
            0 => Some(VecSrc::Tile(Tile::from_bits(payload)?)),
            1 => Some(VecSrc::Row(Tile::from_bits(payload)?)),
            2 => Some(VecSrc::Col(Tile::from_bits(payload)?)),
            _ => Some(VecSrc::Scalar(FReg::from_bits(payload)?)),
        }
    }
    fn write(&self, out: &mut String, cx: &WriteCx<'_>) {
        match self {
            VecSrc::Tile(t) => t.write(out, cx),
            VecSrc::Row(t) => {
                out.push_str("row(");
                t.write(out, cx);
                out.push(')');
            }
            VecSrc::Col(t) => {
                out.push_str("col(");
                t.write(out, cx);
                out.push(')');
            }
            VecSrc::Scalar(f) => f.write(out, cx),
        }
    }
    fn parse(v: &Value, cx: &mut ParseCx) -> Result<Self, String> {
        match v {
            Value::Mem { .. } => Tile::parse(v, cx).map(VecSrc::Tile),
            Value::Call(f, inner) if f == "row" => Tile::parse(inner, cx).map(VecSrc::Row),
            Value::Call(f, inner) if f == "col" => Tile::parse(inner, cx).map(VecSrc::Col),
            _ if v.as_name().is_some_and(|n| n.starts_with('f')) => {
                FReg::parse(v, cx).map(VecSrc::Scalar)
            }
            _ => Err(format!("expected {}", Self::SYNTAX)),
        }
    }
}

/// An fp32 immediate, kept as its bit pattern so NaN payloads survive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct F32Imm(pub u32);

impl F32Imm {
    /// The value.
    pub fn value(self) -> f32 {
        f32::from_bits(self.0)
    }
}

impl Field for F32Imm {
    const BITS: u32 = 32;
    const SYNTAX: &'static str = "fp32 literal, `inf`, `-inf` or `nan(0xBITS)`";
    fn to_bits(&self) -> u128 {
        u128::from(self.0)
    }
    fn from_bits(bits: u128) -> Option<Self> {
        u32::try_from(bits).ok().map(F32Imm)
    }
    fn write(&self, out: &mut String, _: &WriteCx<'_>) {
        let v = self.value();
        if v.is_nan() {
            let _ = write!(out, "nan(0x{:08x})", self.0);
        } else if v.is_infinite() {
            out.push_str(if v > 0.0 { "inf" } else { "-inf" });
        } else {
            // `{:?}` prints the shortest text that reads back to the same f32.
            let _ = write!(out, "{v:?}");
        }
    }
    fn parse(v: &Value, cx: &mut ParseCx) -> Result<Self, String> {
        match v {
            Value::Float(text) => text
                .parse::<f32>()
                .map(|f| F32Imm(f.to_bits()))
                .map_err(|_| format!("`{text}` is not a floating-point literal")),
            Value::Call(f, inner) if f == "nan" => {
                let bits =
                    u32::try_from(cx.eval(inner)?).map_err(|_| "nan bits must fit in 32 bits")?;
                if !f32::from_bits(bits).is_nan() {
                    return Err(format!("0x{bits:08x} is not a NaN bit pattern"));
                }
                Ok(F32Imm(bits))
            }
            _ => match v.as_name() {
                Some("inf") => Ok(F32Imm(f32::INFINITY.to_bits())),
                Some("nan") => Ok(F32Imm(f32::NAN.to_bits())),
                _ => {
                    let i = cx
                        .eval(v)
                        .map_err(|_| format!("expected {}", Self::SYNTAX))?;
                    let f = i as f32;
                    if f as i128 != i {
                        return Err(format!("{i} is not exactly representable in fp32"));
                    }
                    Ok(F32Imm(f.to_bits()))
                }
            },
        }
    }
}

/// The end of a loop body: the first instruction after it, written as a label.
/// Encoded as the body length in instructions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LoopEnd(Count<16>);

impl LoopEnd {
    /// A body of `len` instructions (1 to 65535).
    pub const fn new(len: u64) -> Option<LoopEnd> {
        match Count::new(len) {
            Some(c) => Some(LoopEnd(c)),
            None => None,
        }
    }

    /// Instructions in the body.
    pub const fn body_len(self) -> usize {
        self.0.get() as usize
    }
}

impl Field for LoopEnd {
    const BITS: u32 = 16;
    const SYNTAX: &'static str = "label of the first instruction after the body";
    fn to_bits(&self) -> u128 {
        self.0.to_bits()
    }
    fn from_bits(bits: u128) -> Option<Self> {
        Count::from_bits(bits).map(LoopEnd)
    }
    fn write(&self, out: &mut String, cx: &WriteCx<'_>) {
        out.push_str(&label_name(cx.here + 1 + self.body_len()));
    }
    fn parse(v: &Value, cx: &mut ParseCx) -> Result<Self, String> {
        let name = v.as_name().ok_or("expected a label")?;
        let &target = cx
            .labels
            .get(name)
            .ok_or_else(|| format!("unknown label `{name}` in this queue"))?;
        if target <= cx.here + 1 {
            return Err(format!(
                "label `{name}` must come after the loop's first body instruction"
            ));
        }
        LoopEnd::new((target - cx.here - 1) as u64)
            .ok_or_else(|| format!("loop body to `{name}` is longer than 65535 instructions"))
    }
}

/// A profiling region, written by name; the program's region table maps the
/// 16-bit id to the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Region(pub u16);

impl Field for Region {
    const BITS: u32 = 16;
    const SYNTAX: &'static str = "region name";
    fn to_bits(&self) -> u128 {
        u128::from(self.0)
    }
    fn from_bits(bits: u128) -> Option<Self> {
        u16::try_from(bits).ok().map(Region)
    }
    fn write(&self, out: &mut String, cx: &WriteCx<'_>) {
        match cx.regions.get(usize::from(self.0)) {
            Some(name) => out.push_str(name),
            None => {
                let _ = write!(out, "region{}", self.0);
            }
        }
    }
    fn parse(v: &Value, cx: &mut ParseCx) -> Result<Self, String> {
        let name = v.as_name().ok_or("expected a region name")?;
        let id = match cx.regions.iter().position(|r| r == name) {
            Some(i) => i,
            None => {
                cx.regions.push(name.to_string());
                cx.regions.len() - 1
            }
        };
        u16::try_from(id)
            .map(Region)
            .map_err(|_| "more than 65536 profiling regions".into())
    }
}

/// A set of the 16 dependency tokens `t0`..`t15`, as a bit mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TokenSet(pub u16);

impl TokenSet {
    /// Number of dependency tokens.
    pub const COUNT: u8 = 16;
    /// No tokens.
    pub const EMPTY: TokenSet = TokenSet(0);

    /// True when no token is in the set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The token numbers in ascending order.
    pub fn iter(self) -> impl Iterator<Item = u8> {
        (0..Self::COUNT).filter(move |i| self.0 >> i & 1 == 1)
    }

    /// The set with token `t` added; `None` for `t >= 16`.
    pub fn with(self, t: u8) -> Option<TokenSet> {
        (t < Self::COUNT).then(|| TokenSet(self.0 | 1 << t))
    }
}

impl fmt::Display for TokenSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.iter().map(|t| format!("t{t}")).collect();
        f.write_str(&names.join("|"))
    }
}

impl Field for TokenSet {
    const BITS: u32 = 16;
    const SYNTAX: &'static str = "`tA|tB|...` of `t0`..`t15`";
    fn to_bits(&self) -> u128 {
        u128::from(self.0)
    }
    fn from_bits(bits: u128) -> Option<Self> {
        u16::try_from(bits).ok().map(TokenSet)
    }
    fn write(&self, out: &mut String, _: &WriteCx<'_>) {
        let _ = write!(out, "{self}");
    }
    fn parse(v: &Value, _: &mut ParseCx) -> Result<Self, String> {
        let names: Vec<&str> = match v {
            Value::Set(names) => names.iter().map(String::as_str).collect(),
            _ => vec![v.as_name().ok_or("expected tokens `tA|tB|...`")?],
        };
        let mut set = TokenSet::EMPTY;
        for n in names {
            let t = parse_indexed(
                &Value::Expr(vec![(Sign::Plus, Term::Name(n.to_string()))]),
                't',
                Self::COUNT,
                "a token",
            )?;
            if set.0 >> t & 1 == 1 {
                return Err(format!("token t{t} listed twice"));
            }
            set = set
                .with(t)
                .ok_or_else(|| format!("token t{t} does not exist"))?;
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_fields_sign_extend() {
        let s = SInt::<12>::new(-1).unwrap();
        assert_eq!(s.to_bits(), 0xfff);
        assert_eq!(SInt::<12>::from_bits(0xfff), Some(s));
        assert_eq!(SInt::<12>::from_bits(0x800).unwrap().get(), -2048);
        assert_eq!(SInt::<12>::new(2048), None);
        assert_eq!(SInt::<12>::from_bits(0x1000), None);
    }

    #[test]
    fn counts_reject_zero() {
        assert_eq!(Count::<12>::new(0), None);
        assert_eq!(Count::<12>::from_bits(0), None);
        assert_eq!(Count::<12>::new(4095).unwrap().get(), 4095);
        assert_eq!(Count::<12>::new(4096), None);
    }

    #[test]
    fn composite_fields_round_trip() {
        let t = Tile {
            addr: LocalAddr {
                space: Space::Acc,
                reg: Reg::new(15).unwrap(),
                offset: SInt::new(-7).unwrap(),
            },
            dtype: DType::Fp8E5M2,
        };
        for src in [
            VecSrc::Tile(t),
            VecSrc::Row(t),
            VecSrc::Col(t),
            VecSrc::Scalar(FReg::new(7).unwrap()),
        ] {
            let bits = src.to_bits();
            assert!(bits < 1 << VecSrc::BITS);
            assert_eq!(VecSrc::from_bits(bits), Some(src));
        }
    }
}
