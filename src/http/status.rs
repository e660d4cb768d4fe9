//! Status codes, their reason phrases and the error pages ringproxy sends itself.
//!
//! Place in the data flow: when the request head cannot be parsed, routed or proxied (client
//! bytes -> request head -> route -> upstream request -> response head -> body relay fails at
//! any step), the connection answers with one of these pages. Reason phrases and page bodies are
//! nginx's byte for byte (including its spellings "Request-URI Too Large", "Gateway Time-out",
//! "Not Allowed"), except that the signature line says `ringproxy` where nginx says `nginx`, so
//! clients and monitoring that match nginx's pages keep working.

/// nginx's internal status for "Request Header Or Cookie Too Large": sent on the wire as 400
/// with its own page (see [`wire_status`]).
pub const REQUEST_HEADER_TOO_LARGE: u16 = 494;

/// nginx's internal status for a client certificate that does not verify
/// (`NGX_HTTPS_CERT_ERROR`): sent as 400 with its own page.
pub const CERT_ERROR: u16 = 495;

/// nginx's internal status for `ssl_verify_client on` without a client certificate
/// (`NGX_HTTPS_NO_CERT`): sent as 400 with its own page.
pub const NO_CERT: u16 = 496;

/// nginx's internal status for a plain HTTP request on a TLS port (`NGX_HTTP_TO_HTTPS`): sent
/// on the wire as 400 with its own page.
pub const TO_HTTPS: u16 = 497;

/// The status that goes on the status line for an internal status (494 is sent as 400).
pub fn wire_status(status: u16) -> u16 {
    match status {
        REQUEST_HEADER_TOO_LARGE | CERT_ERROR | NO_CERT | TO_HTTPS => 400,
        s => s,
    }
}

/// The reason phrase nginx writes on the status line; `None` for a code it has no phrase for
/// (nginx then writes the bare code, e.g. `HTTP/1.1 299`).
pub fn reason(status: u16) -> Option<&'static str> {
    Some(match status {
        100 => "Continue",
        101 => "Switching Protocols",
        102 => "Processing",
        103 => "Early Hints",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 | REQUEST_HEADER_TOO_LARGE | CERT_ERROR | NO_CERT | TO_HTTPS => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Time-out",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Large",
        415 => "Unsupported Media Type",
        416 => "Requested Range Not Satisfiable",
        421 => "Misdirected Request",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Temporarily Unavailable",
        504 => "Gateway Time-out",
        505 => "HTTP Version Not Supported",
        507 => "Insufficient Storage",
        _ => return None,
    })
}

macro_rules! page {
    ($title:literal) => {
        page!($title, $title, "")
    };
    ($title:literal, $h1:literal, $extra:literal) => {
        concat!(
            "<html>\r\n<head><title>",
            $title,
            "</title></head>\r\n<body>\r\n<center><h1>",
            $h1,
            "</h1></center>\r\n",
            $extra,
            "<hr><center>ringproxy</center>\r\n</body>\r\n</html>\r\n"
        )
        .as_bytes()
    };
}

/// The HTML body nginx sends for an error status it generates itself, or `None` when nginx has
/// no page for it (the response then has an empty body).
pub fn error_page(status: u16) -> Option<&'static [u8]> {
    Some(match status {
        301 => page!("301 Moved Permanently"),
        302 => page!("302 Found"),
        303 => page!("303 See Other"),
        307 => page!("307 Temporary Redirect"),
        308 => page!("308 Permanent Redirect"),
        400 => page!("400 Bad Request"),
        401 => page!("401 Authorization Required"),
        403 => page!("403 Forbidden"),
        404 => page!("404 Not Found"),
        405 => page!("405 Not Allowed"),
        408 => page!("408 Request Time-out"),
        413 => page!("413 Request Entity Too Large"),
        414 => page!("414 Request-URI Too Large"),
        421 => page!("421 Misdirected Request"),
        REQUEST_HEADER_TOO_LARGE => page!(
            "400 Request Header Or Cookie Too Large",
            "400 Bad Request",
            "<center>Request Header Or Cookie Too Large</center>\r\n"
        ),
        CERT_ERROR => page!(
            "400 The SSL certificate error",
            "400 Bad Request",
            "<center>The SSL certificate error</center>\r\n"
        ),
        NO_CERT => page!(
            "400 No required SSL certificate was sent",
            "400 Bad Request",
            "<center>No required SSL certificate was sent</center>\r\n"
        ),
        TO_HTTPS => page!(
            "400 The plain HTTP request was sent to HTTPS port",
            "400 Bad Request",
            "<center>The plain HTTP request was sent to HTTPS port</center>\r\n"
        ),
        500 => page!("500 Internal Server Error"),
        501 => page!("501 Not Implemented"),
        502 => page!("502 Bad Gateway"),
        503 => page!("503 Service Temporarily Unavailable"),
        504 => page!("504 Gateway Time-out"),
        505 => page!("505 HTTP Version Not Supported"),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_gateway_page_is_nginx_with_our_name() {
        assert_eq!(
            error_page(502).unwrap(),
            b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>ringproxy</center>\r\n</body>\r\n</html>\r\n"
        );
    }

    #[test]
    fn header_too_large_is_sent_as_400_with_its_own_page() {
        assert_eq!(wire_status(REQUEST_HEADER_TOO_LARGE), 400);
        assert_eq!(reason(REQUEST_HEADER_TOO_LARGE), Some("Bad Request"));
        assert_eq!(
            error_page(REQUEST_HEADER_TOO_LARGE).unwrap(),
            b"<html>\r\n<head><title>400 Request Header Or Cookie Too Large</title></head>\r\n<body>\r\n<center><h1>400 Bad Request</h1></center>\r\n<center>Request Header Or Cookie Too Large</center>\r\n<hr><center>ringproxy</center>\r\n</body>\r\n</html>\r\n"
        );
    }

    #[test]
    fn every_required_status_has_a_page_and_reason() {
        for s in [400, 404, 414, 494, 497, 500, 502, 504, 505] {
            let page = std::str::from_utf8(error_page(s).unwrap()).unwrap();
            let title = format!("<html>\r\n<head><title>{} ", wire_status(s));
            assert!(page.starts_with(&title), "{s}");
            assert!(page.ends_with("<hr><center>ringproxy</center>\r\n</body>\r\n</html>\r\n"));
            assert!(reason(s).is_some());
        }
        assert_eq!(reason(414), Some("Request-URI Too Large"));
        assert_eq!(reason(504), Some("Gateway Time-out"));
        assert_eq!(error_page(200), None);
    }
}
