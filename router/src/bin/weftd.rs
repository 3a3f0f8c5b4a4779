//! weftd, the weft node router daemon: `weftd --config FILE`,
//! `weftd --check-config FILE`, `weftd --version`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;
use weft_router::bgp_feed::{self, BgpFeed};
use weft_router::cidr::Cidr;
use weft_router::config::{Config, LeaseDefaults, LogConfig, LogFormat, SubnetConfig};
use weft_router::control::server::ControlServer;
use weft_router::control::status::StatusSource;
use weft_router::daemon::{self, DaemonError, RunOptions};
use weft_router::dataplane::wireguard::key_book::KeyBook;
use weft_router::dataplane::wireguard::key_file;
use weft_router::exporter::{self, http::MetricsServer, http::Phase};
use weft_router::feed::RouteFeed;
use weft_router::feed::{self, FeedItem};
use weft_router::mode::Mode;
use weft_router::netlink::RouteSync;
use weft_router::reload::{self, Reloader};
use weft_router::route_table::RouteTable;
use weft_router::service::NodeService;
use weft_router::shutdown;
use weft_router::snapshot::RouterQueries;
use weft_router::subnet::{self, LeaseAttrs, keeper::LeaseKeeper};

/// weft's node router: routes to other nodes' pods (host-gw, vxlan, udp,
/// ipip), BGP, the node's CNI configuration and pod masquerade.
#[derive(Debug, Parser)]
#[command(name = "weftd", version)]
struct Args {
    /// Run with this config file.
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "check_config",
        conflicts_with = "check_config"
    )]
    config: Option<PathBuf>,
    /// Validate this config file and exit: 0 when valid, 1 with every
    /// problem (and its field path) on stderr otherwise.
    #[arg(long, value_name = "FILE")]
    check_config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(path) = args.check_config {
        return check_config(&path);
    }
    let Some(path) = args.config else {
        return ExitCode::from(2);
    };
    // Logging first, from the file's [log] alone: errors in the rest of
    // the file are then reported through it.
    let log = std::fs::read_to_string(&path)
        .map(|t| LogConfig::of_document(&t))
        .unwrap_or_default();
    init_logging(&log);
    match run(&path) {
        Ok(()) => ExitCode::SUCCESS,
        // A JSON log stays one object per line, the failure included.
        Err(e) if log.format == LogFormat::Json => {
            tracing::error!(error = format!("{e:#}"), "weftd failed");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("weftd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Sets up the global subscriber: `RUST_LOG` when set, else `[log] level`;
/// `[log] format` text or one JSON object per line.
fn init_logging(log: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match log.format {
        LogFormat::Json => fmt.json().init(),
        // No colour codes into journald or log files.
        LogFormat::Text => fmt
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
}

/// `--check-config`: parse and validate only (nothing touches the kernel),
/// one line per problem, like `bird -p`.
fn check_config(path: &Path) -> ExitCode {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{}: cannot read: {e}", path.display());
            return ExitCode::FAILURE;
        }
    };
    // A config whose pod range is leased from etcd is checked without
    // etcd: everything but the values the lease and network config give.
    let checked = match Config::subnet_of(&text) {
        Ok(Some(_)) => Config::check_leased(&text),
        Ok(None) => Config::parse(&text).map(|_| ()),
        Err(e) => Err(e),
    };
    match checked {
        Ok(()) => {
            println!("{}: ok", path.display());
            ExitCode::SUCCESS
        }
        Err(errs) => {
            for e in &errs.0 {
                eprintln!("{}: {e}", path.display());
            }
            ExitCode::FAILURE
        }
    }
}

fn run(path: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config {}", path.display()))?;
    let subnet = Config::subnet_of(&text).with_context(|| format!("config {}", path.display()))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting tokio runtime")?;
    // Before any series is registered.
    let prom = exporter::install();
    rt.block_on(async move {
        let (feed, updates) = feed::route_channel();
        let mut signals = shutdown::StopSignals::install().context("installing signal handlers")?;
        // SIGHUP reloads (and must not end weftd, even during start-up).
        let (reload_tx, reload_rx) = reload::reload_channel();
        let _sighup = reload::forward_sighup(reload_tx.clone()).context("installing SIGHUP")?;
        // With [subnet], the pod range is leased from etcd first; a stop
        // signal while etcd is unreachable ends the wait. The metrics
        // endpoint serves meanwhile, `/readyz` saying what it waits for.
        let (phase, phase_rx) = watch::channel(Phase::Starting("starting".to_owned()));
        let early_metrics = match (&subnet, &prom) {
            (Some(_), Some(h)) => {
                let mc = Config::metrics_of(&text)
                    .with_context(|| format!("config {}", path.display()))?;
                serve_metrics(mc.endpoint(), phase_rx.clone(), h.clone())?
            }
            _ => None,
        };
        let progress = |why: String| {
            phase.send_replace(Phase::Starting(why));
        };
        let (cfg, keeper, load) = match subnet {
            None => (
                Config::parse(&text).with_context(|| format!("config {}", path.display()))?,
                None,
                reload::file_loader(path.to_owned()),
            ),
            Some(sc) => {
                let leased = tokio::select! {
                    r = leased_config(&text, &sc, feed.clone(), &progress) => r,
                    sig = signals.wait() => {
                        tracing::info!(?sig, "stopping before a subnet was leased");
                        return Ok(());
                    }
                };
                let (cfg, keeper) = leased.with_context(|| format!("config {}", path.display()))?;
                let load =
                    leased_loader(path.to_owned(), keeper.net.lease_defaults(), cfg.pod_cidr);
                (cfg, Some(keeper), load)
            }
        };
        // One batch, however many static routes: nothing reads the feed
        // before the daemon runs.
        feed.send(FeedItem::Routes(RouteTable::static_updates(&cfg)))
            .await
            .context("queueing static routes")?;
        let (keeper_stop, keeper_stopped) = tokio::sync::watch::channel(false);
        let keeper_keys = keeper.as_ref().and_then(|k| k.wireguard_keys.clone());
        let keeper = keeper.map(|k| tokio::spawn(k.run(keeper_stopped)));
        // Graceful restart: routes (and in the overlay modes the persistent
        // TUN they point to) stay in the kernel across a SIGTERM; finding
        // ours there at start means we are restarting.
        let gr = cfg.graceful_restart();
        let restarting = gr
            && !RouteSync::new()
                .context("opening netlink")?
                .dump_own()
                .await
                .context("dumping routes")?
                .is_empty();
        let bgp = BgpFeed::start(&cfg, feed.clone(), restarting)
            .await
            .context("starting BGP")?;
        // Masquerade, CNI config, systemd notify (see `service`).
        let (service, programmed) = NodeService::start(&cfg);
        // The operator's endpoints: control socket and metrics.
        let (queries, query_rx) = RouterQueries::channel();
        let source = StatusSource::new(&cfg, queries, service.files())
            .with_bgp(bgp.as_ref().map(|b| b.handle().clone()))
            .with_metrics(prom.clone())
            .with_reload(Some(reload_tx))
            .with_wireguard_key(wireguard_public_key(&cfg)?);
        let control = start_control(&cfg, &source)?;
        phase.send_replace(Phase::Running(Box::new(source)));
        let metrics = match (early_metrics, prom) {
            (Some(m), _) => Some(m),
            (None, Some(h)) => serve_metrics(cfg.metrics.endpoint(), phase_rx, h)?,
            (None, None) => None,
        };
        let opts = RunOptions {
            keep_routes_on_stop: gr,
            stale_hold: restarting.then(|| bgp_feed::stale_hold(&cfg)).flatten(),
            readiness: None,
            programmed: Some(programmed),
            queries: Some(query_rx),
            wireguard_keys: keeper_keys,
            reload: Some(Reloader {
                requests: reload_rx,
                load,
                bgp: bgp.as_ref().map(|b| b.handle().clone()),
            }),
        };
        let stop = async {
            let sig = signals.wait().await;
            tracing::info!(?sig, "stopping");
            service.stopping();
            // Sessions end before the routes go, so peers see a clean stop
            // (or, with graceful restart, keep our routes).
            if let Some(b) = bgp {
                b.stop(true).await;
            }
            // The lease stays in etcd: a restart takes it over.
            let _ = keeper_stop.send(true);
        };
        // `feed` stays alive for the daemon's lifetime (BGP gets clones).
        let res = daemon::run_with(cfg, updates, stop, opts).await;
        if let Some(c) = control {
            c.stop();
        }
        if let Some(m) = metrics {
            m.stop();
        }
        service.stop(gr && res.is_ok()).await;
        drop(feed);
        if let Some(k) = keeper {
            let _ = k.await;
        }
        res.map_err(|e| match e {
            DaemonError::Config(c) => {
                anyhow::Error::new(c).context(format!("config {}", path.display()))
            }
            e => anyhow::Error::new(e),
        })
    })
}

/// This node's WireGuard public key for `weft status` (wireguard mode):
/// the key file's, made now when absent, as the dataplane does; a file
/// that must be refused stops weftd here, naming it.
fn wireguard_public_key(cfg: &Config) -> anyhow::Result<Option<String>> {
    if cfg.dataplane.mode != Mode::Wireguard {
        return Ok(None);
    }
    let key = key_file::load_or_create(&cfg.dataplane.wireguard_private_key_file)?;
    Ok(Some(key.public.to_string()))
}

/// Serves the control socket. A socket set in the config that cannot be
/// served stops weftd; the default one is only a warning (routing matters
/// more than the CLI).
fn start_control(cfg: &Config, source: &StatusSource) -> anyhow::Result<Option<ControlServer>> {
    let Some((path, explicit)) = cfg.control.endpoint() else {
        return Ok(None);
    };
    let gid = cfg.control.gid().map_err(|e| anyhow::anyhow!("{e}"))?;
    match ControlServer::start(&path, gid, source.clone()) {
        Ok(c) => Ok(Some(c)),
        Err(e) if explicit => Err(anyhow::Error::new(e).context("control.socket")),
        Err(e) => {
            tracing::warn!(error = %e, "no control socket: `weft` cannot reach this weftd");
            Ok(None)
        }
    }
}

/// Serves `/metrics`, `/healthz`, `/readyz` on `endpoint` (the address and
/// whether the config set it); like [`start_control`], a failure is fatal
/// only for an address set in the config.
fn serve_metrics(
    endpoint: Option<(std::net::SocketAddr, bool)>,
    phase: watch::Receiver<Phase>,
    handle: metrics_exporter_prometheus::PrometheusHandle,
) -> anyhow::Result<Option<MetricsServer>> {
    let Some((addr, explicit)) = endpoint else {
        return Ok(None);
    };
    match MetricsServer::start_phased(addr, phase, handle) {
        Ok(m) => Ok(Some(m)),
        Err(e) if explicit => Err(anyhow::Error::new(e).context(format!("metrics.listen {addr}"))),
        Err(e) => {
            tracing::warn!(%addr, error = %e, "no metrics endpoint");
            Ok(None)
        }
    }
}

/// A reload loader for a config whose pod range is leased: the lease
/// stays, the file is validated with it.
fn leased_loader(path: PathBuf, net: LeaseDefaults, pod_cidr: Cidr) -> reload::ConfigLoader {
    let plain = reload::file_loader(path.clone());
    Box::new(move || {
        // Read errors come out as the plain loader reports them.
        match std::fs::read_to_string(&path) {
            Ok(text) => Config::parse_leased(&text, &net, pod_cidr),
            Err(_) => plain(),
        }
    })
}

/// Reads flannel's network config from etcd, leases this node's subnet
/// and returns the config it completes, with the keeper that renews the
/// lease and feeds the other nodes' leases as routes.
async fn leased_config(
    text: &str,
    sc: &SubnetConfig,
    feed: RouteFeed,
    progress: subnet::start::Progress<'_>,
) -> anyhow::Result<(Config, LeaseKeeper)> {
    let (store, net) = subnet::start::network(sc, progress).await?;
    // Everything but the range is known before the lease: validate it
    // with the pool's first subnet, then lease.
    let first = Cidr::new(IpAddr::V4(net.subnet_min), net.subnet_len)
        .context("network config subnet length")?;
    let cfg = Config::parse_leased(text, &net.lease_defaults(), first)?;
    let IpAddr::V4(public_ip) = cfg.underlay_ip else {
        anyhow::bail!("underlay_ip: [subnet] leases need an IPv4 address");
    };
    let mut attrs = LeaseAttrs::own(
        public_ip,
        cfg.dataplane.mode,
        cfg.dataplane.vxlan_vni,
        cfg.vtep_mac(),
    );
    let dp = &cfg.dataplane;
    let wireguard_keys = if dp.mode == Mode::Wireguard {
        // The lease publishes the public key (flannel's wireguard format).
        let key = key_file::load_or_create(&dp.wireguard_private_key_file)?;
        attrs = attrs.with_wireguard(&key.public, dp.wireguard_port);
        Some(Arc::new(KeyBook::default()))
    } else {
        None
    };
    let wireguard_port = dp.wireguard_port;
    let previous = std::fs::read_to_string(&cfg.cni.subnet_env)
        .ok()
        .and_then(|env| subnet::previous_subnet(&env));
    let own = subnet::start::lease(&store, &net, &attrs, previous, progress).await?;
    let cfg = Config::parse_leased(text, &net.lease_defaults(), own.subnet)?;
    Ok((
        cfg,
        LeaseKeeper {
            store,
            net,
            own,
            attrs,
            feed,
            wireguard_keys,
            wireguard_port,
        },
    ))
}
