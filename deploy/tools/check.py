#!/usr/bin/env python3
"""Checks the deployment files under deploy/ against each other and against
the sources they describe (src/metrics.rs, src/config.rs, src/main.rs,
Cargo.toml). Run by .ci/deploy-check, which installs the external tools and
passes their paths; every check that needs a missing tool says so and falls
back to what Python alone can check.

Prints one line per check and exits 1 if any failed.
"""

import argparse
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib  # type: ignore


class Report:
    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.section = ""

    def start(self, title):
        self.section = title
        print(f"\n== {title}")

    def ok(self, what):
        self.passed += 1
        print(f"  ok    {what}")

    def fail(self, what, detail=""):
        self.failed += 1
        print(f"  FAIL  {what}")
        for line in str(detail).rstrip().splitlines():
            print(f"        {line}")

    def note(self, what):
        print(f"  note  {what}")

    def check(self, cond, what, detail=""):
        if cond:
            self.ok(what)
        else:
            self.fail(what, detail)
        return cond

    def all_of(self, what, problems):
        """One check made of many small ones: passes when problems is empty."""
        problems = list(problems)
        if problems:
            self.fail(what, "\n".join(problems[:40]) + ("\n..." if len(problems) > 40 else ""))
        else:
            self.ok(what)
        return not problems


R = Report()


def run(cmd, **kw):
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


# --------------------------------------------------------------------------
# What the sources say
# --------------------------------------------------------------------------

TARGET_LABELS = {"instance", "job", "namespace", "pod", "node", "site"}
# Series that Prometheus itself makes for every target.
PROMETHEUS_SERIES = {"up"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


class Metrics:
    """Names, labels and kinds from src/metrics.rs."""

    def __init__(self, root):
        text = (root / "src/metrics.rs").read_text()
        consts = dict(re.findall(r'pub const ([A-Z0-9_]+): &str = "([^"]+)";', text))
        self.by_const = consts
        self.names = set(consts.values())
        self.labels = {n: set() for n in self.names}
        self.values = {n: {} for n in self.names}
        for const, help_text in re.findall(r'\(\s*([A-Z0-9_]+)\s*,\s*"([^"]*)"\s*,?\s*\)', text):
            name = consts.get(const)
            if not name:
                continue
            m = re.search(r"labels:\s*(.*)$", help_text)
            if not m:
                continue
            spec = m.group(1)
            # "outcome (answered, failed, cancelled)", "path (fast or full)"
            for label, paren in re.findall(r"([a-z_]+)\s*(?:\(([^)]*)\))?", spec):
                self.labels[name].add(label)
                if paren:
                    items = [i.strip() for i in re.split(r",|\bor\b", paren) if i.strip()]
                    if len(items) >= 2 and all(re.fullmatch(r"[a-z0-9-]+", i) for i in items):
                        self.values[name][label] = set(items)
        # Histograms: a *_BUCKETS constant names the metric it belongs to
        # (CALL_SETUP_BUCKETS, ROUTING_BUCKETS for ROUTING_DECISION), and any
        # histogram!() use in src/ does too.
        self.histograms = set()
        for prefix in re.findall(r"pub const ([A-Z0-9_]+)_BUCKETS\b", text):
            matches = [c for c in consts if c == prefix or c.startswith(prefix + "_")]
            if len(matches) == 1:
                self.histograms.add(consts[matches[0]])
        for path in (root / "src").rglob("*.rs"):
            for const in re.findall(r"histogram!\(\s*(?:m|metrics|crate::metrics)::([A-Z0-9_]+)", path.read_text()):
                if const in consts:
                    self.histograms.add(consts[const])

    def resolve(self, series):
        """The metric a series name belongs to, and the problem if any."""
        if series in self.names:
            if series in self.histograms:
                return series, f"{series} is a histogram: use {series}_bucket, _sum or _count"
            return series, None
        for suffix in HISTOGRAM_SUFFIXES:
            base = series[: -len(suffix)]
            if series.endswith(suffix) and base in self.names:
                if base in self.histograms:
                    return base, None
                return base, f"{series}: {base} is not a histogram"
        return None, f"{series} is not a metric in src/metrics.rs"


def trunk_kinds(root):
    """Trunk kinds as the config spells them (serde kebab-case)."""
    text = (root / "src/config.rs").read_text()
    m = re.search(r"pub enum TrunkKind\s*\{(.*?)\n\}", text, re.S)
    if not m:
        return set()
    body = re.sub(r"//[^\n]*", "", m.group(1))
    return {kebab(v) for v in re.findall(r"\b([A-Z][A-Za-z0-9]*)\s*,", body)}


def kebab(name):
    return re.sub(r"(?<!^)([A-Z])", r"-\1", name).lower()


def cli_run_has_config(root):
    """`sosrouter run --config FILE` exists in src/main.rs."""
    text = (root / "src/main.rs").read_text()
    m = re.search(r"enum Command\s*\{(.*?)\n\}", text, re.S)
    if not m:
        return False
    run = re.search(r"\bRun\s*\{(.*?)\}", m.group(1), re.S)
    return bool(run and re.search(r"\bconfig\s*:", run.group(1)))


# --------------------------------------------------------------------------
# PromQL: metric names and labels in an expression
# --------------------------------------------------------------------------

PROMQL_KEYWORDS = {
    "and", "or", "unless", "offset", "bool", "by", "without", "on", "ignoring",
    "group_left", "group_right", "inf", "nan", "atan2", "start", "end",
    # aggregation operators: also written `sum by (x) (...)`
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "limitk", "limit_ratio",
}
LABEL_LIST_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
TOKEN = re.compile(
    r"""(?P<ws>\s+)
      | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
      | (?P<range>\[[^\]]*\])
      | (?P<num>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?:ms|[smhdwy])?(?:\d+(?:ms|[smhdwy]))*)
      | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
      | (?P<brace>\{)
      | (?P<paren>\()
      | (?P<other>.)""",
    re.X | re.S,
)
MATCHER = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\')\s*,?')

GRAFANA_VARS = {
    "$__rate_interval": "5m", "${__rate_interval}": "5m", "$__interval": "1m",
    "${__interval}": "1m", "$__range": "1h", "${__range}": "1h",
}


def grafana_substitute(expr, variables):
    for k, v in GRAFANA_VARS.items():
        expr = expr.replace(k, v)
    for name in variables:
        expr = expr.replace("${" + name + "}", ".*").replace("$" + name, ".*")
    return expr


def read_matchers(s, i):
    """Matchers of a selector whose '{' is at s[i-1]; returns (list, end)."""
    out = []
    while True:
        while i < len(s) and s[i] in " \t\n,":
            i += 1
        if i < len(s) and s[i] == "}":
            return out, i + 1
        m = MATCHER.match(s, i)
        if not m:
            raise ValueError(f"cannot read label matchers at: {s[i:i + 40]!r}")
        value = m.group(3)[1:-1]
        out.append((m.group(1), m.group(2), value))
        i = m.end()


def read_label_list(s, i):
    """Label names of '(a, b)' starting at s[i] == '('."""
    j = s.index(")", i)
    return [x.strip() for x in s[i + 1 : j].split(",") if x.strip()], j + 1


