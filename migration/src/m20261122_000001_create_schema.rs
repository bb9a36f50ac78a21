//! The whole data model in one migration: the product is new, so there is no history to
//! preserve, and one file shows every table, key and constraint side by side.
//!
//! Rules that the database can enforce are enforced here as well as in the domain code,
//! so a bug in a write path fails loudly instead of corrupting stock.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum StockLocation {
    Table,
    Id,
    Name,
    Version,
}

#[derive(DeriveIden)]
enum SalesChannel {
    Table,
    Id,
    Name,
    Version,
}

#[derive(DeriveIden)]
enum SalesChannelLocation {
    Table,
    Id,
    SalesChannelId,
    StockLocationId,
    Priority,
    Version,
}

#[derive(DeriveIden)]
enum ShippingOption {
    Table,
    Id,
    Name,
    StockLocationId,
    Version,
}

#[derive(DeriveIden)]
enum InventoryItem {
    Table,
    Id,
    Sku,
    Title,
    Version,
}

#[derive(DeriveIden)]
enum InventoryLevel {
    Table,
    Id,
    InventoryItemId,
    StockLocationId,
    StockedQuantity,
    ReservedQuantity,
    AllowBackorder,
    Version,
}

#[derive(DeriveIden)]
enum Orders {
    Table,
    Id,
    PaymentIntentId,
    SalesChannelId,
    ShippingOptionId,
    ReservationId,
    Status,
    RejectionReason,
    RefundId,
    RefundError,
    Version,
}

#[derive(DeriveIden)]
enum OrderLine {
    Table,
    Id,
    OrderId,
    Sku,
    InventoryItemId,
    StockLocationId,
    Quantity,
    BackorderedQuantity,
}

#[derive(DeriveIden)]
enum Reservation {
    Table,
    Id,
    Key,
    SalesChannelId,
    ShippingOptionId,
    Status,
    ExpiresAt,
    Version,
}

#[derive(DeriveIden)]
enum ReservationLine {
    Table,
    Id,
    ReservationId,
    Sku,
    InventoryLevelId,
    StockLocationId,
    Quantity,
}

#[derive(DeriveIden)]
enum StockMovement {
    Table,
    Id,
    InventoryLevelId,
    Delta,
    ReservedDelta,
    Reason,
    StockedAfter,
    ReservedAfter,
    OrderId,
    ReservationId,
    Note,
    CreatedAt,
}

#[derive(DeriveIden)]
enum InventoryEvent {
    Table,
    Id,
    EventType,
    Sku,
    StockLocationId,
    OrderId,
    Quantity,
    StockedQuantity,
    BackorderedQuantity,
    OccurredAt,
}

#[derive(DeriveIden)]
enum EventSequence {
    Table,
    Id,
    LastValue,
}

#[derive(DeriveIden)]
enum StripeEvent {
    Table,
    Id,
    EventType,
    PaymentIntentId,
    ReceivedAt,
}

#[derive(DeriveIden)]
enum ApiKey {
    Table,
    Id,
    Name,
    KeyHash,
    CreatedAt,
}

fn fk(
    from_table: impl IntoIden,
    from_col: impl IntoIden,
    to_table: impl IntoIden,
    to_col: impl IntoIden,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from(from_table, from_col)
        .to(to_table, to_col)
        .on_delete(ForeignKeyAction::Restrict)
        .take()
}

fn created_at() -> ColumnDef {
    timestamp_with_time_zone_default_now(Alias::new("created_at"))
}

