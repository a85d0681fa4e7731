"""Every dashboard page against a real control plane (gRPC on a free port, real Postgres and Redis,
a worker process), driven with Streamlit's ``AppTest``.

Seeded once per module: a successful execution, a failed one, one with 201 task runs (ForEach over
200 values), a paused one, and 30 quick ones to page through. The pages reach the control plane
only through ``KESTREL_SERVER``, as a deployed dashboard does.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboard.rpc import TRIGGER_LISTINGS, WORKER_LISTINGS, first_rpc
from tests.integration.harness import ServerThread, wait_until, worker_process
from worker_sdk.client import KestrelClient
from worker_sdk.types import Execution, State

# A whole stack, 200 ForEach iterations and a browser (or AppTest) on a 2-core machine shared with
# other work: allow more than pytest's 300 s default.
pytestmark = pytest.mark.timeout(900)
APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")
NS = "dash.team"

HELLO = """
id: hello
namespace: dash.team
description: Greets someone.
inputs:
  - {id: user, type: STRING, defaults: World}
tasks:
  - {id: greet, type: io.kestra.plugin.core.log.Log, message: "Hello {{ inputs.user }}"}
  - {id: shout, type: io.kestra.plugin.core.debug.Return, format: "{{ inputs.user | upper }}"}
"""
HELLO_V2 = HELLO.replace("Greets someone.", "Greets someone, twice.") + (
    '  - {id: again, type: io.kestra.plugin.core.log.Log, message: "Bye {{ inputs.user }}"}\n'
)
BROKEN = """
id: broken
namespace: dash.team
tasks:
  - {id: start, type: io.kestra.plugin.core.log.Log, message: "about to fail"}
  - {id: boom, type: io.kestra.plugin.core.execution.Fail, errorMessage: "the boom task failed on purpose"}
"""
LOOP = """
id: loop
namespace: dash
tasks:
  - id: each
    type: io.kestra.plugin.core.flow.ForEach
    values: {values}
    concurrencyLimit: 0
    tasks:
      - {{id: ret, type: io.kestra.plugin.core.debug.Return, format: "{{{{ taskrun.value }}}}"}}
"""
APPROVAL = """
id: approval
namespace: dash.team
tasks:
  - {id: before, type: io.kestra.plugin.core.log.Log, message: "waiting for approval"}
  - id: gate
    type: io.kestra.plugin.core.flow.Pause
    onResume:
      - {id: approved, type: BOOLEAN}
      - {id: reason, type: STRING, defaults: none given}
  - {id: after, type: io.kestra.plugin.core.log.Log, message: "approved={{ outputs.gate.onResume.approved }}"}
"""
SLOW = """
id: slow
namespace: dash.team
tasks:
  - {id: nap, type: io.kestra.plugin.core.flow.Sleep, duration: PT60S}
"""
TYPED = """
id: typed
namespace: dash.forms
inputs:
  - {id: name, type: STRING}
  - {id: count, type: INT, min: 1}
  - {id: mode, type: SELECT, values: [fast, careful], defaults: fast}
  - {id: dry, type: BOOLEAN, defaults: false}
tasks:
  - {id: show, type: io.kestra.plugin.core.log.Log, message: "{{ inputs.name }} x{{ inputs.count }} {{ inputs.mode }}"}
triggers:
  - {id: nightly, type: io.kestra.plugin.core.trigger.Schedule, cron: "0 2 * * *"}
"""


@dataclass
class Seeded:
    """The control plane and the executions the tests read."""

    address: str
    client: KestrelClient
    ok: Execution
    failed: Execution
    loop: Execution
    paused: Execution
    quick: list[str]


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    """A control plane on a database of its own: the pages count everything stored, so other
    modules' executions must not be there."""
    from tests.conftest import fresh_database_url
    from tests.integration.harness import test_settings

    for url in fresh_database_url():
        srv = ServerThread(test_settings(url)).start()
        try:
            yield srv
        finally:
            srv.stop()


