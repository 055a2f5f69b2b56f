//! Is a backend there, and does it work? Each server gets a probe that does
//! real work in its own protocol: PostgreSQL runs `select 1` (or, without
//! psql, answers a startup message), Redis answers PING, RabbitMQ answers the
//! AMQP 0-9-1 protocol header with Connection.Start.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};

use super::{Backend, psql};

/// What one look at a server found.
enum Probe {
    Ready,
    /// Not yet (still starting, or not listening yet): look again.
    NotYet(String),
    /// Answers, but will never work as configured (wrong password, wrong protocol).
    Broken(String),
}

/// Poll until the server behind `url` does real work (PostgreSQL runs
/// `select 1`, Redis answers PING, RabbitMQ opens an AMQP handshake).
pub fn wait_until_usable(backend: Backend, url: &str) -> Result<()> {
    let target = Target::parse(backend, url)?;
    let started = Instant::now();
    loop {
        let last = match target.probe(url) {
            Probe::Ready => return Ok(()),
            Probe::Broken(why) => bail!(
                "{} at {url} answers but is not usable: {why}",
                backend.name()
            ),
            Probe::NotYet(why) => why,
        };
        if started.elapsed() > backend.ready_timeout() {
            bail!(
                "{} at {url} is not usable after {}s: {last}\n(if xtask started it, its log is {})",
                backend.name(),
                backend.ready_timeout().as_secs(),
                backend.log_location(),
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The parts of a backend URL that xtask needs to talk to the server.
pub struct Target {
    backend: Backend,
    scheme: String,
    host: String,
    port: u16,
    user: Option<String>,
    password: Option<String>,
    /// The path without its leading slash (the database, or the vhost).
    path: String,
}

impl Target {
    pub fn parse(backend: Backend, url: &str) -> Result<Target> {
        let bad = |why: &str| anyhow!("{}: cannot use `{url}`: {why}", backend.env_var());
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("not a URL"))?;
        let expected: &[&str] = match backend {
            Backend::Postgres => &["postgres", "postgresql"],
            Backend::Redis => &["redis", "rediss"],
            Backend::RabbitMq => &["amqp", "amqps"],
        };
        if !expected.contains(&scheme) {
            let schemes: Vec<String> = expected.iter().map(|s| format!("{s}://")).collect();
            return Err(bad(&format!("expected a {} URL", schemes.join(" or "))));
        }
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let path = tail
            .strip_prefix('/')
            .unwrap_or_default()
            .split(['?', '#'])
            .next()
            .unwrap_or_default();
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((userinfo, hostport)) => (Some(userinfo), hostport),
            None => (None, authority),
        };
        let (user, password) = match userinfo.map(|u| u.split_once(':').unwrap_or((u, ""))) {
            Some((user, password)) => (
                Some(percent_decode(user)).filter(|u| !u.is_empty()),
                Some(percent_decode(password)).filter(|p| !p.is_empty()),
            ),
            None => (None, None),
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| bad("unclosed `[`"))?;
            (host, after.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host (xtask only talks TCP)"));
        }
        let port = match port {
            Some(port) => port.parse().map_err(|_| bad("bad port"))?,
            None => backend.standard_port(),
        };
        Ok(Target {
            backend,
            scheme: scheme.to_owned(),
            host: host.to_owned(),
            port,
            user,
            password,
            path: percent_decode(path),
        })
    }

    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    pub fn accepts_tcp(&self) -> bool {
        tcp_connects(&self.addr())
    }

    fn probe(&self, url: &str) -> Probe {
        let tls = matches!(self.scheme.as_str(), "rediss" | "amqps");
        match self.backend {
            Backend::Postgres => match psql(url) {
                Some(psql) => probe_with_psql(psql),
                None => self.probe_postgres_startup(),
            },
            // Plain TCP is all xtask checks behind TLS.
            _ if tls => match self.connect() {
                Ok(_) => Probe::Ready,
                Err(e) => Probe::NotYet(e),
            },
            Backend::Redis => self.probe_redis(),
            Backend::RabbitMq => self.probe_amqp(),
        }
    }

    fn connect(&self) -> Result<TcpStream, String> {
        let addrs: Vec<SocketAddr> = self
            .addr()
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {}: {e}", self.addr()))?
            .collect();
        let mut last = format!("{} resolves to no address", self.addr());
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
                Ok(stream) => {
                    let timeout = Some(Duration::from_secs(5));
                    stream
                        .set_read_timeout(timeout)
                        .map_err(|e| e.to_string())?;
                    stream
                        .set_write_timeout(timeout)
                        .map_err(|e| e.to_string())?;
                    return Ok(stream);
                }
                Err(e) => last = format!("cannot connect to {addr}: {e}"),
            }
        }
        Err(last)
    }

    /// PING (after AUTH when the URL carries a password) must answer +PONG.
    fn probe_redis(&self) -> Probe {
        let mut stream = match self.connect() {
            Ok(stream) => stream,
            Err(e) => return Probe::NotYet(e),
        };
        let mut exchange = |request: &[u8]| -> Result<String, String> {
            stream.write_all(request).map_err(|e| e.to_string())?;
            let mut reply = Vec::new();
            let mut byte = [0u8; 1];
            while !reply.ends_with(b"\r\n") && reply.len() < 512 {
                match stream.read(&mut byte) {
                    Ok(1) => reply.push(byte[0]),
                    Ok(_) => return Err("connection closed".to_owned()),
                    Err(e) if timed_out(&e) => return Err(NO_ANSWER.to_owned()),
                    Err(e) => return Err(e.to_string()),
                }
            }
            Ok(String::from_utf8_lossy(&reply).trim().to_owned())
        };
        if let Some(password) = &self.password {
            let mut words = vec!["AUTH"];
            words.extend(self.user.as_deref());
            words.push(password);
            let mut request = format!("*{}\r\n", words.len());
            for word in words {
                request += &format!("${}\r\n{word}\r\n", word.len());
            }
            match exchange(request.as_bytes()) {
                Ok(reply) if reply == "+OK" => {}
                Ok(reply) => return Probe::Broken(format!("AUTH answered {reply}")),
                Err(e) => return Probe::NotYet(e),
            }
        }
        match exchange(b"PING\r\n") {
            Ok(reply) if reply == "+PONG" => Probe::Ready,
            Ok(reply) if reply.starts_with("-NOAUTH") || reply.starts_with("-WRONGPASS") => {
                Probe::Broken(format!("PING answered {reply}"))
            }
            Ok(reply) => Probe::NotYet(format!("PING answered {reply:?}")),
            Err(e) if e == NO_ANSWER => Probe::Broken(format!("{e}: not a Redis server?")),
            Err(e) => Probe::NotYet(e),
        }
    }

    /// The broker must answer the AMQP 0-9-1 protocol header with a
    /// Connection.Start method frame.
    fn probe_amqp(&self) -> Probe {
        let mut stream = match self.connect() {
            Ok(stream) => stream,
            Err(e) => return Probe::NotYet(e),
        };
        let mut reply = [0u8; 11];
        let result = stream
            .write_all(b"AMQP\x00\x00\x09\x01")
            .and_then(|()| stream.read_exact(&mut reply));
        match result {
            Err(e) if timed_out(&e) => Probe::Broken(
                "no answer to the AMQP protocol header: not an AMQP server?".to_owned(),
            ),
            Err(e) => Probe::NotYet(format!("no AMQP handshake: {e}")),
            // frame type 1 (method) on channel 0, class 10 / method 10 (Connection.Start)
            Ok(()) if reply[0] == 1 && reply[1..3] == [0, 0] && reply[7..11] == [0, 10, 0, 10] => {
                Probe::Ready
            }
            Ok(()) if reply.starts_with(b"AMQP") => Probe::Broken(format!(
                "the server speaks another AMQP version ({:?})",
                &reply[4..8]
            )),
            Ok(()) => Probe::Broken(format!("not an AMQP 0-9-1 server (answered {reply:?})")),
        }
    }

    /// Without psql: a startup message must be answered with an
    /// authentication request ('R'), not an error ('E') such as "the
    /// database system is starting up".
    fn probe_postgres_startup(&self) -> Probe {
        let mut stream = match self.connect() {
            Ok(stream) => stream,
            Err(e) => return Probe::NotYet(e),
        };
        let user = self.user.as_deref().unwrap_or("postgres");
        let database = if self.path.is_empty() {
            user
        } else {
            &self.path
        };
        let mut body = 196_608u32.to_be_bytes().to_vec(); // protocol 3.0
        for part in ["user", user, "database", database] {
            body.extend_from_slice(part.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut message = u32::try_from(body.len() + 4)
            .unwrap_or(u32::MAX)
            .to_be_bytes()
            .to_vec();
        message.extend(body);
        let mut tag = [0u8; 1];
        if let Err(e) = stream
            .write_all(&message)
            .and_then(|()| stream.read_exact(&mut tag))
        {
            return Probe::NotYet(format!("no answer to a startup message: {e}"));
        }
        match tag[0] {
            b'R' => {
                let _ = stream.write_all(b"X\x00\x00\x00\x04"); // Terminate
                Probe::Ready
            }
            b'E' => {
                let mut rest = Vec::new();
                let _ = stream.read_to_end(&mut rest);
                let fields =
                    String::from_utf8_lossy(rest.get(4..).unwrap_or_default()).into_owned();
                let message = fields
                    .split('\0')
                    .find_map(|field| field.strip_prefix('M'))
                    .unwrap_or("unknown error")
                    .to_owned();
                classify_postgres_error(message)
            }
            other => Probe::Broken(format!("not a PostgreSQL server (answered {other:#04x})")),
        }
    }
}

fn probe_with_psql(mut psql: Command) -> Probe {
    let output = psql
        .args(["-Atc", "select 1"])
        .stdin(Stdio::null())
        .output();
    match output {
        Err(e) => Probe::NotYet(format!("cannot run psql: {e}")),
        Ok(out) if out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "1" => {
            Probe::Ready
        }
        Ok(out) => classify_postgres_error(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
    }
}

/// A server that is still starting is worth waiting for; one that rejects
/// our credentials or lacks the database is not.
fn classify_postgres_error(message: String) -> Probe {
    let hopeless = [
        "authentication failed",
        "no password supplied",
        "does not exist",
        "no pg_hba.conf entry",
    ];
    if hopeless.iter().any(|h| message.contains(h)) {
        Probe::Broken(message)
    } else {
        Probe::NotYet(message)
    }
}

const NO_ANSWER: &str = "no answer within 5s";

/// A server that accepts a connection but stays silent past the read timeout
/// is not the server we are looking for (one that is still starting up
/// refuses or drops connections instead).
fn timed_out(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

pub fn tcp_connects(addr: &str) -> bool {
    addr.to_socket_addrs()
        .into_iter()
        .flatten()
        .any(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok())
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provision::{POSTGRES_PORT, REDIS_PORT};

    #[test]
    fn parses_the_default_urls() {
        let pg = Target::parse(Backend::Postgres, Backend::Postgres.default_url()).unwrap();
        assert_eq!((pg.host.as_str(), pg.port), ("127.0.0.1", POSTGRES_PORT));
        assert_eq!(
            (pg.user.as_deref(), pg.path.as_str()),
            (Some("postgres"), "postgres")
        );

        let redis = Target::parse(Backend::Redis, Backend::Redis.default_url()).unwrap();
        assert_eq!(redis.addr(), format!("127.0.0.1:{REDIS_PORT}"));
        assert_eq!(redis.password, None);

        let amqp = Target::parse(Backend::RabbitMq, Backend::RabbitMq.default_url()).unwrap();
        assert_eq!(amqp.addr(), "127.0.0.1:5672");
        assert_eq!(
            (amqp.user.as_deref(), amqp.password.as_deref()),
            (Some("guest"), Some("guest"))
        );
        assert_eq!(amqp.path, "/");
    }

    #[test]
    fn parses_ipv6_passwords_and_missing_ports() {
        let redis = Target::parse(Backend::Redis, "redis://:p%40ss@[::1]/0").unwrap();
        assert_eq!(redis.addr(), "[::1]:6379");
        assert_eq!(
            (redis.user, redis.password.as_deref()),
            (None, Some("p@ss"))
        );
        assert!(Target::parse(Backend::Redis, "memory://").is_err());
        assert!(Target::parse(Backend::Postgres, "postgres:///db").is_err());
    }
}
