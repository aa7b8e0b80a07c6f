"""common/flags.py and the parsers made from it (common/training/cli.py): sections, recipes, what needs what."""
import glob
import json
import os
from types import SimpleNamespace

import pytest

from common.flags import (FLAGS, NUMBER_NEUTRAL_FLAGS, OLD_RUN_DEFAULTS, RECIPES, RUNTIME_FLAGS, SCRIPTS, flags_of,
                          recipes_text, resolve_recipes)
from common.runfolder import command_flags, flags_differ
from common.training.cli import UsageError, apply_recipes, check_flags, parse_training_args, training_parser

from conftest import ROOT, train_named, train_on_course


def parse(script, *words):
    parser = training_parser(script, "test")
    return parse_training_args(parser, script, list(words)), parser


def test_help_reads_as_sections_with_at_most_twenty_flags_outside_advanced():
    parser = training_parser("multimodal", "test")
    titles = [g.title for g in parser._action_groups if g._group_actions]
    assert titles[1:] == ["recipes (named bundles of the flags below)", "data", "model", "training",
                          "the run folder", "advanced (rarely changed)"]
    assert sum(f.group != "advanced" for f in flags_of("multimodal")) <= 20


def test_every_flag_has_help_and_a_known_section_and_script():
    for f in FLAGS:
        assert f.help and f.group in ("recipe", "data", "model", "training", "run", "advanced")
        assert set(f.scripts) <= set(SCRIPTS) and f.name.startswith("--")
    for script in SCRIPTS:  # argparse itself refuses a flag defined twice for one script
        training_parser(script, "test")


def test_lists_made_from_the_table_hold_what_the_hand_kept_lists_held():
    assert set(RUNTIME_FLAGS) >= {"max_epochs", "patience", "device", "num_threads", "resume", "retest", "runs_dir",
                                  "name", "data_root"}
    assert "recipe" not in RUNTIME_FLAGS and "lr" not in RUNTIME_FLAGS
    assert NUMBER_NEUTRAL_FLAGS == ("--log-diagnostics",)
    for key, value in {"label_fraction": 1.0, "epoch_pairs": 0, "modality_dropout": 0.0,
                       "modality_dropout_fill": "zeros", "audio_frontend": "raw", "mel_channels": [32, 64],
                       "mel_top_db": None, "speed_perturb": 0.0, "optimizer": "adam", "weight_decay": 0.0,
                       "warmup_epochs": 0.0, "schedule": "constant", "clip_grad": 0.0, "select": "val_loss"}.items():
        assert OLD_RUN_DEFAULTS[key] == value


def test_recipes_apply_in_order_and_an_explicit_flag_wins():
    args, _ = parse("multimodal", "--recipe", "mel-lean", "--recipe", "mdrop", "--recipe", "stable")
    assert (args.audio_frontend, args.mel_channels, args.modality_dropout, args.optimizer) == \
        ("mel", [8, 16], 0.3, "adamw")
    assert args.recipe == ["mel-lean", "mdrop", "stable"]
    args, _ = parse("multimodal", "--recipe", "mel-lean,mdrop", "--modality-dropout", "0.5")
    assert args.modality_dropout == 0.5 and args.recipe == ["mel-lean", "mdrop"]
    args, _ = parse("multimodal", "--recipe", "mel", "--recipe", "mel-lean")  # a later recipe overrides
    assert args.mel_channels == [8, 16]
    args, _ = parse("image")
    assert args.recipe == ["exam"] and args.optimizer == "adam"


def test_a_recipe_does_not_leak_between_parses():
    args, _ = parse("multimodal", "--recipe", "mel-lean")
    args.mel_channels.append(99)
    assert RECIPES["mel-lean"].flags["mel_channels"] == [8, 16]


def test_unknown_recipes_and_recipes_of_other_scripts_are_refused(capsys):
    with pytest.raises(SystemExit) as e:
        parse("multimodal", "--recipe", "nope")
    assert e.value.code == 2 and "unknown recipe 'nope'" in capsys.readouterr().err
    with pytest.raises(UsageError, match="--recipe mdrop is not for train_image.py"):
        parse("image", "--recipe", "mdrop")


def test_list_recipes_prints_each_recipe_of_the_script_and_exits(capsys):
    with pytest.raises(SystemExit) as e:
        parse("image", "--list-recipes")
    out = capsys.readouterr().out
    assert e.value.code == 0 and "stable" in out and "--clip-grad 1" in out and "mdrop" not in out
    assert "--modality-dropout 0.3" in recipes_text("multimodal")


