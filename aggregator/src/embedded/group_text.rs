//! Text search over the messages of a whole row group at once.
//!
//! [`Phrase::matches`] lowercases each message and runs a substring search per word
//! before comparing words exactly: per row, a copy and a call per word, which a cold
//! search (every message of the store read to count its `total`) pays a million times
//! per million records. A row group's messages are one string ([`Strings::text`]), so
//! here they are lowercased once and the first word is searched for over the whole
//! string: a rare word skips most messages without touching them one by one. Only the
//! messages holding every word are compared exactly, by the same code as a single row,
//! so the answer is the same as [`Phrase::matches`] for every message.

use std::cell::RefCell;

use super::filter::Phrase;
use super::segment::Strings;

thread_local! {
    /// The lowercased text of the group being searched, reused between groups.
    static LOWER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Whether each value of `messages` (by its index, [`Strings::slot`]) holds `phrase`,
/// exactly as [`Phrase::matches`] decides.
pub fn matching_values(phrase: &Phrase, messages: &Strings) -> Vec<bool> {
    let n = messages.values();
    if phrase.words.is_empty() {
        return vec![false; n];
    }
    let finders = phrase.finders();
    let Some((first, rest)) = finders.split_first() else {
        // Only a prefix: nothing to search for, every message is compared.
        return (0..n)
            .map(|v| messages.value(v).is_some_and(|t| phrase.matches_words(t)))
            .collect();
    };
    let text = messages.text();
    let ends = messages.ends();
    LOWER.with(|buf| {
        let mut lower = buf.borrow_mut();
        lower.clear();
        lower.extend(text.bytes().map(|b| b.to_ascii_lowercase()));
        let mut found = vec![false; n];
        // The first word over the whole text: a hit marks the value it lies in (a hit
        // across two values marks neither), and the search goes on at the next value,
        // so a hit straddling a boundary never hides one inside the next value.
        let (mut pos, mut v) = (0, 0);
        while pos < lower.len() {
            let Some(off) = first.find(&lower[pos..]) else {
                break;
            };
            let at = pos + off;
            while v < n && ends[v] <= at {
                v += 1;
            }
            if v == n {
                break;
            }
            if at + first.needle().len() <= ends[v] {
                found[v] = true;
            }
            pos = ends[v];
            v += 1;
        }
        // Lowercasing is ASCII only, so a message that is not ASCII is never rejected
        // by the substring search (as in `Phrase::matches`).
        let all_ascii = text.is_ascii();
        for (v, hit) in found.iter_mut().enumerate() {
            let Some(range) = messages.range(v) else {
                *hit = false;
                continue;
            };
            let ascii = all_ascii || text[range.clone()].is_ascii();
            if !ascii {
                *hit = true;
            } else if *hit {
                let lowered = &lower[range];
                *hit = rest.iter().all(|f| f.find(lowered).is_some());
            }
            if *hit {
                *hit = messages.value(v).is_some_and(|t| phrase.matches_words(t));
            }
        }
        found
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phrase(q: &str) -> Phrase {
        Phrase::from_query_text(&crate::query::text_phrase(q).unwrap())
    }

    fn check(p: &Phrase, values: &[Option<&str>], what: &str) {
        let strings = Strings::of(values);
        let found = matching_values(p, &strings);
        assert_eq!(found.len(), strings.values());
        for (row, v) in values.iter().enumerate() {
            let want = v.is_some_and(|t| p.matches(t, &mut Vec::new()));
            let got = strings.slot(row).is_some_and(|s| found[s]);
            assert_eq!(got, want, "{what}: {p:?} on row {row} {v:?} of {values:?}");
        }
    }

    #[test]
    fn words_across_two_messages_match_neither_and_hide_nothing() {
        let p = phrase("aa");
        check(&p, &[Some("xa"), Some("aa")], "straddle");
        check(
            &p,
            &[Some("a"), Some("a a"), Some("AA")],
            "straddle then own",
        );
        check(&p, &[None, Some(""), Some("aa"), None], "missing and empty");
        check(
            &phrase("conn*"),
            &[Some("Connection"), Some("reconnect")],
            "prefix",
        );
        check(
            &phrase("straße"),
            &[Some("STRASSE"), Some("Straße")],
            "not ASCII",
        );
        check(
            &phrase("refused"),
            &[Some("É REFUSED"), Some("refuse")],
            "mixed",
        );
    }

    /// Random messages of a small vocabulary (mixed case, punctuation, words that run
    /// into each other, some not ASCII, some missing or empty) and random phrases:
    /// the group search must agree with the row-by-row match on every row. The seed is
    /// printed; `GROUP_TEXT_SEED=<n>` replays one run.
    #[test]
    fn the_group_search_agrees_with_the_row_match_on_random_messages() {
        let seed = shared::testkit::SeededRng::seed_from_env("GROUP_TEXT_SEED");
        println!("GROUP_TEXT_SEED={seed}");
        let mut x = seed;
        let mut next = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        const WORDS: [&str; 10] = [
            "time",
            "timeout",
            "Timeout",
            "out",
            "conn",
            "connection",
            "refused",
            "É",
            "é",
            "42",
        ];
        const SEPS: [&str; 5] = [" ", "", "/", ": ", "-"];
        for round in 0..300 {
            let rows = 1 + next(40) as usize;
            let texts: Vec<Option<String>> = (0..rows)
                .map(|_| match next(12) {
                    0 => None,
                    1 => Some(String::new()),
                    _ => Some(
                        (0..1 + next(6))
                            .map(|_| {
                                let w = WORDS[next(WORDS.len() as u64) as usize];
                                format!("{w}{}", SEPS[next(SEPS.len() as u64) as usize])
                            })
                            .collect(),
                    ),
                })
                .collect();
            let values: Vec<Option<&str>> = texts.iter().map(|t| t.as_deref()).collect();
            let words: Vec<&str> = (0..1 + next(3))
                .map(|_| WORDS[next(WORDS.len() as u64) as usize])
                .collect();
            let star = if next(4) == 0 { "*" } else { "" };
            let p = phrase(&format!("{}{star}", words.join(" ")));
            check(&p, &values, &format!("seed {seed} round {round}"));
        }
    }
}
