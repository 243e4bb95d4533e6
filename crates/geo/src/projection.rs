//! Gauss–Krüger (transverse Mercator) on GRS 80 with SWEREF 99 TM's parameters.

/// A position in SWEREF 99 TM, metres.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sweref99Tm {
    /// Northing (x in Swedish usage), metres.
    pub northing: f64,
    /// Easting (y in Swedish usage), metres.
    pub easting: f64,
}

// GRS 80 and the SWEREF 99 TM projection.
const AXIS: f64 = 6_378_137.0;
const FLATTENING: f64 = 1.0 / 298.257_222_101;
const CENTRAL_MERIDIAN_DEG: f64 = 15.0;
const SCALE: f64 = 0.9996;
const FALSE_NORTHING: f64 = 0.0;
const FALSE_EASTING: f64 = 500_000.0;

struct Constants {
    a_roof: f64,
    // conformal latitude series
    a: f64,
    b: f64,
    c: f64,
    d: f64,
    beta: [f64; 4],
    delta: [f64; 4],
    // inverse conformal latitude series
    a_star: f64,
    b_star: f64,
    c_star: f64,
    d_star: f64,
}

fn constants() -> Constants {
    let e2 = FLATTENING * (2.0 - FLATTENING);
    let n = FLATTENING / (2.0 - FLATTENING);
    let (n2, n3, n4) = (n * n, n * n * n, n * n * n * n);
    Constants {
        a_roof: AXIS / (1.0 + n) * (1.0 + n2 / 4.0 + n4 / 64.0),
        a: e2,
        b: (5.0 * e2 * e2 - e2 * e2 * e2) / 6.0,
        c: (104.0 * e2.powi(3) - 45.0 * e2.powi(4)) / 120.0,
        d: (1237.0 * e2.powi(4)) / 1260.0,
        beta: [
            n / 2.0 - 2.0 * n2 / 3.0 + 5.0 * n3 / 16.0 + 41.0 * n4 / 180.0,
            13.0 * n2 / 48.0 - 3.0 * n3 / 5.0 + 557.0 * n4 / 1440.0,
            61.0 * n3 / 240.0 - 103.0 * n4 / 140.0,
            49561.0 * n4 / 161_280.0,
        ],
        delta: [
            n / 2.0 - 2.0 * n2 / 3.0 + 37.0 * n3 / 96.0 - n4 / 360.0,
            n2 / 48.0 + n3 / 15.0 - 437.0 * n4 / 1440.0,
            17.0 * n3 / 480.0 - 37.0 * n4 / 840.0,
            4397.0 * n4 / 161_280.0,
        ],
        a_star: e2 + e2.powi(2) + e2.powi(3) + e2.powi(4),
        b_star: -(7.0 * e2.powi(2) + 17.0 * e2.powi(3) + 30.0 * e2.powi(4)) / 6.0,
        c_star: (224.0 * e2.powi(3) + 889.0 * e2.powi(4)) / 120.0,
        d_star: -(4279.0 * e2.powi(4)) / 1260.0,
    }
}

/// WGS84 (SWEREF 99 realises it within centimetres) to SWEREF 99 TM.
pub fn project(lat_deg: f64, lon_deg: f64) -> Sweref99Tm {
    let k = constants();
    let phi = lat_deg.to_radians();
    let dlambda = (lon_deg - CENTRAL_MERIDIAN_DEG).to_radians();
    let s2 = phi.sin().powi(2);
    let phi_star =
        phi - phi.sin() * phi.cos() * (k.a + k.b * s2 + k.c * s2 * s2 + k.d * s2.powi(3));
    let xi = (phi_star.tan() / dlambda.cos()).atan();
    let eta = (phi_star.cos() * dlambda.sin()).atanh();
    let mut x = xi;
    let mut y = eta;
    for (i, beta) in k.beta.iter().enumerate() {
        let m = 2.0 * (i as f64 + 1.0);
        x += beta * (m * xi).sin() * (m * eta).cosh();
        y += beta * (m * xi).cos() * (m * eta).sinh();
    }
    Sweref99Tm {
        northing: SCALE * k.a_roof * x + FALSE_NORTHING,
        easting: SCALE * k.a_roof * y + FALSE_EASTING,
    }
}

