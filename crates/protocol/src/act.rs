//! The closed enums of the envelope: acts (protocol.md §2.2) and data types (§2.3).

use std::str::FromStr;

use crate::error::ProtocolError;

/// Declares a wire enum whose variants serialize as fixed upper-case strings.
macro_rules! wire_enum {
    (
        $(#[$doc:meta])* $name:ident, $field:literal
        { $( $(#[$vattr:meta])* $variant:ident => $text:literal, )+ }
    ) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $( $(#[$vattr])* #[serde(rename = $text)] $variant, )+
        }

        impl $name {
            /// Every value, in spec order.
            pub const ALL: &'static [$name] = &[$( $name::$variant, )+];

            /// The exact (case-sensitive) wire string.
            pub fn as_str(self) -> &'static str {
                match self { $( $name::$variant => $text, )+ }
            }
        }

        impl FromStr for $name {
            type Err = ProtocolError;

            fn from_str(s: &str) -> Result<Self, ProtocolError> {
                match s {
                    $( $text => Ok($name::$variant), )+
                    _ => Err(ProtocolError::validation(
                        $field,
                        format!(
                            "{:?} is not one of {}",
                            s.chars().take(64).collect::<String>(),
                            [$( $text ),+].join(", ")
                        ),
                    )),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_enum! {
    /// What a record does: four coordination acts and four effects.
    Act, "act" {
        Intend => "INTEND",
        Do => "DO",
        Know => "KNOW",
        Learn => "LEARN",
        Get => "GET",
        Put => "PUT",
        Call => "CALL",
        Map => "MAP",
    }
}

wire_enum! {
    /// How the body should be read; hashed, default `SCALAR`.
    #[derive(Default)]
    DataType, "data_type" {
        #[default]
        Scalar => "SCALAR",
        Formula => "FORMULA",
        Distribution => "DISTRIBUTION",
        Reference => "REFERENCE",
        Morphism => "MORPHISM",
        Void => "VOID",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_is_case_sensitive() {
        for &a in Act::ALL {
            assert_eq!(a.as_str().parse::<Act>().unwrap(), a);
            assert_eq!(serde_json::to_string(&a).unwrap(), format!("\"{a}\""));
        }
        for &d in DataType::ALL {
            assert_eq!(d.as_str().parse::<DataType>().unwrap(), d);
        }
        assert!("intend".parse::<Act>().is_err());
        assert!("Scalar".parse::<DataType>().is_err());
        assert_eq!(DataType::default(), DataType::Scalar);
    }
}
