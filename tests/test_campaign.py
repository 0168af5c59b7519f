"""Campaigns: durable per-record store, resume after real kills, watchdog, errors, summaries.

The kill test runs a campaign in a subprocess, SIGKILLs its worker processes mid-run, then
SIGTERMs the parent, resumes in this process and checks the result against an
uninterrupted run: same answers, every id exactly once, and the bytes written before the
kills kept as they were (so those queries were not redone). Worker functions live in
``campaign_workers.py`` so that worker processes can import them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import campaign_workers
import pytest

from exactverify import InvalidInputError
from exactverify.campaign import (
    FAILED_STATUSES,
    StoreError,
    TornRecordWarning,
    encode_record,
    load_results,
    query_id,
    repair_store,
    results_table,
    run_campaign,
    unknown_under,
)
from exactverify.campaign.store import ResultStore

WORKER = "campaign_workers:mixed"
TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
#: Ceiling on any wait for the subprocess campaign (loaded CI machines start torch slowly).
WAIT = 90.0
#: Fields that legitimately differ between two runs of the same query.
RUN_FIELDS = ("seconds", "worker_pid", "started", "finished", "attempts")
#: Real-engine queries on the fixed 2-4-3 network, with what an independent check says
#: (minimal linf distortions 0.084 at (0.5, 0.5), 0.130 at (0.2, 0.8), 0.483 at (0.9, 0.1)).
VERIFY_QUERIES = [
    ({"id": "verify-a", "kind": "verify", "x": [0.5, 0.5], "eps": 0.04, "time_limit": 30.0}, "robust"),
    ({"id": "verify-b", "kind": "verify", "x": [0.5, 0.5], "eps": 0.3, "time_limit": 30.0}, "not_robust"),
    ({"id": "verify-c", "kind": "verify", "x": [0.2, 0.8], "eps": 0.06, "time_limit": 30.0}, "robust"),
    ({"id": "verify-d", "kind": "verify", "x": [0.9, 0.1], "eps": 0.3, "time_limit": 30.0}, "robust"),
]


def kill_queries() -> list[dict]:
    toys = [{"id": f"toy{n:02d}", "kind": "toy", "n": n} for n in range(30)]
    for position, (query, _) in zip((3, 10, 20, 27), VERIFY_QUERIES, strict=True):
        toys.insert(position, query)
    return toys


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True) if path.exists() else []


def stable(record: dict) -> dict:
    return {key: value for key, value in record.items() if key not in RUN_FIELDS}


def timing_free(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if not k.endswith("_seconds")} for row in rows]


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_for(condition, what: str, timeout: float = WAIT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, dict]:
    """An uninterrupted run of the kill-test campaign, by id."""
    store = tmp_path_factory.mktemp("reference") / "store.jsonl"
    records = run_campaign(kill_queries(), WORKER, store, workers=2, progress=False)
    return {record["id"]: record for record in records}


def test_uninterrupted_run_is_right(reference):
    """The reference itself against independent answers: the toy formula and known verdicts."""
    for query in kill_queries():
        record = reference[query["id"]]
        assert record["query"] == query
        if query["kind"] == "toy":
            assert record["result"]["value"] == campaign_workers.toy_value(query)
    for query, expected in VERIFY_QUERIES:
        assert reference[query["id"]]["status"] == expected
        assert reference[query["id"]]["result"]["validated"] is (True if expected == "not_robust" else None)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find live processes")
@pytest.mark.parametrize("parent_signal", [
    signal.SIGTERM, pytest.param(signal.SIGKILL, marks=pytest.mark.slow)], ids=["SIGTERM", "SIGKILL"])
def test_kill_workers_and_parent_then_resume(tmp_path, reference, parent_signal):
    """THE KILL TEST: SIGKILL the workers mid-run, then SIGTERM (or SIGKILL) the parent, resume;
    nothing lost, nothing redone, nothing duplicated."""
    queries = kill_queries()
    store = tmp_path / "store.jsonl"
    (tmp_path / "queries.json").write_text(json.dumps(queries))
    script = ("import json, sys\nfrom exactverify.campaign import run_campaign\n"
              f"run_campaign(json.load(open({str(tmp_path / 'queries.json')!r})), {WORKER!r}, {str(store)!r}, "
              "workers=2, progress=False)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(REPO), os.environ.get("PYTHONPATH", "")])}
    parent = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: len(lines(store)) >= 6, "6 records from the subprocess campaign")
        # 1. SIGKILL every worker process that has answered so far (pids come from the records).
        before_kill = store.read_bytes()
        pids = {json.loads(line)["worker_pid"] for line in before_kill.splitlines()}
        killed = [pid for pid in pids if alive(pid)]
        for pid in killed:
            os.kill(pid, signal.SIGKILL)
        assert killed, "no live worker process to kill"
        # 2. The campaign goes on with fresh workers; then SIGTERM the parent mid-run.
        count = len(before_kill.splitlines())
        wait_for(lambda: len(lines(store)) >= count + 4, "records after the workers were killed")
        parent.send_signal(parent_signal)
        _, stderr = parent.communicate(timeout=WAIT)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
    if parent_signal == signal.SIGTERM:
        assert parent.returncode != 0 and "stopped by SIGTERM" in stderr, stderr
    else:
        assert parent.returncode == -signal.SIGKILL
    interrupted = store.read_bytes()
    interrupted = interrupted[:interrupted.rfind(b"\n") + 1]  # a SIGKILL may tear the last append
    interrupted_records = [json.loads(line) for line in interrupted.splitlines()]
    assert interrupted.startswith(before_kill)  # nothing written before the kills was touched
    assert count + 4 <= len(interrupted_records) < len(queries), "the SIGTERM did not land mid-run"
    assert all(record["status"] not in FAILED_STATUSES for record in interrupted_records)
    assert max(record["attempts"] for record in interrupted_records) == 2  # a SIGKILLed query was rerun
    all_pids = {record["worker_pid"] for record in interrupted_records}
    wait_for(lambda: not any(alive(pid) for pid in all_pids), "the worker processes to exit")

    # 3. Resume in a fresh run.
    records = run_campaign(queries, WORKER, store, workers=2, progress=False)
    final = store.read_bytes()
    assert final.startswith(interrupted)  # records finished before the kill are byte-identical
    stored = [json.loads(line) for line in final.splitlines()]
    ids = [record["id"] for record in stored]
    assert sorted(ids) == sorted(query_id(q) for q in queries)  # every id exactly once
    assert len(stored) - len(interrupted_records) == len(queries) - len(interrupted_records)  # none redone
    assert [record["id"] for record in records] == [q["id"] for q in queries]  # query order
    assert [stable(r) for r in records] == [stable(reference[q["id"]]) for q in queries]
    assert timing_free(results_table(records, by=["kind"])) == \
        timing_free(results_table(reference.values(), by=["kind"]))
    assert load_results(store) == stored


def test_stack_dump_signal_shows_where_parent_and_worker_are(tmp_path):
    """``kill -USR1`` on a campaign's parent and on its busy worker prints both stacks and
    stops neither (the worker's sleeping query is in its stack)."""
    pidfile = tmp_path / "worker.pid"
    queries = [{"id": "stuck", "kind": "sleep", "sleep": 60.0, "pidfile": str(pidfile)}]
    (tmp_path / "queries.json").write_text(json.dumps(queries))
    script = ("import json\nfrom exactverify.campaign import run_campaign\n"
              f"run_campaign(json.load(open({str(tmp_path / 'queries.json')!r})), {WORKER!r}, "
              f"{str(tmp_path / 'store.jsonl')!r}, workers=1, progress=False)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(REPO), os.environ.get("PYTHONPATH", "")])}
    parent = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), "the worker to start the query")
        worker = int(pidfile.read_text())
        os.kill(worker, signal.SIGUSR1)
        time.sleep(0.5)
        os.kill(parent.pid, signal.SIGUSR1)
        time.sleep(0.5)
        assert parent.poll() is None and alive(worker)  # a dump stops nothing
        parent.send_signal(signal.SIGTERM)
        _, stderr = parent.communicate(timeout=WAIT)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
    assert "in mixed" in stderr and "campaign_workers.py" in stderr, stderr  # the worker's stack
    assert "in run_campaign" in stderr and "runner.py" in stderr, stderr  # the parent's stack


