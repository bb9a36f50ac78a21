//! The name of the operation a request runs, for its log span and its latency metric:
//! `operationName` when the client sent one, else the name in the document when it holds
//! exactly one named operation (most clients send `mutation Place(…) {…}` and nothing else).

use std::sync::{Arc, OnceLock};

use async_graphql::{
    ServerResult, Variables,
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery},
    parser::types::{DocumentOperations, ExecutableDocument},
};

/// Filled in when the request's document is parsed; put it in the request's data.
#[derive(Clone, Debug, Default)]
pub struct OperationName(Arc<OnceLock<String>>);

impl OperationName {
    /// The name the document gave its one operation, once parsed.
    pub fn get(&self) -> Option<&str> {
        self.0.get().map(String::as_str)
    }
}

/// The schema extension that fills in [`OperationName`].
pub struct NameOperations;

impl ExtensionFactory for NameOperations {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(NameOperations)
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for NameOperations {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        if let (Some(slot), DocumentOperations::Multiple(operations)) =
            (ctx.data_opt::<OperationName>(), &document.operations)
            && let [name] = operations.keys().collect::<Vec<_>>()[..]
        {
            slot.0.set(name.to_string()).ok();
            tracing::Span::current().record("operation", name.as_str());
        }
        Ok(document)
    }
}
