//! Glob expansion that sees every file name, valid UTF-8 or not.
//!
//! The `glob` crate's walk silently skips directory entries whose names are not valid
//! UTF-8 (it matches names as `&str`), so such a log file was never followed. Here the
//! directories are walked by hand, one pattern component at a time, and each entry's
//! name is matched with its invalid bytes replaced by U+FFFD: a `*` matches them, a `?`
//! matches one invalid byte, and the path followed is the entry's own, byte for byte.
//! Otherwise the rules are `glob::glob`'s: components without wildcards are taken as
//! they are, `**` matches any number of directories (including none; directories
//! reached through a symbolic link are not descended into, so a link cycle cannot make
//! the walk endless), a leading dot needs no literal dot, and entries of a directory
//! come in the order of their names.

use std::ffi::OsString;
use std::fs;
use std::path::{Component, Path, PathBuf};

use glob::{MatchOptions, Pattern};

/// Directories `**` descends at most: a bound on the walk of a deep tree.
const MAX_DEPTH: usize = 32;

enum Part {
    /// `**`: any number of directories.
    AnyDirs,
    /// A component with wildcards.
    Pattern(Pattern),
    /// A component without wildcards (after the first one with).
    Literal(OsString),
}

/// Every existing path `pattern` names; nothing when the pattern is not a valid glob.
pub(super) fn expand(pattern: &str) -> Vec<PathBuf> {
    let mut base = PathBuf::new();
    let mut parts = Vec::new();
    for component in Path::new(pattern).components() {
        let text = component.as_os_str();
        let wild = matches!(component, Component::Normal(_))
            && text.to_str().is_some_and(|t| t.contains(['*', '?', '[']));
        if parts.is_empty() && !wild {
            base.push(text);
        } else if text == "**" {
            parts.push(Part::AnyDirs);
        } else if wild {
            match text.to_str().map(Pattern::new) {
                Some(Ok(p)) => parts.push(Part::Pattern(p)),
                _ => return Vec::new(),
            }
        } else {
            parts.push(Part::Literal(text.to_owned()));
        }
    }
    let mut out = Vec::new();
    walk(&base, &parts, 0, &mut out);
    // `**/**` can reach a path twice.
    let mut seen = std::collections::HashSet::new();
    out.retain(|p| seen.insert(p.clone()));
    out
}

fn walk(dir: &Path, parts: &[Part], depth: usize, out: &mut Vec<PathBuf>) {
    let Some((first, rest)) = parts.split_first() else {
        if fs::symlink_metadata(dir).is_ok() {
            out.push(dir.to_owned());
        }
        return;
    };
    match first {
        Part::Literal(name) => walk(&dir.join(name), rest, depth, out),
        Part::Pattern(pattern) => {
            let options = MatchOptions::new();
            for name in entries(dir) {
                if !pattern.matches_with(&name.to_string_lossy(), options) {
                    continue;
                }
                let path = dir.join(&name);
                if rest.is_empty() {
                    out.push(path);
                } else if path.is_dir() {
                    walk(&path, rest, depth, out);
                }
            }
        }
        Part::AnyDirs => {
            walk(dir, rest, depth, out);
            if depth >= MAX_DEPTH {
                return;
            }
            for name in entries(dir) {
                let path = dir.join(&name);
                if fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                    walk(&path, parts, depth + 1, out);
                }
            }
        }
    }
}

/// The names in `dir` (the current directory for an empty path), in byte order.
fn entries(dir: &Path) -> Vec<OsString> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let Ok(read) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<OsString> = read.flatten().map(|e| e.file_name()).collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    fn touch(path: &Path) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, b"x\n").unwrap();
    }

    #[test]
    fn names_that_are_not_utf8_are_matched_too() {
        let dir = tempfile::tempdir().unwrap();
        let odd = dir
            .path()
            .join(std::ffi::OsStr::from_bytes(b"app-\xff.log"));
        touch(&odd);
        touch(&dir.path().join("app-a.log"));
        touch(&dir.path().join("other.txt"));
        let pattern = format!("{}/app-*.log", dir.path().display());
        assert_eq!(
            expand(&pattern),
            [dir.path().join("app-a.log"), odd.clone()]
        );
        let pattern = format!("{}/app-?.log", dir.path().display());
        assert_eq!(expand(&pattern).len(), 2);
        // The same as the glob crate for names it can see.
        let glob: Vec<PathBuf> = glob::glob(&pattern).unwrap().flatten().collect();
        assert_eq!(glob, [dir.path().join("app-a.log")]);
    }

    #[test]
    fn directories_are_walked_like_glob_does() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for p in ["a/x.log", "a/b/y.log", "c/x.log", "c/z.txt", "top.log"] {
            touch(&root.join(p));
        }
        for pattern in ["*/x.log", "**/*.log", "a/**/*.log", "?/x.log", "[ac]/*.log"] {
            let full = format!("{}/{pattern}", root.display());
            let mut want: Vec<PathBuf> = glob::glob(&full).unwrap().flatten().collect();
            let mut got = expand(&full);
            want.sort();
            got.sort();
            assert_eq!(got, want, "{pattern}");
            assert!(!got.is_empty(), "{pattern}");
        }
        assert!(expand(&format!("{}/[.log", root.display())).is_empty());
    }
}