@pytest.fixture(scope="module")
def seeded(server: ServerThread) -> Iterator[Seeded]:
    old = os.environ.get("KESTREL_SERVER")
    os.environ["KESTREL_SERVER"] = server.address
    with worker_process(server.address, concurrency=8), KestrelClient(server.address) as client:
        for source in (HELLO, HELLO_V2, BROKEN, APPROVAL, SLOW, TYPED):
            client.deploy_flow(source)
        client.deploy_flow(LOOP.format(values=json.dumps([f"v{i:03d}" for i in range(200)])))
        loop = client.start_execution("dash", "loop")
        ok = client.start_execution(NS, "hello", inputs={"user": "Ada"}, labels={"team": "data"}, revision=1)
        failed = client.start_execution(NS, "broken")
        paused = client.start_execution(NS, "approval")
        quick = [client.start_execution(NS, "hello", inputs={"user": f"u{i}"}).id for i in range(30)]
        ok = client.wait_execution(ok.id, 60)
        failed = client.wait_execution(failed.id, 60)
        for qid in quick:
            client.wait_execution(qid, 120)
        paused = wait_until(
            lambda: (e := client.get_execution(paused.id)).state.current is State.PAUSED and e,
            60,
            what="the approval execution to pause",
        )
        loop = client.wait_execution(loop.id, 240)
        assert (ok.state.current, failed.state.current, loop.state.current) == (
            "SUCCESS",
            "FAILED",
            "SUCCESS",
        )
        yield Seeded(server.address, client, ok, failed, loop, paused, quick)
    if old is None:
        os.environ.pop("KESTREL_SERVER", None)
    else:
        os.environ["KESTREL_SERVER"] = old


