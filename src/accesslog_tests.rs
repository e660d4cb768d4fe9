//! `accesslog`: lines compared with what nginx 1.22 wrote for the same request (captured once
//! from a real nginx 1.22.1 run; time and client address normalised), escaping, `if=`, `off`,
//! buffering, flush and reopen.

use std::borrow::Cow;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::*;
use crate::config::model::Config;
use crate::http::tests::{conn, with_head};

/// Builds `text` with `dir` as prefix (so `logs/...` and relative paths land in `dir`).
fn conf_in(dir: &Path, text: &str) -> Config {
    let text = format!("events {{ }}\n{text}");
    crate::config::load_str("test.conf", &text, dir).expect("builds")
}

fn http(c: &Config) -> &HttpConf {
    c.http.as_ref().expect("http block")
}

/// The merged `access_log` list of the first location of the first server.
fn loc_logs(c: &Config) -> Vec<AccessLog> {
    http(c).servers[0].locations[0].conf.access_log()
}

fn read(p: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned()
}

/// 2026-11-21 09:59:59 UTC, the time of the nginx run.
fn when() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_795_255_199)
}

/// The request sent to nginx, byte for byte (bar the controls httparse refuses in a header).
const REQ: &[u8] =
    b"GET /p%20a?x=\"y\"&z=\\ HTTP/1.1\r\nHost: example.com\r\nReferer: http://r/\"q\"\r\n\
User-Agent: UA \"quoted\" \\back \xc3\xa9 \tend\r\nX-A: a\"b\\c\xc3\xa9\r\nX-Empty: \r\n\
Connection: close\r\n\r\n";

/// Runs `f` with variables for [`REQ`] after a `200` with a 6-byte body at [`when`].
fn with_vars<R>(f: impl FnOnce(&mut RequestVars<'_>) -> R) -> R {
    let c = conn();
    with_head(REQ, |head, _| {
        let mut v = RequestVars::new(head, &c, &[], Cow::Borrowed("/p a"), when());
        v.now = Some(when());
        v.response.status = 200;
        v.response.body_bytes_sent = 6;
        v.response.bytes_sent = 150;
        f(&mut v)
    })
}

fn server(logs: &str) -> String {
    format!(
        "http {{\n\
         log_format j escape=json 'J|$http_x_a|$http_x_missing|$request_uri|\"lit\\x\"';\n\
         log_format n escape=none 'N|$http_x_a|$http_x_missing|$http_x_empty|';\n\
         log_format d 'D|$http_x_a|$http_x_missing|$http_x_empty|\"lit\\\\\"|$upstream_addr|$status';\n\
         server {{ listen 127.0.0.1:8080; {logs} location / {{ return 200; }} }}\n}}\n"
    )
}

#[test]
fn combined_line_is_nginx_s() {
    let dir = tempfile::tempdir().unwrap();
    // No access_log at all: nginx's default, logs/access.log combined.
    std::fs::create_dir(dir.path().join("logs")).unwrap();
    let c = conf_in(dir.path(), &server(""));
    let mut logs = AccessLogs::from_http(http(&c)).unwrap();
    with_vars(|v| logs.log(&loc_logs(&c), v)).unwrap();
    // nginx 1.22.1 wrote (127.0.0.1 as client, 0x7f and 0x01 removed from the User-Agent):
    let nginx = "192.0.2.1 - - [21/Nov/2026:09:59:59 +0000] \"GET /p%20a?x=\\x22y\\x22&z=\\x5C \
                 HTTP/1.1\" 200 6 \"http://r/\\x22q\\x22\" \
                 \"UA \\x22quoted\\x22 \\x5Cback \\xC3\\xA9 \\x09end\"\n";
    assert_eq!(read(&dir.path().join("logs/access.log")), nginx);
}

#[test]
fn escape_modes_as_nginx() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let c = conf_in(
        dir.path(),
        &server(&format!(
            "access_log {d}/j.log j; access_log {d}/n.log n; access_log {d}/d.log d;"
        )),
    );
    let mut logs = AccessLogs::from_http(http(&c)).unwrap();
    with_vars(|v| logs.log(&loc_logs(&c), v)).unwrap();
    // nginx's lines for the same header without its control bytes; missing values: `-` only
    // with escape=default, empty values stay empty, literals are never escaped.
    assert_eq!(
        read(&dir.path().join("j.log")),
        "J|a\\\"b\\\\c\u{e9}||/p%20a?x=\\\"y\\\"&z=\\\\|\"lit\\x\"\n"
    );
    assert_eq!(read(&dir.path().join("n.log")), "N|a\"b\\c\u{e9}|||\n");
    assert_eq!(
        read(&dir.path().join("d.log")),
        "D|a\\x22b\\x5Cc\\xC3\\xA9|-||\"lit\\\"|-|200\n"
    );
}

