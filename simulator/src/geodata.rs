//! The Rotterdam layers the simulator moves people over, read from the
//! GeoJSON in `simulator/data/` (see its NOTICE for attribution). The files
//! are compiled into the binary, so the simulator runs from anywhere.

use serde::Deserialize;

pub const ROADS_MAJOR: &str = include_str!("../data/osm_roads_major.geojson");
pub const ROADS_LOCAL: &str = include_str!("../data/osm_roads_local.geojson");
pub const CYCLEWAYS: &str = include_str!("../data/osm_cycleways.geojson");
pub const TRANSIT_ROUTES: &str = include_str!("../data/osm_ret_transit_routes.geojson");
pub const DISTRICTS: &str = include_str!("../data/rotterdam_wijken_cbs2012.geojson");

/// `[lon, lat]` in degrees, as GeoJSON has it.
pub type LonLat = [f64; 2];

#[derive(Deserialize)]
struct Collection<P> {
    features: Vec<Feature<P>>,
}

#[derive(Deserialize)]
struct Feature<P> {
    properties: P,
    geometry: Geometry,
}

#[derive(Deserialize)]
#[serde(tag = "type")]
enum Geometry {
    LineString { coordinates: Vec<LonLat> },
    MultiLineString { coordinates: Vec<Vec<LonLat>> },
    Polygon { coordinates: Vec<Vec<LonLat>> },
    MultiPolygon { coordinates: Vec<Vec<Vec<LonLat>>> },
}

impl Geometry {
    fn lines(self) -> Vec<Vec<LonLat>> {
        match self {
            Geometry::LineString { coordinates } => vec![coordinates],
            Geometry::MultiLineString { coordinates } => coordinates,
            _ => Vec::new(),
        }
    }
}

/// The kind of way a line is, which sets who may use it and how fast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WayClass {
    Motorway,
    Major,
    Local,
    Cycleway,
}

#[derive(Deserialize)]
struct RoadProps {
    #[serde(default)]
    highway: Option<String>,
}

/// Every road and cycleway line with its class.
pub fn ways() -> Result<Vec<(WayClass, Vec<LonLat>)>, serde_json::Error> {
    let mut out = Vec::new();
    for (text, default) in [
        (ROADS_MAJOR, WayClass::Major),
        (ROADS_LOCAL, WayClass::Local),
        (CYCLEWAYS, WayClass::Cycleway),
    ] {
        let collection: Collection<RoadProps> = serde_json::from_str(text)?;
        for f in collection.features {
            let class = match f.properties.highway.as_deref() {
                Some("motorway" | "trunk") => WayClass::Motorway,
                _ => default,
            };
            for line in f.geometry.lines() {
                if line.len() >= 2 {
                    out.push((class, line));
                }
            }
        }
    }
    Ok(out)
}

#[derive(Deserialize)]
struct RouteProps {
    mode: String,
    #[serde(rename = "ref")]
    reference: String,
}

/// A RET metro or tram line.
#[derive(Debug, Clone)]
pub struct TransitLine {
    pub mode: String,
    pub reference: String,
    pub path: Vec<LonLat>,
}

pub fn transit_lines() -> Result<Vec<TransitLine>, serde_json::Error> {
    let collection: Collection<RouteProps> = serde_json::from_str(TRANSIT_ROUTES)?;
    Ok(collection
        .features
        .into_iter()
        .flat_map(|f| {
            let (mode, reference) = (f.properties.mode, f.properties.reference);
            f.geometry.lines().into_iter().map(move |path| TransitLine {
                mode: mode.clone(),
                reference: reference.clone(),
                path,
            })
        })
        .filter(|l| l.path.len() >= 2)
        .collect())
}

#[derive(Deserialize)]
struct DistrictProps {
    name: String,
}

/// A CBS district (wijk) of Rotterdam: its name and outer rings.
#[derive(Debug, Clone)]
pub struct District {
    pub name: String,
    pub rings: Vec<Vec<LonLat>>,
}

impl District {
    pub fn contains(&self, p: LonLat) -> bool {
        self.rings.iter().filter(|r| ring_contains(r, p)).count() % 2 == 1
    }
}

pub fn districts() -> Result<Vec<District>, serde_json::Error> {
    let collection: Collection<DistrictProps> = serde_json::from_str(DISTRICTS)?;
    Ok(collection
        .features
        .into_iter()
        .map(|f| District {
            name: f.properties.name,
            rings: match f.geometry {
                Geometry::Polygon { coordinates } => coordinates,
                Geometry::MultiPolygon { coordinates } => {
                    coordinates.into_iter().flatten().collect()
                }
                _ => Vec::new(),
            },
        })
        .collect())
}

fn ring_contains(ring: &[LonLat], p: LonLat) -> bool {
    let mut inside = false;
    for w in ring.windows(2) {
        let (a, b) = (w[0], w[1]);
        if (a[1] > p[1]) != (b[1] > p[1]) {
            let x = a[0] + (p[1] - a[1]) / (b[1] - a[1]) * (b[0] - a[0]);
            if p[0] < x {
                inside = !inside;
            }
        }
    }
    inside
}

/// Metres per degree at Rotterdam's latitude; distances in the simulator
/// are short, so a local flat projection is exact to centimetres per km.
pub const M_PER_DEG_LAT: f64 = 111_195.0;
pub fn m_per_deg_lon() -> f64 {
    M_PER_DEG_LAT * 51.92f64.to_radians().cos()
}

pub fn distance_m(a: LonLat, b: LonLat) -> f64 {
    let dx = (a[0] - b[0]) * m_per_deg_lon();
    let dy = (a[1] - b[1]) * M_PER_DEG_LAT;
    (dx * dx + dy * dy).sqrt()
}

/// The point `east`/`north` metres from `p`.
pub fn offset(p: LonLat, east_m: f64, north_m: f64) -> LonLat {
    [
        p[0] + east_m / m_per_deg_lon(),
        p[1] + north_m / M_PER_DEG_LAT,
    ]
}
