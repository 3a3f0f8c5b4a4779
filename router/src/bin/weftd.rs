//! weftd, the weft node router daemon: `weftd --config FILE`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use tracing_subscriber::EnvFilter;
use weft_router::bgp_feed::{self, BgpFeed};
use weft_router::config::Config;
use weft_router::daemon::{self, DaemonError, RunOptions};
use weft_router::feed::{self, FeedItem};
use weft_router::mode::Mode;
use weft_router::netlink::RouteSync;
use weft_router::route_table::RouteTable;
use weft_router::shutdown;

fn usage() -> ExitCode {
    eprintln!("usage: weftd --config FILE");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let path = match (args.next().as_deref(), args.next(), args.next()) {
        (Some("--config"), Some(p), None) => PathBuf::from(p),
        _ => return usage(),
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
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

fn run(path: &PathBuf) -> anyhow::Result<()> {
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
        let opts = RunOptions {
            keep_routes_on_stop: gr,
            stale_hold: restarting.then(|| bgp_feed::stale_hold(&cfg)).flatten(),
            readiness: None,
        };
        let stop = async {
            let sig = signals.wait().await;
            tracing::info!(?sig, "stopping");
            // Sessions end before the routes go, so peers see a clean stop
            // (or, with graceful restart, keep our routes).
            if let Some(b) = bgp {
                b.stop(true).await;
            }
        };
        // `feed` stays alive for the daemon's lifetime (BGP gets clones).
        let res = daemon::run_with(cfg, updates, stop, opts).await;
        drop(feed);
        res.map_err(|e| match e {
            DaemonError::Config(c) => {
                anyhow::Error::new(c).context(format!("config {}", path.display()))
            }
            e => anyhow::Error::new(e),
        })
    })
}
