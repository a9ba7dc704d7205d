//! Which classes a run keeps: `person` (pedestrian mode, the default), `all`, or a
//! comma-separated list of labels from the model's manifest.

use std::collections::BTreeSet;

/// Errors from parsing a `--classes` value.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ClassError {
    #[error("unknown class {name:?} (this model knows: {known})")]
    Unknown { name: String, known: String },
    #[error("--classes is empty: give `all`, `person` or a comma-separated list of labels")]
    Empty,
}

/// The set of class ids a run keeps.
#[derive(Debug, Clone, PartialEq)]
pub enum ClassFilter {
    /// Keep every class of the model.
    All,
    /// Keep only these class ids.
    Only(BTreeSet<usize>),
}

impl ClassFilter {
    /// A filter that keeps exactly these ids.
    pub fn only(ids: impl IntoIterator<Item = usize>) -> Self {
        Self::Only(ids.into_iter().collect())
    }

    /// Parses `all` or a comma-separated list of labels (case-insensitive).
    pub fn parse(spec: &str, labels: &[String]) -> Result<Self, ClassError> {
        let spec = spec.trim();
        if spec.eq_ignore_ascii_case("all") {
            return Ok(Self::All);
        }
        let mut ids = BTreeSet::new();
        for name in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let id = labels
                .iter()
                .position(|l| l.eq_ignore_ascii_case(name))
                .ok_or_else(|| ClassError::Unknown {
                    name: name.to_string(),
                    known: labels.join(", "),
                })?;
            ids.insert(id);
        }
        if ids.is_empty() {
            return Err(ClassError::Empty);
        }
        Ok(Self::Only(ids))
    }

    /// Whether detections of this class id are kept.
    pub fn keeps(&self, class_id: usize) -> bool {
        match self {
            Self::All => true,
            Self::Only(ids) => ids.contains(&class_id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Vec<String> {
        ["person", "bicycle", "car"].map(String::from).to_vec()
    }

    #[test]
    fn parses_all_person_and_lists() {
        assert_eq!(ClassFilter::parse("all", &labels()), Ok(ClassFilter::All));
        assert_eq!(
            ClassFilter::parse("person", &labels()),
            Ok(ClassFilter::only([0]))
        );
        assert_eq!(
            ClassFilter::parse(" Car, person ,", &labels()),
            Ok(ClassFilter::only([0, 2]))
        );
    }

    #[test]
    fn rejects_unknown_and_empty() {
        let err = ClassFilter::parse("person,dog", &labels()).unwrap_err();
        assert!(matches!(err, ClassError::Unknown { ref name, .. } if name == "dog"));
        assert!(err.to_string().contains("person, bicycle, car"));
        assert_eq!(ClassFilter::parse(" , ", &labels()), Err(ClassError::Empty));
    }
}
