"""The public API (issue 16): what each subpackage exports, documents and imports.

Per subpackage of ``keras_seg_extras`` (parametrised, so that a failure names its owner):

- ``__all__`` exists and every name in it resolves;
- every non-underscore function, class and constant defined at module level in one of its
  modules is exported by its ``__all__`` (modules and re-imported names excepted; constants
  only through the commented allow-list below);
- every exported function and class has a docstring with a ``>>>`` example (the examples run
  as doctests: ``--doctest-modules`` in setup.cfg);
- every exported name appears in backticks on some docs/*.md page other than the generated
  index docs/api.md;
- no file imports ``keras.src``.

For the recipes: no ``keras.src``, no private names of the package, at most 200 lines. And the
package imports under JAX with TensorFlow and OpenCV unavailable.
"""

import ast
import importlib
import inspect
import os
import pkgutil
import re
import subprocess
import sys
import types

import pytest

import keras_seg_extras as kse
from keras_seg_extras._common import OptionalModule

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE_DIR = os.path.join(ROOT, "keras_seg_extras")
RECIPES_DIR = os.path.join(ROOT, "recipes")
DOCS_DIR = os.path.join(ROOT, "docs")
MAX_RECIPE_LINES = 200

SUBPACKAGES = sorted(name for _, name, is_package in pkgutil.iter_modules([PACKAGE_DIR])
                     if is_package)

# Public-looking module-level constants that are deliberately not exported, with the reason.
# Add to it only with a reason a user would accept; everything else is exported or renamed
# with a leading underscore.
CONSTANT_EXEMPTIONS = {}


