//! `qswarm demo` as a user runs it, scaled down: a DHT node, a seeder and two leechers in one process on
//! 127.0.0.1; the summary table and the byte-for-byte check; no progress bars without a terminal.

use std::process::Command;

#[test]
fn small_demo_completes_with_identical_copies_and_no_bars() {
    let out = Command::new(env!("CARGO_BIN_EXE_qswarm"))
        .args(["demo", "--leechers", "2", "--size", "3M"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("2/2 copies byte-identical"), "{stdout}");
    for row in ["seeder", "leecher 1", "leecher 2"] {
        assert!(
            stdout.lines().any(|l| l.starts_with(row)),
            "{row}: {stdout}"
        );
    }
    assert!(
        !stderr.contains('['),
        "no bars without a terminal: {stderr}"
    );
}
