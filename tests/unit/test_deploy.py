"""The Dockerfile, deploy/compose.yaml and deploy/k8s/ agree with the code and each other.

Every ``HYBRIDCON_*`` name they use must be a field of ``Settings`` (a misspelt name is
ignored by pydantic-settings at run time, so only a test can see it), every value they
set must pass the same validation the node applies at start, and ports, probe paths,
selectors and shutdown timings must line up. Each check returns the problems it found,
so the tests at the end can show that a broken file would be caught.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from hybridcon.core.programme import parse_programme
from hybridcon.settings import Settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
DOCKERFILE = REPO / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
K8S = DEPLOY / "k8s"
NGINX = DEPLOY / "nginx"
JANUS_IMAGE = DEPLOY / "janus" / "Containerfile"
JANUS_CONFIG = DEPLOY / "janus" / "janus-config.sh"
PREFIX = "HYBRIDCON_"
NAME = re.compile(r"\bHYBRIDCON_[A-Z0-9_]+\b")
# Values for the compose file's ${VARIABLES}, as an operator's deploy/.env would give.
COMPOSE_ENV = {
    "POSTGRES_PASSWORD": "pw",
    "PUBLIC_URL": "https://live.example.org",
    "PUBLIC_IP": "203.0.113.10",
    "TURN_HOST": "turn.example.org",
    "TURN_SECRET": "turn-secret-0123456789",
}

# What `hybridcon serve` may wait for after readiness went 503 (docs/operations.md,
# "Graceful shutdown"): open sockets' clean-up 6 s, aiohttp's handlers 10 s, the
# engagement writer and the PostgreSQL pool 10 s; and up to 10 s per live stage.
SHUTDOWN_WAITS = 6 + 10 + 10
PER_LIVE_STAGE = 10
LIVE_STAGES = sum(
    1
    for stage in parse_programme(
        (REPO / "config" / "sociaalwerkconferentie-2022.toml").read_text("utf-8")
    ).stages
    if stage.kind.value in {"stream", "radio"}
)


# --- reading the files -------------------------------------------------------------------


def yaml_files() -> list[Path]:
    return sorted([COMPOSE, *K8S.rglob("*.yaml")])


def k8s_documents(root: Path = K8S) -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(root.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text("utf-8")):
            if doc is not None and doc.get("kind") != "Kustomization":
                yield path, doc


def k8s_objects(root: Path) -> dict[tuple[str, str], dict[str, Any]]:
    return {(doc["kind"], doc["metadata"]["name"]): doc for _, doc in k8s_documents(root)}


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text("utf-8"))
    return loaded


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's ``${NAME}``, ``${NAME:-default}`` and ``${NAME:?error}``."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if name in env:
            return env[name]
        if op == ":-":
            return arg or ""
        raise KeyError(f"compose needs ${{{name}}}")

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:-|:\?)([^}]*))?\}", one, value)


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of every instruction, continuation lines joined."""
    joined = re.sub(r"\\\n", " ", text)
    found = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def final_stage(text: str) -> list[tuple[str, str]]:
    instructions = dockerfile_instructions(text)
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[last_from:]


