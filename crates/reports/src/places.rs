//! Named places of Stockholm city (Norrmalm), approximate to about 50 m.

use std::sync::OnceLock;

/// A named place.
#[derive(Debug, Clone, PartialEq)]
pub struct Place {
    /// Its name, e.g. `Sergels torg`.
    pub name: String,
    /// Latitude, WGS84.
    pub lat: f64,
    /// Longitude, WGS84.
    pub lon: f64,
    /// What kind of place: square, station, street, passage, ...
    pub kind: String,
}

const PLACES_CSV: &str = include_str!("../data/places-norrmalm.csv");

/// Every known place.
pub fn places() -> &'static [Place] {
    static PLACES: OnceLock<Vec<Place>> = OnceLock::new();
    PLACES.get_or_init(|| {
        PLACES_CSV
            .lines()
            .filter(|l| !l.starts_with('#') && !l.starts_with("name,") && !l.trim().is_empty())
            .filter_map(|l| {
                let mut f = l.split(',');
                Some(Place {
                    name: f.next()?.to_owned(),
                    lat: f.next()?.parse().ok()?,
                    lon: f.next()?.parse().ok()?,
                    kind: f.next()?.to_owned(),
                })
            })
            .collect()
    })
}

/// The place with this name (case-insensitive).
pub fn place(name: &str) -> Option<&'static Place> {
    places().iter().find(|p| p.name.eq_ignore_ascii_case(name))
}

/// The longest place name mentioned in `text` (case-insensitive), if any.
pub fn mentioned_in(text: &str) -> Option<&'static Place> {
    let text = text.to_lowercase();
    places()
        .iter()
        .filter(|p| text.contains(&p.name.to_lowercase()))
        .max_by_key(|p| p.name.len())
}

/// The nearest known place to a position, with its distance in metres.
pub fn nearest(lat: f64, lon: f64) -> Option<(&'static Place, f64)> {
    places()
        .iter()
        .map(|p| (p, distance_m(lat, lon, p.lat, p.lon)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
}

/// Distance on a sphere, metres; plenty for a city centre.
pub fn distance_m(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * 6_371_000.0 * a.sqrt().asin()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_loaded() {
        assert!(places().len() >= 20);
        assert_eq!(place("sergels torg").unwrap().kind, "square");
        assert_eq!(
            mentioned_in("Rån mot person på Drottninggatan.")
                .unwrap()
                .name,
            "Drottninggatan"
        );
        let (near, d) = nearest(59.3324, 18.0645).unwrap();
        assert!(d < 100.0, "{near:?} {d}");
    }
}
