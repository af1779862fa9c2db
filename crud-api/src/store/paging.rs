//! Keyset paging of store lists: each list fetches one row past the page to learn whether
//! another page follows.

/// Trims the look-ahead row fetched to learn whether another page follows, and returns the
/// cursor of that next page.
pub(crate) fn next_cursor<T>(
    items: &mut Vec<T>,
    limit: i64,
    cursor_of: impl Fn(&T) -> String,
) -> Option<String> {
    let limit = usize::try_from(limit).unwrap_or(0);
    if items.len() > limit {
        items.truncate(limit);
        items.last().map(cursor_of)
    } else {
        None
    }
}