def test_torn_last_line_is_ignored_and_repaired(tmp_path):
    queries = [{"id": f"t{n}", "kind": "toy", "n": n} for n in (0, 3, 6, 9)]
    store = tmp_path / "store.jsonl"
    run_campaign(queries[:3], WORKER, store, progress=False)
    intact = store.read_bytes()
    torn = encode_record({"id": "t9", "status": "optimal", "result": {"value": 1}})[:25]
    store.write_bytes(intact + torn)  # a crash in the middle of appending t9
    with pytest.warns(TornRecordWarning, match="torn last line"):
        # the store is in completion order, which parallel workers do not fix
        assert sorted(r["id"] for r in load_results(store)) == ["t0", "t3", "t6"]
    assert store.read_bytes() == intact + torn  # loading never writes
    records = run_campaign(queries, WORKER, store, progress=False)  # repairs, then runs t9
    final = store.read_bytes()
    assert final.startswith(intact)
    assert [json.loads(line)["id"] for line in final.splitlines()][3:] == ["t9"]
    assert records[3]["result"]["value"] == campaign_workers.toy_value(queries[3])
    # A torn line that kept its newline (e.g. zero-filled after a power cut) is repaired too.
    store.write_bytes(final + b"\x00\x00\x00\n")
    assert repair_store(store) == 4 and store.read_bytes() == final
    assert repair_store(store) == 0
    # Damage anywhere but the last line is not guessed at.
    store.write_bytes(b"garbage\n" + final)
    with pytest.raises(StoreError, match="line 1 is not a valid record"):
        load_results(store)


