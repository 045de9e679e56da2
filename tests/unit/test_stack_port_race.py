"""`titus-flow up` starts the dev server again when it loses a race for a port it picked itself."""

from __future__ import annotations

from pathlib import Path

from titus_flow.stack import lost_a_port_race

HTTP_RACE = (
    "Error: unable to start server: failed listening for HTTP API on 127.0.0.1:45325:"
    " listen tcp 127.0.0.1:45325: bind: address already in use"
)


def _log(tmp_path: Path, *lines: str) -> Path:
    log = tmp_path / "temporal.log"
    log.write_text("\n".join(lines) + "\n")
    return log


def test_a_port_the_server_picked_itself_is_a_race_to_retry(tmp_path: Path) -> None:
    log = _log(tmp_path, "--- 2026-12-01T04:20:00+0000 temporal server start-dev", HTTP_RACE)
    assert lost_a_port_race(log, (44325, 45325 - 2))


def test_a_port_we_chose_is_not_retried(tmp_path: Path) -> None:
    log = _log(tmp_path, "--- start", HTTP_RACE)
    assert not lost_a_port_race(log, (45325,))


def test_only_the_last_start_counts(tmp_path: Path) -> None:
    log = _log(tmp_path, "--- first start", HTTP_RACE, "--- second start", "some other failure")
    assert not lost_a_port_race(log, (44325,))
    assert not lost_a_port_race(tmp_path / "missing.log", (44325,))
