//! The city and how people move through it: the road graph, RET lines,
//! districts, and day plans made of stays and journeys with a true position
//! at every instant.

use petgraph::graph::NodeIndex;
use rand::Rng;

use crate::geodata::{self, distance_m, District, LonLat, TransitLine, WayClass};
use crate::graph::{Connectivity, Mode, RoadGraph};

pub struct World {
    pub graph: RoadGraph,
    pub lines: Vec<TransitLine>,
    pub districts: Vec<District>,
    nodes: Vec<NodeIndex>,
}

impl World {
    pub fn load() -> Result<(World, Connectivity), serde_json::Error> {
        let ways = geodata::ways()?;
        let (graph, connectivity) = RoadGraph::build(&ways);
        let lines = geodata::transit_lines()?;
        let districts = geodata::districts()?;
        let nodes = graph.routable_nodes();
        Ok((
            World {
                graph,
                lines,
                districts,
                nodes,
            },
            connectivity,
        ))
    }

    pub fn point(&self, n: NodeIndex) -> LonLat {
        self.graph.graph[n]
    }

    /// A random routable node inside the simulator's box, in a named district.
    pub fn random_place(&self, rng: &mut impl Rng) -> NodeIndex {
        loop {
            let n = self.nodes[rng.random_range(0..self.nodes.len())];
            let p = self.point(n);
            let in_box = (51.86..51.97).contains(&p[1]) && (4.38..4.58).contains(&p[0]);
            if in_box && self.districts.iter().any(|d| d.contains(p)) {
                return n;
            }
        }
    }

    /// A random place between `min_m` and `max_m` from `from`.
    pub fn place_near(
        &self,
        rng: &mut impl Rng,
        from: LonLat,
        min_m: f64,
        max_m: f64,
    ) -> NodeIndex {
        for _ in 0..2000 {
            let n = self.random_place(rng);
            let d = distance_m(from, self.point(n));
            if d >= min_m && d <= max_m {
                return n;
            }
        }
        self.random_place(rng)
    }

    /// A node about `distance` metres from `centre`, for loitering.
    pub fn node_at_distance(&self, centre: LonLat, distance: f64) -> Option<NodeIndex> {
        self.nodes
            .iter()
            .copied()
            .filter(|n| {
                let p = self.point(*n);
                (p[1] - centre[1]).abs() < 0.01 && (p[0] - centre[0]).abs() < 0.015
            })
            .min_by(|a, b| {
                let da = (distance_m(centre, self.point(*a)) - distance).abs();
                let db = (distance_m(centre, self.point(*b)) - distance).abs();
                da.total_cmp(&db)
            })
    }

    /// Whether a point is among high-rise (urban canyon): the centre.
    pub fn is_canyon(&self, p: LonLat) -> bool {
        self.districts
            .iter()
            .any(|d| d.name == "Rotterdam Centrum" && d.contains(p))
    }
}

/// Where someone is at an instant, and how.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct State {
    pub position: LonLat,
    pub moving: bool,
    pub indoor: bool,
}

#[derive(Debug, Clone)]
pub enum Leg {
    Stay {
        from: f64,
        to: f64,
        at: LonLat,
        indoor: bool,
    },
    Move {
        from: f64,
        to: f64,
        points: Vec<LonLat>,
        /// Time at each point, seconds since the start.
        times: Vec<f64>,
        mode: Mode,
    },
}

impl Leg {
    fn span(&self) -> (f64, f64) {
        match self {
            Leg::Stay { from, to, .. } | Leg::Move { from, to, .. } => (*from, *to),
        }
    }
}

/// A day (or several) of one person: legs end to end from time 0.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub legs: Vec<Leg>,
}

impl Plan {
    pub fn end(&self) -> f64 {
        self.legs.last().map_or(0.0, |l| l.span().1)
    }

    pub fn position(&self) -> LonLat {
        match self.legs.last() {
            Some(Leg::Stay { at, .. }) => *at,
            Some(Leg::Move { points, .. }) => *points.last().expect("a journey has points"),
            None => [0.0, 0.0],
        }
    }

