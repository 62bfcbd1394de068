//! The bounds on slow, idle and surplus clients (the outside attack's slowloris finding), through
//! raw sockets: the header-read, idle keep-alive and body-read timeouts and the connection cap,
//! each set short here; the flags that set them are exercised on the release binary at the end.

use std::time::Duration;

use auth_server::config::ConnectionLimits;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::process::{Deployment, cheap_booking_spec};
use crate::support::{Options, Server, sqlite};

/// Limits with room everywhere but where a test sets its own.
fn roomy() -> ConnectionLimits {
    ConnectionLimits {
        header_read: Duration::from_secs(30),
        body_read: Duration::from_secs(30),
        idle: Duration::from_secs(30),
        max_connections: 100,
    }
}

async fn start(connections: ConnectionLimits) -> Server {
    Server::start_with(sqlite(), Options { connections: Some(connections), ..Options::default() }).await
}

async fn connect(base: &str) -> TcpStream {
    TcpStream::connect(base.trim_start_matches("http://")).await.unwrap()
}

/// What the server sends until it closes the connection; `None` if it is still open after
/// `limit`.
async fn until_closed(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let give_up = Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(give_up, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(String::from_utf8_lossy(&answer).into_owned()),
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
        }
    }
}

/// Sends a whole keep-alive request for `/healthz` and reads its whole answer (head and the
/// `Content-Length` bytes of body).
async fn health_check(stream: &mut TcpStream) -> String {
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&answer).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|line| line.to_ascii_lowercase().strip_prefix("content-length: ").map(str::to_owned))
                .and_then(|n| n.trim().parse::<usize>().ok())
                .expect("a Content-Length");
            if body.len() >= length {
                return text;
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "closed mid-answer: {text}");
        answer.extend_from_slice(&buf[..n]);
    }
}

