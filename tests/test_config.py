"""Real Hydra composition of the config tree: every preset composes and validates."""

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ValidationError

from helpers.paths import ROOT
from helpers.runs import run_train
from nlp_lstm.compose import register_configs, validate
from nlp_lstm.config import (
    Config,
    LMTaskConfig,
    TaggerModelConfig,
    TaggingDataConfig,
    TaggingTaskConfig,
)
from nlp_lstm.errors import ConfigError

CONF = ROOT / "conf"
PRESETS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


def _compose(overrides):
    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=["paths.output_dir=/tmp/x", *overrides])


def test_expected_presets_exist():
    assert {
        "wt2_small",
        "wt2_medium",
        "ptb_medium",
        "ptb_small",
        "wt2_gru",
        "wt2_bpe",
        "shakespeare_char",
        "wt2_bilm",
        "smoke",
        "conll2000_chunk",
        "conll2000_pos",
        "ud_ewt_upos",
        "wnut17_ner",
    } <= set(PRESETS)


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_composes_and_validates(preset):
    cfg = validate(_compose([f"experiment={preset}"]))
    assert isinstance(cfg, Config)
    if cfg.task.name == "lm":
        assert isinstance(cfg.task, LMTaskConfig) and not isinstance(cfg.model, TaggerModelConfig)
    else:
        assert isinstance(cfg.task, TaggingTaskConfig) and isinstance(cfg.model, TaggerModelConfig)
        assert isinstance(cfg.data, TaggingDataConfig)


def test_the_default_lm_run_is_built_for_its_ten_minutes():
    # `python train.py`: adaptive softmax, bf16 where native (auto), the 10-minute budget;
    # taggers stay fp32; presets that reproduce a paper keep the paper's fp32.
    cfg = validate(_compose([]))
    assert (cfg.model.softmax, cfg.trainer.precision, cfg.trainer.max_time) == ("adaptive", "auto", 600)
    assert validate(_compose(["task=tagging"])).trainer.precision == "fp32"
    for preset in ("ptb_small", "ptb_medium", "ptb_awd", "wt2_awd"):
        assert validate(_compose([f"experiment={preset}"])).trainer.precision == "fp32", preset


def test_preset_values_land():
    cfg = validate(_compose(["experiment=ptb_medium"]))
    assert (cfg.data.name, cfg.model.hidden_size, cfg.model.tie_weights, cfg.optim.lr) == ("ptb", 650, False, 35.0)
    assert validate(_compose(["experiment=wt2_bilm"])).model.bidirectional is True
    assert validate(_compose(["experiment=wt2_bpe"])).tokenizer.kind == "sentencepiece"
    # command-line overrides win over the preset
    assert validate(_compose(["experiment=wt2_small", "trainer.max_time=1200"])).trainer.max_time == 1200


def test_default_config_is_the_budgeted_wikitext2_lm():
    cfg = validate(_compose([]))
    assert (cfg.task.name, cfg.data.name, cfg.tokenizer.kind, cfg.model.cell) == ("lm", "wikitext2", "word", "lstm")
    assert cfg.trainer.max_time == 600


def test_misspelt_key_is_rejected_with_its_name():
    with pytest.raises(ConfigCompositionException) as info:
        _compose(["model.hiden_size=10"])
    assert "hiden_size" in str(info.value) + str(info.value.__cause__)


def test_wrong_type_is_rejected_with_its_name():
    with pytest.raises((ConfigCompositionException, ValidationError)) as info:
        _compose(["model.num_layers=two"])
    assert "num_layers" in str(info.value) + str(info.value.__cause__)


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.dropout_output=1.5", "config model.dropout_output=1.5: must be in [0, 1)"),
        ("model.cell=rnn", "config model.cell='rnn': must be one of lstm, gru"),
        ("trainer.precision=fp8", "config trainer.precision='fp8'"),
        ("tokenizer.kind=bytes", "config tokenizer.kind='bytes'"),
        ("optim.lr=-1", "config optim.lr=-1.0: must be > 0"),
    ],
)
def test_bad_values_get_one_line_naming_the_key(override, message):
    with pytest.raises(ConfigError) as info:
        validate(_compose([override]))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_task_tagging_alone_selects_a_tagger_corpus_and_optimiser():
    cfg = validate(_compose(["task=tagging"]))
    assert (cfg.data.name, cfg.model.head, cfg.optim.name) == ("conll2000", "crf", "adamw")
    assert cfg.data.feature_columns == {"pos": 1}
    assert validate(_compose(["experiment=conll2000_pos"])).data.tag_scheme == "none"


