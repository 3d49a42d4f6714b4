"""deploy/monitoring (the alert rules, the dashboard, compose's Prometheus) and what scrapes the services in
deploy/k8s and docker-compose.yml, held to the code: every metric and label a rule or a panel names is one
the receiver or the workers export (the names come from their registries and the store collector, not from
a list kept here), every job name is one that a scrape configuration gives, ports agree with the settings.

PromQL is read by a small tokenizer (selectors, matchers, grouping labels, function names), not parsed in
full; with promtool on the PATH (or PROMTOOL=/path/to/promtool) the rules are also checked by promtool and
their firing tested with `promtool test rules`."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric

from deploy.support import DEPLOY, REPO, compose, receiver_paths, yaml_documents
from deploy.test_deploy_kubernetes import K8S, Manifest, kustomize, of_kind, overlay, pods, selects
from eventstore.keys import KeySpace
from receiver.metrics import ConnectOutcome, Outcome, ReceiverMetrics, VerifyRefusal
from receiver.signatures import SignatureFailure
from workers.metrics import StoreCollector, WorkerMetrics
from workers.settings import WorkerSettings

MONITORING = DEPLOY / "monitoring"
ALERTS = MONITORING / "alerts.yaml"
DASHBOARD = MONITORING / "dashboard.json"
COMPONENTS = K8S / "components"
# Labels every scraped series has (Prometheus adds them), besides the metric's own.
TARGET_LABELS = frozenset({"job", "instance"})
# The metric Prometheus writes for each target it scrapes.
SCRAPE_METRICS = {"up": TARGET_LABELS}
SEVERITIES = frozenset({"critical", "warning"})
DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")
# Label values that the code enumerates: a rule asking for another value would never match.
ENUMERATED: dict[tuple[str, str], type[StrEnum]] = {
    ("smartcar_webhook_requests_total", "outcome"): Outcome,
    ("smartcar_webhook_signature_failures_total", "reason"): SignatureFailure,
    ("smartcar_webhook_verify_refusals_total", "reason"): VerifyRefusal,
    ("smartcar_connect_total", "outcome"): ConnectOutcome,
}
# PromQL's functions and aggregation operators (Prometheus 2.x and 3.x).
FUNCTIONS = frozenset(
    """
    abs absent absent_over_time acos acosh asin asinh atan atanh avg avg_over_time bottomk ceil changes
    clamp clamp_max clamp_min cos cosh count count_over_time count_values day_of_month day_of_week
    day_of_year days_in_month deg delta deriv double_exponential_smoothing exp floor group histogram_avg
    histogram_count histogram_fraction histogram_quantile histogram_stddev histogram_stdvar
    histogram_sum holt_winters hour idelta increase irate label_join label_replace last_over_time
    limit_ratio limitk ln log10 log2 mad_over_time max max_over_time min min_over_time minute month pi
    predict_linear present_over_time quantile quantile_over_time rad rate resets round scalar sgn sin
    sinh sort sort_by_label sort_by_label_desc sort_desc sqrt stddev stddev_over_time stdvar
    stdvar_over_time sum sum_over_time tan tanh time timestamp topk vector year
    """.split()  # noqa: SIM905 - a list of 100 names, one a line, reads worse
)
GROUPING = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"})
_TOKEN = re.compile(
    r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`'  # strings
    r"|\d[\w.]*"  # numbers and durations (1e3, 0.99, 5m)
    r"|[A-Za-z_:][\w:]*"  # identifiers
    r"|=~|!~|!=|==|>=|<=|[-+*/%^<>=(){}\[\],@]"  # operators and punctuation
    r"|\s+"
)
_GRAFANA_VARIABLE = re.compile(r"\$(\{\w+\}|\w+)")


# ---- the metrics the code exports --------------------------------------------------------------------


def _exposed(family: Metric, labels: set[str]) -> dict[str, set[str]]:
    """The series names a family is scraped as, each with its labels."""
    name = family.name
    if family.type == "counter":
        return {f"{name}_total": labels, f"{name}_created": labels}
    if family.type == "histogram":
        return {
            f"{name}_bucket": labels | {"le"},
            f"{name}_count": labels,
            f"{name}_sum": labels,
            f"{name}_created": labels,
        }
    assert family.type == "gauge", (name, family.type)
    return {name: labels}


def _registry_metrics(registry: CollectorRegistry) -> dict[str, set[str]]:
    # prometheus_client has no public way to ask a labelled metric without children for its label names:
    # its collectors keep them in `_labelnames`.
    labelnames = {
        name: set(getattr(collector, "_labelnames", ()))
        for name, collector in registry._names_to_collectors.items()
    }
    found: dict[str, set[str]] = {}
    for family in registry.collect():
        found.update(_exposed(family, labelnames.get(family.name, set())))
    return found


@pytest.fixture(scope="module")
def catalogue(redis_url: str) -> dict[str, set[str]]:
    """Every series the receiver and the workers export: name -> its label names."""
    found = _registry_metrics(WorkerMetrics().registry) | _registry_metrics(ReceiverMetrics().registry)
    with redis.Redis.from_url(redis_url) as client:
        for family in StoreCollector(client, KeySpace("test:monitoring-catalogue:")).collect():
            found.update(_exposed(family, set()))
    return found


def test_the_catalogue_is_read_from_the_code(catalogue: dict[str, set[str]]) -> None:
    """Lazily made children and store gauges both show: the checks below compare against all of them."""
    assert catalogue["smartcar_events_total"] == {"outcome", "type"}
    assert catalogue["smartcar_api_call_seconds_bucket"] == {"endpoint", "le"}
    assert catalogue["smartcar_webhook_requests_total"] == {"outcome"}
    assert "smartcar_store_durable" in catalogue, "the test Redis answers INFO: the gauge is exported"
    assert {
        "smartcar_store_up",
        "smartcar_inbox_oldest_age_seconds",
        "smartcar_pending_overdue_seconds",
    } <= set(catalogue)


# ---- PromQL, read as far as these checks need ---------------------------------------------------------


@dataclass
class Selector:
    metric: str
    matchers: list[tuple[str, str, str]] = field(default_factory=list)


@dataclass
class Read:
    selectors: list[Selector] = field(default_factory=list)
    functions: list[str] = field(default_factory=list)
    grouping: set[str] = field(default_factory=set)


def tokens(expr: str) -> list[str]:
    text = _GRAFANA_VARIABLE.sub("5m", expr)  # Grafana's $__rate_interval and friends
    found, position = [], 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        assert match, f"cannot read {text[position:]!r} in {expr!r}"
        position = match.end()
        if not match[0].isspace():
            found.append(match[0])
    return found


def _unquote(token: str) -> str:
    return str(json.loads(token)) if token.startswith('"') else token[1:-1]


def read(expr: str) -> Read:
    """The selectors (metric and matchers), the functions called and the grouping labels of `expr`."""
    words, result, index = tokens(expr), Read(), 0
    while index < len(words):
        word = words[index]
        after = words[index + 1] if index + 1 < len(words) else ""
        if word == "[":
            index = words.index("]", index)
        elif word in GROUPING and after == "(":
            end = words.index(")", index)
            result.grouping |= {label for label in words[index + 2 : end] if label != ","}
            index = end
        elif (
            re.fullmatch(r"[A-Za-z_:][\w:]*", word)
            and word not in KEYWORDS
            and (after == "(" or after in {"by", "without"})
        ):
            # A call, or an aggregation with its grouping first: `sum by (le) (...)`.
            result.functions.append(word)
        elif re.fullmatch(r"[A-Za-z_:][\w:]*", word) and word not in KEYWORDS | GROUPING:
            selector = Selector(word)
            result.selectors.append(selector)
            if after == "{":
                end = words.index("}", index)
                inside = [token for token in words[index + 2 : end] if token != ","]
                for start in range(0, len(inside), 3):
                    name, operator, value = inside[start : start + 3]
                    selector.matchers.append((name, operator, _unquote(value)))
                index = end
        index += 1
    return result


def balanced(expr: str) -> bool:
    pairs, stack = {")": "(", "]": "[", "}": "{"}, []
    for token in tokens(expr):
        if token in "([{":
            stack.append(token)
        elif token in pairs and (not stack or stack.pop() != pairs[token]):
            return False
    return not stack


def problems(
    expr: str, catalogue: dict[str, set[str]], jobs: set[str], target_labels: frozenset[str] = TARGET_LABELS
) -> list[str]:
    """What in `expr` names nothing real (empty: every name is). `target_labels`: the labels the scrape
    adds to every series."""
    if not expr.strip():
        return ["empty expression"]
    if not balanced(expr):
        return [f"unbalanced brackets in {expr!r}"]
    known = catalogue | SCRAPE_METRICS
    found = read(expr)
    issues = [f"{name}(): not a PromQL function" for name in found.functions if name not in FUNCTIONS]
    if not found.selectors:
        issues.append(f"no metric in {expr!r}")
    labels = set(target_labels)
    for selector in found.selectors:
        if selector.metric not in known:
            issues.append(f"{selector.metric}: no such metric")
            continue
        own = known[selector.metric] | target_labels
        labels |= own
        for name, operator, value in selector.matchers:
            if name not in own:
                issues.append(f"{selector.metric} has no label {name}")
            values = set(value.split("|")) if operator == "=~" else {value}
            if name == "job" and not values <= jobs:
                issues.append(f"job {sorted(values - jobs)}: no scrape configuration names it")
            enumeration = ENUMERATED.get((selector.metric, name))
            if enumeration is not None and not values <= {member.value for member in enumeration}:
                issues.append(f"{selector.metric}{{{name}}} is never {sorted(values)}")
    issues += [f"grouping by {label}: no metric here has it" for label in sorted(found.grouping - labels)]
    return issues


def test_the_promql_reader_finds_what_the_checks_rely_on(catalogue: dict[str, set[str]]) -> None:
    found = read(
        "histogram_quantile(0.99, sum by (le, endpoint) ("
        'rate(smartcar_api_call_seconds_bucket{endpoint=~"a|b"}[$__rate_interval]))) > 1e3'
        ' and on() absent(up{job="smartcar-worker"} == 1) offset 5m'
    )
    assert [selector.metric for selector in found.selectors] == ["smartcar_api_call_seconds_bucket", "up"]
    assert found.selectors[0].matchers == [("endpoint", "=~", "a|b")]
    assert found.selectors[1].matchers == [("job", "=", "smartcar-worker")]
    assert found.functions == ["histogram_quantile", "sum", "rate", "absent"]
    assert found.grouping == {"le", "endpoint"}
    jobs = {"smartcar-worker"}
    assert problems("sum(rate(smartcar_events_total[5m]))", catalogue, jobs) == []
    # Each kind of mistake is caught.
    assert problems("sum(rate(smartcar_event_total[5m]))", catalogue, jobs)  # a metric that is not exported
    assert problems("smartcar_events_total{status='done'}", catalogue, jobs)  # a label it does not have
    assert problems('smartcar_webhook_requests_total{outcome="503"}', catalogue, jobs)  # a value never set
    assert problems('up{job="smartcar-workers"}', catalogue, jobs)  # a job nothing scrapes as
    assert problems("sum by (code) (smartcar_events_total)", catalogue, jobs)  # a label nothing has
    assert problems("rat(smartcar_events_total[5m])", catalogue, jobs)  # a function PromQL lacks
    assert problems("sum(rate(smartcar_events_total[5m])", catalogue, jobs)  # a bracket left open
    assert problems("  ", catalogue, jobs)


# ---- the job names: what the scrape configurations call the two targets -------------------------------


def _relabelled_job(endpoint: dict[str, Any]) -> str:
    [job] = [rule["replacement"] for rule in endpoint["relabelings"] if rule["targetLabel"] == "job"]
    return str(job)


def operator_jobs() -> dict[str, str]:
    """Job name -> the Prometheus Operator monitor that scrapes as it."""
    directory = COMPONENTS / "prometheus-operator"
    [service] = yaml_documents(directory / "servicemonitor.yaml")
    [pod] = yaml_documents(directory / "podmonitor.yaml")
    jobs = {_relabelled_job(endpoint): "ServiceMonitor" for endpoint in service["spec"]["endpoints"]}
    jobs.update({_relabelled_job(endpoint): "PodMonitor" for endpoint in pod["spec"]["podMetricsEndpoints"]})
    return jobs


def prometheus_config() -> dict[str, Any]:
    [config] = yaml_documents(MONITORING / "prometheus.yml")
    return config


def compose_jobs() -> dict[str, dict[str, Any]]:
    return {job["job_name"]: job for job in prometheus_config()["scrape_configs"]}


@pytest.fixture(scope="module")
def jobs() -> set[str]:
    return set(operator_jobs())


def test_kubernetes_and_compose_give_the_targets_the_same_job_names() -> None:
    assert operator_jobs() == {"smartcar-receiver": "ServiceMonitor", "smartcar-worker": "PodMonitor"}
    assert set(compose_jobs()) == set(operator_jobs())


# ---- the alert rules -----------------------------------------------------------------------------------


def rule_manifest() -> dict[str, Any]:
    [manifest] = yaml_documents(ALERTS)
    return manifest


def alerts() -> list[dict[str, Any]]:
    return [rule for group in rule_manifest()["spec"]["groups"] for rule in group["rules"]]


def readme_anchors() -> set[str]:
    """GitHub's anchors for the headings of README.md and deploy/README.md."""
    anchors = set()
    for path in (REPO / "README.md", DEPLOY / "README.md"):
        for line in path.read_text().splitlines():
            if match := re.fullmatch(r"#{1,6} (.+)", line):
                anchors.add(re.sub(r"[^\w\- ]", "", match[1].lower()).replace(" ", "-"))
    return anchors


