"""deploy/: Prometheus rules (promtool), Kubernetes manifests (schemas, kustomize-style
overlays), compose/systemd/Home Assistant config against the real config models, and
every vpp_* metric used by the rules and the dashboard exists in the code."""

from __future__ import annotations

import configparser
import copy
import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from prometheus_client import CollectorRegistry

from aggregator.config import AggregatorConfig
from aggregator.metrics import AggregatorMetrics
from edge_agent.config import AgentConfig
from edge_agent.metrics import AgentMetrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "vpp-rules.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "vpp-fleet.json"
K8S = DEPLOY / "kubernetes"
K8S_VERSION = "1.30"
# CRDs that kubernetes-validate has no schema for: checked for their required fields here
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}


def _promtool() -> str:
    binary = shutil.which("promtool") or ("/usr/bin/promtool" if Path("/usr/bin/promtool").exists() else None)
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is not installed (.ci/run installs Debian's prometheus)")
        pytest.skip("promtool not installed")
    return binary


def _run(*args: str | Path, cwd: Path | None = None) -> str:
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=30, cwd=cwd)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


# ---------------------------------------------------------------- Prometheus


def test_promtool_check_rules() -> None:
    assert "SUCCESS" in _run(_promtool(), "check", "rules", RULES)


def test_promtool_test_rules() -> None:
    out = _run(_promtool(), "test", "rules", "tests/vpp-rules.test.yml", cwd=DEPLOY / "prometheus")
    assert "SUCCESS" in out


@pytest.mark.parametrize("config", [DEPLOY / "prometheus" / "prometheus.yml", DEPLOY / "compose" / "prometheus.yml"])
def test_promtool_check_config(config: Path, tmp_path: Path) -> None:
    shutil.copy(config, tmp_path / "prometheus.yml")
    shutil.copy(RULES, tmp_path / "vpp-rules.yml")  # as mounted beside it
    _run(_promtool(), "check", "config", tmp_path / "prometheus.yml")


def _rules() -> list[dict[str, Any]]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def test_every_alert_has_severity_summary_description_runbook() -> None:
    alerts = [r for r in _rules() if "alert" in r]
    assert len(alerts) >= 6
    for rule in alerts:
        assert re.fullmatch(r"Vpp[A-Z][A-Za-z]+", rule["alert"]), rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        for key in ("summary", "description", "runbook"):
            assert rule["annotations"].get(key, "").strip(), f"{rule['alert']}: no {key}"
    names = {r["alert"] for r in alerts}
    assert {"VppFleetConnectedFractionDropping", "VppNoDispatchLeader", "VppSolveOverDeadline",
            "VppTelemetryStale", "VppEdgeExportCapViolated"} <= names


# ---------------------------------------------------------------- metric names


def _exposed_names() -> set[str]:
    names: set[str] = set()
    for registry in (AggregatorMetrics(CollectorRegistry()).registry, AgentMetrics(CollectorRegistry()).registry):
        for family in registry.collect():
            if family.type == "counter":
                names.add(family.name + "_total")
            elif family.type == "histogram":
                names.update(family.name + s for s in ("", "_bucket", "_count", "_sum"))
            else:
                names.add(family.name)
    return names


def _dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]


METRIC = re.compile(r"(?<![\w:])vpp_[a-z0-9_]+")
RECORDED = re.compile(r"(?<![\w:])vpp:[a-z0-9_:]+")


def test_every_metric_in_rules_and_dashboard_exists_in_code() -> None:
    exposed = _exposed_names()
    assert "vpp_aggregator_connected_agents" in exposed and "vpp_edge_uplink_connects_total" in exposed
    recorded = {r["record"] for r in _rules() if "record" in r}
    used: dict[str, set[str]] = {}
    for where, exprs in (("rules", [r["expr"] for r in _rules()]), ("dashboard", _dashboard_exprs())):
        for expr in exprs:
            for name in METRIC.findall(expr):
                used.setdefault(name, set()).add(where)
            for name in RECORDED.findall(expr):
                assert name in recorded, f"{where} uses {name}, which no rule records"
    missing = {n: sorted(w) for n, w in used.items() if n not in exposed}
    assert not missing, f"metrics used but not defined in aggregator/metrics.py or edge_agent/metrics.py: {missing}"
    assert len(used) >= 10


