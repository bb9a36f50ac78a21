//! The database a test or bench runs on, fresh each time and removed afterwards: a SQLite
//! file in the temp directory, or a uniquely named database on the PostgreSQL server at
//! `TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`). A test
//! that cannot reach PostgreSQL skips its PostgreSQL half loudly, unless `CI` is set: then
//! it fails. A bench needs PostgreSQL and stops without it.

use std::path::PathBuf;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, Statement};
use stockroom::{AppState, Config, db};

/// Which engine a test app runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The URL of the PostgreSQL server's own database, where databases are created and dropped.
pub(crate) fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// `host:port` of the test PostgreSQL server, as written in its URL.
pub(crate) fn postgres_address() -> String {
    let url = admin_url();
    let after_scheme = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
    let after_user = after_scheme.rsplit_once('@').map_or(after_scheme, |(_, rest)| rest);
    after_user.split('/').next().unwrap_or(after_user).to_owned()
}

/// The first column of the first row `sql` returns, as a number.
pub async fn scalar(conn: &DatabaseConnection, sql: &str) -> i64 {
    let row = conn
        .query_one_raw(Statement::from_string(conn.get_database_backend(), sql.to_owned()))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}

/// A throw-away SQLite file in the temp directory, removed (with its `-wal` and `-shm`)
/// when dropped, also when the test panics.
pub struct SqliteFile(PathBuf);

impl SqliteFile {
    /// A new, unique file name; the file is created when the first connection opens it.
    pub fn new() -> SqliteFile {
        SqliteFile::named("stockroom_proc")
    }

    /// Like [`Self::new`], the name starting with `prefix`.
    pub(crate) fn named(prefix: &str) -> SqliteFile {
        let file = format!("{prefix}_{}.sqlite", uuid::Uuid::new_v4().simple());
        SqliteFile(std::env::temp_dir().join(file))
    }

    /// Its URL, which creates the file if need be.
    pub fn url(&self) -> String {
        format!("sqlite://{}?mode=rwc", self.0.display())
    }
}

impl Default for SqliteFile {
    fn default() -> Self {
        SqliteFile::new()
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

/// A database created on the test PostgreSQL server, dropped (`WITH (FORCE)`) when this
/// value is, also when the test panics: the one way tests and benches make and remove one.
struct PostgresDatabase {
    admin_url: String,
    name: String,
    /// Already dropped (by [`Self::drop_now`]): nothing left to do when this value goes.
    dropped: bool,
}

impl PostgresDatabase {
    /// Creates database `name`; `Err` if PostgreSQL is unreachable.
    async fn create(name: String) -> Result<PostgresDatabase, DbErr> {
        let admin_url = admin_url();
        let admin = sea_orm::Database::connect(&admin_url).await?;
        admin
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await
            .expect("create database");
        Ok(PostgresDatabase {
            admin_url,
            name,
            dropped: false,
        })
    }

    /// The URL to connect to it.
    fn url(&self) -> String {
        let (base, _) = self
            .admin_url
            .rsplit_once('/')
            .expect("TEST_DATABASE_URL has a database path");
        format!("{base}/{}", self.name)
    }

    /// Drops it now, from async code.
    async fn drop_now(&mut self) {
        drop_database(&self.admin_url, &self.name).await;
        self.dropped = true;
    }
}

async fn drop_database(admin_url: &str, name: &str) {
    if let Ok(admin) = sea_orm::Database::connect(admin_url).await {
        let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
        admin.execute_unprepared(&sql).await.ok();
    }
}

impl Drop for PostgresDatabase {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop runs outside any async context we could borrow, so the DROP gets its own
        // thread and runtime.
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(drop_database(&admin_url, &name));
        })
        .join()
        .ok();
    }
}

/// A fresh PostgreSQL database with nothing in it (not even migrations), dropped with
/// this value: for tests that start server processes themselves, and for
/// [`TestApp`](crate::app::TestApp)s on PostgreSQL.
pub struct EmptyDatabase {
    pub url: String,
    _database: PostgresDatabase,
}

impl EmptyDatabase {
    /// Creates it, or `None` (loudly) if PostgreSQL is unreachable; under `CI`, panics.
    pub async fn postgres() -> Option<EmptyDatabase> {
        let name = format!("stockroom_test_{}", uuid::Uuid::new_v4().simple());
        match PostgresDatabase::create(name).await {
            Ok(database) => Some(EmptyDatabase {
                url: database.url(),
                _database: database,
            }),
            Err(err) => {
                let admin_url = admin_url();
                if std::env::var_os("CI").is_some() {
                    panic!("CI is set but PostgreSQL at {admin_url} is unreachable: {err}")
                }
                eprintln!(
                    "\n!!!!! PostgreSQL at {admin_url} is unreachable ({err}).\n\
                     !!!!! SKIPPING the PostgreSQL half of this test. Set TEST_DATABASE_URL or start PostgreSQL.\n"
                );
                None
            }
        }
    }
}

/// A database created for one bench run at `TEST_DATABASE_URL`, dropped by [`Self::drop`]
/// (or, should the bench panic first, when this value is).
pub struct ScratchDatabase {
    pub url: String,
    database: PostgresDatabase,
}

impl ScratchDatabase {
    pub async fn create() -> ScratchDatabase {
        Self::create_named("main").await
    }

    /// Like [`Self::create`], with `tag` in the name (several per run).
    pub async fn create_named(tag: &str) -> ScratchDatabase {
        let name = format!("stockroom_bench_{}_{tag}", std::process::id());
        let database = PostgresDatabase::create(name)
            .await
            .expect("PostgreSQL at TEST_DATABASE_URL");
        ScratchDatabase {
            url: database.url(),
            database,
        }
    }

    /// A server process (pool, migrations, event feed) on this database.
    pub async fn process(&self, configure: impl FnOnce(&mut Config)) -> AppState {
        let mut config = Config::for_database(&self.url);
        configure(&mut config);
        AppState::from_connection(db::connect(&config).await.expect("connect"), config)
            .await
            .expect("migrate")
    }

    /// Drops the database (connections to it are cut).
    pub async fn drop(mut self) {
        self.database.drop_now().await;
    }
}
