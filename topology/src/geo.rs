//! Geography: great-circle distance and the expected propagation delay of a link.

use crate::model::LinkKind;

/// Mean Earth radius (IUGG), km.
const EARTH_RADIUS_KM: f64 = 6371.0088;

/// Light in fiber covers about 200 km per millisecond (refractive index ≈ 1.47).
pub const FIBER_KM_PER_MS: f64 = 200.0;

/// Great-circle distance in km between two points given in degrees (haversine formula).
pub fn great_circle_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = (lat2 - lat1).to_radians();
    let dl = (lon2 - lon1).to_radians();
    let h = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
}

/// How much longer than the great circle a real cable of this kind runs.
///
/// Undersea cables follow the sea floor between landing stations; terrestrial
/// circuits follow roads and railways; internet paths add detours through
/// exchange points. The figures are typical ratios of measured to great-circle
/// latency, not a law of nature: a link that knows its delay states `delay_ms`.
pub fn route_factor(kind: LinkKind) -> f64 {
    match kind {
        LinkKind::Undersea => 1.3,
        LinkKind::Terrestrial => 1.5,
        LinkKind::Internet => 2.0,
    }
}

/// Expected one-way delay in microseconds over `km` of cable of this kind (at least 1 µs).
pub fn expected_delay_us(kind: LinkKind, km: f64) -> u64 {
    let ms = km / FIBER_KM_PER_MS * route_factor(kind);
    ((ms * 1000.0).round() as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shanghai_to_los_angeles_is_about_10_400_km() {
        let km = great_circle_km(31.23, 121.47, 34.05, -118.24);
        assert!((10_300.0..10_600.0).contains(&km), "{km}");
        // The physical floor quoted in DESIGN.md: at least 52 ms one way in fiber.
        assert!(km / FIBER_KM_PER_MS >= 51.5);
    }

    #[test]
    fn distance_is_symmetric_and_zero_on_the_spot() {
        let a = great_circle_km(1.35, 103.82, 35.68, 139.69);
        let b = great_circle_km(35.68, 139.69, 1.35, 103.82);
        assert!((a - b).abs() < 1e-9);
        assert_eq!(great_circle_km(10.0, 20.0, 10.0, 20.0), 0.0);
    }

    #[test]
    fn antipodes_are_half_the_circumference() {
        let km = great_circle_km(0.0, 0.0, 0.0, 180.0);
        assert!((km - std::f64::consts::PI * EARTH_RADIUS_KM).abs() < 1.0);
    }

    #[test]
    fn delay_grows_with_route_factor() {
        let km = 1000.0;
        assert_eq!(expected_delay_us(LinkKind::Undersea, km), 6500);
        assert_eq!(expected_delay_us(LinkKind::Terrestrial, km), 7500);
        assert_eq!(expected_delay_us(LinkKind::Internet, km), 10_000);
        assert_eq!(expected_delay_us(LinkKind::Terrestrial, 0.0), 1);
    }
}