/// SWEREF 99 TM back to WGS84 latitude and longitude, degrees.
pub fn unproject(position: Sweref99Tm) -> (f64, f64) {
    let k = constants();
    let xi = (position.northing - FALSE_NORTHING) / (SCALE * k.a_roof);
    let eta = (position.easting - FALSE_EASTING) / (SCALE * k.a_roof);
    let mut xi_p = xi;
    let mut eta_p = eta;
    for (i, delta) in k.delta.iter().enumerate() {
        let m = 2.0 * (i as f64 + 1.0);
        xi_p -= delta * (m * xi).sin() * (m * eta).cosh();
        eta_p -= delta * (m * xi).cos() * (m * eta).sinh();
    }
    let phi_star = (xi_p.sin() / eta_p.cosh()).asin();
    let dlambda = (eta_p.sinh() / xi_p.cos()).atan();
    let s2 = phi_star.sin().powi(2);
    let phi = phi_star
        + phi_star.sin()
            * phi_star.cos()
            * (k.a_star + k.b_star * s2 + k.c_star * s2 * s2 + k.d_star * s2.powi(3));
    (
        phi.to_degrees(),
        CENTRAL_MERIDIAN_DEG + dlambda.to_degrees(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (lat, lon, northing, easting). The first is Stockholm Central Station as
    /// published to the metre; the rest were computed with PROJ 9.5 (EPSG:4326 to
    /// EPSG:3006), an independent implementation, to a tenth of a millimetre.
    #[allow(clippy::excessive_precision)]
    const PROJ_REFERENCE: &[(f64, f64, f64, f64)] = &[
        (58.0, 15.0, 6428710.1588, 500000.0),
        (55.0, 12.0, 6098907.8250, 308124.3679),
        (66.0, 24.0, 7349217.6675, 907351.9808),
        (69.0, 20.0, 7662506.8036, 699782.4306),
        (55.3, 12.8, 6130380.9007, 360333.2594),
        (57.7, 11.9, 6399536.7787, 315270.1412),
        (59.33, 18.07, 6580824.5756, 674647.8821),
        (62.4, 17.3, 6920856.5700, 618867.1854),
        (65.6, 22.1, 7293793.6842, 826731.2050),
        (68.35, 18.8, 7586708.9509, 656372.1732),
        (63.8, 20.26, 7085401.1469, 758893.0602),
        (56.16, 15.59, 6224044.0993, 536644.5974),
        (59.33236, 18.06454, 6581072.8866, 674325.3194),
    ];

    #[test]
    fn matches_reference_points_to_a_millimetre() {
        for &(lat, lon, northing, easting) in PROJ_REFERENCE {
            let p = project(lat, lon);
            assert!(
                (p.northing - northing).abs() < 0.001 && (p.easting - easting).abs() < 0.001,
                "({lat}, {lon}) gave {p:?}, expected N {northing} E {easting}"
            );
        }
    }

    #[test]
    fn stockholm_central_station_as_published() {
        let p = project(59.330231, 18.059196);
        assert!((p.northing - 6_580_822.0).abs() < 1.0, "{p:?}");
        assert!((p.easting - 674_032.0).abs() < 1.0, "{p:?}");
    }

    #[test]
    fn inverse_round_trips() {
        for &(lat, lon, _, _) in PROJ_REFERENCE {
            let (lat2, lon2) = unproject(project(lat, lon));
            assert!(
                (lat - lat2).abs() < 1e-9 && (lon - lon2).abs() < 1e-9,
                "{lat},{lon}"
            );
        }
    }
}
