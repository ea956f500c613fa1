"""dvc.yaml declares what each stage runs and reads, so DVC's cache never goes stale.

* deps: every file of dainet/ that a stage's script imports, directly or not (its static
  import closure, package ``__init__`` files included), is covered by a declared dep;
* params: the declared keys exist in both profiles, and keys of one stage's concern do
  not retrain another (a ``predict.*`` change must not rerun ``train``).
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from dainet.errors import UserError
from dainet.params import pipeline_stages
from dainet.utils.imports import PACKAGE, import_closure, module_file

ROOT = Path(__file__).resolve().parents[1]


def stages() -> dict:
    """By DVC's names: a ``foreach`` stage ``s`` as ``s@<key>``, one per item."""
    return pipeline_stages(ROOT / "dvc.yaml")


def stage_script(stage: dict) -> str:
    # run as a module of the checkout (`python -m`): the cwd, not the editable install, gives `dainet`
    found = re.findall(r"\bpython -m stages\.(\w+)\b", stage["cmd"])
    assert len(found) == 1, f"cmd runs no single stage module: {stage['cmd']!r}"
    return f"stages/{found[0]}.py"


# ---------------------------------------------------------------- the static import closure
# (dainet/utils/imports.py)

def covered(rel: str, deps: list[str]) -> bool:
    return any(rel == d or rel.startswith(d.rstrip("/") + "/") for d in deps)


# ---------------------------------------------------------------- the closure itself

def test_closure_follows_every_import_form(tmp_path):
    pkg = tmp_path / PACKAGE
    for rel, text in {
        "__init__.py": "from dainet import rt\n",
        "rt.py": "",
        "a/__init__.py": "from .b import f\n",
        "a/b.py": "def f():\n    from ..c import g\n    import dainet.d.e\n",
        "c.py": "if True:\n    from dainet.a import sub\n",
        "a/sub.py": "", "d/__init__.py": "", "d/e.py": "", "unused.py": "",
    }.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(text)
    script = tmp_path / "stage.py"
    script.write_text("import os\nfrom dainet.a import b\n")
    got = {p.relative_to(tmp_path).as_posix() for p in import_closure(script, tmp_path)}
    assert got == {"dainet/__init__.py", "dainet/rt.py", "dainet/a/__init__.py", "dainet/a/b.py",
                   "dainet/c.py", "dainet/a/sub.py", "dainet/d/__init__.py", "dainet/d/e.py"}


def test_an_import_of_a_missing_module_is_an_error(tmp_path):
    (tmp_path / PACKAGE).mkdir()
    (tmp_path / PACKAGE / "__init__.py").write_text("")
    (tmp_path / PACKAGE / "a.py").write_text("import dainet.gone\n")
    script = tmp_path / "stage.py"
    script.write_text("from dainet import a\n")
    with pytest.raises(LookupError, match=r"a\.py: imports dainet\.gone, which is no file of dainet/"):
        import_closure(script, tmp_path)


def test_covered_takes_files_and_folders_but_not_prefixes():
    assert covered("dainet/a/b.py", ["dainet/a/b.py"])
    assert covered("dainet/a/b.py", ["dainet/a"]) and covered("dainet/a/b.py", ["dainet/a/"])
    assert covered("dainet/a/b.py", ["stages/x.py", "dainet"])
    assert not covered("dainet/a/b.py", ["dainet/a/b.pyc", "dainet/a/bb.py", "dainet/ab", "dainet/a/b"])
    assert not covered("dainet/ab/x.py", ["dainet/a"])
    assert not covered("dainet/a/b.py", [])


# ---------------------------------------------------------------- dvc.yaml deps

@pytest.mark.parametrize("name", sorted(stages()))
def test_stage_deps_cover_the_code_it_runs(name):
    stage = stages()[name]
    script = stage_script(stage)
    deps = [d for d in stage.get("deps", []) if "${" not in d]
    assert script in deps, f"stage {name}: its script {script} is not a dep"
    missing = {f.relative_to(ROOT).as_posix(): by.relative_to(ROOT).as_posix()
               for f, by in import_closure(ROOT / script).items()
               if not covered(f.relative_to(ROOT).as_posix(), deps)}
    assert not missing, f"stage {name}: not in its deps: " + ", ".join(
        f"{f} (imported by {by})" for f, by in sorted(missing.items()))


def test_every_declared_code_dep_exists():
    for name, stage in stages().items():
        for d in stage.get("deps", []):
            if d.startswith(("stages/", PACKAGE + "/", PACKAGE)) and "${" not in d:
                assert (ROOT / d).exists(), f"stage {name}: dep {d} does not exist"


