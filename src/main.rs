//! The `qswarm` binary: parse arguments (clap) and hand over to `qswarm::cli`. A usage error is printed as one
//! line on stderr with exit code 2 (DESIGN.md §1); `--help` and `--version` print as usual.
use clap::error::ErrorKind;
use clap::Parser;

fn main() {
    match qswarm::cli::Cli::try_parse() {
        Ok(cli) => std::process::exit(qswarm::cli::run(cli)),
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) =>
        {
            e.exit()
        }
        Err(e) => {
            let text = e.render().to_string();
            let line: Vec<&str> = text
                .lines()
                .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with("tip:"))
                .collect();
            eprintln!("{} (see qswarm --help)", line.join(" "));
            std::process::exit(2);
        }
    }
}
