//! `qswarm demo`: a whole swarm on loopback in one process. Not built yet: it lands with the end-to-end work
//! (issue 6); until then it says so and exits 1.

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Number of leechers.
    #[arg(long, default_value_t = 3)]
    pub leechers: usize,
    /// Size of the shared file in bytes.
    #[arg(long)]
    pub size: Option<u64>,
}

pub fn run(_args: DemoArgs) -> anyhow::Result<()> {
    anyhow::bail!(
        "the demo is not yet available: it lands with the end-to-end swarm; meanwhile try `qswarm create` and `qswarm info`"
    )
}
