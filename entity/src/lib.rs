//! SeaORM entities: one module per table of the `migration` crate.

pub mod prelude;
pub mod stock_location;
pub mod sales_channel;
pub mod sales_channel_location;
pub mod shipping_option;
pub mod inventory_item;
pub mod inventory_level;
pub mod orders;
pub mod order_line;
pub mod reservation;
pub mod reservation_line;
pub mod stock_movement;
pub mod inventory_event;
pub mod event_sequence;
pub mod stripe_event;
pub mod api_key;
