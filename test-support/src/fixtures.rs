//! What tests and benches set up and send: the one-location shop, items with levels
//! ([`ItemBuilder`]), one-unit orders, and the `placeOrder` mutation ([`PLACE_ORDER`]).
//! Written against the domain (`stockroom::inventory`), so they work on any [`Database`];
//! [`TestApp`] has them as methods.

use std::{
    future::{Future, IntoFuture},
    pin::Pin,
};

use serde_json::{Value, json};
use stockroom::{
    db::Database,
    inventory::{
        catalog::{self, ChannelMapping},
        placement::PlaceOrder,
        stock::{self, SetStockLevel},
        values::{LineRequest, Name, PaymentIntentId, Quantity, Sku},
    },
};

use crate::app::TestApp;

/// `placeOrder` with every input a variable, answering with `$selection`: one text, so the
/// mutation is written once whatever a caller reads back.
macro_rules! place_order {
    ($selection:literal) => {
        concat!(
            "mutation Place($pi: String!, $c: ID!, $s: ID, $key: String, $lines: [OrderLineInput!]!) {\n",
            "    placeOrder(input: { paymentIntentId: $pi, salesChannelId: $c, shippingOptionId: $s, ",
            "reservationKey: $key, lines: $lines }) {\n",
            "        ",
            $selection,
            " } }"
        )
    };
}

/// The `placeOrder` mutation (operation `Place`), answering with the order and its lines.
/// Variables: `pi` (the PaymentIntent), `c` (the channel), `lines` (`[{ sku, quantity }]`),
/// and optionally `s` (a shipping option) and `key` (a reservation key); see
/// [`place_order_variables`].
pub const PLACE_ORDER: &str =
    place_order!("id paymentIntentId status lines { sku quantity backorderedQuantity location { name } }");

/// [`PLACE_ORDER`] answering with the order's id alone: for callers that read nothing
/// else, such as the benches, which measure the placement and not the answer.
pub const PLACE_ORDER_ID: &str = place_order!("id");

/// Variables for [`PLACE_ORDER`]: `payment_intent` orders `lines` (sku, quantity) through
/// `channel`, with no shipping option and no reservation.
pub fn place_order_variables(payment_intent: &str, channel: impl ToString, lines: &[(&str, i32)]) -> Value {
    let lines: Vec<Value> = lines
        .iter()
        .map(|(sku, quantity)| json!({ "sku": sku, "quantity": quantity }))
        .collect();
    json!({ "pi": payment_intent, "c": channel.to_string(), "lines": lines })
}

/// Creates a stock location; returns its id.
pub async fn location(db: &Database, name: &str) -> i32 {
    catalog::create_location(db, Name::parse(name, "name").unwrap())
        .await
        .unwrap()
        .id
}

/// Creates a channel mapped to `locations` as (location id, priority); returns its id.
pub async fn channel(db: &Database, name: &str, locations: &[(i32, i32)]) -> i32 {
    let channel = catalog::create_channel(db, Name::parse(name, "name").unwrap())
        .await
        .unwrap();
    for &(stock_location_id, priority) in locations {
        let mapping = ChannelMapping {
            sales_channel_id: channel.id,
            stock_location_id,
            priority,
        };
        catalog::map_channel_location(db, &mapping).await.unwrap();
    }
    channel.id
}

/// Creates a shipping option at `location`; returns its id.
pub async fn shipping_option(db: &Database, name: &str, location: i32) -> i32 {
    let name = Name::parse(name, "name").unwrap();
    catalog::create_shipping_option(db, name, location).await.unwrap().id
}

/// The one-location shop: location "Berlin", sold by channel "Web" (priority 0); returns
/// (location id, channel id).
pub async fn one_location_shop(db: &Database) -> (i32, i32) {
    let location = location(db, "Berlin").await;
    let channel = channel(db, "Web", &[(location, 0)]).await;
    (location, channel)
}

