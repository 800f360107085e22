//! A minimal HTTP/1.1 server for admin APIs (relay, controller, lab).
//!
//! One request per connection, a bounded head and body, a timeout on the whole
//! exchange and a cap on concurrent connections: enough for `curl`, Prometheus
//! and the CLI, and nothing a hostile client can use to hold memory or tasks.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::debug;

const MAX_HEAD: usize = 8 * 1024;
const MAX_BODY: usize = 64 * 1024;
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_CONNECTIONS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The path without the query, e.g. `/api/v1/routes`.
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Response {
    pub fn json(value: &impl serde::Serialize) -> Response {
        match serde_json::to_string_pretty(value) {
            Ok(body) => Response {
                status: 200,
                content_type: "application/json",
                body: body + "\n",
            },
            Err(e) => Response::error(500, &format!("cannot encode response: {e}")),
        }
    }

    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }

    /// A body in a format the handler names, e.g. Prometheus' text exposition.
    pub fn with_content_type(
        status: u16,
        content_type: &'static str,
        body: impl Into<String>,
    ) -> Response {
        Response {
            status,
            content_type,
            body: body.into(),
        }
    }

    pub fn error(status: u16, message: &str) -> Response {
        let body = serde_json::json!({ "error": message }).to_string() + "\n";
        Response {
            status,
            content_type: "application/json",
            body,
        }
    }

    pub fn not_found(path: &str) -> Response {
        Response::error(404, &format!("no such endpoint: {path}"))
    }
}

pub type Handler = Arc<dyn Fn(&Request) -> Response + Send + Sync>;

/// Serves `handler` on `listener` until `cancel` fires.
pub async fn serve(listener: TcpListener, handler: Handler, cancel: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            a = listener.accept() => a,
        };
        let Ok((stream, peer)) = accepted else {
            continue;
        };
        // Over the cap, the connection is closed at once rather than queued.
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = tokio::time::timeout(EXCHANGE_TIMEOUT, exchange(stream, handler)).await
            {
                debug!(%peer, "admin request timed out: {e}");
            }
        });
    }
}

async fn exchange(mut stream: TcpStream, handler: Handler) {
    let response = match read_request(&mut stream).await {
        Ok(request) => handler(&request),
        Err(message) => Response::error(400, &message),
    };
    let reason = match response.status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let head = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        response.status,
        response.content_type,
        response.body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(response.body.as_bytes()).await;
    let _ = stream.shutdown().await;
}

async fn read_request(stream: &mut TcpStream) -> Result<Request, String> {
    let mut buf = Vec::with_capacity(1024);
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i;
        }
        if buf.len() >= MAX_HEAD {
            return Err(format!("request head larger than {MAX_HEAD} bytes"));
        }
        let mut chunk = [0u8; 1024];
        let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed before the request ended".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_end])
        .map_err(|_| "request head is not UTF-8".to_string())?;
    let mut lines = head.split("\r\n");
    let first = lines.next().unwrap_or_default();
    let mut parts = first.split(' ');
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Err(format!("malformed request line: {first:?}"));
    };
    let content_length = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| {
            v.trim()
                .parse::<usize>()
                .map_err(|_| "bad Content-Length".to_string())
        })
        .transpose()?
        .unwrap_or(0);
    if content_length > MAX_BODY {
        return Err(format!("request body larger than {MAX_BODY} bytes"));
    }
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < content_length {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed before the body ended".into());
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(content_length);
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, parse_query(q)),
        None => (target, BTreeMap::new()),
    };
    Ok(Request {
        method: method.to_string(),
        path: path.to_string(),
        query,
        body,
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn parse_query(q: &str) -> BTreeMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (p.to_string(), String::new()),
        })
        .collect()
}

/// A blocking-free HTTP GET for the CLI and tests: returns (status, body).
pub async fn get(addr: std::net::SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    request(addr, "GET", path, "").await
}

/// A small HTTP client for the CLI and tests, bounded in time by the caller.
pub async fn request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr).await?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.take(16 * 1024 * 1024).read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed HTTP response")
        })?;
    Ok((status, body.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serves_and_bounds_requests() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let cancel = CancellationToken::new();
        let handler: Handler = Arc::new(|r: &Request| match r.path.as_str() {
            "/healthz" => Response::text(200, "ok\n"),
            "/typed" => Response::with_content_type(200, "text/x-test", "typed\n"),
            "/echo" => Response::text(
                200,
                format!(
                    "{} {:?} {}",
                    r.method,
                    r.query,
                    String::from_utf8_lossy(&r.body)
                ),
            ),
            other => Response::not_found(other),
        });
        tokio::spawn(serve(listener, handler, cancel.clone()));
        let test = async {
            assert_eq!(
                get(addr, "/healthz").await.expect("get"),
                (200, "ok\n".to_string())
            );
            let (status, body) = request(addr, "POST", "/echo?a=1&b", "hi")
                .await
                .expect("post");
            assert_eq!(status, 200);
            assert_eq!(body, r#"POST {"a": "1", "b": ""} hi"#);
            assert_eq!(get(addr, "/nope").await.expect("get").0, 404);
            let mut s = TcpStream::connect(addr).await.expect("connect");
            let _ = s.write_all(b"GET /typed HTTP/1.1\r\n\r\n").await;
            let mut out = String::new();
            let _ = s.read_to_string(&mut out).await;
            assert!(out.contains("\r\nContent-Type: text/x-test\r\n"), "{out}");
            assert!(out.ends_with("\r\n\r\ntyped\n"), "{out}");
            // An oversized head is refused, not buffered forever.
            let mut s = TcpStream::connect(addr).await.expect("connect");
            let huge = format!("GET /{} HTTP/1.1\r\n", "a".repeat(MAX_HEAD + 10));
            let _ = s.write_all(huge.as_bytes()).await;
            let mut out = String::new();
            let _ = s.read_to_string(&mut out).await;
            assert!(out.starts_with("HTTP/1.1 400"), "{out}");
        };
        tokio::time::timeout(Duration::from_secs(10), test)
            .await
            .expect("bounded");
        cancel.cancel();
    }
}
