//! The sockets a virtual router speaks through: a raw `IPPROTO_VRRP` socket per router, bound
//! to its interface (adverts in and out), and a packet socket for the gratuitous ARPs and
//! unsolicited neighbour advertisements a new master sends.
//!
//! Adverts leave with TTL / hop limit 255 (RFC 5798 §5.1.1.3: receivers drop anything else,
//! which proves the sender is on the link) and precedence 0xc0 as keepalived's do, from the
//! source address the router names (set per packet with `IP_PKTINFO` / `IPV6_PKTINFO`: a
//! raw socket bound to an address would hear only packets to it, never the multicast group).

use std::{
    io,
    mem::{size_of, zeroed},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
};

use tokio::io::unix::AsyncFd;

use super::packet::{IPPROTO_VRRP, MULTICAST_V4, MULTICAST_V6};

/// An advert as it came off the wire: its addresses, the hop limit it arrived with, and
/// the bytes (for IPv4 the whole IP packet, for IPv6 the VRRP payload: raw IPv6 sockets
/// strip the header and hand its fields over as control messages).
#[derive(Debug)]
pub struct Received {
    pub source: IpAddr,
    /// IPv6 only (IPv4's are in the packet).
    pub destination: Option<Ipv6Addr>,
    pub hop_limit: Option<u8>,
    pub bytes: Vec<u8>,
}

pub struct AdvertSocket {
    fd: AsyncFd<OwnedFd>,
    ipv6: bool,
    ifindex: u32,
}

fn check(result: libc::c_int) -> io::Result<libc::c_int> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