def promql_refs(expr):
    """[(metric, [(label, op, value)])], [grouping labels]"""
    selectors, grouping = [], []
    i = 0
    while i < len(expr):
        m = TOKEN.match(expr, i)
        kind, text = m.lastgroup, m.group(0)
        i = m.end()
        if kind == "ident":
            j = i
            while j < len(expr) and expr[j] in " \t\n":
                j += 1
            nxt = expr[j] if j < len(expr) else ""
            low = text.lower()
            if low in LABEL_LIST_KEYWORDS:
                if nxt == "(":
                    labels, i = read_label_list(expr, j)
                    grouping.extend(labels)
                continue
            if low in PROMQL_KEYWORDS:
                continue
            if nxt == "(":  # a function or aggregation
                continue
            matchers = []
            if nxt == "{":
                matchers, i = read_matchers(expr, j + 1)
            selectors.append((text, matchers))
        elif kind == "brace":
            matchers, i = read_matchers(expr, i)
            name = [v for (l, op, v) in matchers if l == "__name__" and op == "="]
            selectors.append((name[0] if name else "{}", matchers))
    return selectors, grouping


def check_promql(metrics, kinds, expr, where):
    """Problems with the metric names and labels one expression uses."""
    problems = []
    try:
        selectors, grouping = promql_refs(expr)
    except ValueError as e:
        return [f"{where}: {e}"], set()
    used = set()
    allowed = set(TARGET_LABELS)
    for series, matchers in selectors:
        if series in PROMETHEUS_SERIES:
            allowed |= {l for l, _, _ in matchers}
            continue
        base, problem = metrics.resolve(series)
        if problem:
            problems.append(f"{where}: {problem}")
        if not base:
            continue
        used.add(base)
        labels = metrics.labels[base] | TARGET_LABELS | ({"le"} if series.endswith("_bucket") else set())
        allowed |= labels
        for label, op, value in matchers:
            if label not in labels:
                problems.append(f"{where}: {series} has no label {label!r} (labels: {', '.join(sorted(metrics.labels[base])) or 'none'})")
                continue
            known = metrics.values[base].get(label)
            if label == "kind" and "trunk" in metrics.labels[base] and kinds:
                known = kinds
            if known and op in ("=", "=~", "!=", "!~") and "$" not in value and value != ".*":
                alternatives = value.split("|") if op in ("=~", "!~") else [value]
                for a in alternatives:
                    if re.fullmatch(r"[A-Za-z0-9_-]+", a) and a not in known:
                        problems.append(f"{where}: {series}{{{label}{op}\"{value}\"}}: {a!r} is not one of {', '.join(sorted(known))}")
    for label in grouping:
        if label not in allowed:
            problems.append(f"{where}: grouping by {label!r}, which no metric in the expression has")
    return problems, used


# --------------------------------------------------------------------------
# Configuration files: strict keys, as src/config.rs declares them
# --------------------------------------------------------------------------


class ConfigSchema:
    """The structs of src/config.rs: fields, types, serde attributes."""

    def __init__(self, root):
        text = (root / "src/config.rs").read_text()
        text = text.split("#[cfg(test)]")[0]
        self.structs, self.enums = {}, {}
        pattern = re.compile(r"((?:#\[[^\]]*\]\s*)*)pub (struct|enum) (\w+)\s*\{(.*?)\n\}", re.S)
        for attrs, what, name, body in pattern.findall(text):
            if "Deserialize" not in attrs:
                continue
            if what == "enum":
                rename = re.search(r'rename_all\s*=\s*"([^"]+)"', attrs)
                variants = re.findall(r"^\s*([A-Z]\w*)\s*,", re.sub(r"//[^\n]*", "", body), re.M)
                rule = rename.group(1) if rename else ""
                conv = {"kebab-case": kebab, "lowercase": str.lower, "snake_case": lambda v: kebab(v).replace("-", "_")}
                self.enums[name] = {conv.get(rule, lambda v: v)(v) for v in variants}
                continue
            container_default = bool(re.search(r"serde\([^)]*\bdefault\b", attrs))
            fields = {}
            for fattrs, fname, ftype in re.findall(
                r"((?:#\[[^\]]*\]\s*)*)pub (\w+)\s*:\s*(.+?),[ \t]*$", body, re.M
            ):
                key = fname
                rename = re.search(r'rename\s*=\s*"([^"]+)"', fattrs)
                if rename:
                    key = rename.group(1)
                has_default = container_default or bool(re.search(r"serde\([^)]*\bdefault\b", fattrs))
                fields[key] = (ftype.strip(), has_default)
            self.structs[name] = {"fields": fields, "deny_unknown": "deny_unknown_fields" in attrs}

    def validate(self, value, typ, path):
        typ = typ.strip()
        m = re.fullmatch(r"(Option|Vec|Box)<(.*)>", typ)
        if m:
            outer, inner = m.groups()
            if outer == "Vec":
                if not isinstance(value, list):
                    return [f"{path}: expected an array"]
                out = []
                for i, v in enumerate(value):
                    out += self.validate(v, inner, f"{path}[{i}]")
                return out
            return self.validate(value, inner, path)
        m = re.fullmatch(r"(?:BTreeMap|HashMap)<\s*String\s*,\s*(.*)>", typ)
        if m:
            if not isinstance(value, dict):
                return [f"{path}: expected a table"]
            out = []
            for k, v in value.items():
                out += self.validate(v, m.group(1), f"{path}.{k}")
            return out
        if typ in self.structs:
            return self.validate_struct(value, typ, path)
        if typ in self.enums:
            if value not in self.enums[typ]:
                return [f"{path}: {value!r} is not one of {', '.join(sorted(self.enums[typ]))}"]
            return []
        if typ in ("u8", "u16", "u32", "u64", "usize", "i32", "i64"):
            ok = isinstance(value, int) and not isinstance(value, bool) and (value >= 0 or typ[0] == "i")
            return [] if ok else [f"{path}: expected a non-negative integer"]
        if typ in ("f32", "f64"):
            return [] if isinstance(value, (int, float)) and not isinstance(value, bool) else [f"{path}: expected a number"]
        if typ == "bool":
            return [] if isinstance(value, bool) else [f"{path}: expected true or false"]
        if typ in ("String", "PathBuf"):
            return [] if isinstance(value, str) else [f"{path}: expected a string"]
        if typ == "IpNet":
            try:
                ipaddress.ip_network(value, strict=False)
                return [] if "/" in value else [f"{path}: {value!r} needs a prefix length"]
            except (ValueError, TypeError):
                return [f"{path}: {value!r} is not a network"]
        if typ == "SocketAddr":
            return [] if parse_socket_addr(value) else [f"{path}: {value!r} is not ADDR:PORT"]
        return []  # a type this check does not know: leave it to the router

    def validate_struct(self, value, name, path):
        if not isinstance(value, dict):
            return [f"{path or 'top level'}: expected a table"]
        spec = self.structs[name]
        out = []
        for key in value:
            if key not in spec["fields"] and spec["deny_unknown"]:
                out.append(f"{path + '.' if path else ''}{key}: unknown key (the router refuses it)")
        for key, (typ, has_default) in spec["fields"].items():
            sub = f"{path}.{key}" if path else key
            if key in value:
                out += self.validate(value[key], typ, sub)
            elif not has_default and not typ.startswith("Option<"):
                out.append(f"{sub}: missing (required)")
        return out


def parse_socket_addr(s):
    if not isinstance(s, str):
        return None
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d+)|([0-9.]+):(\d+)", s)
    if not m:
        return None
    host, port = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None
    port = int(port)
    return (host, port) if port < 65536 else None