def _modules(subpackage):
    """Every module of a subpackage (nested packages included), except private ones."""
    package = importlib.import_module(f"keras_seg_extras.{subpackage}")
    names = [package.__name__]
    for info in pkgutil.walk_packages(package.__path__, prefix=package.__name__ + "."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return [importlib.import_module(name) for name in names]


def _defined_names(module):
    """Names a module's own source binds at module level: def, class, assignment."""
    with open(module.__file__, encoding="utf-8") as handle:
        tree = ast.parse(handle.read())
    names = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names += [target.id for target in node.targets if isinstance(target, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
    return names


def _exported(subpackage):
    package = importlib.import_module(f"keras_seg_extras.{subpackage}")
    return {name: getattr(package, name) for name in package.__all__}


def _is_function_or_class(value):
    return inspect.isfunction(value) or inspect.isclass(value)


@pytest.fixture(scope="module")
def docs_identifiers():
    """Every identifier inside a backtick span of a docs/*.md page, except docs/api.md: that
    index is generated from ``__all__`` (tools/api_docs.py), so a name must also be explained
    on a page of its own."""
    found = set()
    for name in sorted(os.listdir(DOCS_DIR)):
        if name.endswith(".md") and name != "api.md":
            with open(os.path.join(DOCS_DIR, name), encoding="utf-8") as handle:
                for span in re.findall(r"`+([^`]+)`+", handle.read()):
                    found.update(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", span))
    return found


def test_top_level_exports_every_subpackage():
    assert set(SUBPACKAGES) <= set(kse.__all__)
    for name in kse.__all__:
        assert hasattr(kse, name), name
    assert "__getattr__" not in vars(kse)


@pytest.mark.parametrize("subpackage", SUBPACKAGES)
def test_all_exists_and_resolves(subpackage):
    for module in _modules(subpackage):
        if os.path.basename(module.__file__) != "__init__.py":
            continue
        names = getattr(module, "__all__", None)
        assert names is not None, f"{module.__name__} has no __all__"
        assert len(names) == len(set(names)), f"{module.__name__}.__all__ repeats a name"
        missing = [name for name in names if not hasattr(module, name)]
        assert not missing, f"{module.__name__}.__all__ names what it lacks: {missing}"
        assert "__getattr__" not in vars(module), f"{module.__name__} has a module __getattr__"


@pytest.mark.parametrize("subpackage", SUBPACKAGES)
def test_every_public_module_level_name_is_exported(subpackage):
    exported = _exported(subpackage)
    exported_ids = {id(value) for value in exported.values() if _is_function_or_class(value)}
    unexported = []
    for module in _modules(subpackage):
        for name in _defined_names(module):
            if name.startswith("_") or name in ("__all__",):
                continue
            value = getattr(module, name)
            if isinstance(value, (types.ModuleType, OptionalModule)):
                continue  # a module bound at module level (``tf = OptionalModule(...)``)
            if _is_function_or_class(value):
                if value.__module__ == module.__name__ and id(value) not in exported_ids:
                    unexported.append(f"{module.__name__}.{name}")
            elif (exported.get(name) is not value
                  and (module.__name__, name) not in CONSTANT_EXEMPTIONS):
                unexported.append(f"{module.__name__}.{name} (constant)")
    assert not unexported, (
        f"not in keras_seg_extras.{subpackage}.__all__ (export it or add a leading "
        f"underscore): {unexported}")


@pytest.mark.parametrize("subpackage", SUBPACKAGES)
def test_exported_functions_and_classes_have_doctest_examples(subpackage):
    lacking = [name for name, value in _exported(subpackage).items()
               if _is_function_or_class(value) and ">>>" not in (inspect.getdoc(value) or "")]
    assert not lacking, f"keras_seg_extras.{subpackage}: no `>>>` example in {lacking}"


@pytest.mark.parametrize("subpackage", SUBPACKAGES)
def test_exported_names_appear_in_the_docs(subpackage, docs_identifiers):
    missing = sorted(set(_exported(subpackage)) - docs_identifiers)
    assert not missing, f"keras_seg_extras.{subpackage}: in no docs/*.md backticks: {missing}"


def _python_files(folder):
    for directory, _, files in os.walk(folder):
        for name in sorted(files):
            if name.endswith(".py"):
                yield os.path.join(directory, name)


def _keras_src_imports(path):
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read())
    found = []
    for node in ast.walk(tree):
        modules = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        found += [f"line {node.lineno}: {m}" for m in modules
                  if m == "keras.src" or m.startswith("keras.src.")]
    return found


@pytest.mark.parametrize("folder", [f"keras_seg_extras/{name}" for name in SUBPACKAGES]
                         + ["recipes"])
def test_no_keras_src_imports(folder):
    offenders = {os.path.relpath(path, ROOT): found
                 for path in _python_files(os.path.join(ROOT, folder))
                 if (found := _keras_src_imports(path))}
    assert not offenders, f"keras.src imported (private Keras API): {offenders}"


def test_no_keras_src_imports_at_the_top_level():
    for name in os.listdir(PACKAGE_DIR):
        if name.endswith(".py"):
            assert not _keras_src_imports(os.path.join(PACKAGE_DIR, name)), name


def _private_uses(tree):
    """Private package names a script uses: ``from keras_seg_extras.x import _y``, a private
    module in an import path, or ``kse.x._y`` on a name bound to the package."""
    found, package_names = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "keras_seg_extras":
                    package_names.add((alias.asname or alias.name).split(".")[0])
                    if any(part.startswith("_") for part in alias.name.split(".")):
                        found.append(f"line {node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "keras_seg_extras"):
            parts = node.module.split(".")
            for alias in node.names:
                if any(p.startswith("_") for p in parts) or alias.name.startswith("_"):
                    found.append(f"line {node.lineno}: from {node.module} import {alias.name}")
                package_names.add(alias.asname or alias.name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            chain, inner = [node.attr], node.value
            while isinstance(inner, ast.Attribute):
                chain.append(inner.attr)
                inner = inner.value
            private = [a for a in chain if a.startswith("_") and not a.startswith("__")]
            if isinstance(inner, ast.Name) and inner.id in package_names and private:
                found.append(f"line {node.lineno}: {inner.id}.{'.'.join(reversed(chain))}")
    return sorted(set(found))


RECIPES = sorted(name for name in os.listdir(RECIPES_DIR) if name.endswith(".py"))


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_is_thin_and_uses_public_names_only(recipe):
    with open(os.path.join(RECIPES_DIR, recipe), encoding="utf-8") as handle:
        source = handle.read()
    private = _private_uses(ast.parse(source))
    assert not private, f"recipes/{recipe} uses private package names: {private}"
    lines = len(source.splitlines())
    assert lines <= MAX_RECIPE_LINES, f"recipes/{recipe}: {lines} lines > {MAX_RECIPE_LINES}"


def test_private_use_finder_catches_each_form():
    source = ("import keras_seg_extras as kse\n"
              "from keras_seg_extras.training.accumulation import _batchnorm_layers\n"
              "from keras_seg_extras._common import fail\n"
              "from keras_seg_extras import data\n"
              "kse.losses.overlap._overlap_loss(1)\n"
              "data.rle._parse\n"
              "kse.losses.DiceLoss().__class__\n"
              "other._private\n")
    assert [line.split(":")[0] for line in _private_uses(ast.parse(source))] == [
        "line 2", "line 3", "line 5", "line 6"]


_BLOCKED_IMPORT = r"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "cv2"):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
sys.meta_path.insert(0, Block())
import keras_seg_extras as kse
assert kse.data.decode_siim("1 2", (2, 2)).sum() == 2
assert "tensorflow" not in sys.modules and "cv2" not in sys.modules
try:
    kse.data.segmentation_dataset
    kse.data.pipeline.tf.data
except ImportError as error:
    assert "pip install 'keras-seg-extras[tf]'" in str(error), error
else:
    raise AssertionError("TensorFlow was importable")
print("ok")
"""


def test_package_imports_under_jax_without_tensorflow_or_opencv():
    environment = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=ROOT)
    result = subprocess.run([sys.executable, "-c", _BLOCKED_IMPORT], capture_output=True,
                            text=True, env=environment, cwd=ROOT, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]


def test_spelled_out_autotune_is_tensorflows():
    import tensorflow as tf

    from keras_seg_extras.data import class_sampler

    assert class_sampler._AUTOTUNE == tf.data.AUTOTUNE