@pytest.mark.parametrize("words, message", [
    (["--fusion", "concat", "--heads", "8"], "--heads has no effect on concat fusion"),
    (["--fusion", "attention", "--fused-dim", "64"], "--fused-dim has no effect on attention fusion"),
    (["--fusion", "bilinear", "--hidden-dim", "64"], "--hidden-dim has no effect on bilinear fusion"),
    (["--retest"], "--retest needs --resume"),
    (["--data", "avdigits", "--synthetic-size", "500"], "--synthetic-size needs --data synthetic"),
    (["--weight-decay", "0.1"], "--weight-decay needs --optimizer adamw"),
    (["--mel-channels", "8", "8"], "--mel-channels needs --audio-frontend mel"),
    (["--recipe", "db40"], "--mel-top-db needs --audio-frontend mel"),
    (["--modality-dropout-fill", "train_mean"], "--modality-dropout-fill needs --modality-dropout above 0"),
    (["--val-speaker", "theo"], "--val-speaker needs --holdout-speaker"),
    (["--val-speaker", "theo", "--holdout-speaker", "theo"], "--val-speaker must be another speaker"),
])
def test_what_cannot_go_together_is_refused_in_one_line(words, message):
    args, _ = parse("multimodal", *words)
    with pytest.raises(UsageError, match=message.replace("-", "\\-")):
        check_flags(args, "multimodal")


def test_widths_of_the_fusion_that_has_them_pass():
    for words in (["--fusion", "attention", "--heads", "8"], ["--fusion", "factorized", "--hidden-dim", "64"],
                  ["--fusion", "attention-tokens", "--fused-dim", "64"], ["--recipe", "mel-lean,db40,mdrop"]):
        args, _ = parse("multimodal", *words)
        check_flags(args, "multimodal")


def test_contrastive_refuses_labels_and_nt_log_flags_on_nt_xent():
    for words, message in ((["--label-fraction", "0.5"], "--label-fraction is for the classifiers"),
                           (["--learn-bias"], "--learn-bias needs --loss nt_log"),
                           (["--own-lr", "0.01"], "--own-lr needs --optimizer adamw")):
        args, _ = parse("contrastive", *words)
        with pytest.raises(UsageError, match=message.replace("-", "\\-")):
            check_flags(args, "contrastive")
    args, _ = parse("contrastive", "--recipe", "contrastive-v2", "--recipe", "nt-log")
    check_flags(args, "contrastive")
    assert (args.batch_size, args.loss, args.bias_init, args.augment) == (256, "nt_log", "prior", "views")


def test_a_command_with_recipe_names_agrees_with_the_kept_run_made_with_their_flags():
    config = {"command": "train_multimodal.py --fusion concat --seed 0 --audio-frontend mel --mel-channels 8 16 "
                         "--modality-dropout 0.3",
              "args": {"fusion": "concat", "seed": 0, "audio_frontend": "mel", "mel_channels": [8, 16],
                       "modality_dropout": 0.3}, "dataset": {"name": "avdigits"}}
    assert flags_differ(config, "--fusion concat --seed 0 --recipe mel-lean --recipe mdrop".split()) == []
    assert flags_differ(config, "--fusion concat --seed 0 --recipe mel-lean,mdrop".split()) == []
    assert flags_differ(config, "--fusion concat --seed 0 --recipe mel --recipe mdrop".split()) == \
        ["--mel-channels: trained with 8 16, asked (not given)"]
    assert command_flags("--recipe a --x 1 --recipe b".split())["--recipe"] == ("a", "b")


def test_every_kept_run_resolves_to_recipes_plus_the_flags_its_command_gave():
    configs = sorted(glob.glob(os.path.join(ROOT, "results", "**", "config.json"), recursive=True))
    assert len(configs) > 100
    seen = set()
    for path in configs:
        with open(path) as f:
            config = json.load(f)
        names, others = resolve_recipes(config["args"], config["model"])
        if config["args"].get("experts"):  # combine.py's fusion of two runs: its command trains nothing
            assert config["command"].startswith("combine.py") and others.get("fusion") == "late", path
            continue
        given = command_flags(config.get("command", "").split())
        assert all("--" + k.replace("_", "-") in given for k in others), (path, names, others)
        seen.update(names)
    assert {"exam", "stable", "mel", "mel-lean", "db40", "mdrop", "speed", "contrastive-v1", "contrastive-v2",
            "nt-log"} <= seen


def test_recorded_recipe_names_come_first_and_old_string_form_reads():
    names, others = resolve_recipes({"recipe": "stable", "optimizer": "adamw", "weight_decay": 1e-4,
                                     "warmup_epochs": 1.0, "schedule": "cosine", "clip_grad": 1.0, "lr": 3e-3},
                                    "multimodal")
    assert names == ["stable"] and others == {"lr": 3e-3}


def test_the_recommended_recipe_is_its_parts_together_and_reads_back_as_them():
    parser = training_parser("multimodal", "test")
    args = apply_recipes(parser.parse_args(["--recipe", "recommended"]), parser, "multimodal",
                         ["--recipe", "recommended"])
    assert (args.recipe, args.audio_frontend, args.mel_channels, args.mel_top_db, args.modality_dropout) == \
        (["recommended"], "mel", [8, 16], 40.0, 0.3)
    names, others = resolve_recipes(vars(args), "multimodal")
    assert names == ["mel-lean", "db40", "mdrop"] and others == {}  # labelled as the runs made of its parts
    spelled = {k: v for k, v in vars(args).items() if k != "recipe"}
    assert resolve_recipes(spelled, "multimodal") == (names, {})  # and those runs are not called "recommended"
    assert RECIPES["recommended"].scripts == ("multimodal",)


