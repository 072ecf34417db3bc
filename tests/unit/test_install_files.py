"""The files that install the project into an Airflow of one's own, checked without a Docker engine:
.dockerignore (matched the way Docker matches it), the two-stage Dockerfile on Astro Runtime, the Compose override
that `astro dev start` merges in, airflow_settings.yaml, and the Astro CLI's DAG-integrity test in .astro/."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import textwrap
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml
from dockerignore import PatternMatcher, context_files, read_dockerignore

ROOT = Path(__file__).resolve().parents[2]
CONSTRAINTS = "constraints-3.11.txt"
HOROVOD_BUILD_FILES = {"scripts/install_horovod.sh", "scripts/cxx17"}
COMPILERS = {"build-essential", "gcc", "g++", "cmake", "clang", "make", "cpp"}
RUNTIME_FROM = re.compile(r"^astrocrpublic\.azurecr\.io/runtime:(\d+\.\d+-\d+)-python-(\d+\.\d+)$")
# the Astro CLI's Compose project for Airflow 3 (its airflow3 template): services, and the host ports it publishes
ASTRO_SERVICES = {"postgres", "db-migration", "scheduler", "dag-processor", "api-server", "triggerer"}
AIRFLOW_SERVICES = ("scheduler", "dag-processor", "api-server", "triggerer")
ASTRO_HOST_PORTS = {5432: "postgres", 8080: "api-server"}


# .dockerignore ------------------------------------------------------------------------------------------------
def excluded(path: str) -> bool:
    """Whether Docker leaves ``path`` (relative to the context root) out of the build context: Go's
    filepath.Match plus ``**``, a directory covering its contents, the last matching pattern deciding, ``!`` taking
    a path back in (tests/helpers/dockerignore.py, a port of Docker's own matcher)."""
    return PatternMatcher(read_dockerignore(ROOT / ".dockerignore")).matches(path)


# cases of Docker's own matcher tests (moby/patternmatcher): the port decides them as Docker does
@pytest.mark.parametrize(
    "patterns, path, left_out",
    [
        (["**/dir"], "dir/file", True),
        (["**/dir2/*"], "dir/dir2/file", True),
        (["**/file*.txt"], "dir/dir/file.txt", True),
        (["**/**/*.txt2"], "dir/dir/file.txt", False),
        (["**/*.txt"], "file.txt", True),
        (["a/*.txt"], "a/dir/file.txt", False),
        (["abc/**"], "abc", False),
        (["**/.foo"], "bar.foo", False),
        ([".*"], "foo", False),
        (["a[b-d]e"], "ace", True),
        (["docs", "!docs/README.md"], "docs/README.md", False),
        (["docs/*", "!docs/README.md"], "docs/README.md", False),
        (["*.go", "!fileutils.go"], "fileutils.go", False),
        (["!fileutils.go", "*.go"], "fileutils.go", True),
        (["**", "!util/docker/web"], "util/docker/web/foo", False),
        (["**", "!util/docker/web", "util/docker/web/foo"], "util/docker/web/foo", True),
        # a root pattern covers what lies below it, at any depth (docker-py's matcher misses this one)
        (["**/.pytest_cache"], ".pytest_cache/v/cache/nodeids", True),
        ([".venv"], "sub/.venv/bin/python", False),
    ],
)
def test_the_matcher_decides_as_docker_does(patterns, path, left_out):
    assert PatternMatcher(patterns).matches(path) is left_out


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        ".mlops/lake/curated/flights/date=2013-01-01/part-0.parquet",
        ".mlops/airflow/airflow.db",
        "test-output/dag_parse_times.json",
        ".git/HEAD",
        "dags/__pycache__/train_model.cpython-311.pyc",
        "include/mlops/core/__pycache__/config.cpython-311.pyc",
        "include/mlops/core/stray.pyc",
        ".pytest_cache/v/cache/nodeids",
        "tests/unit/.pytest_cache/README.md",
        ".ruff_cache/0.17.6/x",
        "mutants/include/mlops/core/gate.py",
        "bench/results/mutation.txt",
        "bench/.venv-evidently/bin/python",
        ".env",
        ".env.local",
        "airflow_settings.local.yaml",
        "airflow_settings.yaml",
        "logs/scheduler/latest/x.log",
        "mlruns/0/meta.yaml",
    ],
)
def test_dockerignore_leaves_out_local_state_caches_and_settings(path):
    assert excluded(path), f"{path} would be sent to the image build"