def test_conll2000_presets_read_pos_as_input_only_when_it_is_not_the_target():
    # Hydra merges dicts key by key, so a preset cannot empty a corpus's feature_columns:
    # the POS feature lives in the chunking preset, never in the shared corpus config.
    pos = validate(_compose(["experiment=conll2000_pos"])).data
    assert (pos.tag_column, pos.feature_columns) == (1, {})
    chunk = validate(_compose(["experiment=conll2000_chunk"])).data
    assert (chunk.tag_column, chunk.feature_columns) == (2, {"pos": 1})
    assert validate(_compose(["experiment=conll2000_chunk"])).model.lm_loss_weight == 0.1


def test_data_text_needs_paths():
    with pytest.raises(ConfigError, match="data.train"):
        validate(_compose(["data=text"]))


def test_cli_bad_value_exits_2_with_one_line_before_reading_data(tmp_path):
    proc = run_train(tmp_path / "run", ["model.dropout_output=2"], tmp_path / "data", check=False)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert lines == ["error: config model.dropout_output=2.0: must be in [0, 1)"]
    assert not (tmp_path / "data" / "wikitext2").exists()  # nothing was fetched


def test_cli_unknown_key_exits_non_zero_naming_it(tmp_path):
    proc = run_train(tmp_path / "run", ["trainer.max_epoch=3"], tmp_path / "data", check=False)
    assert proc.returncode != 0
    assert "max_epoch" in proc.stderr


@pytest.mark.parametrize(
    "override, key",
    [
        ("+model.hidden_sizee=3", "model.hidden_sizee"),
        ("++model.hidden_sizee=3", "model.hidden_sizee"),
        ("+trainer.max_epoch=3", "trainer.max_epoch"),
        ("+seeds=3", "seeds"),
    ],
)
def test_key_added_with_plus_must_exist_in_the_schema(override, key):
    """`+`/`++` open the node to add a key; validation still refuses one the schema lacks."""
    with pytest.raises(ConfigError) as info:
        validate(_compose([override]))
    assert str(info.value).startswith(f"config {key}: no such key")


def test_plus_keeps_working_for_free_form_dicts_and_known_keys():
    cfg = validate(_compose(["task=tagging", "+data.feature_columns.chunk=2", "++model.cell=gru"]))
    assert cfg.data.feature_columns["chunk"] == 2 and cfg.model.cell == "gru"


def test_cli_plus_misspelt_key_is_one_line_before_reading_data(tmp_path):
    proc = run_train(tmp_path / "run", ["+model.hidden_sizee=3"], tmp_path / "data", check=False)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert lines == ["error: config model.hidden_sizee: no such key in model (did you mean model.hidden_size?)"]
    assert not (tmp_path / "data" / "wikitext2").exists()


def test_users_own_experiment_file_with_a_misspelt_key_is_refused(tmp_path):
    """A user's config directory (`--config-dir`) whose experiment adds an unknown key."""
    (tmp_path / "conf" / "experiment").mkdir(parents=True)
    (tmp_path / "conf" / "experiment" / "mine.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /trainer: smoke\nmodel:\n  hidden_sizee: 3\n"
    )
    proc = run_train(
        tmp_path / "run", ["experiment=mine", "--config-dir", str(tmp_path / "conf")], tmp_path / "data", check=False
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "model.hidden_sizee" in proc.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "data" / "wikitext2").exists()


