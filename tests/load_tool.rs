//! Integration tests of the `ringproxy-load` binary against independent peers: its `echo`
//! backend is driven by tokio-tungstenite and raw HTTP, and its client scenarios run against a
//! tokio-tungstenite server started here (including one that corrupts replies, which must show
//! up as errors). Everything binds 127.0.0.1:0; every wait has a deadline; children are killed
//! on drop. The TLS side is in tests/load_tool_tls.rs.

mod load_common;

use futures_util::{SinkExt, StreamExt};
use load_common::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{CloseFrame, Frame};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_backend_speaks_websocket() {
    let echo = start_echo(&[], &[]).await;
    let url = format!("ws://{}/", echo.addr);
    let (mut ws, resp) = timeout(STEP, tokio_tungstenite::connect_async(url.as_str()))
        .await
        .expect("connect in time")
        .expect("handshake (tungstenite checks the accept key)");
    assert_eq!(resp.status(), 101);

    async fn next(
        ws: &mut (impl StreamExt<Item = Result<Message, impl std::fmt::Debug>> + Unpin),
    ) -> Message {
        timeout(STEP, ws.next())
            .await
            .expect("reply in time")
            .expect("stream open")
            .expect("valid message")
    }

    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::text("hello"));

    let bin: Vec<u8> = (0..=255u8).collect();
    ws.send(Message::binary(bin.clone())).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::binary(bin));

    let big: Vec<u8> = (0..65536u32).map(|i| (i * 31 % 251) as u8).collect();
    ws.send(Message::binary(big.clone())).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::binary(big));

    // A fragmented text message comes back (frame by frame) as the same message.
    ws.send(Message::Frame(Frame::message(
        "hello ",
        OpCode::Data(Data::Text),
        false,
    )))
    .await
    .unwrap();
    ws.send(Message::Frame(Frame::message(
        "world",
        OpCode::Data(Data::Continue),
        true,
    )))
    .await
    .unwrap();
    assert_eq!(next(&mut ws).await, Message::text("hello world"));

    ws.send(Message::Ping("p1".into())).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::Pong("p1".into()));

    ws.send(Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    })))
    .await
    .unwrap();
    match next(&mut ws).await {
        Message::Close(Some(f)) => assert_eq!(f.code, CloseCode::Normal),
        other => panic!("expected close, got {other:?}"),
    }
    let end = timeout(STEP, ws.next()).await.expect("closed in time");
    assert!(end.is_none(), "stream should end after the close handshake");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_backend_speaks_http() {
    let echo = start_echo(&[], &[]).await;
    let mut s = TcpStream::connect(echo.addr).await.unwrap();
    let headers_req =
        "GET /headers HTTP/1.1\r\nHost: h\r\nX-Probe: abc\r\nConnection: close\r\n\r\n";
    // Four pipelined requests on one keep-alive connection; the last one closes it.
    let reqs = format!(
        "GET / HTTP/1.1\r\nHost: h\r\n\r\n\
         POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello\
         POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\
         5\r\nhello\r\n3;ext=1\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n\
         {headers_req}"
    );
    s.write_all(reqs.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    timeout(STEP, s.read_to_end(&mut out))
        .await
        .expect("server closes after Connection: close")
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.matches("HTTP/1.1 200 OK\r\n").count(), 4, "{text}");
    assert!(
        text.ends_with(headers_req),
        "/headers must mirror the head: {text}"
    );

    // HTTP/1.0 closes after one response.
    let mut s = TcpStream::connect(echo.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    let mut out = Vec::new();
    timeout(STEP, s.read_to_end(&mut out))
        .await
        .expect("HTTP/1.0 closes")
        .unwrap();
    assert!(out.starts_with(b"HTTP/1.1 200 OK\r\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtt_against_echo_backend_on_both_drivers() {
    // `auto` must give io_uring: on a machine without it this test fails instead of running
    // epoll twice.
    for (driver, runs) in [("auto", "io_uring"), ("epoll", "epoll")] {
        let env = [("RINGPROXY_DRIVER", driver)];
        let echo = start_echo(&["--threads", "2"], &env).await;
        assert_eq!(echo.driver, runs, "the echo server's driver");
        let url = format!("ws://{}/", echo.addr);
        let v = run_json(
            &[
                "rtt",
                "--url",
                &url,
                "--connections",
                "4",
                "--duration",
                "1s",
                "--json",
            ],
            &env,
        )
        .await;
        assert_clean(&v);
        assert_eq!(v["scenario"], "rtt");
        assert_eq!(v["driver"], runs, "the client's driver: {v}");
        for key in ["p50_us", "p99_us", "p999_us", "max_us", "mb_per_s"] {
            assert!(v[key].is_number(), "{key} in {v}");
        }
        assert!(v["lost"].is_null() && v["survived"].is_null());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_scenarios_against_tungstenite() {
    let addr = start_ws_server(Mode::Echo).await;
    let url = format!("ws://{addr}/");
    let push_url = format!("ws://{addr}/push");
    let runs: Vec<Vec<&str>> = vec![
        vec![
            "rtt",
            "--url",
            &url,
            "--connections",
            "4",
            "--size",
            "100",
            "--duration",
            "1s",
            "--warmup",
            "200ms",
        ],
        vec![
            "handshake",
            "--url",
            &url,
            "--connections",
            "4",
            "--duration",
            "1s",
        ],
        vec![
            "bulk",
            "--url",
            &url,
            "--connections",
            "2",
            "--size",
            "65536",
            "--duration",
            "1s",
            "--threads",
            "2",
        ],
        vec![
            "push",
            "--url",
            &push_url,
            "--connections",
            "5",
            "--duration",
            "1s",
        ],
    ];
    for mut args in runs {
        args.push("--json");
        let v = run_json(&args, &[]).await;
        assert_clean(&v);
        assert_eq!(v["scenario"], args[0]);
        if args[0] == "bulk" {
            assert!(num(&v, "mb_per_s") > 0.0, "{v}");
        }
        if args[0] == "push" {
            assert_eq!(num(&v, "lost"), 0.0, "{v}");
            assert_eq!(num(&v, "established"), 5.0, "{v}");
        }
    }
}

/// `tunnels` tells a tunnel that lasted from one the server closed with a Close (its code
/// counted) and from one that dropped (with the message in flight lost).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnels_count_survivors_closes_and_drops() {
    let run = |addr: std::net::SocketAddr| async move {
        let url = format!("ws://{addr}/");
        let args = [
            "tunnels",
            "--url",
            &url,
            "--connections",
            "6",
            "--duration",
            "2s",
            "--interval",
            "100ms",
            "--threads",
            "2",
            "--json",
        ];
        let out = run_raw(&args, &[]).await;
        assert!(out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            stderr.lines().any(|l| l == "tunnels: established 6"),
            "{stderr}"
        );
        let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        let counts = [
            "established",
            "survived",
            "dropped",
            "lost",
            "closed_1001",
            "closed_other",
        ]
        .map(|k| num(&v, k) as u64);
        (counts, v)
    };
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as f64;
    let (c, v) = run(start_ws_server(Mode::Echo).await).await;
    assert_eq!(c, [6, 6, 0, 0, 0, 0], "{v}");
    assert!(num(&v, "ops") >= 6.0 * 5.0, "{v}");
    assert!(v["close_first_unix_ms"].is_null() && v["drop_first_unix_ms"].is_null());
    let (c, v) = run(start_ws_server(Mode::GoAwayAfter(3)).await).await;
    assert_eq!(c, [6, 0, 0, 0, 6, 0], "{v}");
    assert_eq!(num(&v, "ops"), 18.0, "{v}");
    let first = num(&v, "close_first_unix_ms");
    assert!(
        first >= before && num(&v, "close_last_unix_ms") >= first,
        "{v}"
    );
    let (c, v) = run(start_ws_server(Mode::DropAfter(2)).await).await;
    assert_eq!(c, [6, 0, 6, 6, 0, 0], "{v}");
    assert!(num(&v, "drop_first_unix_ms") >= before, "{v}");
    assert_eq!(num(&v, "errors"), 6.0, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_reports_established_on_stderr() {
    let addr = start_ws_server(Mode::Echo).await;
    let url = format!("ws://{addr}/");
    let out = run_raw(
        &[
            "hold",
            "--url",
            &url,
            "--connections",
            "20",
            "--idle",
            "1s",
            "--open-rate",
            "200",
            "--json",
        ],
        &[],
    )
    .await;
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.lines().any(|l| l == "hold: established 20"),
        "{stderr}"
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_clean(&v);
    assert_eq!(
        (
            num(&v, "established"),
            num(&v, "survived"),
            num(&v, "dropped")
        ),
        (20.0, 20.0, 0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_replies_are_errors_not_speed() {
    let addr = start_ws_server(Mode::Corrupt).await;
    let url = format!("ws://{addr}/");
    let v = run_json(
        &[
            "rtt",
            "--url",
            &url,
            "--connections",
            "2",
            "--duration",
            "1s",
            "--json",
        ],
        &[],
    )
    .await;
    assert!(num(&v, "errors") > 0.0, "corruption went unnoticed: {v}");
    assert_eq!(
        num(&v, "ops"),
        0.0,
        "corrupted round trips must not count: {v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_failures_exit_non_zero() {
    // A port nothing listens on: bind one, then free it.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("ws://127.0.0.1:{port}/");
    let out = run_raw(&["rtt", "--url", &url, "--duration", "1s", "--json"], &[]).await;
    assert!(!out.status.success(), "connecting to nothing must fail");
    let out = run_raw(&["rtt", "--url", &url, "--idle", "5"], &[]).await;
    assert!(
        !out.status.success(),
        "a flag of another subcommand must fail"
    );
    let out = run_raw(&["rtt", "--url", &url, "--duration", "soon"], &[]).await;
    assert!(!out.status.success(), "a bad duration must fail");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_and_hold_against_echo_backend() {
    let echo = start_echo(&["--push-rate", "100"], &[]).await;
    let push_url = format!("ws://{}/push", echo.addr);
    let v = run_json(
        &[
            "push",
            "--url",
            &push_url,
            "--connections",
            "5",
            "--duration",
            "1500ms",
            "--json",
        ],
        &[],
    )
    .await;
    assert_clean(&v);
    assert_eq!(num(&v, "lost"), 0.0, "{v}");
    // One second at 100 Hz to 5 subscribers: well above 100 messages unless the ticker stalls.
    assert!(num(&v, "ops") >= 100.0, "{v}");
    let url = format!("ws://{}/", echo.addr);
    let v = run_json(
        &[
            "hold",
            "--url",
            &url,
            "--connections",
            "50",
            "--idle",
            "200ms",
            "--threads",
            "2",
            "--json",
        ],
        &[],
    )
    .await;
    assert_eq!(num(&v, "survived"), 50.0, "{v}");
    assert_clean(&v);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_accept_key_is_counted_not_fatal() {
    // A server that answers every upgrade with 101 but a wrong Sec-WebSocket-Accept.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = s
                    .write_all(
                        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                          Connection: Upgrade\r\nSec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n",
                    )
                    .await;
                let _ = s.read_to_end(&mut buf).await;
            });
        }
    });
    let url = format!("ws://{addr}/");
    let v = run_json(
        &[
            "handshake",
            "--url",
            &url,
            "--connections",
            "2",
            "--duration",
            "1s",
            "--json",
        ],
        &[],
    )
    .await;
    assert!(num(&v, "errors") > 0.0, "{v}");
    assert_eq!((num(&v, "ops"), num(&v, "established")), (0.0, 0.0), "{v}");
}
