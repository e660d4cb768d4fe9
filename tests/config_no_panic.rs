//! The configuration pipeline never panics: the fuzz target's property, run in the test suite on
//! deterministic mutations of every seed and golden configuration (byte flips, insertions,
//! deletions, truncations, splices), so CI checks it on every change. `cargo fuzz` (fuzz/) goes
//! further with coverage guidance.

use std::path::Path;

use ringproxy::config::{build, parser};

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b";",
    b"\"",
    b"'",
    b"\\",
    b"$",
    b"${",
    b"#",
    b"\n",
    b" ",
    b"location ~ (",
    b"map $a $b {",
    b"server {",
    b"listen [::1]:",
    b"proxy_pass http://",
    b"upstream u {",
    b"$1",
    b"include *;",
    b"hash $x consistent;",
    b"=",
    b"^~",
    b"~*",
    b"'' close;",
];

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(5) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = rng.next() as u8;
            }
            1 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                v.splice(at..at, t.iter().copied());
            }
            2 if !v.is_empty() => {
                let end = (at + rng.below(16)).min(v.len());
                v.drain(at.min(end)..end);
            }
            3 => v.truncate(at),
            _ => {
                let from = rng.below(v.len() + 1);
                let to = (from + rng.below(64)).min(v.len());
                let piece = v[from..to].to_vec();
                v.splice(at..at, piece);
            }
        }
    }
    v
}

fn corpus() -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    for dir in [
        root.join("tests/data/bad"),
        root.join("config"),
        root.join("tests/data/seed-configs"),
    ] {
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().and_then(|x| x.to_str()) == Some("conf") {
                out.push(std::fs::read(&p).unwrap());
            }
        }
    }
    assert!(out.len() >= 40, "corpus too small: {}", out.len());
    out
}

#[test]
fn mutated_configurations_never_panic() {
    let empty = tempfile::tempdir().unwrap();
    let opts = build::BuildOptions {
        prefix: empty.path().to_path_buf(),
        conf_dir: empty.path().to_path_buf(),
        is_root: false,
    };
    let corpus = corpus();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut ok, mut err) = (0, 0);
    for i in 0..20_000 {
        let input = mutate(&mut rng, &corpus[i % corpus.len()]);
        let text = String::from_utf8_lossy(&input);
        match parser::parse_str("/fuzz.conf", &text, empty.path()) {
            Ok(ast) => match build::build(&ast, &opts) {
                Ok(_) => ok += 1,
                Err(_) => err += 1,
            },
            Err(_) => err += 1,
        }
    }
    // Both outcomes must occur, or the mutations are not exercising anything.
    assert!(ok > 100 && err > 100, "ok {ok}, err {err}");
}
