//! Ports held for a service that is not serving (yet, or any more).

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};

/// A port on 127.0.0.1 bound but not listening: the system hands it to no socket that asks for
/// a free port, and connections to it are refused, as to a service that is down.
/// [`Reserved::listen`] makes it the service's listener.
pub struct Reserved {
    socket: TcpSocket,
    addr: SocketAddr,
}

impl Reserved {
    /// A new port.
    pub fn new() -> Reserved {
        Reserved::at("127.0.0.1:0".parse().unwrap())
    }

    /// The port a service just stopped listening on, held again for its restart. Address reuse
    /// lets it be bound while connections of the stopped service linger in TIME_WAIT.
    pub fn at(addr: SocketAddr) -> Reserved {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket
            .bind(addr)
            .unwrap_or_else(|e| panic!("binding {addr}: {e}"));
        let addr = socket.local_addr().unwrap();
        Reserved { socket, addr }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Starts listening: from now on connections wait for the service to accept them.
    pub fn listen(self) -> TcpListener {
        self.socket.listen(1024).unwrap()
    }
}

impl Default for Reserved {
    fn default() -> Reserved {
        Reserved::new()
    }
}
