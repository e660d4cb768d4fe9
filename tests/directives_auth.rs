//! HTTP Basic authentication and `satisfy` through a running ringproxy (one shard), as nginx
//! 1.22 answers them (`ngx_http_auth_basic_module.c`, `ngx_crypt.c`, the access phase of
//! `ngx_http_core_module.c`; nginx-tests `auth_basic.t`, `access.t`): the 401 with its
//! challenge, the error-log lines, the htpasswd formats nginx on Debian accepts, a missing or
//! unreadable user file, `$remote_user`, and `allow`/`deny` combined with `auth_basic` under
//! `satisfy all` and `satisfy any`.

mod common;
mod directive_kit;

use base64::Engine as _;
use common::{read_head, Proxy};
use directive_kit::{read_response, read_to_end_within, send, wait_for, Backend, End, T};
use tokio::io::AsyncWriteExt;

/// A backend answering each request with the head it received as the body.
async fn mirror() -> Backend {
    Backend::start(|mut s| async move {
        while let Some(head) = read_head(&mut s).await {
            let r = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{head}",
                head.len()
            );
            if s.write_all(r.as_bytes()).await.is_err() {
                return;
            }
        }
    })
    .await
}

/// Hashes of the password `pw` in each form, made by libxcrypt's crypt(3) (what nginx calls
/// on Debian), `openssl passwd -apr1` and the `{SHA}`/`{SSHA}` definitions.
const USERS: &[(&str, &str)] = &[
    ("plain", "{PLAIN}pw"),
    ("sha", "{SHA}GpHWL3ymc5liWkNopqtdSjuqYHM="),
    ("ssha", "{SSHA}K/qCHdTzr1rftXNEV4Ob7XsySBlzYWx0"),
    ("apr1", "$apr1$abcdefgh$5VEbMkemELfbhC5ck.U.z1"),
    ("md5", "$1$saltsalt$6SNdNaZLKst2LlSm7oPPL1"),
    ("sha256", "$5$saltsalt$0rl.MZtoLLPP3X0Rdl8riRnphIcAXJY27/aOAyK2hB5"),
    (
        "sha512",
        "$6$rounds=5000$saltsalt$pauPrmdmG4BTE9h2HPmywiw152IFch6BJCEsaY6D.PLTfpV8sqvXwWdyfsgVgozkYH9B80bAip/08R2BPH2xk/",
    ),
    (
        "bcrypt",
        "$2y$05$abcdefghijklmnopqrstuuHIrMEWpUCQe2YqFR3sXwQ75u4od..9q",
    ),
    ("des", "abzlUXK5ed5rs"),
];

/// The htpasswd file of these tests: a comment, then `USERS`.
fn htpasswd() -> String {
    let mut f = String::from("# users of the auth tests\n");
    for (u, h) in USERS {
        f.push_str(&format!("{u}:{h}\n"));
    }
    f
}

/// A one-shard ringproxy whose server holds `server` and proxies `location / { location }`
/// (plus `/open/` without authentication) to `backend`, passing `$remote_user` as `X-User`;
/// `htpasswd` written beside the configuration.
fn proxy(server: &str, location: &str, backend: &Backend) -> Proxy {
    let port = common::free_port();
    let b = backend.addr;
    let conf = format!(
        "worker_processes 1;\nerror_log logs/error.log info;\nevents {{}}\nhttp {{\n    access_log off;\n    server {{\n        listen 127.0.0.1:{port};\n        server_name auth.test;\n        {server}\n        location / {{\n            proxy_pass http://{b};\n            proxy_set_header X-User $remote_user;\n            {location}\n            location /open/ {{ proxy_pass http://{b}; proxy_set_header X-User $remote_user; auth_basic off; }}\n        }}\n    }}\n}}\n"
    );
    let p = Proxy::start(&conf, port, "", &[]);
    std::fs::write(p.dir.path().join("htpasswd"), htpasswd()).unwrap();
    p
}

fn basic(user: &str, pass: &str) -> String {
    let t = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    format!("Authorization: Basic {t}\r\n")
}

/// One `GET path` with `extra` header lines on a connection that closes after it.
async fn get(p: &Proxy, path: &str, extra: &str) -> String {
    let raw = format!("GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n{extra}\r\n");
    let mut s = send(p.port, raw.as_bytes()).await;
    let (got, end) = read_to_end_within(&mut s, T).await;
    assert_eq!(end, Some(End::Eof), "not closed in time");
    String::from_utf8_lossy(&got).into_owned()
}

