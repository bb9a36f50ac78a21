//! DataLoaders for every nested field, so a page of 100 items with their levels and
//! locations costs a handful of queries, not hundreds (see `tests/graphql_n_plus_one.rs`).
//!
//! One `Loaders` value implements `Loader<K>` for each key type; the key type says what
//! is loaded (`LocationById`, `LevelsOfItem`, …). Loaders have no cache: they batch the
//! keys requested in the same tick, and every request still sees current stock.

use std::collections::HashMap;

use async_graphql::dataloader::Loader;
use entity::{
    inventory_item, inventory_level, order_line, reservation_line, sales_channel, sales_channel_location,
    stock_location,
};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder};

use crate::{error::Error, inventory::holds::overdue_holds};

/// The batch loaders, sharing one pool.
pub struct Loaders {
    db: DatabaseConnection,
}

impl Loaders {
    /// Loaders reading from `db`.
    pub fn new(db: DatabaseConnection) -> Self {
        Loaders { db }
    }

    async fn rows<E: EntityTrait>(
        &self,
        column: E::Column,
        ids: impl IntoIterator<Item = i32>,
    ) -> Result<Vec<E::Model>, Error>
    where
        E::Column: ColumnTrait,
    {
        let ids: Vec<i32> = ids.into_iter().collect();
        Ok(E::find()
            .filter(column.is_in(ids))
            .order_by_asc(column)
            .all(&self.db)
            .await?)
    }

    async fn by_id<E: EntityTrait>(
        &self,
        column: E::Column,
        ids: impl IntoIterator<Item = i32>,
        id_of: impl Fn(&E::Model) -> i32,
    ) -> Result<HashMap<i32, E::Model>, Error> {
        let rows = self.rows::<E>(column, ids).await?;
        Ok(rows.into_iter().map(|row| (id_of(&row), row)).collect())
    }

    async fn grouped<E: EntityTrait>(
        &self,
        column: E::Column,
        ids: impl IntoIterator<Item = i32>,
        parent_of: impl Fn(&E::Model) -> i32,
    ) -> Result<HashMap<i32, Vec<E::Model>>, Error> {
        let mut groups: HashMap<i32, Vec<E::Model>> = HashMap::new();
        for row in self.rows::<E>(column, ids).await? {
            groups.entry(parent_of(&row)).or_default().push(row);
        }
        Ok(groups)
    }
}

/// Declares a key type and its `Loader` impl: `$key(i32)` loads `$value` through `$how`.
macro_rules! loader {
    ($(#[$doc:meta])* $key:ident => $value:ty, |$loaders:ident, $ids:ident| $how:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub struct $key(pub i32);

        impl Loader<$key> for Loaders {
            type Value = $value;
            type Error = Error;

            async fn load(&self, keys: &[$key]) -> Result<HashMap<$key, $value>, Error> {
                let $loaders = self;
                let $ids = keys.iter().map(|key| key.0);
                let found = $how.await?;
                Ok(found.into_iter().map(|(id, value)| ($key(id), value)).collect())
            }
        }
    };
}

loader!(
    /// A stock location by id.
    LocationById => stock_location::Model,
    |l, ids| l.by_id::<stock_location::Entity>(stock_location::Column::Id, ids, |row| row.id)
);
loader!(
    /// An inventory item by id.
    ItemById => inventory_item::Model,
    |l, ids| l.by_id::<inventory_item::Entity>(inventory_item::Column::Id, ids, |row| row.id)
);
loader!(
    /// A sales channel by id.
    ChannelById => sales_channel::Model,
    |l, ids| l.by_id::<sales_channel::Entity>(sales_channel::Column::Id, ids, |row| row.id)
);
loader!(
    /// A stock level by id.
    LevelById => inventory_level::Model,
    |l, ids| l.by_id::<inventory_level::Entity>(inventory_level::Column::Id, ids, |row| row.id)
);
loader!(
    /// The levels of one item, at every location.
    LevelsOfItem => Vec<inventory_level::Model>,
    |l, ids| l.grouped::<inventory_level::Entity>(inventory_level::Column::InventoryItemId, ids, |row| row.inventory_item_id)
);
loader!(
    /// The levels held at one location.
    LevelsAtLocation => Vec<inventory_level::Model>,
    |l, ids| l.grouped::<inventory_level::Entity>(inventory_level::Column::StockLocationId, ids, |row| row.stock_location_id)
);
loader!(
    /// The location mappings of one sales channel.
    MappingsOfChannel => Vec<sales_channel_location::Model>,
    |l, ids| l.grouped::<sales_channel_location::Entity>(sales_channel_location::Column::SalesChannelId, ids, |row| row.sales_channel_id)
);
loader!(
    /// The lines of one order.
    LinesOfOrder => Vec<order_line::Model>,
    |l, ids| l.grouped::<order_line::Entity>(order_line::Column::OrderId, ids, |row| row.order_id)
);
loader!(
    /// The lines of one reservation.
    LinesOfReservation => Vec<reservation_line::Model>,
    |l, ids| l.grouped::<reservation_line::Entity>(reservation_line::Column::ReservationId, ids, |row| row.reservation_id)
);

/// Units of one level still counted as reserved by reservations past their deadline
/// (they hold nothing: see `inventory::allocation::free_units`). Levels with none are
/// absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LapsedHoldsOfLevel(pub i32);

impl Loader<LapsedHoldsOfLevel> for Loaders {
    type Value = i32;
    type Error = Error;

    async fn load(&self, keys: &[LapsedHoldsOfLevel]) -> Result<HashMap<LapsedHoldsOfLevel, i32>, Error> {
        let now = crate::db::now(&self.db).await?;
        let lapsed = overdue_holds(&self.db, keys.iter().map(|key| key.0), now, &[]).await?;
        Ok(lapsed
            .into_iter()
            .map(|(level, units)| (LapsedHoldsOfLevel(level), units))
            .collect())
    }
}
