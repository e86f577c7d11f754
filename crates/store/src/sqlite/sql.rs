//! The statements both backends share ([`crate::shared::statements!`]), for SQLite: lists of
//! strings are JSON text.

use sqlx::sqlite::SqliteRow;

use crate::StoreError;

crate::shared::statements!(db: sqlx::Sqlite, encode_list: encode_list, decode_list: decode_list);

fn encode_list(values: &[String]) -> String {
    serde_json::Value::from(values.to_vec()).to_string()
}

fn decode_list(row: &SqliteRow, column: &str) -> crate::Result<Vec<String>> {
    let text: String = row.try_get(column)?;
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(e.to_string()))
}