def test_hard_timeout_kills_and_campaign_continues(tmp_path):
    store = tmp_path / "store.jsonl"
    queries = [{"id": "slow", "kind": "sleep", "sleep": 60}] + [{"id": f"t{n}", "kind": "toy", "n": n}
                                                                  for n in range(3)]
    tick = time.monotonic()
    records = run_campaign(queries, WORKER, store, time_limit=0.2, hard_timeout_factor=1.5,
                           hard_timeout_grace=0.3, progress=False)
    assert time.monotonic() - tick < 30
    slow = records[0]
    assert slow["status"] == "killed" and slow["result"] is None and "hard timeout of 0.6 s" in slow["error"]
    assert 0.6 <= slow["seconds"] < 5 and slow["time_limit"] == 0.2
    assert not alive(slow["worker_pid"])
    assert [r["status"] for r in records[1:]] == ["unknown", "optimal", "optimal"]
    assert [r["result"]["value"] for r in records[1:]] == [campaign_workers.toy_value(q) for q in queries[1:]]
    # Resuming keeps the killed record; retry_failed runs it again (and stores it once).
    before = store.read_bytes()
    run_campaign(queries, WORKER, store, time_limit=0.2, progress=False)
    assert store.read_bytes() == before
    again = run_campaign(queries, WORKER, store, time_limit=0.2, hard_timeout_factor=1.0,
                         hard_timeout_grace=0.2, retry_failed=True, progress=False)
    assert again[0]["status"] == "killed" and "hard timeout of 0.4 s" in again[0]["error"]
    after = lines(store)
    assert [json.loads(line)["id"] for line in after][-1] == "slow"
    assert sorted(after[:-1]) == sorted(line for line in before.splitlines(keepends=True) if b'"slow"' not in line)