def test_dockerignore_keeps_what_the_image_needs():
    needed = [
        "dags/train_model.py",
        "include/mlops/core/config.py",
        "include/config/datasets.yaml",
        "plugins/mlops_airflow/blocks/operators.py",
        "params.yaml",
        "requirements.txt",
        CONSTRAINTS,
        "packages.txt",
        *sorted(HOROVOD_BUILD_FILES),
        *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "expectations").rglob("*") if p.is_file()),
    ]
    assert any(p.startswith("expectations/") for p in needed)
    assert [p for p in needed if excluded(p)] == []


def test_every_source_file_reaches_the_build_context():
    """Walks the real tree the way `docker build` does (excluded folders are not entered): every file of the DAGs,
    plugins, the package and the expectation suites is in the context, no cache or local state is."""
    context = set(context_files(ROOT, PatternMatcher(read_dockerignore(ROOT / ".dockerignore"))))
    for folder in ("dags", "plugins", "include", "expectations"):
        files = {
            str(p.relative_to(ROOT))
            for p in (ROOT / folder).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
        }
        assert files and files <= context, sorted(files - context)
    assert not [p for p in context if p.split("/")[0] in {".venv", ".mlops", ".git", "test-output", "mutants"}]
    assert not [p for p in context if "__pycache__" in p.split("/") or p.endswith(".pyc")]
    assert "Dockerfile" in context and "requirements.txt" in context


# Dockerfile ---------------------------------------------------------------------------------------------------
def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order: continuation lines joined, comment lines dropped (as Docker does, also
    inside a continuation)."""
    out, current = [], ""
    for line in text.splitlines():
        if line.strip().startswith("#") or (not current and not line.strip()):
            continue
        current += line.rstrip()
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        instr, _, args = current.strip().partition(" ")
        out.append((instr.upper(), " ".join(args.split())))
        current = ""
    assert not current, "the Dockerfile ends inside a continuation line"
    return out


def dockerfile_stages() -> tuple[list[tuple[str, str]], list[dict]]:
    """The instructions before the first FROM, and the stages: image, name, instructions."""
    before, stages = [], []
    for instr, args in dockerfile_instructions((ROOT / "Dockerfile").read_text()):
        if instr == "FROM":
            words = [w for w in args.split() if not w.startswith("--platform")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            assert len(words) in (1, 3) and (len(words) == 1 or name), f"FROM {args}"
            stages.append({"image": words[0], "name": name, "from_args": args, "body": []})
        elif stages:
            stages[-1]["body"].append((instr, args))
        else:
            before.append((instr, args))
    return before, stages


def copy_parts(args: str) -> tuple[dict[str, str], list[str], str]:
    """COPY's flags, sources and destination."""
    words = json.loads(args) if args.startswith("[") else shlex.split(args)
    flags = dict(w[2:].partition("=")[::2] for w in words if w.startswith("--"))
    paths = [w for w in words if not w.startswith("--")]
    return flags, paths[:-1], paths[-1]


def runs(stage: dict) -> str:
    return "\n".join(args for instr, args in stage["body"] if instr == "RUN")


def test_the_dockerfile_has_a_builder_stage_and_a_literal_astro_runtime_final_stage():
    before, stages = dockerfile_stages()
    assert len(stages) >= 2
    # the Astro CLI reads the final FROM as written (`astro dev upgrade-test` rewrites the line, alias and all):
    # a literal reference, no ARG substitution, no global ARG, no alias
    assert before == [], f"instructions before the first FROM: {before}"
    final = stages[-1]
    assert "$" not in final["from_args"] and final["name"] is None, final["from_args"]
    m = RUNTIME_FROM.match(final["image"])
    assert m, f"the final stage is not an Astro Runtime (Airflow 3) image: {final['image']}"
    assert m.group(1).startswith("3.")
    # the Python of the image is the one the constraints file and the Horovod wheel are for
    assert CONSTRAINTS == f"constraints-{m.group(2)}.txt"
    builder = stages[0]
    assert builder["name"], "the builder stage needs a name for COPY --from"
    assert re.match(rf"^python:{re.escape(m.group(2))}(\.\d+)?-", builder["image"]), builder["image"]


def test_the_builder_builds_horovod_from_its_two_build_files_only():
    _, stages = dockerfile_stages()
    builder = stages[0]
    # the Runtime image's ONBUILD steps would copy the whole project into the builder
    assert "astro" not in builder["image"] and "runtime" not in builder["image"], builder["image"]
    assert not [i for i, _ in builder["body"] if i == "ADD"]
    sources = {s for i, a in builder["body"] if i == "COPY" for s in copy_parts(a)[1]}
    assert sources == HOROVOD_BUILD_FILES
    text = runs(builder)
    assert re.search(r"apt-get install\b.*\bbuild-essential\b", text) and re.search(r"\bcmake\b", text)
    assert "install_horovod.sh" in text and "MLOPS_WHEELHOUSE=/wheels" in text
    assert (
        "TORCH_INDEX_URL" in text and ("ARG", "TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu") in builder["body"]
    )


