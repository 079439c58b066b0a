//! The HTTP server under the edges, as a careless or hostile client meets it: headers sent
//! too slowly and idle kept-alive connections are cut off, open connections are capped, and
//! every answer carries the security headers.

use std::time::{Duration, Instant};

use platform::http_server::{Limits, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use warp::Filter;

async fn server(limits: Limits) -> std::net::SocketAddr {
    let routes = warp::path!("page")
        .map(|| {
            use warp::Reply;
            warp::reply::html("<p>report</p>").into_response()
        })
        .or(warp::any().map(|| {
            use warp::Reply;
            warp::reply::json(&serde_json::json!({"ok": true})).into_response()
        }))
        .unify();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(routes, listener, std::future::pending(), limits));
    addr
}

/// Reads until the server closes the connection; how long that took.
async fn until_closed(stream: &mut TcpStream, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(within, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => continue,
        }
    }
}

const SHORT: Limits = Limits {
    connections_max: 2,
    header_read_timeout: Duration::from_millis(800),
    idle_timeout: Duration::from_millis(800),
};

#[tokio::test]
async fn headers_sent_too_slowly_are_cut_off() {
    let addr = server(SHORT).await;
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /x HTTP/1.1\r\nHost: a\r\nX-Slow: ")
        .await
        .unwrap();
    let closed = until_closed(&mut slow, Duration::from_secs(5)).await;
    assert!(
        closed.is_some(),
        "a request whose headers never end is dropped"
    );
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_and_frees_its_place() {
    let addr = server(SHORT).await;
    let mut idle = Vec::new();
    for _ in 0..2 {
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        let n = c.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        idle.push(c);
    }
    // Two connections held: the cap. A third waits to be served...
    let mut third = TcpStream::connect(addr).await.unwrap();
    third
        .write_all(b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let answered =
        tokio::time::timeout(Duration::from_millis(300), third.read_to_end(&mut buf)).await;
    assert!(answered.is_err(), "past the cap, nobody is served at once");
    // ...until the idle ones are closed by the server, then it is served.
    for c in &mut idle {
        assert!(
            until_closed(c, Duration::from_secs(5)).await.is_some(),
            "an idle connection is closed"
        );
    }
    tokio::time::timeout(Duration::from_secs(5), third.read_to_end(&mut buf))
        .await
        .expect("served once a place is free")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn every_answer_carries_the_security_headers() {
    let addr = server(Limits::default()).await;
    let json = platform::http_client::request(addr, "GET", "/x", &[], b"")
        .await
        .unwrap();
    assert_eq!(
        json.headers
            .get("x-content-type-options")
            .map(String::as_str),
        Some("nosniff")
    );
    assert_eq!(
        json.headers.get("cache-control").map(String::as_str),
        Some("no-store")
    );
    assert!(!json.headers.contains_key("content-security-policy"));
    let html = platform::http_client::request(addr, "GET", "/page", &[], b"")
        .await
        .unwrap();
    let policy = html
        .headers
        .get("content-security-policy")
        .cloned()
        .unwrap_or_default();
    assert!(policy.contains("default-src 'none'"), "{policy}");
    assert_eq!(
        html.headers.get("x-frame-options").map(String::as_str),
        Some("DENY")
    );
}
