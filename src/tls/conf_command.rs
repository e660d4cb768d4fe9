//! `ssl_conf_command` and `proxy_ssl_conf_command`: OpenSSL configuration commands
//! (`SSL_CONF_cmd`, file form, as nginx passes them) read into the rustls settings they stand
//! for (sans-IO: name and value in, a [`Tuning`] out).
//!
//! Hand-written: OpenSSL's command table has no Rust counterpart. Names are matched without
//! regard to case, as OpenSSL does in file form. What a command means here:
//! - applied: `CipherString`, `Ciphersuites`, `Groups`/`Curves`, `Protocol`, `MinProtocol`,
//!   `MaxProtocol`, `NumTickets`, and the `Options` `ServerPreference`, `PrioritizeChaCha`,
//!   `SessionTicket` (each with `-` to clear);
//! - already rustls' behaviour (nothing to do): the `Options` that forbid what rustls never
//!   does (renegotiation, compression, CBC's encrypt-then-MAC, middlebox compatibility...);
//! - skipped with a `[warn]`, as `ssl_ciphers` skips suites rustls lacks: what rustls cannot do
//!   (`KTLS`, legacy renegotiation, `RecordPadding`, `SignatureAlgorithms`, `DHParameters`);
//! - refused: commands that load certificates or change verification, which have nginx
//!   directives of their own, and what OpenSSL itself refuses (an unknown command, a bad value),
//!   with OpenSSL's words.

use rustls::CipherSuite;

use crate::config::model::TlsVersion;

/// Which side the commands configure (OpenSSL's `SSL_CONF_FLAG_SERVER`/`_CLIENT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `ssl_conf_command`.
    Server,
    /// `proxy_ssl_conf_command`.
    Client,
}

/// A command OpenSSL would refuse, in its words.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfCommandError {
    /// Not a command OpenSSL knows.
    #[error("SSL_CONF_cmd(\"{0}\", \"{1}\") failed (SSL: unknown cmd name:cmd={0})")]
    UnknownCommand(String, String),
    /// A value the command does not take.
    #[error("SSL_CONF_cmd(\"{0}\", \"{1}\") failed (SSL: bad value:cmd={0}, value={1})")]
    BadValue(String, String),
    /// A command with a directive of its own in nginx.
    #[error(
        "\"{0}\" of \"{directive}\" is not supported by ringproxy: use \"{1}\"",
        directive = "ssl_conf_command"
    )]
    UseDirective(String, &'static str),
}

/// What a list of commands changes, applied in order (a later command wins).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tuning {
    /// `CipherString`: replaces `ssl_ciphers`.
    pub cipher_string: Option<String>,
    /// `Ciphersuites`: the TLSv1.3 suites, in order (empty: TLSv1.3 off).
    pub tls13: Option<Vec<CipherSuite>>,
    /// `Groups`/`Curves`: replaces `ssl_ecdh_curve` (rustls' groups only).
    pub groups: Option<String>,
    /// `MinProtocol`.
    pub min: Option<TlsVersion>,
    /// `MaxProtocol`.
    pub max: Option<TlsVersion>,
    /// `Protocol`: versions switched on (`true`) or off.
    pub protocol: Vec<(TlsVersion, bool)>,
    /// `Options ServerPreference`.
    pub server_preference: Option<bool>,
    /// `Options PrioritizeChaCha`.
    pub prioritize_chacha: bool,
    /// `Options SessionTicket`.
    pub session_ticket: Option<bool>,
    /// `NumTickets`.
    pub num_tickets: Option<usize>,
    /// What was skipped, for a warning: (what, why).
    pub skipped: Vec<(String, &'static str)>,
}

/// Reads a list of commands.
pub fn tuning(commands: &[(String, String)], role: Role) -> Result<Tuning, ConfCommandError> {
    let mut t = Tuning::default();
    for (name, value) in commands {
        apply(&mut t, name, value, role)?;
    }
    Ok(t)
}