fn status(resp: &str) -> &str {
    resp.get(9..12).unwrap_or("")
}

fn error_log(p: &Proxy) -> String {
    std::fs::read_to_string(p.dir.path().join("logs/error.log")).unwrap_or_default()
}

// effect: auth_basic auth_basic_user_file
/// No credentials, a wrong password and an unknown user get the 401 with the realm (its
/// variables rendered) and nginx's log lines, on a connection that stays open; the right
/// password is proxied with `$remote_user`; `auth_basic off` lets a nested location through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_challenges_and_admits() {
    let b = mirror().await;
    let p = proxy(
        "auth_basic \"Zone $server_name\"; auth_basic_user_file htpasswd;",
        "",
        &b,
    );
    let mut s = send(p.port, b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let r = read_response(&mut s).await;
    assert_eq!(status(&r), "401", "{r}");
    assert!(
        r.contains("\r\nWWW-Authenticate: Basic realm=\"Zone auth.test\"\r\n"),
        "{r}"
    );
    assert!(r.contains("401 Authorization Required"), "{r}");
    // The same connection: nginx keeps it after a 401.
    let raw = format!("GET /x HTTP/1.1\r\nHost: a\r\n{}\r\n", basic("md5", "pw"));
    s.write_all(raw.as_bytes()).await.unwrap();
    let r = read_response(&mut s).await;
    assert_eq!(status(&r), "200", "{r}");
    assert!(r.contains("X-User: md5\r\n"), "{r}");
    assert!(!r.contains("WWW-Authenticate"), "{r}");

    let r = get(&p, "/x", &basic("md5", "wrong")).await;
    assert_eq!(status(&r), "401", "{r}");
    assert!(
        r.contains("WWW-Authenticate: Basic realm=\"Zone auth.test\""),
        "{r}"
    );
    let r = get(&p, "/x", &basic("nobody", "pw")).await;
    assert_eq!(status(&r), "401", "{r}");
    // Another scheme is no credentials at all.
    let r = get(&p, "/x", "Authorization: Bearer abc\r\n").await;
    assert_eq!(status(&r), "401", "{r}");

    let r = get(&p, "/open/", "").await;
    assert_eq!(status(&r), "200", "{r}");

    // A body not read: the connection closes after the 401 rather than parse it as a request.
    let mut s = send(
        p.port,
        b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    )
    .await;
    let (got, end) = read_to_end_within(&mut s, T).await;
    assert_eq!(end, Some(End::Eof), "not closed in time");
    assert_eq!(status(&String::from_utf8_lossy(&got)), "401");

    let file = p.dir.path().join("htpasswd");
    wait_for("the auth log lines", || {
        let log = error_log(&p);
        log.contains("no user/password was provided for basic authentication, client: 127.0.0.1, server: auth.test, request: \"GET /x HTTP/1.1\", host: \"a\"")
            && log.contains("user \"md5\": password mismatch, client: 127.0.0.1")
            && log.contains(&format!(
                "user \"nobody\" was not found in \"{}\", client: 127.0.0.1",
                file.display()
            ))
    })
    .await;
}

// effect: auth_basic_user_file
/// Every htpasswd form nginx on Debian checks: the right password passes, another does not;
/// a form crypt(3) does not know never matches. The file is read for each request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn htpasswd_formats() {
    let b = mirror().await;
    let p = proxy("", "auth_basic R; auth_basic_user_file htpasswd;", &b);
    for (user, _) in USERS {
        let r = get(&p, "/", &basic(user, "pw")).await;
        assert_eq!(status(&r), "200", "{user}: {r}");
        assert!(r.contains(&format!("X-User: {user}\r\n")), "{r}");
        let r = get(&p, "/", &basic(user, "px")).await;
        assert_eq!(status(&r), "401", "{user}: {r}");
    }
    // Changed on disk: the next request sees it.
    let file = p.dir.path().join("htpasswd");
    std::fs::write(&file, "# none\nodd:$9$unknown\nnew:{PLAIN}pw\n").unwrap();
    let r = get(&p, "/", &basic("odd", "$9$unknown")).await;
    assert_eq!(status(&r), "401", "{r}");
    let r = get(&p, "/", &basic("new", "pw")).await;
    assert_eq!(status(&r), "200", "{r}");
    let r = get(&p, "/", &basic("plain", "pw")).await;
    assert_eq!(status(&r), "401", "{r}");
}