def check_router_config(schema, text, where):
    """Strict keys and the cross-checks of Config::check. Returns the parsed config."""
    try:
        cfg = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        R.fail(f"{where}: TOML", e)
        return None
    problems = schema.validate_struct(cfg, "Config", "")
    listens = []
    for l in cfg.get("sip", {}).get("listen", []):
        m = re.fullmatch(r"(udp|tcp):(.*)", l)
        addr = parse_socket_addr(m.group(2)) if m else None
        if not addr:
            problems.append(f"sip.listen {l!r}: expected udp:ADDR:PORT or tcp:ADDR:PORT")
        else:
            listens.append((m.group(1), addr[1]))
    if not cfg.get("sip", {}).get("listen"):
        problems.append("sip.listen: at least one listener is needed")
    names = set()
    for t in cfg.get("trunk", []):
        name = t.get("name")
        if name in names:
            problems.append(f"trunk {name!r} is defined twice")
        names.add(name)
        if t.get("kind") == "inbound":
            if not t.get("sources"):
                problems.append(f"trunk {name!r}: an inbound trunk needs sources")
        elif not str(t.get("uri", "")).startswith(("sip:", "sips:")):
            problems.append(f"trunk {name!r}: an outbound trunk needs a sip: uri")
    for r in cfg.get("route", []):
        for target in r.get("targets", []):
            if target not in names:
                problems.append(f"route {r.get('numbers')}: target {target!r} is not a trunk")
    for pattern, trunk in cfg.get("emergency", {}).get("psap_trunks", {}).items():
        if trunk not in names:
            problems.append(f"emergency.psap_trunks {pattern!r}: {trunk!r} is not a trunk")
    timers = cfg.get("sip", {}).get("timers", {})
    if timers.get("t1_ms", 1) == 0 or timers.get("no_answer_ms", 1) == 0:
        problems.append("sip.timers: t1_ms and no_answer_ms must be above 0")
    kinds = {t.get("kind") for t in cfg.get("trunk", [])}
    for needed in ("psap", "screening", "last-resort"):
        if needed not in kinds:
            problems.append(f"no trunk of kind {needed!r}: /readyz and the alerts expect one")
    R.all_of(f"{where}: keys and values as src/config.rs declares them", problems)
    cfg["_listens"] = listens
    return cfg


def listen_port(cfg, section):
    addr = parse_socket_addr(cfg.get(section, {}).get("listen", ""))
    return addr[1] if addr else None


# --------------------------------------------------------------------------
# Prometheus
# --------------------------------------------------------------------------

REQUIRED_ALERTS = {
    "SosrouterNoPsapTrunkUp": "no PSAP trunk up",
    "SosrouterScreeningTrunkDown": "screening trunk down",
    "SosrouterLastResortTrunkDown": "last-resort trunk down",
    "SosrouterFailoverRateHigh": "failover rate high",
    "SosrouterParseErrorsSpiking": "parse errors spiking",
    "SosrouterCallRecordsDropped": "call-record drops",
    "SosrouterCallRecordQueueGrowing": "call-record queue growing",
    "SosrouterConfigReloadRefused": "config reload refused",
    "SosrouterCallsFailing": "calls failing",
}


def check_prometheus(root, metrics, kinds, promtool, example_cfg):
    d = root / "deploy/prometheus"
    R.start("Prometheus: deploy/prometheus/prometheus.yml, alerts.yml")
    alerts_path, conf_path, tests_path = d / "alerts.yml", d / "prometheus.yml", d / "alerts_test.yml"
    if promtool:
        p = run([promtool, "check", "rules", str(alerts_path)])
        R.check(p.returncode == 0, "promtool check rules alerts.yml", p.stdout)
        p = run([promtool, "check", "config", str(conf_path)])
        if p.returncode != 0 and "field kubernetes_sd_configs not found" in p.stdout:
            # Debian's Prometheus is built without Kubernetes discovery. Check
            # the rest, with each such job's discovery swapped for a static
            # target so its relabelling rules are still checked.
            R.note("this promtool has no Kubernetes service discovery (Debian build): "
                   "kubernetes_sd_configs checked by Python, the rest by promtool")
            stub = yaml.safe_load(conf_path.read_text())
            for s in stub.get("scrape_configs", []):
                if s.pop("kubernetes_sd_configs", None) is not None:
                    s.setdefault("static_configs", []).append({"targets": ["kubernetes-sd.invalid:9090"]})
            with tempfile.TemporaryDirectory() as tmp:
                for rf in stub.get("rule_files", []):
                    if (d / rf).exists():
                        shutil.copy(d / rf, Path(tmp, rf))
                Path(tmp, "prometheus.yml").write_text(yaml.safe_dump(stub, sort_keys=False))
                p = run([promtool, "check", "config", str(Path(tmp, "prometheus.yml"))])
            R.check(p.returncode == 0, "promtool check config prometheus.yml (with its rule files; Kubernetes discovery stubbed)", p.stdout)
        else:
            R.check(p.returncode == 0, "promtool check config prometheus.yml (with its rule files)", p.stdout)
    else:
        R.note("promtool not available: YAML structure only, PromQL not parsed by Prometheus")

    try:
        rules = yaml.safe_load(alerts_path.read_text())
        conf = yaml.safe_load(conf_path.read_text())
    except yaml.YAMLError as e:
        R.fail("YAML parses", e)
        return set()
    R.ok("alerts.yml and prometheus.yml parse as YAML")

    problems, names, used = [], [], set()
    groups = rules.get("groups") if isinstance(rules, dict) else None
    if not groups:
        problems.append("alerts.yml: no groups")
    for g in groups or []:
        if not g.get("name") or not g.get("rules"):
            problems.append(f"group {g.get('name')!r}: needs a name and rules")
        for r in g.get("rules") or []:
            name = r.get("alert") or r.get("record")
            if "record" in r:
                continue
            names.append(name)
            if not re.fullmatch(r"[A-Z][A-Za-z0-9]+", str(name)):
                problems.append(f"{name}: alert names are CamelCase")
            if not str(r.get("expr", "")).strip():
                problems.append(f"{name}: no expr")
            if r.get("labels", {}).get("severity") not in ("critical", "warning", "info"):
                problems.append(f"{name}: labels.severity must be critical, warning or info")
            ann = r.get("annotations") or {}
            for key in ("summary", "description", "runbook"):
                if len(str(ann.get(key, "")).strip()) < 20:
                    problems.append(f"{name}: annotations.{key} missing or too short")
            if not promtool:
                if "for" in r and not re.fullmatch(r"(\d+(ms|[smhdwy]))+", str(r["for"])):
                    problems.append(f"{name}: bad duration in for: {r['for']!r}")
                if str(r.get("expr", "")).count("(") != str(r.get("expr", "")).count(")"):
                    problems.append(f"{name}: unbalanced parentheses")
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        problems.append(f"alert names used twice: {', '.join(sorted(dup))}")
    R.all_of(f"alerts.yml: {len(names)} alerts, each with severity, summary, description and runbook", problems)
    missing = [f"{n} ({why})" for n, why in REQUIRED_ALERTS.items() if n not in names]
    R.all_of("alerts.yml: the required alerts exist", missing)

    problems = []
    for g in groups or []:
        for r in g.get("rules") or []:
            p, u = check_promql(metrics, kinds, str(r.get("expr", "")), r.get("alert", r.get("record")))
            problems += p
            used |= u
    R.all_of("alerts.yml: every metric, label and label value exists in src/metrics.rs", problems)

    if promtool and tests_path.exists():
        with tempfile.TemporaryDirectory() as tmp:
            bare = {"groups": []}
            for g in groups:
                bare["groups"].append({**g, "rules": [{k: v for k, v in r.items() if k != "annotations"} for r in g["rules"]]})
            Path(tmp, "alerts.yml").write_text(yaml.safe_dump(bare, sort_keys=False))
            shutil.copy(tests_path, Path(tmp, "alerts_test.yml"))
            p = run([promtool, "test", "rules", "alerts_test.yml"], cwd=tmp)
            R.check(p.returncode == 0, "promtool test rules alerts_test.yml (when each alert fires)", p.stdout)
    elif not promtool:
        R.note("promtool not available: alerts_test.yml not run")

    # The scrape configuration.
    problems = []
    if not isinstance(conf, dict) or not conf.get("scrape_configs"):
        problems.append("prometheus.yml: no scrape_configs")
        conf = {}
    for rf in conf.get("rule_files", []):
        if not (d / rf).exists():
            problems.append(f"rule_files: {rf} does not exist beside prometheus.yml")
    jobs = [s.get("job_name") for s in conf.get("scrape_configs", [])]
    if not any(str(j).startswith("sosrouter") for j in jobs):
        problems.append("no scrape job named sosrouter*")
    metrics_port = listen_port(example_cfg, "metrics") if example_cfg else 9090
    for s in conf.get("scrape_configs", []):
        if s.get("metrics_path", "/metrics") != "/metrics":
            problems.append(f"{s.get('job_name')}: metrics_path must be /metrics")
        for sc in s.get("static_configs", []):
            for t in sc.get("targets", []):
                if not str(t).endswith(f":{metrics_port}"):
                    problems.append(f"{s.get('job_name')}: target {t} is not on the metrics port {metrics_port}")
    R.all_of("prometheus.yml: jobs scrape /metrics on the metrics listener's port", problems)

    # Kubernetes discovery: what it keeps must be what the Deployment has.
    problems = []
    dep = next((o for o in yaml.safe_load_all((root / "deploy/kubernetes/deployment.yaml").read_text())
                if o and o.get("kind") == "Deployment"), {})
    pod = dep.get("spec", {}).get("template", {})
    labels = pod.get("metadata", {}).get("labels", {})
    port_names = {p.get("name") for c in pod.get("spec", {}).get("containers", []) for p in c.get("ports", [])}
    namespace = dep.get("metadata", {}).get("namespace")
    for s in conf.get("scrape_configs", []):
        for sd in s.get("kubernetes_sd_configs", []):
            job = s.get("job_name")
            if sd.get("role") not in ("pod", "endpoints", "endpointslice", "service"):
                problems.append(f"{job}: unknown role {sd.get('role')!r}")
            names = (sd.get("namespaces") or {}).get("names")
            if names and namespace not in names:
                problems.append(f"{job}: namespaces {names} miss {namespace}")
            for r in s.get("relabel_configs", []):
                if r.get("action", "replace") not in ("replace", "keep", "drop", "labelmap", "labeldrop", "labelkeep", "hashmod", "lowercase", "uppercase", "keepequal", "dropequal"):
                    problems.append(f"{job}: relabel action {r.get('action')!r}")
                try:
                    re.compile(str(r.get("regex", "(.*)")))
                except re.error as e:
                    problems.append(f"{job}: relabel regex {r.get('regex')!r}: {e}")
                if r.get("action") != "keep":
                    continue
                src = r.get("source_labels", [])
                rx = str(r.get("regex"))
                if src == ["__meta_kubernetes_pod_container_port_name"] and not any(re.fullmatch(rx, str(n)) for n in port_names):
                    problems.append(f"{job}: keeps port name {rx!r}, the Deployment has {sorted(port_names)}")
                m = re.fullmatch(r"__meta_kubernetes_pod_label_(\w+)", src[0]) if len(src) == 1 else None
                if m:
                    value = next((v for k, v in labels.items() if re.sub(r"[^A-Za-z0-9_]", "_", k) == m.group(1)), None)
                    if value is None or not re.fullmatch(rx, value):
                        problems.append(f"{job}: keeps pod label {m.group(1)}={rx!r}, the pods do not carry it")
    R.all_of("prometheus.yml: Kubernetes discovery keeps the Deployment's pods and its metrics port", problems)
    up_jobs = re.findall(r'up\{job=~?"([^"]+)"', alerts_path.read_text())
    R.all_of("alerts.yml: the up{job} matcher covers every scrape job",
             [f"job {j} not matched by {pat!r}" for pat in up_jobs for j in jobs if not re.fullmatch(pat, str(j))])
    return used


