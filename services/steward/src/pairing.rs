//! The responder's pairing policy as operators set it (federation-protocol.md §2.1
//! `consent_policy`, §3.7): the same flags on `spl serve` and the hosted `steward`.

use std::sync::Arc;

use clap::builder::NonEmptyStringValueParser;
use clap::Args;
use syncropel_federation::{PairingPolicy, ThreadRule};

#[derive(Clone, Debug, Default, Args)]
pub struct PairingArgs {
    /// Refuse every pair request (`503 PAIRING_DISABLED`; the manifest announces it)
    #[arg(long, env = "SYNCROPEL_REFUSE_PAIR_REQUESTS")]
    pub refuse_pair_requests: bool,

    /// Take pair requests only from stewards of this DID method: `key`, `web`, `sync`
    /// (repeatable; the env variable takes a comma-separated list)
    #[arg(
        long = "require-did-method",
        env = "SYNCROPEL_REQUIRE_DID_METHODS",
        value_delimiter = ',',
        value_name = "METHOD",
        value_parser = NonEmptyStringValueParser::new()
    )]
    pub require_did_methods: Vec<String>,

    /// Refuse pair requests from stewards of this DID method (repeatable)
    #[arg(
        long = "reject-did-method",
        env = "SYNCROPEL_REJECT_DID_METHODS",
        value_delimiter = ',',
        value_name = "METHOD",
        value_parser = NonEmptyStringValueParser::new()
    )]
    pub reject_did_methods: Vec<String>,

    /// Approve a pair request without asking when this CEL rule over `record.body` (the request:
    /// `peer_did`, `peer_url`, `namespaces`, `maps`, `aitl.kind`) answers true
    #[arg(long, env = "SYNCROPEL_PAIR_APPROVE_RULE", value_name = "CEL")]
    pub pair_approve_rule: Option<String>,

    /// A body kind this steward serves and accepts, announced in its manifest (repeatable)
    #[arg(
        long = "advertise-kind",
        env = "SYNCROPEL_ADVERTISED_KINDS",
        value_delimiter = ',',
        value_name = "KIND",
        value_parser = NonEmptyStringValueParser::new()
    )]
    pub advertised_kinds: Vec<String>,
}

impl PairingArgs {
    /// The policy these flags set; a rule that does not compile is an error naming why.
    pub fn policy(&self) -> Result<PairingPolicy, String> {
        let approve_rule = match &self.pair_approve_rule {
            Some(source) => {
                Some(Arc::new(ThreadRule::compile(source).map_err(|e| {
                    format!("--pair-approve-rule: {}", e.message)
                })?))
            }
            None => None,
        };
        Ok(PairingPolicy {
            refuse_requests: self.refuse_pair_requests,
            requires_did_method: self.require_did_methods.clone(),
            rejects_did_method: self.reject_did_methods.clone(),
            approve_rule,
            advertised_kinds: self.advertised_kinds.clone(),
        })
    }
}
