//! `config/ringproxy.conf` is the reference: it passes `-t` and names every directive ringproxy
//! implements (those accepted without effect are named in the README); README.md's compatibility table names every directive in the table with its
//! status, and the reason for each one accepted without effect.

mod common;

use std::path::Path;

use ringproxy::config::directives::{Handler, DIRECTIVES};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn reference_config_passes_t() {
    let p = root().to_str().unwrap();
    let out = common::run(&["-p", p, "-t"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
}

#[test]
fn reference_config_names_every_implemented_directive() {
    let text = std::fs::read_to_string(root().join("config/ringproxy.conf")).unwrap();
    let words: std::collections::HashSet<&str> = text
        .split(|c: char| c.is_whitespace() || c == '#' || c == ';' || c == ',')
        .collect();
    let missing: Vec<&str> = DIRECTIVES
        .iter()
        .filter(|s| !matches!(s.handler, Handler::Unsupported(_) | Handler::NoEffect(_)))
        .map(|s| s.name)
        .filter(|n| !words.contains(n))
        .collect();
    assert!(
        missing.is_empty(),
        "not in config/ringproxy.conf: {missing:?}"
    );
}

#[test]
fn readme_compatibility_table_is_true() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let mut problems = Vec::new();
    for spec in DIRECTIVES {
        let cell = format!("| `{}` |", spec.name);
        let Some(row) = readme.lines().find(|l| l.starts_with(&cell)) else {
            problems.push(format!("{}: no row", spec.name));
            continue;
        };
        let ok = match spec.handler {
            Handler::Unsupported(_) => row.contains("refused"),
            Handler::NoEffect(reason) => row.contains("no effect") && row.contains(reason),
            _ => row.contains("parsed") || row.contains("yes"),
        };
        if !ok {
            problems.push(format!(
                "{}: row does not match the table: {row}",
                spec.name
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