def test_dashboard_is_provisionable_json() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] and dash["title"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dash["panels"]:
        assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"]), panel["title"]
    titles = " ".join(p["title"].lower() for p in dash["panels"])
    for topic in ("per replica", "reconnect", "telemetry", "flexibility", "solve", "ack latency", "leader"):
        assert topic in titles, topic
    provider = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "dashboards" / "vpp.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards/vpp"
    compose = yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())
    assert "../grafana/dashboards:/var/lib/grafana/dashboards/vpp:ro" in compose["services"]["grafana"]["volumes"]


# ---------------------------------------------------------------- Kubernetes


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _merge(base: Any, patch: Any) -> Any:
    """Strategic merge of the fields our patches use: maps merge; lists of maps with a
    ``name`` merge by name; other lists are replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            out[k] = _merge(base[k], v) if k in base else copy.deepcopy(v)
        return out
    if isinstance(base, list) and isinstance(patch, list) and all(isinstance(i, dict) and "name" in i
                                                                   for i in base + patch):
        out_list = [copy.deepcopy(i) for i in base]
        for item in patch:
            idx = next((n for n, b in enumerate(out_list) if b["name"] == item["name"]), None)
            if idx is None:
                out_list.append(copy.deepcopy(item))
            else:
                out_list[idx] = _merge(out_list[idx], item)
        return out_list
    return copy.deepcopy(patch)


def _key(doc: dict[str, Any]) -> tuple[str, str]:
    return doc["kind"], doc["metadata"]["name"]


def render(directory: Path) -> list[dict[str, Any]]:
    """A small kustomize: resources (files/dirs), namespace, labels, images, and
    strategic-merge patches (including ``$patch: delete``)."""
    kust = yaml.safe_load((directory / "kustomization.yaml").read_text())
    assert kust["apiVersion"] == "kustomize.config.k8s.io/v1beta1" and kust["kind"] == "Kustomization"
    unknown = set(kust) - {"apiVersion", "kind", "namespace", "labels", "resources", "images", "patches"}
    assert not unknown, f"renderer does not support {unknown}"
    docs: list[dict[str, Any]] = []
    for res in kust.get("resources", []):
        path = (directory / res).resolve()
        docs.extend(render(path) if path.is_dir() else _docs(path))
    for patch in kust.get("patches", []):
        for p in _docs(directory / patch["path"]):
            matches = [i for i, d in enumerate(docs) if _key(d) == _key(p)]
            assert len(matches) == 1, f"patch {patch['path']} matches {len(matches)} objects for {_key(p)}"
            if p.get("$patch") == "delete":
                del docs[matches[0]]
            else:
                docs[matches[0]] = _merge(docs[matches[0]], p)
    for doc in docs:
        if "namespace" in kust and doc["kind"] != "Namespace":
            doc["metadata"]["namespace"] = kust["namespace"]
        for label_set in kust.get("labels", []):
            doc["metadata"].setdefault("labels", {}).update(label_set["pairs"])
        for image in kust.get("images", []):
            for pod in _pod_specs(doc):
                for c in pod.get("containers", []):
                    if c["image"].split(":")[0] == image["name"]:
                        c["image"] = f"{image.get('newName', image['name'])}:{image['newTag']}"
    return docs


def _pod_specs(doc: dict[str, Any]) -> list[dict[str, Any]]:
    tmpl = doc.get("spec", {}).get("template", {})
    return [tmpl["spec"]] if "spec" in tmpl else []


def _validate(doc: dict[str, Any]) -> None:
    if (doc["apiVersion"], doc["kind"]) in CRD_KINDS:
        assert doc["metadata"]["name"] and doc["spec"]["selector"]["matchLabels"] and doc["spec"]["endpoints"]
        return
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


ALL_MANIFESTS = sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml"
                       and "$patch" not in p.read_text() and p.parent.name in ("base",))


@pytest.mark.parametrize("path", ALL_MANIFESTS, ids=lambda p: str(p.relative_to(K8S)))
def test_base_manifest_validates_against_kubernetes_schema(path: Path) -> None:
    for doc in _docs(path):
        _validate(doc)


@pytest.mark.parametrize("overlay", ["base", "overlays/production", "overlays/managed-redis"])
def test_kustomization_renders_and_validates(overlay: str) -> None:
    docs = render(K8S / overlay)
    keys = [_key(d) for d in docs]
    assert len(keys) == len(set(keys))
    for doc in docs:
        _validate(doc)
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "vpp"
    dep = next(d for d in docs if d["kind"] == "Deployment")
    pod = dep["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert dep["spec"]["replicas"] == 3
    assert container["readinessProbe"]["grpc"] == {"port": 50052, "service": "vpp.v1.FleetService"}
    assert container["livenessProbe"]["grpc"]["port"] == 50052
    config = next(d for d in docs if _key(d) == ("ConfigMap", "vpp-aggregator-config"))
    toml = tomllib.loads(config["data"]["aggregator.toml"])
    assert pod["terminationGracePeriodSeconds"] > toml["drain_grace_s"]
    assert {"requests", "limits"} <= set(container["resources"])
    assert any(d["kind"] == "PodDisruptionBudget" for d in docs)
    if overlay == "overlays/managed-redis":
        assert ("StatefulSet", "vpp-redis") not in keys and ("Service", "vpp-redis") not in keys
        assert any(e["name"] == "VPP_AGG_STORE_URL" for e in container["env"])
        assert any(e["name"] == "VPP_AGG_REPLICA_ID" for e in container["env"])  # merged, not replaced
    else:
        assert ("StatefulSet", "vpp-redis") in keys
    if overlay == "overlays/production":
        svc = next(d for d in docs if _key(d) == ("Service", "vpp-aggregator"))
        assert svc["spec"]["type"] == "LoadBalancer" and svc["spec"]["ports"][0]["port"] == 50051
        assert container["resources"]["limits"]["cpu"] == "4"
        assert any(d["kind"] == "ServiceMonitor" for d in docs)


def test_aggregator_configmap_is_a_valid_aggregator_config(tmp_path: Path) -> None:
    docs = render(K8S / "base")
    config = next(d for d in docs if _key(d) == ("ConfigMap", "vpp-aggregator-config"))
    data = tomllib.loads(config["data"]["aggregator.toml"])
    tls = data.pop("tls")
    dep = next(d for d in docs if d["kind"] == "Deployment")
    mounts = {m["mountPath"] for m in dep["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
    for key in ("cert_file", "key_file", "client_ca_file"):
        assert str(Path(tls[key]).parent) in mounts
        (tmp_path / Path(tls[key]).name).write_text("pem")
        tls[key] = str(tmp_path / Path(tls[key]).name)
    cfg = AggregatorConfig(**data, tls=tls)
    assert cfg.admin_listen == "0.0.0.0:50052" and cfg.metrics_host == "0.0.0.0"
    ports = {p["containerPort"] for p in dep["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert {int(cfg.listen.rpartition(":")[2]), cfg.metrics_port, 50052} <= ports
    example = _docs(K8S / "base" / "tls-secret.example.yaml")[0]
    kubernetes_validate.validate(example, K8S_VERSION, strict=True)
    assert {Path(tls[k]).name for k in tls if k.endswith("_file")} <= set(example["stringData"])


# ---------------------------------------------------------------- compose, systemd, HA


def test_compose_services_and_their_environment_are_valid_configs(monkeypatch: pytest.MonkeyPatch) -> None:
    compose = yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())
    services = compose["services"]
    aggs = [n for n in services if n.startswith("aggregator-")]
    houses = [n for n in services if n.startswith("house-")]
    assert {"redis", "prometheus", "grafana"} <= set(services) and len(aggs) == 2 and len(houses) == 3
    for name in aggs + houses:
        svc = services[name]
        with monkeypatch.context() as m:
            for k, v in svc["environment"].items():
                m.setenv(k, str(v))
            if name in aggs:
                assert svc["command"][:2] == ["aggregator", "serve"]
                cfg: Any = AggregatorConfig(insecure=True)
                assert cfg.store_url == "redis://redis:6379/0" and cfg.replica_id == name
                assert [f.houses for f in cfg.feeders] == [[f"house-{i}" for i in (1, 2, 3)]]
                probe = svc["healthcheck"]["test"]
                assert f"'127.0.0.1:{cfg.admin_listen.rpartition(':')[2]}'" in probe[-1]
                assert "service='vpp.v1.FleetService'" in probe[-1]
            else:
                assert svc["command"][:2] == ["edge-agent", "run"]
                cfg = AgentConfig()
                assert cfg.device.host in services and cfg.aggregator.split(":")[0] == "aggregator"
    prom = yaml.safe_load((DEPLOY / "compose" / "prometheus.yml").read_text())
    targets = {t.split(":")[0] for j in prom["scrape_configs"] for s in j["static_configs"] for t in s["targets"]}
    assert targets == set(aggs + houses)


def test_systemd_unit_is_hardened_and_its_config_template_valid() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(DEPLOY / "systemd" / "vpp-edge-agent.service")
    svc = unit["Service"]
    assert svc["User"] == "vpp-edge" and svc["Restart"] == "always"
    assert svc["ProtectSystem"] == "strict" and svc["StateDirectory"] == "vpp-edge-agent"
    assert svc["NoNewPrivileges"] == "yes" and svc["CapabilityBoundingSet"] == ""
    # configuration errors exit 2: no restart loop.  An unreachable device is no exit (the agent
    # waits for it: tests/integration/test_agent_startup.py), so a house that boots before its
    # inverter is not kept down by this
    assert svc["RestartPreventExitStatus"] == "2"
    assert "/etc/vpp/edge-agent.toml" in svc["ExecStart"]
    data = tomllib.loads((DEPLOY / "systemd" / "edge-agent.toml").read_text())
    assert set(data["tls"]) == {"ca_file", "cert_file", "key_file"}
    data.pop("tls")
    cfg = AgentConfig(**data, insecure=True, house_id="house-0001")
    assert cfg.site.max_export_w == 4600


def test_home_assistant_addon_options_match_schema_and_agent_config() -> None:
    addon = DEPLOY / "home-assistant" / "vpp-edge-agent"
    config = yaml.safe_load((addon / "config.yaml").read_text())
    assert {"name", "version", "slug", "description", "arch", "options", "schema"} <= set(config)
    # optional keys (a schema ending in ?) may be left out of the defaults, as the Supervisor documents
    required = {k for k, v in config["schema"].items() if not (isinstance(v, str) and v.endswith("?"))}
    assert required <= set(config["options"]) <= set(config["schema"])
    run = (addon / "run.sh").read_text()
    for option in config["schema"]:
        assert f"'{option}'" in run or f"{option} " in run, f"run.sh ignores option {option}"
    env_fields = set(re.findall(r"export (VPP_AGENT_[A-Z_]+)=", run))
    top = {f.upper() for f in AgentConfig.model_fields}
    for var in env_fields:
        parts = var.removeprefix("VPP_AGENT_").split("__")
        assert parts[0] in top, var
    assert "/opt/vpp/bin/edge-agent}\" run" in run and len(re.findall(r"^FROM ", (addon / "Dockerfile").read_text(), re.M)) == 1
    assert config["services"] == ["mqtt:need"] and config["homeassistant_api"] is True
    _run("bash", "-n", addon / "run.sh")


def test_every_env_variable_in_the_deployments_names_a_field() -> None:
    # an unknown VPP_AGENT_*/VPP_AGG_* variable now stops the process (exit 2): none may be shipped
    from vpp_common.config import unknown_env_problems

    root = DEPLOY.parent
    texts = [f.read_text(errors="replace") for d in (DEPLOY, root / "docs") for f in d.rglob("*") if f.is_file()]
    names = {n for t in [*texts, (root / "README.md").read_text()] for n in re.findall(r"VPP_(?:AGENT|AGG)_[A-Z0-9_]+", t)}
    assert len(names) > 10
    env = {n: "" for n in names}
    assert unknown_env_problems(AgentConfig, env) == [] and unknown_env_problems(AggregatorConfig, env) == []


def test_shipped_redis_keeps_its_data() -> None:
    """Issue 20: the shipped Redis kept nothing on disk, so a restart silently lost the fleet's
    state.  Now: an append-only file on a volume / PVC, no eviction; the README says what a
    managed Redis must offer."""
    compose = yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())
    redis_svc = compose["services"]["redis"]
    command = redis_svc["command"]
    assert command[command.index("--appendonly") + 1] == "yes" and "--save" not in command
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    volume = next(v.split(":")[0] for v in redis_svc["volumes"] if v.endswith(":/data"))
    assert volume in compose["volumes"]  # a named volume, not the container's own layer
    docs = list(yaml.safe_load_all((DEPLOY / "kubernetes" / "base" / "redis.yaml").read_text()))
    sts = next(d for d in docs if d["kind"] == "StatefulSet")
    container = sts["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    assert args[args.index("--appendonly") + 1] == "yes" and "--save" not in args
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
    data = next(m for m in container["volumeMounts"] if m["mountPath"] == "/data")
    assert data["name"] in {c["metadata"]["name"] for c in sts["spec"]["volumeClaimTemplates"]}
    readme = (DEPLOY / "README.md").read_text()
    for needed in ("Redis >= 7.0", "--appendonly yes", "maxmemory-policy noeviction"):
        assert needed in readme, needed


BASHIO_STUBS = r"""
opt() { python3 -c 'import json, sys; v = json.load(open(sys.argv[1])).get(sys.argv[2]); print(str(v).lower() if isinstance(v, bool) else "\n".join(json.dumps(x) for x in v) if isinstance(v, list) else ("" if v is None else v))' "$ADDON_OPTIONS" "$1"; }
bashio::config() { opt "$1"; }
bashio::config.has_value() { [[ -n "$(opt "$1")" ]]; }
bashio::config.true() { [[ "$(opt "$1")" == "true" ]]; }
bashio::fs.file_exists() { [[ -f "$1" ]]; }
bashio::log.info() { echo "INFO $*" >&2; }
bashio::log.warning() { echo "WARNING $*" >&2; }
bashio::exit.nok() { echo "NOK $*" >&2; exit 1; }
bashio::services.available() { [[ -n "${MQTT_SERVICE:-}" ]]; }
bashio::services() { python3 -c 'import json, sys; v = json.loads(sys.argv[1])[sys.argv[2]]; print(str(v).lower() if isinstance(v, bool) else v)' "$MQTT_SERVICE" "$2"; }
cd() { :; }
"""


@pytest.mark.parametrize("broker", [True, False])
def test_home_assistant_addon_takes_the_broker_from_the_supervisor(tmp_path: Path, broker: bool) -> None:
    """run.sh under stand-ins of bashio (the Supervisor's options and its MQTT service, as the
    Supervisor API documents them): the agent gets the broker and its credentials, and its
    config loads; without a broker it runs without Home Assistant, with a warning."""
    from vpp_common.config import load_config

    addon = DEPLOY / "home-assistant" / "vpp-edge-agent"
    options = yaml.safe_load((addon / "config.yaml").read_text())["options"] | {"insecure": True,
                                                                                 "house_id": "house-7"}
    (tmp_path / "options.json").write_text(json.dumps(options))
    (tmp_path / "stubs.sh").write_text(BASHIO_STUBS)
    dump = tmp_path / "env.json"
    agent = tmp_path / "edge-agent"
    agent.write_text(f"#!/bin/sh\nexec python3 -c 'import json, os; json.dump(dict(os.environ), open(\"{dump}\", \"w\"))'\n")
    agent.chmod(0o755)
    service = {"host": "core-mosquitto", "port": 1883, "ssl": False, "protocol": "3.1.1", "username": "addons",
               "password": "s3cret", "addon": "core_mosquitto"}
    env = {"PATH": os.environ["PATH"], "ADDON_OPTIONS": str(tmp_path / "options.json"), "VPP_EDGE_AGENT": str(agent),
           **({"MQTT_SERVICE": json.dumps(service)} if broker else {})}
    r = subprocess.run(["bash", "-c", f"source {tmp_path / 'stubs.sh'}; source {addon / 'run.sh'}"], env=env,
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    got = {k: v for k, v in json.loads(dump.read_text()).items() if k.startswith("VPP_AGENT_")}
    if broker:
        assert {k: got[k] for k in got if k.startswith("VPP_AGENT_HOME_ASSISTANT__")} == {
            "VPP_AGENT_HOME_ASSISTANT__HOST": "core-mosquitto", "VPP_AGENT_HOME_ASSISTANT__PORT": "1883",
            "VPP_AGENT_HOME_ASSISTANT__USERNAME": "addons", "VPP_AGENT_HOME_ASSISTANT__PASSWORD": "s3cret"}
    else:
        assert not any(k.startswith("VPP_AGENT_HOME_ASSISTANT__") for k in got)
        assert "no MQTT broker from the Supervisor" in r.stderr
    old = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("VPP_AGENT_")}
    try:
        os.environ.update(got)
        cfg = load_config(AgentConfig, None)
    finally:
        for k in got:
            os.environ.pop(k, None)
        os.environ.update(old)
    assert cfg.house_id == "house-7" and cfg.control.mode == "vpp"
    if broker:
        assert cfg.home_assistant is not None and cfg.home_assistant.host == "core-mosquitto"
        assert cfg.home_assistant.password is not None
        assert cfg.home_assistant.password.get_secret_value() == "s3cret"
    else:
        assert cfg.home_assistant is None



def test_home_assistant_addon_passes_the_entities_and_the_supervisor_token(tmp_path: Path) -> None:
    """``ha_entities`` in the options: the agent gets the Core's WebSocket API through the
    Supervisor (ws://supervisor/core/websocket, SUPERVISOR_TOKEN) and the entities, and its
    config loads; without the token the add-on stops with the reason."""
    from vpp_common.config import load_config

    addon = DEPLOY / "home-assistant" / "vpp-edge-agent"
    entities = [{"id": "p1", "entity_id": "sensor.p1_power", "role": "grid_meter", "invert": True,
                 "power_entity_id": None},
                {"id": "boiler", "entity_id": "switch.boiler", "role": "switchable_load", "max_off_s": 1800}]
    options = yaml.safe_load((addon / "config.yaml").read_text())["options"] | {
        "insecure": True, "house_id": "house-7", "ha_entities": entities, "ha_price_spike_per_kwh": 0.5}
    (tmp_path / "options.json").write_text(json.dumps(options))
    (tmp_path / "stubs.sh").write_text(BASHIO_STUBS)
    dump = tmp_path / "env.json"
    agent = tmp_path / "edge-agent"
    agent.write_text(f"#!/bin/sh\nexec python3 -c 'import json, os; json.dump(dict(os.environ), open(\"{dump}\", \"w\"))'\n")
    agent.chmod(0o755)
    env = {"PATH": os.environ["PATH"], "ADDON_OPTIONS": str(tmp_path / "options.json"), "VPP_EDGE_AGENT": str(agent)}
    script = f"source {tmp_path / 'stubs.sh'}; source {addon / 'run.sh'}"
    r = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 1 and "SUPERVISOR_TOKEN" in r.stderr
    r = subprocess.run(["bash", "-c", script], env=env | {"SUPERVISOR_TOKEN": "sup-token"}, capture_output=True,
                       text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    got = {k: v for k, v in json.loads(dump.read_text()).items() if k.startswith("VPP_AGENT_")}
    old = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("VPP_AGENT_")}
    try:
        os.environ.update(got)
        cfg = load_config(AgentConfig, None)
    finally:
        for k in got:
            os.environ.pop(k, None)
        os.environ.update(old)
    api = cfg.home_assistant.api if cfg.home_assistant is not None else None
    assert api is not None and api.url == "ws://supervisor/core/websocket" and api.token_value() == "sup-token"
    assert [(e.id, e.role, e.invert, e.max_off_s) for e in api.entities] == [
        ("p1", "grid_meter", True, 3600.0), ("boiler", "switchable_load", False, 1800.0)]
    assert api.price_spike_per_kwh == 0.5