fn dropped(server: &Server, reason: &str) -> u64 {
    server.state.metrics.connections_dropped.with_label_values(&[reason]).get()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_sent_slowly_or_not_at_all_is_cut_off_at_the_header_read_timeout() {
    let header_read = Duration::from_millis(800);
    let server = start(ConnectionLimits { header_read, ..roomy() }).await;

    // One byte every 100 ms, steadily: activity does not move the deadline.
    // The server's clock starts at accept, which can come before this task resumes from connect
    // on a busy machine: start the test's clock before connecting.
    let started = Instant::now();
    let mut slow = connect(&server.base).await;
    slow.write_all(b"GET /healthz HTTP/1.1\r\nX-Slow: ").await.unwrap();
    let (mut read, mut write) = slow.into_split();
    let trickle = tokio::spawn(async move {
        for _ in 0..100 {
            if write.write_all(b"a").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut buf = [0u8; 256];
    let read = tokio::time::timeout(Duration::from_secs(5), read.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0) | Err(_))), "a trickled head was not cut off: {read:?}");
    assert!(started.elapsed() >= header_read, "cut off before the timeout: {:?}", started.elapsed());
    trickle.abort();

    // A connection that never sends anything is cut off the same way.
    let started = Instant::now();
    let mut silent = connect(&server.base).await;
    let answer = until_closed(&mut silent, Duration::from_secs(5)).await;
    assert_eq!(answer.as_deref(), Some(""), "a silent connection stayed open");
    assert!(started.elapsed() >= header_read);
    assert_eq!(dropped(&server, "header_read_timeout"), 2);

    // A request sent at once is served.
    let mut prompt = connect(&server.base).await;
    assert!(health_check(&mut prompt).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_alive_connection_closes_after_the_idle_timeout_not_the_header_one() {
    let (header_read, idle) = (Duration::from_millis(300), Duration::from_millis(1500));
    let server = start(ConnectionLimits { header_read, idle, ..roomy() }).await;
    let mut stream = connect(&server.base).await;
    assert!(health_check(&mut stream).await.starts_with("HTTP/1.1 200"));
    // Idle for longer than the header-read timeout, shorter than the idle one: still open.
    tokio::time::sleep(Duration::from_millis(800)).await;
    // The idle clock runs from the server's end of this request, which comes before the client
    // has read the answer: measure from the moment it was sent.
    let answered = Instant::now();
    assert!(health_check(&mut stream).await.starts_with("HTTP/1.1 200"));
    let answer = until_closed(&mut stream, Duration::from_secs(6)).await;
    assert_eq!(answer.as_deref(), Some(""), "an idle connection stayed open");
    assert!(answered.elapsed() >= idle, "closed before the idle timeout: {:?}", answered.elapsed());
    assert_eq!(dropped(&server, "idle_timeout"), 1);
    assert_eq!(dropped(&server, "header_read_timeout"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_sent_too_slowly_is_answered_408_and_the_connection_closed() {
    let server = start(ConnectionLimits { body_read: Duration::from_millis(500), ..roomy() }).await;
    let cases: [(&str, &str, &str); 2] = [
        ("/oauth/token", "application/x-www-form-urlencoded", "\"error\":\"invalid_request\""),
        ("/v1/users", "application/json", "\"code\":\"request.body_timeout\""),
    ];
    for (path, content_type, expected) in cases {
        let mut stream = connect(&server.base).await;
        let head = format!("POST {path} HTTP/1.1\r\nHost: a\r\nContent-Type: {content_type}\r\nContent-Length: 100\r\n\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(b"grant_type").await.unwrap();
        let answer = until_closed(&mut stream, Duration::from_secs(5)).await.expect("the connection was closed");
        assert!(answer.starts_with("HTTP/1.1 408"), "{path}: {answer}");
        assert!(answer.to_ascii_lowercase().contains("connection: close"), "{path}: {answer}");
        assert!(answer.contains(expected), "{path}: {answer}");
        assert!(answer.contains("request.body_timeout"), "{path}: {answer}");
    }
    // A body that arrives in time, in pieces, is read.
    let mut stream = connect(&server.base).await;
    let body = "grant_type=client_credentials";
    let head = format!(
        "POST /oauth/token HTTP/1.1\r\nHost: a\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    for piece in [&body[..10], &body[10..]] {
        stream.write_all(piece.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let answer = until_closed(&mut stream, Duration::from_secs(5)).await.expect("closed");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("client"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_are_closed_as_accepted() {
    let server = start(ConnectionLimits { max_connections: 3, ..roomy() }).await;
    let open = || server.state.metrics.connections_open.get();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect(&server.base).await);
    }
    wait_for(|| open() == 3).await;
    let mut surplus = connect(&server.base).await;
    let answer = until_closed(&mut surplus, Duration::from_secs(3)).await;
    assert_eq!(answer.as_deref(), Some(""), "a fourth connection was kept");
    assert_eq!(dropped(&server, "over_capacity"), 1);
    // The held connections are still served.
    assert!(health_check(&mut held[0]).await.starts_with("HTTP/1.1 200"));
    // One closed frees its slot.
    drop(held.pop());
    wait_for(|| open() == 2).await;
    let mut next = connect(&server.base).await;
    assert!(health_check(&mut next).await.starts_with("HTTP/1.1 200"));
}

/// Waits (at most 5 s) until `condition` holds.
async fn wait_for(condition: impl Fn() -> bool) {
    let give_up = Instant::now() + Duration::from_secs(5);
    while !condition() {
        assert!(Instant::now() < give_up, "the condition never held");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The flags reach the server: `--max-connections` and `--header-read-timeout-secs`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_release_binary_takes_the_connection_flags() {
    let deployment = Deployment::sqlite(&cheap_booking_spec(&[]));
    // Six seconds of header-read timeout: time enough for the refusal to be seen first on a busy
    // machine (the browser suite may be running beside this test), before the held connections
    // are cut off.
    let server = deployment.start(&["--max-connections", "2", "--header-read-timeout-secs", "6"]).await;
    // The start's own readiness check may still hold a slot for a moment, so a connection made now
    // can be refused: keep only connections that the server leaves open, until two are held.
    let mut held = Vec::new();
    let give_up = Instant::now() + Duration::from_secs(5);
    while held.len() < 2 {
        let mut stream = connect(&server.url("")).await;
        if until_closed(&mut stream, Duration::from_millis(300)).await.is_none() {
            held.push(stream);
        }
        assert!(Instant::now() < give_up, "two connections could not be held open");
    }
    // The held connections may not be counted yet when the next arrives; retry until one is
    // refused.
    let give_up = Instant::now() + Duration::from_secs(5);
    loop {
        let mut surplus = connect(&server.url("")).await;
        if until_closed(&mut surplus, Duration::from_secs(1)).await.is_some() {
            break;
        }
        assert!(Instant::now() < give_up, "a third connection was kept open");
    }
    for stream in &mut held {
        let answer = until_closed(stream, Duration::from_secs(12)).await;
        assert_eq!(answer.as_deref(), Some(""), "a silent connection outlived --header-read-timeout-secs 6");
    }
    let metrics = crate::process::http_client().get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(crate::support::metric_value(&metrics, "http_connections_dropped_total", &["reason=\"over_capacity\""]) >= 1.0);
    assert!(crate::support::metric_value(&metrics, "http_connections_dropped_total", &["reason=\"header_read_timeout\""]) >= 1.0);
}
