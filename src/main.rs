//! The `stockroom` command: serve (the default), create API keys, print the schema.

use clap::{Parser, Subcommand};
use stockroom::{AppState, Config, auth, graphql};
use tracing_subscriber::EnvFilter;

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
    /// Manage admin API keys.
    ApiKey {
        #[command(subcommand)]
        action: ApiKeyAction,
    },
    /// Print the GraphQL schema (SDL); `schema.graphql` is this output.
    Schema,
}

#[derive(Subcommand)]
enum ApiKeyAction {
    /// Create a key and print it once; only its hash is stored.
    Create {
        #[arg(long)]
        name: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => stockroom::serve(cli.config).await,
        Command::ApiKey {
            action: ApiKeyAction::Create { name },
        } => {
            let state = AppState::connect(cli.config).await?;
            println!("{}", auth::create_key(&state.db, &name).await?);
            Ok(())
        }
        Command::Schema => {
            print!("{}", graphql::sdl());
            Ok(())
        }
    }
}