/// Applies one command to `t`.
pub fn apply(t: &mut Tuning, name: &str, value: &str, role: Role) -> Result<(), ConfCommandError> {
    let bad = || ConfCommandError::BadValue(name.to_string(), value.to_string());
    let skip = |t: &mut Tuning, why| t.skipped.push((name.to_string(), why));
    match name.to_ascii_lowercase().as_str() {
        "cipherstring" => {
            crate::tls::suites::from_cipher_string(value, false).map_err(|_| bad())?;
            t.cipher_string = Some(value.to_string());
        }
        "ciphersuites" => t.tls13 = Some(tls13_suites(t, value)),
        "groups" | "curves" => {
            let (known, unknown): (Vec<&str>, Vec<&str>) = value
                .split(':')
                .partition(|g| crate::tls::curve(g).is_some());
            if known.is_empty() {
                return Err(bad());
            }
            for g in unknown {
                t.skipped
                    .push((g.to_string(), "rustls does not implement it"));
            }
            t.groups = Some(known.join(":"));
        }
        "minprotocol" => t.min = Some(bound(value, TlsVersion::Tls12).ok_or_else(bad)?),
        "maxprotocol" => t.max = Some(bound(value, TlsVersion::Tls13).ok_or_else(bad)?),
        "protocol" => protocol(t, value).ok_or_else(bad)?,
        "options" => options(t, value, role).ok_or_else(bad)?,
        "numtickets" => t.num_tickets = Some(value.parse().map_err(|_| bad())?),
        "signaturealgorithms" | "clientsignaturealgorithms" => {
            skip(t, "rustls offers its own signature schemes")
        }
        "recordpadding" => skip(t, "rustls does not pad records"),
        "dhparameters" | "ecdhparameters" => skip(
            t,
            "rustls has no finite-field Diffie-Hellman; groups come from \"ssl_ecdh_curve\"",
        ),
        "serverinfofile" => skip(t, "rustls sends no serverinfo extensions"),
        "certificate" | "privatekey" | "chaincafile" | "chaincapath" | "chaincastore" => {
            return Err(ConfCommandError::UseDirective(
                name.to_string(),
                "ssl_certificate",
            ))
        }
        "verifymode" | "verifycafile" | "verifycapath" | "verifycastore" | "requestcafile"
        | "clientcafile" | "requestcapath" | "clientcapath" | "requestcastore"
        | "clientcastore" => {
            return Err(ConfCommandError::UseDirective(
                name.to_string(),
                "ssl_verify_client",
            ))
        }
        _ => {
            return Err(ConfCommandError::UnknownCommand(
                name.to_string(),
                value.to_string(),
            ))
        }
    }
    Ok(())
}

/// `Ciphersuites`: OpenSSL ignores names it does not know; here also those rustls lacks
/// (the CCM suites), with a warning.
fn tls13_suites(t: &mut Tuning, value: &str) -> Vec<CipherSuite> {
    let mut out = Vec::new();
    for name in value.split(':').filter(|n| !n.is_empty()) {
        let suite = match name {
            "TLS_AES_128_GCM_SHA256" => CipherSuite::TLS13_AES_128_GCM_SHA256,
            "TLS_AES_256_GCM_SHA384" => CipherSuite::TLS13_AES_256_GCM_SHA384,
            "TLS_CHACHA20_POLY1305_SHA256" => CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
            other => {
                t.skipped
                    .push((other.to_string(), "rustls does not implement it"));
                continue;
            }
        };
        if !out.contains(&suite) {
            out.push(suite);
        }
    }
    out
}

/// A protocol name of `MinProtocol`/`MaxProtocol`; versions below TLSv1.2 (and `None`)
/// stand for the end of rustls' range in that direction.
fn bound(value: &str, none: TlsVersion) -> Option<TlsVersion> {
    match value {
        "None" => Some(none),
        "SSLv3" | "TLSv1" | "TLSv1.1" | "TLSv1.2" => Some(TlsVersion::Tls12),
        "TLSv1.3" => Some(TlsVersion::Tls13),
        _ => None,
    }
}

