//! Private keys encrypted with a passphrase (`ssl_password_file`, `proxy_ssl_password_file`).
//!
//! nginx reads the password file once, when the configuration is read (it may be a pipe), and
//! tries each of its lines in turn on every encrypted key of that level. OpenSSL 3 writes
//! encrypted keys as PKCS#8 `ENCRYPTED PRIVATE KEY` (PBES2), which is read here; the legacy
//! `Proc-Type: 4,ENCRYPTED` PEM (OpenSSL 1.x's `-aes128` on a traditional key, MD5-derived
//! keys) is refused with a clear error naming the conversion.

use std::path::Path;

use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// The passwords of a password file, in order (empty: no file).
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Passwords(Vec<Vec<u8>>);

impl std::fmt::Debug for Passwords {
    // Never printed: configuration dumps and debug output show how many there are.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Passwords({} hidden)", self.0.len())
    }
}

/// Reads a password file: one password per line (CR or LF ends a line; empty lines are
/// skipped), as nginx's `ngx_ssl_read_password_file`.
pub fn read_password_file(path: &Path) -> Result<Passwords, String> {
    let bytes = std::fs::read(path).map_err(|e| {
        format!(
            "open() \"{}\" failed ({})",
            path.display(),
            crate::config::os_error(&e)
        )
    })?;
    let lines: Vec<Vec<u8>> = bytes
        .split(|&b| b == b'\r' || b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    if lines.is_empty() {
        return Err(format!("no passwords in \"{}\"", path.display()));
    }
    Ok(Passwords(lines))
}

/// The DER of the first PEM section labelled `label`.
fn pem_section(text: &[u8], label: &str) -> Option<Result<Vec<u8>, String>> {
    use base64::Engine;
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let text = std::str::from_utf8(text).ok()?;
    let start = text.find(&begin)? + begin.len();
    let Some(len) = text[start..].find(&end) else {
        return Some(Err(format!("no \"{end}\" line")));
    };
    let body: String = text[start..start + len]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    Some(
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|e| format!("invalid PEM ({e})")),
    )
}

/// An encrypted key in `pem`, decrypted with the first of `passwords` that opens it; `None`
/// when the file holds no encrypted key.
pub fn decrypt(
    pem: &[u8],
    passwords: &Passwords,
) -> Option<Result<PrivateKeyDer<'static>, String>> {
    if pem
        .windows(b"Proc-Type: 4,ENCRYPTED".len())
        .any(|w| w == b"Proc-Type: 4,ENCRYPTED")
    {
        return Some(Err("a key encrypted in the legacy PEM format (\"Proc-Type: 4,ENCRYPTED\") is not supported, convert it with \"openssl pkcs8 -topk8\"".into()));
    }
    let der = match pem_section(pem, "ENCRYPTED PRIVATE KEY")? {
        Ok(d) => d,
        Err(e) => return Some(Err(e)),
    };
    Some(open(&der, passwords))
}

fn open(der: &[u8], passwords: &Passwords) -> Result<PrivateKeyDer<'static>, String> {
    let info = pkcs8::EncryptedPrivateKeyInfo::try_from(der)
        .map_err(|e| format!("cannot parse the encrypted key ({e})"))?;
    if passwords.0.is_empty() {
        return Err("the key is encrypted and no password file is given".into());
    }
    passwords
        .0
        .iter()
        .find_map(|p| info.decrypt(p).ok())
        .map(|doc| PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(doc.as_bytes().to_vec())))
        .ok_or_else(|| "no password of the password file decrypts the key".into())
}