#[test]
fn control_bytes_escape_as_nginx() {
    // The X-A value nginx logged: a"b\c 0x1f é 0x7f 0x08 0x0c.
    let v = b"a\"b\\c\x1f\xc3\xa9\x7f\x08\x0c";
    let mut out = Vec::new();
    write_value(Some(v), Escape::Default, &mut out);
    assert_eq!(out, b"a\\x22b\\x5Cc\\x1F\\xC3\\xA9\\x7F\\x08\\x0C");
    out.clear();
    write_value(Some(v), Escape::Json, &mut out);
    assert_eq!(out, b"a\\\"b\\\\c\\u001F\xc3\xa9\x7f\\b\\f");
    out.clear();
    write_value(Some(v), Escape::None, &mut out);
    assert_eq!(out, v);
    out.clear();
    write_value(Some(b"\x01\t\n\r"), Escape::Json, &mut out);
    assert_eq!(out, b"\\u0001\\t\\n\\r");
    out.clear();
    for e in [Escape::Default, Escape::Json, Escape::None] {
        write_value(None, e, &mut out);
    }
    assert_eq!(out, b"-");
}

#[test]
fn if_condition_skips_empty_and_zero() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let c = conf_in(
        dir.path(),
        &server(&format!(
            "access_log {d}/empty.log d if=$http_x_empty; access_log {d}/missing.log d \
             if=$http_x_missing; access_log {d}/zero.log d if=0; access_log {d}/zz.log d \
             if=00; access_log {d}/yes.log d if=$http_x_a;"
        )),
    );
    let mut logs = AccessLogs::from_http(http(&c)).unwrap();
    with_vars(|v| logs.log(&loc_logs(&c), v)).unwrap();
    for skipped in ["empty.log", "missing.log", "zero.log"] {
        assert_eq!(read(&dir.path().join(skipped)), "", "{skipped}");
    }
    assert_eq!(read(&dir.path().join("zz.log")).lines().count(), 1);
    assert_eq!(read(&dir.path().join("yes.log")).lines().count(), 1);
}

#[test]
fn off_disables_every_log_of_the_level() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let text = format!(
        "http {{ access_log {d}/http.log; server {{ listen 127.0.0.1:8080; \
         location / {{ access_log off; }} location /x {{ }} }} }}"
    );
    let c = conf_in(dir.path(), &text);
    let mut logs = AccessLogs::from_http(http(&c)).unwrap();
    let s = &http(&c).servers[0];
    with_vars(|v| logs.log(&s.locations[0].conf.access_log(), v)).unwrap();
    assert_eq!(read(&dir.path().join("http.log")), "");
    // `off` in one location does not affect another, which inherits the http level's log.
    with_vars(|v| logs.log(&s.locations[1].conf.access_log(), v)).unwrap();
    assert_eq!(read(&dir.path().join("http.log")).lines().count(), 1);
    // A list holding `off` disables all its entries.
    let mut list = s.locations[1].conf.access_log();
    list.push(AccessLog::Off);
    with_vars(|v| logs.log(&list, v)).unwrap();
    assert_eq!(read(&dir.path().join("http.log")).lines().count(), 1);
}

#[test]
fn one_handle_per_distinct_path() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let text = format!(
        "http {{ log_format d '$status'; log_format n escape=none '$uri'; access_log {d}/a.log; \
         server {{ listen 127.0.0.1:8080; access_log {d}/a.log d; access_log {d}/b.log; \
         location / {{ access_log {d}/a.log n; }} }} }}"
    );
    let c = conf_in(dir.path(), &text);
    let logs = AccessLogs::from_http(http(&c)).unwrap();
    let paths: Vec<_> = logs.paths().map(Path::to_path_buf).collect();
    assert_eq!(paths, [dir.path().join("a.log"), dir.path().join("b.log")]);
}

#[test]
fn open_failure_is_nginx_s_message() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no/such/dir/access.log");
    let log = AccessLog::File {
        path: path.clone(),
        format: "combined".into(),
        buffer: None,
        flush: None,
        condition: None,
    };
    let c = conf_in(dir.path(), &server(""));
    let err = AccessLogs::new([&log], &http(&c).log_formats).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "open() \"{}\" failed (2: No such file or directory)",
            path.display()
        )
    );
}

#[test]
fn conflicting_buffers_for_one_path_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mk = |size| AccessLog::File {
        path: dir.path().join("a.log"),
        format: "combined".into(),
        buffer: Some(size),
        flush: None,
        condition: None,
    };
    let c = conf_in(dir.path(), &server(""));
    let err = AccessLogs::new([&mk(100), &mk(200)], &http(&c).log_formats).unwrap_err();
    assert!(matches!(err, AccessLogError::Conflict { .. }), "{err}");
}

#[test]
fn buffer_holds_lines_until_full_or_drop() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    // A line of format d is 38 bytes: two fit in 100, the third overflows.
    let c = conf_in(
        dir.path(),
        &server(&format!("access_log {d}/b.log d buffer=100;")),
    );
    let path = dir.path().join("b.log");
    let mut logs = AccessLogs::from_http(http(&c)).unwrap();
    let list = loc_logs(&c);
    let line = "D|a\\x22b\\x5Cc\\xC3\\xA9|-||\"lit\\\"|-|200\n";
    assert!(line.len() * 2 <= 100 && line.len() * 3 > 100);
    with_vars(|v| logs.log(&list, v)).unwrap();
    with_vars(|v| logs.log(&list, v)).unwrap();
    assert_eq!(read(&path), "");
    with_vars(|v| logs.log(&list, v)).unwrap();
    assert_eq!(read(&path), line.repeat(2));
    assert_eq!(logs.next_flush(), None, "no flush= given");
    drop(logs);
    assert_eq!(read(&path), line.repeat(3));
}

