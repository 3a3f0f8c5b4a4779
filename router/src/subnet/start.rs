//! Getting a lease before weftd starts routing: connect to etcd, read the
//! network config, lease a subnet. etcd being unreachable is retried with
//! backoff (the reason logged once per change); a network config weft
//! cannot use, or an exhausted pool, is an error at once.

use std::time::Duration;

use tracing::{info, warn};

use crate::cidr::Cidr;
use crate::config::SubnetConfig;
use crate::subnet::lease::LeaseAttrs;
use crate::subnet::network::Network;
use crate::subnet::store::{OwnLease, StoreError, SubnetStore};
use crate::subnet::tls::EtcdTls;

/// The longest wait between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(8);

/// Where start-up tells what it waits for (`/readyz` while leasing).
pub type Progress<'a> = &'a (dyn Fn(String) + Sync);

/// Retries `f` while etcd is unreachable; returns the first success or
/// the first error that retrying cannot fix. Each new reason goes to
/// `progress` too.
async fn retrying<T, F, Fut>(what: &str, progress: Progress<'_>, mut f: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut backoff = Duration::from_millis(250);
    let mut last: Option<String> = None;
    loop {
        match f().await {
            Ok(v) => {
                if last.is_some() {
                    info!("etcd reachable, {what}");
                }
                return Ok(v);
            }
            Err(e @ (StoreError::Subnet(_) | StoreError::Contended(_))) => return Err(e),
            Err(e) => {
                let msg = e.to_string();
                if last.as_deref() != Some(&msg) {
                    warn!(error = %msg, "etcd not ready, retrying: {what}");
                    progress(format!("etcd not ready ({what}): {msg}"));
                    last = Some(msg);
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Connects and reads the network config, retrying until etcd answers.
pub async fn network(
    sc: &SubnetConfig,
    progress: Progress<'_>,
) -> Result<(SubnetStore, Network), StoreError> {
    let tls = EtcdTls::load(sc)?;
    progress("waiting for etcd: reading the network config".to_owned());
    retrying("reading the network config", progress, || async {
        let mut store =
            SubnetStore::connect(&sc.etcd_endpoints, &sc.etcd_prefix, tls.clone()).await?;
        let net = store.network().await?;
        Ok((store, net))
    })
    .await
}

/// Leases this node's subnet, retrying until etcd answers. `previous`
/// (the subnet the last run wrote to `subnet.env`) is asked for when no
/// lease carries this node's address.
pub async fn lease(
    store: &SubnetStore,
    net: &Network,
    attrs: &LeaseAttrs,
    previous: Option<Cidr>,
    progress: Progress<'_>,
) -> Result<OwnLease, StoreError> {
    progress("waiting for etcd: leasing a subnet".to_owned());
    let own = retrying("leasing a subnet", progress, || {
        let mut store = store.clone();
        async move { store.acquire(net, attrs, previous).await }
    })
    .await?;
    info!(subnet = %own.subnet, public_ip = %attrs.public_ip, ttl_s = own.ttl.as_secs(), "subnet leased");
    Ok(own)
}
