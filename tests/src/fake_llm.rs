//! A real HTTP/1.1 server on 127.0.0.1, scripted per request, standing in for a model
//! endpoint. Hand-rolled so a script can also hang, reset the connection, or send bytes
//! no well-behaved server would.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: serde_json::Value,
    /// When the server had read the whole request (its own clock).
    pub at: Instant,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The system message of an OpenAI chat request.
    pub fn system(&self) -> String {
        self.message("system")
    }

    /// The last user message of an OpenAI chat request.
    pub fn user(&self) -> String {
        self.message("user")
    }

    fn message(&self, role: &str) -> String {
        self.body["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["role"] == role)
            .filter_map(|m| m["content"].as_str())
            .next_back()
            .unwrap_or("")
            .to_string()
    }
}

/// What the server does with a request.
pub enum Action {
    Reply {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Never answer.
    Hang,
    /// Close the connection with a TCP reset.
    Reset,
    /// Wait, then do the inner action.
    Delay(Duration, Box<Action>),
    /// A 200 with chunked JSON headers, then one byte every `every`, forever (until the
    /// client goes away).
    Trickle { every: Duration },
    /// A 200 whose body is `total` bytes of filler, written in 64 KiB chunks as the
    /// client reads them (never held in memory). With `declare`, the Content-Length is
    /// sent; without, the body is chunked.
    Flood { total: u64, declare: bool },
}

impl Action {
    /// An OpenAI chat completion whose answer is `text`.
    pub fn chat(text: &str) -> Self {
        let body = serde_json::json!({
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
        });
        Self::status(200, body.to_string())
    }

    /// An Anthropic Messages API answer whose text is `text`.
    pub fn anthropic(text: &str) -> Self {
        let body = serde_json::json!({
            "id": "msg_test",
            "type": "message",
            "role": "assistant",
            "model": "claude-test",
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 10, "output_tokens": 5}
        });
        Self::status(200, body.to_string())
    }

    /// A 200 with a JSON body.
    pub fn json(body: serde_json::Value) -> Self {
        Self::status(200, body.to_string())
    }

    /// The same reply with one more header.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        if let Action::Reply { headers, .. } = &mut self {
            headers.push((name.into(), value.into()));
        }
        self
    }

    /// `self`, after `wait`.
    pub fn delayed(self, wait: Duration) -> Self {
        Action::Delay(wait, Box::new(self))
    }

    pub fn status(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Action::Reply {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.into(),
        }
    }
}

type Script = dyn Fn(&Recorded) -> Action + Send + Sync;

pub struct FakeLlm {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    load: Arc<Load>,
    task: tokio::task::JoinHandle<()>,
}

/// Requests being answered now, and the most there ever were at once.
#[derive(Default)]
struct Load {
    now: AtomicUsize,
    max: AtomicUsize,
}

impl FakeLlm {
    pub async fn start(script: impl Fn(&Recorded) -> Action + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Script> = Arc::new(script);
        let reqs = requests.clone();
        let load = Arc::new(Load::default());
        let l = load.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve(stream, script.clone(), reqs.clone(), l.clone()));
            }
        });
        Self {
            addr,
            requests,
            load,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    /// The most requests the server was answering at the same time.
    pub fn max_in_flight(&self) -> usize {
        self.load.max.load(Ordering::SeqCst)
    }

    /// How many requests the server has read so far.
    pub fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    mut stream: TcpStream,
    script: Arc<Script>,
    requests: Arc<Mutex<Vec<Recorded>>>,
    load: Arc<Load>,
) {
    let mut buf = Vec::new();
    loop {
        let Some(req) = read_request(&mut stream, &mut buf).await else {
            return;
        };
        requests.lock().unwrap().push(req.clone());
        let now = load.now.fetch_add(1, Ordering::SeqCst) + 1;
        load.max.fetch_max(now, Ordering::SeqCst);
        // Counted down however the answer ends (also when the client goes away).
        let _answering = Answering(&load);
        if !respond(&mut stream, script(&req)).await {
            return;
        }
    }
}

struct Answering<'a>(&'a Load);

impl Drop for Answering<'_> {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Carries out one action; `false` when the connection is finished.
fn respond<'a>(
    stream: &'a mut TcpStream,
    action: Action,
) -> Pin<Box<dyn Future<Output = bool> + Send + 'a>> {
    Box::pin(async move {
        match action {
            Action::Reply {
                status,
                headers,
                body,
            } => {
                let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
                for (k, v) in &headers {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
                // One write: a head and body sent separately meet Nagle's algorithm and
                // the client's delayed ACK, a 40 ms stall per answer.
                let mut bytes = head.into_bytes();
                bytes.extend_from_slice(&body);
                stream.write_all(&bytes).await.is_ok()
            }
            Action::Hang => std::future::pending().await,
            Action::Reset => {
                let _ = stream.set_zero_linger();
                false
            }
            Action::Delay(wait, then) => {
                tokio::time::sleep(wait).await;
                respond(stream, *then).await
            }
            Action::Trickle { every } => {
                let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{\r\n";
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return false;
                }
                loop {
                    tokio::time::sleep(every).await;
                    if stream.write_all(b"1\r\n \r\n").await.is_err() {
                        return false;
                    }
                }
            }
            Action::Flood { total, declare } => {
                let framing = if declare {
                    format!("Content-Length: {total}")
                } else {
                    "Transfer-Encoding: chunked".to_string()
                };
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{framing}\r\n\r\n"
                );
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return false;
                }
                let chunk = vec![b' '; 64 * 1024];
                let mut left = total;
                while left > 0 {
                    let n = left.min(chunk.len() as u64) as usize;
                    let ok = if declare {
                        stream.write_all(&chunk[..n]).await.is_ok()
                    } else {
                        let framed = format!("{n:x}\r\n");
                        stream.write_all(framed.as_bytes()).await.is_ok()
                            && stream.write_all(&chunk[..n]).await.is_ok()
                            && stream.write_all(b"\r\n").await.is_ok()
                    };
                    if !ok {
                        return false;
                    }
                    left -= n as u64;
                }
                declare || stream.write_all(b"0\r\n\r\n").await.is_ok()
            }
        }
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Reads one request (head and Content-Length body); `None` at end of stream.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Recorded> {
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let path = first.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body =
        serde_json::from_slice(&buf[head_end..head_end + len]).unwrap_or(serde_json::Value::Null);
    buf.drain(..head_end + len);
    Some(Recorded {
        method,
        path,
        headers,
        body,
        at: Instant::now(),
    })
}
