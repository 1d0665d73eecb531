//! The DHT simulation of issue 3 at any size:
//! `cargo run --release --example dht_sim -- [NODES] [INFOHASHES] [SEED] [LOSS]` (defaults 10000, 1000, 1,
//! 0.01). Prints success rate, lookup times (to the first peer and to the lookup's end) in median-RTT units,
//! queries per lookup and whether issue 3's targets are met, before and after killing 30% of the nodes. Used by `bench/dht_sim.sh`.
use qswarm::sim::dht_scenario::{run_scenario, Scenario};

fn main() {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<u64> = raw.iter().take(3).filter_map(|a| a.parse().ok()).collect();
    let loss: Option<f64> = raw.get(3).and_then(|a| a.parse().ok());
    let nodes = args.first().copied().unwrap_or(10_000) as usize;
    let infohashes = args.get(1).copied().unwrap_or(1_000) as usize;
    let seed = args.get(2).copied().unwrap_or(1);
    let started = std::time::Instant::now();
    let mut scenario = Scenario::new(nodes, infohashes, seed);
    if let Some(loss) = loss {
        scenario.links.loss = loss;
    }
    let report = run_scenario(&scenario);
    println!("{report}");
    println!("wall time {:.1} s", started.elapsed().as_secs_f64());
}
