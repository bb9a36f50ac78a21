//! SeaORM entities: one module per table of the `migration` crate.

pub mod api_key;
pub mod event_sequence;
pub mod inventory_event;
pub mod inventory_item;
pub mod inventory_level;
pub mod order_line;
pub mod orders;
pub mod prelude;
pub mod refusal_tally;
pub mod reservation;
pub mod reservation_line;
pub mod sales_channel;
pub mod sales_channel_location;
pub mod shipping_option;
pub mod stock_location;
pub mod stock_movement;
pub mod stripe_event;