# ---------------------------------------------------------------- dvc.yaml params

def params_of(name: str) -> list[str]:
    out = []
    for p in stages()[name].get("params", []):
        out += [p] if isinstance(p, str) else [k for keys in p.values() for k in keys]
    return out


def lookup(tree: dict, dotted: str):
    node = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return KeyError
        node = node[part]
    return node


@pytest.mark.parametrize("profile", ["params.yaml", "params/wider.yaml"])
def test_declared_params_exist_in_both_profiles(profile):
    tree = yaml.safe_load((ROOT / profile).read_text())
    for name in stages():
        for key in params_of(name):
            assert lookup(tree, key) is not KeyError, f"stage {name}: params key {key} is not in {profile}"


def test_prediction_keys_do_not_retrain():
    train = params_of("train")
    assert not [k for k in train if k.split(".")[0] in ("predict", "evaluate", "visualize")], train
    # Every `model` key shapes the trained network (train fingerprints the whole section to
    # decide on resuming), so no `model` key is used by prediction alone. The converse:
    # the decomposition network's keys must not rerun prediction or pictures.
    for name in ("predict@wider", "predict@dark", "visualize"):
        keys = params_of(name)
        assert "model" not in keys and not [k for k in keys if k.startswith("model.decomp_")], (name, keys)
        assert not [k for k in keys if k.split(".")[0] in ("train", "train_decomp", "augment", "darkisp")]
    # the reliability limits of issue 12 rerun the stages that apply them
    assert "data.max_bad_images" in params_of("prepare")
    for name in ("predict@wider", "predict@dark"):
        assert "predict.max_skipped_images" in params_of(name)
    for name in ("evaluate_wider", "evaluate_dark"):
        assert "evaluate.max_missing_predictions" in params_of(name)


def uncached_plain_outs(stage: dict) -> list[str]:
    """The stage's git-tracked (``cache: false``) outputs that are neither metrics nor plots."""
    return [path for out in stage.get("outs", []) if isinstance(out, dict)
            for path, spec in out.items() if spec and spec.get("cache") is False]


def test_every_stage_can_be_restored_from_the_run_cache():
    # DVC saves a stage to its run cache only when every git-tracked output is a metric or a
    # plot (dvc/stage/__init__.py, Stage.run: `no_cache_outs`). Without it, a queued experiment
    # retrains a configuration that has been trained before.
    assert uncached_plain_outs({"outs": ["a", {"b": {"cache": False}}, {"c": {"persist": True}}]}) == ["b"]
    assert {name: uncached_plain_outs(stage) for name, stage in stages().items()
            if uncached_plain_outs(stage)} == {}


# ---------------------------------------------------------------- one hop from dvc.yaml to dainet

@pytest.mark.parametrize("name", sorted(stages()))
def test_stage_script_names_the_dainet_function_it_calls(name):
    """Each script's docstring says ``Calls :func:`dainet...``` and that function exists
    (found statically: a top-level ``def`` in the module's file) and the script uses it."""
    script = ROOT / stage_script(stages()[name])
    tree = ast.parse(script.read_text())
    named = re.findall(r"Calls :func:`(dainet(?:\.\w+)+)\.(\w+)`", ast.get_docstring(tree) or "")
    assert named, f"{script.name}: the docstring names no 'Calls :func:`dainet....`'"
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    for module, func in named:
        path = module_file(module)
        assert path is not None, f"{script.name}: {module} is no module of dainet/"
        body = ast.parse(path.read_text()).body
        defined = {n.name for n in body if isinstance(n, ast.FunctionDef)}
        exported = {a.asname or a.name for n in body if isinstance(n, ast.ImportFrom) for a in n.names}
        assert func in defined | exported, f"{script.name}: {module} has no function {func}"
        assert func in used, f"{script.name}: names {module}.{func} but does not call it"


# ---------------------------------------------------------------- foreach stages, as DVC reads them

