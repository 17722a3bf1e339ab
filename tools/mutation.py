"""Mutation testing of losses/, metrics/, training/ and callbacks/ with mutmut's mutations.

Usage (from the repository root; not part of CI):

    pip install -e ".[dev]"
    nice python tools/mutation.py --sample 60               # 60 random mutants per package
    nice python tools/mutation.py losses/focal.py           # every mutant of matching files
    python tools/mutation.py --report                       # scores and survivors so far

The mutants are mutmut's (its operators: numbers, strings, comparison and arithmetic
operators, keywords, arguments, ...; ``mutmut.list_mutations``). Each one is written into a
copy of the package and the tests in a work folder (``--work``, default ``.mutation-work/``),
so this checkout is never edited, and checked against only the test files that exercise its
source file (the table below), stopping at the first failure (``-x``). A mutant is killed when
those tests fail or run past 10 times their unmutated time. Every mutant takes a fresh Python
process (TensorFlow import included, ~5-30 s on 2 busy cores), so the full set of a package is
hours: ``--sample N`` checks N mutants drawn at random (seeded, ``--seed``) from each package
and gives an unbiased estimate of its score. Results accumulate in ``results.jsonl`` of the
work folder (a rerun skips killed mutants and survivors whose tests did not change); ``--report``
prints the score per file and package and every survivor, which docs/testing.md records.
"""

import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import time
from itertools import zip_longest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Source file (under keras_seg_extras/) -> the test files that check it.
TESTS = {
    "losses/focal.py": ["losses/test_focal.py", "losses/test_gradients.py",
                        "losses/test_defaults.py", "losses/test_sample_weights.py"],
    "losses/overlap.py": ["losses/test_overlap.py", "losses/test_gradients.py",
                          "losses/test_defaults.py", "losses/test_sample_weights.py"],
    "losses/combine.py": ["losses/test_combine.py", "losses/test_gradients.py",
                          "losses/test_defaults.py", "losses/test_sample_weights.py"],
    "losses/tilted.py": ["losses/test_tilted.py", "losses/test_gradients.py",
                         "losses/test_defaults.py", "losses/test_sample_weights.py"],
    "losses/wrappers.py": ["losses/test_wrappers.py", "losses/test_gradients.py",
                           "losses/test_sample_weights.py"],
    "losses/auxiliary.py": ["losses/test_auxiliary.py", "losses/test_gradients.py"],
    "losses/local_adaptive.py": ["losses/test_local_adaptive.py", "losses/test_gradients.py"],
    "metrics/overlap.py": ["metrics/test_overlap.py"],
    "metrics/confusion.py": ["metrics/test_confusion.py"],
    "metrics/fairness.py": ["metrics/test_fairness.py"],
    "metrics/ranking.py": ["metrics/test_ranking.py"],
    "training/accumulation.py": ["training/test_accumulation.py"],
    "training/progressive.py": ["training/test_progressive.py"],
    "training/schedules.py": ["training/test_schedules.py"],
    "training/distribute.py": ["training/test_distribute.py"],
    "callbacks/swa.py": ["callbacks/test_swa.py"],
    "callbacks/snapshot.py": ["callbacks/test_snapshot.py"],
    "callbacks/tce_sampler.py": ["callbacks/test_tce_sampler.py"],
}

PACKAGES = ("losses", "metrics", "training", "callbacks")


