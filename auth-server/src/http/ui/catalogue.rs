//! The hosted pages' messages, one catalogue file per language (`auth-server/locales/*.toml`,
//! built into the binary), and the choice of language for a request: the `ui_locales` of the
//! authorization request first, then `Accept-Language`, then English.

use std::collections::BTreeMap;
use std::sync::LazyLock;

/// The catalogues, by primary language subtag; English first (the default).
static CATALOGUES: LazyLock<Vec<Catalogue>> = LazyLock::new(|| {
    [("en", include_str!("../../../locales/en.toml")), ("de", include_str!("../../../locales/de.toml"))]
        .into_iter()
        .map(|(lang, text)| Catalogue::parse(lang, text))
        .collect()
});

/// The messages of one language.
#[derive(Debug)]
pub struct Catalogue {
    /// The primary language subtag (`lang` of the page).
    pub lang: &'static str,
    messages: BTreeMap<String, String>,
}

impl Catalogue {
    fn parse(lang: &'static str, text: &str) -> Self {
        // The files are part of the build and checked by a test; a broken one shows its keys.
        let value: toml::Table = toml::from_str(text).unwrap_or_default();
        let mut messages = BTreeMap::new();
        flatten("", &value, &mut messages);
        Self { lang, messages }
    }

    /// The message `key`; the key itself when missing (a test keeps every catalogue complete).
    pub fn get<'a>(&'a self, key: &'a str) -> &'a str {
        self.messages.get(key).map_or(key, String::as_str)
    }

    /// The message `key` with `{name}` replaced by `value`.
    pub fn fill(&self, key: &str, name: &str, value: &str) -> String {
        self.get(key).replace(&format!("{{{name}}}"), value)
    }
}

fn flatten(prefix: &str, table: &toml::Table, out: &mut BTreeMap<String, String>) {
    for (key, value) in table {
        let name = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        match value {
            toml::Value::Table(inner) => flatten(&name, inner, out),
            toml::Value::String(text) => {
                out.insert(name, text.clone());
            }
            _ => {}
        }
    }
}

/// Most language preferences read from `Accept-Language` or `ui_locales`.
const MAX_PREFERENCES: usize = 16;

/// The catalogue for a request: the first of `ui_locales` that has one, else the best of
/// `accept_language` (by quality, then order), else English.
pub fn choose(ui_locales: &[String], accept_language: Option<&str>) -> &'static Catalogue {
    let by_tag = |tag: &str| {
        let primary = tag.split(['-', '_']).next().unwrap_or_default().trim().to_ascii_lowercase();
        CATALOGUES.iter().find(|c| c.lang == primary)
    };
    if let Some(found) = ui_locales.iter().take(MAX_PREFERENCES).find_map(|tag| by_tag(tag)) {
        return found;
    }
    let mut preferences: Vec<(u16, usize, &str)> = accept_language
        .unwrap_or_default()
        .split(',')
        .take(MAX_PREFERENCES)
        .enumerate()
        .filter_map(|(order, item)| {
            let mut parts = item.split(';');
            let tag = parts.next()?.trim();
            let quality = parts
                .find_map(|p| p.trim().strip_prefix("q="))
                .map_or(Some(1000), |q| q.trim().parse::<f32>().ok().map(|q| (q.clamp(0.0, 1.0) * 1000.0) as u16))?;
            (quality > 0 && !tag.is_empty()).then_some((quality, order, tag))
        })
        .collect();
    preferences.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    preferences.iter().find_map(|(_, _, tag)| by_tag(tag)).unwrap_or(&CATALOGUES[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_catalogue_has_every_key() {
        let english = &CATALOGUES[0];
        assert!(english.messages.len() > 10, "the English catalogue parsed");
        for catalogue in CATALOGUES.iter() {
            let keys: Vec<_> = catalogue.messages.keys().collect();
            let expected: Vec<_> = english.messages.keys().collect();
            assert_eq!(keys, expected, "catalogue {} differs from English", catalogue.lang);
        }
    }

    #[test]
    fn chooses_ui_locales_then_accept_language() {
        assert_eq!(choose(&[], None).lang, "en");
        assert_eq!(choose(&["de-CH".into()], Some("en")).lang, "de");
        assert_eq!(choose(&["fr".into(), "de".into()], None).lang, "de");
        assert_eq!(choose(&[], Some("fr-FR, de;q=0.8, en;q=0.5")).lang, "de");
        assert_eq!(choose(&[], Some("de;q=0.1, en;q=0.9")).lang, "en");
        assert_eq!(choose(&[], Some("de;q=0")).lang, "en");
        assert_eq!(choose(&[], Some("garbage;;q=x,,")).lang, "en");
        assert_eq!(choose(&[], Some(&"x,".repeat(10_000))).lang, "en");
    }
}