def test_foreach_stages_expand_by_key_and_item(tmp_path):
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n"
        "  a:\n    cmd: python -m stages.a\n    outs: [x]\n"
        "  p:\n    foreach:\n      one:\n        src: ${data.root}/1\n        out: o1\n"
        "      two:\n        src: s2\n        out: o2\n"
        "    do:\n      cmd: python -m stages.p --in ${item.src} --m m_${key}.json\n"
        "      deps:\n        - ${item.src}\n      outs:\n        - ${item.out}\n"
        "      metrics:\n        - m_${key}.json:\n            cache: false\n")
    got = pipeline_stages(tmp_path / "dvc.yaml")
    assert list(got) == ["a", "p@one", "p@two"]
    assert got["p@one"]["cmd"] == "python -m stages.p --in ${data.root}/1 --m m_one.json"
    assert got["p@two"]["deps"] == ["s2"] and got["p@two"]["metrics"] == [{"m_two.json": {"cache": False}}]
    from dainet.params import pipeline_outputs
    assert pipeline_outputs(tmp_path / "dvc.yaml") == ["x", "o1", "m_one.json", "o2", "m_two.json"]


LIST_FOREACH = (
    "stages:\n"
    "  s:\n    foreach: [us, 7, true]\n"
    "    do:\n      cmd: python -m stages.s --region ${item}\n      outs:\n        - out_${item}.txt\n"
    "  m:\n    foreach:\n      - {src: a.txt, n: 1}\n      - {src: b.txt, n: 2}\n"
    "    do:\n      cmd: python -m stages.m ${item.src} --n ${item.n}\n      outs:\n        - m_${item.n}.txt\n"
    "  k:\n    foreach:\n      one: {src: c.txt}\n"
    "    do:\n      cmd: python -m stages.k ${key} ${item.src}\n      outs:\n        - k_${key}.txt\n")


def test_list_foreach_stages_are_named_and_filled_as_dvc_does(tmp_path):
    """Scalar lists by their items, lists of mappings by position, mappings by key: compared
    with DVC's own resolution of the same file."""
    from dvc.repo import Repo
    (tmp_path / "dvc.yaml").write_text(LIST_FOREACH)
    ours = pipeline_stages(tmp_path / "dvc.yaml")
    assert list(ours) == ["s@us", "s@7", "s@true", "m@0", "m@1", "k@one"]
    assert ours["s@true"]["cmd"] == "python -m stages.s --region true"
    assert ours["m@1"]["cmd"] == "python -m stages.m b.txt --n 2" and ours["m@1"]["outs"] == ["m_2.txt"]
    Repo.init(str(tmp_path), no_scm=True)
    with Repo(str(tmp_path)) as repo:
        theirs = {s.name: s for s in repo.index.stages}
    assert set(theirs) == set(ours)
    for name, stage in ours.items():
        assert stage["cmd"] == theirs[name].cmd, name
        assert stage["outs"] == [o.def_path for o in theirs[name].outs], name


@pytest.mark.parametrize("stage,message", [
    ("  p:\n    foreach: [a, b]\n    cmd: echo\n", r"stage p: foreach without do$"),
    ("  p:\n    foreach: [a, b]\n    do:\n      cmd: echo ${item.src}\n",
     r"stage p@a: \$\{item.src\} has no value in this iteration$"),
    ("  p:\n    foreach: [a]\n    do:\n      cmd: echo ${key}\n", r"stage p@a: \$\{key\} has no value"),
    ("  p:\n    foreach: ${lists}\n    do:\n      cmd: echo\n", r"stage p: foreach must be a mapping or a list"),
    ("  p:\n    matrix:\n      a: [1, 2]\n    cmd: echo ${item.a}\n", r"stage p: matrix stages are not read"),
    ("  p: echo\n", r"stage p: expected a mapping"),
])
def test_a_foreach_stage_that_cannot_be_read_is_a_one_line_error(tmp_path, stage, message):
    (tmp_path / "dvc.yaml").write_text("stages:\n" + stage)
    with pytest.raises(UserError, match=r"^" + re.escape(str(tmp_path / "dvc.yaml")) + ": " + message):
        pipeline_stages(tmp_path / "dvc.yaml")


def test_the_stages_read_here_are_the_stages_dvc_runs():
    """Names, commands and outputs as DVC itself resolves dvc.yaml (params interpolated)."""
    from dvc.repo import Repo
    with Repo(str(ROOT)) as repo:
        theirs = {s.addressing: s for s in repo.index.stages if s.path_in_repo == "dvc.yaml"}
    ours = stages()
    assert set(theirs) == set(ours)
    for name, stage in ours.items():
        if "${" not in stage["cmd"]:
            assert " ".join(stage["cmd"].split()) == " ".join(theirs[name].cmd.split()), name
        outs = [o if isinstance(o, str) else next(iter(o)) for k in ("outs", "metrics", "plots")
                for o in stage.get(k, [])]
        assert sorted(o for o in outs if "${" not in o) == sorted(
            o.def_path for o in theirs[name].outs if "${" not in o.def_path), name
