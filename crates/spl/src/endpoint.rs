//! Finding the steward to talk to.
//!
//! Order: `--endpoint` / `SPL_ENDPOINT`, else the `steward.json` a running `spl serve` wrote into
//! the home (so `spl serve --port 0` just works), else the default local address.

use std::fmt;

use syncropel_home::{Home, HomeError};

/// Where `spl serve` listens unless told otherwise.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:9100";

/// A steward URL and why it was chosen (shown by `spl status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub url: String,
    pub source: Source,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `--endpoint` or `SPL_ENDPOINT`.
    Option,
    /// The home's `steward.json`, written by the steward with this pid.
    StewardInfo { pid: u32 },
    /// Nothing else named one.
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Option => f.write_str("--endpoint/SPL_ENDPOINT"),
            Source::StewardInfo { pid } => write!(f, "steward.json, pid {pid}"),
            Source::Default => f.write_str("default"),
        }
    }
}

pub fn resolve(explicit: Option<&str>, home: &Home) -> Result<Endpoint, HomeError> {
    if let Some(url) = explicit {
        return Ok(Endpoint {
            url: url.to_owned(),
            source: Source::Option,
        });
    }
    Ok(match home.read_steward_info()? {
        Some(info) => Endpoint {
            url: info.url,
            source: Source::StewardInfo { pid: info.pid },
        },
        None => Endpoint {
            url: DEFAULT_ENDPOINT.to_owned(),
            source: Source::Default,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use syncropel_home::StewardInfo;

    #[test]
    fn option_then_steward_json_then_default() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path().to_owned());

        let found = resolve(None, &home).unwrap();
        assert_eq!(found.url, DEFAULT_ENDPOINT);
        assert_eq!(found.source, Source::Default);

        home.write_steward_info(&StewardInfo {
            url: "http://127.0.0.1:4242".into(),
            pid: 77,
            started_at: 1,
        })
        .unwrap();
        let found = resolve(None, &home).unwrap();
        assert_eq!(found.url, "http://127.0.0.1:4242");
        assert_eq!(found.source, Source::StewardInfo { pid: 77 });

        let found = resolve(Some("https://example.test"), &home).unwrap();
        assert_eq!(found.url, "https://example.test");
        assert_eq!(found.source, Source::Option);
    }
}
