//! A small HTTP client for the admin APIs: the CLI, the tests and benchmarks
//! read `/api/...` and `/metrics` with it. Built on `ureq` (blocking); the async
//! variants run it on tokio's blocking pool. Every call is bounded in time.

use std::net::SocketAddr;
use std::time::Duration;

/// How long a whole request may take.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Largest response body read.
const MAX_BODY: u64 = 64 * 1024 * 1024;

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into()
}

fn io_error(e: ureq::Error) -> std::io::Error {
    match e {
        ureq::Error::Io(e) => e,
        ureq::Error::Timeout(_) => std::io::Error::new(std::io::ErrorKind::TimedOut, e.to_string()),
        other => std::io::Error::other(other.to_string()),
    }
}

/// `method path` against `addr` with an optional body: (status, body).
pub fn request_blocking(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> std::io::Result<(u16, String)> {
    let url = format!("http://{addr}{path}");
    let agent = agent(TIMEOUT);
    let response = match method {
        "GET" => agent.get(&url).call(),
        "POST" => agent.post(&url).send(body),
        "PUT" => agent.put(&url).send(body),
        "DELETE" => agent.delete(&url).call(),
        other => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("unsupported method {other}"),
            ))
        }
    };
    let mut response = response.map_err(io_error)?;
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .with_config()
        .limit(MAX_BODY)
        .read_to_string()
        .map_err(io_error)?;
    Ok((status, text))
}

/// `GET path` (blocking).
pub fn get_blocking(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    request_blocking(addr, "GET", path, "")
}

/// [`request_blocking`] off the async runtime's threads.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> std::io::Result<(u16, String)> {
    let (method, path, body) = (method.to_string(), path.to_string(), body.to_string());
    tokio::task::spawn_blocking(move || request_blocking(addr, &method, &path, &body))
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?
}

/// `GET path` off the async runtime's threads.
pub async fn get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    request(addr, "GET", path, "").await
}
