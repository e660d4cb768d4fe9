//! `config/ringproxy.conf` is the reference: it passes `-t` and names every directive ringproxy
//! implements (those accepted without effect are named in the README). README.md's
//! compatibility table names every directive in the table with its status, and the reason for
//! each one accepted without effect. A row that says "yes" (in effect) must name a behaviour
//! test: some test in `tests/` or `src/` is marked `// effect: NAME` right above its `#[test]`
//! (or `#[tokio::test]`, `#[monoio::test]`) and fails when that directive's effect is removed.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use ringproxy::config::directives::{all, Handler, NOT_IN_EFFECT_YET};

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
    let words: BTreeSet<&str> = text
        .split(|c: char| c.is_whitespace() || c == '#' || c == ';' || c == ',')
        .collect();
    let missing: Vec<&str> = all()
        .filter(|s| {
            !matches!(
                s.handler,
                Handler::Unsupported(_) | Handler::NoEffect(_) | Handler::NoEffectChecked(..)
            )
        })
        .map(|s| s.name)
        .filter(|n| !words.contains(n))
        .collect();
    assert!(
        missing.is_empty(),
        "not in config/ringproxy.conf: {missing:?}"
    );
}

/// The status cell of the README row for `name`, if there is one.
fn readme_status<'a>(readme: &'a str, name: &str) -> Option<&'a str> {
    row_status(readme, &format!("`{name}`"))
}

/// The status column of the row whose first cell is `cell`.
fn row_status<'a>(readme: &'a str, cell: &str) -> Option<&'a str> {
    let cell = format!("| {cell} |");
    let row = readme.lines().find(|l| l.starts_with(&cell))?;
    row.trim_end_matches('|').rsplit('|').next().map(str::trim)
}

#[test]
fn readme_compatibility_table_is_true() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let mut problems = Vec::new();
    let stream = ringproxy::config::stream_directives::STREAM_DIRECTIVES;
    for spec in all() {
        // A stream directive with an http namesake has a row of its own, `name` (stream).
        let own = stream
            .iter()
            .any(|s| std::ptr::eq(s, spec))
            .then(|| row_status(&readme, &format!("`{}` (stream)", spec.name)))
            .flatten();
        let Some(status) = own.or_else(|| readme_status(&readme, spec.name)) else {
            problems.push(format!("{}: no row", spec.name));
            continue;
        };
        let ok = match spec.handler {
            Handler::Unsupported(_) => status.starts_with("refused"),
            Handler::NoEffect(reason) | Handler::NoEffectChecked(reason, _) => {
                status.starts_with("accepted, no effect") && status.contains(reason)
            }
            _ if NOT_IN_EFFECT_YET.contains(&spec.name) => {
                status.starts_with("parsed and validated; no effect yet")
            }
            _ => status == "yes" || status.starts_with("yes:"),
        };
        if !ok {
            problems.push(format!("{}: the row says {status:?}", spec.name));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Directive name -> the tests marked `// effect: name` (as `file:line fn`). A marker must sit
/// right above a test attribute (doc comments and other attributes may come between).
fn effect_markers() -> (BTreeMap<String, Vec<String>>, Vec<String>) {
    let mut files = Vec::new();
    sources(&root().join("tests"), &mut files);
    sources(&root().join("src"), &mut files);
    let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut misplaced = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let rel = f.strip_prefix(root()).unwrap().display().to_string();
        for (i, line) in lines.iter().enumerate() {
            let Some(names) = line.trim().strip_prefix("// effect:") else {
                continue;
            };
            let rest = lines[i + 1..]
                .iter()
                .map(|l| l.trim())
                .skip_while(|l| l.starts_with("// effect:") || l.starts_with("///"));
            let mut attrs = rest.take_while(|l| l.starts_with("#["));
            let is_test = attrs.any(|a| {
                a.starts_with("#[test]")
                    || a.starts_with("#[tokio::test")
                    || a.starts_with("#[monoio::test")
            });
            if !is_test {
                misplaced.push(format!("{rel}:{}", i + 1));
                continue;
            }
            for name in names.split_whitespace() {
                found
                    .entry(name.trim_end_matches(',').to_string())
                    .or_default()
                    .push(format!("{rel}:{}", i + 1));
            }
        }
    }
    (found, misplaced)
}

#[test]
fn every_directive_in_effect_has_a_behaviour_test() {
    let (markers, misplaced) = effect_markers();
    assert!(
        misplaced.is_empty(),
        "`// effect:` markers not above a test: {misplaced:?}"
    );
    let known: BTreeSet<&str> = all().map(|s| s.name).collect();
    let unknown: Vec<&String> = markers
        .keys()
        .filter(|k| !known.contains(k.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "markers name unknown directives: {unknown:?}"
    );
    let in_effect: BTreeSet<&str> = all()
        .filter(|s| {
            !matches!(
                s.handler,
                Handler::Unsupported(_) | Handler::NoEffect(_) | Handler::NoEffectChecked(..)
            )
        })
        .map(|s| s.name)
        .filter(|n| !NOT_IN_EFFECT_YET.contains(n))
        .collect();
    let untested: Vec<&&str> = in_effect
        .iter()
        .filter(|n| !markers.contains_key(**n))
        .collect();
    assert!(
        untested.is_empty(),
        "{} directives said to be in effect have no test marked `// effect: NAME`: {untested:?}",
        untested.len()
    );
    let not_yet: Vec<&String> = markers
        .keys()
        .filter(|k| NOT_IN_EFFECT_YET.contains(&k.as_str()))
        .collect();
    assert!(
        not_yet.is_empty(),
        "marked as tested but listed as not in effect yet: {not_yet:?}"
    );
}
