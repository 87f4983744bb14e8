import json

import pytest

from cfgen import pipeline
from cfgen.errors import ConfigError
from cfgen.pipeline import PipelineConfig, parse_config, run_pipeline
from cfgen.stages import Stage, StageRunner


def test_demo_config_lists_every_stage_in_order():
    config = parse_config([])
    assert [s.name for s in config.stages] == [
        "classifier",
        "classifier_confounded",
        "judge",
        "robust_judge",
        "oracle",
        "autoencoder",
        "explainer",
        "explainer_confounded",
        "strips",
        "evaluate",
    ]
    assert config.out == "runs/demo" and config.overrides == {} and config.note == ""


def test_quick_adds_overrides_and_a_warning_note_and_out_wins():
    config = parse_config(["--quick", "--out", "elsewhere"])
    assert config.out == "elsewhere"
    assert "QUICK RUN" in config.note
    evaluate = {s.name: s for s in config.resolved_stages()}["evaluate"]
    demo = {s.name: s for s in parse_config([]).resolved_stages()}["evaluate"]
    assert evaluate.args[: len(demo.args)] == demo.args
    assert evaluate.args[len(demo.args) :][:2] == ["--n_queries", "16"]


def test_overrides_of_unknown_stages_fail():
    config = PipelineConfig(stages=[Stage("a", "evaluate")], overrides={"b": ["--x", "1"]})
    with pytest.raises(ConfigError, match=r"unknown stages \['b'\]"):
        config.resolved_stages()


def fake_commands(calls):
    def lookup(name):
        def command(argv):
            calls.append((name, argv))
            if name == "evaluate":
                out = argv[argv.index("--out") + 1]
                results = {
                    "methods": {
                        "pe": {"kind": "counterfactual", "metrics": {"shift": {"flip_rate": 0.97}}}
                    },
                    "timing": {"pe": {"seconds": 1.0, "ms_per_query": 2.0}},
                    "bias": {"finding": "the biased classifier's strips add glasses"},
                }
                with open(f"{out}/results.json", "w") as handle:
                    json.dump(results, handle)
            return 0

        return command

    return lookup


def test_demo_runs_each_stage_once_and_reuses_them_after(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(
        pipeline, "StageRunner", lambda out: StageRunner(out, commands=fake_commands(calls))
    )
    out = str(tmp_path / "demo")
    assert pipeline.main(["--quick", "--out", out]) == 0
    assert [name for name, _ in calls] == [
        "classifier",
        "classifier",
        "classifier",
        "classifier",
        "oracle",
        "autoencoder",
        "explainer",
        "explainer",
        "generate",
        "evaluate",
    ]
    explainer_argv = calls[6][1]
    classifier_folder = explainer_argv[explainer_argv.index("--model.classifier") + 1]
    assert classifier_folder.startswith(f"{out}/classifier-") and classifier_folder.endswith(
        "/classifier.pt"
    )
    evaluate_argv = calls[-1][1]
    latent_shift = evaluate_argv[evaluate_argv.index("--explainer_options.latent_shift") + 1]
    assert latent_shift.startswith(f"{{autoencoder: {out}/autoencoder-")
    assert latent_shift.endswith("/autoencoder.pt}")
    printed = capsys.readouterr().out
    assert "QUICK RUN" in printed and " 0.97 " in printed and "add glasses" in printed
    assert "report.html" in printed
    calls.clear()
    pipeline.main(["--quick", "--out", out])
    assert calls == []
    assert printed.count("reusing") == 0 and capsys.readouterr().out.count("reusing finished") == 10


def test_run_pipeline_returns_every_folder(tmp_path):
    calls = []
    config = PipelineConfig(
        stages=[
            Stage("a", "x", ["--out", "{out}"]),
            Stage("b", "y", ["--in", "{a}", "--out", "{out}"]),
        ],
        out=str(tmp_path),
    )
    folders = run_pipeline(config, StageRunner(tmp_path, commands=fake_commands(calls), log=print))
    assert list(folders) == ["a", "b"] and calls[1][1][1] == str(folders["a"])
