//! A loopback TCP proxy for fault injection, placed between the runtime and an
//! HTTP server: it passes bytes through, adds latency, black-holes them, cuts a
//! response after N bytes, or resets connections (RST, via a zero linger).
//!
//! The fault is read at every accepted connection and at every chunk, so a test
//! can change it under live keep-alive connections; [`Proxy::reset_all`] resets
//! every open connection at once. Binds 127.0.0.1 only; stops when dropped.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// What the proxy does to the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward everything at once.
    Pass,
    /// Forward every chunk (both directions) after this delay.
    Latency(Duration),
    /// Accept and read, never forward, never answer (a dropped packet flow).
    Blackhole,
    /// Reset new connections at accept, and live ones at their next chunk.
    Reset,
    /// Forward at most this many response bytes per connection, then reset it.
    CutResponseAfter(usize),
}

/// A running proxy to `upstream`.
pub struct Proxy {
    /// Where clients connect (127.0.0.1, a free port).
    pub addr: SocketAddr,
    fault: Arc<Mutex<Fault>>,
    resets: watch::Sender<u64>,
    accepted: Arc<AtomicUsize>,
    live: Arc<AtomicUsize>,
    stop: CancellationToken,
}

impl Proxy {
    /// Starts a proxy forwarding to `upstream` with [`Fault::Pass`].
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let fault = Arc::new(Mutex::new(Fault::Pass));
        let (resets, _) = watch::channel(0u64);
        let accepted = Arc::new(AtomicUsize::new(0));
        let live = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let proxy = Proxy {
            addr,
            fault: fault.clone(),
            resets: resets.clone(),
            accepted: accepted.clone(),
            live: live.clone(),
            stop: stop.clone(),
        };
        tokio::spawn(async move {
            loop {
                let (client, _) = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok(pair) => pair,
                        Err(_) => continue,
                    },
                    () = stop.cancelled() => return,
                };
                accepted.fetch_add(1, Ordering::SeqCst);
                let connection = Connection {
                    fault: fault.clone(),
                    resets: resets.subscribe(),
                    live: live.clone(),
                    stop: stop.clone(),
                };
                tokio::spawn(connection.run(client, upstream));
            }
        });
        proxy
    }

    /// The URL of `path` through the proxy, e.g. `http://127.0.0.1:P/mcp`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Changes the fault for new connections and the next chunk of live ones.
    pub fn set(&self, fault: Fault) {
        *self.fault.lock().unwrap() = fault;
    }

    /// Resets (RST) every open connection now.
    pub fn reset_all(&self) {
        self.resets.send_modify(|n| *n += 1);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Connections open now.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

struct Connection {
    fault: Arc<Mutex<Fault>>,
    resets: watch::Receiver<u64>,
    live: Arc<AtomicUsize>,
    stop: CancellationToken,
}

struct LiveGuard(Arc<AtomicUsize>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Closes `stream` with an RST instead of a FIN.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

impl Connection {
    fn fault(&self) -> Fault {
        *self.fault.lock().unwrap()
    }

    async fn run(mut self, mut client: TcpStream, upstream: SocketAddr) {
        self.live.fetch_add(1, Ordering::SeqCst);
        let _guard = LiveGuard(self.live.clone());
        self.resets.borrow_and_update();
        match self.fault() {
            Fault::Reset => return reset(client),
            Fault::Blackhole => {
                let mut sink = [0u8; 16 * 1024];
                loop {
                    tokio::select! {
                        read = client.read(&mut sink) => if matches!(read, Ok(0) | Err(_)) { return },
                        _ = self.resets.changed() => return reset(client),
                        () = self.stop.cancelled() => return reset(client),
                    }
                }
            }
            _ => {}
        }
        let Ok(mut server) = TcpStream::connect(upstream).await else {
            return reset(client);
        };
        let _ = server.set_nodelay(true);
        let _ = client.set_nodelay(true);
        let (mut up, mut down) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
        let (mut client_eof, mut server_eof) = (false, false);
        let mut sent_down = 0usize;
        while !(client_eof && server_eof) {
            tokio::select! {
                read = client.read(&mut up), if !client_eof => match read {
                    Ok(0) | Err(_) => {
                        client_eof = true;
                        let _ = server.shutdown().await;
                    }
                    Ok(n) => match self.fault() {
                        Fault::Reset => return reset(client),
                        Fault::Blackhole => {}
                        Fault::Latency(delay) => {
                            tokio::time::sleep(delay).await;
                            if server.write_all(&up[..n]).await.is_err() { return reset(client) }
                        }
                        Fault::Pass | Fault::CutResponseAfter(_) => {
                            if server.write_all(&up[..n]).await.is_err() { return reset(client) }
                        }
                    },
                },
                read = server.read(&mut down), if !server_eof => match read {
                    Ok(0) | Err(_) => {
                        server_eof = true;
                        let _ = client.shutdown().await;
                    }
                    Ok(n) => match self.fault() {
                        Fault::Reset => return reset(client),
                        Fault::Blackhole => {}
                        Fault::Latency(delay) => {
                            tokio::time::sleep(delay).await;
                            if client.write_all(&down[..n]).await.is_err() { return }
                        }
                        Fault::CutResponseAfter(limit) => {
                            let allowed = limit.saturating_sub(sent_down).min(n);
                            if client.write_all(&down[..allowed]).await.is_err() { return }
                            sent_down += allowed;
                            if allowed < n {
                                let _ = client.flush().await;
                                return reset(client);
                            }
                        }
                        Fault::Pass => {
                            if client.write_all(&down[..n]).await.is_err() { return }
                        }
                    },
                },
                _ = self.resets.changed() => return reset(client),
                () = self.stop.cancelled() => return reset(client),
            }
        }
    }
}
