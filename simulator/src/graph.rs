//! A routable graph built from the road and cycleway lines.
//!
//! The lines are display polylines, not a noded network: lines meet where
//! they share a vertex. Vertices are snapped to a 1e-5° grid (about a metre,
//! the data's own precision), and vertices in neighbouring grid cells are
//! joined too, so lines that nearly touch connect. Routing is A* over the
//! largest connected component, by length, with the ways a mode may use.

use std::collections::HashMap;

use petgraph::graph::{NodeIndex, UnGraph};
use petgraph::visit::EdgeRef;
use rstar::primitives::GeomWithData;
use rstar::RTree;

use crate::geodata::{distance_m, LonLat, WayClass};

/// How someone travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Foot,
    Bike,
    Car,
    Transit,
}

impl Mode {
    pub fn may_use(self, class: WayClass) -> bool {
        match self {
            Mode::Car => class != WayClass::Cycleway,
            Mode::Foot | Mode::Bike | Mode::Transit => class != WayClass::Motorway,
        }
    }

    /// Typical speed on a way class, m/s.
    pub fn speed_mps(self, class: WayClass) -> f64 {
        match (self, class) {
            (Mode::Foot, _) => 1.4,
            (Mode::Bike, _) => 4.5,
            (Mode::Car, WayClass::Motorway) => 27.0,
            (Mode::Car, WayClass::Major) => 12.0,
            (Mode::Car, _) => 7.0,
            (Mode::Transit, _) => 9.0,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Way {
    pub length_m: f64,
    pub class: WayClass,
}

pub struct RoadGraph {
    pub graph: UnGraph<LonLat, Way>,
    /// The component each node is in; routing stays within the largest.
    component: Vec<u32>,
    largest: u32,
    nodes: RTree<GeomWithData<LonLat, u32>>,
}

/// What the build found.
#[derive(Debug, Clone)]
pub struct Connectivity {
    pub nodes: usize,
    pub edges: usize,
    pub components: usize,
    pub total_length_km: f64,
    /// Share of all way length in the largest component.
    pub largest_share: f64,
}

impl std::fmt::Display for Connectivity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} nodes, {} edges, {:.0} km of ways in {} components; the largest holds {:.1}% of the length",
            self.nodes,
            self.edges,
            self.total_length_km,
            self.components,
            self.largest_share * 100.0
        )
    }
}

fn key(p: LonLat) -> (i64, i64) {
    ((p[0] * 1e5).round() as i64, (p[1] * 1e5).round() as i64)
}

