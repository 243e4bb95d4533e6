//! Names of categories, sources and TLP markings as files and people write them.

use crate::{Category, Source, Tlp};

/// Every category with its file name, in code order.
pub const CATEGORIES: &[(Category, &str)] = &[
    (Category::Violence, "violence"),
    (Category::Robbery, "robbery"),
    (Category::Theft, "theft"),
    (Category::Shoplifting, "shoplifting"),
    (Category::Vandalism, "vandalism"),
    (Category::Drugs, "drugs"),
    (Category::Disorder, "disorder"),
    (Category::Threat, "threat"),
    (Category::Harassment, "harassment"),
    (Category::SexualOffence, "sexual_offence"),
    (Category::Weapons, "weapons"),
    (Category::Fire, "fire"),
    (Category::Traffic, "traffic"),
    (Category::LightingFault, "lighting_fault"),
    (Category::DarkArea, "dark_area"),
    (Category::Littering, "littering"),
    (Category::Crowding, "crowding"),
    (Category::Other, "other"),
];

const SOURCES: &[(Source, &str)] = &[
    (Source::Patrol, "patrol"),
    (Source::Guard, "guard"),
    (Source::Camera, "camera"),
    (Source::Staff, "staff"),
    (Source::Citizen, "citizen"),
    (Source::Sensor, "sensor"),
];

const TLPS: &[(Tlp, &str)] = &[
    (Tlp::Clear, "clear"),
    (Tlp::Green, "green"),
    (Tlp::Amber, "amber"),
    (Tlp::AmberStrict, "amber+strict"),
    (Tlp::Red, "red"),
];

fn normalise(name: &str) -> String {
    name.trim().to_ascii_lowercase().replace([' ', '-'], "_")
}

/// The category named `name` (`violence`, `sexual-offence`, `Dark area`, ...).
pub fn parse_category(name: &str) -> Option<Category> {
    let name = normalise(name);
    CATEGORIES.iter().find(|(_, n)| *n == name).map(|(c, _)| *c)
}

/// The file name of a category.
pub fn category_name(category: Category) -> &'static str {
    CATEGORIES
        .iter()
        .find(|(c, _)| *c == category)
        .map_or("unspecified", |(_, n)| n)
}

/// The file name of a TLP marking.
pub fn tlp_name(tlp: Tlp) -> &'static str {
    TLPS.iter()
        .find(|(t, _)| *t == tlp)
        .map_or("unspecified", |(_, n)| n)
}

/// The source named `name`.
pub fn parse_source(name: &str) -> Option<Source> {
    let name = normalise(name);
    SOURCES.iter().find(|(_, n)| *n == name).map(|(s, _)| *s)
}

/// The TLP marking named `name` (`clear`, `TLP:AMBER+STRICT`, `amber_strict`, ...).
pub fn parse_tlp(name: &str) -> Option<Tlp> {
    let name = normalise(name);
    let name = name
        .strip_prefix("tlp:")
        .unwrap_or(&name)
        .replace("_strict", "+strict");
    TLPS.iter().find(|(_, n)| *n == name).map(|(t, _)| *t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for (category, name) in CATEGORIES {
            assert_eq!(parse_category(name), Some(*category));
            assert_eq!(category_name(*category), *name);
        }
        assert_eq!(
            parse_category("Sexual offence"),
            Some(Category::SexualOffence)
        );
        assert_eq!(parse_category("mugging"), None);
        assert_eq!(parse_tlp("TLP:AMBER+STRICT"), Some(Tlp::AmberStrict));
        assert_eq!(parse_tlp("amber_strict"), Some(Tlp::AmberStrict));
        assert_eq!(parse_source("Guard"), Some(Source::Guard));
    }
}
