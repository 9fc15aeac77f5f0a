//! `quorum hosts`: the volunteer hosts and their counters.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use super::Context;
use crate::output;

pub async fn run(ctx: &Context) -> anyhow::Result<()> {
    let hosts = ctx.hosts().await?;
    let mut out = super::stdout();
    if ctx.json {
        output::write_json(&mut out, &output::Hosts { hosts: hosts.iter().map(output::Host::from).collect() })?;
    } else if hosts.is_empty() {
        writeln!(out, "no hosts")?;
    } else {
        let now_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| i64::try_from(since.as_millis()).unwrap_or(i64::MAX));
        output::hosts_table(&hosts, now_unix_ms).write(&mut out)?;
    }
    out.flush()?;
    Ok(())
}
