//! Identities and the operations they sign.

use std::collections::BTreeMap;

use serde_json::Value;
use syncropel_protocol::did_sync::{sign_operation, OpType, Operation, Service};
use syncropel_protocol::Keypair;

pub fn multibase(key: &Keypair) -> String {
    key.did_key().strip_prefix("did:key:").unwrap().to_owned()
}

/// One identity: user (highest priority) and host rotation keys, three record keys.
pub struct Ident {
    pub user: Keypair,
    pub host: Keypair,
    pub record: [Keypair; 3],
    pub handle: String,
}

impl Ident {
    pub fn new(seed: u8, handle: &str) -> Ident {
        let key = |n: u8| Keypair::from_seed(&[seed.wrapping_mul(8).wrapping_add(n); 32]);
        Ident {
            user: key(1),
            host: key(2),
            record: [key(3), key(4), key(5)],
            handle: handle.to_owned(),
        }
    }

    pub fn op(&self, kind: OpType, prev: Option<&str>) -> Operation {
        Operation {
            kind,
            prev: prev.map(str::to_owned),
            signing_keys: BTreeMap::from([("key-1".to_owned(), multibase(&self.record[0]))]),
            rotation_keys: vec![self.user.did_key(), self.host.did_key()],
            handles: vec![self.handle.clone()],
            namespaces: Vec::new(),
            services: BTreeMap::from([(
                "syncropel".to_owned(),
                Service {
                    kind: "syncropel".to_owned(),
                    endpoint: format!("https://{}.example", self.handle),
                },
            )]),
            compromised: Vec::new(),
            created_at: "2026-05-01T12:00:00Z".to_owned(),
            sig: None,
        }
    }

    pub fn genesis(&self) -> Value {
        sign_operation(&self.op(OpType::Genesis, None), &self.host)
    }

    pub fn update(&self, prev: &str) -> Operation {
        self.op(OpType::Update, Some(prev))
    }

    /// The owner's recovery fork: an update on `prev` signed by the user key, moving the endpoint
    /// to `https://recovered.example` and leaving the user key the only rotation key.
    pub fn recovery_fork(&self, prev: &str) -> Value {
        let mut fork = with_endpoint(self.update(prev), "https://recovered.example");
        fork.rotation_keys = vec![self.user.did_key()];
        sign_operation(&fork, &self.user)
    }

    pub fn tombstone(&self, prev: &str) -> Value {
        let mut op = self.op(OpType::Tombstone, Some(prev));
        op.signing_keys.clear();
        op.rotation_keys.clear();
        op.handles.clear();
        op.services.clear();
        sign_operation(&op, &self.host)
    }
}

pub fn with_endpoint(mut op: Operation, endpoint: &str) -> Operation {
    op.services.get_mut("syncropel").unwrap().endpoint = endpoint.to_owned();
    op
}