def test_the_final_stage_has_no_compiler_and_installs_the_wheel_under_the_constraints():
    _, stages = dockerfile_stages()
    builder, final = stages[0], stages[-1]
    text = runs(final)
    words = set(re.findall(r"[\w.+-]+", text))
    assert not (COMPILERS & words), COMPILERS & words
    # the Runtime image's ONBUILD step installs packages.txt with apt in this stage: no compiler there either
    packages = set(re.sub(r"#.*", "", (ROOT / "packages.txt").read_text()).split())
    assert not (COMPILERS & packages), COMPILERS & packages
    wheel_copies = [copy_parts(a) for i, a in final["body"] if i == "COPY" and "--from" in a]
    assert [(f["from"], s) for f, s, _ in wheel_copies] == [(builder["name"], ["/wheels/"])]
    wheel_dir = wheel_copies[0][2].rstrip("/")
    assert re.search(rf"--find-links {re.escape(wheel_dir)}/? horovod==0\.28\.1", text), text
    assert re.search(r'--index-url "?\$\{?TORCH_INDEX_URL\}?"? torch==2\.13\.0', text), text
    assert ("ARG", "TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu") in final["body"]
    pip_commands = [c for c in re.split(r"&&|;", text) if "pip install" in c]
    pinned = [c for c in pip_commands if "-r requirements.txt" in c and f"-c {CONSTRAINTS}" in c]
    assert pinned, pip_commands
    assert "torch==2.13.0" in pinned[-1].split(), "torch's dependencies are not installed under the constraints"
    assert pip_commands.index(pinned[-1]) == len(pip_commands) - 1, "a later pip install escapes the constraints"
    env = " ".join(a for i, a in final["body"] if i == "ENV")
    for setting in ("MLOPS_HOME=/usr/local/airflow/.mlops", "GX_ANALYTICS_ENABLED=false", "LOAD_EXAMPLES=False"):
        assert setting in env


def test_every_file_the_build_reads_is_in_the_repository_and_the_build_context():
    _, stages = dockerfile_stages()
    copied = {s for st in stages for i, a in st["body"] if i == "COPY" and "--from" not in a for s in copy_parts(a)[1]}
    # the final stage reads these from /usr/local/airflow, where the Runtime image's ONBUILD `COPY . .` put them
    read = copied | {"requirements.txt", CONSTRAINTS, "packages.txt"}
    assert [p for p in sorted(read) if not (ROOT / p).is_file()] == []
    assert [p for p in sorted(read) if excluded(p)] == []


# docker-compose.override.yml ----------------------------------------------------------------------------------
def interpolate(value: str) -> str:
    """Compose's variable substitution with nothing set: ``${VAR:-default}`` is its default, ``$$`` a ``$``."""
    value = re.sub(r"\$\{(\w+)(?::?-([^}]*))?\}", lambda m: m.group(2) or "", value)
    return value.replace("$$", "$")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.override.yml").read_text())


def published(service: dict) -> list[tuple[str, int, int]]:
    """(host ip, host port, container port) of each `ports` entry (short syntax)."""
    out = []
    for entry in service.get("ports", []):
        parts = interpolate(str(entry)).split(":")
        ip = parts[0] if len(parts) == 3 else "0.0.0.0"
        out.append((ip, int(parts[-2]), int(parts[-1])))
    return out


def command_text(service: dict) -> str:
    parts = []
    for key in ("entrypoint", "command"):
        value = service.get(key) or []
        parts += [value] if isinstance(value, str) else [str(v) for v in value]
    return interpolate(" ".join(parts))


def test_the_override_adds_services_and_overrides_only_the_astro_clis(compose):
    services = compose["services"]
    new = {name for name in services if name not in ASTRO_SERVICES}
    assert new, "no object store or tracking server"
    assert [n for n in new if not services[n].get("image")] == []
    # the CLI's services are on its `airflow` network only: a new service elsewhere is out of their reach
    assert [n for n in new if "airflow" not in (services[n].get("networks") or [])] == []
    for name in set(services) - new:  # the CLI's services keep the CLI's image and command
        assert {"image", "command", "build"}.isdisjoint(services[name]), name
    assert set(AIRFLOW_SERVICES) <= set(services)
    for name in new:  # a named volume must be declared
        for volume in services[name].get("volumes", []):
            source = str(volume).split(":")[0]
            assert source.startswith((".", "/")) or source in (compose.get("volumes") or {}), volume