def _copy_tree(work):
    """Fresh copy of the package, the tests and the pytest configuration (conftest.py) in
    ``work``."""
    for name in ("keras_seg_extras", "tests"):
        target = os.path.join(work, name)
        if os.path.exists(target):
            shutil.rmtree(target)
        shutil.copytree(os.path.join(ROOT, name), target,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("setup.cfg", "pyproject.toml", "conftest.py"):
        shutil.copy2(os.path.join(ROOT, name), os.path.join(work, name))


def _mutants(path):
    """mutmut's mutation ids of one file, in source order."""
    from mutmut import ALL, Context, list_mutations

    return list_mutations(Context(filename=path, mutation_id=ALL))


def _mutated_source(path, mutation):
    from mutmut import Context, mutate

    source, count = mutate(Context(filename=path, mutation_id=mutation))
    assert count == 1, (path, mutation)
    return source


def _pytest(work, tests, timeout):
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
               *[os.path.join("tests", t) for t in tests]]
    start = time.monotonic()
    try:
        result = subprocess.run(command, cwd=work, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", time.monotonic() - start
    return ("passed" if result.returncode == 0 else "failed"), time.monotonic() - start


def _tests_hash(tests, base=ROOT):
    digest = hashlib.sha256()
    for test in tests:
        with open(os.path.join(base, "tests", test), "rb") as handle:
            digest.update(handle.read())
    return digest.hexdigest()[:16]


def _load(results_path):
    if not os.path.exists(results_path):
        return []
    with open(results_path) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def run(work, sources, sample, seed):
    results_path = os.path.join(work, "results.jsonl")
    _copy_tree(work)
    # A killed mutant stays killed when tests are added (delete results.jsonl after editing
    # or removing tests); a survivor is checked again whenever its tests changed.
    done = {(r["file"], r["line_number"] - 1, r["index"], r["line"],
             "any" if r["outcome"] == "killed" else r["tests_hash"]) for r in _load(results_path)}
    queues = []
    for package in PACKAGES:
        pool = []
        for source in sources:
            if source.startswith(package + "/"):
                path = os.path.join("keras_seg_extras", source)
                pool += [(source, m) for m in _mutants(os.path.join(work, path))]
        if sample is not None:
            random.Random(f"{seed}-{package}").shuffle(pool)
            pool = pool[:sample]
        queues.append(pool)
    # Round robin over the packages, so that a run stopped early has results for each.
    chosen = [item for group in zip_longest(*queues) for item in group if item is not None]
    baselines = {}
    for number, (source, mutation) in enumerate(chosen, 1):
        tests = TESTS[source]
        key = (source, mutation.line_number, mutation.index, mutation.line,
               _tests_hash(tests, work))
        if key in done or key[:-1] + ("any",) in done:
            continue
        if source not in baselines:
            status, seconds = _pytest(work, tests, timeout=None)
            if status != "passed":
                sys.exit(f"{source}: the unmutated tests {tests} fail; fix them first")
            baselines[source] = seconds
        # Mutate the work copy (taken at the start), so that edits to this checkout during a
        # run never mix with the copied files.
        target = os.path.join(work, "keras_seg_extras", source)
        with open(target) as handle:
            original = handle.read()
        mutated = _mutated_source(target, mutation)
        with open(target, "w") as handle:
            handle.write(mutated)
        try:
            status, seconds = _pytest(work, tests, timeout=10 * baselines[source] + 10)
        finally:
            with open(target, "w") as handle:
                handle.write(original)
        changed = [b for a, b in zip(original.split("\n"), mutated.split("\n")) if a != b]
        record = {"file": source, "line_number": mutation.line_number + 1,
                  "index": mutation.index, "line": mutation.line, "tests_hash": key[-1],
                  "mutated": changed[0] if changed else "",
                  "outcome": "survived" if status == "passed" else "killed",
                  "seconds": round(seconds, 1)}
        with open(results_path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        print(f"[{number}/{len(chosen)}] {record['outcome']:8s} {source}:"
              f"{record['line_number']} {record['mutated'].strip()[:90]}", flush=True)


def report(work):
    """Print killed/total per file and per package and every survivor's line."""
    records = {}  # the latest record of each mutant
    for record in _load(os.path.join(work, "results.jsonl")):
        records[(record["file"], record["line_number"], record["index"], record["line"])] = record
    if not records:
        sys.exit(f"no results in {work}: run the mutation first")
    files, packages = {}, {}
    for record in records.values():
        for table, key in ((files, record["file"]), (packages, record["file"].split("/")[0])):
            counts = table.setdefault(key, {"killed": 0, "total": 0})
            counts["total"] += 1
            counts["killed"] += record["outcome"] == "killed"
    for title, table in (("file", files), ("package", packages)):
        print(f"\n| {title} | killed | mutants checked | score |\n|---|---|---|---|")
        for key, counts in sorted(table.items()):
            share = counts["killed"] / counts["total"]
            print(f"| {key} | {counts['killed']} | {counts['total']} | {share:.0%} |")
    print("\nSurvivors (file:line: original -> mutated):")
    for record in sorted(records.values(), key=lambda r: (r["file"], r["line_number"])):
        if record["outcome"] == "survived":
            print(f"- {record['file']}:{record['line_number']}: `{record['line'].strip()}` -> "
                  f"`{record['mutated'].strip()}`")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("only", nargs="*", help="only sources whose path contains one of these")
    parser.add_argument("--exclude", nargs="*", default=(), help="skip sources containing these")
    parser.add_argument("--sample", type=int, default=None,
                        help="mutants drawn at random per package (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default=os.path.join(ROOT, ".mutation-work"))
    parser.add_argument("--report", action="store_true", help="print the results and stop")
    args = parser.parse_args(argv)
    if not args.report:
        sources = [s for s in TESTS if (not args.only or any(p in s for p in args.only))
                   and not any(p in s for p in args.exclude)]
        for source in sources:
            missing = [t for t in TESTS[source] if not os.path.exists(os.path.join(ROOT, "tests", t))]
            if missing:  # pytest would fail on them and count every mutant as killed
                sys.exit(f"{source}: test files {missing} do not exist; fix the table")
        os.makedirs(args.work, exist_ok=True)
        run(args.work, sources, args.sample, args.seed)
    report(args.work)


if __name__ == "__main__":
    main()