def dockerfile_env(text: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in final_stage(text):
        if word == "ENV":
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                env[key] = value
    return env


# --- the checks: each returns its problems -------------------------------------------------


def unknown_settings(names: set[str]) -> list[str]:
    """``HYBRIDCON_*`` names that no field of ``Settings`` reads."""
    fields = {PREFIX + field.upper() for field in Settings.model_fields}
    return sorted(name for name in names if name.startswith(PREFIX) and name not in fields)


def refused_values(env: Mapping[str, str], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What ``Settings`` refuses in an environment, read as a node reads it at start."""
    with monkeypatch.context() as patch:
        for name in [n for n in os.environ if n.startswith(PREFIX)]:
            patch.delenv(name)
        for name, value in env.items():
            patch.setenv(name, value)
        try:
            Settings(_env_file=None)  # type: ignore[call-arg]
        except ValueError as exc:
            return [str(exc)]
    return []


def dockerfile_problems(text: str) -> list[str]:
    problems = []
    final = final_stage(text)
    env = dockerfile_env(text)
    port = env.get("HYBRIDCON_PORT", str(Settings.model_fields["port"].default))
    exposed = [arg for word, arg in final if word == "EXPOSE"]
    if exposed != [port]:
        problems.append(f"EXPOSE {exposed} is not HYBRIDCON_PORT {port}")
    if env.get("HYBRIDCON_HOST") != "0.0.0.0":
        problems.append("HYBRIDCON_HOST must be 0.0.0.0 in a container")
    checks = [arg for word, arg in final if word == "HEALTHCHECK"]
    if len(checks) != 1 or f"/healthz' % os.environ.get('HYBRIDCON_PORT', '{port}')" not in (
        checks[0] if checks else ""
    ):
        problems.append(f"HEALTHCHECK must fetch /healthz on HYBRIDCON_PORT ({port}): {checks}")
    volumes = [json.loads(arg) for word, arg in final if word == "VOLUME"]
    if [env.get("HYBRIDCON_DATA_DIR")] not in volumes:
        problems.append(f"VOLUME {volumes} is not HYBRIDCON_DATA_DIR")
    users = [arg for word, arg in final if word == "USER"]
    if not users or not re.fullmatch(r"[1-9]\d*(:\d+)?", users[-1]):
        problems.append(f"USER {users} must be a numeric, non-root uid")
    if any(re.search(r"\b(gcc|build-essential|cc|clang)\b", arg) for word, arg in final):
        problems.append("a compiler in the final stage")
    return problems


def compose_problems(spec: dict[str, Any], image_env: Mapping[str, str]) -> list[str]:
    problems = []
    services = spec["services"]
    nodes = {name: s for name, s in services.items() if name.startswith("hybridcon-")}
    if len(nodes) != 3:
        problems.append(f"three hybridcon nodes expected, found {sorted(nodes)}")
    for name, node in nodes.items():
        env = {**image_env, **node.get("environment", {})}
        port = env.get("HYBRIDCON_PORT", "8080")
        upstream = {
            int(p)
            for conf in ("compose-render.sh", "compose-media.conf")
            for p in re.findall(rf"\b{name}:(\d+)", (NGINX / conf).read_text("utf-8"))
        }
        if upstream != {int(port)}:
            problems.append(f"nginx reaches {name} on {upstream}, it listens on {port}")
        for dependency, condition in node.get("depends_on", {}).items():
            if condition.get("condition") != "service_healthy":
                problems.append(f"{name} starts before {dependency} is healthy")
            if "healthcheck" not in services[dependency]:
                problems.append(f"{name} waits for {dependency}, which has no healthcheck")
        grace = float(
            env.get("HYBRIDCON_SHUTDOWN_GRACE", Settings.model_fields["shutdown_grace"].default)
        )
        needed = grace + SHUTDOWN_WAITS + PER_LIVE_STAGE * LIVE_STAGES
        stop = int(str(node.get("stop_grace_period", "10s")).removesuffix("s"))
        if stop <= needed:
            problems.append(f"{name}: stop_grace_period {stop}s <= drain {needed}s")
        mounts = {m.split(":")[1] for m in node.get("volumes", [])}
        data_dir = env.get("HYBRIDCON_DATA_DIR", "var")
        for needed_mount in (data_dir, f"{data_dir}/keys", f"{data_dir}/hls"):
            if needed_mount not in mounts:
                problems.append(f"{name} does not mount {needed_mount}")
    nginx = services["nginx"]
    for dependency in nodes:
        if nginx.get("depends_on", {}).get(dependency, {}).get("condition") != "service_healthy":
            problems.append(f"nginx starts before {dependency} is healthy")
    proxies = {
        json.dumps(n.get("environment", {}).get("HYBRIDCON_REVERSE_PROXIES"))
        for n in nodes.values()
    }
    nginx_ip = next(iter(nginx["networks"].values()))["ipv4_address"]
    if not all(nginx_ip in p for p in proxies):
        problems.append(
            f"nginx's address {nginx_ip} is not in every node's HYBRIDCON_REVERSE_PROXIES"
        )
    return problems + janus_problems(spec, image_env)


def janus_problems(spec: dict[str, Any], image_env: Mapping[str, str]) -> list[str]:
    """The nodes reach the Janus service where it listens, and it reads their room key."""
    problems = []
    services = spec["services"]
    janus = services["janus"]
    janus_env = janus["environment"]
    gateway = spec["networks"]["hybridcon"]["ipam"]["config"][0]["gateway"]
    if janus_env["JANUS_WS_IP"] != gateway:
        problems.append(f"Janus listens on {janus_env['JANUS_WS_IP']}, not the gateway {gateway}")
    for name, node in services.items():
        if not name.startswith("hybridcon-"):
            continue
        env = {**image_env, **node["environment"]}
        url = env.get("HYBRIDCON_JANUS_URL", Settings.model_fields["janus_url"].default)
        if url != f"ws://{janus_env['JANUS_WS_IP']}:8188":
            problems.append(f"{name} looks for Janus at {url}")
        key = f"{env.get('HYBRIDCON_DATA_DIR', 'var')}/keys/janus-room.key"
        if janus_env["JANUS_ROOM_KEY_FILE"] != key:
            problems.append(f"Janus reads {janus_env['JANUS_ROOM_KEY_FILE']}, {name} makes {key}")
    mounts = {m.split(":")[1] for m in janus.get("volumes", [])}
    if str(Path(janus_env["JANUS_ROOM_KEY_FILE"]).parent) not in mounts:
        problems.append("Janus does not mount the keys volume")
    image_user = dict(final_stage(DOCKERFILE.read_text("utf-8"))).get("USER", "").split(":")[0]
    janus_user = dict(dockerfile_instructions(JANUS_IMAGE.read_text("utf-8")))["USER"]
    if janus_user != image_user:
        problems.append(f"Janus runs as {janus_user}, the room key belongs to {image_user}")
    return problems


def container_problems(doc: dict[str, Any], ports: Mapping[str, int], grace: float) -> list[str]:
    """One Deployment: probes, ports and the time it is given to drain."""
    name = doc["metadata"]["name"]
    spec = doc["spec"]["template"]["spec"]
    problems = []
    (container,) = [c for c in spec["containers"] if c["name"] == "hybridcon"]
    named = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    if named != {"http": ports["http"]}:
        problems.append(f"{name}: container ports {named}, settings say {ports['http']}")
    expected = {
        "readinessProbe": "/readyz",
        "livenessProbe": "/healthz",
        "startupProbe": "/healthz",
    }
    for probe, path in expected.items():
        got = container.get(probe, {}).get("httpGet", {})
        if got.get("path") != path or got.get("port") not in named:
            problems.append(f"{name}: {probe} is {got}, expected {path} on a named port")
    if spec.get("enableServiceLinks", True):
        # The Service "hybridcon" would inject HYBRIDCON_PORT=tcp://...: a setting's name.
        problems.append(f"{name}: enableServiceLinks must be false")
    ready = container.get("readinessProbe", {})
    out_after = ready.get("periodSeconds", 10) * ready.get("failureThreshold", 3)
    if out_after >= grace:
        problems.append(f"{name}: readiness notices the drain after {out_after}s >= grace {grace}s")
    stages = (
        LIVE_STAGES
        if doc["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "media"
        else 0
    )
    needed = grace + SHUTDOWN_WAITS + PER_LIVE_STAGE * stages
    given = spec.get("terminationGracePeriodSeconds", 30)
    if given <= needed:
        problems.append(f"{name}: terminationGracePeriodSeconds {given} <= drain {needed}")
    return problems


def k8s_env_names(root: Path) -> set[str]:
    names = set()
    for _, doc in k8s_documents(root):
        if doc["kind"] == "ConfigMap":
            names |= set(doc.get("data", {}))
        if doc["kind"] == "Deployment":
            for container in doc["spec"]["template"]["spec"]["containers"]:
                names |= {e["name"] for e in container.get("env", [])}
    return names


def k8s_problems(
    base: dict[tuple[str, str], dict[str, Any]], settings: Mapping[str, str]
) -> list[str]:
    problems = []
    port = int(settings.get("HYBRIDCON_PORT", "8080"))
    grace = float(
        settings.get("HYBRIDCON_SHUTDOWN_GRACE", Settings.model_fields["shutdown_grace"].default)
    )
    deployments = {n: d for (k, n), d in base.items() if k == "Deployment"}
    for doc in deployments.values():
        problems += container_problems(doc, {"http": port}, grace)
        refs = {
            r["configMapRef"]["name"]
            for c in doc["spec"]["template"]["spec"]["containers"]
            for r in c.get("envFrom", [])
        }
        problems += [f"no ConfigMap {r}" for r in refs if ("ConfigMap", r) not in base]
    pods = {n: d["spec"]["template"]["metadata"]["labels"] for n, d in deployments.items()}

    def selects(selector: Mapping[str, str]) -> list[str]:
        return [n for n, labels in pods.items() if selector.items() <= labels.items()]

    for (kind, name), doc in base.items():
        if kind == "Service":
            if len(selects(doc["spec"]["selector"])) != 1:
                problems.append(f"Service {name} selects {selects(doc['spec']['selector'])}")
            for p in doc["spec"]["ports"]:
                if p["targetPort"] != "http" or p["port"] != port:
                    problems.append(f"Service {name} port {p}")
        if kind == "Ingress":
            timeout = int(
                doc["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-read-timeout"]
            )
            idle = float(
                settings.get(
                    "HYBRIDCON_WS_IDLE_TIMEOUT", Settings.model_fields["ws_idle_timeout"].default
                )
            )
            if timeout <= idle:
                problems.append(
                    f"Ingress read timeout {timeout}s <= WebSocket idle timeout {idle}s"
                )
            for rule in doc["spec"]["rules"]:
                for path in rule["http"]["paths"]:
                    service = path["backend"]["service"]
                    if ("Service", service["name"]) not in base or service["port"] != {
                        "name": "http"
                    }:
                        problems.append(f"Ingress {path['path']} -> {service}")
        if kind in {"HorizontalPodAutoscaler"}:
            target = doc["spec"]["scaleTargetRef"]
            if (target["kind"], target["name"]) not in base:
                problems.append(f"HPA targets a missing {target}")
        if (
            kind == "PodDisruptionBudget"
            and len(selects(doc["spec"]["selector"]["matchLabels"])) != 1
        ):
            problems.append(f"PDB {name} selects {selects(doc['spec']['selector']['matchLabels'])}")
    return problems


def kustomization_problems(directory: Path) -> list[str]:
    """Listed files exist, and no manifest in the folder is left out (it would not apply)."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text("utf-8"))
    listed = [
        *kustomization.get("resources", []),
        *(p["path"] for p in kustomization.get("patches", [])),
    ]
    problems = [
        f"{directory.name}: {item} does not exist"
        for item in listed
        if not (directory / item).exists()
    ]
    here = {p.name for p in directory.glob("*.yaml")} - {"kustomization.yaml"}
    problems += [f"{directory.name}: {name} is not listed" for name in sorted(here - set(listed))]
    return problems


# --- the real files ----------------------------------------------------------------------


def production_settings() -> dict[str, str]:
    settings: dict[str, str] = {}
    for root in (K8S / "base", K8S / "overlays" / "production"):
        settings.update(
            k8s_objects(root).get(("ConfigMap", "hybridcon-settings"), {}).get("data", {})
        )
    return settings


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_deploy_file_is_yaml(path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text("utf-8")) if d is not None]
    assert docs, f"{path} is empty"


def test_every_hybridcon_name_in_deploy_files_is_a_setting() -> None:
    # Whole-text scan: comments, scripts and nginx snippets name settings too, and a
    # stale name there misleads the operator as much as one in an environment.
    texts = [DOCKERFILE, *(p for p in DEPLOY.rglob("*") if p.is_file())]
    names = {name for path in texts for name in NAME.findall(path.read_text("utf-8"))}
    assert names, "the scan found no names at all"
    assert unknown_settings(names) == []


def test_dockerfile() -> None:
    assert dockerfile_problems(DOCKERFILE.read_text("utf-8")) == []


def test_dockerfile_settings_are_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        k: v
        for k, v in dockerfile_env(DOCKERFILE.read_text("utf-8")).items()
        if k.startswith(PREFIX)
    }
    assert refused_values(env, monkeypatch) == []


