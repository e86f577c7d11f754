//! A DNS server for tests of `_syncropel` TXT discovery, here and in the CLI's tests (the
//! `testing` feature; never part of a production build).

// A test server that cannot start fails its test, with the reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinEncodable};

use crate::txt_name;

/// How often the server thread looks up from its socket to see whether it was dropped.
const STOP_POLL: Duration = Duration::from_millis(50);

enum Answer {
    Txt(Vec<Vec<String>>),
    ServFail,
}

/// The `_syncropel.<domain>` names a [`DnsServer`] knows; any other name is NXDOMAIN.
#[derive(Default)]
pub struct Zone(HashMap<String, Answer>);

impl Zone {
    /// `_syncropel.<domain>` answers TXT queries with `records`, each a list of
    /// character-strings (which a reader joins into one record).
    pub fn txt<S: Into<String>>(
        mut self,
        domain: &str,
        records: impl IntoIterator<Item = Vec<S>>,
    ) -> Zone {
        let records = records
            .into_iter()
            .map(|strings| strings.into_iter().map(Into::into).collect())
            .collect();
        self.0.insert(txt_name(domain), Answer::Txt(records));
        self
    }

    /// `_syncropel.<domain>` answers SERVFAIL.
    pub fn servfail(mut self, domain: &str) -> Zone {
        self.0.insert(txt_name(domain), Answer::ServFail);
        self
    }

    fn reply(&self, query: &Message) -> Message {
        let mut reply = Message::new();
        reply
            .set_id(query.id())
            .set_message_type(MessageType::Response)
            .set_op_code(query.op_code())
            .set_recursion_desired(query.recursion_desired())
            .set_recursion_available(true)
            .set_authoritative(true);
        for q in query.queries() {
            reply.add_query(q.clone());
            let name = q.name().to_ascii().to_ascii_lowercase();
            match self.0.get(&name) {
                Some(Answer::ServFail) => {
                    reply.set_response_code(ResponseCode::ServFail);
                }
                Some(Answer::Txt(records)) if q.query_type() == RecordType::TXT => {
                    for strings in records {
                        let txt = RData::TXT(TXT::new(strings.clone()));
                        reply.add_answer(Record::from_rdata(q.name().clone(), 60, txt));
                    }
                }
                Some(Answer::Txt(_)) => {}
                None => {
                    reply.set_response_code(ResponseCode::NXDomain);
                }
            }
        }
        reply
    }
}

/// A DNS server on 127.0.0.1 (UDP) answering from its [`Zone`] on its own thread, until dropped.
pub struct DnsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl DnsServer {
    pub fn start(zone: Zone) -> DnsServer {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("a UDP port on 127.0.0.1");
        socket
            .set_read_timeout(Some(STOP_POLL))
            .expect("a read timeout");
        let addr = socket.local_addr().expect("the bound address");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !stopped.load(Ordering::Relaxed) {
                let (n, from) = match socket.recv_from(&mut buf) {
                    Ok(received) => received,
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                        continue
                    }
                    Err(e) => panic!("the test DNS server cannot read: {e}"),
                };
                let Ok(query) = Message::from_bytes(&buf[..n]) else {
                    continue;
                };
                let reply = zone.reply(&query).to_bytes().expect("an encodable reply");
                let _ = socket.send_to(&reply, from);
            }
        });
        DnsServer {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    /// Where it listens, for [`TxtResolver::with_nameserver`](crate::TxtResolver::with_nameserver)
    /// or `--dns-server`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