def test_published_ports_do_not_clash_and_stay_on_this_machine(compose):
    seen = {port: f"{svc} (Astro CLI)" for port, svc in ASTRO_HOST_PORTS.items()}
    for name, service in compose["services"].items():
        for ip, host_port, _ in published(service):
            assert ip == "127.0.0.1", f"{name} publishes {host_port} on {ip}"
            assert host_port not in seen, f"{name} and {seen.get(host_port)} both publish {host_port}"
            seen[host_port] = name


def _service_at(compose: dict, url: str) -> tuple[str, dict]:
    parsed = urlparse(url)
    assert parsed.hostname in compose["services"], f"{url}: no service {parsed.hostname} in the file"
    service = compose["services"][parsed.hostname]
    container_ports = {c for _, _, c in published(service)}
    assert parsed.port in container_ports, f"{url}: {parsed.hostname} listens on {container_ports}"
    return parsed.hostname, service


def test_the_airflow_components_share_one_lake_and_one_registry(compose):
    envs = [
        {k: interpolate(str(v)) for k, v in compose["services"][s]["environment"].items()} for s in AIRFLOW_SERVICES
    ]
    assert all(e == envs[0] for e in envs), "the Airflow components get different settings"
    env = envs[0]
    # the registry
    name, mlflow = _service_at(compose, env["MLFLOW_TRACKING_URI"])
    command = command_text(mlflow)
    assert f"--port {urlparse(env['MLFLOW_TRACKING_URI']).port}" in command and "--serve-artifacts" in command
    allowed = re.search(r"--allowed-hosts (\S+)", command).group(1).split(",")
    assert urlparse(env["MLFLOW_TRACKING_URI"]).netloc in allowed, "MLflow would refuse the Airflow containers' Host"
    # the lake: aws_default points at the object store, the lake's bucket is the one created there
    conn = json.loads(env["AIRFLOW_CONN_AWS_DEFAULT"])
    assert conn["conn_type"] == "aws" and conn["extra"]["region_name"]
    store, _ = _service_at(compose, conn["extra"]["endpoint_url"])
    lake = urlparse(env["MLOPS_LAKE_URL"])
    assert lake.scheme == "s3" and lake.netloc and lake.path.strip("/")
    creates = [
        n for n, s in compose["services"].items() if re.search(rf"mc mb .*\b\w+/{lake.netloc}\b", command_text(s))
    ]
    assert creates, f"nothing creates the bucket {lake.netloc}"
    assert f"http://{store}:" in command_text(compose["services"][creates[0]])
    assert re.search(rf"--artifacts-destination s3://{lake.netloc}/", command), "MLflow's artifacts elsewhere"
    assert interpolate(str(mlflow["environment"]["MLFLOW_S3_ENDPOINT_URL"])) == conn["extra"]["endpoint_url"]
    assert name != store


def test_the_tracking_server_is_the_version_of_the_client(compose):
    from packaging.requirements import Requirement

    pin = next(
        Requirement(line)
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if re.match(r"mlflow\b", line.strip())
    )
    image = next(s["image"] for s in compose["services"].values() if "mlflow/mlflow" in str(s.get("image")))
    version = re.match(r".*:v(\d+\.\d+\.\d+)", image).group(1)
    assert pin.specifier.contains(version), f"{image} against requirements.txt's {pin}"


