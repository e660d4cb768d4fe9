//! Golden tests: every `tests/data/bad/*.conf` is refused by `ringproxy -t` with exactly the
//! message in its `.expected` file (nginx's words and line; `$DIR` stands for the directory).
//! All but the ones listed in `ringproxy-only.txt` were checked against nginx 1.22 with
//! `scripts/check-golden-nginx.sh`.

mod common;

use std::path::Path;

#[test]
fn every_bad_config_fails_with_its_exact_message() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/bad");
    let dir = common::copy_tree(&data);
    let dir_str = dir.path().to_str().expect("utf-8 temp path");
    let mut checked = 0;
    let mut failures = Vec::new();
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("conf") {
            continue;
        }
        let name = path.file_name().unwrap().to_str().unwrap();
        let expected = std::fs::read_to_string(path.with_extension("expected"))
            .unwrap_or_else(|_| panic!("{name} has no .expected file"))
            .trim_end()
            .replace("$DIR", dir_str);
        let out = common::run(&["-p", dir_str, "-c", name, "-t"]);
        let err = common::stderr(&out);
        let first = err.lines().next().unwrap_or("");
        let last = err.lines().last().unwrap_or("");
        let want_last = format!("ringproxy: configuration file {dir_str}/{name} test failed");
        if out.status.code() != Some(1) || first != expected || last != want_last {
            failures.push(format!(
                "{name}: exit {:?}\n  want: {expected}\n  got:  {first}\n  last: {last}",
                out.status.code()
            ));
        }
        checked += 1;
    }
    assert!(checked >= 40, "only {checked} golden configs found");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
