"""docs/grafana-dashboard.json: valid Grafana dashboard JSON on titus-flow's metric names."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from titus_flow import metrics

DASHBOARD = Path(__file__).parents[2] / "docs" / "grafana-dashboard.json"
SERIES = re.compile(r"\b(?:titus_flow|temporal)_[a-z0-9_]+\b")
GROUPING = re.compile(r"\bby \(([^)]*)\)")


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def queries(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_it_is_a_grafana_dashboard(dashboard: dict[str, Any]) -> None:
    assert dashboard["title"] and dashboard["uid"]
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 30
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]
    assert all(isinstance(i, int) for i in ids) and len(set(ids)) == len(ids)
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
        if panel["type"] == "row":
            continue
        targets = panel["targets"]
        assert targets, f"panel {panel['title']!r} has no targets"
        assert len({t["refId"] for t in targets}) == len(targets)
        assert all(t["expr"].strip() and t["datasource"]["type"] == "prometheus" for t in targets)


def test_every_series_it_queries_is_defined(dashboard: dict[str, Any]) -> None:
    used = {name for expr in queries(dashboard) for name in SERIES.findall(expr)}
    unknown = sorted(name for name in used if metrics.defined_name(name, sdk=True) is None)
    assert unknown == [], "queried but not defined in titus_flow.metrics"
    shown = {metrics.defined_name(name) for name in used}
    assert shown >= metrics.ALL, f"metrics without a panel: {sorted(metrics.ALL - shown)}"


def test_it_groups_titus_flow_metrics_by_their_labels_only(dashboard: dict[str, Any]) -> None:
    for expr in queries(dashboard):
        if "titus_flow_" not in expr:
            continue
        for grouping in GROUPING.findall(expr):
            keys = {key.strip() for key in grouping.split(",")}
            assert keys <= metrics.LABEL_KEYS | {"le"}, expr
