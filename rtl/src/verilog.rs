//! A small structural Verilog-2005 emitter: modules with parameters and
//! ports, wires and registers, continuous assignments, clocked processes,
//! instances and generate loops. Each module is emitted once and
//! instantiated many times; names are stable, so output is deterministic
//! and diffs stay readable.

use std::fmt::Write as _;

/// Port direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    Input,
    Output,
}

/// Whether a net holds a two's-complement value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signedness {
    Unsigned,
    Signed,
}

/// A port: direction, kind (`wire` or `reg`), signedness, width expression, name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    pub dir: Dir,
    pub reg: bool,
    pub sign: Signedness,
    /// Width as a Verilog expression (`"8"`, `"COLS*32"`), `None` for one bit.
    pub width: Option<String>,
    pub name: String,
}

impl Port {
    /// A one-bit input.
    pub fn input(name: &str) -> Port {
        Port {
            dir: Dir::Input,
            reg: false,
            sign: Signedness::Unsigned,
            width: None,
            name: name.into(),
        }
    }

    /// A bus input of `width` bits.
    pub fn input_bus(name: &str, width: &str, sign: Signedness) -> Port {
        Port {
            dir: Dir::Input,
            reg: false,
            sign,
            width: Some(width.into()),
            name: name.into(),
        }
    }

    /// A bus output of `width` bits driven by a register.
    pub fn output_reg(name: &str, width: &str, sign: Signedness) -> Port {
        Port {
            dir: Dir::Output,
            reg: true,
            sign,
            width: Some(width.into()),
            name: name.into(),
        }
    }

    /// A bus output of `width` bits driven by a wire.
    pub fn output_bus(name: &str, width: &str) -> Port {
        Port {
            dir: Dir::Output,
            reg: false,
            sign: Signedness::Unsigned,
            width: Some(width.into()),
            name: name.into(),
        }
    }
}

/// A statement inside a module or a generate block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Comment(String),
    /// `wire [w-1:0] name;`
    Wire {
        name: String,
        width: Option<String>,
        sign: Signedness,
    },
    /// `reg [w-1:0] name;`
    Reg {
        name: String,
        width: Option<String>,
        sign: Signedness,
    },
    /// `wire [w-1:0] name = rhs;`: a net declared with its driver.
    Net {
        name: String,
        width: Option<String>,
        sign: Signedness,
        rhs: String,
    },
    /// `assign lhs = rhs;`
    Assign {
        lhs: String,
        rhs: String,
    },
    /// `always @(posedge clk) begin ... end`, one statement per line.
    Clocked {
        clock: String,
        body: Vec<String>,
    },
    /// A module instance with parameter overrides and named connections.
    Instance {
        module: String,
        name: String,
        params: Vec<(String, String)>,
        ports: Vec<(String, String)>,
    },
    /// `for (var = from; var < to; var = var + 1) begin : label ... end`
    For {
        var: String,
        from: String,
        to: String,
        label: String,
        body: Vec<Item>,
    },
    /// A `genvar` declaration.
    Genvar(String),
}

/// A module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    pub name: String,
    pub doc: Vec<String>,
    /// `(name, default)`.
    pub params: Vec<(String, String)>,
    pub ports: Vec<Port>,
    pub items: Vec<Item>,
}

fn range(width: &Option<String>) -> String {
    match width {
        Some(w) => format!("[{w}-1:0] "),
        None => String::new(),
    }
}

fn signed(s: Signedness) -> &'static str {
    match s {
        Signedness::Signed => "signed ",
        Signedness::Unsigned => "",
    }
}

