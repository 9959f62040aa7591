//! File names from the network: [`check_name`] refuses every name that could
//! escape the receiver's directory, hide what a file is, or mean something
//! other than a plain file on any system a receiver runs.
//!
//! Refuse, never sanitise: a refused offer is visible to both users (the
//! sender sees the reason, the receiver sees nothing land), while a silent
//! rename leaves the receiver with a file whose name the sender never chose
//! and neither of them can see the change. It also keeps one rule for both
//! ends: the sender can check its own name before offering.
//!
//! The rules are the same on every receiver, Linux included, so a name that
//! Windows would misread is refused everywhere rather than accepted here and
//! refused (or worse, reinterpreted) there.
//!
//! Hidden names (`.bashrc`) are accepted: a leading dot is an ordinary name
//! on Windows and only hides a file in listings elsewhere; it cannot escape
//! the directory or disguise a file type. Only our own partial files'
//! prefix, `.punchline`, is reserved.

use std::fmt;

/// The longest name accepted, in bytes of UTF-8: the usual file-system limit
/// (ext4, btrfs, APFS; NAME_MAX in POSIX systems).
pub const MAX_NAME_BYTES: usize = 255;

/// The prefix of the receiver's partial and state files: no offered name may
/// collide with them.
pub const RESERVED_PREFIX: &str = ".punchline";

/// Which rule refused a name. Rules are checked in the order listed; the
/// first that applies is reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    /// The name is empty.
    Empty,
    /// The name is `.` or `..`, which name directories, not files.
    DotName,
    /// The name contains `/` or `\`, a path separator on some system.
    Separator,
    /// The name contains a control character (Unicode category Cc: C0
    /// controls, DEL, C1 controls), NUL and newlines included.
    Control(char),
    /// The name contains a bidirectional control (U+061C, U+200E, U+200F,
    /// U+202A–U+202E, U+2066–U+2069), which can make `exe.txt` display as
    /// `txt.exe`.
    Bidi(char),
    /// The name contains a character Windows forbids in names (`< > : " | ? *`);
    /// `:` would name an NTFS stream or, as in `C:x`, another drive.
    WindowsCharacter(char),
    /// The name is longer than [`MAX_NAME_BYTES`] bytes.
    TooLong(usize),
    /// The name starts or ends with whitespace, which users cannot see and
    /// some systems strip.
    EdgeWhitespace,
    /// The name ends with `.`, which Windows strips (`a.exe.` becomes `a.exe`).
    TrailingDot,
    /// The name is a Windows device (CON, PRN, AUX, NUL, COM0–9, LPT0–9,
    /// CONIN$, CONOUT$), with or without an extension, in any case.
    ReservedDevice,
    /// The name starts with [`RESERVED_PREFIX`], in any case: the receiver's
    /// own partial files.
    ReservedPrefix,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Empty => write!(f, "the file name is empty"),
            NameError::DotName => write!(f, "the file name is \".\" or \"..\", which name folders"),
            NameError::Separator => write!(f, "the file name contains a path separator (\"/\" or \"\\\")"),
            NameError::Control(c) => write!(f, "the file name contains the control character U+{:04X}", *c as u32),
            NameError::Bidi(c) => {
                write!(f, "the file name contains U+{:04X}, which changes the direction text is shown in", *c as u32)
            }
            NameError::WindowsCharacter(c) => write!(f, "the file name contains {c:?}, which Windows forbids"),
            NameError::TooLong(len) => {
                write!(f, "the file name is {len} bytes long, more than the {MAX_NAME_BYTES} allowed")
            }
            NameError::EdgeWhitespace => write!(f, "the file name starts or ends with whitespace"),
            NameError::TrailingDot => write!(f, "the file name ends with \".\""),
            NameError::ReservedDevice => write!(f, "the file name is a Windows device name (such as CON or COM1)"),
            NameError::ReservedPrefix => {
                write!(f, "the file name starts with {RESERVED_PREFIX:?}, kept for partial files")
            }
        }
    }
}

impl std::error::Error for NameError {}

/// `name` if it is safe to create as a file in the receiver's directory,
/// or the first rule of [`NameError`] it breaks.
pub fn check_name(name: &str) -> Result<&str, NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name == "." || name == ".." {
        return Err(NameError::DotName);
    }
    if name.contains(['/', '\\']) {
        return Err(NameError::Separator);
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(NameError::Control(c));
    }
    if let Some(c) = name.chars().find(|&c| is_bidi_control(c)) {
        return Err(NameError::Bidi(c));
    }
    if let Some(c) = name.chars().find(|c| matches!(c, '<' | '>' | ':' | '"' | '|' | '?' | '*')) {
        return Err(NameError::WindowsCharacter(c));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(NameError::TooLong(name.len()));
    }
    if name.starts_with(char::is_whitespace) || name.ends_with(char::is_whitespace) {
        return Err(NameError::EdgeWhitespace);
    }
    if name.ends_with('.') {
        return Err(NameError::TrailingDot);
    }
    if is_windows_device(name) {
        return Err(NameError::ReservedDevice);
    }
    if name.get(..RESERVED_PREFIX.len()).is_some_and(|head| head.eq_ignore_ascii_case(RESERVED_PREFIX)) {
        return Err(NameError::ReservedPrefix);
    }
    Ok(name)
}