def test_errors_and_crashes_are_recorded(tmp_path):
    store = tmp_path / "store.jsonl"
    queries = [{"id": "bad", "kind": "raise", "n": 7}, {"id": "die", "kind": "die"},
               {"id": "list", "kind": "not_dict"}, {"id": "ok", "kind": "toy", "n": 3}]
    records = {r["id"]: r for r in run_campaign(queries, WORKER, store, crash_retries=1, progress=False)}
    assert records["bad"]["status"] == "error" and records["bad"]["error"] == "ValueError: bad query 7"
    assert records["bad"]["result"] is None and any("campaign_workers.py" in t for t in records["bad"]["traceback"])
    assert records["die"]["status"] == "crashed" and records["die"]["attempts"] == 2
    assert "killed by signal SIGKILL" in records["die"]["error"]
    assert records["list"]["status"] == "error" and "must return a dict" in records["list"]["error"]
    assert records["ok"]["status"] == "optimal"


def test_argument_and_store_errors(tmp_path):
    store = tmp_path / "store.jsonl"
    with pytest.raises(InvalidInputError, match=r"queries\[1\] and queries\[0\] have the same id 'a'"):
        run_campaign([{"id": "a"}, {"id": "a"}], WORKER, store)
    with pytest.raises(InvalidInputError, match="worker must be importable"):
        run_campaign([{"id": "a"}], lambda q: q, store)
    with pytest.raises(InvalidInputError, match="cannot be imported"):
        run_campaign([{"id": "a"}], "campaign_workers:nope", store)
    with pytest.raises(InvalidInputError, match="workers must be a positive int"):
        run_campaign([{"id": "a"}], WORKER, store, workers=0)
    with pytest.raises(InvalidInputError, match="time_limit must be"):
        run_campaign([{"id": "a"}], WORKER, store, time_limit=-1)
    with pytest.raises(InvalidInputError, match=r"queries\[0\] is not JSON serialisable"):
        run_campaign([{"id": "a", "f": object()}], WORKER, store)
    run_campaign([{"id": "a", "kind": "toy", "n": 0}], WORKER, store, progress=False)
    with pytest.raises(InvalidInputError, match="'a' is stored with other parameters"):
        run_campaign([{"id": "a", "kind": "toy", "n": 1}], WORKER, store, progress=False)
    with pytest.raises(StoreError, match="is a directory; give a .jsonl file path"):
        ResultStore(tmp_path)
    with ResultStore(store), pytest.raises(StoreError, match="in use by another campaign"):
        run_campaign([{"id": "b", "kind": "toy", "n": 0}], WORKER, store, progress=False)
    assert query_id({"n": 1, "m": 2}) == query_id({"m": 2, "n": 1}) != query_id({"n": 2, "m": 2})


def test_results_table_counts_and_times():
    records = [
        {"id": "1", "status": "optimal", "seconds": 1.0, "query": {"method": "direct", "norm": "linf"}},
        {"id": "2", "status": "unknown", "seconds": 3.0, "query": {"method": "direct", "norm": "l1"}},
        {"id": "3", "status": "optimal", "seconds": 2.0, "query": {"method": "direct", "norm": "linf"}},
        {"id": "4", "status": "killed", "seconds": 10.0, "query": {"method": "bisection", "norm": "linf"}},
        {"id": "5", "status": "optimal", "seconds": 6.0, "query": {"method": "direct", "norm": "linf"}},
    ]
    rows = results_table(records, by=["method"])
    assert rows == [
        {"method": "bisection", "count": 1, "n_killed": 1, "n_optimal": 0, "n_unknown": 0,
         "mean_seconds": 10.0, "median_seconds": 10.0},
        {"method": "direct", "count": 4, "n_killed": 0, "n_optimal": 3, "n_unknown": 1,
         "mean_seconds": 3.0, "median_seconds": 2.5},
    ]
    overall = results_table(records)
    assert overall[0]["count"] == 5 and overall[0]["median_seconds"] == 3.0
    by_two = results_table(records, by=("method", "norm"))
    assert [(r["method"], r["norm"], r["count"]) for r in by_two] == [
        ("bisection", "linf", 1), ("direct", "l1", 1), ("direct", "linf", 3)]


