//! The statements both backends share ([`crate::shared::statements!`]), for SQLite: lists of
//! strings are JSON text.

use sqlx::sqlite::SqliteRow;

use crate::StoreError;

// Without a thread, SQLite would pick the (tenant, thread, seq) index for `tenant = ?`, read
// every row of the tenant and sort them: a page deep in a large store cost a scan of all of it.
// `NOT INDEXED` leaves it the rowid (`seq`) range from the cursor, in order.
crate::shared::statements!(
    db: sqlx::Sqlite,
    encode_list: encode_list,
    decode_list: decode_list,
    by_seq: "records NOT INDEXED",
);

fn encode_list(values: &[String]) -> String {
    serde_json::Value::from(values.to_vec()).to_string()
}

fn decode_list(row: &SqliteRow, column: &str) -> crate::Result<Vec<String>> {
    let text: String = row.try_get(column)?;
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(e.to_string()))
}
