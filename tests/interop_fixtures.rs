//! Torrents written by mktorrent, transmission-create and libtorrent (committed in fixtures/, made by
//! fixtures/make.sh) parse, and `qswarm info` reports the infohash those tools report (fixtures/expected.txt).
//! `qswarm create` over the same data with the same piece length gives the same piece hashes, and for
//! mktorrent (which writes no extra info keys) the very same infohash. Needs no external tool.

use qswarm::metainfo::Metainfo;
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// (torrent file, infohash per transmission-show or "-", infohash per libtorrent).
fn expected() -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(fixtures().join("expected.txt")).unwrap();
    let rows: Vec<_> = text
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].to_string(), f[1].to_string(), f[2].to_string())
        })
        .collect();
    assert_eq!(
        rows.len(),
        7,
        "fixtures/expected.txt lists the 7 fixture torrents"
    );
    rows
}

fn qswarm(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_qswarm"))
        .args(args)
        .current_dir(fixtures())
        .output()
        .unwrap()
}

#[test]
fn qswarm_info_reports_the_tools_infohash() {
    for (file, by_transmission, by_libtorrent) in expected() {
        let o = qswarm(&["info", "--json", &file]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{file}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["infohash"], by_libtorrent, "{file} (libtorrent)");
        if by_transmission != "-" {
            assert_eq!(v["infohash"], by_transmission, "{file} (transmission-show)");
        }
        let name = if file.contains("single") {
            "single.bin"
        } else {
            "multi"
        };
        assert_eq!(v["name"], name, "{file}");
        let total = if name == "single.bin" {
            100_000
        } else {
            107_619
        };
        if !file.contains("hybrid") {
            assert_eq!(v["total_length"], total, "{file}");
        }
    }
}

#[test]
fn hybrid_torrent_keeps_padding_files() {
    let bytes = std::fs::read(fixtures().join("libtorrent-hybrid.torrent")).unwrap();
    let m = Metainfo::from_bytes(&bytes).unwrap();
    let real: Vec<String> = m
        .files
        .iter()
        .filter(|f| !f.padding)
        .map(|f| f.display_path())
        .collect();
    assert_eq!(real, ["a.bin", "sub/b.txt", "sub/deeper/c.bin", "z.bin"]);
    assert!(m.files.iter().any(|f| f.padding && f.path[0] == ".pad"));
    // Padding aligns every file to a piece boundary.
    let mut offset = 0;
    for f in &m.files {
        if !f.padding {
            assert_eq!(
                offset % m.piece_length,
                0,
                "{} starts on a piece boundary",
                f.display_path()
            );
        }
        offset += f.length;
    }
}

#[test]
fn qswarm_create_matches_the_tools_piece_hashes() {
    let out = tempfile::tempdir().unwrap();
    for (file, _, by_libtorrent) in expected() {
        if file.contains("hybrid") {
            continue; // its pieces include BEP 47 padding, which qswarm create does not write
        }
        let theirs = Metainfo::from_bytes(&std::fs::read(fixtures().join(&file)).unwrap()).unwrap();
        let src = if file.contains("single") {
            "data/single.bin"
        } else {
            "data/multi"
        };
        let ours_path = out.path().join(&file);
        let pl = theirs.piece_length.to_string();
        let o = qswarm(&[
            "create",
            src,
            "--piece-length",
            &pl,
            "-o",
            ours_path.to_str().unwrap(),
        ]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let ours = Metainfo::from_bytes(&std::fs::read(&ours_path).unwrap()).unwrap();
        if file == "libtorrent-multi.torrent" {
            // libtorrent lists a directory's files before its subdirectories; qswarm sorts whole paths. Same
            // files, other order, so other pieces.
            let mut sorted = theirs.files.clone();
            sorted.sort_by(|a, b| a.path.cmp(&b.path));
            assert_eq!(ours.files, sorted, "{file}: same files");
            continue;
        }
        assert_eq!(
            ours.files, theirs.files,
            "{file}: same files in the same order"
        );
        assert_eq!(ours.pieces, theirs.pieces, "{file}: same piece hashes");
        if file.starts_with("mktorrent") {
            assert_eq!(
                ours.raw_info, theirs.raw_info,
                "{file}: byte-identical info dictionary"
            );
            assert_eq!(ours.info_hash.to_hex(), by_libtorrent);
        }
    }
}