def test_command_line_run_and_summary(tmp_path, capsys):
    import argparse

    from exactverify.campaign.cli import add_campaign_parser, handle_campaign
    from exactverify.campaign.tasks import verify as verify_task

    parser = argparse.ArgumentParser()
    add_campaign_parser(parser.add_subparsers(dest="command"))
    queries, store = tmp_path / "queries.jsonl", tmp_path / "store.jsonl"
    queries.write_text("\n".join(json.dumps({"id": f"t{n}", "kind": "toy", "n": n}) for n in (0, 1, 4)) + "\n")
    argv = ["campaign", "run", str(queries), "--store", str(store), "--worker", WORKER, "--by", "status", "--quiet"]
    assert handle_campaign(parser.parse_args(argv)) == 0
    assert "optimal      1          1" in capsys.readouterr().out
    assert handle_campaign(parser.parse_args(["campaign", "summary", str(store), "--json"])) == 0
    assert json.loads(capsys.readouterr().out)[0]["n_unknown"] == 2
    with pytest.raises(InvalidInputError, match="--extend-unknown needs --time-limit"):
        handle_campaign(parser.parse_args(argv + ["--extend-unknown"]))
    # Stored without a limit: nothing is "unknown under a shorter limit", so nothing reruns.
    before = store.read_bytes()
    assert handle_campaign(parser.parse_args(argv + ["--extend-unknown", "--time-limit", "5"])) == 0
    assert store.read_bytes() == before
    timed = tmp_path / "timed.jsonl"
    argv[argv.index(str(store))] = str(timed)
    assert handle_campaign(parser.parse_args(argv + ["--time-limit", "1"])) == 0
    assert handle_campaign(parser.parse_args(argv + ["--extend-unknown", "--time-limit", "5"])) == 0
    limits = {r["id"]: (r["status"], r["time_limit"]) for r in load_results(timed)}
    assert limits == {"t0": ("unknown", 5.0), "t1": ("optimal", 1.0), "t4": ("unknown", 5.0)}
    # Same limit, more threads: the unknown ones run again, with the threads as run options.
    assert handle_campaign(parser.parse_args(argv + ["--extend-unknown", "--time-limit", "5", "--threads", "2"])) == 0
    options = {r["id"]: r.get("run_options") for r in load_results(timed)}
    assert options == {"t0": {"threads": 2}, "t1": None, "t4": {"threads": 2}}
    with pytest.raises(InvalidInputError, match="threads"):  # refused before any query runs
        handle_campaign(parser.parse_args(argv + ["--threads", "0"]))
    with pytest.raises(InvalidInputError, match="needs 'model'"):
        verify_task({"eps": 0.1})


def test_rerun_replaces_selected_records_and_keeps_the_rest(tmp_path):
    store = tmp_path / "store.jsonl"
    queries = [{"id": f"t{n}", "kind": "toy", "n": n} for n in range(8)]
    first = run_campaign(queries, WORKER, store, time_limit=1.0, progress=False)
    unended = {r["id"] for r in first if r["status"] == "unknown"}
    assert unended == {"t0", "t4"}  # toy: n % 4 == 0 ends "unknown"
    before = {json.loads(line)["id"]: line for line in lines(store)}

    longer = unknown_under(2.0)
    assert not longer({"status": "unknown", "time_limit": 2.0}) and not longer({"status": "killed", "time_limit": 1})
    again = run_campaign(queries, WORKER, store, time_limit=2.0, rerun=longer, progress=False)
    after = {json.loads(line)["id"]: line for line in lines(store)}
    assert len(lines(store)) == len(queries) and set(after) == {q["id"] for q in queries}
    assert all(after[key] == before[key] for key in after if key not in unended)
    assert all(after[key] != before[key] for key in unended)
    assert {r["id"]: r["time_limit"] for r in again} == {q["id"]: 2.0 if q["id"] in unended else 1.0 for q in queries}
    # The predicate is false for the new records: a resume changes nothing.
    snapshot = store.read_bytes()
    run_campaign(queries, WORKER, store, time_limit=2.0, rerun=longer, progress=False)
    assert store.read_bytes() == snapshot


