//! `pedvision manuals --out DIR` (hidden): the man pages (one per subcommand,
//! `clap_mangen`) and the shell completions (`clap_complete`), generated from the
//! same clap definitions as `--help`, so they cannot drift from it. `make install`
//! and the Debian package run it; users never need to.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, CommandFactory};
use clap_complete::Shell;

#[derive(Debug, Args)]
pub struct ManualsArgs {
    /// Folder to write man1/*.1 and completions/ (bash, zsh, fish) into.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

pub fn execute(args: ManualsArgs) -> anyhow::Result<()> {
    let cmd = super::Cli::command();
    let man = args.out.join("man1");
    std::fs::create_dir_all(&man).with_context(|| format!("creating {}", man.display()))?;
    let pages = man_pages(&cmd, "pedvision", &man)?;
    let completions = args.out.join("completions");
    std::fs::create_dir_all(&completions)
        .with_context(|| format!("creating {}", completions.display()))?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let path = clap_complete::generate_to(shell, &mut cmd.clone(), "pedvision", &completions)
            .with_context(|| format!("writing the {shell} completions"))?;
        out!("{}", path.display());
    }
    out!("{pages} man pages in {}", man.display());
    Ok(())
}

/// Writes `name`.1 for `cmd` and, recursively, NAME-SUB.1 for each visible
/// subcommand; returns how many pages were written.
fn man_pages(cmd: &clap::Command, name: &str, dir: &Path) -> anyhow::Result<usize> {
    let cmd = cmd
        .clone()
        .name(name.to_string())
        .bin_name(name.replace('-', " "));
    let path = dir.join(format!("{name}.1"));
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut page)
        .with_context(|| format!("rendering {name}.1"))?;
    std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
    let mut written = 1;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        written += man_pages(sub, &format!("{name}-{}", sub.get_name()), dir)?;
    }
    Ok(written)
}
