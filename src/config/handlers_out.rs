//! Handlers of the directives that shape the response head (`expires`, `charset`,
//! `proxy_cookie_*`, `gzip_static`) and of those accepted only in the values that change
//! nothing here (`aio`, `proxy_cache off`). Each refuses what nginx refuses, in nginx's words.

use super::directives::{err, invalid_value};
use super::error::Result;
use super::parser::Directive;

/// `aio on | off | threads[=pool]`: nginx's checks. Only the `default` pool can exist, since
/// `thread_pool` is refused.
pub(crate) fn aio(d: &Directive) -> Result<()> {
    let v = d.arg(0);
    match v {
        "on" | "off" | "threads" => Ok(()),
        _ => match v.strip_prefix("threads=") {
            Some("default") => Ok(()),
            Some(pool) => Err(err(d, format!("unknown thread pool \"{pool}\""))),
            None => Err(invalid_value(d)),
        },
    }
}

/// `proxy_cache off` only: a zone would need the cache ringproxy does not have.
pub(crate) fn proxy_cache(d: &Directive) -> Result<()> {
    if d.arg(0) == "off" {
        return Ok(());
    }
    Err(err(
        d,
        "\"proxy_cache\" directive is not supported by ringproxy: ringproxy has no cache",
    ))
}
