//! The load client: one HTTP/1.1 keep-alive connection per worker (hyper, no pool), the requests
//! each scenario sends, and the worker loop that times them.
//!
//! Every connection goes through [`loopback`], so nothing here can be pointed at another machine.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, header};
use hyper_util::rt::TokioIo;

use crate::stats::WorkerTally;

/// The public client of the booking spec that logs users in.
pub const PUBLIC_CLIENT: &str = "booking-web";
/// The confidential client of the booking spec that introspects.
pub const CONFIDENTIAL_CLIENT: &str = "booking-backend";

/// Refuses any address that is not loopback: this benchmark never leaves the machine.
pub fn loopback(addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    if addr.ip().is_loopback() {
        Ok(addr)
    } else {
        bail!("refusing {addr}: the load benchmark only targets loopback addresses")
    }
}

/// One keep-alive HTTP/1.1 connection.
pub struct Connection {
    addr: SocketAddr,
    host: String,
    sender: SendRequest<Full<Bytes>>,
}

/// An answer: status and body.
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The body.
    pub body: Bytes,
}

impl Connection {
    /// Opens a connection to a loopback address.
    pub async fn open(addr: SocketAddr) -> anyhow::Result<Self> {
        let addr = loopback(addr)?;
        let stream = tokio::net::TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            // The connection ends when the worker drops its sender or the server closes it; the
            // worker sees either as a failed request.
            let _ = connection.await;
        });
        Ok(Self { addr, host: addr.to_string(), sender })
    }

    /// Sends one request and reads the whole answer.
    pub async fn send(&mut self, call: &Call) -> anyhow::Result<Answer> {
        let request = call.request(&self.host)?;
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        Ok(Answer { status, body })
    }

    /// A fresh connection to the same address (after a transport failure).
    pub async fn reopen(&mut self) -> anyhow::Result<()> {
        *self = Self::open(self.addr).await?;
        Ok(())
    }
}

/// One request a scenario sends, with what it needs to build the next one.
#[derive(Debug, Clone)]
pub enum Call {
    /// `GET` of a fixed path.
    Get(&'static str),
    /// `POST /oauth/introspect` of an access token, the confidential client in HTTP Basic.
    Introspect {
        /// `Basic ...`.
        authorization: String,
        /// The form body.
        form: Bytes,
    },
    /// `POST /oauth/token` with `grant_type=refresh_token`, following the worker's own chain.
    Refresh {
        /// The current refresh token of the chain.
        token: String,
    },
    /// `POST /oauth/token` with `grant_type=password`, cycling through the users.
    Password {
        /// `(username, password)` of every user.
        users: Arc<Vec<(String, String)>>,
        /// The next user to log in.
        next: usize,
    },
}

impl Call {
    /// Introspection of `token` by `client_id` with its secret.
    pub fn introspect(client_id: &str, secret: &str, token: &str) -> Self {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{client_id}:{secret}"));
        let form = form(&[("token", token)]);
        Self::Introspect { authorization: format!("Basic {basic}"), form }
    }

    fn request(&self, host: &str) -> anyhow::Result<Request<Full<Bytes>>> {
        let builder = Request::builder().header(header::HOST, host);
        let request = match self {
            Self::Get(path) => builder.method(Method::GET).uri(*path).body(Full::new(Bytes::new()))?,
            Self::Introspect { authorization, form } => post(builder, "/oauth/introspect")
                .header(header::AUTHORIZATION, authorization.as_str())
                .body(Full::new(form.clone()))?,
            Self::Refresh { token } => post(builder, "/oauth/token").body(Full::new(form(&[
                ("grant_type", "refresh_token"),
                ("client_id", PUBLIC_CLIENT),
                ("refresh_token", token),
            ])))?,
            Self::Password { users, next } => {
                let (username, password) = &users[*next % users.len()];
                post(builder, "/oauth/token").body(Full::new(password_form(username, password)))?
            }
        };
        Ok(request)
    }