def test_ptb_small_follows_zaremba_small_and_its_schedule():
    """2 x 200, no dropout, bptt 20, batch 20, 13 epochs; the lr constant for epochs 1-4,
    then halved after every epoch (epoch 5 at half, epoch 13 at 0.5 ** 9)."""
    import torch

    from nlp_lstm.training.optim import build_scheduler

    cfg = validate(_compose(["experiment=ptb_small"]))
    m, o = cfg.model, cfg.optim
    assert (cfg.data.name, m.num_layers, m.hidden_size, m.emb_size, m.tie_weights) == ("ptb", 2, 200, 200, False)
    assert (m.dropout_input, m.dropout_hidden, m.dropout_output, m.dropout_embedding, m.weight_drop) == (0, 0, 0, 0, 0)
    assert (cfg.task.bptt, cfg.task.batch_size, cfg.trainer.max_epochs) == (20, 20, 13)
    # the paper's lr 1 and clip 5 on a loss summed over the 20 steps = lr 20, clip 0.25 on our per-token mean
    assert (o.lr, o.clip_grad_norm) == (20.0, 0.25)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler, when = build_scheduler(o, optimizer, None)
    assert when == "epoch"
    rates = []
    for _ in range(13):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()  # an epoch of training, then the epoch's schedule step
        scheduler.step()
    assert rates == pytest.approx([1.0] * 4 + [0.5**k for k in range(1, 10)])


@pytest.mark.parametrize(
    "override, message",
    [
        ("trainer.max_tme=60", "config trainer.max_tme: no such key in trainer (did you mean trainer.max_time?)"),
        ("model.hiden_size=10", "config model.hiden_size: no such key in model (did you mean model.hidden_size?)"),
        (
            "model=bilstm_crff",
            "config model=bilstm_crff: no such option (did you mean bilstm_crf? "
            "options: awd, bilstm_crf, lm, medium, small, tagging)",
        ),
        ("trainer.max_steps=abc", "config trainer.max_steps=abc: not a valid integer"),
        ("trainer.max_time=soon", "config trainer.max_time=soon: not a valid float"),
        ("modl=small", "config modl: no such key in the config (did you mean model?)"),
    ],
)
def test_override_errors_are_one_line_saying_what_would_be_right(override, message):
    """Hydra's own errors (a misspelt key without `+`, an unknown group option, a wrong type)
    as one line: the suggestion, the options (never the schemas), the expected type, and no
    repetition of the other overrides."""
    from nlp_lstm.train_entry import compose_config

    with pytest.raises(ConfigError) as info:
        compose_config(["seed=3", override, "trainer.max_epochs=2"], "/tmp/unused")
    assert str(info.value) == message


def test_a_new_map_entry_without_plus_is_told_to_add_it_with_plus():
    """model.feature_taggers and data.feature_columns are maps of your own entries, which
    Hydra adds only with `+`: the error gives the override that works."""
    from nlp_lstm.train_entry import compose_config

    for override in ("model.feature_taggers.pos=/models/pos", "data.feature_columns.pos=1"):
        with pytest.raises(ConfigError) as info:
            compose_config(["task=tagging", "data=conll", "data.train=/x", override], "/tmp/unused")
        key, value = override.split("=")
        assert str(info.value) == (
            f"config {key}: no such key in {key.rpartition('.')[0]} (a new entry: add it with +{key}={value})"
        )


def test_cli_override_error_is_one_line_and_exit_2(tmp_path):
    proc = run_train(tmp_path / "run", ["trainer.max_tme=60", "seed=4"], tmp_path / "data", check=False)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert lines == ["error: config trainer.max_tme: no such key in trainer (did you mean trainer.max_time?)"]


def test_taggers_stop_early_by_default():
    assert validate(_compose(["task=tagging"])).trainer.early_stopping_patience == 10
    assert validate(_compose([])).trainer.early_stopping_patience is None  # the LM's 10-minute run
