/// A category's URL name: lower-case words of letters and digits joined by
/// single dashes (`^[a-z0-9]+(-[a-z0-9]+)*$`), at most 100 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slug(String);

impl Slug {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let slug = raw.trim();
        if slug.is_empty() || slug.len() > 100 {
            return Err("must be 1 to 100 characters");
        }
        let well_formed = slug.split('-').all(|word| {
            !word.is_empty()
                && word
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        });
        if well_formed {
            Ok(Slug(slug.to_string()))
        } else {
            Err("must be lower-case letters and digits in words joined by single dashes")
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_joined_by_single_dashes() {
        for good in ["audio", "home-and-kitchen", "4k-tvs", "a1-b2-c3"] {
            assert!(Slug::parse(good).is_ok(), "{good:?} refused");
        }
        for bad in [
            "",
            "-audio",
            "audio-",
            "home--kitchen",
            "Audio",
            "home_kitchen",
            "ü",
        ] {
            assert!(Slug::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
