//! Znode paths, validated once at the edge as ZooKeeper validates them.
//!
//! Parse, don't validate: every registry function takes a [`ZPath`], so inner code never meets a
//! relative path, an empty segment, `.`/`..`, a trailing slash, or a control character.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest path accepted, in bytes. ZooKeeper has no explicit bound; a bound keeps every map keyed by
/// paths (tree, watches, sessions' ephemerals) bounded in memory per entry.
pub const PATH_BYTES_MAX: usize = 4096;

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid path {path:?}: {reason}")]
pub struct PathError {
    /// The path as given.
    pub path: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// A valid, absolute znode path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ZPath(String);

impl TryFrom<String> for ZPath {
    type Error = PathError;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        ZPath::parse(&text)
    }
}

impl From<ZPath> for String {
    fn from(path: ZPath) -> String {
        path.0
    }
}

impl fmt::Display for ZPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_forbidden(c: char) -> bool {
    // The same ranges ZooKeeper's PathUtils refuses: controls, surrogates, private use, specials.
    // (Surrogates cannot occur in a Rust `str`, so the range starts past them.)
    matches!(c, '\u{0000}'..='\u{001f}' | '\u{007f}'..='\u{009f}' | '\u{e000}'..='\u{f8ff}' | '\u{fff0}'..='\u{ffff}')
}

impl ZPath {
    /// The root, `/`.
    pub fn root() -> ZPath {
        ZPath("/".to_string())
    }

    /// Parses and validates a path.
    ///
    /// # Errors
    /// [`PathError`] naming the rule the path breaks.
    pub fn parse(text: &str) -> Result<ZPath, PathError> {
        let refuse = |reason| Err(PathError { path: text.chars().take(128).collect(), reason });
        if text.is_empty() {
            return refuse("empty");
        }
        if text.len() > PATH_BYTES_MAX {
            return refuse("longer than 4096 bytes");
        }
        if !text.starts_with('/') {
            return refuse("not absolute");
        }
        if text == "/" {
            return Ok(ZPath::root());
        }
        if text.ends_with('/') {
            return refuse("trailing slash");
        }
        if text.chars().any(is_forbidden) {
            return refuse("control or reserved character");
        }
        for segment in text[1..].split('/') {
            match segment {
                "" => return refuse("empty segment"),
                "." | ".." => return refuse("relative segment"),
                _ => {}
            }
        }
        Ok(ZPath(text.to_string()))
    }

    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is `/`.
    pub fn is_root(&self) -> bool {
        self.0 == "/"
    }

    /// The parent path; `None` for the root.
    pub fn parent(&self) -> Option<ZPath> {
        if self.is_root() {
            return None;
        }
        let cut = self.0.rfind('/').expect("a valid non-root path contains a slash");
        Some(if cut == 0 { ZPath::root() } else { ZPath(self.0[..cut].to_string()) })
    }

    /// The last segment; empty for the root.
    pub fn name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or("")
    }

    /// This path with `suffix` appended to its last segment (sequential names).
    ///
    /// # Errors
    /// [`PathError`] if the result is too long.
    pub fn with_suffix(&self, suffix: &str) -> Result<ZPath, PathError> {
        ZPath::parse(&format!("{}{}", self.0, suffix))
    }

    /// The child `name` of this path.
    ///
    /// # Errors
    /// [`PathError`] if `name` is not a valid segment.
    pub fn child(&self, name: &str) -> Result<ZPath, PathError> {
        if self.is_root() {
            ZPath::parse(&format!("/{name}"))
        } else {
            ZPath::parse(&format!("{}/{name}", self.0))
        }
    }

    /// Whether `self` is `ancestor` or lies below it.
    pub fn is_within(&self, ancestor: &ZPath) -> bool {
        ancestor.is_root()
            || self.0 == ancestor.0
            || (self.0.starts_with(&ancestor.0) && self.0.as_bytes().get(ancestor.0.len()) == Some(&b'/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_paths_parse() {
        for text in ["/", "/a", "/a/b", "/grid/nodes/1", "/ünïcode", "/a.b", "/..a"] {
            assert_eq!(ZPath::parse(text).expect(text).as_str(), text);
        }
    }

    #[test]
    fn invalid_paths_name_their_rule() {
        let cases = [
            ("", "empty"),
            ("a", "not absolute"),
            ("/a/", "trailing slash"),
            ("//a", "empty segment"),
            ("/a//b", "empty segment"),
            ("/a/./b", "relative segment"),
            ("/a/..", "relative segment"),
            ("/a\u{0}b", "control"),
            ("/a\nb", "control"),
        ];
        for (text, reason) in cases {
            let error = ZPath::parse(text).expect_err(text);
            assert!(error.reason.contains(reason), "{text:?}: {error}");
        }
        assert!(ZPath::parse(&format!("/{}", "x".repeat(PATH_BYTES_MAX))).is_err());
    }

    #[test]
    fn parent_name_child_and_within() {
        let path = ZPath::parse("/a/b/c").expect("valid");
        assert_eq!(path.parent().expect("parent").as_str(), "/a/b");
        assert_eq!(path.name(), "c");
        assert_eq!(ZPath::parse("/a").expect("valid").parent(), Some(ZPath::root()));
        assert_eq!(ZPath::root().parent(), None);
        assert_eq!(ZPath::root().child("x").expect("child").as_str(), "/x");
        assert!(path.is_within(&ZPath::parse("/a").expect("valid")));
        assert!(!ZPath::parse("/ab").expect("valid").is_within(&ZPath::parse("/a").expect("valid")));
        assert!(path.is_within(&ZPath::root()));
    }
}
