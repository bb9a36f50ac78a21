//! A graphql-transport-ws client ([`WsClient`]), speaking the protocol message by message.

use std::{net::SocketAddr, time::Duration};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream, connect_async,
    tungstenite::{Message, client::IntoClientRequest},
};

/// The backorder subscription every test subscribes with.
pub const SUBSCRIBE: &str = "subscription($after: ID, $sku: String) {
    backorderEvents(after: $after, sku: $sku) { id sku orderId quantity stockedQuantity backorderedQuantity location { name } } }";
/// Generous bound on waiting for one message, so a broken stream fails instead of hanging.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A graphql-transport-ws client, speaking the protocol message by message.
pub struct WsClient {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl WsClient {
    /// Connects and sends `connection_init`; `Err` if the server does not acknowledge.
    pub async fn connect(addr: SocketAddr, key: Option<&str>) -> Result<WsClient, String> {
        let mut request = format!("ws://{addr}/graphql/ws").into_client_request().unwrap();
        request
            .headers_mut()
            .insert("sec-websocket-protocol", "graphql-transport-ws".parse().unwrap());
        let (socket, _) = connect_async(request).await.map_err(|err| err.to_string())?;
        let mut client = WsClient { socket };
        let payload = key.map_or(json!({}), |key| json!({ "authorization": format!("Bearer {key}") }));
        client
            .send(json!({ "type": "connection_init", "payload": payload }))
            .await;
        match client.receive().await {
            Some(message) if message["type"] == "connection_ack" => Ok(client),
            other => Err(format!("not acknowledged: {other:?}")),
        }
    }

    /// Sends one protocol message.
    pub async fn send(&mut self, message: Value) {
        self.socket.send(Message::text(message.to_string())).await.unwrap();
    }

    /// The next protocol message (answering pings), or `None` once the server closed.
    pub async fn receive(&mut self) -> Option<Value> {
        loop {
            let message = tokio::time::timeout(PATIENCE, self.socket.next())
                .await
                .expect("no message in time")?;
            match message.ok()? {
                Message::Text(text) => {
                    let message: Value = serde_json::from_str(&text).unwrap();
                    if message["type"] == "ping" {
                        self.send(json!({ "type": "pong" })).await;
                        continue;
                    }
                    return Some(message);
                }
                Message::Close(_) => return None,
                _ => continue,
            }
        }
    }

    /// Subscribes to [`SUBSCRIBE`] as subscription `id`, with `variables`.
    pub async fn subscribe(&mut self, id: &str, variables: Value) {
        self.send(json!({ "id": id, "type": "subscribe", "payload": { "query": SUBSCRIBE, "variables": variables } }))
            .await;
    }

    /// The next event delivered on subscription `id`.
    pub async fn next_event(&mut self, id: &str) -> Value {
        let message = self.receive().await.expect("connection open");
        assert_eq!(message["type"], "next", "{message}");
        assert_eq!(message["id"], id);
        message["payload"]["data"]["backorderEvents"].clone()
    }

    /// Ends subscription `id`.
    pub async fn complete(&mut self, id: &str) {
        self.send(json!({ "id": id, "type": "complete" })).await;
    }
}
