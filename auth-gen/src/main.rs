//! Thin entry point; the commands arrive with their own modules.
fn main() -> anyhow::Result<()> {
    Ok(())
}
