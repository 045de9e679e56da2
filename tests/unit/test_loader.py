"""Loading job files: every format and shape, and every kind of mistake."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from titus_flow.errors import SpecError
from titus_flow.loader import load_jobs, load_many, select_job
from titus_flow.spec import BatchJob, ServiceJob

FIXTURES = Path(__file__).parent / "fixtures"
LOTS = 'invalid size \'lots\': use a number of MiB or a string like "512Mi" or "2Gi"'


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def messages(path: Path) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_jobs(path)
    for line in info.value.messages:
        assert "\n" not in line
        assert "Traceback" not in line
    return info.value.messages


def only_message(path: Path) -> str:
    lines = messages(path)
    assert len(lines) == 1, lines
    return lines[0]


def names_and_kinds(path: Path) -> list[tuple[str, str]]:
    return [(job.name, job.kind) for job in load_jobs(path)]


# -- formats and shapes -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("single.yaml", [("hello", "batch")]),
        ("list.yml", [("prepare", "batch"), ("train", "batch"), ("web", "service")]),
        ("wrapped.yaml", [("one", "batch"), ("two", "service")]),
        ("multi_doc.yaml", [("first", "batch"), ("second", "batch"), ("third", "batch")]),
        ("anchors.yaml", [("a", "batch"), ("b", "batch")]),
        ("jobs.json", [("extract", "batch"), ("load", "batch"), ("api", "service")]),
        ("single.json", [("solo", "batch")]),
        ("list.json", [("x", "batch"), ("y", "service")]),
        (
            "module_jobs.py",
            [("first", "batch"), ("second", "batch"), ("third", "batch"), ("web", "service")],
        ),
        ("factory_jobs.py", [("shard-0", "batch"), ("shard-1", "batch"), ("shard-2", "batch")]),
    ],
)
def test_fixtures_load(fixture: str, expected: list[tuple[str, str]]) -> None:
    assert names_and_kinds(FIXTURES / fixture) == expected


def test_loaded_values() -> None:
    (hello,) = load_jobs(FIXTURES / "single.yaml")
    assert isinstance(hello, BatchJob)
    assert hello.container.command == ["echo", "hello"]
    assert hello.resources.memory == 256
    assert hello.runtime_limit is not None and hello.runtime_limit.total_seconds() == 600
    a, b = load_jobs(FIXTURES / "anchors.yaml")
    assert a.container.image == "busybox:1.36"
    assert a.container.env == {"LOG_LEVEL": "info"}
    assert b.container.env == {"LOG_LEVEL": "debug"}  # explicit key overrides the merge


def test_suffix_case_does_not_matter(tmp_path: Path) -> None:
    path = write(tmp_path, "JOBS.YAML", "name: a\ncontainer: {image: busybox}\n")
    assert names_and_kinds(path) == [("a", "batch")]


# -- kind inference -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "kind"),
    [
        ("", "batch"),
        ("instances: 2", "batch"),
        ("capacity: {desired: 2}", "service"),
        ("health_check: {kind: exec, command: 'true'}", "service"),
        ("update: {max_surge: 2}", "service"),
        ("disruption_budget: {max_unavailable: 1}", "service"),
        ("kind: service", "service"),
        ("kind: batch\ninstances: 3", "batch"),
    ],
)
def test_kind_inference(tmp_path: Path, extra: str, kind: str) -> None:
    path = write(tmp_path, "job.yaml", f"name: a\ncontainer: {{image: busybox}}\n{extra}\n")
    assert names_and_kinds(path) == [("a", kind)]


def test_kind_cannot_be_inferred_from_fields_of_both(tmp_path: Path) -> None:
    path = write(
        tmp_path, "job.yaml", "name: a\ncontainer: {image: busybox}\ninstances: 2\ncapacity: {}\n"
    )
    assert only_message(path) == (
        f"{path}: a.kind: missing, and the fields fit neither kind (instances are batch,"
        " capacity are service); set kind: batch or kind: service"
    )


@pytest.mark.parametrize("kind", ["cron", "[batch]", "''", "null"])
def test_unknown_kind(tmp_path: Path, kind: str) -> None:
    path = write(tmp_path, "job.yaml", f"name: a\nkind: {kind}\ncontainer: {{image: busybox}}\n")
    line = only_message(path)
    assert line.startswith(f"{path}: a.kind: unknown kind")
    assert line.endswith("use 'batch' or 'service'")


def test_explicit_kind_with_fields_of_the_other(tmp_path: Path) -> None:
    path = write(
        tmp_path, "job.yaml", "name: a\nkind: batch\ncontainer: {image: x}\ncapacity: {}\n"
    )
    assert only_message(path) == (
        f"{path}: a.capacity: unknown field 'capacity' for kind 'batch':"
        " it is a field of kind 'service'; change kind or remove the field"
    )


# -- file-level errors --------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    assert only_message(tmp_path / "nope.yaml") == f"{tmp_path / 'nope.yaml'}: no such file"


def test_directory(tmp_path: Path) -> None:
    assert "is a directory" in only_message(tmp_path)


@pytest.mark.parametrize("name", ["jobs.txt", "jobs.toml", "jobs"])
def test_unsupported_suffix(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, name, "name: a\n")
    line = only_message(path)
    assert line.startswith(f"{path}: unsupported file type")
    assert line.endswith("use .py, .yaml, .yml or .json")


def test_yaml_syntax_error_has_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "jobs.yaml",
        """
        - name: a
          container: {image: busybox}
        - name: b
          container: [image: busybox
        """,
    )
    line = only_message(path)
    assert line.startswith(f"{path}:5:")
    assert "invalid YAML" in line


def test_yaml_indentation_error_has_line(tmp_path: Path) -> None:
    path = write(tmp_path, "jobs.yaml", "name: a\n container: x\n  image: busybox\n")
    assert only_message(path).startswith(f"{path}:2:")


def test_json_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "jobs.json", '[\n  {"name": "a",}\n]\n')
    assert only_message(path) == (
        f"{path}:2:16: invalid JSON: Expecting property name enclosed in double quotes"
    )


def test_yaml_duplicate_key(tmp_path: Path) -> None:
    path = write(tmp_path, "jobs.yaml", "name: a\ncontainer: {image: busybox}\nname: b\n")
    assert only_message(path) == (
        f"{path}:3:1: invalid YAML: duplicate key 'name' (first on line 1); keep one"
    )


def test_json_duplicate_key(tmp_path: Path) -> None:
    path = write(
        tmp_path, "jobs.json", '[\n {"name": "a",\n  "container": {"image": "x"}, "name": "b"}\n]'
    )
    assert only_message(path) == f"{path}:2: duplicate key 'name' in this object; keep one"


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "jobs.yaml"
    path.write_bytes(b"name: caf\xe9\n")
    assert "not UTF-8" in only_message(path)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("empty.yaml", ""),
        ("comments.yaml", "# nothing here yet\n"),
        ("documents.yaml", "---\n---\n"),
        ("list.yaml", "[]\n"),
        ("wrapped.yaml", "jobs: []\n"),
        ("list.json", "[]"),
        ("wrapped.json", '{"jobs": []}'),
    ],
)
def test_no_jobs(tmp_path: Path, name: str, text: str) -> None:
    path = write(tmp_path, name, text)
    assert only_message(path).startswith(f"{path}: no jobs found; write a job mapping")


def test_no_jobs_in_python(tmp_path: Path) -> None:
    path = write(tmp_path, "jobs.py", "x = 1\n")
    assert only_message(path) == (
        f"{path}: no jobs found; define BatchJob/ServiceJob objects at module level,"
        " or a jobs() function returning them"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hello\n", "expected a job mapping, a list of jobs or jobs: [...], got str 'hello'"),
        ("jobs: {name: a}\n", "'jobs' must be a list of jobs"),
        ("jobs: []\nextra: 1\n", "unexpected top-level key(s) extra next to 'jobs'"),
        ("- name: a\n  container: {image: x}\n- 5\n", "jobs[1]: expected a job mapping"),
    ],
)
def test_bad_shapes(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in only_message(write(tmp_path, "jobs.yaml", text))


# -- validation ---------------------------------------------------------------------------


def test_validation_errors_name_job_and_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "jobs.yaml",
        """
        - name: hello
          container: {image: busybox}
          resources: {memory: lots}
        - name: web
          container: {image: busybox}
          capacity: {min: 3, desired: 1}
        - container: {image: busybox}
        """,
    )
    assert messages(path) == [
        f"{path}: hello.resources.memory: {LOTS}",
        f"{path}: web.capacity: need min <= desired <= max, got min=3, desired=1, max=10",
        f"{path}:7: name: required field is missing; add it",
    ]


def test_all_errors_of_a_file_are_reported(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "jobs.json",
        '[{"name": "a", "container": {"image": "x"}, "instances": 0},'
        ' {"name": "b", "container": {"image": "x"}, "retry": {"attempts": 0}}]',
    )
    assert messages(path) == [
        f"{path}: a.instances: must be greater than or equal to 1 (got 0)",
        f"{path}: b.retry.attempts: must be greater than or equal to 1 (got 0)",
    ]


def test_duplicate_names_point_at_both(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "jobs.yaml",
        """
        - name: a
          container: {image: busybox}
        - name: b
          container: {image: busybox}
        - name: a
          container: {image: busybox}
        """,
    )
    assert only_message(path) == (
        f"{path}:5: job name 'a' is already used at {path}:1; job names must be unique"
    )


def test_duplicate_names_in_python(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "jobs.py",
        """
        from titus_flow import BatchJob, Container
        one = BatchJob(name="a", container=Container(image="busybox"))
        two = BatchJob(name="a", container=Container(image="busybox"))
        """,
    )
    assert only_message(path) == (
        f"{path} (variable two): job name 'a' is already used at {path} (variable one);"
        " job names must be unique"
    )


# -- depends_on ---------------------------------------------------------------------------


def deps_file(tmp_path: Path, deps: dict[str, list[str]], services: tuple[str, ...] = ()) -> Path:
    jobs = [
        f"- name: {name}\n  container: {{image: busybox}}\n  depends_on: [{', '.join(after)}]\n"
        for name, after in deps.items()
    ]
    jobs += [f"- name: {name}\n  kind: service\n  container: {{image: x}}\n" for name in services]
    return write(tmp_path, "jobs.yaml", "".join(jobs))


def test_dependencies_ok(tmp_path: Path) -> None:
    path = deps_file(tmp_path, {"a": [], "b": ["a"], "c": ["a", "b"]})
    assert [job.name for job in load_jobs(path)] == ["a", "b", "c"]


def test_unknown_dependency(tmp_path: Path) -> None:
    path = deps_file(tmp_path, {"a": [], "b": ["a", "zz"]})
    assert only_message(path) == (
        f"{path}: b.depends_on[1]: no job named 'zz' in this file (jobs: a, b)"
    )


def test_dependency_on_a_service(tmp_path: Path) -> None:
    path = deps_file(tmp_path, {"a": ["web"]}, services=("web",))
    assert only_message(path) == (
        f"{path}: a.depends_on[0]: 'web' is a service job, which never completes;"
        " depend on batch jobs only"
    )


@pytest.mark.parametrize(
    ("deps", "cycles"),
    [
        ({"a": ["b"], "b": ["a"]}, ["a -> b -> a"]),
        ({"a": ["b"], "b": ["c"], "c": ["a"]}, ["a -> b -> c -> a"]),
        ({"x": [], "a": ["x", "b"], "b": ["c"], "c": ["b"]}, ["b -> c -> b"]),
        ({"a": ["b"], "b": ["a"], "c": ["d"], "d": ["c"]}, ["a -> b -> a", "c -> d -> c"]),
        # Cycles sharing a job are each reported (graphlib finds one at a time).
        ({"a": ["b", "c"], "b": ["a"], "c": ["a"]}, ["a -> b -> a", "a -> c -> a"]),
    ],
)
def test_dependency_cycles(tmp_path: Path, deps: dict[str, list[str]], cycles: list[str]) -> None:
    path = deps_file(tmp_path, deps)
    assert messages(path) == [f"{path}: dependency cycle: {cycle}" for cycle in cycles]


def test_self_dependency(tmp_path: Path) -> None:
    path = deps_file(tmp_path, {"a": ["a"]})
    assert only_message(path) == f"{path}: a.depends_on: job 'a' cannot depend on itself; remove it"


def test_long_dependency_chain(tmp_path: Path) -> None:
    chain = {
        f"j{i}": [f"j{i - 1}"] if i else [] for i in range(1100)
    }  # deeper than the recursion limit
    assert len(load_jobs(deps_file(tmp_path, chain))) == 1100


# -- Python files -------------------------------------------------------------------------


def test_python_file_leaves_no_trace() -> None:
    path_before = list(sys.path)
    modules_before = set(sys.modules)
    load_jobs(FIXTURES / "module_jobs.py")
    assert sys.path == path_before
    added = set(sys.modules) - modules_before
    assert not [name for name in added if "fixture" in name or "job_file" in name]


def test_sibling_modules_of_different_directories_do_not_mix(tmp_path: Path) -> None:
    """Each directory's helpers.py is its own, though both import "helpers"."""
    files = []
    for team in ("red", "blue"):
        (tmp_path / team).mkdir()
        write(tmp_path / team, "helpers.py", f'TEAM = "{team}"\n')
        source = """
            from helpers import TEAM
            from titus_flow import BatchJob, Container
            job = BatchJob(name=TEAM, container=Container(image="busybox"))
            """
        files.append(write(tmp_path / team, "jobs.py", source))
    assert [job.name for job in load_many(files)] == ["red", "blue"]
    assert "helpers" not in sys.modules


def test_jobs_function_may_return_one_job(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "jobs.py",
        """
        from titus_flow import BatchJob, Container
        def jobs():
            return BatchJob(name="only", container=Container(image="busybox"))
        """,
    )
    assert names_and_kinds(path) == [("only", "batch")]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("def jobs():\n    return 5\n", "jobs() returned int; return a job or a list of jobs"),
        (
            "def jobs():\n    return [JOB, 'x']\n",
            "jobs()[1] is a str, not a job; return BatchJob or ServiceJob objects",
        ),
    ],
)
def test_jobs_function_returning_wrong_things(tmp_path: Path, body: str, expected: str) -> None:
    header = (
        "from titus_flow import BatchJob, Container\n"
        "JOB = BatchJob(name='a', container=Container(image='busybox'))\n"
    )
    path = write(tmp_path, "jobs.py", header + body)
    assert only_message(path) == f"{path}: {expected}"