def test_the_rules_are_a_prometheus_rule_whose_spec_is_a_rules_file() -> None:
    manifest = rule_manifest()
    assert (manifest["apiVersion"], manifest["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert list(manifest)[-1] == "spec", "spec is the last key: the sed that takes it out keeps the rest"
    assert set(manifest["spec"]) == {"groups"}
    groups = manifest["spec"]["groups"]
    assert len({group["name"] for group in groups}) == len(groups)
    names = [rule["alert"] for rule in alerts()]
    assert len(set(names)) == len(names) >= 9, names


def test_every_alert_waits_has_a_severity_and_says_what_to_do() -> None:
    anchors = readme_anchors()
    assert "watching-it" in anchors
    assert "scaling" in anchors
    for rule in alerts():
        name = rule["alert"]
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, name
        assert DURATION.match(str(rule["for"])), name
        assert rule["labels"]["severity"] in SEVERITIES, name
        assert rule["annotations"]["summary"].strip(), name
        description = rule["annotations"]["description"]
        linked = set(re.findall(r"\(#([\w-]+)\)|, #([\w-]+)\)", description))
        cited = {anchor for pair in linked for anchor in pair if anchor}
        assert cited, f"{name}: its description links no README section"
        assert cited <= anchors, f"{name}: no such README section {sorted(cited - anchors)}"


def test_every_alert_expression_names_only_real_metrics_labels_and_jobs(
    catalogue: dict[str, set[str]], jobs: set[str]
) -> None:
    for rule in alerts():
        assert problems(rule["expr"], catalogue, jobs) == [], rule["alert"]


def test_the_rules_cover_what_the_operations_guide_says_to_alert_on() -> None:
    """One alert at least for each of: the backlog, the sweeper, dead letters, signatures, live workers,
    token refreshes, Redis's durability and reachability, the receiver's 503s."""
    selected = {
        (selector.metric, tuple(selector.matchers))
        for rule in alerts()
        for selector in read(rule["expr"]).selectors
    }
    metrics = {metric for metric, _matchers in selected}
    assert {
        "smartcar_inbox_oldest_age_seconds",
        "smartcar_pending_overdue_seconds",
        "smartcar_dead_letters_total",
        "smartcar_webhook_signature_failures_total",
        "smartcar_token_refreshes_total",
        "smartcar_store_durable",
        "smartcar_store_up",
        "smartcar_inbox_depth",
    } <= metrics
    assert ("up", (("job", "=", "smartcar-worker"),)) in selected
    assert ("smartcar_webhook_requests_total", (("outcome", "=", Outcome.UNAVAILABLE.value),)) in selected


def _compose_prometheus() -> dict[str, Any]:
    return dict(compose()["services"]["prometheus"])


def extract_rules(destination: Path) -> Path:
    """Run the compose Prometheus's own extraction (its command up to the exec) on alerts.yaml."""
    [line] = _compose_prometheus()["command"]
    extraction = line.split(" && exec ", 1)[0]
    written = re.search(r"> (\S+)", extraction)
    assert written
    [mount] = [
        volume for volume in _compose_prometheus()["volumes"] if volume.startswith("./deploy/monitoring:")
    ]
    inside = mount.split(":")[1]
    script = extraction.replace(f"{inside}/", f"{MONITORING}/").replace(written[1], str(destination))
    subprocess.run(["sh", "-c", script], check=True, timeout=30)  # noqa: S603, S607 - our own compose line
    return destination


def test_the_plain_rules_file_is_exactly_the_spec(tmp_path: Path) -> None:
    """What compose's Prometheus loads (and a plain Prometheus gets the same way) is the PrometheusRule's
    spec: one copy of the rules."""
    plain = extract_rules(tmp_path / "rules.yaml")
    assert yaml.safe_load(plain.read_text()) == rule_manifest()["spec"]
    [line] = _compose_prometheus()["command"]
    written = re.search(r"> (\S+)", line)
    assert written
    assert prometheus_config()["rule_files"] == [written[1]], "Prometheus loads the file the sed writes"


# ---- promtool, when it is installed ----------------------------------------------------------------


def promtool() -> str:
    found = os.environ.get("PROMTOOL") or shutil.which("promtool")
    if not found:
        pytest.skip("promtool is not installed (Debian's prometheus package; or PROMTOOL=/path/to/promtool)")
    return found


# (alert, input series, when, the labels of each alert expected firing then: [] for none)
FIRING: list[tuple[str, dict[str, str], str, list[dict[str, str]]]] = [
    (
        "SmartcarReceiverUnavailable",
        {'smartcar_webhook_requests_total{instance="r1",outcome="unavailable"}': "0+6x30"},
        "10m",
        [{"severity": "critical"}],
    ),
    (
        "SmartcarReceiverUnavailable",
        {'smartcar_webhook_requests_total{instance="r1",outcome="unavailable"}': "3x30"},
        "10m",
        [],
    ),
    (
        "SmartcarNoWorkerUp",
        {'up{job="smartcar-worker",instance="w1"}': "0x30"},
        "10m",
        [{"severity": "critical"}],
    ),
    (
        "SmartcarNoWorkerUp",
        {
            'up{job="smartcar-worker",instance="w1"}': "0x30",
            'up{job="smartcar-worker",instance="w2"}': "1x30",
        },
        "10m",
        [],
    ),
    # Workers answer, the inbox holds events, no run: with and without a counter series yet.
    (
        "SmartcarEventsNotProcessed",
        {'smartcar_inbox_depth{instance="w1"}': "5x40"},
        "30m",
        [{"severity": "critical"}],
    ),
    (
        "SmartcarEventsNotProcessed",
        {
            'smartcar_inbox_depth{instance="w1"}': "5x40",
            'smartcar_events_total{instance="w1",outcome="done"}': "7x40",
        },
        "30m",
        [{"severity": "critical"}],
    ),
    (
        "SmartcarEventsNotProcessed",
        {
            'smartcar_inbox_depth{instance="w1"}': "5x40",
            'smartcar_events_total{instance="w1",outcome="done"}': "0+9x40",
        },
        "30m",
        [],
    ),
    (
        "SmartcarWebhookSignaturesAllFailing",
        {
            'smartcar_webhook_signature_failures_total{instance="r1",reason="mismatch"}': "0+2x40",
            'smartcar_webhook_requests_total{instance="r1",outcome="accepted"}': "50x40",
        },
        "30m",
        [{"severity": "critical"}],
    ),
    (
        "SmartcarWebhookSignaturesAllFailing",
        {
            'smartcar_webhook_signature_failures_total{instance="r1",reason="mismatch"}': "0+2x40",
            'smartcar_webhook_requests_total{instance="r1",outcome="accepted"}': "0+5x40",
        },
        "30m",
        [],
    ),
    (
        "SmartcarBacklogOld",
        {
            'smartcar_inbox_oldest_age_seconds{instance="w1"}': "400x30",
            'smartcar_inbox_oldest_age_seconds{instance="w2"}': "0x30",
        },
        "15m",
        [{"severity": "warning"}],
    ),
    ("SmartcarBacklogVeryOld", {'smartcar_inbox_oldest_age_seconds{instance="w1"}': "400x30"}, "15m", []),
    (
        "SmartcarPendingOverdue",
        {'smartcar_pending_overdue_seconds{instance="w1"}': "900x30"},
        "15m",
        [{"severity": "warning"}],
    ),
    (
        "SmartcarDeadLetters",
        {'smartcar_dead_letters_total{error_type="SERVER",error_code="INTERNAL"}': "0 0 1 1 1 1"},
        "5m",
        [{"severity": "warning", "error_type": "SERVER", "error_code": "INTERNAL"}],
    ),
    (
        "SmartcarDeadLetters",
        {'smartcar_dead_letters_total{instance="w1",error_type="X",error_code="-"}': "1x30"},
        "20m",
        [],
    ),
    (
        "SmartcarTokenRefreshFailures",
        {
            'smartcar_token_refreshes_total{instance="w1",outcome="grant_refused"}': "0 1x20",
            'smartcar_token_refreshes_total{instance="w1",outcome="refreshed"}': "0+4x20",
        },
        "10m",
        [{"severity": "warning", "outcome": "grant_refused"}],
    ),
    (
        "SmartcarRedisNotDurable",
        {'smartcar_store_durable{instance="w1"}': "1x20", 'smartcar_store_durable{instance="w2"}': "0x20"},
        "10m",
        [{"severity": "critical"}],
    ),
    (
        "SmartcarStoreUnreachable",
        {'smartcar_store_up{instance="w1"}': "1 1 0x10"},
        "6m",
        [{"severity": "critical"}],
    ),
    ("SmartcarStoreUnreachable", {'smartcar_store_up{instance="w1"}': "1x10"}, "6m", []),
]


def test_promtool_accepts_the_rules(tmp_path: Path) -> None:
    tool = promtool()
    checked = subprocess.run(  # noqa: S603 - promtool, on our own file
        [tool, "check", "rules", str(extract_rules(tmp_path / "rules.yaml"))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_alerts_fire_when_they_should_and_only_then(tmp_path: Path) -> None:
    """`promtool test rules` on the rules without their annotations (promtool compares annotations
    verbatim): each case's series, and the alerts expected at its time."""
    tool = promtool()
    spec = rule_manifest()["spec"]
    for group in spec["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations")
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(spec))
    tested = {alert for alert, _series, _at, _expected in FIRING}
    assert tested <= {rule["alert"] for rule in alerts()}
    cases = [
        {
            "interval": "1m",
            "input_series": [{"series": series, "values": values} for series, values in inputs.items()],
            "alert_rule_test": [
                {
                    "eval_time": at,
                    "alertname": alert,
                    "exp_alerts": [{"exp_labels": labels} for labels in expected],
                }
            ],
        }
        for alert, inputs, at, expected in FIRING
    ]
    (tmp_path / "test.yaml").write_text(yaml.safe_dump({"rule_files": ["rules.yaml"], "tests": cases}))
    ran = subprocess.run(  # noqa: S603 - promtool, on our own files
        [tool, "test", "rules", "test.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr


# ---- the dashboard --------------------------------------------------------------------------------------


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in node.get("panels", []):
        yield panel
        yield from panels(panel)  # a collapsed row holds its panels


def test_the_dashboard_imports_with_a_prometheus_input() -> None:
    board = dashboard()
    assert board["schemaVersion"] >= 36  # Grafana 9.x/10.x and later import it as it is
    assert board["uid"]
    assert board["title"]
    assert board["id"] is None, "an exported dashboard carries no database id"
    [source] = board["__inputs"]
    assert (source["name"], source["type"], source["pluginId"]) == (
        "DS_PROMETHEUS",
        "datasource",
        "prometheus",
    )
    # A provisioned copy (no import step): the variable of the same name stands for the input.
    variables = {variable["name"]: variable for variable in board["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    every = list(panels(board))
    ids = [panel["id"] for panel in every]
    assert len(set(ids)) == len(ids), "panel ids are unique"
    for panel in every:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"], panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]


def test_the_dashboard_has_the_rows_the_operators_read() -> None:
    rows = [panel["title"].split(" ")[0].lower() for panel in dashboard()["panels"] if panel["type"] == "row"]
    assert rows == ["intake", "backlog", "outcomes", "smartcar", "health", "replays"]


def test_every_panel_asks_only_for_real_metrics_labels_and_jobs(
    catalogue: dict[str, set[str]], jobs: set[str]
) -> None:
    shown: set[str] = set()
    for panel in panels(dashboard()):
        for target in panel.get("targets", []):
            assert problems(target["expr"], catalogue, jobs) == [], panel["title"]
            shown |= {selector.metric for selector in read(target["expr"]).selectors}
    # Every metric the services export is on the dashboard (its _created twins and the histograms'
    # _count/_sum aside: the panels read the buckets).
    wanted = {name for name in catalogue if not name.endswith(("_created", "_count", "_sum"))}
    assert wanted - shown == set(), f"not on deploy/monitoring/dashboard.json: {sorted(wanted - shown)}"
    assert "up" in shown


# ---- Kubernetes: the workers' port, the PodMonitor, the rules, the backlog HPA -------------------------


@pytest.fixture(scope="module")
def monitored(tmp_path_factory: pytest.TempPathFactory) -> list[Manifest]:
    """The base with both monitoring components, as an overlay of a user's would build it."""
    return kustomize(overlay(tmp_path_factory, K8S / "base", ("prometheus-operator", "backlog-autoscaling")))


def worker_container(manifests: list[Manifest]) -> Manifest:
    [container] = pods(manifests)["smartcar-worker"]["spec"]["containers"]
    return dict(container)


def test_the_worker_serves_metrics_on_the_port_the_pod_monitor_scrapes(monitored: list[Manifest]) -> None:
    container = worker_container(monitored)
    env = {variable["name"]: variable.get("value") for variable in container["env"]}
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert int(env["WORKERS_METRICS_PORT"]) == ports["metrics"]
    assert WorkerSettings.model_fields["metrics_port"].default == 0, "off unless a deployment sets it"
    [monitor] = of_kind(monitored, "PodMonitor").values()
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == "metrics"
    assert endpoint["path"] == "/metrics"
    scraped = [
        name
        for name, template in pods(monitored).items()
        if selects(monitor["spec"]["selector"]["matchLabels"], template["metadata"]["labels"])
    ]
    assert scraped == ["smartcar-worker"], "beat serves no metrics; the receivers have their ServiceMonitor"
    [beat] = pods(monitored)["smartcar-beat"]["spec"]["containers"]
    assert "WORKERS_METRICS_PORT" not in {variable["name"] for variable in beat.get("env", [])}
    assert "ports" not in beat


def test_the_operator_component_applies_the_one_copy_of_the_rules(monitored: list[Manifest]) -> None:
    [rule] = of_kind(monitored, "PrometheusRule").values()
    assert rule["spec"] == rule_manifest()["spec"]
    assert set(of_kind(monitored, "ServiceMonitor")) == {"smartcar-receiver"}
    [component] = yaml_documents(COMPONENTS / "prometheus-operator" / "kustomization.yaml")
    included = [COMPONENTS / "prometheus-operator" / entry for entry in component["resources"]]
    assert MONITORING in [path.resolve() for path in included]
    [monitoring] = yaml_documents(MONITORING / "kustomization.yaml")
    assert monitoring["resources"] == [ALERTS.name]


def test_backlog_autoscaling_keeps_cpu_and_adds_the_inbox_age(
    monitored: list[Manifest], catalogue: dict[str, set[str]]
) -> None:
    hpas = of_kind(monitored, "HorizontalPodAutoscaler")
    worker = hpas["smartcar-worker"]["spec"]
    base = of_kind(kustomize(K8S / "base"), "HorizontalPodAutoscaler")["smartcar-worker"]["spec"]
    assert worker["metrics"][: len(base["metrics"])] == base["metrics"], "the CPU target is kept"
    [external] = [metric["external"] for metric in worker["metrics"] if metric["type"] == "External"]
    name = external["metric"]["name"]
    assert name in catalogue
    assert name in {"smartcar_inbox_oldest_age_seconds", "smartcar_inbox_depth"}
    assert float(external["target"]["value"]) > 0
    assert {key: worker[key] for key in ("minReplicas", "maxReplicas")} == {
        key: base[key] for key in ("minReplicas", "maxReplicas")
    }
    assert "smartcar-beat" not in {hpa["spec"]["scaleTargetRef"]["name"] for hpa in hpas.values()}
    assert of_kind(monitored, "Deployment")["smartcar-beat"]["spec"]["replicas"] == 1


def test_the_prometheus_adapter_rule_serves_the_metric_the_hpa_asks_for(
    monitored: list[Manifest], catalogue: dict[str, set[str]], jobs: set[str]
) -> None:
    [values] = yaml_documents(COMPONENTS / "backlog-autoscaling" / "prometheus-adapter-values.yaml")
    [rule] = values["rules"]["external"]
    worker = of_kind(monitored, "HorizontalPodAutoscaler")["smartcar-worker"]["spec"]
    [external] = [metric["external"] for metric in worker["metrics"] if metric["type"] == "External"]
    assert rule["name"]["as"] == external["metric"]["name"]
    assert re.fullmatch(rule["name"]["matches"], external["metric"]["name"])
    # The Prometheus Operator adds the pod's namespace to every series it scrapes.
    assert problems(rule["seriesQuery"], catalogue, jobs, TARGET_LABELS | {"namespace"}) == []
    [series] = read(rule["seriesQuery"]).selectors
    assert series.metric == external["metric"]["name"]
    # The HPA's namespace is the only scope: one value per deployment, the max over its workers.
    assert rule["resources"]["overrides"]["namespace"] == {"resource": "namespace"}
    assert rule["metricsQuery"].startswith("max(<<.Series>>{<<.LabelMatchers>>})")


# ---- docker compose --------------------------------------------------------------------------------------


def test_compose_exposes_each_workers_metrics_to_its_prometheus() -> None:
    services = compose()["services"]
    worker = services["worker"]
    port = int(worker["environment"]["WORKERS_METRICS_PORT"])
    assert [int(exposed) for exposed in worker["expose"]] == [port]
    assert not any(str(port) in str(published) for published in worker.get("ports", [])), "not published"
    jobs = compose_jobs()
    [workers] = jobs["smartcar-worker"]["dns_sd_configs"]
    assert (workers["names"], workers["port"]) == (["worker"], port)
    [receivers] = jobs["smartcar-receiver"]["dns_sd_configs"]
    published = {int(mapping.split(":")[-1]) for mapping in services["receiver"]["ports"]}
    assert receivers["names"] == ["receiver"]
    assert receivers["port"] in published
    assert jobs["smartcar-receiver"]["metrics_path"] in receiver_paths()
    prometheus = services["prometheus"]
    assert prometheus["profiles"] == ["monitoring"]
    [line] = prometheus["command"]
    config = re.search(r"--config\.file=(\S+)", line)
    assert config
    assert config[1] == "/etc/smartcar/prometheus.yml"
    assert "./deploy/monitoring:/etc/smartcar:ro" in prometheus["volumes"]
