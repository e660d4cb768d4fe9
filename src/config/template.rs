//! Complex values: strings with `$name`, `${name}` and `$1`..`$9`, compiled once at config time,
//! and the registry of variable names ringproxy knows.
//!
//! nginx compiles every argument that may hold variables into a script; an unknown name is an
//! error after the whole configuration is read (`unknown "x" variable`, no line, as nginx says
//! it). Evaluation happens per request in `http/vars.rs`; this module only parses and checks.

use std::collections::BTreeSet;
use std::fmt;

/// A piece of a complex value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Part {
    /// Text copied as is.
    Literal(String),
    /// A variable by name, without `$` (lowercase, as nginx compares names case-insensitively).
    Var(String),
    /// A regex capture `$1`..`$9` (`$0` is the whole match).
    Capture(u8),
}

/// A compiled complex value.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Template {
    /// The pieces in order.
    pub parts: Vec<Part>,
}

impl Template {
    /// Compiles `src`, or returns nginx's error text.
    pub fn parse(src: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let bytes = src.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] != b'$' {
                let next = src[i..].find('$').map_or(src.len(), |n| i + n);
                lit.push_str(&src[i..next]);
                i = next;
                continue;
            }
            i += 1;
            if i < bytes.len() && bytes[i].is_ascii_digit() {
                if !lit.is_empty() {
                    parts.push(Part::Literal(std::mem::take(&mut lit)));
                }
                parts.push(Part::Capture(bytes[i] - b'0'));
                i += 1;
                continue;
            }
            let (name, next) = if i < bytes.len() && bytes[i] == b'{' {
                let close = src[i..].find('}').ok_or_else(|| {
                    format!(
                        "the closing bracket in \"{}\" variable is missing",
                        &src[i + 1..]
                    )
                })?;
                (&src[i + 1..i + close], i + close + 1)
            } else {
                let end = src[i..]
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .map_or(src.len(), |n| i + n);
                (&src[i..end], end)
            };
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(format!("invalid variable name \"{src}\""));
            }
            if !lit.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut lit)));
            }
            parts.push(Part::Var(name.to_ascii_lowercase()));
            i = next;
        }
        if !lit.is_empty() || parts.is_empty() {
            parts.push(Part::Literal(lit));
        }
        Ok(Template { parts })
    }

    /// A template with no variables: its text.
    pub fn as_literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [Part::Literal(s)] => Some(s),
            _ => None,
        }
    }

    /// Variable names used (without `$`).
    pub fn vars(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(v) => Some(v.as_str()),
            _ => None,
        })
    }

    /// Whether it uses regex captures.
    pub fn has_captures(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Capture(_)))
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.parts {
            match p {
                Part::Literal(s) => f.write_str(s)?,
                Part::Var(v) => write!(f, "${{{v}}}")?,
                Part::Capture(n) => write!(f, "${n}")?,
            }
        }
        Ok(())
    }
}

/// Built-in variables ringproxy evaluates (nginx names; see the README's compatibility table).
pub const BUILTIN_VARS: &[&str] = &[
    "args",
    "binary_remote_addr",
    "body_bytes_sent",
    "bytes_sent",
    "connection",
    "connection_requests",
    "content_length",
    "content_type",
    "document_root",
    "document_uri",
    "gzip_ratio",
    "host",
    "hostname",
    "https",
    "is_args",
    "limit_conn_status",
    "limit_req_status",
    "msec",
    "nginx_version",
    "pid",
    "proxy_add_x_forwarded_for",
    "proxy_host",
    "proxy_port",
    "proxy_protocol_addr",
    "proxy_protocol_port",
    "proxy_protocol_server_addr",
    "proxy_protocol_server_port",
    "query_string",
    "realip_remote_addr",
    "realip_remote_port",
    "remote_addr",
    "remote_port",
    "remote_user",
    "request",
    "request_filename",
    "request_id",
    "request_length",
    "request_method",
    "request_time",
    "request_uri",
    "scheme",
    "server_addr",
    "server_name",
    "server_port",
    "server_protocol",
    "ssl_cipher",
    "ssl_protocol",
    "ssl_early_data",
    "ssl_server_name",
    "ssl_session_reused",
    "ssl_client_verify",
    "ssl_client_s_dn",
    "ssl_client_i_dn",
    "ssl_client_s_dn_legacy",
    "ssl_client_i_dn_legacy",
    "ssl_client_serial",
    "ssl_client_fingerprint",
    "ssl_client_cert",
    "ssl_client_raw_cert",
    "ssl_client_escaped_cert",
    "ssl_client_v_start",
    "ssl_client_v_end",
    "ssl_client_v_remain",
    "status",
    "time_iso8601",
    "time_local",
    "upstream_addr",
    "upstream_bytes_received",
    "upstream_bytes_sent",
    "upstream_connect_time",
    "upstream_header_time",
    "upstream_response_time",
    "upstream_status",
    "uri",
];

