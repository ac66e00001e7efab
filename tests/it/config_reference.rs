//! The README's configuration reference and `config/fasthook.toml` name the same keys, and
//! the file is one the gateway starts with.

use std::collections::BTreeSet;
use std::path::Path;

fn read(file: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file))
        .unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// `section.key` for every key of the file, the commented-out optional ones included
/// (`# key = value` lines inside a section).
fn file_keys(text: &str) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        let assignment = line.strip_prefix("# ").unwrap_or(line);
        if section.is_empty() || line.is_empty() {
            continue;
        }
        if let Some((key, _)) = assignment.split_once(" = ") {
            let is_key = key.chars().all(|c| c.is_ascii_lowercase() || c == '_');
            if is_key && (!line.starts_with('#') || assignment != line) {
                keys.insert(format!("{section}.{key}"));
            }
        }
    }
    keys
}

/// The keys of the README's reference table: its rows' first cells.
fn readme_keys(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once("` |"))
        .map(|(key, _)| key.to_string())
        .filter(|key| key.contains('.') && !key.contains(' '))
        .collect()
}

#[test]
fn the_readme_documents_every_key_of_the_config_file_and_no_other() {
    let file = read("config/fasthook.toml");
    let in_file = file_keys(&file);
    assert!(in_file.contains("server.listen") && in_file.contains("server.public_url"));
    let in_readme = readme_keys(&read("README.md"));
    assert_eq!(
        in_readme, in_file,
        "README rows vs config/fasthook.toml keys"
    );
    // The parsed file has exactly the keys the scan found (the commented-out ones aside).
    let parsed: toml::Table = file.parse().expect("the config file is TOML");
    let mut live = BTreeSet::new();
    for (section, table) in &parsed {
        for key in table.as_table().expect("sections").keys() {
            live.insert(format!("{section}.{key}"));
        }
    }
    assert!(live.is_subset(&in_file), "{live:?} vs {in_file:?}");
}
