//! HTTP Basic authentication as nginx's `ngx_http_auth_basic_user` and auth_basic module read
//! it: the user and password of an `Authorization: Basic` header ([`credentials`], also what
//! `$remote_user` shows), the password line of a user in an htpasswd file ([`find_user`]), and
//! whether a password matches it ([`password_matches`]).
//!
//! nginx checks `{PLAIN}`, `{SHA}`, `{SSHA}` and `$apr1$` itself and hands every other form to
//! crypt(3), which on Debian (libxcrypt) knows DES, `$1$`, `$5$`, `$6$`, bcrypt (`$2a$`, `$2b$`,
//! `$2y$`) and more; those go to the `sha-crypt` (`$5$`, `$6$`) and `crypt3_rs` crates here.
//! A form neither knows is a mismatch, as libxcrypt's failure token never equals the stored
//! string. Not known here although libxcrypt knows them: yescrypt (`$y$`, Debian's default for
//! system passwords, rare in htpasswd files), scrypt (`$7$`), `$sha1$`, `$md5`: a mismatch.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine as _};
use sha1::{Digest, Sha1};

/// nginx's `ngx_decode_base64`: the standard alphabet, padding optional, stray low bits kept.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(true),
);

/// nginx's base64 decoding: everything from the first `=` on is ignored.
fn decode(text: &[u8]) -> Option<Vec<u8>> {
    let end = text.iter().position(|&b| b == b'=').unwrap_or(text.len());
    LENIENT.decode(&text[..end]).ok()
}

/// The user and password of an `Authorization: Basic` value; `None` when nginx finds none
/// (another scheme, bad base64, no colon, an empty user).
pub fn credentials(authorization: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    const SCHEME: &[u8] = b"Basic ";
    if authorization.len() < SCHEME.len()
        || !authorization[..SCHEME.len()].eq_ignore_ascii_case(SCHEME)
    {
        return None;
    }
    let rest = &authorization[SCHEME.len()..];
    let start = rest.iter().position(|&b| b != b' ')?;
    let decoded = decode(&rest[start..])?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    if colon == 0 {
        return None;
    }
    // nginx reads both as C strings: a NUL ends them.
    let cut = |b: &[u8]| b.split(|&c| c == 0).next().unwrap_or(&[]).to_vec();
    Some((cut(&decoded[..colon]), cut(&decoded[colon + 1..])))
}

/// The stored password of `user` in an htpasswd file's contents, as nginx's parser finds it:
/// the first line `user:` starts (lines starting with `#` or CR are skipped), up to a CR, LF
/// or `:`.
pub fn find_user<'f>(file: &'f [u8], user: &[u8]) -> Option<&'f [u8]> {
    for line in file.split(|&b| b == b'\n') {
        if line.first().is_some_and(|&b| b == b'#' || b == b'\r') {
            continue;
        }
        let Some(rest) = line.strip_prefix(user).and_then(|r| r.strip_prefix(b":")) else {
            continue;
        };
        let end = rest
            .iter()
            .position(|&b| b == b'\r' || b == b':')
            .unwrap_or(rest.len());
        return Some(&rest[..end]);
    }
    None
}

/// Whether `password` matches the stored `hash` (nginx's `ngx_crypt`, then a string compare).
pub fn password_matches(password: &[u8], hash: &[u8]) -> bool {
    if let Some(plain) = hash.strip_prefix(b"{PLAIN}") {
        return plain == password;
    }
    if let Some(stored) = hash.strip_prefix(b"{SSHA}") {
        // As nginx: the salt is what follows the 20 digest bytes; a stored value that does not
        // decode has none.
        let salt = decode(stored)
            .filter(|d| d.len() >= 20)
            .map(|d| d[20..].to_vec())
            .unwrap_or_default();
        let mut h = Sha1::new();
        h.update(password);
        h.update(&salt);
        let mut out = h.finalize().to_vec();
        out.extend_from_slice(&salt);
        return base64::engine::general_purpose::STANDARD
            .encode(out)
            .as_bytes()
            == stored;
    }
    if let Some(stored) = hash.strip_prefix(b"{SHA}") {
        let digest = Sha1::digest(password);
        return base64::engine::general_purpose::STANDARD
            .encode(digest)
            .as_bytes()
            == stored;
    }
    let Ok(hash) = std::str::from_utf8(hash) else {
        return false;
    };
    // nginx passes the password to crypt(3) as a C string.
    let password = password.split(|&c| c == 0).next().unwrap_or(&[]);
    if hash.starts_with("$5$") || hash.starts_with("$6$") {
        // crypt3_rs refuses these without `rounds=`; RustCrypto's crate reads both forms.
        use sha_crypt::PasswordVerifier as _;
        return sha_crypt::ShaCrypt::default()
            .verify_password(password, hash)
            .is_ok();
    }
    crypt3_rs::unix::verify(password, hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_as_nginx_reads_them() {
        let b = |s: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(s)
            )
        };
        assert_eq!(
            credentials(b("u:p:q").as_bytes()),
            Some((b"u".to_vec(), b"p:q".to_vec()))
        );
        assert_eq!(
            credentials(b"bAsIc   dTpw"),
            Some((b"u".to_vec(), b"p".to_vec()))
        );
        assert_eq!(
            credentials(b("u:").as_bytes()),
            Some((b"u".to_vec(), vec![]))
        );
        assert_eq!(credentials(b(":p").as_bytes()), None);
        assert_eq!(credentials(b("up").as_bytes()), None);
        assert_eq!(credentials(b"Bearer dTpw"), None);
        assert_eq!(credentials(b"Basic d*pw"), None);
        assert_eq!(credentials(b"Basic "), None);
    }

    #[test]
    fn htpasswd_lines() {
        let f = b"# comment\n#u:x\r\nother:1\nu:secret:extra\nu:second\n";
        assert_eq!(find_user(f, b"u"), Some(&b"secret"[..]));
        assert_eq!(find_user(b"u:crlf\r\n", b"u"), Some(&b"crlf"[..]));
        assert_eq!(find_user(b"u:last", b"u"), Some(&b"last"[..]));
        assert_eq!(find_user(f, b"oth"), None);
        assert_eq!(find_user(f, b"nobody"), None);
    }

    #[test]
    fn formats() {
        // Made by libxcrypt's crypt(3) and `openssl passwd`, for the password "pw".
        let good: &[&str] = &[
            "{PLAIN}pw",
            "{SHA}GpHWL3ymc5liWkNopqtdSjuqYHM=",
            "{SSHA}K/qCHdTzr1rftXNEV4Ob7XsySBlzYWx0",
            "$apr1$abcdefgh$5VEbMkemELfbhC5ck.U.z1",
            "$1$saltsalt$6SNdNaZLKst2LlSm7oPPL1",
            "$5$saltsalt$0rl.MZtoLLPP3X0Rdl8riRnphIcAXJY27/aOAyK2hB5",
            "$6$rounds=5000$saltsalt$pauPrmdmG4BTE9h2HPmywiw152IFch6BJCEsaY6D.PLTfpV8sqvXwWdyfsgVgozkYH9B80bAip/08R2BPH2xk/",
            "$2y$05$abcdefghijklmnopqrstuuHIrMEWpUCQe2YqFR3sXwQ75u4od..9q",
            "abzlUXK5ed5rs",
        ];
        for h in good {
            assert!(password_matches(b"pw", h.as_bytes()), "{h}");
            assert!(!password_matches(b"px", h.as_bytes()), "{h}");
        }
        assert!(!password_matches(b"pw", b"$9$xyz"));
        assert!(!password_matches(b"pw", b""));
    }
}
