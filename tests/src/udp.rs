//! A UDP echo server that says who answered and how much it got, and a one-shot client.
//!
//! The server answers from the address each datagram was sent to (IP_PKTINFO/IPV6_PKTINFO),
//! not from whatever the routing table would pick: an LVS-DR real bound to `0.0.0.0` or `[::]`
//! must answer a datagram to the VIP from the VIP, or the client's connected socket drops the
//! reply. Nothing runs unbounded: the server polls a stop flag and stops when dropped.

use std::{
    io,
    mem::{size_of, zeroed},
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket},
    os::fd::AsRawFd as _,
    sync::atomic::{AtomicBool, AtomicUsize, Ordering},
    time::Duration,
};

use crate::{netns::Netns, server::ServerThread};

/// How often the server looks at its stop flag.
const POLL: Duration = Duration::from_millis(20);
/// Largest datagram the server reads whole.
const MAX_DATAGRAM: usize = 65_535;

/// A UDP echo server on a thread, bound inside a namespace: answers each datagram with
/// `"<name> <received length>\n"`. Stops (and joins its thread) on drop.
pub struct UdpEchoServer {
    server: ServerThread,
}

impl UdpEchoServer {
    /// Binds `addr` inside `netns` and serves on a thread. Bind `0.0.0.0:PORT` or `[::]:PORT`
    /// (the latter also takes IPv4) on an LVS-DR real to answer datagrams to the VIP; port 0
    /// picks a free port (see [`UdpEchoServer::addr`]).
    pub fn start(netns: &Netns, addr: SocketAddr, name: &str) -> UdpEchoServer {
        let socket = netns
            .run(|| UdpSocket::bind(addr))
            .unwrap_or_else(|error| panic!("binding {addr} in netns {}: {error}", netns.name()));
        UdpEchoServer::serve_on(socket, name)
    }

    /// Serves on a bound socket.
    fn serve_on(socket: UdpSocket, name: &str) -> UdpEchoServer {
        let addr = socket
            .local_addr()
            .unwrap_or_else(|error| panic!("local address of a UDP socket: {error}"));
        receive_destination(&socket, addr)
            .unwrap_or_else(|error| panic!("asking for packet info on {addr}: {error}"));
        socket
            .set_read_timeout(Some(POLL))
            .unwrap_or_else(|error| panic!("read timeout on {addr}: {error}"));
        let name = name.to_owned();
        let server = ServerThread::spawn("UDP echo server", addr, move |serving| {
            serve(&socket, &name, &serving.stop, &serving.served)
        });
        UdpEchoServer { server }
    }

    /// The address the server is bound to.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Datagrams received (and answered, unless the answer failed, which is logged).
    pub fn datagrams(&self) -> usize {
        self.server.served()
    }
}

fn serve(socket: &UdpSocket, name: &str, stop: &AtomicBool, datagrams: &AtomicUsize) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    while !stop.load(Ordering::SeqCst) {
        match receive(socket, &mut buf) {
            Ok((len, peer, local)) => {
                // Counted before the answer leaves, so that a client that got it never finds
                // the count behind.
                datagrams.fetch_add(1, Ordering::SeqCst);
                let reply = format!("{name} {len}\n");
                if let Err(error) = reply_from(socket, reply.as_bytes(), peer, local) {
                    eprintln!("UDP echo {name}: answering {peer}: {error}");
                }
            }
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(error) => {
                eprintln!("UDP echo {name}: {error}");
                std::thread::sleep(POLL);
            }
        }
    }
}

/// Sends `payload` to `addr` from an unspecified address of its family and returns the first
/// reply as text. The socket is connected, so only a reply from `addr` itself counts (as a
/// client expects of a VIP). Its socket belongs to the namespace of the calling thread: call
/// it inside [`Netns::run`]. Fails after `timeout` without a reply.
pub fn udp_request(addr: SocketAddr, payload: &[u8], timeout: Duration) -> io::Result<String> {
    let local: SocketAddr = match addr {
        SocketAddr::V4(_) => SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 0, 0, 0).into(),
    };
    let socket = UdpSocket::bind(local)?;
    socket.connect(addr)?;
    socket.set_read_timeout(Some(timeout))?;
    socket.send(payload)?;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let len = socket.recv(&mut buf).map_err(|error| {
        if matches!(
            error.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ) {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no reply from {addr} within {timeout:?}"),
            )
        } else {
            error
        }
    })?;
    String::from_utf8(buf[..len].to_vec())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "reply is not UTF-8"))
}