def test_compose() -> None:
    image_env = dockerfile_env(DOCKERFILE.read_text("utf-8"))
    assert compose_problems(compose(), image_env) == []


def test_compose_settings_are_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, service in compose()["services"].items():
        env = {
            k: interpolate(str(v), COMPOSE_ENV) for k, v in service.get("environment", {}).items()
        }
        if name.startswith("hybridcon-"):
            assert unknown_settings(set(env)) == []
            assert refused_values(env, monkeypatch) == [], name


def test_compose_variables_are_in_the_example_env() -> None:
    used = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", COMPOSE.read_text("utf-8")))
    example = (DEPLOY / "compose.env.example").read_text("utf-8")
    listed = set(re.findall(r"^#? ?([A-Z_][A-Z0-9_]*)=", example, re.MULTILINE))
    assert used == listed


@pytest.mark.parametrize(
    "directory", [K8S / "base", K8S / "overlays" / "production"], ids=lambda p: p.name
)
def test_kustomizations_list_their_files(directory: Path) -> None:
    assert kustomization_problems(directory) == []


def test_k8s_names_are_settings() -> None:
    names = k8s_env_names(K8S)
    assert {"HYBRIDCON_DATABASE_URL", "HYBRIDCON_REDIS_URL", "HYBRIDCON_SHUTDOWN_GRACE"} <= names
    assert unknown_settings(names) == []