# --------------------------------------------------------------------------
# Grafana
# --------------------------------------------------------------------------

GRAFANA_BUILTIN = {"__rate_interval", "__interval", "__range", "__interval_ms", "__range_s", "__dashboard", "__from", "__to"}


def check_grafana(root, metrics, kinds, promtool):
    path = root / "deploy/grafana/sosrouter.json"
    R.start("Grafana: deploy/grafana/sosrouter.json")
    try:
        dash = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        R.fail("parses as JSON", e)
        return set()
    R.ok("parses as JSON")
    problems = [f"missing top-level {k!r}" for k in ("title", "uid", "schemaVersion", "panels", "templating") if k not in dash]
    variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
    if "datasource" not in variables or variables["datasource"].get("query") != "prometheus":
        problems.append("templating: a 'datasource' variable of type prometheus is needed")
    R.all_of("dashboard structure: title, uid, schemaVersion, panels, data-source variable", problems)

    panels, problems, ids = [], [], []
    for p in dash.get("panels", []):
        panels.append(p)
        panels.extend(p.get("panels", []))
    cells = {}
    exprs = []
    for p in panels:
        ids.append(p.get("id"))
        title = p.get("title", f"panel {p.get('id')}")
        g = p.get("gridPos", {})
        if not all(isinstance(g.get(k), int) for k in "xywh") or g["x"] + g["w"] > 24:
            problems.append(f"{title}: gridPos missing or wider than 24 columns")
        else:
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    if (x, y) in cells:
                        problems.append(f"{title}: overlaps {cells[(x, y)]}")
                        break
                    cells[(x, y)] = title
                else:
                    continue
                break
        if p.get("type") == "row":
            continue
        if not p.get("title") or not p.get("description"):
            problems.append(f"panel {p.get('id')}: needs a title and a description")
        if p.get("datasource", {}).get("uid") != "${datasource}":
            problems.append(f"{title}: datasource must be the ${{datasource}} variable")
        targets = p.get("targets") or []
        if not targets:
            problems.append(f"{title}: no queries")
        refs = [t.get("refId") for t in targets]
        if len(set(refs)) != len(refs):
            problems.append(f"{title}: refIds repeat")
        for t in targets:
            if not str(t.get("expr", "")).strip():
                problems.append(f"{title} {t.get('refId')}: empty expr")
            exprs.append((f"{title} {t.get('refId')}", t.get("expr", "")))
    for a in dash.get("annotations", {}).get("list", []):
        if a.get("expr"):
            exprs.append((f"annotation {a.get('name')}", a["expr"]))
    dup = {i for i in ids if ids.count(i) > 1}
    if dup:
        problems.append(f"panel ids repeat: {sorted(dup)}")
    R.all_of(f"{len(panels)} panels: unique ids, grid without overlaps, queries on the data-source variable", problems)

    # Variables used in the queries must be defined.
    problems = []
    for where, e in exprs:
        for name in re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", e):
            if name not in variables and name not in GRAFANA_BUILTIN:
                problems.append(f"{where}: ${name} is not a dashboard variable")
    R.all_of("every $variable in the queries is defined", problems)

    problems, used = [], set()
    for name, v in variables.items():
        q = v.get("query")
        q = q.get("query", "") if isinstance(q, dict) else str(q or "")
        m = re.fullmatch(r"\s*label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*,\s*([A-Za-z_]\w*)\s*\)\s*", q)
        if v.get("type") == "query":
            if not m:
                problems.append(f"variable {name}: expected label_values(metric, label)")
                continue
            base, problem = metrics.resolve(m.group(1))
            if problem:
                problems.append(f"variable {name}: {problem}")
            elif m.group(2) not in metrics.labels[base] | TARGET_LABELS:
                problems.append(f"variable {name}: {m.group(1)} has no label {m.group(2)}")
            if base:
                used.add(base)
    for where, e in exprs:
        p, u = check_promql(metrics, kinds, grafana_substitute(e, variables), where)
        problems += p
        used |= u
    R.all_of("every metric, label and label value in the queries exists in src/metrics.rs", problems)

    if promtool:
        # promtool parses PromQL: each query becomes a recording rule.
        rules = [{"record": f"grafana:query_{i}", "expr": grafana_substitute(e, variables)} for i, (_, e) in enumerate(exprs)]
        with tempfile.TemporaryDirectory() as tmp:
            f = Path(tmp, "queries.yml")
            f.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
            p = run([promtool, "check", "rules", str(f)])
            R.check(p.returncode == 0, f"promtool parses all {len(rules)} queries (variables substituted)", p.stdout)
    else:
        R.note("promtool not available: queries not parsed by Prometheus")
    return used


