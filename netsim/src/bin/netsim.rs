//! The `netsim` command line.

fn main() -> anyhow::Result<()> {
    eprintln!("netsim: not yet implemented");
    Ok(())
}