    /// Moves to the next request after an answer. `false` when the worker cannot go on (a refresh
    /// chain whose token was refused is broken).
    fn advance(&mut self, answer: &Answer) -> bool {
        match self {
            Self::Refresh { token } => match refresh_token_of(&answer.body) {
                Some(next) if (200..300).contains(&answer.status) => {
                    *token = next;
                    true
                }
                _ => false,
            },
            Self::Password { next, .. } => {
                *next = next.wrapping_add(1);
                true
            }
            Self::Get(_) | Self::Introspect { .. } => true,
        }
    }
}

fn post(builder: hyper::http::request::Builder, path: &str) -> hyper::http::request::Builder {
    builder.method(Method::POST).uri(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
}

fn form(pairs: &[(&str, &str)]) -> Bytes {
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        serializer.append_pair(name, value);
    }
    Bytes::from(serializer.finish())
}

/// The body of a password grant for the public client.
pub fn password_form(username: &str, password: &str) -> Bytes {
    form(&[("grant_type", "password"), ("client_id", PUBLIC_CLIENT), ("username", username), ("password", password)])
}

/// The `refresh_token` member of a token response.
pub fn refresh_token_of(body: &[u8]) -> Option<String> {
    member(body, "refresh_token")
}

/// The `access_token` member of a token response.
pub fn access_token_of(body: &[u8]) -> Option<String> {
    member(body, "access_token")
}

fn member(body: &[u8], name: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value.get(name)?.as_str().map(str::to_owned)
}

/// Logs a user in once (outside any measurement) and returns the token response's body.
pub async fn login(addr: SocketAddr, username: &str, password: &str) -> anyhow::Result<Bytes> {
    let mut connection = Connection::open(addr).await?;
    let users = Arc::new(vec![(username.to_owned(), password.to_owned())]);
    let answer = connection.send(&Call::Password { users, next: 0 }).await?;
    if answer.status != 200 {
        bail!("logging {username} in: {} {}", answer.status, String::from_utf8_lossy(&answer.body));
    }
    Ok(answer.body)
}

/// When and how long a group of workers runs.
#[derive(Debug, Clone)]
pub struct Window {
    /// Requests before `start` are not recorded (connections warm, pools filled).
    pub start: Instant,
    /// No request is sent at or after this instant.
    pub stop: Instant,
    /// Requests the group may send inside the window, all workers together.
    pub budget: Arc<AtomicU64>,
}

/// Runs one worker: sends `call` over `connection` until the window closes or the budget is
/// spent, and tallies what was answered inside the window.
pub async fn run_worker(mut connection: Connection, mut call: Call, window: Window) -> WorkerTally {
    let mut tally = WorkerTally::default();
    loop {
        let sent = Instant::now();
        if sent >= window.stop {
            break;
        }
        let measured = sent >= window.start;
        if measured && window.budget.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_err() {
            break;
        }
        match connection.send(&call).await {
            Ok(answer) => {
                let done = Instant::now();
                if measured {
                    tally.record(answer.status, done - sent, done - window.start, &answer.body);
                }
                if !call.advance(&answer) {
                    tally.error(answer.status, "refresh chain broken; this worker stops");
                    break;
                }
            }
            Err(e) => {
                if measured {
                    tally.error(0, &format!("{e:#}"));
                }
                if connection.reopen().await.is_err() {
                    break;
                }
            }
        }
    }
    tally
}

/// Polls `GET path` on fresh connections every few milliseconds until it answers 200 or
/// `timeout` passes; returns when it first answered.
pub async fn wait_for_200(addr: SocketAddr, path: &'static str, timeout: Duration) -> anyhow::Result<Instant> {
    let give_up = Instant::now() + timeout;
    loop {
        if let Ok(mut connection) = Connection::open(addr).await
            && let Ok(answer) = connection.send(&Call::Get(path)).await
            && answer.status == 200
        {
            return Ok(Instant::now());
        }
        if Instant::now() >= give_up {
            bail!("{addr}{path} did not answer 200 within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_is_a_target() {
        assert!(loopback("127.0.0.1:8080".parse().unwrap()).is_ok());
        assert!(loopback("[::1]:8080".parse().unwrap()).is_ok());
        assert!(loopback("10.0.0.1:8080".parse().unwrap()).is_err());
        assert!(loopback("0.0.0.0:8080".parse().unwrap()).is_err());
    }

    #[test]
    fn a_refresh_chain_follows_the_new_token_and_breaks_on_refusal() {
        let mut call = Call::Refresh { token: "a".into() };
        let ok = Answer { status: 200, body: Bytes::from_static(br#"{"refresh_token":"b","access_token":"x"}"#) };
        assert!(call.advance(&ok));
        assert!(matches!(&call, Call::Refresh { token } if token == "b"));
        let refused = Answer { status: 400, body: Bytes::from_static(br#"{"error":"invalid_grant"}"#) };
        assert!(!call.advance(&refused));
    }
}
