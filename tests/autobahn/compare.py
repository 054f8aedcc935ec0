#!/usr/bin/env python3
"""Check an Autobahn|Testsuite report and diff it against the committed expectations.

    compare.py [--role server|client] [--agent NAME] [--expected FILE]
               [--cases PATTERNS] [--exclude PATTERNS] [--write-expected] REPORT

REPORT is the wstest outdir (or its index.json). A case passes when both
`behavior` and `behaviorClose` are OK or INFORMATIONAL (anything else --
NON-STRICT, FAILED, UNIMPLEMENTED, WRONG CODE, UNCLEAN, ... -- fails) *and*
it matches tests/autobahn/expected-<role>.json. A selected case that is in the
expected file but not in the report ("missing"), or in the report but not in
the expected file ("extra"), also fails. Cases left out by AUTOBAHN_CASES /
AUTOBAHN_EXCLUDE (or --cases/--exclude) are not counted as missing.

Only problem cases are printed, then one final line `N passed, M failed`.
Exit status: 0 when M == 0, 1 otherwise, 2 on a usage/report error.

--write-expected updates the expected file from this run (entries for cases
outside this run's selection are kept) and then judges only the pass criteria.
"""

import argparse
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PASSING = ("OK", "INFORMATIONAL")


def case_key(case_id):
    return tuple(int(x) for x in case_id.split("."))


def patterns(value):
    return [p for p in re.split(r"[\s,]+", value or "") if p]


def resolve(pats, universe):
    """Same matching as autobahntestsuite's CaseSet.resolveCasePatternList."""
    out = set()
    for pat in pats:
        if "*" in pat:
            rx = re.compile(pat.replace(".", r"\.").replace("*", ".*"))
            out.update(c for c in universe if rx.match(c))
        else:
            out.add(pat)
    return out


def shown(path):
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def fail(msg):
    print("compare.py: ERROR: " + msg, file=sys.stderr)
    sys.exit(2)


def load_report(path, agent):
    index = os.path.join(path, "index.json") if os.path.isdir(path) else path
    if not os.path.isfile(index):
        fail("no report at %s (did the run produce reports?)" % index)
    with open(index) as f:
        data = json.load(f)
    if agent is None or agent not in data:
        if agent is not None and len(data) != 1:
            fail("agent %r not in report (agents: %s)" % (agent, ", ".join(sorted(data)) or "none"))
        if len(data) != 1:
            fail("report has agents %s; pick one with --agent" % ", ".join(sorted(data)))
        agent = next(iter(data))
    return os.path.dirname(index), agent, data[agent]


def case_details(report_dir, entry):
    """Result text from the per-case JSON report, if present."""
    name = entry.get("reportfile")
    if not name:
        return ""
    try:
        with open(os.path.join(report_dir, name)) as f:
            case = json.load(f)
    except (OSError, ValueError):
        return ""
    bits = []
    if case.get("description"):
        bits.append("desc: " + " ".join(case["description"].split("<")[0].split())[:140])
    if case.get("result"):
        bits.append("result: " + str(case["result"])[:200])
    if case.get("resultClose"):
        bits.append("close: " + str(case["resultClose"])[:200])
    return "".join("\n      " + b for b in bits)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("report", help="wstest outdir or its index.json")
    ap.add_argument("--role", choices=("server", "client"), help="selects expected-<role>.json")
    ap.add_argument("--expected", help="expected-results file (default: expected-<role>.json next to this script)")
    ap.add_argument("--agent", help="agent in the report (default: the only one)")
    ap.add_argument("--cases", default=os.environ.get("AUTOBAHN_CASES") or "*", help="selected case patterns (default: $AUTOBAHN_CASES or *)")
    ap.add_argument("--exclude", default=os.environ.get("AUTOBAHN_EXCLUDE", ""), help="excluded case patterns (default: $AUTOBAHN_EXCLUDE)")
    ap.add_argument("--write-expected", action="store_true", help="write the expected file from this run")
    args = ap.parse_args()

    if args.expected is None:
        if args.role is None:
            ap.error("give --role or --expected")
        args.expected = os.path.join(HERE, "expected-%s.json" % args.role)

    report_dir, agent, results = load_report(args.report, args.agent)
    actual = {cid: {"behavior": r.get("behavior"), "behaviorClose": r.get("behaviorClose")} for cid, r in results.items()}

    expected = None
    if os.path.isfile(args.expected):
        with open(args.expected) as f:
            expected = json.load(f)

    universe = set(actual) | set(expected or {})
    selected = resolve(patterns(args.cases) or ["*"], universe) - resolve(patterns(args.exclude), universe)

    if args.write_expected:
        merged = {k: v for k, v in (expected or {}).items() if k not in selected}
        merged.update(actual)
        with open(args.expected, "w") as f:
            json.dump({k: merged[k] for k in sorted(merged, key=case_key)}, f, indent=1)
            f.write("\n")
        print("wrote %s (%d cases, %d from this run)" % (shown(args.expected), len(merged), len(actual)))
        expected = merged

    problems = {}  # case id -> list of reasons

    for cid, res in actual.items():
        if res["behavior"] not in PASSING or res["behaviorClose"] not in PASSING:
            problems.setdefault(cid, []).append("behavior=%s behaviorClose=%s" % (res["behavior"], res["behaviorClose"]))
        exp = (expected or {}).get(cid)
        if exp is None:
            problems.setdefault(cid, []).append("extra: not in %s" % os.path.basename(args.expected))
        elif exp.get("behavior") != res["behavior"] or exp.get("behaviorClose") != res["behaviorClose"]:
            problems.setdefault(cid, []).append(
                "differs from expected (expected behavior=%s behaviorClose=%s)" % (exp.get("behavior"), exp.get("behaviorClose"))
            )

    missing = []
    if expected is not None:
        missing = [cid for cid in expected if cid in selected and cid not in actual]
        for cid in missing:
            problems.setdefault(cid, []).append("missing: expected %s/%s but the case did not run" % (expected[cid].get("behavior"), expected[cid].get("behaviorClose")))

    for cid in sorted(problems, key=case_key):
        if expected is None and len(problems[cid]) == 1 and problems[cid][0].startswith("extra:"):
            continue  # summarised by the NOTE below instead of one line per case
        entry = results.get(cid, {})
        extra = ""
        if entry:
            extra = " (remoteCloseCode=%s, %sms)" % (entry.get("remoteCloseCode"), entry.get("duration"))
        print("FAIL %s: %s%s%s" % (cid, "; ".join(problems[cid]), extra, case_details(report_dir, entry) if entry else ""))

    informational = sorted((c for c, r in actual.items() if "INFORMATIONAL" in (r["behavior"], r["behaviorClose"])), key=case_key)
    print("agent %s: %d cases ran, %d selected cases expected, %d informational%s" % (
        agent, len(actual), len([c for c in (expected or {}) if c in selected]), len(informational),
        (" (" + ", ".join(informational[:12]) + (" ..." if len(informational) > 12 else "") + ")") if informational else ""))
    if expected is None:
        print("NOTE: %s does not exist, so every case counts as extra; review the run, then create it with "
              "`python3 tests/autobahn/compare.py --role %s --write-expected %s` "
              "(or AUTOBAHN_UPDATE_EXPECTED=1 tests/autobahn/run.sh %s)" % (
                  shown(args.expected), args.role or "ROLE", shown(report_dir), args.role or "ROLE"))

    failed = len(problems)
    passed = len(actual) - len([c for c in problems if c in actual])
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
