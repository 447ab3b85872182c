#!/usr/bin/env python3
"""Builds the dashboard's offline basemap from the project's own geodata.

    python3 web/basemap/build.py            # writes web/static/basemap/rotterdam.geojson

Inputs (simulator/data, see its SOURCES.md and NOTICE.md for origin and licence):
  rotterdam_wijken_cbs2012.geojson   district outlines with names (CBS/Kadaster, CC BY)
  osm_roads_major.geojson            main roads (OpenStreetMap contributors, ODbL)

Output: one FeatureCollection. Districts are Polygon/MultiPolygon features with
`{"layer": "district", "name": ...}`; roads are one MultiLineString per class with
`{"layer": "road", "class": "motorway"|"trunk"|"primary"|"secondary"|"tertiary"}`.
Coordinates are rounded to 5 decimals (about 1 m) and lines simplified with
Douglas-Peucker (10 m for roads, 15 m for district outlines). Standard library only.
"""

import json
import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
DATA = os.path.join(ROOT, "simulator", "data")
OUT = os.path.join(ROOT, "web", "static", "basemap", "rotterdam.geojson")

ROAD_CLASSES = ("motorway", "trunk", "primary", "secondary", "tertiary")
ROAD_TOLERANCE_M = 10.0
DISTRICT_TOLERANCE_M = 15.0
MIN_ROAD_LENGTH_M = 40.0
# The simulator's box, a little wider: nothing of the map is needed outside it.
BOX = (4.30, 51.82, 4.66, 52.02)  # lon_min, lat_min, lon_max, lat_max
LAT0 = 51.92
M_PER_DEG_LAT = 110_574.0
M_PER_DEG_LON = 111_320.0 * math.cos(math.radians(LAT0))


def to_xy(p):
    return ((p[0] - 4.48) * M_PER_DEG_LON, (p[1] - LAT0) * M_PER_DEG_LAT)


def perpendicular(p, a, b):
    (px, py), (ax, ay), (bx, by) = p, a, b
    dx, dy = bx - ax, by - ay
    if dx == 0 and dy == 0:
        return math.hypot(px - ax, py - ay)
    t = ((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy)
    t = max(0.0, min(1.0, t))
    return math.hypot(px - (ax + t * dx), py - (ay + t * dy))


def simplify(coords, tolerance_m):
    """Douglas-Peucker on a local metric projection (iterative, no recursion limit)."""
    if len(coords) < 3:
        return list(coords)
    xy = [to_xy(c) for c in coords]
    keep = [False] * len(coords)
    keep[0] = keep[-1] = True
    stack = [(0, len(coords) - 1)]
    while stack:
        first, last = stack.pop()
        best, index = 0.0, None
        for i in range(first + 1, last):
            d = perpendicular(xy[i], xy[first], xy[last])
            if d > best:
                best, index = d, i
        if index is not None and best > tolerance_m:
            keep[index] = True
            stack.append((first, index))
            stack.append((index, last))
    return [c for c, k in zip(coords, keep) if k]


def rounded(coords):
    out = []
    for lon, lat in ((round(c[0], 5), round(c[1], 5)) for c in coords):
        if not out or out[-1] != [lon, lat]:
            out.append([lon, lat])
    return out


def length_m(coords):
    xy = [to_xy(c) for c in coords]
    return sum(math.hypot(b[0] - a[0], b[1] - a[1]) for a, b in zip(xy, xy[1:]))


def in_box(coords):
    return any(BOX[0] <= c[0] <= BOX[2] and BOX[1] <= c[1] <= BOX[3] for c in coords)


def ring(coords):
    r = rounded(simplify(coords, DISTRICT_TOLERANCE_M))
    if len(r) < 4:
        return None
    if r[0] != r[-1]:
        r.append(r[0])
    return r


def districts():
    with open(os.path.join(DATA, "rotterdam_wijken_cbs2012.geojson"), encoding="utf-8") as f:
        source = json.load(f)
    out = []
    for feature in source["features"]:
        geometry = feature["geometry"]
        polygons = geometry["coordinates"] if geometry["type"] == "MultiPolygon" else [geometry["coordinates"]]
        kept = []
        for polygon in polygons:
            if not in_box(polygon[0]):
                continue
            rings = [r for r in (ring(x) for x in polygon) if r]
            if rings:
                kept.append(rings)
        if not kept:
            continue
        out.append({
            "type": "Feature",
            "properties": {"layer": "district", "name": feature["properties"]["name"]},
            "geometry": {"type": "MultiPolygon", "coordinates": kept}
            if len(kept) > 1 else {"type": "Polygon", "coordinates": kept[0]},
        })
    return out


def roads():
    with open(os.path.join(DATA, "osm_roads_major.geojson"), encoding="utf-8") as f:
        source = json.load(f)
    out = {}
    for feature in source["features"]:
        cls = feature["properties"].get("highway")
        if cls not in ROAD_CLASSES or feature["geometry"]["type"] != "LineString":
            continue
        coords = feature["geometry"]["coordinates"]
        if not in_box(coords) or length_m(coords) < MIN_ROAD_LENGTH_M:
            continue
        line = rounded(simplify(coords, ROAD_TOLERANCE_M))
        if len(line) < 2:
            continue
        out.setdefault(cls, []).append(line)
    # One MultiLineString per class (a feature per segment would cost more
    # than its coordinates); minor classes first so that motorways draw on top.
    return [
        {
            "type": "Feature",
            "properties": {"layer": "road", "class": cls},
            "geometry": {"type": "MultiLineString", "coordinates": out[cls]},
        }
        for cls in reversed(ROAD_CLASSES)
        if cls in out
    ]


def main():
    collection = {
        "type": "FeatureCollection",
        "attribution": "Kadaster / CBS, Wijk- en buurtkaart 2012 (CC BY); "
                       "Map data © OpenStreetMap contributors (ODbL 1.0)",
        "features": districts() + roads(),
    }
    text = json.dumps(collection, separators=(",", ":"), ensure_ascii=False)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        f.write(text)
    counts = {"district": sum(f["properties"]["layer"] == "district" for f in collection["features"])}
    for feature in collection["features"]:
        if feature["properties"]["layer"] == "road":
            counts[feature["properties"]["class"]] = len(feature["geometry"]["coordinates"])
    print(f"{os.path.relpath(OUT, ROOT)}: {len(text.encode('utf-8')) / 1024:.0f} KiB, {counts}", file=sys.stderr)


if __name__ == "__main__":
    main()