# --------------------------------------------------------------------------
# Kubernetes
# --------------------------------------------------------------------------


def check_kubernetes(root, schema, example_port_sip):
    d = root / "deploy/kubernetes"
    R.start("Kubernetes: deploy/kubernetes/*.yaml")
    docs = []
    problems = []
    for f in sorted(d.glob("*.yaml")):
        try:
            for doc in yaml.safe_load_all(f.read_text()):
                if doc is not None:
                    docs.append((f.name, doc))
        except yaml.YAMLError as e:
            problems.append(f"{f.name}: {e}")
    R.all_of(f"{len(list(d.glob('*.yaml')))} files parse as YAML", problems)

    objs = {}
    problems = []
    for fname, doc in docs:
        kind = doc.get("kind")
        if kind == "Kustomization":
            objs.setdefault(kind, []).append((fname, doc))
            continue
        meta = doc.get("metadata") or {}
        if not doc.get("apiVersion") or not kind or not meta.get("name"):
            problems.append(f"{fname}: apiVersion, kind and metadata.name are required")
            continue
        if kind != "Namespace" and meta.get("namespace") != "sosrouter":
            problems.append(f"{fname}: {kind}/{meta['name']} must be in namespace sosrouter")
        if (meta.get("labels") or {}).get("app.kubernetes.io/name") != "sosrouter":
            problems.append(f"{fname}: {kind}/{meta['name']} lacks label app.kubernetes.io/name=sosrouter")
        objs.setdefault(kind, []).append((fname, doc))
    R.all_of("every object has apiVersion, kind, name, namespace and the app label", problems)

    api = {"Deployment": "apps/v1", "Service": "v1", "ConfigMap": "v1", "Secret": "v1", "Namespace": "v1",
           "ServiceAccount": "v1", "PodDisruptionBudget": "policy/v1"}
    R.all_of("current API versions", [f"{f}: {k} should be {api[k]}" for k, lst in objs.items() for f, o in lst
                                      if k in api and o.get("apiVersion") != api[k]])
    for kind in ("Namespace", "ServiceAccount", "ConfigMap", "Deployment", "Service", "PodDisruptionBudget", "Secret", "Kustomization"):
        R.check(kind in objs, f"a {kind} is present")
    if "Deployment" not in objs:
        return

    _, dep = objs["Deployment"][0]
    spec = dep.get("spec", {})
    tmpl = spec.get("template", {})
    pod = tmpl.get("spec", {})
    pod_labels = tmpl.get("metadata", {}).get("labels", {})
    sel = spec.get("selector", {}).get("matchLabels", {})
    containers = pod.get("containers", [])
    init = pod.get("initContainers", [])
    main = next((c for c in containers if c.get("name") == "sosrouter"), containers[0] if containers else {})

    def selects(selector):
        return bool(selector) and all(pod_labels.get(k) == v for k, v in selector.items())

    R.check(selects(sel), "Deployment selector matches its pod labels")
    R.check(isinstance(spec.get("replicas"), int) and spec["replicas"] >= 2, f"several replicas ({spec.get('replicas')})")

    problems = []
    psc = pod.get("securityContext", {})
    if psc.get("runAsNonRoot") is not True:
        problems.append("pod securityContext.runAsNonRoot must be true")
    if not isinstance(psc.get("runAsUser"), int) or psc.get("runAsUser") == 0:
        problems.append("pod securityContext.runAsUser must be a non-zero uid")
    if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        problems.append("pod securityContext.seccompProfile.type must be RuntimeDefault")
    if pod.get("automountServiceAccountToken") is not False:
        problems.append("automountServiceAccountToken must be false")
    if pod.get("hostNetwork") or pod.get("hostPID") or pod.get("hostIPC"):
        problems.append("host namespaces must not be shared")
    for c in containers + init:
        sc = c.get("securityContext", {})
        n = c.get("name")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{n}: allowPrivilegeEscalation must be false")
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{n}: readOnlyRootFilesystem must be true")
        if sc.get("privileged"):
            problems.append(f"{n}: must not be privileged")
        if "ALL" not in (sc.get("capabilities", {}).get("drop") or []):
            problems.append(f"{n}: capabilities.drop must contain ALL")
        if sc.get("capabilities", {}).get("add"):
            problems.append(f"{n}: adds capabilities")
        res = c.get("resources", {})
        for part in ("requests", "limits"):
            for r in ("cpu", "memory"):
                if r not in (res.get(part) or {}):
                    problems.append(f"{n}: resources.{part}.{r} missing")
        image = str(c.get("image", ""))
        if ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest"):
            problems.append(f"{n}: image {image!r} needs a fixed tag")
    R.all_of("security context: non-root, read-only root, no escalation, ALL capabilities dropped; requests and limits; tagged images", problems)

    ports = {p.get("name"): p for p in main.get("ports", [])}
    problems = []
    for name, number, proto in (("sip-udp", 5060, "UDP"), ("sip-tcp", 5060, "TCP")):
        p = ports.get(name, {})
        if p.get("containerPort") != (example_port_sip or 5060) or p.get("protocol") != proto:
            problems.append(f"container port {name}: {number}/{proto} expected")
    for name in list(ports):
        if len(str(name)) > 15:
            problems.append(f"port name {name!r} is longer than 15 characters")

    def port_number(ref):
        if isinstance(ref, int):
            return ref
        return ports.get(ref, {}).get("containerPort")

    probes = {}
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        pr = main.get(probe, {}).get("httpGet", {})
        probes[probe] = port_number(pr.get("port"))
        if pr.get("path") != path:
            problems.append(f"{probe}: httpGet path must be {path}")
        if probes[probe] is None:
            problems.append(f"{probe}: port {pr.get('port')!r} is not a container port")
    if main.get("startupProbe", {}).get("httpGet", {}).get("path") not in (None, "/healthz"):
        problems.append("startupProbe: expected /healthz")
    R.all_of("ports and probes: SIP 5060 UDP+TCP, liveness /healthz, readiness /readyz on a declared port", problems)

    # Volumes, the ConfigMap, the Secret.
    problems = []
    volumes = {v.get("name"): v for v in pod.get("volumes", [])}
    for c in containers + init:
        for m in c.get("volumeMounts", []):
            if m.get("name") not in volumes:
                problems.append(f"{c.get('name')}: volumeMount {m.get('name')!r} has no volume")
    cms = {o["metadata"]["name"]: o for _, o in objs.get("ConfigMap", [])}
    secrets = {o["metadata"]["name"]: o for _, o in objs.get("Secret", [])}
    for v in volumes.values():
        if "configMap" in v and v["configMap"].get("name") not in cms:
            problems.append(f"volume {v['name']}: ConfigMap {v['configMap'].get('name')!r} is not defined")
    for c in containers + init:
        for e in c.get("env", []):
            ref = (e.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                s = secrets.get(ref.get("name"))
                if not s:
                    problems.append(f"{c.get('name')}: env {e.get('name')} refers to Secret {ref.get('name')!r}, not described")
                elif ref.get("key") not in (s.get("stringData") or {}) and ref.get("key") not in (s.get("data") or {}):
                    problems.append(f"{c.get('name')}: Secret {ref.get('name')} has no key {ref.get('key')!r}")
    db = [e for e in main.get("env", []) if e.get("name") == "SOSROUTER_DATABASE_URL"]
    if not db or not (db[0].get("valueFrom") or {}).get("secretKeyRef"):
        problems.append("SOSROUTER_DATABASE_URL must come from a Secret")
    root_writes = [m.get("mountPath") for m in main.get("volumeMounts", []) if not m.get("readOnly")]
    for need in ("/var/lib/sosrouter", "/tmp"):
        if need not in root_writes:
            problems.append(f"{need}: needs a writable volume with a read-only root filesystem")
    R.all_of("volumes, ConfigMap and Secret references resolve; database URL from a Secret", problems)

    # The configuration in the ConfigMap, rendered as the init container does.
    cfg = None
    for name, cm in cms.items():
        for key, text in (cm.get("data") or {}).items():
            if key.endswith(".toml"):
                rendered = text.replace("${POD_ADDRESS}", "10.0.0.7")
                if "${" in rendered:
                    R.fail(f"ConfigMap {name}/{key}: placeholders other than ${{POD_ADDRESS}}")
                cfg = check_router_config(schema, rendered, f"ConfigMap {name}/{key}")
    script = " ".join(" ".join(c.get("command", []) + c.get("args", [])) for c in init)
    R.check("${POD_ADDRESS}" in script.replace("\\$", "$"), "the init container renders ${POD_ADDRESS}")
    args = main.get("command", []) + main.get("args", [])
    R.check(args[:3] == ["run", "--config", "/etc/sosrouter/sosrouter.toml"] and cli_run_has_config(root),
            "container runs `sosrouter run --config /etc/sosrouter/sosrouter.toml` (src/main.rs has run --config)")
    if cfg:
        problems = []
        if listen_port(cfg, "admin") != probes.get("livenessProbe"):
            problems.append(f"[admin] listen port {listen_port(cfg, 'admin')} is not the probes' port {probes.get('livenessProbe')}")
        if listen_port(cfg, "metrics") != ports.get("metrics", {}).get("containerPort"):
            problems.append("[metrics] listen port is not the container port named 'metrics'")
        for proto, port in cfg["_listens"]:
            if port_number(f"sip-{proto}") != port:
                problems.append(f"sip.listen {proto}:{port} has no container port sip-{proto} on {port}")
        if not str(cfg.get("admin", {}).get("listen", "")).startswith("0.0.0.0"):
            problems.append("[admin] must listen on all interfaces for the kubelet's probes")
        R.all_of("config listeners match the container ports and probes", problems)

    # Services and the budget.
    problems = []
    sip_protos = set()
    for f, s in objs.get("Service", []):
        ss = s.get("spec", {})
        if not selects(ss.get("selector")):
            problems.append(f"Service {s['metadata']['name']}: selector does not match the pods")
        for p in ss.get("ports", []):
            if port_number(p.get("targetPort")) is None:
                problems.append(f"Service {s['metadata']['name']}: targetPort {p.get('targetPort')!r} is not a container port")
            if p.get("port") == 5060:
                sip_protos.add(p.get("protocol", "TCP"))
                if ss.get("externalTrafficPolicy") not in ("Local",) and ss.get("type") in ("LoadBalancer", "NodePort"):
                    problems.append(f"Service {s['metadata']['name']}: externalTrafficPolicy Local keeps carriers' addresses")
    if sip_protos != {"UDP", "TCP"}:
        problems.append(f"SIP Services expose 5060 over {sorted(sip_protos)}, not UDP and TCP")
    R.all_of("Services select the pods, target declared ports, carry SIP over UDP and TCP", problems)

    problems = []
    for f, pdb in objs.get("PodDisruptionBudget", []):
        ps = pdb.get("spec", {})
        if not selects(ps.get("selector", {}).get("matchLabels")):
            problems.append("PodDisruptionBudget selector does not match the pods")
        if "minAvailable" in ps and "maxUnavailable" in ps:
            problems.append("PodDisruptionBudget: minAvailable and maxUnavailable both set")
        mu, ma = ps.get("maxUnavailable"), ps.get("minAvailable")
        if isinstance(mu, int) and not (1 <= mu < spec.get("replicas", 0)):
            problems.append("PodDisruptionBudget: maxUnavailable must leave a replica running and allow drains")
        if isinstance(ma, int) and not (1 <= ma < spec.get("replicas", 0)):
            problems.append("PodDisruptionBudget: minAvailable must be below the replica count")
    roll = spec.get("strategy", {}).get("rollingUpdate", {})
    if roll.get("maxUnavailable") not in (0, "0", "0%"):
        problems.append("rolling update: maxUnavailable should be 0 (surge first)")
    grace = pod.get("terminationGracePeriodSeconds", 30)
    if grace < 40:
        problems.append(f"terminationGracePeriodSeconds {grace} is too short to drain open transactions")
    R.all_of("disruption budget and rollout keep routers serving; grace period long enough to drain", problems)

    # Kustomization: every manifest but the Secret example, all present.
    for f, k in objs.get("Kustomization", []):
        listed = k.get("resources", [])
        want = sorted(x.name for x in d.glob("*.yaml") if x.name not in ("kustomization.yaml", "secret.example.yaml"))
        R.all_of("kustomization.yaml lists every manifest (not the Secret example), all present",
                 [f"{r} does not exist" for r in listed if not (d / r).exists()]
                 + [f"{w} is not listed" for w in want if w not in listed]
                 + (["secret.example.yaml must not be applied"] if "secret.example.yaml" in listed else []))


# --------------------------------------------------------------------------
# systemd
# --------------------------------------------------------------------------


def parse_unit(text):
    sections, cur, problems = {}, None, []
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s[0] in "#;":
            continue
        m = re.fullmatch(r"\[([A-Za-z]+)\]", s)
        if m:
            cur = sections.setdefault(m.group(1), {})
            continue
        m = re.fullmatch(r"([A-Za-z][A-Za-z0-9]*)\s*=\s*(.*)", s)
        if not m or cur is None:
            problems.append(f"line {n}: not a key=value in a section: {s!r}")
            continue
        cur.setdefault(m.group(1), []).append(m.group(2))
    return sections, problems


def seconds(v):
    total = 0
    for num, unit in re.findall(r"(\d+)\s*(ms|min|s|h)?", v):
        total += int(num) * {"ms": 0.001, "min": 60, "h": 3600}.get(unit, 1)
    return total


def check_systemd(root, analyze):
    path = root / "deploy/systemd/sosrouter.service"
    R.start("systemd: deploy/systemd/sosrouter.service")
    text = path.read_text()
    sections, problems = parse_unit(text)
    R.all_of("sections and keys parse", problems + [f"section [{s}] missing" for s in ("Unit", "Service", "Install") if s not in sections])
    svc = {k: v[-1] for k, v in sections.get("Service", {}).items()}
    allv = sections.get("Service", {})
    expect = {
        "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes", "NoNewPrivileges": "yes",
        "StateDirectory": "sosrouter", "MemoryDenyWriteExecute": "yes", "Restart": "always",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    }
    problems = [f"{k}={svc.get(k)!r}, expected {v!r}" for k, v in expect.items() if svc.get(k) != v]
    if not svc.get("User") or svc.get("User") == "root":
        problems.append("User= must name a dedicated user")
    if svc.get("DynamicUser") == "yes":
        problems.append("DynamicUser= conflicts with the dedicated user")
    if "CapabilityBoundingSet" not in svc:
        problems.append("CapabilityBoundingSet= missing")
    caps = set(" ".join(allv.get("CapabilityBoundingSet", [])).split()) | set(" ".join(allv.get("AmbientCapabilities", [])).split())
    if caps - {"CAP_NET_BIND_SERVICE"}:
        problems.append(f"capabilities beyond CAP_NET_BIND_SERVICE: {sorted(caps)}")
    if "/etc/sosrouter" not in " ".join(allv.get("ReadOnlyPaths", [])).split():
        problems.append("ReadOnlyPaths= must include /etc/sosrouter")
    if "@system-service" not in " ".join(allv.get("SystemCallFilter", [])):
        problems.append("SystemCallFilter=@system-service missing")
    if not svc.get("LimitNOFILE", "").isdigit() or int(svc["LimitNOFILE"]) < 8192:
        problems.append("LimitNOFILE= must allow many TCP connections (>= 8192)")
    if seconds(svc.get("RestartSec", "100")) > 5:
        problems.append("RestartSec= must be short (<= 5 s)")
    if not re.fullmatch(r"/bin/kill -HUP \$MAINPID", svc.get("ExecReload", "")):
        problems.append("ExecReload= must be /bin/kill -HUP $MAINPID")
    if seconds(svc.get("TimeoutStopSec", "0")) < 35:
        problems.append("TimeoutStopSec= must cover a drain of open INVITE transactions (>= 35 s)")
    exec_start = svc.get("ExecStart", "").split()
    if exec_start[1:4] != ["run", "--config", "/etc/sosrouter/sosrouter.toml"] or not cli_run_has_config(root):
        problems.append("ExecStart= must be `sosrouter run --config /etc/sosrouter/sosrouter.toml`")
    R.all_of("hardening and lifecycle settings the router needs", problems)

    if not analyze:
        R.note("systemd-analyze not available: unit checked by the parser above only")
        return
    with tempfile.TemporaryDirectory() as tmp:
        # A throw-away root: the stock units (for targets), the unit, and
        # stand-ins for the executables it names (verify insists they exist).
        base = Path(tmp)
        for d in ("/usr/lib/systemd/system", "/lib/systemd/system"):
            if Path(d).is_dir() and not Path(d).is_symlink():
                shutil.copytree(d, base / d.lstrip("/"), symlinks=True, dirs_exist_ok=True)
                break
        unit_dir = base / "etc/systemd/system"
        unit_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, unit_dir / "sosrouter.service")
        for key in ("ExecStart", "ExecReload", "ExecStartPre", "ExecStop"):
            for v in allv.get(key, []):
                exe = v.lstrip("@-:+!").split()[0]
                stub = base / exe.lstrip("/")
                stub.parent.mkdir(parents=True, exist_ok=True)
                stub.write_text("#!/bin/sh\n")
                stub.chmod(0o755)
        p = run([analyze, "verify", f"--root={base}", "--man=no", "--generators=no", str(unit_dir / "sosrouter.service")])
        out = [l for l in p.stdout.splitlines() if l.strip()]
        if p.returncode != 0 and not any("sosrouter.service" in l for l in out):
            # Nothing said about the unit: systemd-analyze itself cannot run
            # here (some containers); the parser's checks above stand.
            R.note("systemd-analyze verify cannot run on this machine: " + (out[0] if out else f"exit {p.returncode}"))
            return
        R.check(p.returncode == 0 and not out, "systemd-analyze verify: no errors, no warnings", "\n".join(out) or f"exit {p.returncode}")
        p = run([analyze, "security", "--offline=yes", f"--root={base}", "--no-pager", "sosrouter.service"])
        m = re.search(r"Overall exposure level for sosrouter\.service:\s*([0-9.]+)", p.stdout)
        if m:
            R.check(float(m.group(1)) <= 2.0, f"systemd-analyze security: exposure {m.group(1)} (at most 2.0)",
                    "\n".join(l for l in p.stdout.splitlines() if "✗" in l))
        else:
            R.note("systemd-analyze security --offline gave no score on this systemd")


