//! Bridge VLANs (`vlan`, `vlanTrunk`, `preserveDefaultVlan`). This kernel
//! refuses bridge VLAN filtering, so this code fails cleanly here.

use futures::TryStreamExt;
use netlink_packet_route::link::{
    BridgeVlanInfoFlags, InfoData, LinkAttribute, LinkInfo as NlInfo,
};
use rtnetlink::{LinkBridge, LinkBridgeVlan};

use super::{LinkError, Netlink, nl_err};

impl Netlink {
    /// Adds a VLAN to a bridge port (or the bridge itself with `self_`).
    pub async fn add_vlan(
        &self,
        index: u32,
        vid: u16,
        pvid_untagged: bool,
        self_: bool,
    ) -> Result<(), LinkError> {
        let flags = if pvid_untagged {
            BridgeVlanInfoFlags::Pvid | BridgeVlanInfoFlags::Untagged
        } else {
            BridgeVlanInfoFlags::empty()
        };
        let mut b = LinkBridgeVlan::new(index).vlan(vid, flags);
        if self_ {
            b = b.bridge_self();
        }
        self.handle
            .link()
            .set_port(b.build())
            .execute()
            .await
            .map_err(nl_err(format!("add vlan {vid} on {index}")))
    }

    /// Turns VLAN filtering on for an existing bridge.
    pub async fn set_vlan_filtering(&self, index: u32, name: &str) -> Result<(), LinkError> {
        let msg = LinkBridge::new(name)
            .index(index)
            .vlan_filtering(true)
            .build();
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(nl_err(format!("enable vlan_filtering on {name}")))
    }

    /// Whether the bridge reports VLAN filtering as on (kernels without
    /// `CONFIG_BRIDGE_VLAN_FILTERING` accept the request but never report it).
    pub async fn vlan_filtering_on(&self, index: u32) -> Result<bool, LinkError> {
        use netlink_packet_route::link::InfoBridge;
        let mut s = self.handle.link().get().match_index(index).execute();
        let Some(m) = s
            .try_next()
            .await
            .map_err(nl_err(format!("get link {index}")))?
        else {
            return Ok(false);
        };
        Ok(m.attributes.iter().any(|a| match a {
            LinkAttribute::LinkInfo(infos) => infos.iter().any(|i| match i {
                NlInfo::Data(InfoData::Bridge(opts)) => opts
                    .iter()
                    .any(|o| matches!(o, InfoBridge::VlanFiltering(true))),
                _ => false,
            }),
            _ => false,
        }))
    }

    /// Removes a VLAN from a bridge port.
    pub async fn del_vlan(&self, index: u32, vid: u16) -> Result<(), LinkError> {
        let msg = LinkBridgeVlan::new(index)
            .vlan(vid, BridgeVlanInfoFlags::empty())
            .build();
        self.handle
            .link()
            .del_with_message(msg)
            .execute()
            .await
            .map_err(nl_err(format!("delete vlan {vid} on {index}")))
    }
}
