//! `-T`: the configuration as nginx dumps it (every file read, main file first, each under a
//! `# configuration file PATH:` line), and the inverse, so a dump can be turned back into files.

use super::parser::Ast;

const HEADER: &[u8] = b"# configuration file ";

/// nginx's `-T` output for the files of `ast`.
pub fn dump(ast: &Ast) -> Vec<u8> {
    let mut out = Vec::new();
    for f in &ast.files {
        out.extend_from_slice(HEADER);
        out.extend_from_slice(f.path.as_bytes());
        out.extend_from_slice(b":\n");
        out.extend_from_slice(&f.text);
        out.push(b'\n');
    }
    out
}

/// Splits a dump back into `(path, contents)`. A file's contents are what follows its header up
/// to the newline `dump` added before the next header (or the end).
pub fn undump(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    // Headers start a line; find them all first.
    let mut starts = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(HEADER) && (i == 0 || bytes[i - 1] == b'\n') {
            starts.push(i);
        }
        match bytes[i..].iter().position(|&b| b == b'\n') {
            Some(n) => i += n + 1,
            None => break,
        }
    }
    let mut out = Vec::new();
    for (k, &s) in starts.iter().enumerate() {
        let line_end = s + bytes[s..]
            .iter()
            .position(|&b| b == b'\n')
            .unwrap_or(bytes.len() - s);
        let header = &bytes[s + HEADER.len()..line_end];
        let path =
            String::from_utf8_lossy(header.strip_suffix(b":").unwrap_or(header)).into_owned();
        let body_start = (line_end + 1).min(bytes.len());
        let body_end = starts.get(k + 1).copied().unwrap_or(bytes.len());
        let body = &bytes[body_start..body_end];
        let body = body.strip_suffix(b"\n").unwrap_or(body);
        out.push((path, body.to_vec()));
    }
    out
}