# --------------------------------------------------------------------------
# Dockerfile
# --------------------------------------------------------------------------


def dockerfile_instructions(text):
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        word, _, rest = s.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def dockerignore_excludes(patterns, path):
    """Whether a context path is excluded (last matching pattern wins)."""
    import fnmatch

    excluded = False
    for p in patterns:
        neg = p.startswith("!")
        pat = p[1:] if neg else p
        pat = pat.strip("/")
        parts = path.split("/")
        hit = any(fnmatch.fnmatch("/".join(parts[: i + 1]), pat.replace("**/", "*")) for i in range(len(parts)))
        if hit:
            excluded = not neg
    return excluded


def check_docker(root, hadolint, example_cfg):
    d = root / "deploy/docker"
    path = d / "Dockerfile"
    R.start("Docker: deploy/docker/Dockerfile")
    if hadolint:
        p = run([hadolint, "--no-color", "--failure-threshold", "info", str(path)])
        R.check(p.returncode == 0, f"hadolint ({run([hadolint, '--version']).stdout.strip()})", p.stdout)
    else:
        R.note("hadolint not available: the checks below only")
    text = path.read_text()
    ins = dockerfile_instructions(text)
    args = {}
    stages = []
    for word, rest in ins:
        if word == "ARG" and not stages:
            k, _, v = rest.partition("=")
            args[k] = v
        if word == "FROM":
            stages.append({"from": rest, "ins": []})
        elif stages:
            stages[-1]["ins"].append((word, rest))
    problems = []
    if len(stages) < 2:
        problems.append("not multi-stage")
    for s in stages:
        image = s["from"].split()[0]
        for k, v in args.items():
            image = image.replace("${" + k + "}", v).replace("$" + k, v)
        if image in (st["from"].split()[-1] for st in stages):
            continue  # FROM an earlier stage
        name, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "")
        if not tag or tag == "latest" or "$" in tag:
            problems.append(f"FROM {image}: needs a fixed tag, not latest")
    R.all_of(f"{len(stages)} stages, every base image with a fixed tag (no latest)", problems)

    final = stages[-1]["ins"] if stages else []
    words = [w for w, _ in final]
    problems = []
    users = [r for w, r in final if w == "USER"]
    if not users:
        problems.append("final stage has no USER")
    else:
        u = users[-1].split(":")[0]
        for k, v in re.findall(r"^ARG (\w+)=(\S+)", text, re.M):
            u = u.replace("${" + k + "}", v)
        if u in ("root", "0", ""):
            problems.append(f"final USER is root ({users[-1]})")
    hc = [r for w, r in final if w == "HEALTHCHECK"]
    if not hc or "/healthz" not in hc[0]:
        problems.append("HEALTHCHECK on /healthz missing")
    expose = " ".join(r for w, r in final if w == "EXPOSE").split()
    for port in ("5060/udp", "5060/tcp", "8080", "9090"):
        if port not in expose and f"{port}/tcp" not in expose:
            problems.append(f"EXPOSE {port} missing")
    if "VOLUME" not in words:
        problems.append("no VOLUME for the data")
    for w, r in ins:
        if r.startswith("[") and w in ("CMD", "ENTRYPOINT", "VOLUME", "SHELL") or (w == "HEALTHCHECK" and "[" in r):
            try:
                json.loads(r[r.index("["):])
            except json.JSONDecodeError as e:
                problems.append(f"{w}: exec form is not valid JSON ({e})")
    entry = next((json.loads(r) for w, r in reversed(final) if w == "ENTRYPOINT"), [])
    cmd = next((json.loads(r) for w, r in reversed(final) if w == "CMD"), [])
    if (entry + cmd)[-3:] != ["run", "--config", "/etc/sosrouter/sosrouter.toml"] or not cli_run_has_config(root):
        problems.append("the image must run `sosrouter run --config /etc/sosrouter/sosrouter.toml`")
    build = " ".join(r for s in stages[:-1] for w, r in s["ins"] if w == "RUN")
    if not re.search(r"cargo build\b[^&]*--release", build) or "--locked" not in build:
        problems.append("the builder must run cargo build --release --locked")
    R.all_of("non-root USER, HEALTHCHECK /healthz, EXPOSE 5060/udp 5060/tcp 8080 9090, VOLUME, run --config, cargo build --release --locked", problems)

    # Toolchain: at least Cargo.toml's rust-version.
    cargo = tomllib.loads((root / "Cargo.toml").read_text())
    msrv = cargo.get("package", {}).get("rust-version")
    have = args.get("RUST_VERSION", "")
    if msrv and have:
        as_tuple = lambda v: tuple(int(x) for x in v.split(".")[:2])
        R.check(as_tuple(have) >= as_tuple(msrv), f"builder Rust {have} >= rust-version {msrv}")

    # The build context: what the builder copies exists, is not ignored,
    # and covers every file the build reads.
    ignore_file = d / "Dockerfile.dockerignore"
    patterns = [l.strip() for l in ignore_file.read_text().splitlines() if l.strip() and not l.startswith("#")] if ignore_file.exists() else []
    copied = []
    problems = []
    for s in stages:
        for w, r in s["ins"]:
            if w in ("COPY", "ADD") and "--from=" not in r:
                parts = [p for p in r.split() if not p.startswith("--")]
                for src in parts[:-1]:
                    copied.append(src.rstrip("/"))
                    if not (root / src).exists():
                        problems.append(f"COPY {src}: not in the repository")
                    elif dockerignore_excludes(patterns, src.rstrip("/")):
                        problems.append(f"COPY {src}: excluded by Dockerfile.dockerignore")
    R.all_of("COPY sources exist and Dockerfile.dockerignore lets them through", problems)

    def covered(rel):
        return any(rel == c or rel.startswith(c + "/") for c in copied)

    needed = ["Cargo.toml", "Cargo.lock"]
    for t in ("lib", "bin", "bench", "test", "example"):
        entries = cargo.get(t, [])
        for e in ([entries] if isinstance(entries, dict) else entries):
            if t in ("test", "example"):
                continue  # not built by cargo build --bin
            p = e.get("path") or {"bench": f"benches/{e.get('name')}.rs"}.get(t)
            if p:
                needed.append(p)
    def test_only(f):
        # A module its parent declares under #[cfg(test)] (`mod tests;`).
        parents = [f.parent / "mod.rs", f.parent.with_suffix(".rs"), f.parent / "lib.rs"]
        decl = re.compile(r"#\[cfg\(test\)\]\s*mod\s+" + re.escape(f.stem) + r"\s*;")
        return any(p != f and p.exists() and decl.search(p.read_text()) for p in parents)

    for f in (root / "src").rglob("*.rs"):
        if test_only(f):
            continue
        src = f.read_text()
        # What only unit tests read is not part of a release build.
        src = src.split("#[cfg(test)]", 1)[0]
        for a, b in re.findall(r'include_(?:str|bytes)!\(\s*(?:concat!\(\s*env!\("CARGO_MANIFEST_DIR"\)\s*,\s*"([^"]+)"|"([^"]+)")', src):
            target = (root / a.lstrip("/")) if a else (f.parent / b)
            needed.append(os.path.relpath(os.path.normpath(target), root))
    R.all_of(f"the copied paths hold all {len(needed)} files the build reads (targets, include_str!/include_bytes!)",
             [f"{n}: not copied into the builder" for n in needed if not covered(n)]
             + [f"{n}: missing from the repository" for n in needed if not (root / n).exists()])
    if example_cfg:
        ports = {str(listen_port(example_cfg, "admin")), str(listen_port(example_cfg, "metrics"))}
        R.check(all(p in " ".join(expose) for p in ports) and any("8080" in h for h in hc),
                "EXPOSE and HEALTHCHECK match the example config's admin and metrics ports")