/// Creates item `sku`, titled "Item `sku`"; returns the parsed sku and the item's id.
async fn new_item(db: &Database, sku: &str) -> (Sku, i32) {
    let title = Name::parse(&format!("Item {sku}"), "title").unwrap();
    let sku = Sku::parse(sku).unwrap();
    let item = catalog::create_item(db, sku.clone(), title).await.unwrap();
    (sku, item.id)
}

/// Creates item `sku` without levels (see [`ItemBuilder`] for one with levels); returns
/// its sku.
pub async fn item(db: &Database, sku: &str) -> Sku {
    new_item(db, sku).await.0
}

/// Sets `sku`'s level at `location` (creating it if needed).
pub async fn set_level(db: &Database, sku: &Sku, location: i32, quantity: i32, allow_backorder: bool) {
    let cmd = SetStockLevel::unguarded(sku.clone(), location, quantity, allow_backorder);
    stock::set_stock_level(db, &cmd).await.unwrap();
}

/// An order of one unit of `sku`.
pub fn one_unit_order(payment_intent: &str, channel: i32, sku: &Sku) -> PlaceOrder {
    PlaceOrder {
        payment_intent_id: PaymentIntentId::parse(payment_intent).unwrap(),
        sales_channel_id: channel,
        shipping_option_id: None,
        reservation_key: None,
        lines: vec![LineRequest {
            sku: sku.clone(),
            quantity: Quantity::parse(1).unwrap(),
        }],
    }
}

/// Builds an inventory item with levels; `.await` creates it and returns the item id.
pub struct ItemBuilder<'a> {
    db: &'a Database,
    sku: String,
    levels: Vec<(i32, i32, bool)>,
}

impl<'a> ItemBuilder<'a> {
    /// Starts building item `sku` in `db`.
    pub fn new(db: &'a Database, sku: &str) -> ItemBuilder<'a> {
        ItemBuilder {
            db,
            sku: sku.to_owned(),
            levels: Vec::new(),
        }
    }
}

impl ItemBuilder<'_> {
    /// A level at `location` with `quantity` units, no backorder.
    pub fn level(mut self, location: i32, quantity: i32) -> Self {
        self.levels.push((location, quantity, false));
        self
    }

    /// A level at `location` with `quantity` units that allows backorder.
    pub fn backorder_level(mut self, location: i32, quantity: i32) -> Self {
        self.levels.push((location, quantity, true));
        self
    }
}

impl<'a> IntoFuture for ItemBuilder<'a> {
    type Output = i32;
    type IntoFuture = Pin<Box<dyn Future<Output = i32> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let (sku, id) = new_item(self.db, &self.sku).await;
            for (location, quantity, allow_backorder) in self.levels {
                set_level(self.db, &sku, location, quantity, allow_backorder).await;
            }
            id
        })
    }
}

/// The fixtures above, on the app's database.
impl TestApp {
    /// Creates a stock location; returns its id.
    pub async fn location(&self, name: &str) -> i32 {
        location(self.db(), name).await
    }

    /// Creates a channel mapped to `locations` as (location id, priority); returns its id.
    pub async fn channel(&self, name: &str, locations: &[(i32, i32)]) -> i32 {
        channel(self.db(), name, locations).await
    }

    /// Creates a shipping option at `location`; returns its id.
    pub async fn shipping_option(&self, name: &str, location: i32) -> i32 {
        shipping_option(self.db(), name, location).await
    }

    /// See [`one_location_shop`]: returns (location id, channel id).
    pub async fn one_location_shop(&self) -> (i32, i32) {
        one_location_shop(self.db()).await
    }

    /// Starts building an item: `app.item("A-1").level(loc, 5).backorder_level(other, 0).await`.
    pub fn item(&self, sku: &str) -> ItemBuilder<'_> {
        ItemBuilder::new(self.db(), sku)
    }
}
