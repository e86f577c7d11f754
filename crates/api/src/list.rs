//! The two list envelopes: paged (`next_cursor`, `has_more`) and whole.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

/// `{"object":"list","data":[…],"next_cursor","has_more"}` (protocol.md §10.3): records, threads,
/// service accounts, namespaces. `next_cursor` is `null` on the last page.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "object", rename = "list")]
pub struct ListPage<T> {
    pub data: Vec<T>,
    pub next_cursor: Option<String>,
    pub has_more: bool,
}

impl<T> ListPage<T> {
    /// Everything there is, on one page.
    pub fn whole(data: Vec<T>) -> ListPage<T> {
        ListPage {
            data,
            next_cursor: None,
            has_more: false,
        }
    }
}

impl<T> Default for ListPage<T> {
    fn default() -> ListPage<T> {
        ListPage::whole(Vec::new())
    }
}

/// Reads a page; `data` is required. A bare array reads as a last page, as the Python SDK reads
/// it. Written by hand rather than derived so that records are read straight from the input:
/// buffering them (as an untagged enum would) loses numbers under `arbitrary_precision`.
impl<'de, T: Deserialize<'de>> Deserialize<'de> for ListPage<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ListPage<T>, D::Error> {
        struct PageVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for PageVisitor<T> {
            type Value = ListPage<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list answer")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ListPage<T>, A::Error> {
                let mut data = Vec::new();
                while let Some(item) = seq.next_element()? {
                    data.push(item);
                }
                Ok(ListPage::whole(data))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ListPage<T>, A::Error> {
                let mut page = ListPage::whole(Vec::new());
                let mut data = None;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "data" => data = Some(map.next_value()?),
                        "next_cursor" => page.next_cursor = map.next_value()?,
                        "has_more" => page.has_more = map.next_value()?,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                page.data = data.ok_or_else(|| de::Error::missing_field("data"))?;
                Ok(page)
            }
        }

        deserializer.deserialize_any(PageVisitor(PhantomData))
    }
}

/// `{"object":"list","data":[…]}`: lists that are never paged (pairs, pending requests, grants,
/// sync pairs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "object", rename = "list")]
pub struct List<T> {
    pub data: Vec<T>,
}

impl<T> Default for List<T> {
    fn default() -> List<T> {
        List { data: Vec::new() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn pages_write_the_list_envelope() {
        let page = ListPage {
            data: vec![json!({"id": "a"})],
            next_cursor: Some("Mg".into()),
            has_more: true,
        };
        assert_eq!(
            serde_json::to_value(&page).unwrap(),
            json!({"object": "list", "data": [{"id": "a"}], "next_cursor": "Mg", "has_more": true})
        );
        assert_eq!(
            serde_json::to_value(ListPage::<Value>::default()).unwrap(),
            json!({"object": "list", "data": [], "next_cursor": null, "has_more": false})
        );
        assert_eq!(
            serde_json::to_value(List { data: vec![1] }).unwrap(),
            json!({"object": "list", "data": [1]})
        );
    }

    #[test]
    fn pages_read_leniently_but_need_data() {
        let page: ListPage<Value> = serde_json::from_value(
            json!({"object": "list", "data": [{"id": "a", "n": 1.5}], "next_cursor": "Mg", "has_more": true}),
        )
        .unwrap();
        assert_eq!(page.data, vec![json!({"id": "a", "n": 1.5})]);
        assert_eq!(page.next_cursor.as_deref(), Some("Mg"));
        assert!(page.has_more);

        let bare: ListPage<Value> = serde_json::from_str(r#"[{"id":"b"}]"#).unwrap();
        assert_eq!(bare, ListPage::whole(vec![json!({"id": "b"})]));
        let short: ListPage<Value> = serde_json::from_str(r#"{"data":[]}"#).unwrap();
        assert_eq!(short, ListPage::default());

        assert!(serde_json::from_str::<ListPage<Value>>(r#"{"object":"list"}"#).is_err());
        assert!(serde_json::from_str::<ListPage<Value>>(r#""x""#).is_err());
        let skipped: ListPage<IgnoredAny> =
            serde_json::from_str(r#"{"data":[{"a":[1,2]},3]}"#).unwrap();
        assert_eq!(skipped.data.len(), 2);
    }
}
