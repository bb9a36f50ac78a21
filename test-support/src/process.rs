//! The real `stockroom` binary, spawned as an operator starts it ([`Server`]), for the
//! tests that crash it, stop it, or cut its database, and for the HTTP benches (see
//! [`crate::load`]). Cargo tells only the root package's tests and benches where the
//! binary is (`env!("CARGO_BIN_EXE_stockroom")`), so they pass its path in.

use std::{
    net::SocketAddr,
    process::{ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
    process::{Child, Command},
    task::JoinHandle,
};

/// How long a process may take to migrate, seed and start listening.
const START_PATIENCE: Duration = Duration::from_secs(60);

/// The admin key every server spawned by [`Server::start_shop`] accepts.
pub const SPAWNED_ADMIN_KEY: &str = "srk_spawned_admin_key_0123456789";

/// The secret servers spawned by [`Server::start_shop`] verify Stripe webhooks with.
pub const WEBHOOK_SECRET: &str = "whsec_spawned_server";

/// A running `stockroom` process, killed when dropped.
pub struct Server {
    child: Child,
    pub addr: String,
    /// What it printed at start-up: up to its "serving" line, and the line about keys after it.
    pub banner: Vec<String>,
    /// Every line it wrote to stderr (its logs) so far, if its stderr was piped.
    pub logs: Arc<Mutex<Vec<String>>>,
    /// Reads its stderr into `logs`; ends when the process has exited.
    log_reader: Option<JoinHandle<()>>,
}

/// The command that starts `binary` on `database_url` with nothing inherited but `PATH`.
pub fn command(binary: &str, database_url: &str) -> Command {
    let mut command = Command::new(binary);
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATABASE_URL", database_url)
        .env("STOCKROOM_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// A free local address for a server that must come back on the same one after a restart.
pub fn free_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

impl Server {
    /// Starts `binary` on `database_url` (see [`command`]) with `envs` and waits until it
    /// listens.
    pub async fn start(binary: &str, database_url: &str, envs: &[(&str, &str)]) -> Server {
        let mut command = command(binary, database_url);
        command.envs(envs.iter().copied());
        Server::spawn(command).await
    }

    /// Starts a server on PostgreSQL or SQLite at `addr` with [`SPAWNED_ADMIN_KEY`],
    /// webhooks signed with [`WEBHOOK_SECRET`], no demo data and no anonymous rate limit,
    /// plus `envs`.
    pub async fn start_shop(binary: &str, database_url: &str, addr: &str, envs: &[(&str, &str)]) -> Server {
        let mut all = vec![
            ("STOCKROOM_ADDR", addr),
            ("STOCKROOM_ADMIN_KEY", SPAWNED_ADMIN_KEY),
            ("STOCKROOM_DEMO", "0"),
            ("STOCKROOM_ANONYMOUS_RATE", "0"),
            ("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET),
        ];
        all.extend_from_slice(envs);
        Server::start(binary, database_url, &all).await
    }

    /// Spawns `command`, whose stdout must be piped, and waits until it listens. If its
    /// stderr is piped too, every line is echoed and kept in `logs`.
    pub async fn spawn(mut command: Command) -> Server {
        let mut child = command.spawn().expect("spawn stockroom");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout is piped")).lines();
        let mut banner = Vec::new();
        let serving = tokio::time::timeout(START_PATIENCE, async {
            while let Some(line) = lines.next_line().await.unwrap() {
                banner.push(line.clone());
                if let Some(rest) = line.split("http://").nth(1) {
                    banner.extend(lines.next_line().await.unwrap());
                    return Some(rest.trim_end_matches("/graphql").to_owned());
                }
            }
            None
        })
        .await
        .expect("the server started in time");
        let Some(addr) = serving else {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                pipe.read_to_string(&mut stderr).await.ok();
            }
            panic!("the server exited before serving: {banner:?}\n{stderr}");
        };
        // Keep reading what it prints, so that it never writes into a full or closed pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let logs = Arc::new(Mutex::new(Vec::new()));
        let log_reader = child.stderr.take().map(|pipe| {
            let mut stderr = BufReader::new(pipe).lines();
            let logs = logs.clone();
            tokio::spawn(async move {
                while let Ok(Some(line)) = stderr.next_line().await {
                    eprintln!("stockroom: {line}");
                    logs.lock().unwrap().push(line);
                }
            })
        });
        Server {
            child,
            addr,
            banner,
            logs,
            log_reader,
        }
    }

    /// The address it listens on.
    pub fn socket_addr(&self) -> SocketAddr {
        self.addr.parse().unwrap()
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `GET path` over plain HTTP/1.1: status and body.
    pub async fn get(&self, path: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(&self.addr)
            .await
            .unwrap_or_else(|err| panic!("{} refused a connection ({err}); see its stderr above", self.addr));
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let status = response
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or(0);
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())
            .unwrap_or_default();
        (status, body)
    }

    /// `kill -9`: no chance to finish anything.
    pub async fn kill(mut self) {
        self.child.kill().await.expect("kill -9 the server");
    }

    /// Sends SIGTERM, as a process manager does to stop it.
    pub fn terminate(&self) {
        let pid = self.child.id().expect("the server is running");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {pid} failed");
    }

    /// Waits (at most `patience`) for the process to exit by itself; then `logs` holds
    /// everything it wrote.
    pub async fn exit_status(&mut self, patience: Duration) -> ExitStatus {
        let status = tokio::time::timeout(patience, self.child.wait())
            .await
            .expect("the server exited in time")
            .expect("wait for the server");
        if let Some(reader) = self.log_reader.take() {
            reader.await.ok();
        }
        status
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.child.start_kill().ok();
    }
}
