//! A tiny HTTP/1.1 server on 127.0.0.1 standing in for a service a
//! component calls: answers every request with `200` and a fixed body, and
//! counts the requests it saw.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct Upstream {
    pub port: u16,
    requests: Arc<AtomicUsize>,
}

impl Upstream {
    /// Starts serving `body` on a free port, until the test process ends.
    pub fn start(body: &'static str) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicUsize::new(0));
        std::thread::spawn({
            let requests = requests.clone();
            move || {
                for stream in listener.incoming().map_while(Result::ok) {
                    requests.fetch_add(1, Ordering::SeqCst);
                    std::thread::spawn(move || answer(stream, body));
                }
            }
        });
        Upstream { port, requests }
    }

    /// Requests received so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

fn answer(stream: TcpStream, body: &str) {
    let mut reader = BufReader::new(&stream);
    let mut line = String::new();
    // The request head ends with an empty line; GETs carry no body.
    while reader.read_line(&mut line).is_ok_and(|read| read > 0) && line != "\r\n" {
        line.clear();
    }
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = (&stream).write_all(response.as_bytes());
}

/// A port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}
