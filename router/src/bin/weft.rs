//! `weft`, the operator's view of the weftd on this node: `weft status`,
//! `weft peers`, `weft routes`, `weft reload`, each with `--json`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use weft_router::config::DEFAULT_SOCKET;
use weft_router::control::client::query;
use weft_router::control::render;
use weft_router::control::schema::{Command, NodeStatus, PeerReport, ReloadReport, RouteReport};

/// Ask the weftd on this node about its state, over its control socket.
#[derive(Debug, Parser)]
#[command(name = "weft", version)]
struct Args {
    /// weftd's control socket (`[control] socket`).
    #[arg(long, global = true, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Print the answer as JSON (the schema in weft-router's README).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Sub,
}

#[derive(Debug, Subcommand)]
enum Sub {
    /// Node, mode, MTU, offloads, pod CIDRs, uptime, readiness and BGP peers.
    Status,
    /// BGP peers: state, since, prefixes received/accepted/advertised, last error.
    Peers,
    /// Routed pod ranges: next hop, mode, source and tunnel counters.
    Routes,
    /// Re-read weftd's config file and apply it.
    Reload,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let (command, timeout) = match args.command {
        Sub::Status => (Command::Status, Duration::from_secs(15)),
        Sub::Peers => (Command::Peers, Duration::from_secs(15)),
        Sub::Routes => (Command::Routes, Duration::from_secs(60)),
        Sub::Reload => (Command::Reload, Duration::from_secs(70)),
    };
    let value = match query(&args.socket, command, timeout) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("weft: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.json {
        match serde_json::to_string_pretty(&value) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("weft: {e}");
                return ExitCode::FAILURE;
            }
        }
        return ExitCode::SUCCESS;
    }
    let text = match command {
        Command::Status => serde_json::from_value::<NodeStatus>(value).map(|s| render::status(&s)),
        Command::Peers => {
            serde_json::from_value::<Vec<PeerReport>>(value).map(|p| render::peers(&p))
        }
        Command::Routes => {
            serde_json::from_value::<Vec<RouteReport>>(value).map(|r| render::routes(&r))
        }
        Command::Reload => {
            serde_json::from_value::<ReloadReport>(value).map(|r| render::reload(&r))
        }
    };
    match text {
        Ok(t) => {
            print!("{t}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("weft: weftd sent an answer this weft cannot read: {e}");
            ExitCode::FAILURE
        }
    }
}
