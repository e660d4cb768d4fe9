//! Cipher suites between OpenSSL's naming (what `ssl_ciphers`, `proxy_ssl_ciphers` and
//! `$ssl_cipher` use) and rustls' suites (sans-IO: strings in, suite lists out).
//!
//! rustls implements nine suites, all of OpenSSL's `HIGH` class with ECDHE key exchange: three
//! TLSv1.3 suites (which OpenSSL's cipher string never touches: `ssl_ciphers` only selects the
//! TLSv1.2 ones, as in nginx) and six TLSv1.2 ones. A cipher string is read as OpenSSL reads
//! it, restricted to those: suite names and the usual keywords (`HIGH`, `ECDHE`, `AESGCM`,
//! `aRSA`, ... and `A+B` intersections) add in order, `!X`/`-X` remove, `+X` and `@...` are
//! accepted. As OpenSSL, a word that selects nothing here (a suite rustls does not implement,
//! `AES128-SHA`, `DHE-RSA-...`, a class of them, `kEDH`, or a word OpenSSL would not know either)
//! is skipped; the caller
//! gets their list to warn about, and only a string that leaves TLSv1.2 nothing is an error.

use rustls::crypto::aws_lc_rs::ALL_CIPHER_SUITES;
use rustls::{CipherSuite, SupportedCipherSuite};

/// rustls' suites with their OpenSSL names, in rustls' default order of preference.
const NAMES: &[(CipherSuite, &str)] = &[
    (
        CipherSuite::TLS13_AES_256_GCM_SHA384,
        "TLS_AES_256_GCM_SHA384",
    ),
    (
        CipherSuite::TLS13_AES_128_GCM_SHA256,
        "TLS_AES_128_GCM_SHA256",
    ),
    (
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
        "TLS_CHACHA20_POLY1305_SHA256",
    ),
    (
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        "ECDHE-ECDSA-AES256-GCM-SHA384",
    ),
    (
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        "ECDHE-ECDSA-AES128-GCM-SHA256",
    ),
    (
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        "ECDHE-ECDSA-CHACHA20-POLY1305",
    ),
    (
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        "ECDHE-RSA-AES256-GCM-SHA384",
    ),
    (
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        "ECDHE-RSA-AES128-GCM-SHA256",
    ),
    (
        CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        "ECDHE-RSA-CHACHA20-POLY1305",
    ),
];

/// The OpenSSL name of a suite (`$ssl_cipher`).
pub fn openssl_name(suite: CipherSuite) -> Option<&'static str> {
    NAMES.iter().find(|(s, _)| *s == suite).map(|(_, n)| *n)
}

/// What a cipher string selects.
#[derive(Debug)]
pub struct Selection {
    /// The suites, in order of preference.
    pub suites: Vec<SupportedCipherSuite>,
    /// Words that selected nothing rustls implements, in order (for a warning).
    pub skipped: Vec<String>,
}

/// Why a cipher string cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CipherError {
    /// Nothing left for TLSv1.2 (OpenSSL's "no cipher match").
    #[error("no cipher match in \"{0}\"")]
    NoMatch(String),
}

/// Words that select nothing rustls has (key exchanges, MACs and classes it does not
/// implement); allowed anywhere, they match no suite.
const EMPTY_CLASSES: &[&str] = &[
    "aNULL",
    "eNULL",
    "NULL",
    "MD5",
    "RC4",
    "3DES",
    "DES",
    "EXPORT",
    "EXP",
    "LOW",
    "MEDIUM",
    "DSS",
    "aDSS",
    "PSK",
    "aPSK",
    "kPSK",
    "SRP",
    "CAMELLIA",
    "SEED",
    "IDEA",
    "RSA",
    "kRSA",
    "SHA1",
    "SHA",
    "DHE",
    "EDH",
    "kDHE",
    "kEDH",
    "ADH",
    "AECDH",
    // Fixed-ECDH authentication (ECDH-RSA-*, ECDH-ECDSA-*), gone since OpenSSL 1.1.0: not
    // ECDHE with ECDSA, so "!aECDH" (JupyterHub's documented list) leaves every suite.
    "aECDH",
    "DH",
    "CBC",
    "AESCCM",
    "ARIA",
    "SSLv3",
    "TLSv1",
    "TLSv1.0",
    "kECDHEPSK",
    "ECDHEPSK",
    "DHEPSK",
    "RSAPSK",
];