def test_apply_recipes_records_names_for_config_json():
    parser = training_parser("audio", "test")
    args = apply_recipes(parser.parse_args(["--recipe", "mel-lean", "--recipe", "speed"]), parser, "audio",
                         ["--recipe", "mel-lean", "--recipe", "speed"])
    assert args.recipe == ["mel-lean", "speed"] and args.speed_perturb == 0.15


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "0"])
def test_lr_must_be_positive_and_finite(value, labelled_course, tmp_path):
    out = train_named("train_image.py", labelled_course, tmp_path, "r", f"--lr={value}")
    assert out.returncode == 2 and "must be a positive finite number" in out.stderr


def args(**kw):
    return SimpleNamespace(**{"optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.1, **kw})


def train(script, course, runs_dir, *extra, name="run"):
    return train_on_course(script, course, runs_dir, *extra, name=name, batch_size=32, max_epochs=None)


@pytest.mark.parametrize("script", ["train_image.py", "train_multimodal.py", "train_contrastive.py"])
def test_bad_optimizer_flags_stop_with_one_line(script, larger_course, tmp_path):
    for flags, message in [(["--weight-decay", "-1"], "must be a non-negative finite number"),
                           (["--warmup-epochs", "nan"], "must be a non-negative finite number"),
                           (["--clip-grad", "x"], "not a number"),
                           (["--schedule", "linear"], "invalid choice"),
                           (["--weight-decay", "0.1"], "--weight-decay needs --optimizer adamw")]:
        out = train(script, larger_course, tmp_path, "--max-epochs", "1", *flags)
        assert out.returncode == 2, (flags, out.stderr)
        assert message in out.stderr and "Traceback" not in out.stderr
        assert not (tmp_path / "run").exists()


def test_the_stable_recipe_sets_its_flags_unless_given(larger_course, tmp_path):
    assert train("train_image.py", larger_course, tmp_path, "--max-epochs", "1", "--recipe", "stable",
                 "--clip-grad", "5").returncode == 0
    config = json.loads((tmp_path / "run/config.json").read_text())["args"]
    assert (config["recipe"], config["optimizer"], config["weight_decay"], config["warmup_epochs"],
            config["schedule"], config["clip_grad"]) == (["stable"], "adamw", 1e-4, 1.0, "cosine", 5.0)
    out = train("train_image.py", larger_course, tmp_path, "--resume", "--max-epochs", "2", "--recipe", "exam")
    assert out.returncode == 2 and "--optimizer adam (from --recipe) differs from the run's saved adamw" in out.stderr
    out = train("train_image.py", larger_course, tmp_path, "--resume", "--max-epochs", "2", "--recipe", "stable")
    assert out.returncode == 0, out.stderr  # the same recipe, given again on resume
    out = train("train_image.py", larger_course, tmp_path, "--max-epochs", "1", "--recipe", "fast", name="bad")
    assert out.returncode == 2 and "unknown recipe 'fast'" in out.stderr


def test_a_run_made_with_spelled_out_flags_resumes_under_the_recipe_that_names_them(larger_course, tmp_path):
    """A recipe is judged on resume by the flags it sets, not by its name."""
    spelled = ["--optimizer", "adamw", "--weight-decay", "1e-4", "--warmup-epochs", "1", "--schedule", "cosine"]
    for name, clip in [("same", "1"), ("other", "5")]:
        assert train("train_image.py", larger_course, tmp_path, "--max-epochs", "1", *spelled, "--clip-grad", clip,
                     name=name).returncode == 0
        assert json.loads((tmp_path / name / "config.json").read_text())["args"]["recipe"] == ["exam"]
    out = train("train_image.py", larger_course, tmp_path, "--resume", "--max-epochs", "2", "--recipe", "stable",
                name="same")
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "same/metrics.json").read_text())["epochs_run"] == 2
    out = train("train_image.py", larger_course, tmp_path, "--resume", "--max-epochs", "2", "--recipe", "stable",
                name="other")
    assert out.returncode == 2 and "--clip-grad 1.0 (from --recipe) differs from the run's saved 5.0" in out.stderr


def test_bias_init_is_bounded_where_sigmoid_still_moves(capsys):
    with pytest.raises(SystemExit) as e:
        parse("contrastive", "--loss", "nt_log", "--bias-init=1e300")
    assert e.value.code == 2 and "from -100 to 100" in capsys.readouterr().err
    args, _ = parse("contrastive", "--loss", "nt_log", "--bias-init", "prior")
    assert args.bias_init == "prior"
