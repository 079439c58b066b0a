//! Text from outside the system: what an edge accepts in names, ids and free text before it is
//! stored or published. Postgres refuses a NUL in `text` (SQLSTATE 22021), so a NUL that got
//! past an edge was accepted and then dead-lettered by the allocator, and the buyer's ticket
//! silently missed the draw; other control characters forge log lines and break receipts and
//! CSV files. Every edge checks with these, and refuses with the field's name.

use std::fmt;

/// Why a text was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextError {
    Empty,
    TooLong {
        max_chars: usize,
        chars: usize,
    },
    /// A character that has no place in this text, with its position (in characters).
    Forbidden {
        character: char,
        position: usize,
    },
}

impl fmt::Display for TextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TextError::Empty => f.write_str("must not be empty"),
            TextError::TooLong { max_chars, chars } => {
                write!(f, "must be at most {max_chars} characters, has {chars}")
            }
            TextError::Forbidden {
                character,
                position,
            } => write!(
                f,
                "must not contain the control character U+{:04X} (at character {position})",
                u32::from(*character)
            ),
        }
    }
}

impl std::error::Error for TextError {}

/// Characters no text of the platform may hold: C0 and C1 controls other than tab, line feed
/// and carriage return, DEL, and the bidirectional overrides that make text read differently
/// from what it holds.
fn never(c: char) -> bool {
    (c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
        || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// What a one-line text (a name, an id, an e-mail address) may not hold besides those: line
/// breaks and tabs of any kind.
fn not_on_one_line(c: char) -> bool {
    never(c) || matches!(c, '\t' | '\n' | '\r' | '\u{2028}' | '\u{2029}' | '\u{0085}')
}

fn check(value: &str, max_chars: usize, forbidden: fn(char) -> bool) -> Result<(), TextError> {
    let mut chars = 0;
    for (position, character) in value.chars().enumerate() {
        if forbidden(character) {
            return Err(TextError::Forbidden {
                character,
                position,
            });
        }
        chars += 1;
    }
    if chars > max_chars {
        return Err(TextError::TooLong { max_chars, chars });
    }
    Ok(())
}

/// A non-empty one-line text of at most `max_chars` characters.
pub fn line(value: &str, max_chars: usize) -> Result<(), TextError> {
    if value.trim().is_empty() {
        return Err(TextError::Empty);
    }
    check(value, max_chars, not_on_one_line)
}

/// Free text of at most `max_chars` characters: line breaks and tabs allowed, other control
/// characters not. May be empty.
pub fn prose(value: &str, max_chars: usize) -> Result<(), TextError> {
    check(value, max_chars, never)
}

/// Any text the platform stores at all (the floor every JSON string meets): no NUL, no
/// control characters but tab and line breaks, at most `max_chars` characters.
pub fn storable(value: &str, max_chars: usize) -> Result<(), TextError> {
    check(value, max_chars, never)
}

/// `value` made safe inside HTML text and quoted attribute values (`&`, `<`, `>`, `"` and `'`
/// escaped): the one escaper of every page and e-mail the platform writes.
pub fn html(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn html_text_cannot_open_a_tag_or_close_an_attribute() {
        assert_eq!(
            html(r#"<b a="x" b='y'>&"#),
            "&lt;b a=&quot;x&quot; b=&#39;y&#39;&gt;&amp;"
        );
    }

    #[test]
    fn names_refuse_nul_control_characters_and_line_breaks() {
        assert!(line("Jean-Luc Picard", 100).is_ok());
        assert!(line("Zoë Ørsted 李", 100).is_ok());
        for bad in [
            "a\0b",
            "a\nb",
            "a\tb",
            "a\u{1b}[31m",
            "a\u{7f}",
            "a\u{85}b",
            "a\u{202E}b",
            "a\u{2028}b",
        ] {
            assert!(
                matches!(
                    line(bad, 100),
                    Err(TextError::Forbidden { position: 1, .. })
                ),
                "{bad:?}"
            );
        }
        assert_eq!(line("   ", 10), Err(TextError::Empty));
        assert_eq!(
            line("abcdef", 5),
            Err(TextError::TooLong {
                max_chars: 5,
                chars: 6
            })
        );
    }

    #[test]
    fn prose_keeps_its_line_breaks_but_no_other_controls() {
        assert!(prose("line one\nline two\r\n\tindented", 100).is_ok());
        assert!(prose("", 10).is_ok());
        assert!(prose("bad\0", 100).is_err());
        assert_eq!(
            prose("x\u{7}", 100).unwrap_err().to_string(),
            "must not contain the control character U+0007 (at character 1)"
        );
    }

    proptest! {
        #[test]
        fn what_a_line_accepts_postgres_can_store(s in "\\PC*") {
            if line(&s, 10_000).is_ok() {
                prop_assert!(!s.contains('\0'));
                prop_assert!(!s.contains('\n'));
            }
        }
    }
}
