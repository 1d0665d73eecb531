//! Command-line front end: the clap command tree, one file per command, and the mapping of failures to one
//! clear line on stderr plus the exit codes of DESIGN.md §1 (2 = bad usage or input, 1 = run-time failure).

pub mod create;
pub mod demo;
pub mod info;

use clap::{Parser, Subcommand};
use std::fmt;

pub mod dht;
pub mod events;
pub mod fetch;
pub mod net_opts;
pub mod progress;
pub mod seed;

/// qswarm: swarming file sharing over QUIC, peers found through a BEP 5 DHT.
#[derive(Debug, Parser)]
#[command(name = "qswarm", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    // Each command's `Args` struct and `run` live in its own file (src/cli/<command>.rs).
    // Variants are added as the commands land.
    /// Make a .torrent from a file or a directory; prints the infohash and magnet link.
    Create(create::CreateArgs),
    /// Show what a .torrent file holds (name, sizes, files, infohash, magnet).
    Info(info::InfoArgs),
    /// Seed a .torrent (or a file or directory, hashed in memory): announce it in the DHT and serve peers.
    Seed(seed::SeedArgs),
    /// Download by infohash, magnet link or .torrent: peers from the DHT, --peer or the magnet.
    Fetch(fetch::FetchArgs),
    /// A whole swarm on loopback in one process: a DHT node, a seeder and N leechers, with a summary.
    Demo(demo::DemoArgs),
    /// Run a standalone DHT node (a bootstrap node for others).
    Dht(dht::DhtArgs),
}

/// An error caused by what the user gave us (bad torrent, bad infohash, missing path): exit code 2.
#[derive(Debug)]
pub struct BadInput(pub String);

impl fmt::Display for BadInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadInput {}

/// Wrap any displayable error as bad input (exit code 2).
pub fn bad_input(e: impl fmt::Display) -> anyhow::Error {
    anyhow::Error::new(BadInput(e.to_string()))
}

/// Run a parsed command line; returns the process exit code after printing any error as one line.
pub fn run(cli: Cli) -> i32 {
    let result: anyhow::Result<()> = match cli.command {
        Command::Create(args) => create::run(args),
        Command::Info(args) => info::run(args),
        Command::Seed(args) => seed::run(args),
        Command::Fetch(args) => fetch::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Dht(args) => dht::run(args),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<BadInput>().is_some() {
                2
            } else {
                1
            }
        }
    }
}
