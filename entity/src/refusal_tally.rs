//! Out-of-stock refusals per minute, summed over every process.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "refusal_tally")]
pub struct Model {
    /// Minutes since the Unix epoch (UTC).
    #[sea_orm(primary_key, auto_increment = false)]
    pub minute: i64,
    pub refusals: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