@pytest.mark.parametrize(
    ("body", "line", "expected"),
    [
        ("x = 1\ny = 1 / 0\n", 2, "ZeroDivisionError: division by zero"),
        ("import no_such_module_here\n", 1, "ModuleNotFoundError: No module named"),
        ("def f():\n    raise KeyError('k')\n\nf()\n", 2, "KeyError: 'k'"),
        ("import sys\nsys.exit(3)\n", 2, "SystemExit: 3"),
        ("raise RuntimeError()\n", 1, "RuntimeError"),
        ("def jobs():\n    return {}['missing']\n", 2, "KeyError: 'missing'"),
        ("raise ValueError('first line\\nsecond line')\n", 1, "ValueError: first line"),
    ],
)
def test_python_exceptions_point_at_the_line(
    tmp_path: Path, body: str, line: int, expected: str
) -> None:
    path = write(tmp_path, "jobs.py", body)
    message = only_message(path)
    assert message.startswith(f"{path}:{line}: {expected}")


def test_python_syntax_error(tmp_path: Path) -> None:
    path = write(tmp_path, "jobs.py", "x = 1\nif x\n    pass\n")
    assert only_message(path) == f"{path}:2: SyntaxError: expected ':'"


def test_python_syntax_error_in_a_sibling(tmp_path: Path) -> None:
    write(tmp_path, "broken_helper_tf.py", "def f(:\n")
    path = write(tmp_path, "jobs.py", "import broken_helper_tf\n")
    assert only_message(path).startswith(f"{tmp_path / 'broken_helper_tf.py'}:1: SyntaxError")


