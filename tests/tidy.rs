//! Tidy checks over the whole workspace: every Rust file starts with a `//!`
//! summary, no test is marked to panic or to be skipped, and the crate
//! dependency rules of `docs/ARCHITECTURE.md` hold.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under the workspace, skipping build output and hidden
/// directories, relative to the root, sorted.
fn rust_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || name == "target" {
                continue;
            }
            if path.is_dir() {
                walk(&path, out);
            } else if name.ends_with(".rs") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(root(), &mut out);
    out.sort();
    out
}

fn relative(p: &Path) -> String {
    p.strip_prefix(root()).unwrap_or(p).display().to_string()
}

#[test]
fn every_rust_file_starts_with_a_module_doc_comment() {
    let files = rust_files();
    assert!(files.len() > 10, "found only {files:?}");
    let bad: Vec<String> = files
        .iter()
        .filter(|p| {
            let text = fs::read_to_string(p).unwrap_or_default();
            !text.trim_start_matches('\u{feff}').starts_with("//!")
        })
        .map(|p| relative(p))
        .collect();
    assert!(
        bad.is_empty(),
        "these files do not start with a `//!` summary: {bad:?}"
    );
}

#[test]
fn no_test_expects_a_panic_or_is_ignored() {
    // Spelled in pieces so this file does not match itself.
    let banned = [concat!("#[should", "_panic"), concat!("#[ig", "nore")];
    let mut bad = Vec::new();
    for p in rust_files() {
        let text = fs::read_to_string(&p).unwrap_or_default();
        for (n, line) in text.lines().enumerate() {
            let compact: String = line.chars().filter(|c| !c.is_whitespace()).collect();
            for b in banned {
                if compact.contains(b) {
                    bad.push(format!("{}:{}: {}", relative(&p), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "assert today's wrong output with a FIXME instead:\n{}",
        bad.join("\n")
    );
}

/// The workspace packages, and `(package, dependency)` for every dependency
/// of each, all kinds (normal, dev, build).
fn dependency_edges() -> (Vec<String>, Vec<(String, String)>) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(root())
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata is JSON");
    let mut packages = Vec::new();
    let mut edges = Vec::new();
    for pkg in meta["packages"].as_array().expect("packages") {
        let name = pkg["name"].as_str().expect("package name").to_string();
        packages.push(name.clone());
        for dep in pkg["dependencies"].as_array().expect("dependencies") {
            let dep = dep["name"].as_str().expect("dependency name").to_string();
            edges.push((name.clone(), dep));
        }
    }
    (packages, edges)
}

#[test]
fn crate_dependency_rules_hold() {
    let (packages, edges) = dependency_edges();
    for pkg in [
        "tessera",
        "tessera-isa",
        "tessera-compiler",
        "tessera-sim",
        "tessera-rtl",
    ] {
        assert!(
            packages.iter().any(|p| p == pkg),
            "package {pkg} missing from cargo metadata: {packages:?}"
        );
    }
    let middle = ["tessera-compiler", "tessera-sim", "tessera-rtl"];
    let mut bad = Vec::new();
    for (pkg, dep) in &edges {
        if pkg == "tessera-isa" && dep.starts_with("tessera") {
            bad.push(format!(
                "{pkg} -> {dep}: the ISA crate depends on no Tessera crate"
            ));
        }
        if middle.contains(&pkg.as_str()) && middle.contains(&dep.as_str()) && pkg != dep {
            bad.push(format!(
                "{pkg} -> {dep}: compiler, sim and rtl meet only at isa::Program and isa::Arch"
            ));
        }
        if pkg != "tessera" && dep == "tessera" {
            bad.push(format!(
                "{pkg} -> {dep}: nothing depends on the CLI package"
            ));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
