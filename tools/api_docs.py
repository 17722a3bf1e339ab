"""Write docs/api.md: every name of every subpackage's ``__all__``, one line each.

Each line has the name, the first paragraph of its docstring (shortened; for a constant, its
value) and the docs pages that mention it in backticks (testing and benchmark pages last).
Run it after adding, renaming or documenting a public name:

    python tools/api_docs.py            # rewrites docs/api.md
"""

import importlib
import inspect
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("KERAS_BACKEND", "jax")  # no TensorFlow needed to list the API

SUBPACKAGES = {
    "losses": "Losses", "metrics": "Metrics", "callbacks": "Callbacks",
    "training": "Training helpers", "models": "Models", "inference": "Inference (segmentation)",
    "video": "Video instances and clips", "data": "Data", "datasets": "Shipped sample sets",
    "export": "Serving export",
}
SUMMARY_LENGTH = 110

HEADER = """# Public API

Every public name, by subpackage, flat: `kse.<subpackage>.<name>` after
`import keras_seg_extras as kse`. Each subpackage's `__all__` is its list below; every other
module-level name in the package starts with an underscore (or is a module).
`tests/test_public_api.py` fails when a public name is added without being exported, without a
doctest example or without a mention on a docs page. The last column is the page that explains
it; the docstring is the reference (`help(kse.losses.DiceLoss)`). Written by
`tools/api_docs.py`.

`import keras_seg_extras` imports every subpackage, under any Keras backend and without
TensorFlow or OpenCV installed (the TensorFlow- and OpenCV-only functions import them at their
first use). Modules stay importable as attributes (`kse.data.rle`, `kse.data.dicom`), but the
flat names are the API. At the top level: `kse.export_model` and `kse.export_saved_model` (the
functions of `kse.export`) and `kse.__version__`.
"""


def _pages(docs_dir):
    names = sorted(n for n in os.listdir(docs_dir) if n.endswith(".md") and n != "api.md")
    names.sort(key=lambda n: n in ("testing.md", "benchmarks.md", "backends.md"))
    pages = {}
    for name in names:
        with open(os.path.join(docs_dir, name), encoding="utf-8") as handle:
            spans = re.findall(r"`+([^`]+)`+", handle.read())
        pages[name] = {word for span in spans
                       for word in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", span)}
    return pages


def _summary(value):
    if not (inspect.isfunction(value) or inspect.isclass(value)):
        shown = repr(value)
        return f"constant: `{shown}`" if len(shown) < 60 else f"constant ({type(value).__name__})"
    text = (inspect.getdoc(value) or "").split("\n\n")[0].replace("\n", " ")
    text = re.sub(r":\w+:`~?([^`]+)`", r"``\1``", text).replace("|", "\\|").strip()
    if len(text) > SUMMARY_LENGTH:
        text = text[:SUMMARY_LENGTH - 3].rsplit(" ", 1)[0] + " ..."
    return text


def main():
    pages = _pages(os.path.join(ROOT, "docs"))
    lines = [HEADER]
    for subpackage, title in SUBPACKAGES.items():
        package = importlib.import_module(f"keras_seg_extras.{subpackage}")
        lines += [f"## `kse.{subpackage}`: {title}", "", "| name | what | explained in |",
                  "|---|---|---|"]
        for name in sorted(package.__all__, key=str.lower):
            found = [page for page, words in pages.items() if name in words][:2]
            where = ", ".join(f"[{page}]({page})" for page in found) or "its docstring"
            lines.append(f"| `{name}` | {_summary(getattr(package, name))} | {where} |")
        lines.append("")
    with open(os.path.join(ROOT, "docs", "api.md"), "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines))
    count = sum(line.startswith("| `") for line in lines)
    print(f"wrote docs/api.md: {count} names")


if __name__ == "__main__":
    main()