/// Prefixes of variable families (`$http_user_agent`, `$arg_id`, ...).
pub const PREFIX_VARS: &[&str] = &["arg_", "cookie_", "http_", "sent_http_", "upstream_http_"];

/// Variables nginx has that ringproxy does not evaluate: an explicit error beats an empty value.
pub const UNSUPPORTED_VARS: &[&str] = &[
    "request_body",
    "request_body_file",
    "request_completion",
    "realpath_root",
    "limit_rate",
    "pipe",
    "upstream_cache_status",
    "upstream_response_length",
    "ssl_session_id",
    "connection_time",
];

/// The set of names a configuration may use: built-ins plus what `map` and `set` define.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VarRegistry {
    defined: BTreeSet<String>,
}

/// Why a variable name is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VarCheck {
    /// Known and evaluated.
    Ok,
    /// nginx has it, ringproxy does not evaluate it.
    Unsupported,
    /// Nobody defines it.
    Unknown,
}

impl VarRegistry {
    /// Adds a name defined by `map` or `set` (without `$`).
    pub fn define(&mut self, name: &str) {
        self.defined.insert(name.to_ascii_lowercase());
    }

    /// Whether `name` (without `$`) was defined by the configuration.
    pub fn is_defined(&self, name: &str) -> bool {
        self.defined.contains(name)
    }

    /// Checks one name (lowercase, without `$`).
    pub fn check(&self, name: &str) -> VarCheck {
        if self.defined.contains(name) || BUILTIN_VARS.contains(&name) {
            return VarCheck::Ok;
        }
        if PREFIX_VARS
            .iter()
            .any(|p| name.len() > p.len() && name.starts_with(p))
        {
            return VarCheck::Ok;
        }
        if UNSUPPORTED_VARS.contains(&name) || name.starts_with("tcpinfo_") {
            return VarCheck::Unsupported;
        }
        VarCheck::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vars_braces_and_captures() {
        let t = Template::parse("$host:${server_port}x/$1").unwrap();
        assert_eq!(
            t.parts,
            vec![
                Part::Var("host".into()),
                Part::Literal(":".into()),
                Part::Var("server_port".into()),
                Part::Literal("x/".into()),
                Part::Capture(1),
            ]
        );
        assert_eq!(
            Template::parse("upgrade").unwrap().as_literal(),
            Some("upgrade")
        );
        assert_eq!(Template::parse("").unwrap().as_literal(), Some(""));
        assert!(Template::parse("a$").is_err());
        assert!(Template::parse("${a").is_err());
        assert_eq!(
            Template::parse("$Http_Upgrade")
                .unwrap()
                .vars()
                .collect::<Vec<_>>(),
            ["http_upgrade"]
        );
    }

    #[test]
    fn display_round_trips() {
        for s in ["$host:$server_port", "a${b}c$1", "plain", ""] {
            let t = Template::parse(s).unwrap();
            assert_eq!(Template::parse(&t.to_string()).unwrap(), t);
        }
    }

    #[test]
    fn registry() {
        let mut r = VarRegistry::default();
        assert_eq!(r.check("connection_upgrade"), VarCheck::Unknown);
        r.define("connection_upgrade");
        assert_eq!(r.check("connection_upgrade"), VarCheck::Ok);
        assert_eq!(r.check("http_upgrade"), VarCheck::Ok);
        assert_eq!(r.check("http_"), VarCheck::Unknown);
        assert_eq!(r.check("request_body"), VarCheck::Unsupported);
    }
}
