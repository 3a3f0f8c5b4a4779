//! weftd, the weft node router daemon: `weftd --config FILE`,
//! `weftd --check-config FILE`, `weftd --version`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;
use weft_router::bgp_feed::{self, BgpFeed};
use weft_router::config::Config;
use weft_router::daemon::{self, DaemonError, RunOptions};
use weft_router::feed::{self, FeedItem};
use weft_router::mode::Mode;
use weft_router::netlink::RouteSync;
use weft_router::route_table::RouteTable;
use weft_router::service::NodeService;
use weft_router::shutdown;

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
    // No colour codes into journald or log files.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    match run(&path) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weftd: {e:#}");
            ExitCode::FAILURE
        }
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
    match Config::parse(&text) {
        Ok(_) => {
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
    let cfg = Config::parse(&text).with_context(|| format!("config {}", path.display()))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting tokio runtime")?;
    rt.block_on(async move {
        let (feed, updates) = feed::route_channel();
        // One batch, however many static routes: nothing reads the feed
        // before the daemon runs.
        feed.send(FeedItem::Routes(RouteTable::static_updates(&cfg)))
            .await
            .context("queueing static routes")?;
        let signals = shutdown::StopSignals::install().context("installing signal handlers")?;
        // Graceful restart (host-gw): routes stay in the kernel across a
        // SIGTERM; finding ours there at start means we are restarting.
        let gr = cfg.bgp.as_ref().is_some_and(|b| b.graceful_restart)
            && cfg.dataplane.mode == Mode::HostGw;
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
        let opts = RunOptions {
            keep_routes_on_stop: gr,
            stale_hold: restarting.then(|| bgp_feed::stale_hold(&cfg)).flatten(),
            readiness: None,
            programmed: Some(programmed),
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
        };
        // `feed` stays alive for the daemon's lifetime (BGP gets clones).
        let res = daemon::run_with(cfg, updates, stop, opts).await;
        service.stop(gr && res.is_ok()).await;
        drop(feed);
        res.map_err(|e| match e {
            DaemonError::Config(c) => {
                anyhow::Error::new(c).context(format!("config {}", path.display()))
            }
            e => anyhow::Error::new(e),
        })
    })
}
