//! Demo data for a fresh `cargo run`: two locations, two channels, shipping options and a
//! few items, one of them backorderable. Written through the domain functions, so the
//! demo stock has ledger entries like any other.

use entity::stock_location;
use sea_orm::{DatabaseTransaction, EntityTrait, PaginatorTrait};

use crate::{
    db::{Database, SEED_LOCK},
    error::Result,
    inventory::{
        catalog::{self, ChannelMapping},
        stock::{self, SetStockLevel},
        values::{Name, Sku},
    },
};

fn name(text: &str) -> Result<Name> {
    Name::parse(text, "name")
}

/// Seeds the demo data if the database has no stock location yet; says whether it did.
///
/// All of it in one transaction under an advisory lock (PostgreSQL), so that several
/// processes starting together on an empty database seed it exactly once: the others
/// wait for the lock, then find the locations there.
pub async fn seed_if_empty(db: &Database) -> Result<bool> {
    db.write_exclusively(SEED_LOCK, &(), |txn, ()| Box::pin(seed_in(txn)))
        .await
}

async fn seed_in(txn: &DatabaseTransaction) -> Result<bool> {
    if stock_location::Entity::find().count(txn).await? > 0 {
        return Ok(false);
    }
    let warehouse = catalog::create_location_in(txn, name("Berlin Warehouse")?).await?;
    let store = catalog::create_location_in(txn, name("Hamburg Store")?).await?;
    let web = catalog::create_channel_in(txn, name("Web Shop")?).await?;
    let pos = catalog::create_channel_in(txn, name("Hamburg Store Counter")?).await?;
    for (channel, location, priority) in [(&web, &warehouse, 0), (&web, &store, 1), (&pos, &store, 0)] {
        let mapping = ChannelMapping {
            sales_channel_id: channel.id,
            stock_location_id: location.id,
            priority,
        };
        catalog::map_channel_location_in(txn, &mapping).await?;
    }
    catalog::create_shipping_option_in(txn, name("DHL from Berlin")?, warehouse.id).await?;
    catalog::create_shipping_option_in(txn, name("Pick-up in Hamburg")?, store.id).await?;
    let items = [
        (
            "TSHIRT-BLK-M",
            "T-shirt, black, M",
            [(warehouse.id, 25, false), (store.id, 4, false)],
        ),
        (
            "MUG-LOGO",
            "Logo mug",
            [(warehouse.id, 10, false), (store.id, 0, false)],
        ),
        (
            "POSTER-A2",
            "Poster A2 (printed to order)",
            [(warehouse.id, 2, true), (store.id, 1, false)],
        ),
    ];
    for (sku, title, levels) in items {
        let sku = Sku::parse(sku)?;
        catalog::create_item_in(txn, sku.clone(), Name::parse(title, "title")?).await?;
        for (stock_location_id, stocked_quantity, allow_backorder) in levels {
            let cmd = SetStockLevel::unguarded(sku.clone(), stock_location_id, stocked_quantity, allow_backorder);
            stock::set_stock_level_in(txn, &cmd).await?;
        }
    }
    Ok(true)
}