# --------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default=str(Path(__file__).resolve().parents[2]))
    ap.add_argument("--promtool", default="")
    ap.add_argument("--hadolint", default="")
    ap.add_argument("--systemd-analyze", dest="analyze", default="")
    ap.add_argument("--started", type=float, default=None, help="epoch seconds the run began (tool setup included)")
    a = ap.parse_args()
    root = Path(a.root)

    metrics = Metrics(root)
    kinds = trunk_kinds(root)
    schema = ConfigSchema(root)
    R.start("Sources: src/metrics.rs, src/config.rs, src/main.rs")
    R.check(len(metrics.names) >= 10, f"{len(metrics.names)} metric names, {len(metrics.histograms)} histograms: "
            + ", ".join(sorted(metrics.histograms)))
    R.check("Config" in schema.structs and schema.structs["Config"]["deny_unknown"],
            f"config schema: {len(schema.structs)} structs with strict keys, trunk kinds {', '.join(sorted(kinds))}")
    R.check(cli_run_has_config(root), "CLI: `sosrouter run --config FILE`")

    R.start("Example configuration: deploy/sosrouter.example.toml")
    example = check_router_config(schema, (root / "deploy/sosrouter.example.toml").read_text(), "sosrouter.example.toml")

    used = check_prometheus(root, metrics, kinds, a.promtool, example)
    used_dash = check_grafana(root, metrics, kinds, a.promtool)
    missing = sorted(metrics.names - used_dash)
    if missing:
        R.note("metrics not on the dashboard: " + ", ".join(missing))
    else:
        R.ok(f"all {len(metrics.names)} metrics of src/metrics.rs are on the dashboard")
    check_kubernetes(root, schema, 5060)
    check_systemd(root, a.analyze)
    check_docker(root, a.hadolint, example)

    if a.started:
        print(f"\nfinished in {time.time() - a.started:.0f} s")
    print(f"\ndeploy-check: {R.passed} passed, {R.failed} failed")
    return 1 if R.failed else 0


if __name__ == "__main__":
    sys.exit(main())
