//! Orders: the `Order` type and the admin queries over orders.

use async_graphql::{Context, ID, InputObject, Object, Result, connection::Connection};
use chrono::{DateTime, Utc};
use entity::{order_line, orders, sales_channel};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use super::{
    Need,
    channels::{SalesChannel, load_location},
    enums::OrderStatus,
    loaders,
    loaders::{ChannelById, LinesOfOrder},
    locations::StockLocation,
    pagination::{Listing, Page},
    parse_id, parse_optional_id, state, to_id,
};
use crate::auth::Permission;
use crate::{
    error::Error,
    inventory::{
        placement::PlaceOrder,
        values::{LineRequest, PaymentIntentId, Quantity, ReservationKey, Sku},
    },
};

/// An order: PLACED (stock taken) or REJECTED (with a reason).
pub struct Order(pub orders::Model);

#[Object]
impl Order {
    async fn id(&self) -> ID {
        to_id(self.0.id)
    }

    async fn payment_intent_id(&self) -> &str {
        &self.0.payment_intent_id
    }

    /// Null only for a rejected order whose channel was unknown.
    async fn sales_channel(&self, ctx: &Context<'_>) -> Result<Option<SalesChannel>> {
        let Some(id) = self.0.sales_channel_id else {
            return Ok(None);
        };
        let channel: Option<sales_channel::Model> = loaders(ctx).load_one(ChannelById(id)).await?;
        Ok(channel.map(SalesChannel))
    }

    async fn status(&self) -> OrderStatus {
        self.0.status.into()
    }

    async fn rejection_reason(&self) -> Option<&str> {
        self.0.rejection_reason.as_deref()
    }

    /// Stripe refund id, for a rejected order that was refunded.
    async fn refund_id(&self) -> Option<&str> {
        self.0.refund_id.as_deref()
    }

    /// Why the refund of a rejected order failed (then refund it by hand).
    async fn refund_error(&self) -> Option<&str> {
        self.0.refund_error.as_deref()
    }

    async fn lines(&self, ctx: &Context<'_>) -> Result<Vec<OrderLine>> {
        let lines = loaders(ctx).load_one(LinesOfOrder(self.0.id)).await?;
        Ok(lines.unwrap_or_default().into_iter().map(OrderLine).collect())
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// One line of an order.
pub struct OrderLine(order_line::Model);

#[Object]
impl OrderLine {
    async fn sku(&self) -> &str {
        &self.0.sku
    }

    async fn quantity(&self) -> i32 {
        self.0.quantity
    }

    /// Where the line was taken from; null on a rejected order.
    async fn location(&self, ctx: &Context<'_>) -> Result<Option<StockLocation>> {
        match self.0.stock_location_id {
            Some(id) => Ok(Some(load_location(ctx, id).await?)),
            None => Ok(None),
        }
    }

    /// Units of this line that were not in stock (the level went below zero).
    async fn backordered_quantity(&self) -> i32 {
        self.0.backordered_quantity
    }
}

#[derive(Default)]
pub struct OrderQuery;

#[Object]
impl OrderQuery {
    /// The order with this id, or null.
    #[graphql(guard = "Need(Permission::ReadOrders)")]
    async fn order(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Order>> {
        let Ok(id) = id.parse::<i32>() else {
            return Ok(None);
        };
        let order = orders::Entity::find_by_id(id)
            .one(state(ctx).db.conn())
            .await
            .map_err(Error::from)?;
        Ok(order.map(Order))
    }

    /// The order made for a Stripe PaymentIntent, or null.
    #[graphql(guard = "Need(Permission::ReadOrders)")]
    async fn order_by_payment_intent(&self, ctx: &Context<'_>, payment_intent_id: String) -> Result<Option<Order>> {
        let order = orders::Entity::find()
            .filter(orders::Column::PaymentIntentId.eq(payment_intent_id))
            .one(state(ctx).db.conn())
            .await
            .map_err(Error::from)?;
        Ok(order.map(Order))
    }

    /// Orders, oldest first (or newest first), optionally only those with `status`.
    #[graphql(
        guard = "Need(Permission::ReadOrders)",
        complexity = "super::page_cost(first, child_complexity)"
    )]
    async fn orders(
        &self,
        ctx: &Context<'_>,
        status: Option<OrderStatus>,
        #[graphql(default = 50)] first: i32,
        after: Option<String>,
        #[graphql(default = false)] newest_first: bool,
    ) -> Result<Connection<String, Order>> {
        let page = Page::parse(first, after.as_deref())?;
        let mut query = orders::Entity::find();
        if let Some(status) = status {
            query = query.filter(orders::Column::Status.eq(orders::OrderStatus::from(status)));
        }
        let order = Listing::newest_first(newest_first);
        let rows = page
            .rows(query, orders::Column::Id, order, state(ctx).db.conn())
            .await?;
        Ok(page.connection(rows.into_iter().map(Order).collect(), |order| order.0.id.into()))
    }
}

/// One requested order or reservation line.
#[derive(InputObject)]
pub struct OrderLineInput {
    pub sku: String,
    /// Positive.
    pub quantity: i32,
}

/// Parses requested lines into domain lines.
pub fn parse_lines(lines: &[OrderLineInput]) -> Result<Vec<LineRequest>, Error> {
    lines
        .iter()
        .map(|line| {
            Ok(LineRequest {
                sku: Sku::parse(&line.sku)?,
                quantity: Quantity::parse(line.quantity)?,
            })
        })
        .collect()
}

#[derive(InputObject)]
pub struct PlaceOrderInput {
    /// The idempotency key: placing again with the same id returns the existing order.
    pub payment_intent_id: String,
    pub sales_channel_id: ID,
    /// Ship from this option's location if it can serve a line (it must be mapped to the channel).
    pub shipping_option_id: Option<ID>,
    /// Key of an ACTIVE reservation to commit. An unknown key is placed as if none was given.
    pub reservation_key: Option<String>,
    pub lines: Vec<OrderLineInput>,
}

#[derive(Default)]
pub struct OrderMutation;

#[Object]
impl OrderMutation {
    /// Places an order atomically (see the placement rules); idempotent per `paymentIntentId`.
    #[graphql(guard = "Need(Permission::Checkout)")]
    async fn place_order(&self, ctx: &Context<'_>, input: PlaceOrderInput) -> Result<Order> {
        let order = PlaceOrder {
            payment_intent_id: PaymentIntentId::parse(&input.payment_intent_id)?,
            sales_channel_id: parse_id(&input.sales_channel_id, "sales channel")?,
            shipping_option_id: parse_optional_id(input.shipping_option_id.as_ref(), "shipping option")?,
            reservation_key: input
                .reservation_key
                .as_deref()
                .map(ReservationKey::parse)
                .transpose()?,
            lines: parse_lines(&input.lines)?,
        };
        Ok(Order(state(ctx).placements.submit(order).await?.order))
    }
}