def test_python_validation_error_names_the_fields(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "jobs.py",
        """
        from titus_flow import BatchJob, Container, Resources

        job = BatchJob(
            name="a",
            container=Container(image="busybox"),
            resources=Resources(memory="lots", cpu=0),
        )
        """,
    )
    assert messages(path) == [
        f"{path}:6: Resources.cpu: must be greater than or equal to 0.001 (got 0)",
        f"{path}:6: Resources.memory: {LOTS}",
    ]


# -- several files ------------------------------------------------------------------------


def test_load_many_concatenates() -> None:
    jobs = load_many([FIXTURES / "single.yaml", FIXTURES / "jobs.json"])
    assert [job.name for job in jobs] == ["hello", "extract", "load", "api"]


def test_load_many_reads_a_file_given_twice_once() -> None:
    path = FIXTURES / "single.yaml"
    assert len(load_many([path, path, Path(str(path).replace("fixtures", "fixtures/."))])) == 1


def test_load_many_collects_errors_of_every_file(tmp_path: Path) -> None:
    bad_yaml = write(tmp_path, "a.yaml", "name: [\n")
    bad_job = write(tmp_path, "b.json", '{"name": "b", "container": {"image": "x"}, "gpu": 1}')
    with pytest.raises(SpecError) as info:
        load_many([bad_yaml, tmp_path / "missing.yml", bad_job])
    lines = info.value.messages
    assert len(lines) == 3
    assert lines[0].startswith(f"{bad_yaml}:2:")
    assert lines[1] == f"{tmp_path / 'missing.yml'}: no such file"
    assert lines[2] == f"{bad_job}: b.gpu: unknown field 'gpu'; known fields: " + ", ".join(
        BatchJob.model_fields
    )


