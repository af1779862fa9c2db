//! Field checks that collect every problem of a request into one 422.

use crate::error::{ApiError, FieldError};
use evd_protocol::room::validate_id;

/// Longest name or title: fits a heading.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest event description.
pub const MAX_DESCRIPTION_CHARS: usize = 10_000;
/// Longest poll question or option.
pub const MAX_POLL_TEXT_CHARS: usize = 500;
/// Most seats in one session.
pub const MAX_CAPACITY: i64 = 1_000_000;
/// Most words in a search.
pub const MAX_SEARCH_WORDS: usize = 16;
/// Longest search string.
pub const MAX_SEARCH_CHARS: usize = 200;

/// Collects field errors.
#[derive(Debug, Default)]
pub struct Check(Vec<FieldError>);

impl Check {
    /// Records a problem with `field` unless `ok`.
    pub fn that(&mut self, ok: bool, field: &str, message: impl Into<String>) -> &mut Self {
        if !ok {
            self.0.push(FieldError::new(field, message));
        }
        self
    }

    /// Text of 1 to `max` characters that is not only whitespace.
    pub fn text(&mut self, field: &str, value: &str, max: usize) -> &mut Self {
        let ok = !value.trim().is_empty() && value.chars().count() <= max;
        self.that(
            ok,
            field,
            format!("must be 1 to {max} characters, not all blank"),
        )
    }

    /// Text of at most `max` characters, possibly empty.
    pub fn text_up_to(&mut self, field: &str, value: &str, max: usize) -> &mut Self {
        self.that(
            value.chars().count() <= max,
            field,
            format!("must be at most {max} characters"),
        )
    }

    /// An id as tokens and rooms use them.
    pub fn id(&mut self, field: &str, value: &str) -> &mut Self {
        let err = validate_id(value).err();
        self.that(
            err.is_none(),
            field,
            err.map(|e| e.to_string()).unwrap_or_default(),
        )
    }

    /// A seat count.
    pub fn capacity(&mut self, field: &str, value: i64) -> &mut Self {
        self.that(
            (0..=MAX_CAPACITY).contains(&value),
            field,
            format!("must be between 0 and {MAX_CAPACITY}"),
        )
    }

    /// Ok, or a 422 listing every problem.
    pub fn finish(&mut self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(std::mem::take(&mut self.0)))
        }
    }
}

/// The words of a search string, as both backends' full-text search splits them.
pub fn search_words(q: &str) -> Result<Vec<String>, ApiError> {
    let words: Vec<String> = q
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    let mut check = Check::default();
    check
        .that(
            q.chars().count() <= MAX_SEARCH_CHARS,
            "q",
            format!("must be at most {MAX_SEARCH_CHARS} characters"),
        )
        .that(!words.is_empty(), "q", "must contain a word")
        .that(
            words.len() <= MAX_SEARCH_WORDS,
            "q",
            format!("must have at most {MAX_SEARCH_WORDS} words"),
        )
        .finish()?;
    Ok(words)
}
