//! Timing a streamed answer (SSE or NDJSON) over a plain HTTP/1.1 connection:
//! when its first token arrives, and when the last has.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// One streamed answer's timing.
pub struct Timing {
    /// From sending the request to the first token's bytes.
    pub first_token: Duration,
    /// From sending the request to the end of the answer.
    pub total: Duration,
}

/// POSTs `body` (JSON) to `path` at `address` with `headers`, reads the answer as it
/// comes, and times the first appearance of `token_marker` and the end.
pub fn time(
    address: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
    token_marker: &[u8],
) -> anyhow::Result<Timing> {
    let mut stream = TcpStream::connect(address).context("connecting")?;
    stream.set_nodelay(true)?;
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    let started = Instant::now();
    stream.write_all(request.as_bytes())?;
    let mut seen = Vec::new();
    let mut first_token = None;
    let mut buffer = [0u8; 16 * 1024];
    loop {
        let read = stream.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        seen.extend_from_slice(&buffer[..read]);
        if first_token.is_none() && contains(&seen, token_marker) {
            first_token = Some(started.elapsed());
        }
    }
    let total = started.elapsed();
    if !seen.starts_with(b"HTTP/1.1 200") {
        bail!(
            "{path} answered: {}",
            String::from_utf8_lossy(&seen[..seen.len().min(300)])
        );
    }
    let first_token = first_token.context("the answer held no token")?;
    Ok(Timing { first_token, total })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}
