"""Events: typed JSON lines written whole, read incrementally from a growing file."""

from __future__ import annotations

import json
import os
import threading

import pytest

from engine.rundir.events import (
    EVENT_TYPES,
    EVENTS_FILE,
    FINAL_TYPES,
    Checkpoint,
    Eval,
    EventReader,
    EventWriter,
    Failed,
    Finished,
    Log,
    Phase,
    Sample,
    Started,
    Step,
    Stopped,
    parse_event,
    parse_line,
    read_events,
)

SAMPLES = [
    Started(
        run_id="r1",
        model="tiny",
        config={"lora": {"lora_r": 8}},
        train_size=10,
        eval_size=2,
        labels=["neg", "pos"],
        precision="fp32",
        threads=2,
        total_steps=5,
    ),
    Phase(name="tokenizing", detail="320 texts"),
    Step(
        step=3,
        total_steps=5,
        epoch=0.6,
        loss=0.69,
        learning_rate=1e-3,
        grad_norm=1.5,
        samples_per_s=80.0,
        tokens_per_s=1200.0,
        elapsed_s=3.2,
        eta_s=2.1,
    ),
    Eval(
        step=5,
        epoch=1.0,
        metrics={"accuracy": 0.5, "per_class": {"pos": {"f1": 0.4}}, "confusion": [[1, 0], [1, 0]]},
    ),
    Sample(step=5, index=0, prompt="Capital of France?", reference="Paris", generated="Paris."),
    Checkpoint(step=5, path="/runs/r1/checkpoints/checkpoint-5", reason="scheduled"),
    Log(level="warning", message='ünïcode ✓ and "quotes"'),
    Finished(step=5, output_dir="/out", metrics={"accuracy": 0.5}, elapsed_s=9.0),
    Stopped(step=2, output_dir="/out", checkpoint="/c", reason="stop requested"),
    Failed(message="data file not found", hint="check the path", where="x.csv", user_error=True),
]


def append_raw(run_dir, data: bytes) -> None:
    with open(run_dir / EVENTS_FILE, "ab") as fh:
        fh.write(data)


def test_every_event_type_is_registered_and_sampled():
    assert set(EVENT_TYPES) == {type(e).type for e in SAMPLES}
    assert {"finished", "stopped", "failed"} == FINAL_TYPES


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: e.type)
def test_json_round_trip(event):
    line = event.to_json()
    assert "\n" not in line
    raw = json.loads(line)
    assert raw["type"] == event.type
    assert isinstance(raw["time"], float)
    again = parse_line(line)
    assert type(again) is type(event)
    assert again == event


def test_writer_appends_one_line_per_event_and_calls_listeners(tmp_path):
    run_dir = tmp_path / "run"  # created by the writer
    writer = EventWriter(run_dir)
    seen = []
    writer.listeners.append(seen.append)
    for event in SAMPLES:
        assert writer.emit(event) is event
    lines = (run_dir / EVENTS_FILE).read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(SAMPLES)
    assert [json.loads(line)["type"] for line in lines] == [e.type for e in SAMPLES]
    assert seen == SAMPLES
    assert read_events(run_dir) == SAMPLES


def test_two_writers_append_to_the_same_file(tmp_path):
    EventWriter(tmp_path).emit(Phase(name="a"))
    EventWriter(tmp_path).emit(Phase(name="b"))
    assert [e.name for e in read_events(tmp_path)] == ["a", "b"]


def test_reader_yields_only_new_events(tmp_path):
    writer = EventWriter(tmp_path)
    reader = EventReader(tmp_path)
    assert reader.read_new() == []  # no file yet
    writer.emit(Phase(name="one"))
    writer.emit(Phase(name="two"))
    assert [e.name for e in reader.read_new()] == ["one", "two"]
    assert reader.read_new() == []
    writer.emit(Phase(name="three"))
    assert [e.name for e in reader.read_new()] == ["three"]


def test_half_written_last_line_is_held_back(tmp_path):
    line = Step(step=7, loss=0.25).to_json().encode() + b"\n"
    reader = EventReader(tmp_path)
    append_raw(tmp_path, Phase(name="training").to_json().encode() + b"\n" + line[:20])
    assert [e.type for e in reader.read_new()] == ["phase"]
    assert read_events(tmp_path)[-1].type == "phase"  # a one-shot read skips it too
    assert reader.read_new() == []
    append_raw(tmp_path, line[20:-1])  # everything but the newline
    assert reader.read_new() == []
    append_raw(tmp_path, b"\n")
    events = reader.read_new()
    assert len(events) == 1 and isinstance(events[0], Step)
    assert (events[0].step, events[0].loss) == (7, 0.25)


def test_multibyte_character_split_between_reads(tmp_path):
    # Our writer escapes non-ASCII, but a line with raw UTF-8 must survive a split read too.
    raw = {"type": "log", "time": 1.0, "level": "info", "message": "naïve café ✓"}
    data = json.dumps(raw, ensure_ascii=False).encode("utf-8") + b"\n"
    cut = data.index("✓".encode()) + 1  # inside the three bytes of the check mark
    reader = EventReader(tmp_path)
    append_raw(tmp_path, data[:cut])
    assert reader.read_new() == []
    append_raw(tmp_path, data[cut:])
    assert [e.message for e in reader.read_new()] == ["naïve café ✓"]


