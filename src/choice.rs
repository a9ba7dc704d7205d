//! Named choices (a device, a tracker, an RTSP transport, a label format): the one
//! place each enum says its names and what each means. A leaf module: the library's
//! enums implement [`Choice`]; pipeline files parse them with [`Choice::parse`], and
//! the command line maps them to clap's possible values in `cli`, so the library
//! does not depend on clap.

/// An enum whose values have names.
pub trait Choice: Sized + Copy + 'static {
    /// Every value, in the order help lists them.
    const ALL: &'static [Self];

    /// The value's name, as flags and pipeline files spell it.
    fn name(self) -> &'static str;

    /// One line on what the value means.
    fn about(self) -> &'static str;

    /// The value called `name` (any case), or an error listing the names.
    fn parse(name: &str) -> Result<Self, String> {
        Self::ALL
            .iter()
            .copied()
            .find(|v| v.name().eq_ignore_ascii_case(name.trim()))
            .ok_or_else(|| format!("{name:?} is not one of {}", Self::names()))
    }

    /// The names, comma-separated.
    fn names() -> String {
        Self::ALL
            .iter()
            .map(|v| v.name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Fruit {
        Apple,
        Pear,
    }

    impl Choice for Fruit {
        const ALL: &'static [Self] = &[Self::Apple, Self::Pear];
        fn name(self) -> &'static str {
            match self {
                Self::Apple => "apple",
                Self::Pear => "pear",
            }
        }
        fn about(self) -> &'static str {
            ""
        }
    }

    #[test]
    fn parses_names_in_any_case_and_lists_them_otherwise() {
        assert_eq!(Fruit::parse("Pear"), Ok(Fruit::Pear));
        assert_eq!(
            Fruit::parse("plum").unwrap_err(),
            "\"plum\" is not one of apple, pear"
        );
    }
}
