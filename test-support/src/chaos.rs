//! A TCP proxy in front of PostgreSQL that a test can switch off ([`ChaosProxy`]), to prove
//! the app survives a database outage; apps reach it through
//! [`TestApp::postgres_through`](crate::app::TestApp::postgres_through).

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use tokio::{
    net::{TcpListener, TcpStream},
    task::AbortHandle,
};

use crate::database::postgres_address;

/// A TCP proxy in front of the test PostgreSQL server (after crates.io's `ChaosProxy`).
pub struct ChaosProxy {
    pub(crate) addr: SocketAddr,
    up: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
}

impl ChaosProxy {
    /// Starts a proxy to the test PostgreSQL server, passing traffic.
    pub async fn start() -> ChaosProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let upstream = postgres_address();
        let up = Arc::new(AtomicBool::new(true));
        let connections: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let (accept_up, accept_connections) = (up.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !accept_up.load(Ordering::SeqCst) {
                    continue; // dropping the socket refuses the connection
                }
                let upstream = upstream.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        tokio::io::copy_bidirectional(&mut client, &mut server).await.ok();
                    }
                });
                accept_connections.lock().unwrap().push(task.abort_handle());
            }
        });
        ChaosProxy { addr, up, connections }
    }

    /// Cuts every open connection and refuses new ones.
    pub fn break_database(&self) {
        self.up.store(false, Ordering::SeqCst);
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }

    /// Lets connections through again.
    pub fn restore_database(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}
