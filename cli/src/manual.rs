//! `quorum man-pages DIR`: roff man pages made from the clap definitions,
//! one for `quorum` and one per command (`quorum-submit.1`...), so the
//! manual never says other than `--help`.

use std::path::Path;

use anyhow::Context as _;
use clap::CommandFactory as _;

use crate::Cli;

/// Writes `quorum.1` and `quorum-COMMAND.1` for every command into `dir`;
/// returns how many were written.
pub fn write_man_pages(dir: &Path) -> anyhow::Result<usize> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let command = Cli::command();
    let mut pages = vec![("quorum".to_owned(), command.clone())];
    for sub in command.get_subcommands().filter(|sub| sub.get_name() != "help") {
        pages.push((format!("quorum-{}", sub.get_name()), sub.clone()));
    }
    for (name, page) in &pages {
        let mut roff = Vec::new();
        clap_mangen::Man::new(page.clone()).title(name.clone()).render(&mut roff).context("rendering a man page")?;
        let path = dir.join(format!("{name}.1"));
        std::fs::write(&path, roff).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(pages.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_per_command_with_its_options() {
        let dir = tempfile::tempdir().expect("temp dir");
        let written = write_man_pages(dir.path()).expect("man pages");
        let n_commands = Cli::command().get_subcommands().filter(|sub| sub.get_name() != "help").count();
        assert_eq!(written, n_commands + 1);
        let main = std::fs::read_to_string(dir.path().join("quorum.1")).expect("quorum.1");
        assert!(main.starts_with(".ie") || main.contains(".TH quorum"), "{main}");
        assert!(main.contains("Exit codes"), "the exit codes are documented");
        let wait = std::fs::read_to_string(dir.path().join("quorum-wait.1")).expect("quorum-wait.1");
        assert!(wait.contains("timeout") && wait.contains(".TH quorum-wait"), "{wait}");
    }
}
