#!/usr/bin/env python3
"""Writes a number inventory of N US numbers for benches/inventory_scale.sh.

    python3 benches/inventory/gen.py N OUT.tsv [--sample FILE] [options]

The file has the columns of tests/corpus/emergency-invites/inventory.tsv
(number, tenant, country, common_area_phone, tenant_may_edit_address,
reg_country, reg_A1, reg_A3, reg_RD, reg_STS, reg_HNO, reg_PC) plus
location_id and reg_UNIT, both documented inventory columns
(docs/configuration.md, "The number inventory file").

What it looks like, so that the router's work is a carrier's:
  - a few thousand tenants (--tenants, default 3,000) of very different
    sizes (Zipf, exponent 0.8: the largest holds about 5 % of the numbers,
    the smallest a handful);
  - each tenant has a home state and one site per 500 numbers (1 to 50);
    about three numbers in four have an address of their own (remote
    workers, small branches, residential lines; one in three with a unit),
    the rest sit at one of their tenant's sites and share its address;
  - two tenants in five define their sites as tenant locations (location
    rows first, their site numbers name the location_id and carry no
    address); the others repeat the site's address on each such number;
  - 3 % of site numbers are Common Area Phones; three tenants in five let
    their admins edit addresses;
  - every address is a real US state, city and ZIP code of the router's
    gazetteer (data/gazetteer.json), so every call finds a PSAP; street
    names and house numbers are made up; states are weighted by population
    and each number's area code belongs to its address's state.
Numbers are unique: per area code, exchange codes 200-999 (no N11) and
line numbers in order. --block 1 takes the upper half of every area code's
numbers, for a second file (a bulk upload) that collides with none of the
first.

--sample FILE writes up to --sample-count numbers with an address of their
own, spread evenly over the file, as TSV: tenant, number, A1, A3, PC
(the benchmark changes their addresses and calls from them).
--single-tenant NAME puts every number in that tenant (an upload body).
The output depends only on N and the options (fixed --seed).
"""

import argparse
import json
import os
import random
import sys

# State: (population in millions, 2020, rounded; area codes in service).
STATES = {
    "AL": (5.0, [205, 251, 256, 334]),
    "AK": (0.7, [907]),
    "AZ": (7.2, [480, 520, 602, 623, 928]),
    "AR": (3.0, [479, 501, 870]),
    "CA": (39.5, [209, 213, 310, 323, 408, 415, 424, 510, 530, 559, 562, 619, 626, 650, 657,
                  661, 707, 714, 747, 760, 805, 818, 831, 858, 909, 916, 925, 949, 951]),
    "CO": (5.8, [303, 719, 720, 970]),
    "CT": (3.6, [203, 475, 860, 959]),
    "DE": (1.0, [302]),
    "DC": (0.7, [202]),
    "FL": (21.5, [239, 305, 321, 352, 386, 407, 561, 727, 754, 772, 786, 813, 850, 863, 904,
                  941, 954]),
    "GA": (10.7, [229, 404, 470, 478, 678, 706, 762, 770, 912]),
    "HI": (1.5, [808]),
    "ID": (1.8, [208, 986]),
    "IL": (12.8, [217, 224, 309, 312, 331, 618, 630, 708, 773, 779, 815, 847, 872]),
    "IN": (6.8, [219, 260, 317, 463, 574, 765, 812, 930]),
    "IA": (3.2, [319, 515, 563, 641, 712]),
    "KS": (2.9, [316, 620, 785, 913]),
    "KY": (4.5, [270, 364, 502, 606, 859]),
    "LA": (4.7, [225, 318, 337, 504, 985]),
    "ME": (1.4, [207]),
    "MD": (6.2, [240, 301, 410, 443, 667]),
    "MA": (7.0, [339, 351, 413, 508, 617, 774, 781, 857, 978]),
    "MI": (10.1, [231, 248, 269, 313, 517, 586, 616, 734, 810, 906, 947, 989]),
    "MN": (5.7, [218, 320, 507, 612, 651, 763, 952]),
    "MS": (3.0, [228, 601, 662, 769]),
    "MO": (6.2, [314, 417, 573, 636, 660, 816]),
    "MT": (1.1, [406]),
    "NE": (2.0, [308, 402, 531]),
    "NV": (3.1, [702, 725, 775]),
    "NH": (1.4, [603]),
    "NJ": (9.3, [201, 551, 609, 640, 732, 848, 856, 862, 908, 973]),
    "NM": (2.1, [505, 575]),
    "NY": (20.2, [212, 315, 332, 347, 516, 518, 585, 607, 631, 646, 680, 716, 718, 838, 845,
                  914, 917, 929, 934]),
    "NC": (10.4, [252, 336, 704, 743, 828, 910, 919, 980, 984]),
    "ND": (0.8, [701]),
    "OH": (11.8, [216, 220, 234, 330, 380, 419, 440, 513, 567, 614, 740, 937]),
    "OK": (4.0, [405, 539, 580, 918]),
    "OR": (4.2, [458, 503, 541, 971]),
    "PA": (13.0, [215, 223, 267, 272, 412, 445, 484, 570, 610, 717, 724, 814, 878]),
    "RI": (1.1, [401]),
    "SC": (5.1, [803, 839, 843, 854, 864]),
    "SD": (0.9, [605]),
    "TN": (6.9, [423, 615, 629, 731, 865, 901, 931]),
    "TX": (29.1, [210, 214, 254, 281, 325, 346, 361, 409, 430, 432, 469, 512, 682, 713, 726,
                  737, 806, 817, 830, 832, 903, 915, 936, 940, 956, 972, 979]),
    "UT": (3.3, [385, 435, 801]),
    "VT": (0.6, [802]),
    "VA": (8.6, [276, 434, 540, 571, 703, 757, 804]),
    "WA": (7.7, [206, 253, 360, 425, 509, 564]),
    "WV": (1.8, [304, 681]),
    "WI": (5.9, [262, 414, 534, 608, 715, 920]),
    "WY": (0.6, [307]),
}

