//! The entities under short names, for `use entity::prelude::*`.

pub use super::api_key::Entity as ApiKey;
pub use super::event_sequence::Entity as EventSequence;
pub use super::inventory_event::Entity as InventoryEvent;
pub use super::inventory_item::Entity as InventoryItem;
pub use super::inventory_level::Entity as InventoryLevel;
pub use super::order_line::Entity as OrderLine;
pub use super::orders::Entity as Orders;
pub use super::reservation::Entity as Reservation;
pub use super::reservation_line::Entity as ReservationLine;
pub use super::sales_channel::Entity as SalesChannel;
pub use super::sales_channel_location::Entity as SalesChannelLocation;
pub use super::shipping_option::Entity as ShippingOption;
pub use super::stock_location::Entity as StockLocation;
pub use super::stock_movement::Entity as StockMovement;
pub use super::stripe_event::Entity as StripeEvent;
