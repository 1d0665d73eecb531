//! The `qswarm create` and `qswarm info` commands end to end (the built binary): output, determinism, piece
//! hashes, and the one-line errors with exit code 2 for every kind of bad input.

use qswarm::metainfo::bencode::OwnedValue as V;
use qswarm::metainfo::Metainfo;
use sha1::{Digest, Sha1};
use std::path::Path;
use std::process::{Command, Output};

fn qswarm(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_qswarm"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run qswarm")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Bad input: exit code 2 and exactly one line on stderr, no panic.
fn assert_bad_input(o: &Output, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "one line expected: {err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains(needle), "{err:?} should mention {needle:?}");
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect()
}

fn line_value(out: &str, key: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

#[test]
fn create_single_file_then_info() {
    let dir = tempfile::tempdir().unwrap();
    let content = data(100_000, 1);
    std::fs::write(dir.path().join("file.bin"), &content).unwrap();
    let o = qswarm(
        &[
            "create",
            "file.bin",
            "-o",
            "f.torrent",
            "--piece-length",
            "16K",
            "--comment",
            "hi",
        ],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stderr(&o),
        "",
        "no progress bar or noise when stderr is not a terminal"
    );
    let out = stdout(&o);
    let hash = line_value(&out, "infohash:");
    assert_eq!(hash.len(), 40, "{out}");
    assert_eq!(
        line_value(&out, "magnet:"),
        format!("magnet:?xt=urn:btih:{hash}&dn=file.bin")
    );

    let m = Metainfo::from_bytes(&std::fs::read(dir.path().join("f.torrent")).unwrap()).unwrap();
    assert_eq!(m.info_hash.to_hex(), hash);
    assert_eq!(m.piece_length, 16384);
    assert_eq!(m.comment.as_deref(), Some("hi"));
    let want: Vec<[u8; 20]> = content
        .chunks(16384)
        .map(|c| Sha1::digest(c).into())
        .collect();
    assert_eq!(m.pieces, want);

    let info = qswarm(&["info", "f.torrent"], dir.path());
    assert_eq!(info.status.code(), Some(0));
    let text = stdout(&info);
    assert_eq!(line_value(&text, "infohash:"), hash);
    assert_eq!(line_value(&text, "name:"), "file.bin");
    assert_eq!(line_value(&text, "pieces:"), "7");
    assert!(text.contains("100000 bytes"), "{text}");

    let json = qswarm(&["info", "--json", "f.torrent"], dir.path());
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["infohash"], hash);
    assert_eq!(v["total_length"], 100_000);
    assert_eq!(v["piece_length"], 16384);
    assert_eq!(v["pieces"], 7);
    assert_eq!(v["files"][0]["path"], "file.bin");
    assert_eq!(
        v["magnet"],
        format!("magnet:?xt=urn:btih:{hash}&dn=file.bin")
    );
}

#[test]
fn create_directory_is_sorted_and_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("share");
    for (p, n) in [
        ("z.bin", 5000),
        ("a/y.txt", 300),
        ("a/b/x.bin", 70_000),
        ("B.bin", 1),
        ("empty", 0),
    ] {
        let path = root.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data(n, n as u8)).unwrap();
    }
    // Default output name: <name>.torrent in the current directory.
    let first = qswarm(&["create", "share"], dir.path());
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let bytes = std::fs::read(dir.path().join("share.torrent")).unwrap();
    let again = qswarm(&["create", "share", "-o", "again.torrent"], dir.path());
    assert_eq!(again.status.code(), Some(0));
    assert_eq!(
        std::fs::read(dir.path().join("again.torrent")).unwrap(),
        bytes,
        "same data, same torrent bytes"
    );

    let m = Metainfo::from_bytes(&bytes).unwrap();
    assert!(m.multi_file);
    assert_eq!(m.name, "share");
    let paths: Vec<String> = m.files.iter().map(|f| f.display_path()).collect();
    assert_eq!(paths, ["B.bin", "a/b/x.bin", "a/y.txt", "empty", "z.bin"]);
    assert_eq!(m.total_length, 75_301);
    // Pieces run across file boundaries in that order.
    let mut all = Vec::new();
    for p in &paths {
        all.extend(std::fs::read(root.join(p)).unwrap());
    }
    let want: Vec<[u8; 20]> = all
        .chunks(m.piece_length as usize)
        .map(|c| Sha1::digest(c).into())
        .collect();
    assert_eq!(m.pieces, want);
}

