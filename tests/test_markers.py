"""The ``slow`` marker is kept honest: a collected test that starts a process, itself or through any fixture it
uses, must carry it, so ``python -m pytest -m "not slow"`` stays the fast edit loop (README "Tests").

It checks the tests collected with it: run with the whole suite or the fast loop, it covers every file."""

import inspect
import re

import pytest

# a DataLoader with workers (num_workers=N > 0 in code or an override) forks a process per worker too
STARTS_A_PROCESS = re.compile(r"subprocess\.(run|Popen|call|check_output)|ddp_spawn|multiprocessing|num_workers=[1-9]")


def sources(item: pytest.Item) -> list[tuple[str, str]]:
    """(name, source) of the test function and of every fixture in its closure defined in this project's tests."""
    found = [(item.name, inspect.getsource(item.function))]
    for name, defs in item._fixtureinfo.name2fixturedefs.items():
        for d in defs:
            if "/tests/" in str(inspect.getsourcefile(d.func)):  # not pytest's own (tmp_path, capsys, ...)
                found.append((f"fixture {name}", inspect.getsource(d.func)))
    return found


def test_every_test_that_starts_a_process_is_marked_slow(request):
    unmarked = []
    for item in request.session.items:
        if not isinstance(item, pytest.Function) or item.get_closest_marker("slow"):
            continue
        why = [name for name, src in sources(item) if STARTS_A_PROCESS.search(src)]
        if why:
            unmarked.append(f"{item.nodeid} (via {', '.join(why)})")
    assert not unmarked, "start a process but lack @pytest.mark.slow:\n" + "\n".join(unmarked)