fn set_option<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` is a live `T` of the size passed.
    check(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    })
    .map(drop)
}

fn bind_to_device(fd: RawFd, interface: &str) -> io::Result<()> {
    // SAFETY: the name's bytes, of the length passed.
    check(unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            interface.as_ptr().cast(),
            interface.len() as libc::socklen_t,
        )
    })
    .map(drop)
}

fn raw_socket(family: libc::c_int, protocol: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the descriptor is owned from here on.
    let fd = check(unsafe {
        libc::socket(
            family,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            protocol,
        )
    })?;
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl AdvertSocket {
    /// A socket hearing VRRP on `interface` (index `ifindex`); it joins the VRRP multicast
    /// group of its family when `multicast`.
    pub fn open(interface: &str, ifindex: u32, ipv6: bool, multicast: bool) -> io::Result<Self> {
        let family = if ipv6 { libc::AF_INET6 } else { libc::AF_INET };
        let owned = raw_socket(family, libc::c_int::from(IPPROTO_VRRP))?;
        let fd = owned.as_raw_fd();
        bind_to_device(fd, interface)?;
        let hops: libc::c_int = 255;
        let precedence: libc::c_int = 0xc0;
        let off: libc::c_int = 0;
        let on: libc::c_int = 1;
        if ipv6 {
            set_option(fd, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_HOPS, &hops)?;
            set_option(fd, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS, &hops)?;
            set_option(fd, libc::IPPROTO_IPV6, libc::IPV6_TCLASS, &precedence)?;
            set_option(fd, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_LOOP, &off)?;
            let index = ifindex as libc::c_int;
            set_option(fd, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_IF, &index)?;
            set_option(fd, libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT, &on)?;
            set_option(fd, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, &on)?;
            if multicast {
                let membership = libc::ipv6_mreq {
                    ipv6mr_multiaddr: libc::in6_addr {
                        s6_addr: MULTICAST_V6.octets(),
                    },
                    ipv6mr_interface: ifindex,
                };
                set_option(
                    fd,
                    libc::IPPROTO_IPV6,
                    libc::IPV6_ADD_MEMBERSHIP,
                    &membership,
                )?;
            }
        } else {
            set_option(fd, libc::IPPROTO_IP, libc::IP_MULTICAST_TTL, &hops)?;
            set_option(fd, libc::IPPROTO_IP, libc::IP_TTL, &hops)?;
            set_option(fd, libc::IPPROTO_IP, libc::IP_TOS, &precedence)?;
            set_option(fd, libc::IPPROTO_IP, libc::IP_MULTICAST_LOOP, &off)?;
            let interface_request = libc::ip_mreqn {
                imr_multiaddr: libc::in_addr { s_addr: 0 },
                imr_address: libc::in_addr { s_addr: 0 },
                imr_ifindex: ifindex as libc::c_int,
            };
            set_option(
                fd,
                libc::IPPROTO_IP,
                libc::IP_MULTICAST_IF,
                &interface_request,
            )?;
            if multicast {
                let membership = libc::ip_mreqn {
                    imr_multiaddr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(MULTICAST_V4.octets()),
                    },
                    ..interface_request
                };
                set_option(fd, libc::IPPROTO_IP, libc::IP_ADD_MEMBERSHIP, &membership)?;
            }
        }
        Ok(Self {
            // SAFETY: an `OwnedFd` owns its open descriptor, and only the `AsyncFd` holds it.
            fd: unsafe { AsyncFd::register_with_interest(owned, tokio::io::Interest::READABLE) }
                .map_err(|error| error.into_parts().1)?,
            ipv6,
            ifindex,
        })
    }

    /// The next packet.
    pub async fn receive(&self) -> io::Result<Received> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| self.receive_now(fd.as_raw_fd())) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    /// A packet already queued, without waiting: `None` when there is none.
    pub fn try_receive(&self) -> io::Result<Option<Received>> {
        match self.receive_now(self.fd.get_ref().as_raw_fd()) {
            Ok(received) => Ok(Some(received)),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(error) => Err(error),
        }
    }

    fn receive_now(&self, fd: RawFd) -> io::Result<Received> {
        // The longest advert: an IPv4 header with options, 8 bytes and 255 IPv6 addresses
        // (4,148 bytes); a longer packet is truncated and then refused by its length.
        let mut bytes = [0u8; 8192];
        // SAFETY: zeroed C structs, filled by recvmsg.
        let mut name: libc::sockaddr_storage = unsafe { zeroed() };
        let mut control = [0u64; 16];
        let mut iov = libc::iovec {
            iov_base: bytes.as_mut_ptr().cast(),
            iov_len: bytes.len(),
        };
        let mut message: libc::msghdr = unsafe { zeroed() };
        message.msg_name = (&mut name as *mut libc::sockaddr_storage).cast();
        message.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        message.msg_iov = &mut iov;
        message.msg_iovlen = 1;
        message.msg_control = control.as_mut_ptr().cast();
        message.msg_controllen = size_of::<[u64; 16]>();
        // SAFETY: every pointer in `message` points at live buffers of the lengths given.
        let length = unsafe { libc::recvmsg(fd, &mut message, 0) };
        if length < 0 {
            return Err(io::Error::last_os_error());
        }
        let bytes = bytes[..(length as usize).min(bytes.len())].to_vec();
        let source = sockaddr_address(&name)
            .ok_or_else(|| io::Error::other("recvmsg gave no source address"))?;
        let mut hop_limit = None;
        let mut destination = None;
        if self.ipv6 {
            // SAFETY: walking the control messages recvmsg wrote, within msg_controllen.
            unsafe {
                let mut header = libc::CMSG_FIRSTHDR(&message);
                while !header.is_null() {
                    let data = libc::CMSG_DATA(header);
                    match ((*header).cmsg_level, (*header).cmsg_type) {
                        (libc::IPPROTO_IPV6, libc::IPV6_HOPLIMIT) => {
                            let value = std::ptr::read_unaligned(data.cast::<libc::c_int>());
                            hop_limit = u8::try_from(value).ok();
                        }
                        (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) => {
                            let info = std::ptr::read_unaligned(data.cast::<libc::in6_pktinfo>());
                            destination = Some(Ipv6Addr::from(info.ipi6_addr.s6_addr));
                        }
                        _ => {}
                    }
                    header = libc::CMSG_NXTHDR(&message, header);
                }
            }
        }
        Ok(Received {
            source,
            destination,
            hop_limit,
            bytes,
        })
    }

    /// Sends a VRRP payload from `source` to `destination` (a peer, or the multicast group).
    pub fn send(&self, payload: &[u8], source: IpAddr, destination: IpAddr) -> io::Result<()> {
        let fd = self.fd.get_ref().as_raw_fd();
        let mut iov = libc::iovec {
            iov_base: payload.as_ptr() as *mut libc::c_void,
            iov_len: payload.len(),
        };
        let mut control = [0u64; 8];
        // SAFETY: zeroed C structs, filled below.
        let mut message: libc::msghdr = unsafe { zeroed() };
        message.msg_iov = &mut iov;
        message.msg_iovlen = 1;
        message.msg_control = control.as_mut_ptr().cast();
        let sent = match (source, destination) {
            (IpAddr::V4(source), IpAddr::V4(destination)) => {
                let mut name: libc::sockaddr_in = unsafe { zeroed() };
                name.sin_family = libc::AF_INET as libc::sa_family_t;
                name.sin_addr.s_addr = u32::from_ne_bytes(destination.octets());
                message.msg_name = (&mut name as *mut libc::sockaddr_in).cast();
                message.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
                let info = libc::in_pktinfo {
                    ipi_ifindex: self.ifindex as libc::c_int,
                    ipi_spec_dst: libc::in_addr {
                        s_addr: u32::from_ne_bytes(source.octets()),
                    },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                };
                // SAFETY: the control buffer is large enough for one in_pktinfo message.
                unsafe { put_control(&mut message, libc::IPPROTO_IP, libc::IP_PKTINFO, &info) };
                unsafe { libc::sendmsg(fd, &message, 0) }
            }
            (IpAddr::V6(source), IpAddr::V6(destination)) => {
                let mut name: libc::sockaddr_in6 = unsafe { zeroed() };
                name.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                name.sin6_addr.s6_addr = destination.octets();
                if destination.is_multicast() || destination.is_unicast_link_local() {
                    name.sin6_scope_id = self.ifindex;
                }
                message.msg_name = (&mut name as *mut libc::sockaddr_in6).cast();
                message.msg_namelen = size_of::<libc::sockaddr_in6>() as libc::socklen_t;
                let info = libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr {
                        s6_addr: source.octets(),
                    },
                    ipi6_ifindex: self.ifindex,
                };
                // SAFETY: as above, for one in6_pktinfo message.
                unsafe { put_control(&mut message, libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, &info) };
                unsafe { libc::sendmsg(fd, &message, 0) }
            }
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{source} and {destination} are of different families"),
                ));
            }
        };
        if sent < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}

/// Writes one control message holding `value` at the start of `message`'s control buffer
/// and sets its length.
///
/// # Safety
/// `message.msg_control` must point at a buffer of at least `CMSG_SPACE(size_of::<T>())`
/// bytes, aligned for `cmsghdr`.
unsafe fn put_control<T>(
    message: &mut libc::msghdr,
    level: libc::c_int,
    kind: libc::c_int,
    value: &T,
) {
    unsafe {
        let space = libc::CMSG_SPACE(size_of::<T>() as u32) as usize;
        message.msg_controllen = space;
        let header = libc::CMSG_FIRSTHDR(message);
        (*header).cmsg_level = level;
        (*header).cmsg_type = kind;
        (*header).cmsg_len = libc::CMSG_LEN(size_of::<T>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(header).cast::<T>(), std::ptr::read(value));
    }
}

fn sockaddr_address(storage: &libc::sockaddr_storage) -> Option<IpAddr> {
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says it is a sockaddr_in.
            let address = unsafe { &*(storage as *const _ as *const libc::sockaddr_in) };
            Some(IpAddr::V4(Ipv4Addr::from(
                address.sin_addr.s_addr.to_ne_bytes(),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says it is a sockaddr_in6.
            let address = unsafe { &*(storage as *const _ as *const libc::sockaddr_in6) };
            Some(IpAddr::V6(Ipv6Addr::from(address.sin6_addr.s6_addr)))
        }
        _ => None,
    }
}

/// A packet socket on one interface, for whole Ethernet frames (gratuitous ARP, unsolicited
/// neighbour advertisements).
pub struct FrameSocket {
    fd: OwnedFd,
    ifindex: u32,
}

impl FrameSocket {
    pub fn open(ifindex: u32) -> io::Result<Self> {
        // Protocol 0: this socket only sends, it hears nothing.
        let fd = raw_socket(libc::AF_PACKET, 0)?;
        Ok(Self { fd, ifindex })
    }

    /// Sends one frame (its Ethernet header included) out of the interface.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: a zeroed sockaddr_ll, filled below.
        let mut address: libc::sockaddr_ll = unsafe { zeroed() };
        address.sll_family = libc::AF_PACKET as libc::c_ushort;
        address.sll_ifindex = self.ifindex as libc::c_int;
        address.sll_halen = 6;
        if frame.len() >= 14 {
            address.sll_addr[..6].copy_from_slice(&frame[..6]);
            address.sll_protocol = u16::from_be_bytes([frame[12], frame[13]]).to_be();
        }
        // SAFETY: the frame and the address are live for the call.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&address as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}
