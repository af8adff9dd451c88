//! Tidy: the invariants of ARCHITECTURE.md that a test can check. Layering between crates,
//! a `//!` paragraph atop every source file, no ignored tests, no todo macros.

use std::path::{Path, PathBuf};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn dependencies(crate_name: &str) -> Vec<String> {
    let manifest = workspace_root()
        .join("crates")
        .join(crate_name)
        .join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let table: toml::Table = toml::from_str(&text).unwrap();
    table
        .get("dependencies")
        .and_then(|d| d.as_table())
        .map(|d| d.keys().cloned().collect())
        .unwrap_or_default()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn core_depends_on_no_io_crate() {
    let banned = [
        "axum",
        "hyper",
        "reqwest",
        "sqlx",
        "clap",
        "toml",
        "tower",
        "tower-http",
        "tracing-subscriber",
    ];
    for dependency in dependencies("forcelink-core") {
        assert!(
            !banned.contains(&dependency.as_str()),
            "forcelink-core must not depend on {dependency}"
        );
        assert!(
            !dependency.starts_with("forcelink"),
            "forcelink-core depends on no other crate of ours"
        );
    }
}

#[test]
fn adapters_depend_on_core_only_and_sfsim_on_nothing_of_ours() {
    for adapter in [
        "forcelink-store-sqlite",
        "forcelink-store-postgres",
        "forcelink-salesforce",
    ] {
        let ours: Vec<String> = dependencies(adapter)
            .into_iter()
            .filter(|d| d.starts_with("forcelink") || d == "sfsim")
            .collect();
        assert_eq!(
            ours,
            vec!["forcelink-core".to_string()],
            "{adapter} may use only forcelink-core"
        );
    }
    let sfsim_ours: Vec<String> = dependencies("sfsim")
        .into_iter()
        .filter(|d| d.starts_with("forcelink"))
        .collect();
    assert!(
        sfsim_ours.is_empty(),
        "sfsim shares no code with forcelink: {sfsim_ours:?}"
    );
}

#[test]
fn every_source_file_starts_with_a_purpose_paragraph_and_has_no_ignored_tests() {
    let mut files = Vec::new();
    rust_files(&workspace_root().join("crates"), &mut files);
    assert!(files.len() > 30);
    let ignore_attribute = ["#[", "ignore]"].concat();
    let todo_macro = ["todo", "!("].concat();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let shown = file.display();
        let in_src = file.components().any(|c| c.as_os_str() == "src");
        if in_src || file.ends_with("main.rs") {
            assert!(
                text.starts_with("//!"),
                "{shown} must start with a //! paragraph"
            );
        }
        assert!(
            !text.contains(&ignore_attribute),
            "{shown} has an ignored test"
        );
        assert!(!text.contains(&todo_macro), "{shown} has a todo");
    }
}
