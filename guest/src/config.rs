//! Reading the configuration that [`Plugin::init`](crate::Plugin::init) receives.
//!
//! The configuration is the host's list of `(key, value)` pairs, in order; when a key repeats,
//! the last value wins.

/// The value of `key`, if the configuration has it (the last one when it repeats).
pub fn get<'a>(config: &'a [(String, String)], key: &str) -> Option<&'a str> {
    config
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The value of `key`, or `default` when the configuration lacks it.
pub fn get_or<'a>(config: &'a [(String, String)], key: &str, default: &'a str) -> &'a str {
    get(config, key).unwrap_or(default)
}

/// The value of `key` parsed as a `T`, `default` when absent, or an error naming the key.
pub fn parse_or<T>(config: &[(String, String)], key: &str, default: T) -> Result<T, String>
where
    T: core::str::FromStr,
    T::Err: core::fmt::Display,
{
    match get(config, key) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|e| format!("config key {key:?}: cannot parse {v:?}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Vec<(String, String)> {
        vec![
            ("a".into(), "1".into()),
            ("b".into(), "x".into()),
            ("a".into(), "2".into()),
        ]
    }

    #[test]
    fn last_value_wins_and_defaults_apply() {
        let c = cfg();
        assert_eq!(get(&c, "a"), Some("2"));
        assert_eq!(get(&c, "zz"), None);
        assert_eq!(get_or(&c, "zz", "d"), "d");
        assert_eq!(parse_or(&c, "a", 0u32), Ok(2));
        assert_eq!(parse_or(&c, "zz", 7u32), Ok(7));
        assert!(parse_or(&c, "b", 0u32).unwrap_err().contains("\"b\""));
    }
}
