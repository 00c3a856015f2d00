//! The IR's text form: print -> parse -> print is the identity for whole
//! training steps, and malformed text gives one error with line and column
//! (data-driven: `tests/ir/errors.txt` holds each input and its message;
//! `TESSERA_BLESS=1` rewrites the messages).

use tessera_compiler::ir::{parse::parse, print::print, verify::verify};
use tessera_compiler::model::ModelConfig;
use tessera_compiler::setup::{Optimizer, Precision, TrainingSetup};
use tessera_compiler::{training_graph, Stage};

fn tiny(preset: &str) -> ModelConfig {
    let mut m = ModelConfig::preset(preset).unwrap();
    m.vocab_size = 13;
    m.hidden = 8;
    m.layers = 1;
    m.heads = 2;
    m.kv_heads = if m.family == tessera_compiler::Family::Llama {
        1
    } else {
        2
    };
    m.ffn_hidden = 16;
    m.max_positions = 8;
    m
}

#[test]
fn training_steps_print_and_parse_back_identically() {
    for preset in ["gpt2-small", "llama-7b", "bert-base"] {
        for precision in [Precision::Fp32, Precision::Bf16Mixed, Precision::Fp8Mixed] {
            for opt in ["adamw", "sgd", "lion", "lamb", "adafactor"] {
                let mut setup = TrainingSetup::new(2, 4);
                setup.precision = precision;
                setup.optimizer =
                    Optimizer::from_name(opt, 1e-3, (0.9, 0.999), 1e-8, 0.01).unwrap();
                let g = training_graph(&tiny(preset), &setup, Stage::Step).unwrap();
                let text = print(&g);
                let back =
                    parse(&text, "step.ir").unwrap_or_else(|e| panic!("{preset} {opt}: {e}"));
                verify(&back).unwrap();
                assert_eq!(back, g, "{preset} {opt}");
                assert_eq!(print(&back), text);
            }
        }
    }
}

#[test]
fn hand_written_text_with_free_names_and_comments_parses() {
    let text = r#"
# a hand-edited graph
graph "edit" {
  %w = param{name="w"} : [4, 3] fp32     # weight
  %x = input{name="x"} : [2, 4] fp32
  %y = matmul{ta=false, tb=false, out=fp32}(%x, %w)
  %s = sum_all(%y) : [] fp32
  output{name="loss"}(%s)
}
"#;
    let g = parse(text, "edit.ir").unwrap();
    assert_eq!(
        print(&g),
        "graph \"edit\" {\n  %0 = param{name=\"w\"} : [4, 3] fp32\n  %1 = input{name=\"x\"} : [2, 4] fp32\n  \
         %2 = matmul{ta=false, tb=false, out=fp32}(%1, %0) : [2, 3] fp32\n  %3 = sum_all(%2) : [] fp32\n  \
         output{name=\"loss\"}(%3)\n}\n"
    );
}

#[test]
fn malformed_text_gives_located_errors() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ir/errors.txt");
    let corpus = std::fs::read_to_string(path).unwrap();
    let mut blessed = String::new();
    let mut failures = Vec::new();
    for case in corpus.split("\n=====\n") {
        let (input, expected) = case
            .split_once("\n-----\n")
            .expect("each case has input ----- error");
        let got = match parse(input, "case.ir") {
            Ok(_) => "ok".to_string(),
            Err(e) => e.to_string(),
        };
        if got != expected.trim_end() {
            failures.push(format!(
                "input:\n{input}\nexpected: {}\ngot:      {got}",
                expected.trim_end()
            ));
        }
        blessed.push_str(&format!("{input}\n-----\n{got}\n=====\n"));
    }
    if std::env::var_os("TESSERA_BLESS").is_some() {
        std::fs::write(
            path,
            blessed
                .trim_end_matches("=====\n")
                .trim_end_matches('\n')
                .to_string()
                + "\n",
        )
        .unwrap();
        return;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