    pub fn state_at(&self, t: f64) -> State {
        let i = self
            .legs
            .partition_point(|l| l.span().1 <= t)
            .min(self.legs.len().saturating_sub(1));
        match &self.legs[i] {
            Leg::Stay { at, indoor, .. } => State {
                position: *at,
                moving: false,
                indoor: *indoor,
            },
            Leg::Move { points, times, .. } => {
                let j = times.partition_point(|x| *x <= t);
                let position = if j == 0 {
                    points[0]
                } else if j >= points.len() {
                    *points.last().expect("points")
                } else {
                    let (a, b) = (points[j - 1], points[j]);
                    let f =
                        ((t - times[j - 1]) / (times[j] - times[j - 1]).max(1e-9)).clamp(0.0, 1.0);
                    [a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f]
                };
                State {
                    position,
                    moving: true,
                    indoor: false,
                }
            }
        }
    }

    /// Stays where the plan ends until `until`.
    pub fn stay_until(&mut self, until: f64, indoor: bool) {
        let from = self.end();
        if until > from {
            let at = self.position();
            self.legs.push(Leg::Stay {
                from,
                to: until,
                at,
                indoor,
            });
        }
    }

    /// Follows `points` with a speed per segment (`speeds[i]` leads to
    /// point i), starting now.
    pub fn travel(&mut self, points: Vec<LonLat>, speeds: &[f64], mode: Mode) {
        if points.len() < 2 {
            return;
        }
        let from = self.end();
        let mut times = Vec::with_capacity(points.len());
        let mut t = from;
        times.push(t);
        for i in 1..points.len() {
            t += distance_m(points[i - 1], points[i]) / speeds[i].max(0.5);
            times.push(t);
        }
        self.legs.push(Leg::Move {
            from,
            to: t,
            points,
            times,
            mode,
        });
    }

    /// Goes from where the plan ends to `to`, by `mode`, through the city.
    pub fn go(&mut self, world: &World, to: NodeIndex, mode: Mode) {
        let here = self.position();
        let Some(from) = world.graph.nearest(here) else {
            return;
        };
        if from == to {
            return;
        }
        if mode == Mode::Transit && self.ride(world, world.point(to)) {
            return;
        }
        let mode = if mode == Mode::Transit {
            Mode::Bike
        } else {
            mode
        };
        if let Some(route) = world.graph.route(from, to, mode) {
            let (points, speeds): (Vec<LonLat>, Vec<f64>) = std::iter::once((here, 0.0))
                .chain(route.into_iter().map(|(p, s)| {
                    (
                        p,
                        if s == 0.0 {
                            Mode::Foot.speed_mps(WayClass::Local)
                        } else {
                            s
                        },
                    )
                }))
                .unzip();
            self.travel(points, &speeds, mode);
        }
    }

    /// By tram or metro when one line runs near both ends: walk to it, ride,
    /// walk from it. Returns false when no line fits.
    fn ride(&mut self, world: &World, to: LonLat) -> bool {
        let here = self.position();
        let nearest = |line: &TransitLine, p: LonLat| {
            line.path
                .iter()
                .enumerate()
                .map(|(i, q)| (i, distance_m(p, *q)))
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .expect("lines have points")
        };
        let best = world
            .lines
            .iter()
            .map(|line| (line, nearest(line, here), nearest(line, to)))
            .filter(|(_, a, b)| a.1 < 700.0 && b.1 < 700.0 && a.0.abs_diff(b.0) > 3)
            .min_by(|x, y| (x.1 .1 + x.2 .1).total_cmp(&(y.1 .1 + y.2 .1)));
        let Some((line, (board, _), (alight, _))) = best else {
            return false;
        };
        let ride_speed = if line.mode == "metro" { 11.0 } else { 6.5 };
        let mut points = vec![here];
        let mut speeds = vec![0.0];
        let stretch: Vec<LonLat> = if board < alight {
            line.path[board..=alight].to_vec()
        } else {
            line.path[alight..=board].iter().rev().copied().collect()
        };
        for (k, p) in stretch.into_iter().enumerate() {
            points.push(p);
            speeds.push(if k == 0 { 1.4 } else { ride_speed });
        }
        points.push(to);
        speeds.push(1.4);
        self.travel(points, &speeds, Mode::Transit);
        true
    }
}