/// Whether the TLSv1.2 suite `name` is in the class `word`; `None` for an unknown word.
fn in_class(word: &str, name: &str) -> Option<bool> {
    Some(match word {
        "ALL"
        | "DEFAULT"
        | "HIGH"
        | "ECDHE"
        | "EECDH"
        | "kECDHE"
        | "kEECDH"
        | "TLSv1.2"
        | "AEAD"
        | "COMPLEMENTOFDEFAULT" => word != "COMPLEMENTOFDEFAULT",
        "ECDSA" | "aECDSA" => name.contains("-ECDSA-"),
        "aRSA" => name.contains("-RSA-"),
        "AESGCM" => name.contains("-GCM-"),
        "AES" => name.contains("-AES"),
        "AES128" => name.contains("-AES128-"),
        "AES256" => name.contains("-AES256-"),
        "CHACHA20" => name.contains("CHACHA20"),
        "SHA256" => name.ends_with("SHA256") || name.contains("CHACHA20"),
        "SHA384" => name.ends_with("SHA384"),
        w if EMPTY_CLASSES.contains(&w) => false,
        _ => return None,
    })
}

fn tls12_names() -> impl Iterator<Item = &'static str> {
    NAMES.iter().skip(3).map(|(_, n)| *n)
}

/// The TLSv1.2 suites `term` selects (`A+B` is the intersection); `None` when a word in it is a
/// suite rustls lacks or a word unknown here (it selects nothing).
fn select(term: &str) -> Option<Vec<&'static str>> {
    if let Some(n) = tls12_names().find(|n| *n == term) {
        return Some(vec![n]);
    }
    let mut out: Vec<&'static str> = tls12_names().collect();
    for word in term.split('+') {
        in_class(word, "ECDHE-RSA-AES128-GCM-SHA256")?;
        out.retain(|n| in_class(word, n) == Some(true));
    }
    Some(out)
}