#[test]
fn default_piece_length_gives_1000_to_2000_pieces_above_the_minimum() {
    let dir = tempfile::tempdir().unwrap();
    let f = std::fs::File::create(dir.path().join("sparse")).unwrap();
    f.set_len(100 << 20).unwrap(); // 100 MiB of holes: cheap to hash
    let o = qswarm(&["create", "sparse", "-o", "s.torrent"], dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let m = Metainfo::from_bytes(&std::fs::read(dir.path().join("s.torrent")).unwrap()).unwrap();
    assert_eq!(m.piece_length, 64 * 1024);
    assert_eq!(m.piece_count(), 1600);
}

#[test]
fn create_rejects_bad_input_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), b"data").unwrap();
    std::fs::create_dir(dir.path().join("emptydir")).unwrap();
    assert_bad_input(&qswarm(&["create", "missing"], dir.path()), "missing");
    assert_bad_input(&qswarm(&["create", "emptydir"], dir.path()), "no files");
    assert_bad_input(
        &qswarm(&["create", "f", "--piece-length", "1000"], dir.path()),
        "piece length",
    );
    assert_bad_input(
        &qswarm(&["create", "f", "--piece-length", "12Q"], dir.path()),
        "12Q",
    );
    std::fs::write(dir.path().join("zero"), b"").unwrap();
    assert_bad_input(&qswarm(&["create", "zero"], dir.path()), "no data");
    // Not a regular file or directory (a FIFO would block a naive reader forever).
    if Command::new("mkfifo")
        .arg(dir.path().join("fifo"))
        .status()
        .is_ok_and(|s| s.success())
    {
        assert_bad_input(
            &qswarm(&["create", "fifo"], dir.path()),
            "neither a file nor a directory",
        );
    }
    // Unreadable file (only meaningful when not running as root, which can read anything).
    let locked = dir.path().join("locked");
    std::fs::write(&locked, b"secret").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    if std::fs::File::open(&locked).is_err() {
        assert_bad_input(&qswarm(&["create", "locked"], dir.path()), "locked");
    } else {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED the unreadable-file case: running as root"
        );
    }
}

/// A torrent whose info dictionary is `info`.
fn write_torrent(dir: &Path, name: &str, info: Vec<(&str, V)>) {
    std::fs::write(dir.join(name), V::dict([("info", V::dict(info))]).encode()).unwrap();
}

fn files(paths: &[&[&str]]) -> V {
    V::List(
        paths
            .iter()
            .map(|p| {
                V::dict([
                    ("length", V::Int(10)),
                    ("path", V::List(p.iter().map(V::bytes).collect())),
                ])
            })
            .collect(),
    )
}

#[test]
fn info_rejects_bad_torrents_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let base = |files_v: V| {
        vec![
            ("name", V::bytes("n")),
            ("piece length", V::Int(16384)),
            ("pieces", V::Bytes(vec![0; 20])),
            ("files", files_v),
        ]
    };
    write_torrent(
        d,
        "dotdot.torrent",
        base(files(&[&["..", "etc", "passwd"]])),
    );
    write_torrent(d, "dot.torrent", base(files(&[&[".", "x"]])));
    write_torrent(d, "abs.torrent", base(files(&[&["/etc/passwd"]])));
    write_torrent(d, "emptycomp.torrent", base(files(&[&["a", ""]])));
    write_torrent(d, "sep.torrent", base(files(&[&["a/../../b"]])));
    write_torrent(d, "dup.torrent", base(files(&[&["a"], &["a"]])));
    let mut pl = base(files(&[&["a"]]));
    pl[1] = ("piece length", V::Int(1000));
    write_torrent(d, "pl.torrent", pl);
    let mut pieces = base(files(&[&["a"]]));
    pieces[2] = ("pieces", V::Bytes(vec![0; 40]));
    write_torrent(d, "pieces.torrent", pieces);
    let mut neg = base(files(&[&["a"]]));
    neg[3] = ("length", V::Int(-10));
    write_torrent(d, "neg.torrent", neg);
    std::fs::write(d.join("junk.torrent"), b"<html>not a torrent</html>").unwrap();
    let good = V::dict([("info", V::dict(base(files(&[&["a"]]))))]).encode();
    std::fs::write(d.join("trunc.torrent"), &good[..good.len() - 3]).unwrap();
    let big = std::fs::File::create(d.join("big.torrent")).unwrap();
    big.set_len(64 << 20).unwrap();

    for (file, needle) in [
        ("dotdot.torrent", "unsafe file path"),
        ("dot.torrent", "unsafe file path"),
        ("abs.torrent", "unsafe file path"),
        ("emptycomp.torrent", "empty path component"),
        ("sep.torrent", "separator"),
        ("dup.torrent", "appears twice"),
        ("pl.torrent", "piece length 1000"),
        ("pieces.torrent", "piece hashes"),
        ("neg.torrent", "negative length"),
        ("junk.torrent", "not a torrent file"),
        ("trunc.torrent", "not a torrent file"),
        ("big.torrent", "too large"),
        ("nonexistent.torrent", "cannot read"),
    ] {
        for args in [&["info", file][..], &["info", "--json", file]] {
            let o = qswarm(args, d);
            assert_bad_input(&o, needle);
            assert!(o.stdout.is_empty(), "{file}: nothing on stdout");
        }
    }
}

#[test]
fn usage_errors_and_demo() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(qswarm(&["info"], dir.path()).status.code(), Some(2));
    assert_eq!(qswarm(&["frobnicate"], dir.path()).status.code(), Some(2));
    // The demo itself runs in tests/e2e_demo.rs; a bad leecher count is bad input.
    let demo = qswarm(&["demo", "--leechers", "0"], dir.path());
    assert_eq!(demo.status.code(), Some(2));
    assert!(stderr(&demo).contains("--leechers"), "{}", stderr(&demo));
}

#[test]
fn a_file_truncated_while_hashing_is_one_clean_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shrinking");
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(16 << 30).unwrap(); // 16 GiB of holes: seconds of hashing, no disk used
    let child = Command::new(env!("CARGO_BIN_EXE_qswarm"))
        .args(["create", "shrinking", "-o", "s.torrent"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    f.set_len(1 << 20).unwrap();
    let o = child.wait_with_output().unwrap();
    // Either the length check before mapping a piece or the SIGBUS handler catches it: one line, exit code 2.
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("truncated") || err.contains("shorter than expected"),
        "{err}"
    );
    assert!(!dir.path().join("s.torrent").exists());
}
