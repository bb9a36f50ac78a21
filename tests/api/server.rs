//! The real `stockroom` binary, spawned as an operator starts it, for the tests that
//! crash it, stop it, or cut its database.

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::{ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
    process::{Child, Command},
};

/// How long a process may take to migrate, seed and start listening.
const START_PATIENCE: Duration = Duration::from_secs(60);

/// The admin key every spawned server is started with (see [`Server::start_shop`]).
pub const ADMIN_KEY: &str = "srk_spawned_admin_key_0123456789";

/// A running `stockroom` process, killed when dropped.
pub struct Server {
    child: Child,
    pub addr: String,
    /// What it printed at start-up: up to its "serving" line, and the line about keys after it.
    pub banner: Vec<String>,
    /// Every line it wrote to stderr (its logs) so far.
    pub logs: Arc<Mutex<Vec<String>>>,
    /// Reads its stderr into `logs`; ends when the process has exited.
    log_reader: Option<tokio::task::JoinHandle<()>>,
}

/// The command that starts the binary on `database_url` with nothing inherited but `PATH`.
pub fn command(database_url: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_stockroom"));
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
    /// Starts the binary with `envs` and waits until it listens.
    pub async fn start(database_url: &str, envs: &[(&str, &str)]) -> Server {
        let mut child = command(database_url)
            .envs(envs.iter().copied())
            .spawn()
            .expect("spawn stockroom");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
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
            child.stderr.take().unwrap().read_to_string(&mut stderr).await.ok();
            panic!("the server exited before serving: {banner:?}\n{stderr}");
        };
        // Keep reading what it prints, so that it never writes into a full or closed pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let logs = Arc::new(Mutex::new(Vec::new()));
        let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        let log_reader = tokio::spawn({
            let logs = logs.clone();
            async move {
                while let Ok(Some(line)) = stderr.next_line().await {
                    eprintln!("stockroom: {line}");
                    logs.lock().unwrap().push(line);
                }
            }
        });
        Server {
            child,
            addr,
            banner,
            logs,
            log_reader: Some(log_reader),
        }
    }

    /// Starts a server on PostgreSQL or SQLite at `addr` with `ADMIN_KEY`, webhooks signed
    /// with `webhook_secret`, no demo data and no anonymous rate limit, plus `envs`.
    pub async fn start_shop(database_url: &str, addr: &str, envs: &[(&str, &str)]) -> Server {
        let mut all = vec![
            ("STOCKROOM_ADDR", addr),
            ("STOCKROOM_ADMIN_KEY", ADMIN_KEY),
            ("STOCKROOM_DEMO", "0"),
            ("STOCKROOM_ANONYMOUS_RATE", "0"),
            ("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET),
        ];
        all.extend_from_slice(envs);
        Server::start(database_url, &all).await
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

/// The secret spawned servers verify Stripe webhooks with.
pub const WEBHOOK_SECRET: &str = "whsec_spawned_server";

/// A throw-away SQLite file (removed when dropped).
pub struct SqliteFile(PathBuf);

impl SqliteFile {
    pub fn new() -> SqliteFile {
        SqliteFile(std::env::temp_dir().join(format!("stockroom_proc_{}.sqlite", uuid::Uuid::new_v4().simple())))
    }

    pub fn url(&self) -> String {
        format!("sqlite://{}?mode=rwc", self.0.display())
    }
}

impl Drop for SqliteFile {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut file = self.0.clone().into_os_string();
            file.push(suffix);
            std::fs::remove_file(file).ok();
        }
    }
}