def test_k8s_settings_are_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = {
        "HYBRIDCON_DATABASE_URL": "postgresql://u:p@db/hybridcon",
        "HYBRIDCON_REDIS_URL": "redis://r:6379/0",
    }
    assert refused_values({**production_settings(), **secrets}, monkeypatch) == []


def test_k8s_objects_line_up() -> None:
    assert k8s_problems(k8s_objects(K8S / "base"), production_settings()) == []


def test_k8s_ports_match_the_image() -> None:
    image = dockerfile_env(DOCKERFILE.read_text("utf-8"))
    settings = production_settings()
    for name in ("HYBRIDCON_PORT", "HYBRIDCON_HOST", "HYBRIDCON_DATA_DIR"):
        assert settings[name] == image[name], name


def test_overlay_patches_name_base_objects() -> None:
    base = k8s_objects(K8S / "base")
    overlay = K8S / "overlays" / "production"
    kustomization = yaml.safe_load((overlay / "kustomization.yaml").read_text("utf-8"))
    for patch in kustomization["patches"]:
        for doc in yaml.safe_load_all((overlay / patch["path"]).read_text("utf-8")):
            assert (doc["kind"], doc["metadata"]["name"]) in base, patch["path"]
    for generator in kustomization["secretGenerator"]:
        assert ("Secret", generator["name"]) in base
    keys = {Path(f.split("=")[-1]).name for f in kustomization["secretGenerator"][0]["files"]}
    init = next(
        c for c in base[("Deployment", "hybridcon")]["spec"]["template"]["spec"]["initContainers"]
    )
    assert all(key in init["command"][-1] for key in keys)


