//! A steward stand-in for the built binary: it answers each request from a script and records
//! it, and the answers the scripts share.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Output;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use crate::common;

/// One request the fake steward received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    pub body: Value,
}

type Script = dyn Fn(&Seen, usize) -> (u16, Value) + Send + Sync;

/// A steward stand-in: answers every request with `script(request, index)` and remembers it.
pub struct FakeSteward {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl FakeSteward {
    pub fn start(script: impl Fn(&Seen, usize) -> (u16, Value) + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Script> = Arc::new(script);
        let log = Arc::clone(&seen);
        // Serves until the test process exits; each test has its own port.
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = serve_one(stream, &*script, &log);
            }
        });
        FakeSteward { url, seen }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// Reads one HTTP/1.1 request and answers it, closing the connection after.
fn serve_one(stream: TcpStream, script: &Script, log: &Mutex<Vec<Seen>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let mut length = 0;
    let mut authorization = None;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header)?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap_or(0),
                "authorization" => authorization = Some(value.trim().to_owned()),
                _ => {}
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let seen = Seen {
        method,
        path,
        authorization,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    let index = {
        let mut log = log.lock().unwrap();
        log.push(seen.clone());
        log.len() - 1
    };
    let (status, answer) = script(&seen, index);
    let answer = answer.to_string();
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{answer}",
        answer.len()
    )?;
    stream.flush()
}

pub fn api_error(code: &str, message: &str, hint: &str) -> Value {
    json!({"object":"error","type":"invalid_request_error","code":code,"message":message,
           "hint":hint})
}

/// `spl --endpoint <fake> --token op <args>` on a fresh home.
pub fn spl_at(steward: &FakeSteward, home: &Path, args: &[&str]) -> Output {
    common::spl(home)
        .args(["--endpoint", &steward.url, "--token", "op"])
        .args(args)
        .output()
        .expect("spl runs")
}

pub fn pair_view(state: &str) -> Value {
    json!({"object":"federation_pair","pair_id":"fed_0123456789abcdef0123","peer_did":"did:web:bob.example",
           "peer_url":"https://bob.example","role":"initiator","state":state})
}

pub fn pending_answer(poll_after_ms: u64) -> Value {
    json!({"object":"pair_handshake","status":"pending","pair_id":"fed_0123456789abcdef0123",
           "poll_after_ms":poll_after_ms})
}
