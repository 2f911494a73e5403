"""Fail unless ``pyright --verifytypes sanschat`` scores at least the given percentage.

Usage: ``python .ci/verifytypes.py 98`` (run where pyright and sanschat are installed).
pyright exits non-zero whenever the score is below 100%, so the score itself is read from
its JSON report; the symbols it found wanting are printed either way.
"""

from __future__ import annotations

import json
import subprocess
import sys


def main(argv: list[str]) -> int:
    minimum = float(argv[1]) if len(argv) > 1 else 98.0
    command = [sys.executable, "-m", "pyright", "--verifytypes", "sanschat", "--ignoreexternal"]
    result = subprocess.run([*command, "--outputjson"], capture_output=True, text=True)
    try:
        report = json.loads(result.stdout)["typeCompleteness"]
    except (json.JSONDecodeError, KeyError):
        print(result.stdout, result.stderr, sep="\n")
        print("FAIL: pyright --verifytypes gave no report")
        return 1
    for symbol in report["symbols"]:
        for diagnostic in symbol["diagnostics"]:
            if diagnostic["severity"] == "error":
                print(f"  {symbol['name']}: {diagnostic['message']}")
    score = 100.0 * report["completenessScore"]
    verdict = "ok" if score >= minimum else "FAIL"
    print(f"{verdict}: pyright --verifytypes sanschat: {score:.1f}% (minimum {minimum:g}%)")
    return 0 if score >= minimum else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