def test_load_many_duplicate_names_across_files(tmp_path: Path) -> None:
    first = write(tmp_path, "a.yaml", "name: same\ncontainer: {image: busybox}\n")
    second = write(
        tmp_path,
        "b.json",
        '[\n {"name": "other", "container": {"image": "x"}},\n'
        ' {"name": "same", "container": {"image": "x"}}\n]',
    )
    with pytest.raises(SpecError) as info:
        load_many([first, second])
    assert info.value.messages == [
        f"{second}:3: job name 'same' is already used at {first}:1; job names must be unique"
    ]


def test_dependencies_must_be_in_the_same_file(tmp_path: Path) -> None:
    first = write(tmp_path, "a.yaml", "name: a\ncontainer: {image: busybox}\n")
    second = write(tmp_path, "b.yaml", "name: b\ncontainer: {image: busybox}\ndepends_on: [a]\n")
    with pytest.raises(SpecError) as info:
        load_many([first, second])
    assert info.value.messages == [
        f"{second}: b.depends_on[0]: no job named 'a' in this file (jobs: b)"
    ]


# -- select_job ---------------------------------------------------------------------------


def test_select_job() -> None:
    jobs = load_jobs(FIXTURES / "list.yml")
    assert select_job(jobs, None) == jobs
    (web,) = select_job(jobs, "web")
    assert isinstance(web, ServiceJob)
    with pytest.raises(SpecError) as info:
        select_job(jobs, "trian")
    assert info.value.messages == [
        "no job named 'trian'; did you mean 'train'? (jobs: prepare, train, web)"
    ]
    with pytest.raises(SpecError, match=r"no job named 'zzz' \(jobs: prepare, train, web\)"):
        select_job(jobs, "zzz")
