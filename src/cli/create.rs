//! `qswarm create <PATH>`: find the files (a directory gives a multi-file torrent in sorted order), hash them in
//! parallel (`storage::hasher`), write the `.torrent` and print its infohash and magnet link. A progress bar is
//! drawn on stderr only when stderr is a terminal.

use super::bad_input;
use crate::metainfo::create::{default_piece_length, info_bytes, plan, torrent_bytes, Layout};
use crate::metainfo::Metainfo;
use crate::storage::hasher::{hash_pieces_mapped, HashError};
use anyhow::Context;
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The file or directory to share.
    pub path: PathBuf,
    /// Where to write the torrent [default: <NAME>.torrent in the current directory].
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Piece length in bytes (a power of two, 16K to 128M; K/M suffixes allowed) [default: 1,000–2,000 pieces].
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    pub piece_length: Option<u64>,
    /// A comment stored in the torrent.
    #[arg(long, value_name = "TEXT")]
    pub comment: Option<String>,
    /// Set the BEP 27 private flag.
    #[arg(long)]
    pub private: bool,
}

/// Bytes with an optional K/M/G suffix (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (digits, mul) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (&t[..i], 1u64 << 10),
        Some((i, 'm' | 'M')) => (&t[..i], 1 << 20),
        Some((i, 'g' | 'G')) => (&t[..i], 1 << 30),
        _ => (t, 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mul))
        .ok_or_else(|| format!("`{s}` is not a size in bytes (e.g. 262144 or 256K)"))
}

/// The files a PATH holds: the torrent name, its layout and the (path on disk, length) list in torrent order.
pub struct Source {
    pub name: String,
    pub layout: Layout,
    pub files: Vec<(PathBuf, u64)>,
}

/// Look at PATH: one file, or every regular file under a directory (sorted by path, symlinks to files followed,
/// symlinked directories skipped). Each file is opened once to check it is readable before any hashing.
pub fn scan(path: &Path) -> anyhow::Result<Source> {
    let meta = std::fs::metadata(path)
        .map_err(|e| bad_input(format!("cannot read {}: {e}", path.display())))?;
    let full = std::fs::canonicalize(path)
        .map_err(|e| bad_input(format!("cannot read {}: {e}", path.display())))?;
    let name = full
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| {
            bad_input(format!(
                "{} has no usable (UTF-8) file name",
                path.display()
            ))
        })?
        .to_string();
    if meta.is_file() {
        check_readable(path)?;
        return Ok(Source {
            name,
            layout: Layout::SingleFile { length: meta.len() },
            files: vec![(path.into(), meta.len())],
        });
    }
    if !meta.is_dir() {
        return Err(bad_input(format!(
            "{} is neither a file nor a directory",
            path.display()
        )));
    }
    let mut found = Vec::new();
    walk(path, &mut Vec::new(), &mut found)?;
    found.sort_by(|a, b| a.0.cmp(&b.0));
    if found.is_empty() {
        return Err(bad_input(format!(
            "{} holds no files to share",
            path.display()
        )));
    }
    for (_, p, _) in &found {
        check_readable(p)?;
    }
    let layout = Layout::MultiFile {
        files: found.iter().map(|(c, _, l)| (c.clone(), *l)).collect(),
    };
    let files = found.into_iter().map(|(_, p, l)| (p, l)).collect();
    Ok(Source {
        name,
        layout,
        files,
    })
}

type Found = (Vec<String>, PathBuf, u64);

