//! A component's stdout and stderr, turned into log events that carry the
//! component's name and the request id, one event per line.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

use super::RequestSlot;

/// Longest line kept before it is logged anyway, so a component writing
/// without newlines cannot grow host memory without bound.
const MAX_LINE_BYTES: usize = 16 * 1024;

#[derive(Clone)]
pub struct ComponentOutput {
    inner: Arc<Inner>,
}

struct Inner {
    component: Arc<str>,
    /// Filled when the instance's request starts (after the instance exists).
    request: RequestSlot,
    stream: &'static str,
    pending: Mutex<Vec<u8>>,
}

impl ComponentOutput {
    pub fn new(component: Arc<str>, request: RequestSlot, stream: &'static str) -> Self {
        let pending = Mutex::new(Vec::new());
        let inner = Inner {
            component,
            request,
            stream,
            pending,
        };
        ComponentOutput {
            inner: Arc::new(inner),
        }
    }
}

impl Inner {
    fn write(&self, mut bytes: &[u8]) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(newline) = bytes.iter().position(|&b| b == b'\n') {
            pending.extend_from_slice(&bytes[..newline]);
            self.emit(&pending);
            pending.clear();
            bytes = &bytes[newline + 1..];
        }
        pending.extend_from_slice(bytes);
        if pending.len() >= MAX_LINE_BYTES {
            self.emit(&pending);
            pending.clear();
        }
    }

    fn emit(&self, line: &[u8]) {
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            return;
        }
        tracing::info!(
            target: "arena::component",
            component = %self.component,
            request_id = self.request.get().map_or("-", |request| &request.id),
            stream = self.stream,
            "{line}"
        );
    }
}

impl Drop for Inner {
    /// Logs a last line that had no newline when the instance went away.
    fn drop(&mut self) {
        let pending = std::mem::take(self.pending.get_mut().unwrap_or_else(|e| e.into_inner()));
        if !pending.is_empty() {
            self.emit(&pending);
        }
    }
}

impl AsyncWrite for ComponentOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.inner.write(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl IsTerminal for ComponentOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for ComponentOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_lines_wait_for_their_newline() {
        let output = ComponentOutput::new("c".into(), Default::default(), "stdout");
        output.inner.write(b"hel");
        output.inner.write(b"lo\nwor");
        assert_eq!(*output.inner.pending.lock().unwrap(), b"wor");
    }

    #[test]
    fn a_line_without_newline_is_cut_at_the_limit() {
        let output = ComponentOutput::new("c".into(), Default::default(), "stderr");
        output.inner.write(&vec![b'x'; MAX_LINE_BYTES + 1]);
        assert!(output.inner.pending.lock().unwrap().is_empty());
    }
}
