//! Name folding for civic matching: state, county and city names compare
//! equal when they differ only in case, accents, punctuation, spacing, or a
//! few common abbreviations.

/// Folds a place name to its comparison key.
///
/// - lower case; Latin accents removed (`Doña Ana` → `dona ana`);
/// - `.`, `,` and apostrophes dropped, `-` and `/` read as spaces, runs of
///   spaces collapsed;
/// - `saint`/`st`, `sainte`/`ste`, `fort`/`ft`, `mount`/`mt` become one token;
/// - a leading `city of X` becomes `X city` and `county of X` `X county`, so
///   `City of Richmond` meets the Census name `Richmond city`.
pub(crate) fn fold(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    fold_into(name, &mut out);
    out
}

/// [`fold`], appending to `out`.
pub(crate) fn fold_into(name: &str, out: &mut String) {
    let start = out.len();
    // Room for any token of a typical name, so it is allocated once.
    let mut token = String::with_capacity(name.len());
    let push_token = |token: &mut String, out: &mut String| {
        if token.is_empty() {
            return;
        }
        if out.len() > start {
            out.push(' ');
        }
        out.push_str(match token.as_str() {
            "saint" => "st",
            "sainte" => "ste",
            "fort" => "ft",
            "mount" => "mt",
            other => other,
        });
        token.clear();
    };
    for c in name.chars() {
        match c {
            '.' | ',' | '\'' | '\u{2019}' => {}
            '-' | '/' | '_' => push_token(&mut token, out),
            c if c.is_whitespace() => push_token(&mut token, out),
            c if c.is_ascii() => token.push(c.to_ascii_lowercase()),
            c => match unaccent(c) {
                Some(s) => token.push_str(s),
                None => token.extend(c.to_lowercase()),
            },
        }
    }
    push_token(&mut token, out);
    for kind in ["city", "county"] {
        let folded = &out[start..];
        if let Some(rest) = folded
            .strip_prefix(kind)
            .and_then(|r| r.strip_prefix(" of "))
        {
            let moved = format!("{rest} {kind}");
            out.truncate(start);
            out.push_str(&moved);
            return;
        }
    }
}

/// The suffixes that name a county type; a query that ends in one of them and
/// finds nothing is retried without it ("Orleans County" finds Orleans Parish).
/// `city` is not among them: "Baltimore city" must never fall back to
/// Baltimore County.
pub(crate) fn strip_county_suffix(folded: &str) -> Option<&str> {
    const SUFFIXES: [&str; 8] = [
        " county",
        " parish",
        " borough",
        " census area",
        " municipality",
        " municipio",
        " district",
        " island",
    ];
    SUFFIXES
        .iter()
        .find_map(|s| folded.strip_suffix(s))
        .filter(|rest| !rest.is_empty())
}

/// ASCII lower-case form of an accented Latin letter.
fn unaccent(c: char) -> Option<&'static str> {
    Some(match c {
        'À'..='Å' | 'à'..='å' | 'Ā' | 'ā' => "a",
        'Æ' | 'æ' => "ae",
        'Ç' | 'ç' => "c",
        'È'..='Ë' | 'è'..='ë' | 'Ē' | 'ē' => "e",
        'Ì'..='Ï' | 'ì'..='ï' => "i",
        'Ñ' | 'ñ' => "n",
        'Ò'..='Ö' | 'Ø' | 'ò'..='ö' | 'ø' => "o",
        'Ù'..='Ü' | 'ù'..='ü' => "u",
        'Ý' | 'ý' | 'ÿ' => "y",
        'ß' => "ss",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_case_accents_and_punctuation() {
        assert_eq!(fold("  Doña   Ana "), "dona ana");
        assert_eq!(fold("MAYAGÜEZ Municipio"), "mayaguez municipio");
        assert_eq!(fold("Miami-Dade County"), "miami dade county");
        assert_eq!(fold("Prince George's"), "prince georges");
        assert_eq!(fold("München"), "munchen");
    }

    #[test]
    fn folds_saint_and_st_together() {
        assert_eq!(fold("St. Louis"), fold("Saint Louis"));
        assert_eq!(fold("Ft. Bend"), fold("Fort Bend"));
        assert_eq!(fold("Mt Vernon"), fold("Mount Vernon"));
        assert_ne!(fold("Stone"), fold("Saintone"));
    }

    #[test]
    fn moves_city_of_to_the_end() {
        assert_eq!(fold("City of Richmond"), "richmond city");
        assert_eq!(fold("County of Kauai"), "kauai county");
        // a bare "City of" is a name, not a pattern
        assert_eq!(fold("City of"), "city of");
    }

    #[test]
    fn strips_county_type_but_never_city() {
        assert_eq!(strip_county_suffix("orleans county"), Some("orleans"));
        assert_eq!(strip_county_suffix("bethel census area"), Some("bethel"));
        assert_eq!(strip_county_suffix("baltimore city"), None);
        assert_eq!(strip_county_suffix(" county"), None);
    }

    #[test]
    fn never_panics_on_odd_input() {
        for s in ["", " ", "....", "\u{0}", "ǅ", "İstanbul", "城市", "-of-"] {
            let _ = fold(s);
        }
        assert_eq!(fold(""), "");
    }

    #[test]
    fn fold_into_appends_after_a_prefix() {
        let mut key = String::from("VA ");
        fold_into("City of  Falls-Church", &mut key);
        assert_eq!(key, "VA falls church city");
    }
}
