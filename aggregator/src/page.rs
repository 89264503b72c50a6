//! The page a browser gets at `GET /`: the web console (search, volume histogram,
//! facets, live tail, service overview, request view), described in `docs/console.md`.
//!
//! It is one static, self-contained file (no external script, style or font, so it works
//! offline) reading `GET /logs`, `GET /logs/volume` and `GET /logs/tail`. It renders
//! every value of a record with `textContent` or as an attribute, never as markup, so a
//! log line can never inject any.

pub const HTML: &str = include_str!("console/page.html");

/// The page stays small enough to load at once on a slow link.
pub const MAX_BYTES: usize = 150 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_small_and_self_contained() {
        assert!(HTML.len() < MAX_BYTES, "{} bytes", HTML.len());
        let lower = HTML.to_ascii_lowercase();
        for external in ["http://", "https://", " src=", "@import", " url(", ":url("] {
            // The SVG namespace is a name, not a resource that is fetched.
            let found = lower
                .match_indices(external)
                .filter(|(i, _)| !lower[*i..].starts_with("http://www.w3.org/2000/svg"))
                .count();
            assert_eq!(found, 0, "{external}");
        }
        assert!(!HTML.contains("innerHTML"), "records are rendered as text");
    }
}