fn write_items(out: &mut String, items: &[Item], indent: usize) {
    let pad = "    ".repeat(indent);
    for item in items {
        match item {
            Item::Comment(c) => {
                let _ = writeln!(out, "{pad}// {c}");
            }
            Item::Wire { name, width, sign } => {
                let _ = writeln!(out, "{pad}wire {}{}{name};", signed(*sign), range(width));
            }
            Item::Net {
                name,
                width,
                sign,
                rhs,
            } => {
                let _ = writeln!(
                    out,
                    "{pad}wire {}{}{name} = {rhs};",
                    signed(*sign),
                    range(width)
                );
            }
            Item::Reg { name, width, sign } => {
                let _ = writeln!(out, "{pad}reg {}{}{name};", signed(*sign), range(width));
            }
            Item::Assign { lhs, rhs } => {
                let _ = writeln!(out, "{pad}assign {lhs} = {rhs};");
            }
            Item::Clocked { clock, body } => {
                let _ = writeln!(out, "{pad}always @(posedge {clock}) begin");
                for line in body {
                    let _ = writeln!(out, "{pad}    {line}");
                }
                let _ = writeln!(out, "{pad}end");
            }
            Item::Instance {
                module,
                name,
                params,
                ports,
            } => {
                let _ = write!(out, "{pad}{module}");
                if !params.is_empty() {
                    let p: Vec<String> = params.iter().map(|(k, v)| format!(".{k}({v})")).collect();
                    let _ = write!(out, " #({})", p.join(", "));
                }
                let _ = writeln!(out, " {name} (");
                for (i, (port, net)) in ports.iter().enumerate() {
                    let comma = if i + 1 < ports.len() { "," } else { "" };
                    let _ = writeln!(out, "{pad}    .{port}({net}){comma}");
                }
                let _ = writeln!(out, "{pad});");
            }
            Item::For {
                var,
                from,
                to,
                label,
                body,
            } => {
                let _ = writeln!(
                    out,
                    "{pad}for ({var} = {from}; {var} < {to}; {var} = {var} + 1) begin : {label}"
                );
                write_items(out, body, indent + 1);
                let _ = writeln!(out, "{pad}end");
            }
            Item::Genvar(v) => {
                let _ = writeln!(out, "{pad}genvar {v};");
            }
        }
    }
}

impl Item {
    /// `wire [width-1:0] name = rhs;` (one bit when `width` is 1).
    pub fn net(name: &str, width: u32, rhs: &str) -> Item {
        Item::Net {
            name: name.into(),
            width: (width > 1).then(|| width.to_string()),
            sign: Signedness::Unsigned,
            rhs: rhs.into(),
        }
    }

    /// A signed [`Item::net`].
    pub fn snet(name: &str, width: u32, rhs: &str) -> Item {
        Item::Net {
            name: name.into(),
            width: Some(width.to_string()),
            sign: Signedness::Signed,
            rhs: rhs.into(),
        }
    }
}

impl Module {
    /// The module's Verilog text.
    pub fn to_verilog(&self) -> String {
        let mut out = String::new();
        for d in &self.doc {
            let _ = writeln!(out, "// {d}");
        }
        let _ = write!(out, "module {}", self.name);
        if !self.params.is_empty() {
            out.push_str(" #(\n");
            for (i, (k, v)) in self.params.iter().enumerate() {
                let comma = if i + 1 < self.params.len() { "," } else { "" };
                let _ = writeln!(out, "    parameter {k} = {v}{comma}");
            }
            out.push(')');
        }
        out.push_str(" (\n");
        for (i, p) in self.ports.iter().enumerate() {
            let dir = match p.dir {
                Dir::Input => "input",
                Dir::Output => "output",
            };
            let kind = if p.reg { "reg" } else { "wire" };
            let comma = if i + 1 < self.ports.len() { "," } else { "" };
            let _ = writeln!(
                out,
                "    {dir} {kind} {}{}{}{comma}",
                signed(p.sign),
                range(&p.width),
                p.name
            );
        }
        out.push_str(");\n");
        write_items(&mut out, &self.items, 1);
        out.push_str("endmodule\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emits_ports_params_generate_and_instances() {
        let m = Module {
            name: "top".into(),
            doc: vec!["a test".into()],
            params: vec![("N".into(), "4".into())],
            ports: vec![Port::input("clk"), Port::output_bus("y", "N")],
            items: vec![
                Item::Genvar("i".into()),
                Item::For {
                    var: "i".into(),
                    from: "0".into(),
                    to: "N".into(),
                    label: "g_bit".into(),
                    body: vec![Item::Instance {
                        module: "cell".into(),
                        name: "u_cell".into(),
                        params: vec![],
                        ports: vec![("clk".into(), "clk".into()), ("q".into(), "y[i]".into())],
                    }],
                },
            ],
        };
        let v = m.to_verilog();
        assert_eq!(
            v,
            "// a test\nmodule top #(\n    parameter N = 4\n) (\n    input wire clk,\n    output wire [N-1:0] y\n);\n    genvar i;\n    for (i = 0; i < N; i = i + 1) begin : g_bit\n        cell u_cell (\n            .clk(clk),\n            .q(y[i])\n        );\n    end\nendmodule\n"
        );
    }
}