STREETS = [
    "Main", "Oak", "Pine", "Maple", "Cedar", "Elm", "Washington", "Lake", "Hill", "Park",
    "Walnut", "Lincoln", "Jefferson", "Madison", "Franklin", "Jackson", "Church", "Spring",
    "Center", "High", "Mill", "River", "Sunset", "Highland", "Forest", "Meadow", "Ridge",
    "Willow", "Chestnut", "Adams", "Monroe", "Prospect", "Union", "Broad", "Market", "Water",
    "Railroad", "Liberty", "Cherry", "Birch", "Dogwood", "Magnolia", "Hickory", "Poplar",
    "Sycamore", "Spruce", "Laurel", "Valley", "Mountain View", "Lakeview", "Fairview",
    "Pleasant", "Grove", "Orchard", "College", "School", "Academy", "Mulberry", "Locust",
    "Vine", "Front", "Second", "Third", "Fourth", "Fifth", "Sixth", "Seventh", "Eighth",
    "Ninth", "Tenth", "1st", "2nd", "3rd", "4th", "5th", "6th", "7th", "8th", "9th", "10th",
    "N Main", "S Main", "E Main", "W Main", "N Broadway", "S Broadway", "Kings", "Queens",
    "Harbor", "Bay", "Ocean", "Canyon", "Mesa", "Desert", "Prairie", "Country Club",
    "Industrial", "Commerce", "Enterprise", "Technology", "Corporate", "Executive",
    "Research", "Airport", "Stadium", "University", "Hospital", "Depot", "Old Mill",
    "Martin Luther King Jr", "Cesar Chavez", "Veterans", "Memorial", "Independence",
]
SUFFIXES = ["St", "Ave", "Rd", "Dr", "Blvd", "Ln", "Way", "Ct", "Pl", "Pkwy", "Hwy", "Cir", "Ter"]
# Exchange codes: 200-999 without N11.
NXX = [n for n in range(200, 1000) if n % 100 != 11]
PER_NPA = len(NXX) * 10000
HEADER = ("number\ttenant\tcountry\tcommon_area_phone\ttenant_may_edit_address\tlocation_id\t"
          "reg_country\treg_A1\treg_A3\treg_RD\treg_STS\treg_HNO\treg_UNIT\treg_PC\n")


