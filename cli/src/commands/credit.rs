//! `quorum credit`: the credit leaderboard, credit per volunteer account.

use std::io::Write;
use std::num::NonZeroUsize;

use super::Context;
use crate::{credit, output};

pub async fn run(ctx: &Context, top: Option<NonZeroUsize>) -> anyhow::Result<()> {
    let hosts = ctx.hosts().await?;
    let mut volunteers = credit::leaderboard(&hosts);
    if let Some(top) = top {
        volunteers.truncate(top.get());
    }
    let mut out = super::stdout();
    if ctx.json {
        output::write_json(
            &mut out,
            &output::Volunteers { volunteers: volunteers.iter().map(output::Volunteer::from).collect() },
        )?;
    } else if volunteers.is_empty() {
        writeln!(out, "no volunteers")?;
    } else {
        output::credit_table(&volunteers).write(&mut out)?;
    }
    out.flush()?;
    Ok(())
}
