//! The README's configuration table lists exactly the declared settings, with their defaults.

use std::collections::BTreeMap;

use reconbanker::config::SETTINGS;

/// `name → default` from the rows of the table under `## Configuration`, backticks removed.
fn readme_table() -> BTreeMap<String, String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");
    let readme = std::fs::read_to_string(path).expect("README.md");
    let section = readme
        .split("\n## Configuration\n")
        .nth(1)
        .expect("a ## Configuration section")
        .split("\n## ")
        .next()
        .unwrap_or_default();
    let mut rows = BTreeMap::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<String> = line.split('|').map(|c| c.trim().replace('`', "")).collect();
        let [_, name, default, ..] = cells.as_slice() else {
            panic!("not a table row: {line}");
        };
        assert!(
            rows.insert(name.clone(), default.clone()).is_none(),
            "{name} listed twice"
        );
    }
    rows
}

#[test]
fn readme_configuration_table_matches_the_settings() {
    let readme = readme_table();
    let declared: BTreeMap<String, String> = SETTINGS
        .iter()
        .map(|s| (s.env.to_owned(), s.default.to_owned()))
        .collect();
    let missing: Vec<_> = declared.keys().filter(|k| !readme.contains_key(*k)).collect();
    let unknown: Vec<_> = readme.keys().filter(|k| !declared.contains_key(*k)).collect();
    let differing: Vec<_> = declared
        .iter()
        .filter_map(|(k, d)| {
            readme
                .get(k)
                .filter(|r| *r != d)
                .map(|r| format!("{k}: README {r:?}, code {d:?}"))
        })
        .collect();
    assert!(
        missing.is_empty() && unknown.is_empty() && differing.is_empty(),
        "README.md's configuration table is out of step with config::SETTINGS:\n\
         missing from the README: {missing:?}\n\
         listed but not a setting: {unknown:?}\n\
         defaults that differ: {differing:?}"
    );
}
