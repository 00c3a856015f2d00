//! Keeps `docs/isa.md` in sync with the instruction table: the text between
//! its generated-reference markers must equal
//! `tessera_isa::doc::instruction_reference()`, and every mnemonic must have a
//! `### mnemonic` heading. With `TESSERA_BLESS=1` the generated part is
//! rewritten instead of compared.

use std::path::PathBuf;

use tessera_isa::INSTRUCTIONS;

const BEGIN: &str =
    "<!-- BEGIN GENERATED: instruction reference (cargo test regenerates with TESSERA_BLESS=1) -->\n";
const END: &str = "<!-- END GENERATED -->";
const BLESS: &str = "TESSERA_BLESS=1 cargo test -p tessera-isa --test isa_doc";

fn doc_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/isa.md")
}

/// The byte range of the generated part: from the line after BEGIN to the start of the END line.
fn generated_range(text: &str) -> std::ops::Range<usize> {
    let start = text
        .find(BEGIN)
        .unwrap_or_else(|| panic!("docs/isa.md has no line `{}`", BEGIN.trim_end()))
        + BEGIN.len();
    let end = text[start..]
        .find(&format!("\n{END}"))
        .map(|i| start + i + 1)
        .or_else(|| text[start..].starts_with(END).then_some(start))
        .unwrap_or_else(|| panic!("docs/isa.md has no line `{END}` after the BEGIN marker"));
    start..end
}

#[test]
fn generated_reference_matches_the_table() {
    let path = doc_path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let range = generated_range(&text);
    let want = tessera_isa::doc::instruction_reference();
    if blessing() {
        if text[range.clone()] != want {
            std::fs::write(&path, regenerated(&text))
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        }
        return;
    }
    let got = &text[range];
    if got != want {
        let line = got
            .lines()
            .zip(want.lines())
            .position(|(g, w)| g != w)
            .unwrap_or_else(|| got.lines().count().min(want.lines().count()));
        panic!(
            "the generated instruction reference in docs/isa.md is out of date \
             (first difference at line {} of the generated part:\n  file:  {:?}\n  table: {:?})\n\
             run `{BLESS}` to regenerate it",
            line + 1,
            got.lines().nth(line).unwrap_or("<end>"),
            want.lines().nth(line).unwrap_or("<end>"),
        );
    }
}

fn blessing() -> bool {
    std::env::var("TESSERA_BLESS").as_deref() == Ok("1")
}

/// `text` with its generated part replaced by the current reference.
fn regenerated(text: &str) -> String {
    let range = generated_range(text);
    let mut new = String::with_capacity(text.len());
    new.push_str(&text[..range.start]);
    new.push_str(&tessera_isa::doc::instruction_reference());
    new.push_str(&text[range.end..]);
    new
}

#[test]
fn every_mnemonic_has_a_heading() {
    let path = doc_path();
    let mut text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    if blessing() {
        // The other test may not have rewritten the file yet; check what it will write.
        text = regenerated(&text);
    }
    let headings: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("### "))
        .map(str::trim)
        .collect();
    for d in INSTRUCTIONS {
        assert!(
            headings.contains(&d.mnemonic),
            "docs/isa.md has no `### {}` heading; run `{BLESS}`",
            d.mnemonic
        );
    }
}
