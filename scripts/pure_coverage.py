"""Report the pure modules' coverage by the unit tests; exit 1 when one is under 95%.

Run by ``scripts/test.sh`` after a pytest run with ``--cov``. The modules are the
``[tool.coverage.run] include`` patterns of pyproject.toml (issue 17: scheduler,
retry delays, ledger rules, ...); a module that matches and was never measured
counts as 0%.
"""

from __future__ import annotations

import sys
from pathlib import Path

import coverage

MINIMUM = 95.0


def main() -> int:
    """Print the report and the modules under MINIMUM; the exit status."""
    cov = coverage.Coverage()  # reads [tool.coverage] from pyproject.toml
    cov.load()
    patterns = cov.config.run_include or []
    modules = sorted({str(p.resolve()) for pattern in patterns for p in Path().glob(pattern)})
    modules = [m for m in modules if m.endswith(".py")]
    measured = set(cov.get_data().measured_files())
    if measured & set(modules):  # none: pytest stopped early; say which, not NoDataError
        cov.report(morfs=[m for m in modules if m in measured], show_missing=True)
    low = [f"{Path(m).relative_to(Path.cwd())}: not measured" for m in modules if m not in measured]
    for module in sorted(measured & set(modules)):
        _, statements, _, missing, _ = cov.analysis2(module)
        covered = len(statements) - len(missing)
        percent = 100.0 * covered / len(statements) if statements else 100.0
        if percent < MINIMUM:
            low.append(f"{Path(module).relative_to(Path.cwd())}: {percent:.1f}%")
    for line in low:
        print(f"under {MINIMUM:.0f}% coverage by the unit tests: {line}", file=sys.stderr)
    return 1 if low else 0


if __name__ == "__main__":
    sys.exit(main())
