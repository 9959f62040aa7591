//! Text from the network, made safe to print on a terminal.
//!
//! A text or a name from a peer may carry control characters (an escape
//! sequence that rewrites the screen, a carriage return that hides what came
//! before) or invisible format characters (a right-to-left override that
//! makes `alice` read as `ecila`). Printed for a human, every such character
//! is shown escaped instead, Rust-style (`\n`, `\u{1b}`, `\u{202e}`);
//! everything else, other scripts included, is printed as it is. JSON output
//! needs none of this: its encoder escapes control characters itself, and
//! format characters are data to a program.

use std::borrow::Cow;

/// `text` with every control and invisible format character escaped.
pub fn escaped(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if needs_escape(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Control characters (C0, DEL, C1) and the format characters that change
/// how the text around them is shown: bidirectional marks, embeddings,
/// overrides and isolates; zero-width spaces and joiners; the byte-order
/// mark; the soft hyphen.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{00ad}' | '\u{061c}' | '\u{180e}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}' | '\u{feff}' | '\u{fff9}'..='\u{fffb}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_escapes_and_bidi_overrides_are_shown_escaped() {
        // Given a text that would clear the screen and one that reverses itself,
        // then both print as visible escapes.
        assert_eq!(escaped("hi\u{1b}[2J there"), "hi\\u{1b}[2J there");
        assert_eq!(escaped("pay \u{202e}321\u{202c} now"), "pay \\u{202e}321\\u{202c} now");
        assert_eq!(escaped("two\nlines\r"), "two\\nlines\\r");
    }

    #[test]
    fn ordinary_text_in_any_script_is_printed_as_it_is() {
        for text in ["hello", "你好，世界", "Zoë's café", "مرحبا", "🙂 ok"] {
            assert!(matches!(escaped(text), Cow::Borrowed(_)), "{text}");
        }
    }
}