def load_places(path):
    """Per state: (cities with their ZIPs, cumulative weights by ZIP count)."""
    with open(path, encoding="utf-8") as f:
        g = json.load(f)
    zips, cities = g["zips"], g["cities"]
    places = {}
    for st in STATES:
        entries = []
        for city, counties in sorted(cities.get(st, {}).items()):
            zs = zips.get(counties[0]) if counties else None
            if zs:
                entries.append((city, zs))
        if not entries:
            sys.exit(f"gen.py: the gazetteer has no city for {st}")
        # A county's cities share its ZIPs: weight each city by its ZIPs
        # over the cities of that county, so that big counties draw more.
        per_county = {}
        for _, zs in entries:
            per_county[id(zs)] = per_county.get(id(zs), 0) + 1
        cum, total = [], 0.0
        for _, zs in entries:
            total += len(zs) / per_county[id(zs)]
            cum.append(total)
        places[st] = (entries, cum)
    return places


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("n", type=int, help="numbers to write")
    ap.add_argument("out", help="output file (TSV)")
    ap.add_argument("--tenants", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--block", type=int, choices=(0, 1), default=0)
    ap.add_argument("--single-tenant")
    ap.add_argument("--sample")
    ap.add_argument("--sample-count", type=int, default=3000)
    ap.add_argument("--gazetteer",
                    default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                         "..", "..", "data", "gazetteer.json"))
    a = ap.parse_args()
    if a.n < 1:
        sys.exit("gen.py: N must be at least 1")
    rnd = random.Random(a.seed * 1000003 + a.block)
    places = load_places(a.gazetteer)
    states = list(STATES)
    st_cum, t = [], 0.0
    for st in states:
        t += STATES[st][0]
        st_cum.append(t)
    bisect = __import__("bisect").bisect_left
    counters = {}
    base = a.block * (PER_NPA // 2)

    def pick_state():
        return states[bisect(st_cum, rnd.random() * st_cum[-1])]

    def address(st):
        entries, cum = places[st]
        city, zs = entries[bisect(cum, rnd.random() * cum[-1])]
        return (st, city, f"{rnd.choice(STREETS)}", rnd.choice(SUFFIXES),
                str(int(10 ** (rnd.random() * 4))), rnd.choice(zs))

    def number(st):
        npa = rnd.choice(STATES[st][1])
        k = counters.get(npa, base)
        if k >= base + PER_NPA // 2:
            sys.exit(f"gen.py: area code {npa} is full; use fewer numbers")
        counters[npa] = k + 1
        return f"+1{npa}{NXX[k // 10000]}{k % 10000:04d}"

    # Tenant sizes: Zipf over the tenants, at least one number each.
    tenants = 1 if a.single_tenant else max(1, min(a.tenants, a.n))
    w = [1.0 / (i + 1) ** 0.8 for i in range(tenants)]
    sw = sum(w)
    sizes = [max(1, int(a.n * x / sw)) for x in w]
    diff = a.n - sum(sizes)
    i = 0
    while diff != 0:
        j = i % tenants
        if diff > 0:
            sizes[j] += 1
            diff -= 1
        elif sizes[j] > 1:
            sizes[j] -= 1
            diff += 1
        i += 1
    order = list(range(tenants))
    rnd.shuffle(order)

    every = max(1, a.n // max(1, a.sample_count)) if a.sample else 0
    sample = []
    written = 0
    want = False
    out = open(a.out, "w", encoding="utf-8", newline="\n")
    out.write(HEADER)
    buf = []
    for ti in order:
        size = sizes[ti]
        name = a.single_tenant or f"t{ti + 1:05d}"
        home = pick_state()
        may_edit = "yes" if rnd.random() < 0.6 else "no"
        sites = []
        for s in range(min(50, 1 + size // 500)):
            sites.append(address(home if rnd.random() < 0.7 else pick_state()))
        uses_locations = rnd.random() < 0.4 and not a.single_tenant
        if uses_locations:
            for s, ad in enumerate(sites):
                buf.append(f"\t{name}\t\t\t\tsite-{s + 1}\tUS\t{ad[0]}\t{ad[1]}\t{ad[2]}\t"
                           f"{ad[3]}\t{ad[4]}\t\t{ad[5]}\n")
        for _ in range(size):
            if every and written % every == 0:
                want = True
            if rnd.random() < 0.75:
                ad = address(home if rnd.random() < 0.8 else pick_state())
                unit = str(rnd.randint(1, 40)) + rnd.choice("ABCD") if rnd.random() < 0.33 else ""
                num = number(ad[0])
                buf.append(f"{num}\t{name}\tUS\tno\t{may_edit}\t\tUS\t{ad[0]}\t{ad[1]}\t{ad[2]}\t"
                           f"{ad[3]}\t{ad[4]}\t{unit}\t{ad[5]}\n")
                if want and len(sample) < a.sample_count:
                    want = False
                    sample.append(f"{name}\t{num}\t{ad[0]}\t{ad[1]}\t{ad[5]}\n")
            else:
                s = rnd.randrange(len(sites))
                ad = sites[s]
                num = number(ad[0])
                cap = "yes" if rnd.random() < 0.03 else "no"
                if uses_locations:
                    buf.append(f"{num}\t{name}\tUS\t{cap}\t{may_edit}\tsite-{s + 1}"
                               "\t\t\t\t\t\t\t\t\n")
                else:
                    buf.append(f"{num}\t{name}\tUS\t{cap}\t{may_edit}\t\tUS\t{ad[0]}\t{ad[1]}\t"
                               f"{ad[2]}\t{ad[3]}\t{ad[4]}\t\t{ad[5]}\n")
            written += 1
            if len(buf) >= 20000:
                out.write("".join(buf))
                buf.clear()
    out.write("".join(buf))
    out.close()
    if a.sample:
        # Spread over the tenants rather than in file order.
        rnd.shuffle(sample)
        with open(a.sample, "w", encoding="utf-8") as f:
            f.write("tenant\tnumber\tA1\tA3\tPC\n")
            f.writelines(sample)
    print(f"{written} numbers, {tenants} tenants -> {a.out}"
          + (f"; {len(sample)} sampled -> {a.sample}" if a.sample else ""), file=sys.stderr)


if __name__ == "__main__":
    main()