fn updated_at() -> ColumnDef {
    timestamp_with_time_zone_default_now(Alias::new("updated_at"))
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(StockLocation::Table)
                    .col(pk_auto(StockLocation::Id))
                    .col(string(StockLocation::Name))
                    .col(integer(StockLocation::Version).default(1))
                    .col(created_at())
                    .col(updated_at())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(SalesChannel::Table)
                    .col(pk_auto(SalesChannel::Id))
                    .col(string(SalesChannel::Name))
                    .col(integer(SalesChannel::Version).default(1))
                    .col(created_at())
                    .col(updated_at())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(SalesChannelLocation::Table)
                    .col(pk_auto(SalesChannelLocation::Id))
                    .col(integer(SalesChannelLocation::SalesChannelId))
                    .col(integer(SalesChannelLocation::StockLocationId))
                    .col(integer(SalesChannelLocation::Priority))
                    .col(integer(SalesChannelLocation::Version).default(1))
                    .foreign_key(&mut fk(
                        SalesChannelLocation::Table,
                        SalesChannelLocation::SalesChannelId,
                        SalesChannel::Table,
                        SalesChannel::Id,
                    ))
                    .foreign_key(&mut fk(
                        SalesChannelLocation::Table,
                        SalesChannelLocation::StockLocationId,
                        StockLocation::Table,
                        StockLocation::Id,
                    ))
                    .col(created_at())
                    .col(updated_at())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_sales_channel_location")
                    .table(SalesChannelLocation::Table)
                    .col(SalesChannelLocation::SalesChannelId)
                    .col(SalesChannelLocation::StockLocationId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ShippingOption::Table)
                    .col(pk_auto(ShippingOption::Id))
                    .col(string(ShippingOption::Name))
                    .col(integer(ShippingOption::StockLocationId))
                    .col(integer(ShippingOption::Version).default(1))
                    .foreign_key(&mut fk(
                        ShippingOption::Table,
                        ShippingOption::StockLocationId,
                        StockLocation::Table,
                        StockLocation::Id,
                    ))
                    .col(created_at())
                    .col(updated_at())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(InventoryItem::Table)
                    .col(pk_auto(InventoryItem::Id))
                    .col(string_uniq(InventoryItem::Sku))
                    .col(string(InventoryItem::Title))
                    .col(integer(InventoryItem::Version).default(1))
                    .col(created_at())
                    .col(updated_at())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(InventoryLevel::Table)
                    .col(pk_auto(InventoryLevel::Id))
                    .col(integer(InventoryLevel::InventoryItemId))
                    .col(integer(InventoryLevel::StockLocationId))
                    .col(integer(InventoryLevel::StockedQuantity))
                    .col(integer(InventoryLevel::ReservedQuantity).default(0))
                    .col(boolean(InventoryLevel::AllowBackorder).default(false))
                    .col(integer(InventoryLevel::Version).default(1))
                    // Negative stock means "backordered", which only a level that allows
                    // backorders may ever reach, whatever path wrote it.
                    .check((
                        Alias::new("ck_level_backorder"),
                        Expr::cust("stocked_quantity >= 0 OR allow_backorder"),
                    ))
                    .check((
                        Alias::new("ck_level_reserved"),
                        Expr::col(InventoryLevel::ReservedQuantity).gte(0),
                    ))
                    .foreign_key(&mut fk(
                        InventoryLevel::Table,
                        InventoryLevel::InventoryItemId,
                        InventoryItem::Table,
                        InventoryItem::Id,
                    ))
                    .foreign_key(&mut fk(
                        InventoryLevel::Table,
                        InventoryLevel::StockLocationId,
                        StockLocation::Table,
                        StockLocation::Id,
                    ))
                    .col(created_at())
                    .col(updated_at())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_inventory_level_item_location")
                    .table(InventoryLevel::Table)
                    .col(InventoryLevel::InventoryItemId)
                    .col(InventoryLevel::StockLocationId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_inventory_level_location")
                    .table(InventoryLevel::Table)
                    .col(InventoryLevel::StockLocationId)
                    .to_owned(),
            )
            .await?;
        // The `backorders` query walks levels below zero; keep that a range scan.
        manager
            .create_index(
                Index::create()
                    .name("ix_inventory_level_stocked")
                    .table(InventoryLevel::Table)
                    .col(InventoryLevel::StockedQuantity)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Reservation::Table)
                    .col(pk_auto(Reservation::Id))
                    .col(string_uniq(Reservation::Key))
                    .col(integer(Reservation::SalesChannelId))
                    .col(integer_null(Reservation::ShippingOptionId))
                    .col(string(Reservation::Status))
                    .col(timestamp_with_time_zone(Reservation::ExpiresAt))
                    .col(integer(Reservation::Version).default(1))
                    .foreign_key(&mut fk(
                        Reservation::Table,
                        Reservation::SalesChannelId,
                        SalesChannel::Table,
                        SalesChannel::Id,
                    ))
                    .foreign_key(&mut fk(
                        Reservation::Table,
                        Reservation::ShippingOptionId,
                        ShippingOption::Table,
                        ShippingOption::Id,
                    ))
                    .col(created_at())
                    .col(updated_at())
                    .to_owned(),
            )
            .await?;
        // The expiry sweep looks for ACTIVE reservations past their deadline.
        manager
            .create_index(
                Index::create()
                    .name("ix_reservation_status_expires")
                    .table(Reservation::Table)
                    .col(Reservation::Status)
                    .col(Reservation::ExpiresAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ReservationLine::Table)
                    .col(pk_auto(ReservationLine::Id))
                    .col(integer(ReservationLine::ReservationId))
                    .col(string(ReservationLine::Sku))
                    .col(integer(ReservationLine::InventoryLevelId))
                    .col(integer(ReservationLine::StockLocationId))
                    .col(integer(ReservationLine::Quantity).check(Expr::col(ReservationLine::Quantity).gt(0)))
                    .foreign_key(&mut fk(
                        ReservationLine::Table,
                        ReservationLine::ReservationId,
                        Reservation::Table,
                        Reservation::Id,
                    ))
                    .foreign_key(&mut fk(
                        ReservationLine::Table,
                        ReservationLine::InventoryLevelId,
                        InventoryLevel::Table,
                        InventoryLevel::Id,
                    ))
                    .foreign_key(&mut fk(
                        ReservationLine::Table,
                        ReservationLine::StockLocationId,
                        StockLocation::Table,
                        StockLocation::Id,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_reservation_line_reservation")
                    .table(ReservationLine::Table)
                    .col(ReservationLine::ReservationId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Orders::Table)
                    .col(pk_auto(Orders::Id))
                    // The idempotency key: a concurrent twin of an order blocks on this
                    // unique index until the first one commits, then finds it.
                    .col(string_uniq(Orders::PaymentIntentId))
                    .col(integer_null(Orders::SalesChannelId))
                    .col(integer_null(Orders::ShippingOptionId))
                    .col(integer_null(Orders::ReservationId))
                    .col(string(Orders::Status))
                    .col(text_null(Orders::RejectionReason))
                    .col(string_null(Orders::RefundId))
                    .col(text_null(Orders::RefundError))
                    .col(integer(Orders::Version).default(1))
                    .foreign_key(&mut fk(
                        Orders::Table,
                        Orders::SalesChannelId,
                        SalesChannel::Table,
                        SalesChannel::Id,
                    ))
                    .foreign_key(&mut fk(
                        Orders::Table,
                        Orders::ShippingOptionId,
                        ShippingOption::Table,
                        ShippingOption::Id,
                    ))
                    .foreign_key(&mut fk(
                        Orders::Table,
                        Orders::ReservationId,
                        Reservation::Table,
                        Reservation::Id,
                    ))
                    .col(created_at())
                    .col(updated_at())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_orders_status")
                    .table(Orders::Table)
                    .col(Orders::Status)
                    .col(Orders::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(OrderLine::Table)
                    .col(pk_auto(OrderLine::Id))
                    .col(integer(OrderLine::OrderId))
                    .col(string(OrderLine::Sku))
                    .col(integer_null(OrderLine::InventoryItemId))
                    .col(integer_null(OrderLine::StockLocationId))
                    .col(integer(OrderLine::Quantity).check(Expr::col(OrderLine::Quantity).gt(0)))
                    .col(
                        integer(OrderLine::BackorderedQuantity)
                            .default(0)
                            .check(Expr::col(OrderLine::BackorderedQuantity).gte(0)),
                    )
                    .foreign_key(&mut fk(OrderLine::Table, OrderLine::OrderId, Orders::Table, Orders::Id))
                    .foreign_key(&mut fk(
                        OrderLine::Table,
                        OrderLine::InventoryItemId,
                        InventoryItem::Table,
                        InventoryItem::Id,
                    ))
                    .foreign_key(&mut fk(
                        OrderLine::Table,
                        OrderLine::StockLocationId,
                        StockLocation::Table,
                        StockLocation::Id,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_order_line_order")
                    .table(OrderLine::Table)
                    .col(OrderLine::OrderId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(StockMovement::Table)
                    .col(big_pk_auto(StockMovement::Id))
                    .col(integer(StockMovement::InventoryLevelId))
                    .col(integer(StockMovement::Delta))
                    .col(integer(StockMovement::ReservedDelta))
                    .col(string(StockMovement::Reason))
                    .col(integer(StockMovement::StockedAfter))
                    .col(integer(StockMovement::ReservedAfter))
                    .col(integer_null(StockMovement::OrderId))
                    .col(integer_null(StockMovement::ReservationId))
                    .col(text_null(StockMovement::Note))
                    .col(timestamp_with_time_zone(StockMovement::CreatedAt))
                    .foreign_key(&mut fk(
                        StockMovement::Table,
                        StockMovement::InventoryLevelId,
                        InventoryLevel::Table,
                        InventoryLevel::Id,
                    ))
                    .foreign_key(&mut fk(
                        StockMovement::Table,
                        StockMovement::OrderId,
                        Orders::Table,
                        Orders::Id,
                    ))
                    .foreign_key(&mut fk(
                        StockMovement::Table,
                        StockMovement::ReservationId,
                        Reservation::Table,
                        Reservation::Id,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_stock_movement_level")
                    .table(StockMovement::Table)
                    .col(StockMovement::InventoryLevelId)
                    .col(StockMovement::Id)
                    .to_owned(),
            )
            .await?;
        // Event ids are handed out from `event_sequence` by the committing transaction
        // while it holds that row's lock, so ids follow commit order (see events::outbox).
        manager
            .create_table(
                Table::create()
                    .table(InventoryEvent::Table)
                    .col(big_integer(InventoryEvent::Id).primary_key())
                    .col(string(InventoryEvent::EventType))
                    .col(string(InventoryEvent::Sku))
                    .col(integer(InventoryEvent::StockLocationId))
                    .col(integer(InventoryEvent::OrderId))
                    .col(integer(InventoryEvent::Quantity))
                    .col(integer(InventoryEvent::StockedQuantity))
                    .col(integer(InventoryEvent::BackorderedQuantity))
                    .col(timestamp_with_time_zone(InventoryEvent::OccurredAt))
                    .foreign_key(&mut fk(
                        InventoryEvent::Table,
                        InventoryEvent::OrderId,
                        Orders::Table,
                        Orders::Id,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(EventSequence::Table)
                    .col(integer(EventSequence::Id).primary_key())
                    .col(big_integer(EventSequence::LastValue))
                    .to_owned(),
            )
            .await?;
        manager
            .exec_stmt(
                Query::insert()
                    .into_table(EventSequence::Table)
                    .columns([EventSequence::Id, EventSequence::LastValue])
                    .values_panic([1.into(), 0i64.into()])
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(StripeEvent::Table)
                    .col(string(StripeEvent::Id).primary_key())
                    .col(string(StripeEvent::EventType))
                    .col(string_null(StripeEvent::PaymentIntentId))
                    .col(timestamp_with_time_zone(StripeEvent::ReceivedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ApiKey::Table)
                    .col(pk_auto(ApiKey::Id))
                    .col(string(ApiKey::Name))
                    .col(string_uniq(ApiKey::KeyHash))
                    .col(timestamp_with_time_zone(ApiKey::CreatedAt))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Children before parents, so foreign keys never block a drop.
        let tables: [DynIden; 15] = [
            ApiKey::Table.into_iden(),
            StripeEvent::Table.into_iden(),
            EventSequence::Table.into_iden(),
            InventoryEvent::Table.into_iden(),
            StockMovement::Table.into_iden(),
            OrderLine::Table.into_iden(),
            Orders::Table.into_iden(),
            ReservationLine::Table.into_iden(),
            Reservation::Table.into_iden(),
            InventoryLevel::Table.into_iden(),
            InventoryItem::Table.into_iden(),
            ShippingOption::Table.into_iden(),
            SalesChannelLocation::Table.into_iden(),
            SalesChannel::Table.into_iden(),
            StockLocation::Table.into_iden(),
        ];
        for table in tables {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
