//! The etcd edge of the subnet manager: reads flannel's network config,
//! lists and watches `<prefix>/subnets/`, and creates, takes over and
//! renews this node's lease (etcd v3 API through `etcd-client`).
//!
//! A lease is a key bound to an etcd lease with a TTL of 24 h, created
//! with a create-if-absent transaction so two nodes never hold the same
//! subnet, and renewed an hour before it expires by writing it again
//! under a fresh etcd lease (as flannel does).

use std::net::Ipv4Addr;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, PutOptions, Txn, TxnOp, WatchOptions,
    WatchStream,
};

use crate::cidr::Cidr;
use crate::subnet::SubnetError;
use crate::subnet::alloc::{Choice, LEASE_TTL, choose};
use crate::subnet::lease::{BadLease, Lease, LeaseAttrs, parse_lease, subnet_key};
use crate::subnet::network::Network;
use crate::subnet::tls::{EtcdTls, TlsFileError};

/// How long one etcd request may take before it counts as a failure.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// How many times a lost create race is retried with a new choice.
const ACQUIRE_ATTEMPTS: usize = 10;

/// What went wrong talking to etcd, or with what it holds.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// etcd did not answer or refused the request.
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    /// An etcd request took longer than its timeout.
    #[error("etcd: no answer within {0:?}")]
    Timeout(Duration),
    /// A certificate or key file could not be read.
    #[error(transparent)]
    TlsFile(#[from] TlsFileError),
    /// `<prefix>/config` is absent.
    #[error("no network config at {0} (flannel's JSON, e.g. {{\"Network\":\"10.244.0.0/16\"}})")]
    NoNetworkConfig(String),
    /// The network config or the pool is unusable.
    #[error(transparent)]
    Subnet(#[from] SubnetError),
    /// Other nodes kept winning the race for the chosen subnets.
    #[error("no subnet acquired after {0} attempts: other nodes took each one first")]
    Contended(usize),
}

/// The subnets under the prefix at one revision.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// Every well-formed lease.
    pub leases: Vec<Lease>,
    /// The entries that are not leases.
    pub bad: Vec<BadLease>,
    /// The store's revision of this listing; watch from the next one.
    pub revision: i64,
}

/// This node's lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnLease {
    /// The leased subnet.
    pub subnet: Cidr,
    /// The etcd lease the key is bound to.
    pub lease_id: i64,
    /// The TTL etcd granted.
    pub ttl: Duration,
}

/// A connection to one member of the store, under one prefix. When that
/// member fails, [`SubnetStore::reconnect`] moves to the next one that
/// answers (a channel balanced over every member would keep sending a
/// share of the requests to a dead one).
#[derive(Clone)]
pub struct SubnetStore {
    client: Client,
    prefix: String,
    endpoints: Vec<String>,
    tls: Option<EtcdTls>,
    current: usize,
}

/// Connects to `endpoint` and checks that it answers.
async fn connect_one(endpoint: &str, tls: Option<&EtcdTls>) -> Result<Client, StoreError> {
    let mut opts = ConnectOptions::new()
        .with_connect_timeout(REQUEST_TIMEOUT)
        .with_timeout(REQUEST_TIMEOUT)
        .with_keep_alive(Duration::from_secs(10), REQUEST_TIMEOUT);
    if let Some(tls) = tls {
        opts = opts.with_tls(tls.options());
    }
    let mut client = timed(Client::connect([endpoint], Some(opts))).await?;
    timed(client.status()).await?;
    Ok(client)
}

impl SubnetStore {
    /// Connects to the first of `endpoints` that answers, over TLS when
    /// `tls` is given (`https` endpoints).
    pub async fn connect(
        endpoints: &[String],
        prefix: &str,
        tls: Option<EtcdTls>,
    ) -> Result<Self, StoreError> {
        let (client, current) = Self::first_answering(endpoints, tls.as_ref(), 0).await?;
        Ok(Self {
            client,
            prefix: prefix.trim_end_matches('/').to_owned(),
            endpoints: endpoints.to_vec(),
            tls,
            current,
        })
    }

    /// Moves to the next member that answers, starting after the current
    /// one (so a dead member is tried last).
    pub async fn reconnect(&mut self) -> Result<(), StoreError> {
        let (client, current) =
            Self::first_answering(&self.endpoints, self.tls.as_ref(), self.current + 1).await?;
        self.client = client;
        self.current = current;
        Ok(())
    }

