//! Model descriptions: Hugging Face configs and presets are read into the
//! right shapes, parameter counts agree with the built graphs and with the
//! published sizes, and bad configs give one-line errors naming the field.

use tessera_compiler::model::{ModelConfig, PRESETS};
use tessera_compiler::setup::TrainingSetup;
use tessera_compiler::{training_graph, Stage};

fn example(name: &str) -> (String, String) {
    let path = format!("{}/../examples/models/{name}", env!("CARGO_MANIFEST_DIR"));
    (std::fs::read_to_string(&path).unwrap(), name.to_string())
}

#[test]
fn example_configs_parse_to_the_expected_models() {
    for (file, expect) in [
        ("gpt2-tiny.json", "gpt2-tiny.json (gpt2: 2 layers, hidden 32, 4 heads, ffn 128, vocab 97, 0.0M parameters)"),
        (
            "llama-tiny.json",
            "llama-tiny.json (llama: 2 layers, hidden 32, 4 heads / 2 kv heads, ffn 48, vocab 97, 0.0M parameters)",
        ),
        ("bert-tiny.json", "bert-tiny.json (bert: 2 layers, hidden 32, 4 heads, ffn 64, vocab 97, 0.0M parameters)"),
    ] {
        let (text, name) = example(file);
        let m = ModelConfig::from_hf_json(&text, &name).unwrap();
        assert_eq!(m.to_string(), expect);
        let g = training_graph(&m, &TrainingSetup::new(2, 16), Stage::Forward).unwrap();
        assert_eq!(g.parameter_elements(), m.parameter_count(), "{file}");
    }
}

#[test]
fn presets_match_published_parameter_counts_and_their_graphs() {
    // Published sizes: GPT-2 (HF model cards, tied head), Llama 2 (Meta), BERT (BertForMaskedLM without pooler).
    for (name, published) in [
        ("gpt2-small", 124_439_808u64),
        ("gpt2-medium", 354_823_168),
        ("gpt2-large", 774_030_080),
        ("gpt2-xl", 1_557_611_200),
        ("llama-7b", 6_738_415_616),
        ("llama-13b", 13_015_864_320),
        ("bert-base", 109_514_298),
    ] {
        assert_eq!(
            ModelConfig::preset(name).unwrap().parameter_count(),
            published,
            "{name}"
        );
    }
    for (name, _, _) in PRESETS {
        let m = ModelConfig::preset(name).unwrap();
        let g = training_graph(&m, &TrainingSetup::new(1, 8), Stage::Forward).unwrap();
        assert_eq!(g.parameter_elements(), m.parameter_count(), "{name}");
    }
    let gpt3 = ModelConfig::preset("gpt3-175b").unwrap().parameter_count() as f64;
    assert!((gpt3 / 175e9 - 1.0).abs() < 0.01, "{gpt3}");
}

#[test]
fn bad_configs_name_the_field() {
    for (text, expect) in [
        (
            r#"{"model_type": "t5"}"#,
            "c.json: unsupported model_type `t5` (supported: gpt2, llama, bert)",
        ),
        (r#"{"n_embd": 8}"#, "c.json: missing field `model_type`"),
        (
            r#"{"model_type": "gpt2", "n_embd": 8, "n_layer": 1, "n_head": 2, "vocab_size": 5}"#,
            "c.json: missing field `n_positions`",
        ),
        (
            r#"{"model_type": "gpt2", "n_embd": "8", "n_layer": 1, "n_head": 2, "vocab_size": 5, "n_positions": 4}"#,
            "c.json: field `n_embd` must be a non-negative integer",
        ),
        (
            r#"{"model_type": "gpt2", "n_embd": 10, "n_layer": 1, "n_head": 4, "vocab_size": 5, "n_positions": 4}"#,
            "model c.json: field `hidden` 10 is not a multiple of the 4 heads",
        ),
        (
            r#"{"model_type": "llama", "hidden_size": 8, "intermediate_size": 8, "num_attention_heads": 2, "num_key_value_heads": 3,
               "num_hidden_layers": 1, "max_position_embeddings": 4, "vocab_size": 5}"#,
            "model c.json: field `kv_heads` 2 heads are not a multiple of 3 kv heads",
        ),
        (
            r#"{"model_type": "gpt2", "activation_function": "relu", "n_embd": 8, "n_layer": 1, "n_head": 2, "vocab_size": 5, "n_positions": 4}"#,
            "c.json: field `activation_function` has unsupported value `relu`",
        ),
        (
            "{\"model_type\": \n oops}",
            "c.json:2:2: invalid JSON: expected value at line 2 column 2",
        ),
    ] {
        assert_eq!(
            ModelConfig::from_hf_json(text, "c.json")
                .unwrap_err()
                .to_string(),
            expect
        );
    }
    assert_eq!(
        ModelConfig::preset("gpt5").unwrap_err().to_string(),
        "unknown model preset `gpt5` (known: gpt2-small, gpt2-medium, gpt2-large, gpt2-xl, gpt3-175b, bert-base, bert-large, llama-7b, llama-13b, llama-70b)"
    );
}

#[test]
fn sequences_longer_than_the_position_table_are_rejected() {
    let m = ModelConfig::preset("gpt2-small").unwrap();
    let e = training_graph(&m, &TrainingSetup::new(1, 2048), Stage::Forward).unwrap_err();
    assert_eq!(
        e.to_string(),
        "training setup: `seq` 2048 exceeds the model's 1024 positions"
    );
}
