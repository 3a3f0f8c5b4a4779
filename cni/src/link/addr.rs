//! Addresses, duplicate address detection state and routes.

use std::net::IpAddr;

use futures::TryStreamExt;

use super::{LinkError, Netlink, RouteSpec, nl_err};

impl Netlink {
    /// Addresses (ip, prefix) on a link.
    pub async fn addrs(&self, index: u32) -> Result<Vec<(IpAddr, u8)>, LinkError> {
        use netlink_packet_route::address::AddressAttribute;
        let msgs: Vec<_> = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .map_err(nl_err(format!("list addresses of {index}")))?;
        let mut out = Vec::new();
        for m in msgs {
            if m.header.index != index {
                continue;
            }
            let addr = m.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            });
            if let Some(ip) = addr {
                out.push((ip, m.header.prefix_len));
            }
        }
        Ok(out)
    }

    /// Addresses on a link as prefixes (`10.1.0.5/24`).
    pub async fn prefixes(&self, index: u32) -> Result<Vec<ipnet::IpNet>, LinkError> {
        Ok(self
            .addrs(index)
            .await?
            .into_iter()
            .filter_map(|(ip, p)| ipnet::IpNet::new(ip, p).ok())
            .collect())
    }

    /// IPv6 duplicate address detection state of a link's addresses:
    /// (still tentative, failed).
    pub async fn dad_state(&self, index: u32) -> Result<(Vec<IpAddr>, Vec<IpAddr>), LinkError> {
        use netlink_packet_route::address::{AddressAttribute, AddressFlags};
        let msgs: Vec<_> = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .map_err(nl_err(format!("list addresses of {index}")))?;
        let (mut tentative, mut failed) = (Vec::new(), Vec::new());
        for m in msgs {
            if m.header.index != index {
                continue;
            }
            let mut ip = None;
            // IFA_FLAGS (32 bits) when present, else the header's 8 bits.
            let mut flags = AddressFlags::from_bits_truncate(u32::from(m.header.flags.bits()));
            for a in &m.attributes {
                match a {
                    AddressAttribute::Address(a) => ip = Some(*a),
                    AddressAttribute::Flags(f) => flags = *f,
                    _ => {}
                }
            }
            let Some(ip) = ip.filter(IpAddr::is_ipv6) else {
                continue;
            };
            if flags.contains(AddressFlags::Dadfailed) {
                failed.push(ip);
            } else if flags.contains(AddressFlags::Tentative) {
                tentative.push(ip);
            }
        }
        Ok((tentative, failed))
    }

    /// Adds an address; `nodad` skips IPv6 duplicate address detection.
    pub async fn add_addr(
        &self,
        index: u32,
        ip: IpAddr,
        prefix: u8,
        nodad: bool,
    ) -> Result<(), LinkError> {
        self.add_addr_opts(index, ip, prefix, nodad, false).await
    }

    /// [`Netlink::add_addr`], optionally without the kernel's prefix route
    /// (`IFA_F_NOPREFIXROUTE`).
    pub async fn add_addr_opts(
        &self,
        index: u32,
        ip: IpAddr,
        prefix: u8,
        nodad: bool,
        noprefixroute: bool,
    ) -> Result<(), LinkError> {
        use netlink_packet_route::address::{AddressAttribute, AddressFlags};
        let mut req = self.handle.address().add(index, ip, prefix);
        let mut flags = AddressFlags::empty();
        if nodad && ip.is_ipv6() {
            flags |= AddressFlags::Nodad;
        }
        if noprefixroute {
            flags |= AddressFlags::Noprefixroute;
        }
        if !flags.is_empty() {
            req.message_mut()
                .attributes
                .push(AddressAttribute::Flags(flags));
        }
        match req
            .execute()
            .await
            .map_err(nl_err(format!("add address {ip}/{prefix}")))
        {
            Err(e) if e.errno() == Some(libc::EEXIST) => Ok(()),
            r => r,
        }
    }

    /// Deletes an address.
    pub async fn del_addr(&self, index: u32, ip: IpAddr, prefix: u8) -> Result<(), LinkError> {
        let mut s = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .set_address_filter(ip)
            .execute();
        while let Some(m) = s.try_next().await.map_err(nl_err("list addresses"))? {
            if m.header.prefix_len == prefix && m.header.index == index {
                return self
                    .handle
                    .address()
                    .del(m)
                    .execute()
                    .await
                    .map_err(nl_err(format!("delete address {ip}")));
            }
        }
        Ok(())
    }

    /// Adds a route; an identical existing route is fine.
    pub async fn add_route(&self, r: &RouteSpec) -> Result<(), LinkError> {
        use rtnetlink::RouteMessageBuilder;
        let msg = match (r.dst, r.gw) {
            (IpAddr::V4(d), gw) => {
                let mut b = RouteMessageBuilder::<std::net::Ipv4Addr>::new()
                    .destination_prefix(d, r.prefix)
                    .output_interface(r.oif);
                if let Some(IpAddr::V4(g)) = gw {
                    b = b.gateway(g);
                }
                if let Some(IpAddr::V4(s)) = r.src {
                    b = b.pref_source(s);
                }
                if let Some(sc) = r.scope {
                    b = b.scope(sc);
                }
                b.build()
            }
            (IpAddr::V6(d), gw) => {
                let mut b = RouteMessageBuilder::<std::net::Ipv6Addr>::new()
                    .destination_prefix(d, r.prefix)
                    .output_interface(r.oif);
                if let Some(IpAddr::V6(g)) = gw {
                    b = b.gateway(g);
                }
                if let Some(IpAddr::V6(s)) = r.src {
                    b = b.pref_source(s);
                }
                if let Some(sc) = r.scope {
                    b = b.scope(sc);
                }
                b.build()
            }
        };
        match self
            .handle
            .route()
            .add(msg)
            .execute()
            .await
            .map_err(nl_err(format!(
                "add route {}/{} via {:?}",
                r.dst, r.prefix, r.gw
            ))) {
            Err(e) if e.errno() == Some(libc::EEXIST) => Ok(()),
            r => r,
        }
    }

    /// Main-table routes out of `oif` (both families): (destination, gateway).
    pub async fn routes_via(
        &self,
        oif: u32,
    ) -> Result<Vec<(ipnet::IpNet, Option<IpAddr>)>, LinkError> {
        use netlink_packet_route::route::{RouteAddress, RouteAttribute};
        use rtnetlink::RouteMessageBuilder;
        let to_ip = |a: &RouteAddress| match a {
            RouteAddress::Inet(v) => Some(IpAddr::V4(*v)),
            RouteAddress::Inet6(v) => Some(IpAddr::V6(*v)),
            _ => None,
        };
        let mut out = Vec::new();
        for (v6, filter) in [
            (
                false,
                RouteMessageBuilder::<std::net::Ipv4Addr>::new().build(),
            ),
            (
                true,
                RouteMessageBuilder::<std::net::Ipv6Addr>::new().build(),
            ),
        ] {
            let msgs: Vec<_> = self
                .handle
                .route()
                .get(filter)
                .execute()
                .try_collect()
                .await
                .map_err(nl_err("list routes"))?;
            for m in msgs {
                let (mut dst, mut gw, mut on) = (None, None, false);
                for a in &m.attributes {
                    match a {
                        RouteAttribute::Destination(d) => dst = to_ip(d),
                        RouteAttribute::Gateway(g) => gw = to_ip(g),
                        RouteAttribute::Oif(i) => on = *i == oif,
                        _ => {}
                    }
                }
                let unspecified = if v6 {
                    IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
                } else {
                    IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
                };
                let dst = dst.unwrap_or(unspecified);
                if let (true, Ok(net)) = (
                    on,
                    ipnet::IpNet::new(dst, m.header.destination_prefix_length),
                ) {
                    out.push((net, gw));
                }
            }
        }
        Ok(out)
    }

    /// The output interface of the route the kernel would use to reach `ip`.
    pub async fn route_oif(&self, ip: IpAddr) -> Result<Option<u32>, LinkError> {
        use netlink_packet_route::route::RouteAttribute;
        use rtnetlink::RouteMessageBuilder;
        let msg = match ip {
            IpAddr::V4(a) => RouteMessageBuilder::<std::net::Ipv4Addr>::new()
                .destination_prefix(a, 32)
                .build(),
            IpAddr::V6(a) => RouteMessageBuilder::<std::net::Ipv6Addr>::new()
                .destination_prefix(a, 128)
                .build(),
        };
        let mut s = self.handle.route().get(msg).execute();
        match s.try_next().await {
            Ok(Some(r)) => Ok(r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Oif(i) => Some(*i),
                _ => None,
            })),
            Ok(None) => Ok(None),
            Err(e) => {
                let e = nl_err(format!("route get {ip}"))(e);
                if matches!(e.errno(), Some(libc::ENETUNREACH | libc::EHOSTUNREACH)) {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }
}