def test_unknown_fields_unknown_types_and_junk_are_ignored(tmp_path):
    lines = [
        json.dumps({"type": "step", "time": 1.0, "step": 4, "loss": 0.5, "new_field": [1, 2]}),
        json.dumps({"type": "telemetry", "time": 2.0, "cpu": 99}),
        "not json at all",
        "[1, 2, 3]",
        json.dumps({"no_type": True}),
        "",
        json.dumps({"type": "phase", "time": 3.0, "name": "saving", "extra": {"x": 1}}),
    ]
    append_raw(tmp_path, ("\n".join(lines) + "\n").encode())
    events = EventReader(tmp_path).read_new()
    assert [e.type for e in events] == ["step", "phase"]
    assert events[0].step == 4 and events[0].time == 1.0
    assert not hasattr(events[0], "new_field")


def test_missing_fields_take_defaults():
    event = parse_event({"type": "eval"})
    assert isinstance(event, Eval)
    assert event.metrics == {} and event.step == 0
    assert parse_event({"type": "nope"}) is None


def test_torn_line_from_a_killed_engine_does_not_swallow_the_next_event(tmp_path):
    # An engine died mid-write; a resumed engine appends with a new writer.
    append_raw(tmp_path, Phase(name="training").to_json().encode() + b"\n")
    append_raw(tmp_path, Step(step=9).to_json().encode()[:15])
    reader = EventReader(tmp_path)
    assert [e.type for e in reader.read_new()] == ["phase"]
    EventWriter(tmp_path).emit(Started(run_id="again"))
    events = reader.read_new()
    assert [e.type for e in events] == ["started"]
    assert [e.type for e in read_events(tmp_path)] == ["phase", "started"]


def test_reader_recovers_an_event_glued_to_a_torn_line():
    torn = Step(step=9).to_json()[:15]
    event = parse_line(torn + Started(run_id="x").to_json())
    assert isinstance(event, Started) and event.run_id == "x"


def test_reader_starts_over_when_the_file_is_replaced(tmp_path):
    writer = EventWriter(tmp_path)
    for i in range(5):
        writer.emit(Phase(name=f"old {i}"))
    reader = EventReader(tmp_path)
    assert len(reader.read_new()) == 5
    os.unlink(tmp_path / EVENTS_FILE)
    EventWriter(tmp_path).emit(Phase(name="new"))
    assert [e.name for e in reader.read_new()] == ["new"]


def test_reading_while_another_thread_appends(tmp_path):
    """A writer thread appends events in pieces (worst case); the reader sees each exactly once."""
    total = 300
    lines = [Step(step=i, loss=i / 1000).to_json().encode() + b"\n" for i in range(total)]
    done = threading.Event()

    def write() -> None:
        with open(tmp_path / EVENTS_FILE, "ab", buffering=0) as fh:
            for n, data in enumerate(lines):
                cut = (n * 7) % len(data)
                fh.write(data[:cut])  # a torn line, visible to the reader
                fh.write(data[cut:])
        done.set()

    reader = EventReader(tmp_path)
    thread = threading.Thread(target=write)
    got: list[Step] = []
    thread.start()
    try:
        while not done.is_set():
            got += reader.read_new()
    finally:
        thread.join(timeout=60)
    got += reader.read_new()
    assert [e.step for e in got] == list(range(total))
    assert got[-1].loss == pytest.approx((total - 1) / 1000)


def test_event_writer_from_threads_never_interleaves(tmp_path):
    writer = EventWriter(tmp_path)
    big = "x" * 5000  # larger than a pipe buffer page

    def emit(k: int) -> None:
        for i in range(40):
            writer.emit(Log(message=f"{k}-{i}-{big}"))

    threads = [threading.Thread(target=emit, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    events = read_events(tmp_path)
    assert len(events) == 160
    assert all(e.message.endswith(big) for e in events)
    assert {e.message.split("-")[0] for e in events} == {"0", "1", "2", "3"}


def test_follow_yields_batches_until_stopped(tmp_path):
    writer = EventWriter(tmp_path)
    writer.emit(Phase(name="first"))
    stop = threading.Event()
    batches = EventReader(tmp_path).follow(stop, poll_s=0.01)
    assert [e.name for e in next(batches)] == ["first"]
    assert next(batches) == []  # nothing new: an empty batch, not a block
    writer.emit(Phase(name="second"))
    assert [e.name for e in next(batches)] == ["second"]
    stop.set()
    assert list(batches) == []


def test_read_events_of_a_missing_run(tmp_path):
    assert read_events(tmp_path / "nope") == []


def test_the_finished_line_scores_a_language_model_by_loss() -> None:
    from engine.cli.event_lines import format_event

    lm = Finished(
        step=880, output_dir="/o", metrics={"accuracy": 0.12, "loss": 6.2, "perplexity": 492.3}
    )
    assert format_event(lm).startswith("finished at step 880, eval loss 6.2000 (perplexity 492.3)")
    clf = Finished(step=8, output_dir="/o", metrics={"accuracy": 0.82, "loss": 0.4})
    assert format_event(clf).startswith("finished at step 8, accuracy 0.8200;")