    async fn first_answering(
        endpoints: &[String],
        tls: Option<&EtcdTls>,
        start: usize,
    ) -> Result<(Client, usize), StoreError> {
        let mut last = StoreError::Timeout(REQUEST_TIMEOUT);
        for i in 0..endpoints.len() {
            let idx = (start + i) % endpoints.len();
            match connect_one(&endpoints[idx], tls).await {
                Ok(c) => return Ok((c, idx)),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// The key prefix every lease lives under (`<prefix>/subnets/`).
    pub fn subnets_prefix(&self) -> String {
        format!("{}/subnets/", self.prefix)
    }

    /// The full key of `subnet`'s lease.
    pub fn lease_key(&self, subnet: Cidr) -> String {
        format!("{}{}", self.subnets_prefix(), subnet_key(subnet))
    }

    /// Reads and checks `<prefix>/config`.
    pub async fn network(&mut self) -> Result<Network, StoreError> {
        let key = format!("{}/config", self.prefix);
        let resp = timed(self.client.get(key.clone(), None)).await?;
        let kv = resp.kvs().first().ok_or(StoreError::NoNetworkConfig(key))?;
        Ok(Network::parse(kv.value())?)
    }

    /// Lists every entry under `<prefix>/subnets/`.
    pub async fn list(&mut self) -> Result<Listing, StoreError> {
        let prefix = self.subnets_prefix();
        let resp = timed(
            self.client
                .get(prefix.clone(), Some(GetOptions::new().with_prefix())),
        )
        .await?;
        let mut out = Listing {
            revision: resp
                .header()
                .map_or(0, etcd_client::ResponseHeader::revision),
            ..Listing::default()
        };
        for kv in resp.kvs() {
            let key = String::from_utf8_lossy(kv.key());
            let suffix = key.strip_prefix(prefix.as_str()).unwrap_or(&key);
            match parse_lease(suffix, kv.value()) {
                Ok(l) => out.leases.push(l),
                Err(e) => out.bad.push(e),
            }
        }
        Ok(out)
    }

    /// Leases a subnet for `attrs.public_ip`: takes over the lease that
    /// already carries this address (a restart), else `previous` when it
    /// is free, else a free one chosen at random (flannel's rule).
    pub async fn acquire(
        &mut self,
        net: &Network,
        attrs: &LeaseAttrs,
        previous: Option<Cidr>,
    ) -> Result<OwnLease, StoreError> {
        for attempt in 0..ACQUIRE_ATTEMPTS {
            let listing = self.list().await?;
            let random = random_u64(attempt);
            match choose(net, &listing.leases, attrs.public_ip, previous, random)? {
                Choice::Reuse(subnet) => return self.put_lease(subnet, attrs).await,
                Choice::Create(subnet) => {
                    if let Some(own) = self.create_lease(subnet, attrs).await? {
                        return Ok(own);
                    }
                }
            }
        }
        Err(StoreError::Contended(ACQUIRE_ATTEMPTS))
    }

    /// Creates `subnet`'s lease if nobody holds it; `None` when someone
    /// else was first.
    pub async fn create_lease(
        &mut self,
        subnet: Cidr,
        attrs: &LeaseAttrs,
    ) -> Result<Option<OwnLease>, StoreError> {
        let (lease_id, ttl) = self.grant().await?;
        let key = self.lease_key(subnet);
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key,
                attrs.to_json(),
                Some(PutOptions::new().with_lease(lease_id)),
            )]);
        let resp = timed(self.client.txn(txn)).await?;
        if resp.succeeded() {
            return Ok(Some(OwnLease {
                subnet,
                lease_id,
                ttl,
            }));
        }
        // Lost the race: the etcd lease is not needed.
        let _ = timed(self.client.lease_revoke(lease_id)).await;
        Ok(None)
    }

    /// Writes (or rewrites, to renew) `subnet`'s lease under a fresh etcd
    /// lease.
    pub async fn put_lease(
        &mut self,
        subnet: Cidr,
        attrs: &LeaseAttrs,
    ) -> Result<OwnLease, StoreError> {
        let (lease_id, ttl) = self.grant().await?;
        timed(self.client.put(
            self.lease_key(subnet),
            attrs.to_json(),
            Some(PutOptions::new().with_lease(lease_id)),
        ))
        .await?;
        Ok(OwnLease {
            subnet,
            lease_id,
            ttl,
        })
    }

    /// Who holds `subnet` now: its lease's `PublicIP`, if any.
    pub async fn holder(&mut self, subnet: Cidr) -> Result<Option<Ipv4Addr>, StoreError> {
        let resp = timed(self.client.get(self.lease_key(subnet), None)).await?;
        Ok(resp.kvs().first().and_then(|kv| {
            serde_json::from_slice::<LeaseAttrs>(kv.value())
                .ok()
                .map(|a| a.public_ip)
        }))
    }

    /// Watches `<prefix>/subnets/` from `revision` on, with the previous
    /// value of deleted keys.
    pub async fn watch(&mut self, revision: i64) -> Result<WatchStream, StoreError> {
        let opts = WatchOptions::new()
            .with_prefix()
            .with_prev_key()
            .with_start_revision(revision);
        timed(self.client.watch(self.subnets_prefix(), Some(opts))).await
    }

    async fn grant(&mut self) -> Result<(i64, Duration), StoreError> {
        let ttl = i64::try_from(LEASE_TTL.as_secs()).unwrap_or(i64::MAX);
        let g = timed(self.client.lease_grant(ttl, None)).await?;
        Ok((
            g.id(),
            Duration::from_secs(u64::try_from(g.ttl()).unwrap_or(0)),
        ))
    }
}

/// Runs an etcd request with the request timeout.
async fn timed<T>(
    f: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(REQUEST_TIMEOUT, f)
        .await
        .map_err(|_| StoreError::Timeout(REQUEST_TIMEOUT))?
        .map_err(StoreError::Etcd)
}

/// A random number for the subnet choice (a fresh hasher seed each call).
fn random_u64(salt: usize) -> u64 {
    use std::hash::BuildHasher;
    foldhash::fast::RandomState::default().hash_one((salt, std::time::SystemTime::now()))
}