/// The characters with the Unicode Bidi_Control property (UAX #9 §2): the
/// embeddings and overrides U+202A–U+202E, the isolates U+2066–U+2069, and
/// the marks U+061C, U+200E, U+200F.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Whether Windows opens a device for `name`: the part before the first dot
/// (trailing spaces ignored, as Windows ignores them) is a device name. The
/// superscript digits ¹²³ count as digits after COM and LPT, as Windows
/// counts them ("Naming Files, Paths, and Namespaces", Microsoft Learn).
fn is_windows_device(name: &str) -> bool {
    let stem = name.split('.').next().unwrap_or(name).trim_end_matches(' ').to_ascii_uppercase();
    if matches!(stem.as_str(), "CON" | "PRN" | "AUX" | "NUL" | "CONIN$" | "CONOUT$") {
        return true;
    }
    let Some(rest) = stem.strip_prefix("COM").or_else(|| stem.strip_prefix("LPT")) else { return false };
    let mut digits = rest.chars();
    matches!((digits.next(), digits.next()), (Some('0'..='9' | '¹' | '²' | '³'), None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_are_refused_by_the_rule_they_break() {
        let too_long = "a".repeat(256);
        let table: &[(&str, NameError)] = &[
            ("", NameError::Empty),
            (".", NameError::DotName),
            ("..", NameError::DotName),
            ("../x", NameError::Separator),
            ("/etc/passwd", NameError::Separator),
            ("a/b", NameError::Separator),
            ("a\\b", NameError::Separator),
            ("..\\..\\x", NameError::Separator),
            ("x\u{0}y", NameError::Control('\u{0}')),
            ("x\ny", NameError::Control('\n')),
            ("x\u{7F}", NameError::Control('\u{7F}')),
            ("x\u{85}y", NameError::Control('\u{85}')),
            ("x\u{9B}y", NameError::Control('\u{9B}')),
            ("evil\u{202E}txt.exe", NameError::Bidi('\u{202E}')),
            ("evil\u{2066}txt.exe", NameError::Bidi('\u{2066}')),
            ("evil\u{2069}", NameError::Bidi('\u{2069}')),
            ("evil\u{202A}", NameError::Bidi('\u{202A}')),
            ("C:x", NameError::WindowsCharacter(':')),
            ("file.txt:stream", NameError::WindowsCharacter(':')),
            ("what?.txt", NameError::WindowsCharacter('?')),
            ("a*b", NameError::WindowsCharacter('*')),
            (&too_long, NameError::TooLong(256)),
            ("  x", NameError::EdgeWhitespace),
            ("x ", NameError::EdgeWhitespace),
            ("\u{3000}x", NameError::EdgeWhitespace),
            ("x.", NameError::TrailingDot),
            ("...", NameError::TrailingDot),
            ("CON", NameError::ReservedDevice),
            ("con.txt", NameError::ReservedDevice),
            ("Com1.tar.gz", NameError::ReservedDevice),
            ("LPT9.zip", NameError::ReservedDevice),
            ("lpt0", NameError::ReservedDevice),
            ("nul", NameError::ReservedDevice),
            ("aux.c", NameError::ReservedDevice),
            ("prn.PDF", NameError::ReservedDevice),
            ("conin$", NameError::ReservedDevice),
            ("CONOUT$.log", NameError::ReservedDevice),
            ("COM¹", NameError::ReservedDevice),
            ("NUL .txt", NameError::ReservedDevice),
            (".punchline-abc.partial", NameError::ReservedPrefix),
            (".PunchLine.state", NameError::ReservedPrefix),
        ];
        for (name, rule) in table {
            assert_eq!(check_name(name), Err(rule.clone()), "{name:?}");
        }
    }

    #[test]
    fn ordinary_names_are_accepted_unchanged() {
        let longest = "日".repeat(85); // 255 bytes
        for name in [
            "report.pdf",
            "photo 2026.jpg",
            "naïve résumé.txt",
            "日本語.txt",
            ".bashrc",
            "a..b",
            "x",
            "CONSOLE.txt",
            "COM10",
            "LPT",
            "con-notes.txt",
            "punchline.partial",
            ".punchlin",
            "emoji 🎉.png",
            longest.as_str(),
        ] {
            assert_eq!(check_name(name), Ok(name), "{name:?}");
        }
        assert_eq!(check_name(&"日".repeat(86)), Err(NameError::TooLong(258)));
    }

    #[test]
    fn refusals_read_as_sentences() {
        assert_eq!(NameError::Control('\n').to_string(), "the file name contains the control character U+000A");
        assert_eq!(
            NameError::Bidi('\u{202E}').to_string(),
            "the file name contains U+202E, which changes the direction text is shown in"
        );
        assert_eq!(NameError::TooLong(300).to_string(), "the file name is 300 bytes long, more than the 255 allowed");
        assert_eq!(NameError::WindowsCharacter(':').to_string(), "the file name contains ':', which Windows forbids");
        assert_eq!(
            NameError::ReservedPrefix.to_string(),
            "the file name starts with \".punchline\", kept for partial files"
        );
    }
}
