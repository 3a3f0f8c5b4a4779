//! weftd, the weft node router daemon.

fn main() -> anyhow::Result<()> {
    eprintln!("weftd: not yet implemented");
    Ok(())
}
