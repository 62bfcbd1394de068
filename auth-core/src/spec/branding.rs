//! `[branding]` and `[clients.<id>.branding]`: how the hosted pages look (product name, logo,
//! accent colours). A client's branding overrides the service's field by field. Colours are
//! `#rrggbb` only (they are written into a stylesheet) and the button text must stay readable on
//! the accent: a contrast of at least 4.5:1 (WCAG 2 AA for normal text).

use serde::{Deserialize, Serialize};

use super::SpecError;

/// The accent colour of the pages when the spec sets none.
pub const DEFAULT_ACCENT_COLOR: &str = "#1f5fbf";
/// The text colour on the accent when the spec sets none.
pub const DEFAULT_ACCENT_TEXT_COLOR: &str = "#ffffff";
/// Longest product name, in characters.
pub const MAX_PRODUCT_NAME_CHARS: usize = 64;
/// Longest logo URL, in bytes.
pub const MAX_LOGO_URL_LEN: usize = 512;
/// WCAG 2 AA contrast for normal text.
const MIN_CONTRAST: f64 = 4.5;

/// How the hosted pages look; every field optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Branding {
    /// The name at the top of every page and in its title. Default: the issuer's host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product_name: Option<String>,
    /// An https URL of a logo shown above the name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logo_url: Option<String>,
    /// Buttons and links, `#rrggbb`. Default [`DEFAULT_ACCENT_COLOR`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accent_color: Option<String>,
    /// Text on the accent, `#rrggbb`. Default [`DEFAULT_ACCENT_TEXT_COLOR`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accent_text_color: Option<String>,
}

impl Branding {
    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// This branding with `base`'s fields where this one sets none.
    pub fn over(&self, base: &Branding) -> Branding {
        let pick = |own: &Option<String>, base: &Option<String>| own.clone().or_else(|| base.clone());
        Branding {
            product_name: pick(&self.product_name, &base.product_name),
            logo_url: pick(&self.logo_url, &base.logo_url),
            accent_color: pick(&self.accent_color, &base.accent_color),
            accent_text_color: pick(&self.accent_text_color, &base.accent_text_color),
        }
    }

    /// The accent colour, or the default.
    pub fn accent(&self) -> &str {
        self.accent_color.as_deref().unwrap_or(DEFAULT_ACCENT_COLOR)
    }

    /// The text colour on the accent, or the default.
    pub fn accent_text(&self) -> &str {
        self.accent_text_color.as_deref().unwrap_or(DEFAULT_ACCENT_TEXT_COLOR)
    }

    /// Checks each field, and the contrast of the colours the pages will use (`self` merged over
    /// what it inherits). `prefix` names the table in errors (`branding`, `clients.app.branding`).
    pub(super) fn validate(&self, prefix: &str) -> Result<(), SpecError> {
        let field = |f: &str| format!("{prefix}.{f}");
        if let Some(name) = &self.product_name
            && (name.trim().is_empty() || name.chars().count() > MAX_PRODUCT_NAME_CHARS || name.chars().any(char::is_control))
        {
            return Err(SpecError::invalid(
                field("product_name"),
                format!("must be 1 to {MAX_PRODUCT_NAME_CHARS} characters without control characters"),
            ));
        }
        if let Some(logo) = &self.logo_url {
            let https = url::Url::parse(logo).is_ok_and(|u| u.scheme() == "https" && u.host().is_some() && u.username().is_empty() && u.password().is_none());
            if logo.len() > MAX_LOGO_URL_LEN || !https {
                return Err(SpecError::invalid(field("logo_url"), format!("{logo:?} must be an https URL of at most {MAX_LOGO_URL_LEN} bytes, without credentials")));
            }
        }
        for (name, value) in [("accent_color", &self.accent_color), ("accent_text_color", &self.accent_text_color)] {
            if let Some(value) = value
                && rgb(value).is_none()
            {
                return Err(SpecError::invalid(field(name), format!("{value:?} is not a colour written #rrggbb")));
            }
        }
        if let (Some(accent), Some(text)) = (rgb(self.accent()), rgb(self.accent_text())) {
            let ratio = contrast(accent, text);
            if ratio < MIN_CONTRAST {
                return Err(SpecError::invalid(
                    field("accent_text_color"),
                    format!(
                        "{} on {} has a contrast of {ratio:.2}:1; the pages need at least {MIN_CONTRAST}:1 (WCAG 2 AA) to stay readable",
                        self.accent_text(),
                        self.accent()
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// The red, green and blue of `#rrggbb`.
fn rgb(text: &str) -> Option<[u8; 3]> {
    let hex = text.strip_prefix('#').filter(|h| h.len() == 6 && h.bytes().all(|b| b.is_ascii_hexdigit()))?;
    let channel = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).ok();
    Some([channel(0)?, channel(2)?, channel(4)?])
}

/// WCAG 2 relative luminance.
fn luminance([r, g, b]: [u8; 3]) -> f64 {
    let linear = |c: u8| {
        let c = f64::from(c) / 255.0;
        if c <= 0.039_28 { c / 12.92 } else { ((c + 0.055) / 1.055).powf(2.4) }
    };
    0.2126 * linear(r) + 0.7152 * linear(g) + 0.0722 * linear(b)
}

/// WCAG 2 contrast ratio of two colours (1 to 21).
fn contrast(a: [u8; 3], b: [u8; 3]) -> f64 {
    let (la, lb) = (luminance(a), luminance(b));
    (la.max(lb) + 0.05) / (la.min(lb) + 0.05)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contrast_follows_wcag() {
        // WCAG's extremes, and the defaults, which pass.
        assert!((contrast([0, 0, 0], [255, 255, 255]) - 21.0).abs() < 1e-9);
        assert!((contrast([119, 119, 119], [119, 119, 119]) - 1.0).abs() < 1e-9);
        assert!(contrast(rgb(DEFAULT_ACCENT_COLOR).unwrap(), rgb(DEFAULT_ACCENT_TEXT_COLOR).unwrap()) >= MIN_CONTRAST);
        // #777777 on white is the classic near miss (4.48:1).
        let grey = contrast(rgb("#777777").unwrap(), [255, 255, 255]);
        assert!(grey > 4.4 && grey < MIN_CONTRAST, "{grey}");
    }

    #[test]
    fn colours_are_six_hex_digits_only() {
        assert_eq!(rgb("#1F5fbf"), Some([0x1f, 0x5f, 0xbf]));
        for bad in ["1f5fbf", "#1f5fb", "#1f5fbfa", "#1f5fbg", "red", "#fff", "#1f5fbf;}body{x:y", ""] {
            assert_eq!(rgb(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_client_overrides_field_by_field() {
        let base = Branding { product_name: Some("Stays".into()), accent_color: Some("#000000".into()), ..Branding::default() };
        let client = Branding { accent_color: Some("#8a1c1c".into()), ..Branding::default() };
        let merged = client.over(&base);
        assert_eq!(merged.product_name.as_deref(), Some("Stays"));
        assert_eq!(merged.accent(), "#8a1c1c");
        assert_eq!(merged.accent_text(), DEFAULT_ACCENT_TEXT_COLOR);
    }
}
