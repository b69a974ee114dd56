//! The layers point one way (docs/architecture.md, "Layers"):
//! `http → app → {connectors → engine → assistance → auth, push; reconcile → push} →
//! {domain, support}`, and
//! nothing below `http` imports `http`. Rust allows cycles between the modules of one crate, so
//! this test is what keeps them out: it reads every source file and fails on an import that
//! points up.

use std::path::{Path, PathBuf};

/// The layer of each top-level module of `src/`: a module may use only modules of a lower
/// rank (and itself). `config` is read by everyone.
const RANKS: &[(&str, u8)] = &[
    ("support", 0),
    ("config", 0),
    ("domain", 1),
    ("push", 2),
    ("auth", 2),
    ("assistance", 3),
    ("engine", 4),
    ("reconcile", 4),
    ("connectors", 5),
    ("app", 6),
    ("http", 7),
];

fn rank(module: &str) -> Option<u8> {
    RANKS.iter().find(|(m, _)| *m == module).map(|(_, r)| *r)
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every `crate::<module>` a file names (imports and paths alike).
fn crate_refs(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        let tail = &rest[i + "crate::".len()..];
        let name: String = tail
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        // `reconbanker_store::…` and friends contain "crate::" only as a suffix of a word.
        let preceded_by_word = rest[..i]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        rest = &tail[name.len()..];
        if !preceded_by_word && !name.is_empty() {
            found.push(name);
        }
    }
    found
}

#[test]
fn layers_point_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut violations = Vec::new();
    let mut unranked = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(&src).expect("under src");
        let top = rel
            .components()
            .next()
            .expect("a component")
            .as_os_str()
            .to_string_lossy();
        let module = top.trim_end_matches(".rs").to_owned();
        // The composition root and the binary wire everything together.
        if module == "lib" || module == "main" {
            continue;
        }
        let Some(own) = rank(&module) else {
            unranked.push(module);
            continue;
        };
        let text = std::fs::read_to_string(file).expect("read source");
        for used in crate_refs(&text) {
            if used == module {
                continue;
            }
            match rank(&used) {
                Some(r) if r < own => {}
                // Items of the crate root (`crate::AppState`) are the composition root's.
                None if used.chars().next().is_some_and(|c| c.is_ascii_uppercase()) => {
                    if own < rank("app").unwrap_or(0) && used == "AppState" {
                        violations.push(format!(
                            "{}: uses crate::{used} (the app state is above this layer)",
                            rel.display()
                        ));
                    }
                }
                _ => violations.push(format!("{}: uses crate::{used}", rel.display())),
            }
        }
    }
    unranked.sort();
    unranked.dedup();
    assert!(unranked.is_empty(), "modules with no layer in RANKS: {unranked:?}");
    assert!(
        violations.is_empty(),
        "imports that point up a layer:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_scanner_finds_crate_paths() {
    assert_eq!(
        crate_refs("use crate::http::x; let y = crate::AppState; my_crate::z"),
        vec!["http".to_owned(), "AppState".to_owned()]
    );
}