/// The suites a cipher string allows, in its order of preference: TLSv1.3 suites always (first,
/// in rustls' order), then the TLSv1.2 ones the string selects. `tls12` says whether TLSv1.2 is
/// enabled (a string selecting nothing is then an error).
pub fn from_cipher_string(spec: &str, tls12: bool) -> Result<Selection, CipherError> {
    let mut chosen: Vec<&'static str> = Vec::new();
    let mut banned: Vec<&'static str> = Vec::new();
    let mut skipped = Vec::new();
    for term in spec
        .split([':', ',', ' '])
        .filter(|t| !t.is_empty() && !t.starts_with('@'))
    {
        // Exclusions of what is not here exclude nothing, harmlessly: not worth a warning.
        if let Some(rest) = term.strip_prefix('!') {
            banned.extend(select(rest).unwrap_or_default());
        } else if let Some(rest) = term.strip_prefix('-') {
            let gone = select(rest).unwrap_or_default();
            chosen.retain(|n| !gone.contains(n));
        } else if let Some(rest) = term.strip_prefix('+') {
            // Move to the end, in order.
            let moved = select(rest).unwrap_or_default();
            let (back, front): (Vec<_>, Vec<_>) = chosen.iter().partition(|n| moved.contains(n));
            chosen = front.into_iter().chain(back).collect();
        } else {
            let found = select(term).unwrap_or_default();
            if found.is_empty() {
                skipped.push(term.to_string());
            }
            for n in found {
                if !chosen.contains(&n) {
                    chosen.push(n);
                }
            }
        }
    }
    chosen.retain(|n| !banned.contains(n));
    if tls12 && chosen.is_empty() {
        return Err(CipherError::NoMatch(spec.to_string()));
    }
    let by_name = |name: &str| {
        let id = NAMES.iter().find(|(_, n)| *n == name).map(|(s, _)| *s);
        ALL_CIPHER_SUITES
            .iter()
            .find(|s| Some(s.suite()) == id)
            .copied()
    };
    let mut out: Vec<SupportedCipherSuite> = ALL_CIPHER_SUITES
        .iter()
        .filter(|s| matches!(s, SupportedCipherSuite::Tls13(_)))
        .copied()
        .collect();
    out.extend(chosen.into_iter().filter_map(by_name));
    Ok(Selection {
        suites: out,
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(spec: &str) -> Vec<&'static str> {
        from_cipher_string(spec, true)
            .unwrap()
            .suites
            .iter()
            .filter_map(|s| openssl_name(s.suite()))
            .collect()
    }

    #[test]
    fn nginx_default_selects_every_suite() {
        assert_eq!(names("HIGH:!aNULL:!MD5").len(), 9);
    }

    #[test]
    fn explicit_names_keep_their_order_after_tls13() {
        assert_eq!(
            names("ECDHE-RSA-CHACHA20-POLY1305:ECDHE-RSA-AES128-GCM-SHA256"),
            [
                "TLS_AES_256_GCM_SHA384",
                "TLS_AES_128_GCM_SHA256",
                "TLS_CHACHA20_POLY1305_SHA256",
                "ECDHE-RSA-CHACHA20-POLY1305",
                "ECDHE-RSA-AES128-GCM-SHA256"
            ]
        );
    }

    #[test]
    fn keywords_intersect_and_exclude() {
        let n = names("ECDHE+AESGCM:!ECDSA");
        assert_eq!(
            &n[3..],
            ["ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-RSA-AES128-GCM-SHA256"]
        );
    }

    #[test]
    fn suites_rustls_lacks_are_skipped_and_named() {
        // Mozilla's "intermediate" list of its day, as real configurations carry it.
        let s = from_cipher_string(
            "ECDHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES128-GCM-SHA256:AES128-SHA:kEDH+AESGCM",
            true,
        )
        .unwrap();
        let names: Vec<_> = s
            .suites
            .iter()
            .filter_map(|s| openssl_name(s.suite()))
            .collect();
        assert_eq!(&names[3..], ["ECDHE-RSA-AES128-GCM-SHA256"]);
        assert_eq!(
            s.skipped,
            ["DHE-RSA-AES128-GCM-SHA256", "AES128-SHA", "kEDH+AESGCM"]
        );
        let s = from_cipher_string("HIGH:!DHE-RSA-AES128-SHA", true).unwrap();
        assert!(s.skipped.is_empty(), "an exclusion of nothing is no news");
        assert!(matches!(
            from_cipher_string("AES128-SHA:DHE-RSA-AES256-SHA", true),
            Err(CipherError::NoMatch(_))
        ));
    }

    #[test]
    fn a_ecdh_selects_nothing_as_with_openssl() {
        let n = names("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:!aECDH");
        assert_eq!(
            &n[3..],
            [
                "ECDHE-ECDSA-AES128-GCM-SHA256",
                "ECDHE-RSA-AES128-GCM-SHA256"
            ]
        );
        assert!(matches!(
            from_cipher_string("aECDH", true),
            Err(CipherError::NoMatch(_))
        ));
    }

    #[test]
    fn nothing_left_is_no_match_unless_tls12_is_off() {
        assert!(matches!(
            from_cipher_string("HIGH:!ECDHE", true),
            Err(CipherError::NoMatch(_))
        ));
        assert_eq!(
            from_cipher_string("HIGH:!ECDHE", false)
                .unwrap()
                .suites
                .len(),
            3
        );
    }
}
