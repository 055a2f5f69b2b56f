//! A Redis stand-in for taking the shared cache away mid-test: it answers
//! until its task is aborted, after which nothing listens on its port.
//! `GET` answers [`GENERATION`] (a generation that vouches for whatever a
//! test kept under it); every other command answers `+OK`.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What every `GET` returns.
pub const GENERATION: u64 = 7;

/// Start it; returns its `redis://` URL and the task to abort.
pub async fn start() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("redis://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        // Dropped with the task, which closes every connection.
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            connections.spawn(async move {
                let mut pending = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let n = match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    pending.extend_from_slice(&buf[..n]);
                    while let Some((used, is_get)) = command(&pending) {
                        pending.drain(..used);
                        let answer = if is_get {
                            let n = GENERATION.to_string();
                            format!("${}\r\n{n}\r\n", n.len())
                        } else {
                            "+OK\r\n".to_string()
                        };
                        if socket.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (url, server)
}

/// The length of the first complete RESP command (`*N` bulk strings) in
/// `buf`, and whether it is a `GET`.
fn command(buf: &[u8]) -> Option<(usize, bool)> {
    fn line(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
        let end = buf[at..].windows(2).position(|w| w == b"\r\n")? + at;
        Some((&buf[at..end], end + 2))
    }
    let (header, mut at) = line(buf, 0)?;
    let count: usize = std::str::from_utf8(header.strip_prefix(b"*")?)
        .ok()?
        .parse()
        .ok()?;
    let mut is_get = false;
    for i in 0..count {
        let (len, next) = line(buf, at)?;
        let len: usize = std::str::from_utf8(len.strip_prefix(b"$")?)
            .ok()?
            .parse()
            .ok()?;
        if next + len + 2 > buf.len() {
            return None;
        }
        if i == 0 {
            is_get = buf[next..next + len].eq_ignore_ascii_case(b"GET");
        }
        at = next + len + 2;
    }
    Some((at, is_get))
}