/// `Protocol`: a list of `[+-]NAME`, `ALL` for every version.
fn protocol(t: &mut Tuning, value: &str) -> Option<()> {
    for word in value.split([',', ' ']).filter(|w| !w.is_empty()) {
        let (on, name) = match word.strip_prefix('-') {
            Some(rest) => (false, rest),
            None => (true, word.strip_prefix('+').unwrap_or(word)),
        };
        let versions: &[TlsVersion] = match name {
            "ALL" => &[TlsVersion::Tls12, TlsVersion::Tls13],
            "TLSv1.2" => &[TlsVersion::Tls12],
            "TLSv1.3" => &[TlsVersion::Tls13],
            "SSLv2" | "SSLv3" | "TLSv1" | "TLSv1.1" => &[],
            _ => return None,
        };
        t.protocol.extend(versions.iter().map(|v| (*v, on)));
    }
    Some(())
}

/// `Options`: a list of `[-]NAME` (case ignored, as OpenSSL).
fn options(t: &mut Tuning, value: &str, role: Role) -> Option<()> {
    for word in value.split([',', ' ']).filter(|w| !w.is_empty()) {
        let (on, name) = match word.strip_prefix('-') {
            Some(rest) => (false, rest),
            None => (true, word),
        };
        match (name.to_ascii_lowercase().as_str(), on) {
            ("serverpreference", _) if role == Role::Server => t.server_preference = Some(on),
            ("prioritizechacha", _) if role == Role::Server => t.prioritize_chacha = on,
            ("sessionticket", _) => t.session_ticket = Some(on),
            // What rustls never does, so forbidding it holds already; and the options of the
            // other side, which OpenSSL ignores too.
            ("serverpreference" | "prioritizechacha" | "antireplay", _)
            | ("compression" | "unsafelegacyrenegotiation" | "unsafelegacyserverconnect", false)
            | ("legacyserverconnect" | "clientrenegotiation" | "ktls", false)
            | ("norenegotiation" | "noresumptiononrenegotiation" | "encryptthenmac", _)
            | ("middleboxcompat" | "extendedmastersecret" | "bugs" | "emptyfragments", _)
            | ("dhsingle" | "ecdhsingle" | "canames" | "ignoreunexpectedeof", _)
            | ("allownodhekex" | "prefernodhekex", _) => {}
            ("compression", true) => t
                .skipped
                .push((word.to_string(), "rustls does not compress records")),
            ("unsafelegacyrenegotiation" | "unsafelegacyserverconnect", true)
            | ("legacyserverconnect" | "clientrenegotiation", true) => t
                .skipped
                .push((word.to_string(), "rustls never renegotiates")),
            ("ktls" | "ktlstxzerocopysendfile", true) => t
                .skipped
                .push((word.to_string(), "ringproxy does not use kernel TLS")),
            ("ktlstxzerocopysendfile", false) => {}
            _ => return None,
        }
    }
    Some(())
}

impl Tuning {
    /// The protocol list after `Protocol`, `MinProtocol` and `MaxProtocol` (an empty list
    /// when they leave nothing).
    pub fn versions(&self, base: &[TlsVersion]) -> Vec<TlsVersion> {
        let mut out = base.to_vec();
        for (v, on) in &self.protocol {
            out.retain(|x| x != v);
            if *on {
                out.push(*v);
            }
        }
        out.retain(|v| self.min.is_none_or(|m| *v >= m) && self.max.is_none_or(|m| *v <= m));
        out.sort();
        out
    }

    /// Orders a provider's suites: `Ciphersuites` replaces the TLSv1.3 ones (in its order),
    /// `chacha_first` moves the CHACHA20-POLY1305 suites to the front.
    pub fn suites(
        &self,
        suites: &[rustls::SupportedCipherSuite],
        chacha_first: bool,
    ) -> Vec<rustls::SupportedCipherSuite> {
        let tls12 = suites
            .iter()
            .filter(|s| s.version() == &rustls::version::TLS12);
        let mut out: Vec<_> = match &self.tls13 {
            Some(list) => list
                .iter()
                .filter_map(|id| {
                    rustls::crypto::aws_lc_rs::ALL_CIPHER_SUITES
                        .iter()
                        .find(|s| s.suite() == *id)
                })
                .chain(tls12)
                .copied()
                .collect(),
            None => suites.to_vec(),
        };
        if chacha_first {
            out.sort_by_key(|s| !is_chacha(s.suite()));
        }
        out
    }
}