/// Sends `count` datagrams of `payload` to `target` from inside `client`, each from a socket
/// of its own (a new flow for a balancer), and counts the answers by the server that gave
/// them. Every answer must come from `target` itself and report the whole payload; a missing
/// one panics, with `context` (say, the balancer's log). Bounded: `timeout` per datagram.
pub fn datagrams_per_server(
    client: &Netns,
    target: SocketAddr,
    count: usize,
    payload: &[u8],
    timeout: Duration,
    context: impl Fn() -> String,
) -> std::collections::HashMap<String, u64> {
    let replies = client.run(|| {
        (0..count)
            .map(|_| udp_request(target, payload, timeout))
            .collect::<Vec<_>>()
    });
    let mut per_server = std::collections::HashMap::new();
    for (index, reply) in replies.into_iter().enumerate() {
        let reply = reply
            .unwrap_or_else(|error| panic!("datagram {index} to {target}: {error}\n{}", context()));
        let (server, length) = reply
            .trim_end()
            .split_once(' ')
            .unwrap_or_else(|| panic!("reply {reply:?} from {target}: not \"<name> <length>\""));
        assert_eq!(
            length,
            payload.len().to_string(),
            "datagram {index} to {target} reached {server} cut"
        );
        *per_server.entry(server.to_owned()).or_default() += 1;
    }
    per_server
}

/// Asks the kernel to report each datagram's destination address.
fn receive_destination(socket: &UdpSocket, addr: SocketAddr) -> io::Result<()> {
    let (level, name) = match addr {
        SocketAddr::V4(_) => (libc::IPPROTO_IP, libc::IP_PKTINFO),
        SocketAddr::V6(_) => (libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO),
    };
    let on: libc::c_int = 1;
    // SAFETY: setsockopt on a socket we own, with an int option of the right size.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&on as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The address a datagram was sent to, as packet info reports it.
#[derive(Clone, Copy)]
enum Destination {
    V4(libc::in_pktinfo),
    V6(libc::in6_pktinfo),
}

/// Room for one packet-info control message of either family.
#[repr(C, align(8))]
struct ControlBuffer([u8; 64]);

/// `recvmsg`: length, sender, and the address the datagram was sent to (if reported).
fn receive(
    socket: &UdpSocket,
    buf: &mut [u8],
) -> io::Result<(usize, SocketAddr, Option<Destination>)> {
    // SAFETY: every pointer handed to recvmsg points into a live local or `buf`, with its true
    // length; the control messages are read only within what the kernel reports in
    // msg_controllen, through the CMSG macros, with unaligned reads.
    unsafe {
        let mut peer: libc::sockaddr_storage = zeroed();
        let mut control = ControlBuffer([0; 64]);
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let mut message: libc::msghdr = zeroed();
        message.msg_name = (&mut peer as *mut libc::sockaddr_storage).cast();
        message.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        message.msg_iov = &mut iov;
        message.msg_iovlen = 1;
        message.msg_control = control.0.as_mut_ptr().cast();
        message.msg_controllen = control.0.len() as _;
        let len = libc::recvmsg(socket.as_raw_fd(), &mut message, 0);
        if len < 0 {
            return Err(io::Error::last_os_error());
        }
        let peer = socket_addr(&peer)?;
        let mut destination = None;
        let mut cmsg = libc::CMSG_FIRSTHDR(&message);
        while !cmsg.is_null() {
            let data = libc::CMSG_DATA(cmsg);
            match ((*cmsg).cmsg_level, (*cmsg).cmsg_type) {
                (libc::IPPROTO_IP, libc::IP_PKTINFO) => {
                    destination = Some(Destination::V4(
                        data.cast::<libc::in_pktinfo>().read_unaligned(),
                    ));
                }
                (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) => {
                    destination = Some(Destination::V6(
                        data.cast::<libc::in6_pktinfo>().read_unaligned(),
                    ));
                }
                _ => {}
            }
            cmsg = libc::CMSG_NXTHDR(&message, cmsg);
        }
        Ok((len as usize, peer, destination))
    }
}

/// `sendmsg` of `payload` to `peer`, from `local` (the received datagram's destination) when
/// known. The interface is left to routing: only the source address is pinned.
fn reply_from(
    socket: &UdpSocket,
    payload: &[u8],
    peer: SocketAddr,
    local: Option<Destination>,
) -> io::Result<usize> {
    let Some(local) = local else {
        return socket.send_to(payload, peer);
    };
    // SAFETY: as in `receive`; the control message is written through the CMSG macros into a
    // buffer sized and aligned for it, and msg_controllen is exactly CMSG_SPACE of its data.
    unsafe {
        let (mut peer_storage, peer_len) = sockaddr(peer);
        let mut control = ControlBuffer([0; 64]);
        let mut iov = libc::iovec {
            iov_base: payload.as_ptr() as *mut libc::c_void,
            iov_len: payload.len(),
        };
        let (level, kind, data_len) = match local {
            Destination::V4(_) => (
                libc::IPPROTO_IP,
                libc::IP_PKTINFO,
                size_of::<libc::in_pktinfo>(),
            ),
            Destination::V6(_) => (
                libc::IPPROTO_IPV6,
                libc::IPV6_PKTINFO,
                size_of::<libc::in6_pktinfo>(),
            ),
        };
        let mut message: libc::msghdr = zeroed();
        message.msg_name = (&mut peer_storage as *mut libc::sockaddr_storage).cast();
        message.msg_namelen = peer_len;
        message.msg_iov = &mut iov;
        message.msg_iovlen = 1;
        message.msg_control = control.0.as_mut_ptr().cast();
        message.msg_controllen = libc::CMSG_SPACE(data_len as u32) as _;
        let cmsg = libc::CMSG_FIRSTHDR(&message);
        (*cmsg).cmsg_level = level;
        (*cmsg).cmsg_type = kind;
        (*cmsg).cmsg_len = libc::CMSG_LEN(data_len as u32) as _;
        let data = libc::CMSG_DATA(cmsg);
        match local {
            Destination::V4(info) => {
                // Source = the address the datagram came to; any interface.
                let out = libc::in_pktinfo {
                    ipi_ifindex: 0,
                    ipi_spec_dst: info.ipi_addr,
                    ipi_addr: info.ipi_addr,
                };
                data.cast::<libc::in_pktinfo>().write_unaligned(out);
            }
            Destination::V6(info) => {
                let out = libc::in6_pktinfo {
                    ipi6_addr: info.ipi6_addr,
                    ipi6_ifindex: 0,
                };
                data.cast::<libc::in6_pktinfo>().write_unaligned(out);
            }
        }
        let sent = libc::sendmsg(socket.as_raw_fd(), &message, 0);
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(sent as usize)
    }
}

fn socket_addr(storage: &libc::sockaddr_storage) -> io::Result<SocketAddr> {
    // SAFETY: the family field says which sockaddr the storage holds; both fit in it.
    unsafe {
        match i32::from(storage.ss_family) {
            libc::AF_INET => {
                let addr = &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>();
                Ok(SocketAddrV4::new(
                    Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr)),
                    u16::from_be(addr.sin_port),
                )
                .into())
            }
            libc::AF_INET6 => {
                let addr =
                    &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>();
                Ok(SocketAddrV6::new(
                    Ipv6Addr::from(addr.sin6_addr.s6_addr),
                    u16::from_be(addr.sin6_port),
                    u32::from_be(addr.sin6_flowinfo),
                    addr.sin6_scope_id,
                )
                .into())
            }
            family => Err(io::Error::other(format!(
                "datagram from address family {family}"
            ))),
        }
    }
}

fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: zeroed sockaddr_storage is valid; we write a sockaddr_in/_in6, both smaller.
    unsafe {
        let mut storage: libc::sockaddr_storage = zeroed();
        let len = match addr {
            SocketAddr::V4(v4) => {
                let out = (&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>();
                (*out).sin_family = libc::AF_INET as libc::sa_family_t;
                (*out).sin_port = v4.port().to_be();
                (*out).sin_addr.s_addr = u32::from(*v4.ip()).to_be();
                size_of::<libc::sockaddr_in>()
            }
            SocketAddr::V6(v6) => {
                let out =
                    (&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>();
                (*out).sin6_family = libc::AF_INET6 as libc::sa_family_t;
                (*out).sin6_port = v6.port().to_be();
                (*out).sin6_flowinfo = v6.flowinfo().to_be();
                (*out).sin6_addr.s6_addr = v6.ip().octets();
                (*out).sin6_scope_id = v6.scope_id();
                size_of::<libc::sockaddr_in6>()
            }
        };
        (storage, len as libc::socklen_t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server on loopback of the test's own namespace: no root needed.
    fn loopback_server(addr: SocketAddr, name: &str) -> UdpEchoServer {
        UdpEchoServer::serve_on(UdpSocket::bind(addr).unwrap(), name)
    }

    #[test]
    fn echoes_name_and_length_from_the_address_it_was_sent_to() {
        let timeout = Duration::from_secs(2);
        // Bound to the wildcard, asked on 127.0.0.1: the connected client accepts the reply
        // only if it comes from 127.0.0.1.
        let server = loopback_server("0.0.0.0:0".parse().unwrap(), "real1");
        let port = server.addr().port();
        let target = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        assert_eq!(udp_request(target, b"hello", timeout).unwrap(), "real1 5\n");
        assert_eq!(
            udp_request(target, &[0; 9000], timeout).unwrap(),
            "real1 9000\n"
        );
        assert_eq!(udp_request(target, b"", timeout).unwrap(), "real1 0\n");
        assert_eq!(server.datagrams(), 3);
    }

    #[test]
    fn dual_stack_server_answers_both_families() {
        let timeout = Duration::from_secs(2);
        let Ok(probe) = UdpSocket::bind("[::1]:0") else {
            eprintln!("skipping: no IPv6 loopback here");
            return;
        };
        drop(probe);
        let server = loopback_server("[::]:0".parse().unwrap(), "six");
        let port = server.addr().port();
        let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
        let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        assert_eq!(udp_request(v6, b"abc", timeout).unwrap(), "six 3\n");
        assert_eq!(udp_request(v4, b"abcd", timeout).unwrap(), "six 4\n");
    }

    #[test]
    fn request_times_out_without_a_server() {
        // A bound socket that never answers.
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let error = udp_request(
            silent.local_addr().unwrap(),
            b"anyone?",
            Duration::from_millis(100),
        )
        .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut, "{error}");
        assert!(error.to_string().contains("no reply"), "{error}");
    }
}
