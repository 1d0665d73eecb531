//! The `qswarm` binary: parse arguments (clap) and hand over to `qswarm::cli`.
use clap::Parser;

fn main() {
    let cli = qswarm::cli::Cli::parse();
    std::process::exit(qswarm::cli::run(cli));
}
