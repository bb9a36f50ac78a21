//! Running a test under pressure: on each engine in turn ([`on_each_backend`]), and as
//! many tasks started at the same instant ([`race`]).

use std::{future::Future, sync::Arc};

use stockroom::Config;
use tokio::sync::Barrier;

use crate::app::TestApp;

/// Runs `test` on a fresh SQLite app, then on a fresh PostgreSQL app.
pub async fn on_each_backend<F, Fut>(test: F)
where
    F: Fn(TestApp) -> Fut,
    Fut: Future<Output = ()>,
{
    on_each_backend_with(|_| {}, test).await
}

/// Like [`on_each_backend`], with the apps' settings changed by `configure`.
pub async fn on_each_backend_with<F, Fut>(configure: impl Fn(&mut Config), test: F)
where
    F: Fn(TestApp) -> Fut,
    Fut: Future<Output = ()>,
{
    eprintln!("--- on SQLite");
    test(TestApp::sqlite_with(&configure).await).await;
    if let Some(app) = TestApp::postgres_with(&configure).await {
        eprintln!("--- on PostgreSQL");
        test(app).await;
    }
}

/// Starts `tasks` copies of `task` at the same moment (behind a barrier) and collects
/// their results in task order.
pub async fn race<T, F, Fut>(tasks: usize, task: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(tasks));
    let handles: Vec<_> = (0..tasks)
        .map(|index| {
            let barrier = barrier.clone();
            let work = task(index);
            tokio::spawn(async move {
                barrier.wait().await;
                work.await
            })
        })
        .collect();
    let mut results = Vec::with_capacity(tasks);
    for handle in handles {
        results.push(handle.await.expect("racing task panicked"));
    }
    results
}
