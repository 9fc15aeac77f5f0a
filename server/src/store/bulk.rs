//! Helpers for set-based statements: id lists and multi-row `VALUES`, built
//! with sqlx's `QueryBuilder` so that the placeholders suit any backend.
//!
//! Lists and `VALUES` are padded with `NULL`s to the next power of two
//! (`NULL` matches no id, neither in `IN (...)` nor in a join on `v.id`), so
//! that a statement comes in a few shapes, not one per row count: each shape
//! is prepared once and stays in the connection's statement cache instead of
//! being parsed again for every group of calls.

use super::backend::{QueryBuilder, Separated};

/// Most rows (or ids) per statement: well under SQLite's limit of 32,766
/// bound parameters with a dozen columns per row, padding included.
pub(super) const CHUNK: usize = 512;

/// How many entries a list of `n` takes once padded.
fn padded(n: usize) -> usize {
    n.next_power_of_two()
}

/// Appends `(?, ?, ...)` with one bound value per id, padded with `NULL`s.
pub(super) fn push_list(query: &mut QueryBuilder, ids: &[i64]) {
    query.push("(");
    let mut separated = query.separated(", ");
    for id in ids {
        separated.push_bind(*id);
    }
    for _ in ids.len()..padded(ids.len()) {
        separated.push("NULL");
    }
    separated.push_unseparated(")");
}

/// Appends `VALUES (...), (...)` with one row per item (`push` binds its
/// `columns` values), padded with rows of `NULL`s.
pub(super) fn push_values<T>(
    query: &mut QueryBuilder,
    items: &[T],
    columns: usize,
    mut push: impl FnMut(Separated<'_>, &T),
) {
    query.push_values(items, &mut push);
    let nulls = vec!["NULL"; columns].join(", ");
    for _ in items.len()..padded(items.len()) {
        query.push(", (");
        query.push(&nulls);
        query.push(")");
    }
}