fn walk(dir: &Path, prefix: &mut Vec<String>, out: &mut Vec<Found>) -> anyhow::Result<()> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| bad_input(format!("cannot read {}: {e}", dir.display())))?;
    for entry in entries {
        let entry = entry.map_err(|e| bad_input(format!("cannot read {}: {e}", dir.display())))?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            return Err(bad_input(format!(
                "{} is not a UTF-8 file name; rename it",
                path.display()
            )));
        };
        let ft = entry
            .file_type()
            .map_err(|e| bad_input(format!("cannot read {}: {e}", path.display())))?;
        let meta = if ft.is_symlink() {
            match std::fs::metadata(&path) {
                Ok(m) if m.is_file() => m,
                _ => {
                    eprintln!(
                        "warning: skipping {} (a symlink to a directory or to nothing)",
                        path.display()
                    );
                    continue;
                }
            }
        } else {
            entry
                .metadata()
                .map_err(|e| bad_input(format!("cannot read {}: {e}", path.display())))?
        };
        prefix.push(name);
        if meta.is_dir() {
            walk(&path, prefix, out)?;
        } else if meta.is_file() {
            out.push((prefix.clone(), path, meta.len()));
        } else {
            eprintln!("warning: skipping {} (not a regular file)", path.display());
        }
        prefix.pop();
    }
    Ok(())
}

fn check_readable(path: &Path) -> anyhow::Result<()> {
    std::fs::File::open(path)
        .map(drop)
        .map_err(|e| bad_input(format!("cannot read {}: {e}", path.display())))
}

/// Hash a source into a validated torrent (`qswarm seed <PATH>` can reuse this without writing a file).
pub fn build(
    src: &Source,
    piece_length: Option<u64>,
    comment: Option<&str>,
    private: bool,
) -> anyhow::Result<Metainfo> {
    let total = src
        .layout
        .total_length()
        .ok_or_else(|| bad_input("the total size of the files overflows"))?;
    let piece_length = piece_length.unwrap_or_else(|| default_piece_length(total));
    plan(&src.name, &src.layout, piece_length).map_err(bad_input)?;
    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(
                "hashing {bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("static template is valid"),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    exit_cleanly_on_sigbus();
    // SAFETY: a file truncated while mapped raises SIGBUS, which the handler above turns into a clean exit.
    let pieces = unsafe { hash_pieces_mapped(&src.files, piece_length, 0, &mut |n| bar.inc(n)) }
        .map_err(|e| match e {
            HashError::Io { .. } | HashError::Shrunk { .. } => bad_input(e),
            other => anyhow::Error::new(other),
        })?;
    bar.finish_and_clear();
    let info =
        info_bytes(&src.name, &src.layout, piece_length, &pieces, private).map_err(bad_input)?;
    let bytes = torrent_bytes(
        &info,
        comment,
        Some(concat!("qswarm ", env!("CARGO_PKG_VERSION"))),
    );
    Metainfo::from_bytes(&bytes).context("internal error: the torrent just built does not parse")
}

/// Hashing reads through memory maps; if a file is truncated meanwhile the kernel sends SIGBUS. Turn that into
/// one line on stderr and exit code 2 (the input changed under us) instead of a "Bus error" crash.
fn exit_cleanly_on_sigbus() {
    extern "C" fn on_sigbus(_: libc::c_int) {
        const MSG: &[u8] =
            b"error: a file was truncated while it was being hashed; run qswarm create again\n";
        // SAFETY: write(2) and _exit(2) are async-signal-safe.
        unsafe {
            libc::write(2, MSG.as_ptr().cast(), MSG.len());
            libc::_exit(2);
        }
    }
    // SAFETY: installs a handler that only calls async-signal-safe functions.
    unsafe {
        libc::signal(
            libc::SIGBUS,
            on_sigbus as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
    }
}

pub fn run(args: CreateArgs) -> anyhow::Result<()> {
    let src = scan(&args.path)?;
    let m = build(
        &src,
        args.piece_length,
        args.comment.as_deref(),
        args.private,
    )?;
    let out = args
        .output
        .unwrap_or_else(|| PathBuf::from(format!("{}.torrent", m.name)));
    std::fs::write(&out, m.to_torrent_bytes())
        .with_context(|| format!("cannot write {}", out.display()))?;
    let n = m.files.len();
    println!(
        "created {}: {} file{}, {} ({} bytes), {} pieces of {}",
        out.display(),
        n,
        if n == 1 { "" } else { "s" },
        HumanBytes(m.total_length),
        m.total_length,
        m.piece_count(),
        HumanBytes(m.piece_length)
    );
    println!("infohash: {}", m.info_hash);
    println!("magnet: {}", m.magnet());
    Ok(())
}
