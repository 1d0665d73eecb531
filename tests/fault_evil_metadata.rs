//! A torrent whose paths would escape the output directory, arriving the dangerous way (issue 8): `qswarm fetch
//! <infohash>` gets the info dictionary by metadata exchange from a peer (the in-memory test peer of
//! `tests/support`), it hashes to the infohash asked for — an attacker chose both — and names `../evil`. The
//! fetch refuses it and writes nothing: the output directory stays empty and nothing appears beside it.

mod e2e_common;
mod support;
use bytes::Bytes;
use e2e_common::*;
use qswarm::metainfo::InfoHash;
use support::{quiet_config, Node};

fn evil_info(path: &[&str]) -> Vec<u8> {
    let mut p = String::from("l");
    for c in path {
        p.push_str(&format!("{}:{c}", c.len()));
    }
    p.push('e');
    let mut t =
        format!("d5:filesld6:lengthi5e4:path{p}ee4:name3:dir12:piece lengthi16384e6:pieces20:")
            .into_bytes();
    t.extend_from_slice(&[7u8; 20]);
    t.push(b'e');
    t
}

#[test]
fn metadata_from_a_peer_with_escaping_paths_is_refused_before_writing() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (i, path) in [&["..", "evil"][..], &["..", "..", "tmp", "pwned"]]
        .iter()
        .enumerate()
    {
        let info = Bytes::from(evil_info(path));
        let ih = InfoHash::of(&info);
        let node = rt.block_on(async { Node::start(ih, 9, Some(info), false, quiet_config()) });
        let out = dir.path().join(format!("case{i}")).join("out");
        std::fs::create_dir_all(&out).unwrap();
        let mut f = Proc::spawn(&[
            "fetch",
            &ih.to_hex(),
            "-o",
            out.to_str().unwrap(),
            "--json",
            "--no-dht",
            "--listen",
            "127.0.0.1:0",
            "--peer",
            &node.addr.to_string(),
            "--timeout",
            "5",
        ]);
        f.listening();
        let status = f.wait_exit(20.0);
        let stderr = f.stderr.lock().unwrap().clone();
        println!(
            "path {path:?}: exit {:?}, events {:?}, stderr: {stderr}",
            status.code(),
            f.seen
        );
        assert!(!status.success(), "the fetch must not succeed");
        assert!(
            f.find("metadata").is_none(),
            "the metadata must not be accepted"
        );
        assert!(!stderr.contains("panick"));
        let errors = f.seen.iter().filter(|v| v["event"] == "error").count();
        assert_eq!(errors, 1, "one `error` event");
        assert_eq!(stderr.lines().count(), 1, "one error line: {stderr}");
        assert!(stderr.contains("unsafe file path"), "{stderr}");
        let left: Vec<_> = walk(out.parent().unwrap());
        assert_eq!(
            left,
            vec![out.clone()],
            "nothing written but the (empty) output directory"
        );
        drop(node);
    }
}

fn walk(p: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(p).unwrap().flatten() {
        v.push(e.path());
        if e.path().is_dir() {
            v.extend(walk(&e.path()));
        }
    }
    v.sort();
    v
}
