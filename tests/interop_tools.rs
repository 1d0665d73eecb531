//! A torrent `qswarm create` writes is accepted by the real tools: transmission-show prints its infohash,
//! libtorrent's `torrent_info` loads it with the same infohash, and libtorrent checking the original data finds
//! every piece valid (and one corrupted byte makes exactly one piece fail). Each test skips, saying why, when its
//! tool is not installed (`.ci/run` installs them).

use std::path::{Path, PathBuf};
use std::process::Command;

const PYTHON: &str = "/usr/bin/python3";

/// Say why a test is skipped, on the real stderr (libtest captures `println!`/`eprintln!` of passing tests).
fn skip(why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED: {why}");
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

fn have_libtorrent() -> bool {
    Command::new(PYTHON)
        .args(["-c", "import libtorrent"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Deterministic test data: a directory with a few files (one empty, one spanning pieces) and a single file.
fn make_data(dir: &Path) -> (PathBuf, PathBuf) {
    let share = dir.join("share");
    for (p, n) in [
        ("one.bin", 100_000usize),
        ("nested/two.bin", 33_333),
        ("nested/empty", 0),
        ("three.txt", 77),
    ] {
        let path = share.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let bytes: Vec<u8> = (0..n).map(|i| ((i * 7919) >> 3) as u8 ^ n as u8).collect();
        std::fs::write(path, bytes).unwrap();
    }
    let single = dir.join("single.bin");
    std::fs::write(
        &single,
        (0..300_000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>(),
    )
    .unwrap();
    (share, single)
}

/// Run `qswarm create SRC -o OUT --piece-length 16K` and return the infohash it printed.
fn create(src: &Path, out: &Path) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_qswarm"))
        .args([
            "create",
            src.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--piece-length",
            "16K",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8(o.stdout).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("infohash: "))
        .unwrap()
        .to_string()
}

#[test]
fn transmission_show_reads_qswarm_torrents() {
    if !on_path("transmission-show") {
        skip("transmission-show is not installed (Debian package transmission-cli)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (share, single) = make_data(dir.path());
    for src in [share, single] {
        let t = dir.path().join("t.torrent");
        let hash = create(&src, &t);
        let o = Command::new("transmission-show").arg(&t).output().unwrap();
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            text.lines().any(|l| l.trim() == format!("Hash: {hash}")),
            "{text}"
        );
    }
}

/// Run tests/interop/lt_check.py; returns (exit code, stdout).
fn lt_check(torrent: &Path, save_path: &Path) -> (Option<i32>, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/lt_check.py");
    let o = Command::new(PYTHON)
        .arg(script)
        .arg(torrent)
        .arg(save_path)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    (o.status.code(), text)
}

#[test]
fn libtorrent_loads_qswarm_torrents_and_finds_every_piece_valid() {
    if !have_libtorrent() {
        skip(&format!(
            "{PYTHON} cannot import libtorrent (Debian package python3-libtorrent)"
        ));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (share, single) = make_data(dir.path());
    for src in [&share, &single] {
        let t = dir.path().join("t.torrent");
        let hash = create(src, &t);
        let (code, out) = lt_check(&t, dir.path());
        assert!(out.contains(&format!("infohash {hash}")), "{out}");
        let total = std::fs::metadata(src).map(|m| m.is_file()).unwrap();
        assert_eq!(
            code,
            Some(0),
            "{} ({}): {out}",
            src.display(),
            if total { "file" } else { "dir" }
        );
    }
    // Corrupt one byte in the middle of the single file: exactly one piece must fail the check.
    let t = dir.path().join("single.torrent");
    create(&single, &t);
    let mut bytes = std::fs::read(&single).unwrap();
    bytes[150_000] ^= 0xff;
    std::fs::write(&single, bytes).unwrap();
    let (code, out) = lt_check(&t, dir.path());
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("pieces 18 19"), "{out}");
}
