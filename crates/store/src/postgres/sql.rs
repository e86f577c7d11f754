//! The statements both backends share ([`crate::shared::statements!`]), for Postgres: lists of
//! strings are `text[]` columns.

use sqlx::postgres::PgRow;

// The primary key (tenant, seq) serves `tenant = ? AND seq > ? ORDER BY seq` as it is.
crate::shared::statements!(
    db: sqlx::Postgres,
    encode_list: encode_list,
    decode_list: decode_list,
    by_seq: "records",
);

fn encode_list(values: &[String]) -> &[String] {
    values
}

fn decode_list(row: &PgRow, column: &str) -> crate::Result<Vec<String>> {
    Ok(row.try_get(column)?)
}