@pytest.mark.skipif(shutil.which("nginx") is None, reason="needs nginx (make system-deps)")
def test_compose_nginx_config_renders_and_is_accepted(tmp_path: Path) -> None:
    """compose-render.sh on deploy/nginx/hybridcon.conf gives a config nginx accepts, with
    the HLS secret rendered as the e2e test and operations.md render it."""
    import base64

    secret = bytes(range(32))
    (tmp_path / "hls.secret").write_bytes(secret)
    media = tmp_path / "compose-media.conf"
    media.write_text(
        (NGINX / "compose-media.conf")
        .read_text("utf-8")
        .replace("hybridcon-1:8080", "127.0.0.1:8080")
    )
    script = (NGINX / "compose-render.sh").read_text("utf-8")
    for old, new in {
        "/etc/hybridcon/hybridcon.conf": str(NGINX / "hybridcon.conf"),
        "/var/lib/hybridcon/keys/hls.secret": str(tmp_path / "hls.secret"),
        "/etc/nginx/conf.d/default.conf": str(tmp_path / "site.conf"),
    }.items():
        assert script.count(old) == 1
        script = script.replace(old, new)
    subprocess.run(["sh", "-c", script], check=True, timeout=10)
    site = (tmp_path / "site.conf").read_text("utf-8")
    assert f'set $hls_secret "{base64.urlsafe_b64encode(secret).rstrip(b"=").decode()}";' in site
    assert site.count("server hybridcon-") == 3 and "least_conn;" in site
    # nginx resolves upstream names when it checks: point them at loopback.
    site = re.sub(r"hybridcon-\d:", "127.0.0.1:", site).replace(
        "/etc/hybridcon/compose-media.conf", str(media)
    )
    (tmp_path / "site.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{ include {tmp_path}/site.conf; }}\n"
    )
    checked = subprocess.run(
        ["nginx", "-t", "-q", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr


# --- the checks can fail -----------------------------------------------------------------


def test_a_misspelt_setting_is_caught() -> None:
    text = COMPOSE.read_text("utf-8").replace(
        "HYBRIDCON_SHUTDOWN_GRACE", "HYBRIDCON_SHUTDOWN_GRACE_SECONDS"
    )
    names = set(NAME.findall(text)) | set(
        yaml.safe_load(text)["services"]["hybridcon-1"]["environment"]
    )
    assert unknown_settings(names) == ["HYBRIDCON_SHUTDOWN_GRACE_SECONDS"]


def test_a_refused_value_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    # A bare number of seconds is refused for durations from the environment.
    assert refused_values({"HYBRIDCON_HLS_URL_TTL": "50400"}, monkeypatch)
    assert refused_values({"HYBRIDCON_REVERSE_PROXIES": '["nginx"]'}, monkeypatch)


def test_a_wrong_dockerfile_is_caught() -> None:
    text = DOCKERFILE.read_text("utf-8")
    assert any(
        "EXPOSE" in p for p in dockerfile_problems(text.replace("EXPOSE 8080", "EXPOSE 9000"))
    )
    assert any("HEALTHCHECK" in p for p in dockerfile_problems(text.replace("/healthz", "/readyz")))
    assert any(
        "USER" in p for p in dockerfile_problems(text.replace("USER 10001:10001", "USER root"))
    )
    assert any(
        "HOST" in p
        for p in dockerfile_problems(
            text.replace("HYBRIDCON_HOST=0.0.0.0", "HYBRIDCON_HOST=127.0.0.1")
        )
    )


def test_wrong_manifests_are_caught() -> None:
    settings = production_settings()

    def broken(change: str) -> list[str]:
        base = {key: json.loads(json.dumps(doc)) for key, doc in k8s_objects(K8S / "base").items()}
        pod = base[("Deployment", "hybridcon")]["spec"]["template"]["spec"]
        if change == "probe":
            pod["containers"][0]["readinessProbe"]["httpGet"]["path"] = "/healthz"
        elif change == "grace":
            pod["terminationGracePeriodSeconds"] = 30
        elif change == "port":
            pod["containers"][0]["ports"][0]["containerPort"] = 9000
        elif change == "links":
            del pod["enableServiceLinks"]
        elif change == "selector":
            base[("Service", "hybridcon")]["spec"]["selector"]["app.kubernetes.io/component"] = (
                "web"
            )
        return k8s_problems(base, settings)

    assert any("readinessProbe" in p for p in broken("probe"))
    assert any("terminationGracePeriodSeconds" in p for p in broken("grace"))
    assert any("container ports" in p for p in broken("port"))
    assert any("Service hybridcon selects" in p for p in broken("selector"))
    assert any("enableServiceLinks" in p for p in broken("links"))
    assert any(
        "Ingress read timeout" in p
        for p in k8s_problems(
            k8s_objects(K8S / "base"), {**settings, "HYBRIDCON_WS_IDLE_TIMEOUT": "300"}
        )
    )


def test_a_wrong_compose_file_is_caught() -> None:
    image_env = dockerfile_env(DOCKERFILE.read_text("utf-8"))
    spec = compose()
    spec["services"]["hybridcon-2"]["stop_grace_period"] = "10s"
    spec["services"]["hybridcon-3"] = {
        **spec["services"]["hybridcon-3"],
        "environment": {"HYBRIDCON_PORT": "9000"},
    }
    spec["services"]["janus"]["environment"]["JANUS_WS_IP"] = "0.0.0.0"
    problems = compose_problems(spec, image_env)
    assert any("hybridcon-2: stop_grace_period" in p for p in problems)
    assert any("nginx reaches hybridcon-3" in p for p in problems)
    assert any("Janus listens on 0.0.0.0, not the gateway" in p for p in problems)
    assert any("hybridcon-1 looks for Janus" in p for p in problems)


def _janus_config(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(JANUS_CONFIG), str(tmp_path / "conf")],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_janus_configuration_script_renders_the_three_files(tmp_path: Path) -> None:
    libdir = tmp_path / "lib"
    (libdir / "plugins").mkdir(parents=True)
    (libdir / "plugins" / "libjanus_videoroom.so").touch()
    key = tmp_path / "janus-room.key"
    key.write_text("room-key-0123456789\n")
    done = _janus_config(
        tmp_path, JANUS_WS_IP="172.31.250.1", JANUS_ROOM_KEY_FILE=str(key), JANUS_LIBDIR=str(libdir)
    )
    assert done.returncode == 0, done.stderr
    conf = tmp_path / "conf"
    assert 'admin_key = "room-key-0123456789"' in (conf / "janus.plugin.videoroom.jcfg").read_text()
    websockets = (conf / "janus.transport.websockets.jcfg").read_text()
    assert 'ws_ip = "172.31.250.1"' in websockets
    assert "admin_ws = false" in websockets
    general = (conf / "janus.jcfg").read_text()
    assert "token_auth = false" in general
    assert "libjanus_http.so" in general  # the HTTP transport is off
    assert (conf / "janus.jcfg").stat().st_mode & 0o077 == 0  # the key is in these files


def test_the_janus_configuration_script_names_what_is_missing(tmp_path: Path) -> None:
    missing = _janus_config(tmp_path, JANUS_ROOM_KEY_FILE="/nonexistent")
    assert missing.returncode == 1
    assert "JANUS_WS_IP is not set" in missing.stderr
    no_key = _janus_config(tmp_path, JANUS_WS_IP="10.0.0.5", JANUS_ROOM_KEY_FILE="/nonexistent")
    assert no_key.returncode == 1
    assert "/nonexistent is missing or empty: hybridcon makes it" in no_key.stderr
    assert not (tmp_path / "conf").exists()


def test_an_unlisted_manifest_is_caught(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: [a.yaml, gone.yaml]\n")
    (tmp_path / "a.yaml").write_text("kind: ConfigMap\n")
    (tmp_path / "forgotten.yaml").write_text("kind: ConfigMap\n")
    assert kustomization_problems(tmp_path) == [
        f"{tmp_path.name}: gone.yaml does not exist",
        f"{tmp_path.name}: forgotten.yaml is not listed",
    ]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="needs kubectl (its kustomize)")
def test_production_overlay_builds(tmp_path: Path) -> None:
    """`kubectl kustomize` on a copy of deploy/k8s whose secrets/ holds stand-in files:
    every container gets the overlay's image, every object its namespace, and the
    Secrets the files the pods read."""
    shutil.copytree(K8S, tmp_path / "k8s")
    overlay = tmp_path / "k8s" / "overlays" / "production"
    kustomization = yaml.safe_load((overlay / "kustomization.yaml").read_text("utf-8"))
    for generator in kustomization["secretGenerator"]:
        for item in generator["files"]:
            (overlay / item.split("=")[-1]).write_text("stand-in")
    built = subprocess.run(
        ["kubectl", "kustomize", str(overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    docs = [d for d in yaml.safe_load_all(built.stdout) if d]
    image = "{newName}:{newTag}".format(**kustomization["images"][0])
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == kustomization["namespace"], doc["kind"]
        if doc["kind"] == "Deployment":
            pod = doc["spec"]["template"]["spec"]
            for container in [*pod.get("initContainers", []), *pod["containers"]]:
                assert container["image"] == image, doc["metadata"]["name"]
    secrets = {d["metadata"]["name"]: set(d["data"]) for d in docs if d["kind"] == "Secret"}
    assert secrets["hybridcon-keys"] == {
        "signing-keys.json",
        "invite.secret",
        "engagement.key",
        "hls.secret",
        "turn.secret",
    }
    assert secrets["hybridcon-connections"] == {"database-url", "redis-url"}
    (settings,) = [d["data"] for d in docs if d["kind"] == "ConfigMap"]
    assert settings == production_settings()


# The zoom-style rooms' traffic: the pages' WebSocket and every media route of api/rooms.py.
ROOM_PATHS = ("/rooms/ws", "/api/v1/sessions/", "/api/v1/network/")


def test_every_room_route_is_under_a_path_the_proxies_send_to_one_node() -> None:
    from hybridcon.api import rooms
    from hybridcon.api.routes import ROUTES

    room_routes = [r.path for r in ROUTES if r.handler.__module__ == rooms.__name__]
    assert room_routes
    assert [p for p in room_routes if not p.startswith(ROOM_PATHS[1:])] == []
    assert "/rooms/ws" in {r.path for r in ROUTES}


def test_compose_sends_the_rooms_to_one_node() -> None:
    conf = (NGINX / "compose-media.conf").read_text("utf-8")
    blocks = dict(re.findall(r"location ([^{]+?) \{(.*?)\n\}", conf, re.S))
    for path in ROOM_PATHS:
        matching = [
            body
            for where, body in blocks.items()
            if where == path or (where.startswith("~ ") and re.match(where[2:], path + "x/y"))
        ]
        assert len(matching) == 1, path
        assert "proxy_pass http://hybridcon-1:8080;" in matching[0], path
    assert "Upgrade $http_upgrade" in blocks["/rooms/ws"]


def test_kubernetes_sends_the_rooms_to_the_media_pod() -> None:
    (ingress,) = [d for _, d in k8s_documents(K8S / "base") if d["kind"] == "Ingress"]
    paths = {
        p["path"]: p["backend"]["service"]["name"]
        for rule in ingress["spec"]["rules"]
        for p in rule["http"]["paths"]
    }
    for path in ROOM_PATHS:
        assert paths.get(path.rstrip("/")) == "hybridcon-media", path
