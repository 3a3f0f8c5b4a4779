//! The `dhcp` IPAM plugin binary; `dhcp daemon [flags]` runs its daemon.

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) != Some("daemon") {
        weft_cni::skel::run(&weft_cni::plugin::dhcp::Dhcp)
    }
    let config = weft_cni::dhcp::flags::parse(&args[2..]).map_err(anyhow::Error::msg)?;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(weft_cni::dhcp::daemon::run(config))?;
    Ok(())
}
