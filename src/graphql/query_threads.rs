//! GraphQL queries (storefront reads, admin lists) run on threads of their own, at a lower
//! CPU priority than the rest of the process: request handling, mutations and the
//! combined placements (`inventory::combiner`).
//!
//! Why: a flash sale brings its storefront traffic with it. A hot sku sells one combined
//! transaction at a time, and every round trip of that transaction, and every order's
//! request around it, needs a core at once; a read that waits a moment loses nothing. On
//! the same cores at the same priority, 64 storefront readers took over half of a flash
//! sale's throughput (BENCHMARKS.md, "Storefront"). The priority is a nice value (Linux;
//! elsewhere these threads run at the process's own priority): it is a weight, not a rank,
//! so under contention queries still get their share, slowed, never starved, and on an
//! idle machine they run at full speed.
//!
//! On PostgreSQL the queries read through a pool of their own, opened on these threads
//! (`Database::for_runtime`), so a write never waits for a low-priority thread to notice
//! its reply. That pool is half the size of the request pool ([`pool_size`]).

use std::sync::OnceLock;

use sea_orm::DbErr;
use tokio::runtime::Runtime;
use tokio_util::task::AbortOnDropHandle;

use super::StockroomSchema;
use crate::{config::Config, db::Database, error::Error};

/// How far below the process's own priority the query threads run (a nice increment).
/// 10 is a weight about a tenth of a normal thread's: measured in the storefront bench's
/// mixed rush, a larger one (19) kept more of the flash sale but let the reads' p99 grow
/// past 25 ms, a smaller one gave most of the flash sale back to the readers.
pub const NICE_INCREMENT: i32 = 10;

/// The runtime queries execute on: one thread per core, each lowered by
/// [`NICE_INCREMENT`] as it starts.
fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let threads = std::thread::available_parallelism().map_or(2, |cores| cores.get());
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("stockroom-query")
            .on_thread_start(lower_priority)
            .enable_all()
            .build()
            .expect("the query threads can be started")
    })
}

/// Sets the calling thread's CPU priority [`NICE_INCREMENT`] below the main thread's
/// (threads inherit their creator's, so counting from its own would lower twice the
/// threads a query thread starts). Lowering is always permitted; if it fails anyway the
/// thread keeps its priority and queries still run.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        use rustix::{process, thread};
        let main_thread = process::getpriority_process(Some(process::getpid())).unwrap_or(0);
        let lowered = (main_thread + NICE_INCREMENT).min(19);
        let this_thread = Some(thread::gettid());
        if let Err(err) = process::setpriority_process(this_thread, lowered) {
            tracing::warn!(error = %err, "could not lower a query thread's priority");
        }
    }
}

/// The database queries read through, given the request pool's `db` (see the module doc).
pub async fn database(db: &Database, config: &Config) -> Result<Database, DbErr> {
    db.for_runtime(runtime(), config, pool_size(config.db_pool_size)).await
}

/// The queries' pool size for a request pool of `request_pool_size`: half as many. Queries
/// need few: storefront reads share statements (`inventory::availability`) and lists batch
/// their lookups (`graphql::loaders`).
pub fn pool_size(request_pool_size: u32) -> u32 {
    request_pool_size.div_ceil(2)
}

/// Executes a query request on the query threads. If the caller goes away (the client
/// hung up), the execution is dropped with it.
pub async fn execute(
    schema: &StockroomSchema,
    request: async_graphql::Request,
) -> Result<async_graphql::Response, Error> {
    let schema = schema.clone();
    // Not under tokio's cooperative budget: see `http::graphql_http`.
    let execution = runtime().spawn(async move { tokio::task::coop::unconstrained(schema.execute(request)).await });
    AbortOnDropHandle::new(execution)
        .await
        .map_err(|err| Error::Internal(format!("a query's execution failed: {err}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn query_threads_run_below_the_main_threads_priority() {
        use rustix::{process, thread};
        let main_thread = process::getpriority_process(Some(process::getpid())).unwrap();
        let on_query_thread = runtime()
            .block_on(async {
                tokio::spawn(async { process::getpriority_process(Some(thread::gettid())).unwrap() }).await
            })
            .unwrap();
        assert_eq!(on_query_thread, (main_thread + NICE_INCREMENT).min(19));
    }
}
