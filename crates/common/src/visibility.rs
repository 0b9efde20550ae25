//! Visibility: whether a resource is its owner's alone or shared with every user.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Who may read a resource (an agent, a discussion) besides its owner and admins.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    /// Its owner and admins only.
    #[default]
    Private,
    /// Every user may read it (and use an agent in their discussions).
    Shared,
}

impl Visibility {
    /// The name used in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Private => "private",
            Visibility::Shared => "shared",
        }
    }

    pub fn is_shared(self) -> bool {
        self == Visibility::Shared
    }
}

impl fmt::Display for Visibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Visibility {
    type Err = ();

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "private" => Ok(Visibility::Private),
            "shared" => Ok(Visibility::Shared),
            _ => Err(()),
        }
    }
}

#[cfg(feature = "spin")]
mod db {
    use super::Visibility;
    use crate::db::{FromValue, ParameterValue};
    use spin_sdk::pg::DbValue;

    impl FromValue for Visibility {
        fn from_value(value: &DbValue) -> Result<Self, String> {
            let text = String::from_value(value)?;
            text.parse()
                .map_err(|()| format!("{text:?} is not a visibility"))
        }
    }

    impl From<Visibility> for ParameterValue {
        fn from(visibility: Visibility) -> Self {
            visibility.as_str().to_owned().into()
        }
    }
}
