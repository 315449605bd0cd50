"""The tests map to the modules (issue 25): whoever changes training/checkpoints.py finds tests/test_checkpoints.py.

The rule, checked both ways over the modules found by walking the packages:
  * each module M has tests/test_M.py, or tests/test_P_M.py (P its package; the only name accepted where two
    packages hold a module M); a package's own __init__.py, when it holds code, has tests/test_P.py; a module
    without one of these is in TESTED_ELSEWHERE, saying where and why;
  * each tests/test_X.py names its module: X is M, P_M or P, or one of them followed by _<aspect> (a second file
    for one module, e.g. test_visualize_analyses.py), or the file is in NOT_ONE_MODULE (end to end, fault suite);
  * tests/README.md names every test file, so its table cannot silently fall behind.
"""

import ast
import collections

from conftest import REPO

# Modules whose tests live in another module's file.
TESTED_ELSEWHERE = {
    "networks/mlp.py": "test_networks.py: the option grid builds, trains, resumes and exports every family",
    "networks/options.py": "test_networks.py (defaults per architecture, refused combinations, checkpoints of "
                           "another option) and test_config.py (its role class)",
}
# Packages that are scripts rather than code the project runs: their runs are their check.
SCRIPT_PACKAGES = {
    "bench": "benchmark scripts that print the README's tables; tested where the suite or the tables rely on "
             "them (harness, flops, ablation, faults, face_sanity)",
}
# Test files that exercise a whole command or the project as a whole rather than one module.
NOT_ONE_MODULE = {
    "test_interrupt.py": "Ctrl-C and SIGTERM on a training main.py process",
    "test_multiworker.py": "two main.py worker processes training one run (TF_CONFIG)",
    "test_explorer_browser.py": "the latent explorer's page in a real headless Chromium",
    "test_make_chromium.py": "the Makefile's chromium target",
    "test_recipe_files.py": "recipes/*.flags name real flags and train through main.py",
    "test_layout.py": "this file: the suite's layout",
}


def has_code(path):
    """Whether a module holds more than its docstring (an __init__.py that only describes its package does not)."""
    body = ast.parse(path.read_text()).body
    return any(not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)) for node in body)


def source_modules():
    """{relative path: (package or "", module name)} of every module the repository's packages hold, found by
    walking them: the top-level .py files, then each folder with an __init__.py (but tests/) and its
    subpackages.  A package's __init__.py counts as the module named after the package when it holds code."""
    found = {path.name: ("", path.stem) for path in REPO.glob("*.py")}
    packages = [folder for folder in REPO.iterdir() if (folder / "__init__.py").exists() and folder.name != "tests"]
    while packages:
        package = packages.pop()
        parent = package.parent.name if package.parent != REPO else ""
        for path in package.glob("*.py"):
            if path.name != "__init__.py":
                found[str(path.relative_to(REPO))] = (package.name, path.stem)
            elif has_code(path):
                found[str(path.relative_to(REPO))] = (parent, package.name)
        packages += [folder for folder in package.iterdir() if (folder / "__init__.py").exists()]
    return found


def accepted_names(modules):
    """{relative path: the test file names that module may have}."""
    packages_of = collections.defaultdict(set)
    for package, name in modules.values():
        packages_of[name].add(package)
    accepted = {}
    for path, (package, name) in modules.items():
        if path.endswith("__init__.py"):
            accepted[path] = {f"test_{name}.py"}
            continue
        names = {f"test_{package}_{name}.py"} if package else set()
        if len(packages_of[name]) == 1:
            names.add(f"test_{name}.py")
        accepted[path] = names
    return accepted


def existing_test_files():
    return {path.name for path in (REPO / "tests").glob("test_*.py")}


def test_the_walk_finds_the_packages_modules_and_only_them():
    modules = source_modules()
    assert {"main.py", "training/checkpoints.py", "networks/__init__.py", "runtime/options.py",
            "networks/options.py", "bench/harness.py", "bench/faults/hostile_files.py"} <= set(modules)
    assert "training/__init__.py" not in modules  # a docstring only
    assert not any(path.startswith(("tests/", "docs/", "embedded_data/")) for path in modules)
    assert accepted_names(modules)["runtime/options.py"] == {"test_runtime_options.py"}  # two options.py
    assert accepted_names(modules)["training/checkpoints.py"] == {"test_checkpoints.py",
                                                                  "test_training_checkpoints.py"}


def test_every_module_has_its_test_file_or_says_where_it_is_tested():
    present = existing_test_files()
    modules = source_modules()
    untested = sorted(path for path, names in accepted_names(modules).items()
                      if not names & present and path not in TESTED_ELSEWHERE
                      and path.split("/")[0] not in SCRIPT_PACKAGES)
    assert untested == [], "add tests/test_<module>.py (see tests/README.md) or a reason in TESTED_ELSEWHERE"
    stale = sorted(path for path in TESTED_ELSEWHERE
                   if path not in modules or accepted_names(modules)[path] & present)
    assert stale == [], "these exceptions no longer apply: remove them"


def test_every_test_file_names_its_module_or_says_what_it_tests():
    modules = source_modules()
    packages = {package for package, _ in modules.values() if package}
    stems = packages | {name for _, name in modules.values()} | {
        f"{package}_{name}" for package, name in modules.values() if package}
    unnamed = sorted(file for file in existing_test_files() - set(NOT_ONE_MODULE)
                     if not any(file[len("test_"):-len(".py")] == stem
                                or file[len("test_"):-len(".py")].startswith(stem + "_") for stem in stems))
    assert unnamed == [], "name a test file after its module (tests/README.md) or list it in NOT_ONE_MODULE"
    assert set(NOT_ONE_MODULE) <= existing_test_files()


def test_the_readme_names_every_test_file():
    readme = (REPO / "tests" / "README.md").read_text()
    assert sorted(file for file in existing_test_files() if f"`{file}`" not in readme) == []
