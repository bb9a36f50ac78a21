//! The `stockroom` command: serve (the default), create API keys, print the schema.

use clap::{Parser, Subcommand};
use stockroom::{AppState, Config, auth, config::LogFormat, graphql, inventory::values::Name};
use tracing_subscriber::EnvFilter;

/// A GraphQL response is thousands of small allocations (one map per object, one future
/// per field), freed together: glibc's malloc spent a fifth of the server's CPU on them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "stockroom", version, about = "Inventory backend that never oversells")]
struct Cli {
    #[command(flatten)]
    config: Config,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve HTTP (the default).
    Serve,
    /// Manage API keys: create, list, revoke.
    ApiKey {
        #[command(subcommand)]
        action: ApiKeyAction,
    },
    /// Apply pending migrations and exit (the server also applies them at start).
    Migrate,
    /// Print the GraphQL schema (SDL); `schema.graphql` is this output.
    Schema,
}

#[derive(Subcommand)]
enum ApiKeyAction {
    /// Create a key and print it once; only its hash is stored.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, value_enum, default_value_t = RoleArg::Admin)]
        role: RoleArg,
    },
    /// List every key: id, role, prefix, name, created, last used, revoked.
    List,
    /// Revoke a key by id; other server processes refuse it within STOCKROOM_KEY_CACHE_MS.
    Revoke { id: i32 },
}

/// A key's role on the command line.
#[derive(Clone, Copy, clap::ValueEnum)]
enum RoleArg {
    /// Everything.
    Admin,
    /// Admin queries and subscriptions, no mutations.
    Read,
    /// placeOrder, reserveStock, releaseReservation; reading orders and reservations.
    Checkout,
}

impl From<RoleArg> for auth::Role {
    fn from(role: RoleArg) -> Self {
        match role {
            RoleArg::Admin => auth::Role::Admin,
            RoleArg::Read => auth::Role::Read,
            RoleArg::Checkout => auth::Role::Checkout,
        }
    }
}

async fn manage_keys(config: Config, action: ApiKeyAction) -> anyhow::Result<()> {
    let state = AppState::connect(config).await?;
    match action {
        ApiKeyAction::Create { name, role } => {
            let name = Name::parse(&name, "--name")?;
            let created = auth::create_key(&state.db, name, role.into()).await?;
            eprintln!(
                "Created key {} ({:?}); it is shown only now:",
                created.key.id, created.key.role
            );
            println!("{}", created.secret);
        }
        ApiKeyAction::List => {
            println!(
                "{:>5}  {:<8}  {:<12}  {:<25}  {:<25}  {:<25}  name",
                "id", "role", "prefix", "created", "last used", "revoked"
            );
            let time = |at: Option<chrono::DateTime<chrono::Utc>>| at.map_or("-".to_owned(), |at| at.to_rfc3339());
            for key in auth::list_keys(&state.db).await? {
                println!(
                    "{:>5}  {:<8}  {:<12}  {:<25}  {:<25}  {:<25}  {}",
                    key.id,
                    format!("{:?}", key.role).to_uppercase(),
                    if key.prefix.is_empty() { "-" } else { &key.prefix },
                    key.created_at.to_rfc3339(),
                    time(key.last_used_at),
                    time(key.revoked_at),
                    key.name
                );
            }
        }
        ApiKeyAction::Revoke { id } => {
            let key = auth::revoke_key(&state.db, id).await?;
            println!("Revoked key {} ({})", key.id, key.name);
        }
    }
    Ok(())
}

/// Logs to stderr: stdout carries what a command prints (a new key, the schema).
fn init_logs(format: LogFormat) {
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")));
    match format {
        LogFormat::Text => logs.init(),
        // Span fields (request id, operation) go on every record, flattened for collectors.
        LogFormat::Json => logs.json().flatten_event(true).with_current_span(true).init(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logs(cli.config.log_format);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => stockroom::serve(cli.config).await,
        Command::ApiKey { action } => manage_keys(cli.config, action).await,
        Command::Migrate => {
            let conn = stockroom::db::connect(&cli.config).await?;
            stockroom::db::Database::new(conn).migrate().await?;
            eprintln!("The database is up to date.");
            Ok(())
        }
        Command::Schema => {
            print!("{}", graphql::sdl());
            Ok(())
        }
    }
}