// effect: auth_basic_user_file
/// A user file that does not exist forbids (403, `[error]`); one that cannot be opened for
/// another reason is the server's error (500, `[crit]`), as nginx; the path may hold variables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_file_missing_or_unreadable() {
    let b = mirror().await;
    let mut p = proxy("", "auth_basic R; auth_basic_user_file $arg_f;", &b);
    p.allow_log("[crit]");
    let r = get(&p, "/?f=htpasswd", &basic("plain", "pw")).await;
    assert_eq!(status(&r), "200", "{r}");
    let r = get(&p, "/?f=absent", &basic("plain", "pw")).await;
    assert_eq!(status(&r), "403", "{r}");
    let r = get(&p, "/?f=htpasswd/below", &basic("plain", "pw")).await;
    assert_eq!(status(&r), "500", "{r}");
    let dir = p.dir.path().to_path_buf();
    wait_for("the open() lines", || {
        let log = error_log(&p);
        log.contains(&format!(
            "open() \"{}\" failed (2: No such file or directory), client: 127.0.0.1",
            dir.join("absent").display()
        )) && log.lines().any(|l| {
            l.contains("[crit]")
                && l.contains(&format!(
                    "open() \"{}\" failed (20: Not a directory)",
                    dir.join("htpasswd/below").display()
                ))
        })
    })
    .await;
}

// effect: satisfy
/// `satisfy any`: an address rule that allows is enough, and so is a good password when the
/// rules deny; with neither, the 401 wins over the 403. `satisfy all` needs both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn satisfy_any_and_all() {
    let b = mirror().await;
    let auth = "auth_basic R; auth_basic_user_file htpasswd;";
    let p = proxy(
        "",
        &format!(
            "{auth} satisfy any; deny all;
            location /all/ {{ proxy_pass http://{}; satisfy all; deny all; }}
            location /allowed/ {{ proxy_pass http://{}; allow 127.0.0.1; deny all; }}
            location /allowed-all/ {{ proxy_pass http://{}; satisfy all; allow 127.0.0.1; deny all; }}
            location /nomatch/ {{ proxy_pass http://{}; allow 10.0.0.0/8; }}",
            b.addr, b.addr, b.addr, b.addr
        ),
        &b,
    );
    // any, denied by address: the password decides.
    let r = get(&p, "/", "").await;
    assert_eq!(status(&r), "401", "{r}");
    assert!(r.contains("WWW-Authenticate: Basic realm=\"R\""), "{r}");
    let r = get(&p, "/", &basic("plain", "pw")).await;
    assert_eq!(status(&r), "200", "{r}");
    // any, allowed by address: no password needed.
    let r = get(&p, "/allowed/", "").await;
    assert_eq!(status(&r), "200", "{r}");
    // any, no rule matching the client: the password decides.
    let r = get(&p, "/nomatch/", "").await;
    assert_eq!(status(&r), "401", "{r}");
    // all, allowed by address: the password is needed too.
    let r = get(&p, "/allowed-all/", "").await;
    assert_eq!(status(&r), "401", "{r}");
    let r = get(&p, "/allowed-all/", &basic("plain", "pw")).await;
    assert_eq!(status(&r), "200", "{r}");
    let r = get(&p, "/all/", &basic("plain", "pw")).await;
    assert_eq!(status(&r), "403", "{r}");
}

/// `$remote_user` comes from the `Authorization` header whether or not `auth_basic` is on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_user_without_auth_basic() {
    let b = mirror().await;
    let p = proxy("", "", &b);
    let r = get(&p, "/", &basic("someone", "anything")).await;
    assert_eq!(status(&r), "200", "{r}");
    assert!(r.contains("X-User: someone\r\n"), "{r}");
    let r = get(&p, "/", "").await;
    assert!(r.contains("X-User: \r\n") || !r.contains("X-User"), "{r}");
}

// effect: auth_delay
/// A 401 waits `auth_delay` before it is sent; a good password does not wait for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_delay_holds_the_401_back() {
    let b = mirror().await;
    let p = proxy(
        "auth_delay 2s;",
        "auth_basic R; auth_basic_user_file htpasswd;",
        &b,
    );
    let start = std::time::Instant::now();
    let r = get(&p, "/", &basic("plain", "wrong")).await;
    assert_eq!(status(&r), "401", "{r}");
    assert!(
        start.elapsed() >= std::time::Duration::from_millis(1900),
        "answered after {:?}",
        start.elapsed()
    );
    let r = get(&p, "/", &basic("plain", "pw")).await;
    assert_eq!(status(&r), "200", "{r}");
    wait_for("the delay's log line", || {
        error_log(&p).contains("delaying unauthorized request, client: 127.0.0.1")
    })
    .await;
}