def test_the_override_holds_no_credential_of_its_own(compose):
    """Every password or key is a ${VAR:-placeholder} substitution from the environment that runs the CLI."""
    text = (ROOT / "docker-compose.override.yml").read_text()
    for name, service in compose["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"PASSWORD|SECRET|_KEY\b|ACCESS_KEY", key):
                assert re.fullmatch(r"\$\{\w+:-[^}]*\}", str(value)), f"{name}: {key} is set in the file"
    conn = json.loads(compose["services"]["scheduler"]["environment"]["AIRFLOW_CONN_AWS_DEFAULT"])
    assert re.fullmatch(r"\$\{\w+:-[^}]*\}", conn["password"]), "aws_default's secret is set in the file"
    assert "admin:admin@" not in text and "SIMPLE_AUTH_MANAGER_ALL_ADMINS" not in text


# airflow_settings.yaml ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def settings() -> dict:
    return yaml.safe_load((ROOT / "airflow_settings.yaml").read_text())["airflow"]


def test_airflow_settings_declares_every_pool_the_dags_use(settings):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {} and bag.dags
    used = {task.pool for dag in bag.dags.values() for task in dag.tasks} - {"default_pool"}
    assert "horovod" in used  # the training task's pool (TrainWithHorovodOperator's default)
    declared = {p["pool_name"]: p for p in settings["pools"]}
    assert used <= set(declared), used - set(declared)
    assert all(int(declared[p]["pool_slot"]) >= 1 for p in used)


def test_airflow_settings_declares_the_connections_with_no_secret(settings):
    conns = {c["conn_id"]: c for c in settings["connections"]}
    assert {"aws_default", "slack_default"} <= set(conns)
    for conn_id, conn in conns.items():
        assert not conn.get("conn_password") and not conn.get("conn_login"), conn_id
        extra = conn.get("conn_extra") or {}
        assert not [k for k in extra if re.search(r"token|secret|password|key|webhook", k, re.I)], conn_id
    text = (ROOT / "airflow_settings.yaml").read_text()
    for secret in (r"hooks\.slack\.com/services/\w+/", r"xox[abpr]-", r"AKIA[0-9A-Z]{16}", r"://[^/\s:]+:[^@\s]+@"):
        assert not re.search(secret, text), secret
    for variable in settings.get("variables") or []:
        assert not re.search(r"token|secret|password|key", str(variable.get("variable_name")), re.I), variable


# .astro/ ------------------------------------------------------------------------------------------------------
def test_the_astro_project_files_are_the_clis():
    config = yaml.safe_load((ROOT / ".astro" / "config.yaml").read_text())
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]*", config["project"]["name"])
    assert (ROOT / ".astro" / "dag_integrity_exceptions.txt").is_file()
    ini = (ROOT / "pytest.ini").read_text()
    assert ".astro" in re.search(r"^testpaths\s*=(.*)$", ini, re.M).group(1).split(), "make test skips .astro/"


BROKEN_DAG = "from airflow.sdk import dag\nimport no_such_module_for_this_dag  # noqa\n"
GOOD_DAG = textwrap.dedent(
    """
    from datetime import datetime

    from airflow.sdk import dag, task


    @dag(schedule=None, start_date=datetime(2024, 1, 1))
    def fine():
        @task
        def noop():
            return None

        noop()


    fine()
    """
)


def test_the_integrity_test_fails_on_a_dag_file_that_does_not_import(tmp_path, monkeypatch):
    """The .astro test's own functions on a project of three DAG files: one good, one broken, one broken but
    listed in the exceptions file. Exactly the broken, unlisted one fails, saying why; the parse-time stubs are
    gone afterwards."""
    from airflow.sdk import BaseHook, Variable

    spec = importlib.util.spec_from_file_location(
        "astro_dag_integrity", ROOT / ".astro" / "test_dag_integrity_default.py"
    )
    integrity = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(integrity)  # parses the project's DAGs as `make test` does
    assert integrity.IMPORT_RESULTS and all(rv == integrity.NO_IMPORT_ERRORS for _, rv in integrity.IMPORT_RESULTS)

    (tmp_path / ".astro").mkdir()
    exceptions = tmp_path / ".astro" / "dag_integrity_exceptions.txt"
    exceptions.write_text("# exempt\ndags/broken_but_listed.py\n")
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "fine.py").write_text(GOOD_DAG)
    (dags / "broken.py").write_text(BROKEN_DAG)
    (dags / "broken_but_listed.py").write_text(BROKEN_DAG)
    monkeypatch.setattr(integrity, "PROJECT_ROOT", tmp_path)
    monkeypatch.setattr(integrity, "EXCEPTIONS_FILE", exceptions)
    getenv, variable_get, get_connection = os.getenv, Variable.get, BaseHook.get_connection

    results = dict(integrity.get_import_errors(str(dags)))

    assert set(results) == {"dags/fine.py", "dags/broken.py", "dags/broken_but_listed.py"}
    assert results["dags/fine.py"] == integrity.NO_IMPORT_ERRORS
    assert "no_such_module_for_this_dag" in results["dags/broken.py"]
    with pytest.raises(Exception, match=r"dags/broken\.py failed to import"):
        integrity.test_file_imports("dags/broken.py", results["dags/broken.py"])
    integrity.test_file_imports("dags/broken_but_listed.py", results["dags/broken_but_listed.py"])
    integrity.test_file_imports("dags/fine.py", results["dags/fine.py"])
    assert (os.getenv, Variable.get, BaseHook.get_connection) == (getenv, variable_get, get_connection)
    assert os.getenv("MLOPS_SURELY_UNSET_VARIABLE") is None
