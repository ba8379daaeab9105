//! A TCP proxy that a test can cut: the database outage of one process, without touching
//! the server that other tests share.
//!
//! Connections made through [`Proxy::addr`] are forwarded to the target. [`Proxy::cut`]
//! drops every forwarded connection and refuses new ones (each is accepted and closed at
//! once), as a server that went away does; [`Proxy::restore`] lets connections through
//! again.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// A cuttable TCP proxy; it stops when dropped.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    state: Arc<State>,
    accept: AbortHandle,
}

#[derive(Debug, Default)]
struct State {
    cut: AtomicBool,
    links: Mutex<Vec<AbortHandle>>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `target`.
    pub async fn start(target: SocketAddr) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State::default());
        let accepting = state.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if accepting.cut.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let link = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                if let Ok(mut links) = accepting.links.lock() {
                    links.retain(|l| !l.is_finished());
                    links.push(link.abort_handle());
                }
            }
        })
        .abort_handle();
        Ok(Proxy {
            addr,
            state,
            accept,
        })
    }

    /// Where to connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `url` (a `postgres://` URL) with its host and port replaced by the proxy's.
    pub fn postgres_url(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let user = authority
            .rsplit_once('@')
            .map(|(user, _)| format!("{user}@"))
            .unwrap_or_default();
        format!("{scheme}://{user}{}/{path}", self.addr)
    }

    /// Drops every connection and refuses new ones until [`restore`](Self::restore).
    pub fn cut(&self) {
        self.state.cut.store(true, Ordering::SeqCst);
        if let Ok(mut links) = self.state.links.lock() {
            for link in links.drain(..) {
                link.abort();
            }
        }
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.state.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}