#[test]
fn line_larger_than_buffer_is_written_directly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let c = conf_in(
        dir.path(),
        &server(&format!("access_log {d}/b.log d buffer=10;")),
    );
    let path = dir.path().join("b.log");
    let mut logs = AccessLogs::from_http(http(&c)).unwrap();
    with_vars(|v| logs.log(&loc_logs(&c), v)).unwrap();
    assert_eq!(read(&path).lines().count(), 1);
}

#[test]
fn flush_time_writes_the_buffer() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let c = conf_in(
        dir.path(),
        &server(&format!("access_log {d}/f.log d buffer=4k flush=5s;")),
    );
    let path = dir.path().join("f.log");
    let mut logs = AccessLogs::from_http(http(&c)).unwrap();
    let before = Instant::now();
    with_vars(|v| logs.log(&loc_logs(&c), v)).unwrap();
    let due = logs.next_flush().expect("a buffered line arms the timer");
    assert!(
        due >= before + Duration::from_secs(5) && due <= Instant::now() + Duration::from_secs(5)
    );
    logs.flush_due(before).unwrap();
    assert_eq!(read(&path), "", "not due yet");
    logs.flush_due(due).unwrap();
    assert_eq!(read(&path).lines().count(), 1);
    assert_eq!(logs.next_flush(), None, "an empty buffer has no timer");
}

#[test]
fn reopen_after_rename_writes_to_the_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let c = conf_in(
        dir.path(),
        &server(&format!(
            "access_log {d}/r.log d; access_log {d}/rb.log d buffer=4k;"
        )),
    );
    let (path, bpath) = (dir.path().join("r.log"), dir.path().join("rb.log"));
    let mut logs = AccessLogs::from_http(http(&c)).unwrap();
    let list = loc_logs(&c);
    with_vars(|v| logs.log(&list, v)).unwrap();
    std::fs::rename(&path, dir.path().join("r.log.1")).unwrap();
    std::fs::rename(&bpath, dir.path().join("rb.log.1")).unwrap();
    // Until reopen, lines go to the renamed file (the handle follows the inode).
    with_vars(|v| logs.log(&list, v)).unwrap();
    assert!(logs.reopen().is_empty());
    with_vars(|v| logs.log(&list, v)).unwrap();
    logs.flush_all().unwrap();
    assert_eq!(read(&dir.path().join("r.log.1")).lines().count(), 2);
    assert_eq!(read(&path).lines().count(), 1);
    // The buffer pending at reopen went to the old file.
    assert_eq!(read(&dir.path().join("rb.log.1")).lines().count(), 2);
    assert_eq!(read(&bpath).lines().count(), 1);
}

#[test]
fn failed_reopen_keeps_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let d = sub.display();
    let c = conf_in(dir.path(), &server(&format!("access_log {d}/k.log d;")));
    let mut logs = AccessLogs::from_http(http(&c)).unwrap();
    let list = loc_logs(&c);
    std::fs::rename(&sub, dir.path().join("moved")).unwrap();
    let errs = logs.reopen();
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].to_string().starts_with("open() \"") && errs[0].to_string().contains("(2: "),
        "{}",
        errs[0]
    );
    with_vars(|v| logs.log(&list, v)).unwrap();
    assert_eq!(read(&dir.path().join("moved/k.log")).lines().count(), 1);
}

#[test]
fn default_log_is_not_opened_when_overridden() {
    // nginx 1.22 with `access_log logs/mine.log;` in the only server creates no logs/access.log.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let c = conf_in(dir.path(), &server(&format!("access_log {d}/mine.log;")));
    let logs = AccessLogs::from_http(http(&c)).unwrap();
    let paths: Vec<_> = logs.paths().map(Path::to_path_buf).collect();
    assert_eq!(paths, [dir.path().join("mine.log")]);
    assert!(!dir.path().join("logs/access.log").exists());
}

#[test]
fn buffer_belongs_to_the_file() {
    // As in nginx, an unbuffered access_log to a path that is buffered elsewhere goes through
    // that path's buffer (lines stay in order).
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let text = format!(
        "http {{ log_format d '$status'; server {{ listen 127.0.0.1:8080; \
         access_log {d}/s.log d buffer=1k; location / {{ access_log {d}/s.log d; }} }} }}"
    );
    let c = conf_in(dir.path(), &text);
    let mut logs = AccessLogs::from_http(http(&c)).unwrap();
    with_vars(|v| logs.log(&loc_logs(&c), v)).unwrap();
    assert_eq!(read(&dir.path().join("s.log")), "");
    logs.flush_all().unwrap();
    assert_eq!(read(&dir.path().join("s.log")), "200\n");
}