impl RoadGraph {
    pub fn build(ways: &[(WayClass, Vec<LonLat>)]) -> (RoadGraph, Connectivity) {
        let mut graph = UnGraph::<LonLat, Way>::default();
        let mut index: HashMap<(i64, i64), NodeIndex> = HashMap::new();
        let mut node_of = |graph: &mut UnGraph<LonLat, Way>, p: LonLat| {
            *index.entry(key(p)).or_insert_with(|| graph.add_node(p))
        };
        for (class, line) in ways {
            let mut previous = node_of(&mut graph, line[0]);
            for &p in &line[1..] {
                let next = node_of(&mut graph, p);
                if next != previous {
                    let length_m = distance_m(graph[previous], graph[next]);
                    graph.add_edge(
                        previous,
                        next,
                        Way {
                            length_m,
                            class: *class,
                        },
                    );
                }
                previous = next;
            }
        }
        // Join vertices a grid cell apart: lines that nearly meet.
        let cells: Vec<((i64, i64), NodeIndex)> = index.iter().map(|(k, n)| (*k, *n)).collect();
        for ((x, y), n) in cells {
            for (dx, dy) in [(1, 0), (0, 1), (1, 1), (1, -1)] {
                if let Some(&m) = index.get(&(x + dx, y + dy)) {
                    let length_m = distance_m(graph[n], graph[m]);
                    graph.add_edge(
                        n,
                        m,
                        Way {
                            length_m,
                            class: WayClass::Local,
                        },
                    );
                }
            }
        }
        // Components by union-find over the edges.
        let mut parent: Vec<u32> = (0..graph.node_count() as u32).collect();
        fn find(parent: &mut [u32], mut i: u32) -> u32 {
            while parent[i as usize] != i {
                parent[i as usize] = parent[parent[i as usize] as usize];
                i = parent[i as usize];
            }
            i
        }
        for e in graph.edge_references() {
            let (a, b) = (
                find(&mut parent, e.source().index() as u32),
                find(&mut parent, e.target().index() as u32),
            );
            if a != b {
                parent[a as usize] = b;
            }
        }
        let component: Vec<u32> = (0..graph.node_count() as u32)
            .map(|i| find(&mut parent, i))
            .collect();
        let mut length_by: HashMap<u32, f64> = HashMap::new();
        let mut total = 0.0;
        for e in graph.edge_references() {
            *length_by.entry(component[e.source().index()]).or_default() += e.weight().length_m;
            total += e.weight().length_m;
        }
        let (largest, largest_len) = length_by
            .iter()
            .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(a.0)))
            .map(|(c, l)| (*c, *l))
            .unwrap_or((0, 0.0));
        let connectivity = Connectivity {
            nodes: graph.node_count(),
            edges: graph.edge_count(),
            components: length_by.len(),
            total_length_km: total / 1000.0,
            largest_share: if total > 0.0 {
                largest_len / total
            } else {
                0.0
            },
        };
        let nodes = RTree::bulk_load(
            graph
                .node_indices()
                .filter(|n| component[n.index()] == largest)
                .map(|n| GeomWithData::new(graph[n], n.index() as u32))
                .collect(),
        );
        (
            RoadGraph {
                graph,
                component,
                largest,
                nodes,
            },
            connectivity,
        )
    }

    /// The node of the routable network nearest to a point.
    pub fn nearest(&self, p: LonLat) -> Option<NodeIndex> {
        // Degrees are not square here; near enough for picking a node.
        self.nodes
            .nearest_neighbor(&p)
            .map(|n| NodeIndex::new(n.data as usize))
    }

    /// The node nearest `p` on a way a car may use: where a car passes a
    /// place (a place on a cycle path is reached on foot, the car parked).
    pub fn nearest_drivable(&self, p: LonLat) -> Option<NodeIndex> {
        self.nodes
            .nearest_neighbor_iter(&p)
            .map(|n| NodeIndex::new(n.data as usize))
            .take(500)
            .find(|&n| {
                self.is_routable(n)
                    && self
                        .graph
                        .edges(n)
                        .any(|e| Mode::Car.may_use(e.weight().class))
            })
    }

    /// A stretch of motorway (in Rotterdam the A15/A16/A20 ring and its
    /// spurs) of at least `min_m`, from the routable motorway node nearest
    /// `near` at a distance within `between_m` that has one, straight on at
    /// every junction (no turning back onto the other carriageway): its
    /// points. `None` when no such run starts that near.
    pub fn motorway_run(
        &self,
        near: LonLat,
        between_m: std::ops::Range<f64>,
        min_m: f64,
    ) -> Option<Vec<LonLat>> {
        let on_motorway =
            |e: &petgraph::graph::EdgeReference<Way>| e.weight().class == WayClass::Motorway;
        let mut starts: Vec<(NodeIndex, f64)> = self
            .graph
            .edge_references()
            .filter(on_motorway)
            .flat_map(|e| [e.source(), e.target()])
            .filter(|n| self.is_routable(*n))
            .map(|n| (n, distance_m(self.graph[n], near)))
            .filter(|(_, d)| between_m.contains(d))
            .collect();
        starts.sort_by(|a, b| a.1.total_cmp(&b.1));
        starts.dedup_by_key(|s| s.0);
        // A carriageway's nodes in the other direction, a slip road's end:
        // the nearest few are tried.
        starts
            .iter()
            .take(64)
            .find_map(|(start, _)| self.motorway_run_from(*start, min_m))
    }

    fn motorway_run_from(&self, start: NodeIndex, min_m: f64) -> Option<Vec<LonLat>> {
        let on_motorway =
            |e: &petgraph::graph::EdgeReference<Way>| e.weight().class == WayClass::Motorway;
        let mut run = vec![start];
        let mut length = 0.0;
        while length < min_m {
            let here = *run.last()?;
            let heading = run
                .len()
                .checked_sub(2)
                .map(|k| direction(self.graph[run[k]], self.graph[here]));
            let next = self
                .graph
                .edges(here)
                .filter(on_motorway)
                .map(|e| {
                    let other = if e.source() == here {
                        e.target()
                    } else {
                        e.source()
                    };
                    (other, e.weight().length_m)
                })
                .filter(|(n, _)| !run.contains(n))
                .map(|(n, len)| {
                    let turn =
                        heading.map_or(1.0, |h| dot(h, direction(self.graph[here], self.graph[n])));
                    (n, len, turn)
                })
                .filter(|(.., turn)| *turn > 0.5)
                .max_by(|a, b| a.2.total_cmp(&b.2));
            let (n, len, _) = next?;
            run.push(n);
            length += len;
        }
        Some(run.into_iter().map(|n| self.graph[n]).collect())
    }

    pub fn is_routable(&self, n: NodeIndex) -> bool {
        self.component[n.index()] == self.largest
    }

    /// Every routable node, for picking places.
    pub fn routable_nodes(&self) -> Vec<NodeIndex> {
        self.graph
            .node_indices()
            .filter(|n| self.is_routable(*n))
            .collect()
    }

    /// The shortest path for `mode`, as points with the speed on the way
    /// leading to each (the first point's speed is unused). `None` only
    /// between components.
    pub fn route(&self, from: NodeIndex, to: NodeIndex, mode: Mode) -> Option<Vec<(LonLat, f64)>> {
        let goal = self.graph[to];
        let (cost, path) = petgraph::algo::astar(
            &self.graph,
            from,
            |n| n == to,
            // A way the mode may not use is walked (the car parked, the
            // bike pushed): possible, but only where nothing else goes.
            |e| {
                if mode.may_use(e.weight().class) {
                    e.weight().length_m
                } else {
                    e.weight().length_m * 20.0
                }
            },
            |n| distance_m(self.graph[n], goal),
        )?;
        if !cost.is_finite() {
            return None;
        }
        let mut out = Vec::with_capacity(path.len());
        for (i, n) in path.iter().enumerate() {
            let speed = if i == 0 {
                0.0
            } else {
                let e = self.graph.find_edge(path[i - 1], *n)?;
                let class = self.graph[e].class;
                if mode.may_use(class) {
                    mode.speed_mps(class)
                } else {
                    Mode::Foot.speed_mps(class)
                }
            };
            out.push((self.graph[*n], speed));
        }
        Some(out)
    }
}

/// The unit direction from `a` to `b` on a local plane (degrees of
/// longitude shrunk to metres' proportions at Rotterdam's latitude).
fn direction(a: LonLat, b: LonLat) -> [f64; 2] {
    let east = (b[0] - a[0]) * 51.9_f64.to_radians().cos();
    let north = b[1] - a[1];
    let length = east.hypot(north).max(f64::MIN_POSITIVE);
    [east / length, north / length]
}

fn dot(a: [f64; 2], b: [f64; 2]) -> f64 {
    a[0] * b[0] + a[1] * b[1]
}
