//! `qswarm info <FILE.torrent> [--json]`: validate a torrent file and print what it holds: name, sizes, pieces,
//! files, infohash and magnet link. Any rejection is bad input (exit code 2).

use super::bad_input;
use crate::metainfo::torrent::MAX_TORRENT_FILE_SIZE;
use crate::metainfo::Metainfo;
use indicatif::HumanBytes;
use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    /// The .torrent file to inspect.
    pub file: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Read and validate a `.torrent` file, refusing files over the size limit before reading them whole.
pub fn load(path: &Path) -> anyhow::Result<Metainfo> {
    let file = std::fs::File::open(path)
        .map_err(|e| bad_input(format!("cannot read {}: {e}", path.display())))?;
    let mut bytes = Vec::new();
    file.take(MAX_TORRENT_FILE_SIZE as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| bad_input(format!("cannot read {}: {e}", path.display())))?;
    if bytes.len() > MAX_TORRENT_FILE_SIZE {
        return Err(bad_input(format!(
            "{}: over {} bytes, too large for a torrent file",
            path.display(),
            MAX_TORRENT_FILE_SIZE
        )));
    }
    Metainfo::from_bytes(&bytes).map_err(|e| bad_input(format!("{}: {e}", path.display())))
}

pub fn run(args: InfoArgs) -> anyhow::Result<()> {
    let m = load(&args.file)?;
    if args.json {
        let files: Vec<_> = m
            .files
            .iter()
            .map(|f| serde_json::json!({"path": f.display_path(), "length": f.length, "padding": f.padding}))
            .collect();
        let v = serde_json::json!({
            "name": m.name,
            "infohash": m.info_hash.to_hex(),
            "magnet": m.magnet().to_string(),
            "total_length": m.total_length,
            "piece_length": m.piece_length,
            "pieces": m.piece_count(),
            "multi_file": m.multi_file,
            "private": m.private,
            "comment": m.comment,
            "created_by": m.created_by,
            "files": files,
        });
        println!("{v}");
        return Ok(());
    }
    println!("name:         {}", m.name);
    println!("infohash:     {}", m.info_hash);
    println!("magnet:       {}", m.magnet());
    println!(
        "total size:   {} ({} bytes)",
        HumanBytes(m.total_length),
        m.total_length
    );
    println!(
        "piece length: {} ({} bytes)",
        HumanBytes(m.piece_length),
        m.piece_length
    );
    println!("pieces:       {}", m.piece_count());
    println!("private:      {}", if m.private { "yes" } else { "no" });
    if let Some(c) = &m.comment {
        println!("comment:      {c}");
    }
    if let Some(c) = &m.created_by {
        println!("created by:   {c}");
    }
    println!("files:        {}", m.files.len());
    for f in &m.files {
        let pad = if f.padding { " (padding)" } else { "" };
        println!("  {:>15}  {}{pad}", f.length, f.display_path());
    }
    Ok(())
}
