//! The error envelope every non-2xx answer carries.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// `{"object":"error","type","code","message","hint"?, …}`: `type` follows from the HTTP status,
/// `code` is a stable [`syncropel_protocol::ErrorCode`] (or a peer's), and some codes add members
/// of their own (`retry_after_secs`, `required_scope`, `tenant_count`, …), kept in `extra`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "object", rename = "error", default)]
pub struct ErrorBody {
    #[serde(rename = "type")]
    pub error_type: String,
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    #[serde(flatten, deserialize_with = "extra_members")]
    pub extra: Map<String, Value>,
}

impl ErrorBody {
    /// The envelope of `code` (its status decides `type`).
    pub fn new(
        code: syncropel_protocol::ErrorCode,
        message: &str,
        hint: Option<&str>,
    ) -> ErrorBody {
        ErrorBody {
            error_type: code.error_type().to_owned(),
            code: code.as_str().to_owned(),
            message: message.to_owned(),
            hint: hint.map(str::to_owned),
            extra: Map::new(),
        }
    }
}

/// The members a flattened map collects, without the `object` tag the struct writes itself.
fn extra_members<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Map<String, Value>, D::Error> {
    let mut members = Map::deserialize(deserializer)?;
    members.remove("object");
    Ok(members)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use syncropel_protocol::ErrorCode;

    #[test]
    fn writes_the_envelope_of_an_error_code() {
        let body = ErrorBody::new(ErrorCode::NotFound, "no record with id 'x'", None);
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            ErrorCode::NotFound.envelope("no record with id 'x'", None)
        );
        let mut hinted = ErrorBody::new(ErrorCode::RateLimited, "slow down", Some("wait"));
        hinted.extra.insert("retry_after_secs".into(), json!(2));
        let mut expected = ErrorCode::RateLimited.envelope("slow down", Some("wait"));
        expected["retry_after_secs"] = json!(2);
        assert_eq!(serde_json::to_value(&hinted).unwrap(), expected);
    }

    #[test]
    fn extra_members_round_trip_once() {
        let text = r#"{"object":"error","type":"rate_limit_error","code":"RATE_LIMITED",
                       "message":"m","retry_after_secs":3,"ratio":1.5}"#;
        let body: ErrorBody = serde_json::from_str(text).unwrap();
        assert_eq!(body.code, "RATE_LIMITED");
        assert_eq!(body.hint, None);
        assert_eq!(body.extra.len(), 2);
        let again = serde_json::to_string(&body).unwrap();
        assert_eq!(again.matches("\"object\"").count(), 1, "{again}");
        assert_eq!(
            serde_json::from_str::<Value>(&again).unwrap(),
            serde_json::from_str::<Value>(text).unwrap()
        );
    }
}
