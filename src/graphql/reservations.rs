//! Reservations: holding stock for a checkout, releasing it, and looking it up.

use async_graphql::{Context, ID, InputObject, Object, Result, connection::Connection};
use chrono::{DateTime, Utc};
use entity::{reservation, reservation_line};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use super::{
    Need,
    channels::{SalesChannel, load_location},
    dangling,
    enums::ReservationStatus,
    loaders,
    loaders::{ChannelById, LinesOfReservation},
    locations::StockLocation,
    orders::{OrderLineInput, parse_lines},
    pagination::{Listing, Page},
    parse_id, parse_optional_id, state, to_id,
};
use crate::auth::Permission;
use crate::{
    error::Error,
    inventory::{
        reservations::{self, DEFAULT_TTL_SECONDS, ReserveStock},
        values::ReservationKey,
    },
};

/// Stock held for a checkout.
pub struct Reservation(reservation::Model);

#[Object]
impl Reservation {
    async fn id(&self) -> ID {
        to_id(self.0.id)
    }

    /// The checkout's key; `placeOrder(reservationKey:)` commits the reservation.
    async fn key(&self) -> &str {
        &self.0.key
    }

    async fn sales_channel(&self, ctx: &Context<'_>) -> Result<SalesChannel> {
        let id = self.0.sales_channel_id;
        let channel = loaders(ctx).load_one(ChannelById(id)).await?;
        Ok(SalesChannel(channel.ok_or_else(|| dangling("sales channel", id))?))
    }

    /// An ACTIVE reservation past `expiresAt` holds nothing and shows as EXPIRED, even
    /// before the background sweep has recorded it.
    async fn status(&self) -> ReservationStatus {
        match self.0.status {
            reservation::ReservationStatus::Active if self.0.expires_at <= Utc::now() => ReservationStatus::Expired,
            status => status.into(),
        }
    }

    async fn expires_at(&self) -> DateTime<Utc> {
        self.0.expires_at
    }

    async fn lines(&self, ctx: &Context<'_>) -> Result<Vec<ReservationLine>> {
        let lines = loaders(ctx).load_one(LinesOfReservation(self.0.id)).await?;
        Ok(lines.unwrap_or_default().into_iter().map(ReservationLine).collect())
    }
}

/// One held quantity and the location holding it.
pub struct ReservationLine(reservation_line::Model);

#[Object]
impl ReservationLine {
    async fn sku(&self) -> &str {
        &self.0.sku
    }

    async fn quantity(&self) -> i32 {
        self.0.quantity
    }

    async fn location(&self, ctx: &Context<'_>) -> Result<StockLocation> {
        load_location(ctx, self.0.stock_location_id).await
    }
}

#[derive(Default)]
pub struct ReservationQuery;

#[Object]
impl ReservationQuery {
    /// The reservation with this id, or null.
    #[graphql(guard = "Need(Permission::ReadOrders)")]
    async fn reservation(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Reservation>> {
        let Ok(id) = id.parse::<i32>() else { return Ok(None) };
        let found = reservation::Entity::find_by_id(id)
            .one(state(ctx).db.conn())
            .await
            .map_err(Error::from)?;
        Ok(found.map(Reservation))
    }

    /// Reservations, oldest first, optionally only those stored with `status`.
    #[graphql(
        guard = "Need(Permission::ReadOrders)",
        complexity = "super::page_cost(first, child_complexity)"
    )]
    async fn reservations(
        &self,
        ctx: &Context<'_>,
        status: Option<ReservationStatus>,
        #[graphql(default = 50)] first: i32,
        after: Option<String>,
    ) -> Result<Connection<String, Reservation>> {
        let page = Page::parse(first, after.as_deref())?;
        let mut query = reservation::Entity::find();
        if let Some(status) = status {
            query = query.filter(reservation::Column::Status.eq(reservation::ReservationStatus::from(status)));
        }
        let rows = page
            .rows(
                query,
                reservation::Column::Id,
                Listing::OldestFirst,
                state(ctx).db.conn(),
            )
            .await?;
        Ok(page.connection(rows.into_iter().map(Reservation).collect(), |held| held.0.id.into()))
    }
}

#[derive(InputObject)]
pub struct ReserveStockInput {
    /// The checkout's idempotency key: reserving again with it returns the same reservation.
    pub key: String,
    pub sales_channel_id: ID,
    pub shipping_option_id: Option<ID>,
    pub lines: Vec<OrderLineInput>,
    /// How long the stock is held, in seconds (default 900).
    #[graphql(default_with = "Some(DEFAULT_TTL_SECONDS)")]
    pub ttl_seconds: Option<i32>,
}

#[derive(Default)]
pub struct ReservationMutation;

#[Object]
impl ReservationMutation {
    /// Holds stock for a checkout, by the same location rules as an order.
    #[graphql(guard = "Need(Permission::Checkout)")]
    async fn reserve_stock(&self, ctx: &Context<'_>, input: ReserveStockInput) -> Result<Reservation> {
        let cmd = ReserveStock {
            key: ReservationKey::parse(&input.key)?,
            sales_channel_id: parse_id(&input.sales_channel_id, "sales channel")?,
            shipping_option_id: parse_optional_id(input.shipping_option_id.as_ref(), "shipping option")?,
            lines: parse_lines(&input.lines)?,
            ttl_seconds: input.ttl_seconds.unwrap_or(DEFAULT_TTL_SECONDS).into(),
        };
        Ok(Reservation(state(ctx).reservations.submit(cmd).await?))
    }

    /// Gives a reservation's stock back (ACTIVE → RELEASED); harmless when repeated.
    #[graphql(guard = "Need(Permission::Checkout)")]
    async fn release_reservation(&self, ctx: &Context<'_>, id: ID) -> Result<Reservation> {
        let id = parse_id(&id, "reservation")?;
        Ok(Reservation(
            reservations::release_reservation(&state(ctx).db, id).await?,
        ))
    }
}
