"""`kubetune validate FILE...`: every problem of every Study, one `file: path: reason` line each."""

from __future__ import annotations

import argparse
import sys

from kubetune.operator.spec.validation import StudyInvalid, error_line, load_study_file


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", help="Study YAML files")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing when valid")


def run(args: argparse.Namespace) -> int:
    failed = False
    for name in args.files:
        try:
            studies = load_study_file(name)
        except StudyInvalid as exc:
            failed = True
            for error in exc.errors:
                print(error_line(name, error), file=sys.stderr)
            continue
        if not args.quiet:
            names = ", ".join(s.study.name for s in studies)
            print(f"{name}: valid ({names})")
    return 1 if failed else 0
