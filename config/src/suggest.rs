//! "Did you mean": the nearest valid name to a misspelt one.

/// The candidate closest to `given` by edit distance, if one is close enough to be
/// a plausible typo (at most a third of the longer name, and at least one edit away
/// from nothing).
pub fn nearest<'a>(given: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(given, c), *c))
        .filter(|(d, c)| *d <= given.len().max(c.len()).div_ceil(3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::nearest;

    #[test]
    fn typos_find_their_key() {
        let keys = ["url", "method", "headers", "bearer_token_file", "expect"];
        assert_eq!(nearest("ulr", &keys), Some("url"));
        assert_eq!(nearest("header", &keys), Some("headers"));
        assert_eq!(
            nearest("bearer_tokn_file", &keys),
            Some("bearer_token_file")
        );
        assert_eq!(nearest("completely_different", &keys), None);
    }
}
