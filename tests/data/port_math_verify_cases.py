"""Regenerates math_verify_cases.jsonl from math-verify's published test suite.

    pip download math-verify==0.9.0 --no-binary :all: --no-deps
    tar xzf math_verify-0.9.0.tar.gz
    python tests/data/port_math_verify_cases.py math_verify-0.9.0 \
        > tests/data/math_verify_cases.jsonl

(Provenance and licence: tests/data/README.md.)

It imports the suite's test modules (math-verify must be installed) and reads the
gold/prediction/expected triples off their `pytest.mark.parametrize` marks, so the port is
the suite's own values, not a copy by hand. Each row keeps the options its test compared with
(match types, float rounding, strict, set-relation comparison): ponder runs one fixed
configuration, and a case whose verdict hangs on another option is not a fair test of it.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

LATEX_EXPR = ["latex", "expr"]
# The options each test function passes to the suite's compare_strings helper (read from its
# body); an argument named in the parametrize list overrides them per case.
SETTINGS: dict[str, dict[str, Any]] = {
    "test_all.test_number_extraction": {"match_types": ["expr"]},
    "test_all.test_simple_fraction_notation": {},
    "test_all.test_sets_handling": {},
    "test_all.test_latex_notation": {"match_types": ["latex"]},
    "test_all.test_percent_notation": {},
    "test_all.test_latex_notation_math": {"match_types": ["latex"]},
    "test_all.test_relations_math": {"match_types": ["latex"]},
    "test_all.test_matrix_extraction": {"match_types": ["latex"]},
    "test_all.test_complex_math_expressions": {},
    "test_all.test_math_extraction_edge_cases": {},
    "test_all.test_math_extraction_additional_cases": {},
    "test_all.test_set_rel_assymetry": {"match_types": ["latex"]},
    "test_all.test_float_precision": {"precision": 5},
    "test_all.test_sqrt_precision": {"precision": 5},
    "test_all.test_symbols": {"precision": 5},
    "test_boxed.test_boxed": {},
    "test_numina_cases.test_numina_cases": {},
    "test_open_thoughts.test_open_thoughts": {},
    "test_strict.test_strict_variable_comparison": {},
    # parse()/verify() with their defaults: latex (boxed priority 55) + expr, rounding 6
    "test_yujianll.test_string_extraction": {"boxed_match_priority": 55},
}
# test_all.test_precision is not parametrized; its one compare_strings call:
EXTRA = [("test_all.test_precision", "$\\frac{1}{3}$", "0.3333$", 1, {"precision": 4})]
ARG_NAMES = {"pred": "pred", "gold": "gold", "expected": "expected", "result": "expected"}


def cases(root: Path) -> list[dict[str, Any]]:
    sys.path.insert(0, str(root))
    rows: list[dict[str, Any]] = []
    for key, fixed in SETTINGS.items():
        module_name, function_name = key.split(".")
        function = getattr(importlib.import_module(f"tests.{module_name}"), function_name)
        for mark in function.pytestmark:
            if mark.name != "parametrize":
                continue
            names = [n.strip() for n in mark.args[0].split(",")]
            for values in mark.args[1]:
                case = dict(zip(names, values, strict=True))
                options = {"match_types": LATEX_EXPR, "precision": 6, "strict": True,
                           "allow_set_relation_comp": False, **fixed}
                options.update({k: v for k, v in case.items() if k in options})
                rows.append({"source": key, "gold": case["gold"], "pred": case["pred"],
                             "expected": int(case.get("expected", case.get("result"))),
                             "options": options})
    for key, gold, pred, expected, fixed in EXTRA:
        options = {"match_types": LATEX_EXPR, "precision": 6, "strict": True,
                   "allow_set_relation_comp": False, **fixed}
        rows.append({"source": key, "gold": gold, "pred": pred, "expected": expected,
                     "options": options})
    return rows


if __name__ == "__main__":
    for number, row in enumerate(cases(Path(sys.argv[1]).resolve())):
        print(json.dumps({"id": number, **row}, ensure_ascii=False))