def test_run_options_reach_the_worker_and_pick_reruns(tmp_path):
    store = tmp_path / "store.jsonl"
    queries = [{"id": f"t{n}", "kind": "toy", "n": n} for n in range(6)]
    first = run_campaign(queries, WORKER, store, time_limit=1.0, progress=False)
    assert all("run_options" not in r and "threads" not in r["result"] for r in first)
    before = {json.loads(line)["id"]: line for line in lines(store)}
    options = {"threads": 2}
    picks = unknown_under(1.0, options)
    assert not picks({"status": "unknown", "time_limit": 1.0, "run_options": {"threads": 2}})
    again = run_campaign(queries, WORKER, store, time_limit=1.0, run_options=options, rerun=picks, progress=False)
    by_id = {r["id"]: r for r in again}
    for key in ("t0", "t4"):  # the unknown ones, run again with the options
        assert by_id[key]["run_options"] == options and by_id[key]["result"]["threads"] == 2
        assert by_id[key]["query"] == queries[int(key[1:])], "run options are not part of the query"
    after = {json.loads(line)["id"]: line for line in lines(store)}
    assert all(after[key] == before[key] for key in after if key not in ("t0", "t4"))
    snapshot = store.read_bytes()
    run_campaign(queries, WORKER, store, time_limit=1.0, run_options=options, rerun=picks, progress=False)
    assert store.read_bytes() == snapshot
    for bad in ({"time_limit": 3}, ["threads"], {"threads": object()}):
        with pytest.raises(InvalidInputError, match="run_options"):
            run_campaign(queries, WORKER, store, run_options=bad, progress=False)


def test_replace_is_atomic_and_needs_a_stored_id(tmp_path):
    store = tmp_path / "store.jsonl"
    with ResultStore(store) as opened:
        opened.append({"id": "a", "value": 1})
        opened.append({"id": "b", "value": 2})
        opened.replace({"id": "a", "value": 3})
        with pytest.raises(StoreError, match="'c' is not stored"):
            opened.replace({"id": "c", "value": 4})
        opened.append({"id": "c", "value": 5})
    assert [(r["id"], r["value"]) for r in load_results(store)] == [("b", 2), ("a", 3), ("c", 5)]
    assert not (tmp_path / "store.jsonl.tmp").exists()


def test_command_line_refuses_missing_queries_and_stores(tmp_path, capsys):
    from exactverify.cli import main

    store = tmp_path / "store.jsonl"
    assert main(["campaign", "run", str(tmp_path / "missing.jsonl"), "--store", str(store), "--quiet"]) == 2
    assert f"queries file {str(tmp_path / 'missing.jsonl')!r} does not exist" in capsys.readouterr().err
    assert main(["campaign", "summary", str(tmp_path / "missing_store.jsonl")]) == 2  # was "(no records)", 0
    assert f"store {str(tmp_path / 'missing_store.jsonl')!r} does not exist" in capsys.readouterr().err


def test_command_line_refuses_unknown_query_keys_before_running(tmp_path, capsys):
    from exactverify.campaign.tasks import distortion as distortion_task
    from exactverify.cli import main

    store = tmp_path / "store.jsonl"
    # a misspelled "target" used to run an untargeted query and store it as optimal
    queries = tmp_path / "typo.jsonl"
    queries.write_text(json.dumps({"id": "typo", "model": "digits", "digits_index": 0, "tagret": 1}) + "\n")
    assert main(["campaign", "run", str(queries), "--store", str(store), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "query 1 of" in err and "unknown key(s) 'tagret' for a distortion query" in err
    assert "valid keys: id, model, x, digits_index" in err and "target" in err
    assert not store.exists()  # refused before anything ran
    with pytest.raises(InvalidInputError, match="unknown key.*'eps'"):
        distortion_task({"model": "digits", "digits_index": 0, "eps": 0.1})
    with pytest.raises(InvalidInputError, match=r"'digits_index' must be an int in 0\.\.359, got -1"):
        distortion_task({"model": "digits", "digits_index": -1})
