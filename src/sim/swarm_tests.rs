//! Swarm simulation runs: the reduced issue-5 scenario with its assertions (CI) and the full one (ignored;
//! `bench/swarm_sim.sh` runs it in release and prints the figures).

use std::time::Duration;

use super::swarm::{run, SwarmReport, SwarmScenario};

fn summary(name: &str, s: &SwarmScenario, r: &SwarmReport) -> String {
    if std::env::var_os("SWARM_SIM_TRACE").is_some() {
        let cap = s.seed_upload + s.leecher_upload * (s.leechers - s.free_riders) as f64;
        let util: Vec<String> = r
            .timeline
            .iter()
            .map(|b| format!("{:.0}", *b as f64 * 100.0 / cap))
            .collect();
        let mut done: Vec<f64> = r
            .completion
            .iter()
            .flatten()
            .map(|d| d.as_secs_f64())
            .collect();
        done.sort_by(f64::total_cmp);
        println!(
            "{name}: upload utilisation % per second: {}",
            util.join(" ")
        );
        println!(
            "{name}: leecher uplink idle s (nobody interested, none unchoked, no requests): {:?}",
            r.idle
        );
        let mib = |v: &[u64]| {
            v.iter()
                .map(|b| format!("{:.1}", *b as f64 / 1048576.0))
                .collect::<Vec<_>>()
        };
        println!(
            "{name}: MiB to free riders from contributors (optimistic, other): {:?}",
            mib(&r.fr_sources)
        );
        println!("{name}: MiB from seed per leecher: {:?}", mib(&r.from_seed));
        println!("{name}: MiB uploaded per node: {:?}", mib(&r.uploaded));
        let unsorted: Vec<String> = r
            .completion
            .iter()
            .map(|c| c.map_or("-".into(), |d| format!("{:.1}", d.as_secs_f64())))
            .collect();
        println!("{name}: completion per leecher: {unsorted:?}");
        println!(
            "{name}: completions: {:?}",
            done.iter().map(|d| format!("{d:.1}")).collect::<Vec<_>>()
        );
    }
    let t_min = s.t_min();
    let all = r.all_done().map_or(f64::INFINITY, |d| d.as_secs_f64());
    format!(
        "{name}: leechers={} free_riders={} F={} MiB piece={} KiB u_s={:.1} MB/s u_i={:.1} MB/s | all done {:.2} s, \
         T_min {:.2} s, ratio {:.3} | median contributors {:.2} s, median free riders {:.2} s, last contributor \
         {:.2} s | seed uploaded {:.1} MiB, failed pieces {}, bans {}, events {}",
        s.leechers,
        s.free_riders,
        s.file_len >> 20,
        s.piece_len >> 10,
        s.seed_upload / 1e6,
        s.leecher_upload / 1e6,
        all,
        t_min,
        all / t_min,
        r.median(false),
        r.median(true),
        r.max_contributor(),
        r.uploaded[0] as f64 / 1048576.0,
        r.pieces_failed,
        r.bans,
        r.events,
    )
}

/// Runs the pair (no free riders, then `free_riders` of them) and checks issue 5's targets.
fn check_targets(base: SwarmScenario, free_riders: usize, ratio_target: f64) {
    let r0 = run(&base);
    println!("{}", summary("no free riders", &base, &r0));
    let all0 = r0.all_done().expect("every leecher finishes").as_secs_f64();
    assert!(
        all0 <= ratio_target * base.t_min(),
        "{all0:.2} s > {ratio_target} × T_min {:.2} s",
        base.t_min()
    );
    let s1 = SwarmScenario {
        free_riders,
        ..base
    };
    let r1 = run(&s1);
    println!("{}", summary("with free riders", &s1, &r1));
    let (mc, mf) = (r1.median(false), r1.median(true));
    assert!(
        mf > mc,
        "free riders (median {mf:.2} s) must finish after contributors ({mc:.2} s)"
    );
    let last = r1.max_contributor();
    assert!(
        last <= 1.3 * all0,
        "last contributor {last:.2} s > 1.3 × {all0:.2} s"
    );
}

/// A smaller swarm with the full scenario's proportions (256 pieces, seed = 2 leechers' upload, 1 free rider in
/// 6) on the same time scale (file and rates scaled by 1/4): runs in a few seconds.
fn reduced() -> SwarmScenario {
    SwarmScenario {
        leechers: 24,
        file_len: 16 << 20,
        piece_len: 64 << 10,
        seed_upload: 1e6,
        leecher_upload: 0.5e6,
        check_invariants: true,
        ..SwarmScenario::issue5()
    }
}

#[test]
fn reduced_swarm_meets_issue5_targets() {
    check_targets(reduced(), 4, 1.2);
}

#[test]
fn corrupting_peers_are_banned_and_data_stays_correct() {
    let s = SwarmScenario {
        leechers: 6,
        corrupters: 2,
        file_len: 4 << 20,
        ..reduced()
    };
    let r = run(&s);
    println!("{}", summary("corrupters", &s, &r));
    assert!(
        r.all_done().is_some(),
        "honest leechers finish despite corrupt data: {r:?}"
    );
    assert!(r.pieces_failed > 0, "corrupt data was detected");
    assert!(r.bans >= 1, "corrupters got banned");
    assert_eq!(r.false_bans, 0, "no honest peer was banned");
}

#[test]
#[ignore = "full issue-5 scenario; run by bench/swarm_sim.sh in release"]
fn full_issue5_swarm() {
    let mut s = SwarmScenario::issue5();
    if let Ok(seed) = std::env::var("SWARM_SIM_SEED") {
        s.rng_seed = seed.parse().expect("SWARM_SIM_SEED is a number");
    }
    s.max_time = Duration::from_secs(900);
    check_targets(s, 5, 1.2);
}