/// Whether a suite is a CHACHA20-POLY1305 one (`PrioritizeChaCha`'s test of the client's
/// first suite).
pub fn is_chacha(suite: CipherSuite) -> bool {
    matches!(
        suite,
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
            | CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
            | CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(name: &str, value: &str) -> Result<Tuning, ConfCommandError> {
        tuning(&[(name.into(), value.into())], Role::Server)
    }

    #[test]
    fn openssl_refuses_unknown_commands_and_bad_values() {
        assert_eq!(
            one("Foo", "bar").unwrap_err().to_string(),
            "SSL_CONF_cmd(\"Foo\", \"bar\") failed (SSL: unknown cmd name:cmd=Foo)"
        );
        assert!(matches!(
            one("Options", "Bogus"),
            Err(ConfCommandError::BadValue(..))
        ));
        assert!(matches!(
            one("MinProtocol", "TLSv9"),
            Err(ConfCommandError::BadValue(..))
        ));
        assert!(matches!(
            one("Groups", "nope"),
            Err(ConfCommandError::BadValue(..))
        ));
    }

    #[test]
    fn options_are_read_without_regard_to_case_and_dash_clears() {
        let t = one(
            "options",
            "prioritizechacha,-SessionTicket,ServerPreference",
        )
        .unwrap();
        assert!(t.prioritize_chacha);
        assert_eq!(t.session_ticket, Some(false));
        assert_eq!(t.server_preference, Some(true));
        assert!(t.skipped.is_empty());
        let t = one("Options", "KTLS").unwrap();
        assert_eq!(t.skipped.len(), 1);
    }

    #[test]
    fn ciphersuites_skip_what_rustls_lacks_and_keep_order() {
        let t = one(
            "Ciphersuites",
            "TLS_AES_128_CCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256",
        )
        .unwrap();
        assert_eq!(
            t.tls13,
            Some(vec![
                CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
                CipherSuite::TLS13_AES_128_GCM_SHA256
            ])
        );
        assert_eq!(t.skipped[0].0, "TLS_AES_128_CCM_SHA256");
        let all = rustls::crypto::aws_lc_rs::ALL_CIPHER_SUITES;
        let ordered = t.suites(all, false);
        assert_eq!(
            ordered[0].suite(),
            CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
        );
        assert_eq!(ordered.len(), 2 + 6);
    }

    #[test]
    fn protocol_bounds_narrow_the_list() {
        let both = [TlsVersion::Tls12, TlsVersion::Tls13];
        assert_eq!(
            one("MinProtocol", "TLSv1.3").unwrap().versions(&both),
            [TlsVersion::Tls13]
        );
        assert_eq!(
            one("Protocol", "-ALL,TLSv1.2").unwrap().versions(&both),
            [TlsVersion::Tls12]
        );
        assert_eq!(
            one("MaxProtocol", "None").unwrap().versions(&both),
            both.to_vec()
        );
    }

    #[test]
    fn chacha_first_moves_chacha_suites_ahead() {
        let all = rustls::crypto::aws_lc_rs::ALL_CIPHER_SUITES;
        let ordered = Tuning::default().suites(all, true);
        assert!(ordered[..3].iter().all(|s| is_chacha(s.suite())));
        assert_eq!(ordered.len(), all.len());
    }

    #[test]
    fn certificates_and_verification_have_their_directives() {
        assert!(matches!(
            one("VerifyMode", "Require"),
            Err(ConfCommandError::UseDirective(_, "ssl_verify_client"))
        ));
    }
}