def _page(name: str, **query: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    for key, value in query.items():
        at.query_params[key] = value
    at.switch_page(f"views/{name}.py").run()
    _no_exception(at)
    return at


def _no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _run(at: AppTest) -> AppTest:
    at.run()
    _no_exception(at)
    return at


def _charts(at: AppTest, kind: str) -> list:
    return [el.proto for el in at.get(kind)]


# A column only one table of its page has (AppTest does not expose a dataframe's key).
_TABLES = {
    "ex_table": "open",
    "exd_logs_table": "message",
    "exd_tr_table": "attempts",
    "fl_table": "description",
    "fl_revisions": "created (UTC)",
    "wk_seen": "last seen (UTC)",
    "tr_declared": "cron",
    "tr_api": "trigger_id",
    "wk_fleet": "slots in use",
    "exd_files": "uri",
}


def _table(at: AppTest, key: str):
    """The DataFrame of the ``st.dataframe`` with this key."""
    frames = [df.value for df in at.dataframe if _TABLES[key] in df.value.columns]
    assert len(frames) == 1, f"{len(frames)} tables like {key} on the page"
    return frames[0]


def _table_column(at: AppTest, key: str, column: str) -> list:
    return list(_table(at, key)[column])


def _captions(at: AppTest) -> list[str]:
    return [c.value for c in at.caption]


def _button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def _metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


# -- executions --------------------------------------------------------------------------------


def test_executions_page_pages_server_side_and_filters(seeded: Seeded) -> None:
    at = _page("executions")
    assert at.title[0].value == "Executions"
    first_page = _table_column(at, "ex_table", "id")
    assert len(first_page) == 34  # every seeded execution fits the default page of 50
    assert {seeded.ok.id, seeded.failed.id, seeded.loop.id, seeded.paused.id} <= set(first_page)

    at.selectbox(key="ex_page_size").set_value(25)
    _run(at)
    page1 = _table_column(at, "ex_table", "id")
    assert len(page1) == 25 and page1 == first_page[:25]  # newest first, as the server orders them
    at.button(key="ex_next").click()
    _run(at)
    page2 = _table_column(at, "ex_table", "id")
    assert page2 == first_page[25:]
    assert at.button(key="ex_next").disabled  # the last page has no next token
    at.button(key="ex_prev").click()
    _run(at)
    assert _table_column(at, "ex_table", "id") == page1

    at.multiselect(key="ex_states").set_value(["FAILED"])
    _run(at)
    assert _table_column(at, "ex_table", "id") == [seeded.failed.id]

    at.multiselect(key="ex_states").set_value([])
    at.selectbox(key="ex_ns").set_value("dash")
    _run(at)
    at.selectbox(key="ex_flow").set_value("loop")
    _run(at)
    assert _table_column(at, "ex_table", "id") == [seeded.loop.id]


def test_executions_page_counts_states_in_a_chart(seeded: Seeded) -> None:
    at = _page("executions")
    assert {k: int(v) for k, v in _metrics(at).items()} == {"SUCCESS": 32, "FAILED": 1, "PAUSED": 1}
    (chart,) = _charts(at, "plotly_chart")
    figure = json.loads(chart.spec)
    bars = {trace["name"]: sum(trace["y"]) for trace in figure["data"]}
    assert bars == {"SUCCESS": 32, "FAILED": 1, "PAUSED": 1}
    colours = {trace["name"]: trace["marker"]["color"] for trace in figure["data"]}
    assert colours == {"SUCCESS": "#2e9e5b", "FAILED": "#d62f2f", "PAUSED": "#17a2b8"}


def test_executions_page_opens_an_execution(seeded: Seeded) -> None:
    at = _page("executions")
    at.selectbox(key="ex_open_choice").set_value(seeded.failed.id)
    at.button(key="ex_open").click()
    _run(at)
    assert at.title[0].value == "Execution"
    assert at.text_input(key="exd_id").value == seeded.failed.id


# -- execution detail --------------------------------------------------------------------------


def test_execution_page_shows_gantt_topology_logs_and_data(seeded: Seeded) -> None:
    at = _page("execution", id=seeded.ok.id)
    assert _metrics(at)["State"] == "SUCCESS"
    assert _metrics(at)["Task runs"] == "2"
    assert not any(b.key == "exd_kill" for b in at.button)  # no kill on a terminated execution

    gantt = json.loads(_charts(at, "plotly_chart")[0].spec)
    assert gantt["layout"]["yaxis"]["ticktext"] == ["greet", "shout"]
    assert {t["name"] for t in gantt["data"]} <= {"SUCCESS", "waiting"}

    dot = _charts(at, "graphviz_chart")[0].spec
    assert '"greet"' in dot or "greet [" in dot
    assert "#2e9e5b" in dot  # both tasks filled with SUCCESS green

    assert "Hello Ada" in _table_column(at, "exd_logs_table", "message")
    at.text_input(key="exd_log_search").set_value("no such text")
    _run(at)
    assert "0 of 1 line(s) at TRACE or above" in _captions(at)
    at.text_input(key="exd_log_search").set_value("hello")
    _run(at)
    assert _table_column(at, "exd_logs_table", "message") == ["Hello Ada"]
    at.selectbox(key="exd_level").set_value("ERROR")
    _run(at)
    assert "0 of 0 line(s) at ERROR or above" in _captions(at)  # the level filter runs on the server

    shown = [json.loads(j.proto.body) for j in at.json]
    assert {"user": "Ada"} in shown  # inputs
    assert any(s.get("team") == "data" for s in shown)  # labels
    assert {"shout": {"value": "ADA"}} in shown  # task outputs


def test_execution_page_draws_201_task_runs_nested_under_foreach(seeded: Seeded) -> None:
    at = _page("execution", id=seeded.loop.id)
    assert _metrics(at)["Task runs"] == "201"
    gantt = json.loads(_charts(at, "plotly_chart")[0].spec)
    labels = gantt["layout"]["yaxis"]["ticktext"]
    assert len(labels) == 201
    assert labels[0] == "each" and labels[1] == "  ret [v000]" and labels[-1] == "  ret [v199]"
    dot = _charts(at, "graphviz_chart")[0].spec
    assert "200 runs: 200 SUCCESS" in dot
    assert len(_table_column(at, "exd_tr_table", "task")) == 201


def test_failed_execution_shows_its_error_and_restarts(seeded: Seeded) -> None:
    at = _page("execution", id=seeded.failed.id)
    assert _metrics(at)["State"] == "FAILED"
    assert any("the boom task failed on purpose" in e.value for e in at.error)
    dot = _charts(at, "graphviz_chart")[0].spec
    assert "#d62f2f" in dot  # the failed task is red
    assert not any(b.key == "exd_kill" for b in at.button)

    restart = f"exd_RestartExecution_{seeded.failed.id}_go"
    if not any(b.key == restart for b in at.button):
        pytest.skip("the control plane has no RestartExecution RPC (hidden, as designed)")
    at.button(key=restart).click()
    _run(at)
    assert not at.error, [e.value for e in at.error]

    def boom_attempts() -> int:
        execution = seeded.client.get_execution(seeded.failed.id)
        run = next(tr for tr in execution.task_runs if tr.task_id == "boom")
        return len(run.attempts) if execution.is_terminal else 0

    wait_until(lambda: boom_attempts() >= 2, 60, what="the restarted boom task to fail again")


def test_replay_and_labels_actions(seeded: Seeded) -> None:
    at = _page("execution", id=seeded.ok.id)
    labels_key = f"exd_SetExecutionLabels_{seeded.ok.id}"
    if not any(b.key == f"{labels_key}_go" for b in at.button):
        pytest.skip("the control plane has no SetExecutionLabels RPC (hidden, as designed)")
    at.text_area(key=f"{labels_key}_labels").set_value("team=data\nreviewed=yes")
    at.button(key=f"{labels_key}_go").click()
    _run(at)
    assert not at.error, [e.value for e in at.error]
    labels = seeded.client.get_execution(seeded.ok.id).labels
    assert {k: v for k, v in labels.items() if not k.startswith("system.")} == {
        "team": "data",
        "reviewed": "yes",
    }

    replay = f"exd_ReplayExecution_{seeded.ok.id}"
    shout = next(tr for tr in seeded.ok.task_runs if tr.task_id == "shout")
    at.selectbox(key=f"{replay}_tr").set_value(shout.id)
    at.button(key=f"{replay}_go").click()
    _run(at)
    assert not at.error, [e.value for e in at.error]
    new_id = at.text_input(key="exd_id").value
    assert new_id != seeded.ok.id  # the page moved to the new execution
    replayed = seeded.client.wait_execution(new_id, 60)
    assert replayed.state.current is State.SUCCESS
    assert replayed.original_id == seeded.ok.id or replayed.parent_id == seeded.ok.id


def test_paused_execution_resumes_through_its_on_resume_form(seeded: Seeded) -> None:
    at = _page("execution", id=seeded.paused.id)
    assert _metrics(at)["State"] == "PAUSED"
    key = f"exd_ResumeExecution_{seeded.paused.id}"
    if not any(b.key == f"{key}_go" for b in at.button):
        pytest.skip("the control plane has no ResumeExecution RPC (hidden, as designed)")
    at.button(key=f"{key}_go").click()  # `approved` is required and left empty
    _run(at)
    assert any("`approved` is required" in e.value for e in at.error)
    assert seeded.client.get_execution(seeded.paused.id).state.current is State.PAUSED

    at.selectbox(key=f"{key}_in_approved").set_value("false")
    at.button(key=f"{key}_go").click()
    _run(at)
    final = seeded.client.wait_execution(seeded.paused.id, 60)
    assert final.state.current is State.SUCCESS
    assert any(e.message == "approved=false" for e in seeded.client.list_logs(final.id))


def test_kill_button_kills_a_running_execution(seeded: Seeded) -> None:
    running = seeded.client.start_execution(NS, "slow")
    wait_until(
        lambda: any(
            tr.state.current is State.RUNNING for tr in seeded.client.get_execution(running.id).task_runs
        ),
        60,
        what="the sleep task to run",
    )
    at = _page("execution", id=running.id)
    at.button(key="exd_kill").click()
    _run(at)
    assert seeded.client.wait_execution(running.id, 30).state.current is State.KILLED


def test_unknown_execution_id_is_one_clear_error(seeded: Seeded) -> None:
    at = _page("execution", id="no-such-execution")
    assert [e.value for e in at.error] == ["No execution with id 'no-such-execution'."]


# -- flows ---------------------------------------------------------------------------------------


def test_flows_page_tree_source_revisions_and_topology(seeded: Seeded) -> None:
    at = _page("flows")
    assert at.radio(key="fl_ns").options == [
        "all namespaces (6)",
        "dash (6)",
        "\u2003\u2514 forms (1)",
        "\u2003\u2514 team (4)",
    ]
    at.radio(key="fl_ns").set_value("dash.team")
    _run(at)
    assert sorted(_table_column(at, "fl_table", "flow")) == ["approval", "broken", "hello", "slow"]
    at.selectbox(key="fl_flow").set_value("dash.team.hello")
    _run(at)
    assert at.header[0].value == "dash.team.hello"
    sources = [c.value for c in at.code]
    assert any("Greets someone, twice." in s for s in sources)
    diff = next(s for s in sources if s.startswith("---"))
    assert "-description: Greets someone." in diff and "+description: Greets someone, twice." in diff
    assert "+  - {id: again" in diff
    assert sorted(_table_column(at, "fl_revisions", "revision")) == [1, 2]
    dot = _charts(at, "graphviz_chart")[0].spec
    for task in ("greet", "shout", "again"):
        assert task in dot


def test_execute_form_places_errors_next_to_fields_and_starts_the_execution(seeded: Seeded) -> None:
    at = _page("flows", namespace="dash.forms", flow="typed")
    assert at.header[0].value == "dash.forms.typed"
    prefix = "fl_in_dash.forms.typed_"
    assert at.selectbox(key=prefix + "mode").options == ["default: fast", "fast", "careful"]

    _button(at, "Execute").click()
    _run(at)  # nothing filled: the two required inputs are refused before calling the server
    errors = [e.value for e in at.error]
    assert "`name` is required" in errors and "`count` is required" in errors

    at.text_input(key=prefix + "name").set_value("Ada")
    at.number_input(key=prefix + "count").set_value(0)
    _button(at, "Execute").click()
    _run(at)  # the server refuses count=0 (min: 1) and names the input
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "more than" in errors[0] and "1" in errors[0], errors
    before = {e.id for e in seeded.client.iter_executions(flow_id="typed")}
    assert not before

    at.number_input(key=prefix + "count").set_value(3)
    at.selectbox(key=prefix + "mode").set_value("careful")
    _button(at, "Execute").click()
    _run(at)
    assert not at.error
    started = [e.id for e in seeded.client.iter_executions(flow_id="typed")]
    assert len(started) == 1 and any(started[0] in s.value for s in at.success)
    final = seeded.client.wait_execution(started[0], 60)
    assert final.inputs == {"name": "Ada", "count": 3, "mode": "careful", "dry": False}


# -- workers and triggers ------------------------------------------------------------------------


def test_workers_page_shows_the_workers_that_ran_attempts(seeded: Seeded) -> None:
    at = _page("workers")
    workers = {a.worker_id for tr in seeded.ok.task_runs for a in tr.attempts}
    assert workers and workers <= set(_table_column(at, "wk_seen", "worker"))
    if first_rpc(WORKER_LISTINGS) is None:
        assert any("no listing RPC" in i.value for i in at.info)
        return
    fleet = _table(at, "wk_fleet")  # the live fleet from ListWorkers
    live = fleet[fleet["worker"].isin(workers)]
    assert list(live["state"]) == ["ACTIVE"] and live["slots in use"].iloc[0].endswith("/8")
    assert "Log" in live["task types"].iloc[0]


def test_triggers_page_lists_the_declared_schedule(seeded: Seeded) -> None:
    at = _page("triggers")
    assert "nightly" in _table_column(at, "tr_declared", "trigger")
    assert "0 2 * * *" in _table_column(at, "tr_declared", "cron")


def test_triggers_page_lists_and_toggles_triggers_through_the_trigger_api(seeded: Seeded) -> None:
    if first_rpc(TRIGGER_LISTINGS) is None:
        pytest.skip("the control plane has no trigger API yet (the page shows declared triggers only)")
    at = _page("triggers")
    table = _table(at, "tr_api")
    row = table[table["trigger_id"] == "nightly"]
    assert (
        len(row) == 1 and bool(row["enabled"].iloc[0]) and str(row["next_fire_time"].iloc[0]).startswith("20")
    )
    labels = at.selectbox(key="tr_pick").options
    at.selectbox(key="tr_pick").set_value(
        next(i for i, label in enumerate(labels) if label.endswith("nightly"))
    )
    _run(at)
    at.toggle(key="tr_enabled").set_value(False)
    at.button(key="tr_go_SetTriggerEnabled").click()
    _run(at)
    assert not at.error and any("done" in s.value for s in at.success)
    table = _table(_page("triggers"), "tr_api")
    assert not bool(table[table["trigger_id"] == "nightly"]["enabled"].iloc[0])


FILES = """
id: files
namespace: dash.files
tasks:
  - id: make
    type: io.kestra.plugin.scripts.shell.Commands
    outputFiles: ["report.txt"]
    commands:
      - printf 'rows=42' > report.txt
"""


def test_execution_files_are_listed_and_downloadable(seeded: Seeded) -> None:
    at = _page("execution", id=seeded.ok.id)
    if any("no storage API" in c for c in _captions(at)):
        pytest.skip("the client has no storage API in this version")
    assert "No file in internal storage." in _captions(at)
    seeded.client.deploy_flow(FILES)
    done = seeded.client.wait_execution(seeded.client.start_execution("dash.files", "files").id, 60)
    assert done.state.current is State.SUCCESS
    at = _page("execution", id=done.id)
    files = _table(at, "exd_files")
    assert list(files["file"]) == ["report.txt"] and list(files["task"]) == ["make"]
    at.button(key="exd_file_fetch").click()
    _run(at)
    assert not at.error
    (download,) = [b for b in at.get("download_button") if "report.txt" in b.proto.label]
    assert download.proto.label == "Download report.txt (7 bytes)"
