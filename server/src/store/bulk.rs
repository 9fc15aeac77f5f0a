//! Helpers for set-based statements: id lists and multi-row `VALUES`, built
//! with sqlx's `QueryBuilder` so that the placeholders suit any backend.
//!
//! Statements whose text depends on the number of rows are run with
//! `persistent(false)`, so they do not crowd the fixed statements out of the
//! connection's prepared-statement cache.

use sqlx::{QueryBuilder, Sqlite};

/// Most rows (or ids) per statement: well under SQLite's limit of 32,766
/// bound parameters with a dozen columns per row.
pub(super) const CHUNK: usize = 500;

/// Appends `(?, ?, ...)` with one bound value per id.
pub(super) fn push_list(query: &mut QueryBuilder<Sqlite>, ids: &[i64]) {
    query.push("(");
    let mut separated = query.separated(", ");
    for id in ids {
        separated.push_bind(*id);
    }
    separated.push_unseparated(")");
}
