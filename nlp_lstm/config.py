"""Structured config schema.

Each group of `conf/` is validated against one of these dataclasses, so a misspelt key or
a wrong type fails at composition time, before any data is read. Value checks that types
cannot express live in `__post_init__` and run when `to_object` builds the dataclasses
(`validate`). Tagging adds its own subclasses of TaskConfig and DataConfig.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from omegaconf import MISSING

from nlp_lstm.errors import ConfigError


def _check(condition: bool, key: str, value: Any, expected: str) -> None:
    if not condition:
        raise ConfigError(f"config {key}={value!r}: {expected}")


def _check_choice(key: str, value: Any, choices: tuple) -> None:
    _check(value in choices, key, value, f"must be one of {', '.join(map(str, choices))}")


# --------------------------------------------------------------------------- task
@dataclass
class TaskConfig:
    name: str = MISSING


@dataclass
class LMTaskConfig(TaskConfig):
    name: str = "lm"
    batch_size: int = 20
    bptt: int = 35
    # AWD-LSTM's variable-length BPTT: a window is bptt (p=0.95) or bptt/2, jittered by
    # N(0, 5); the learning rate is scaled by window/bptt so every token weighs the same.
    variable_bptt: bool = False
    eval_batch_size: int = 10
    sample_tokens: int = 60  # length of the text sample logged to TensorBoard each epoch
    sample_prompt: str = ""

    def __post_init__(self) -> None:
        _check(self.name == "lm", "task.name", self.name, "must be 'lm' for this schema")
        _check(self.batch_size >= 1, "task.batch_size", self.batch_size, "must be >= 1")
        _check(self.bptt >= 2, "task.bptt", self.bptt, "must be >= 2")
        _check(self.eval_batch_size >= 1, "task.eval_batch_size", self.eval_batch_size, "must be >= 1")
        _check(self.sample_tokens >= 0, "task.sample_tokens", self.sample_tokens, "must be >= 0")


@dataclass
class TaggingTaskConfig(TaskConfig):
    name: str = "tagging"
    batch_size: int = 16  # sentences
    eval_batch_size: int = 256
    # Scheme the model is trained in; predictions are converted back to data.tag_scheme for
    # evaluation and output. IOBES gives the CRF the most structure (Lample et al. 2016).
    train_scheme: str = "iobes"

    def __post_init__(self) -> None:
        _check(self.name == "tagging", "task.name", self.name, "must be 'tagging' for this schema")
        _check(self.batch_size >= 1, "task.batch_size", self.batch_size, "must be >= 1")
        _check(self.eval_batch_size >= 1, "task.eval_batch_size", self.eval_batch_size, "must be >= 1")
        _check_choice("task.train_scheme", self.train_scheme, ("iob1", "iob2", "iobes"))


# --------------------------------------------------------------------------- data
@dataclass
class DataConfig:
    # A corpus of the registry (wikitext2, ptb, tinyshakespeare) or `text` for your own files.
    name: str = MISSING
    train: Optional[str] = None
    valid: Optional[str] = None
    test: Optional[str] = None
    lowercase: bool = False
    # Where a corpus has no dev split (your own files without data.valid), this fraction of
    # train is held out as valid: an LM's last lines (contiguous text), a tagger's sentences
    # chosen with split_seed.
    dev_fraction: float = 0.1
    split_seed: int = 12345

    def __post_init__(self) -> None:
        if self.name == "text":
            _check(self.train is not None, "data.train", None, "data=text needs a path for this split")
        _check(0.0 < self.dev_fraction < 0.5, "data.dev_fraction", self.dev_fraction, "must be in (0, 0.5)")


@dataclass
class TaggingDataConfig(DataConfig):
    # A corpus of the registry (conll2000, ud_ewt, wnut17), or `conll` / `conllu` for your files.
    format: str = "conll"  # conll | conllu
    word_column: int = 0
    tag_column: int = -1
    # Extra input columns embedded next to the word, e.g. {pos: 1} for CoNLL-2000 chunking.
    feature_columns: Dict[str, int] = field(default_factory=dict)
    conllu_field: str = "upos"  # upos | xpos
    tag_scheme: str = "iob2"  # iob1 | iob2 | iobes | none (plain labels such as POS)

    def __post_init__(self) -> None:
        if self.name in ("conll", "conllu"):
            _check(self.train is not None, "data.train", None, f"data={self.name} needs a path for this split")
        _check_choice("data.format", self.format, ("conll", "conllu"))
        _check_choice("data.conllu_field", self.conllu_field, ("upos", "xpos"))
        _check_choice("data.tag_scheme", self.tag_scheme, ("iob1", "iob2", "iobes", "none"))
        super().__post_init__()


# --------------------------------------------------------------------------- tokenizer
@dataclass
class TokenizerConfig:
    kind: str = "word"  # word | char | sentencepiece
    min_freq: int = 1
    max_size: Optional[int] = None  # vocabulary cap, specials included
    # sentencepiece only
    model_type: str = "bpe"  # bpe | unigram
    vocab_size: int = 8000
    character_coverage: float = 1.0
    user_defined_symbols: List[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        _check_choice("tokenizer.kind", self.kind, ("word", "char", "sentencepiece"))
        _check(self.min_freq >= 1, "tokenizer.min_freq", self.min_freq, "must be >= 1")
        _check(
            self.max_size is None or self.max_size >= 3,
            "tokenizer.max_size",
            self.max_size,
            "must be >= 3 (the specials take two slots)",
        )
        _check_choice("tokenizer.model_type", self.model_type, ("bpe", "unigram"))
        _check(self.vocab_size >= 8, "tokenizer.vocab_size", self.vocab_size, "must be >= 8")
        _check(
            0.9 <= self.character_coverage <= 1.0,
            "tokenizer.character_coverage",
            self.character_coverage,
            "must be in [0.9, 1.0]",
        )


# --------------------------------------------------------------------------- model
@dataclass
class ModelConfig:
    cell: str = "lstm"  # lstm | gru
    emb_size: int = 200
    hidden_size: int = 200
    num_layers: int = 2
    # For an LM: two directional LMs (forward and backward, ELMo-style) sharing the
    # embedding and the softmax; no position ever sees the token it predicts.
    bidirectional: bool = False
    tie_weights: bool = False  # a projection is added when the last layer's size != emb_size
    # The last RNN layer's size, where it differs from hidden_size (LMs; AWD-LSTM: emb_size,
    # so that tied weights need no projection). null: hidden_size.
    last_layer_size: Optional[int] = None
    # Dropouts, named after what they drop (AWD-LSTM's dropoute/dropouti/dropouth/dropout/wdrop).
    dropout_embedding: float = 0.0  # drops whole word types from the embedding matrix
    dropout_input: float = 0.0  # on the embedded input
    dropout_hidden: float = 0.0  # between RNN layers
    dropout_output: float = 0.0  # on the last RNN layer's output
    weight_drop: float = 0.0  # DropConnect on hidden-to-hidden weights
    locked_dropout: bool = True  # one mask per sequence (variational) rather than per step
    init_range: float = 0.1  # embedding / decoder uniform init
    # LM output layer: `full` (fused chunked softmax over the whole vocabulary) or
    # `adaptive` (Grave et al. 2017; needs tie_weights=false). Cutoffs split the
    # frequency-ordered vocabulary into the head and the tail clusters.
    softmax: str = "full"
    adaptive_cutoffs: List[int] = field(default_factory=lambda: [2000, 10000])
    adaptive_div_value: float = 4.0
    # AWD-LSTM's activation regularisers (Merity et al. 2017), training loss only:
    # activation_reg (alpha) * mean(dropped last-layer output ** 2) and
    # temporal_activation_reg (beta) * mean((undropped output[t] - output[t-1]) ** 2).
    activation_reg: float = 0.0
    temporal_activation_reg: float = 0.0
    # Start from this model package (an LM for task=lm, a tagger for task=tagging): its
    # architecture, weights and tokenizer/vocabularies; nlp_lstm/tasks/init_from.py says
    # exactly what carries over.
    init_from: Optional[str] = None

    def __post_init__(self) -> None:
        _check_choice("model.cell", self.cell, ("lstm", "gru"))
        _check_choice("model.softmax", self.softmax, ("full", "adaptive"))
        if self.softmax == "adaptive":
            _check(
                not self.tie_weights,
                "model.tie_weights",
                self.tie_weights,
                "must be false with model.softmax=adaptive (its clusters have their own projections)",
            )
            cutoffs = list(self.adaptive_cutoffs)
            _check(
                len(cutoffs) >= 1 and all(c > 0 for c in cutoffs) and cutoffs == sorted(set(cutoffs)),
                "model.adaptive_cutoffs",
                cutoffs,
                "must be one or more increasing positive ids",
            )
            _check(self.adaptive_div_value >= 1.0, "model.adaptive_div_value", self.adaptive_div_value, "must be >= 1")
        _check(
            self.last_layer_size is None or self.last_layer_size >= 1,
            "model.last_layer_size",
            self.last_layer_size,
            "must be >= 1 or null",
        )
        for key in ("emb_size", "hidden_size", "num_layers"):
            _check(getattr(self, key) >= 1, f"model.{key}", getattr(self, key), "must be >= 1")
        for key in ("dropout_embedding", "dropout_input", "dropout_hidden", "dropout_output", "weight_drop"):
            value = getattr(self, key)
            _check(0.0 <= value < 1.0, f"model.{key}", value, "must be in [0, 1)")
        for key in ("activation_reg", "temporal_activation_reg"):
            _check(getattr(self, key) >= 0.0, f"model.{key}", getattr(self, key), "must be >= 0")


@dataclass
class TaggerModelConfig(ModelConfig):
    """BiLSTM/BiGRU tagger. Shared fields: cell, emb_size (word embedding), hidden_size (per
    direction), num_layers, dropout_input/hidden/output, locked_dropout."""

    emb_size: int = 100
    hidden_size: int = 200
    num_layers: int = 2
    bidirectional: bool = True
    char_features: str = "cnn"  # none | cnn (Ma & Hovy) | lstm (Lample et al.)
    char_emb_size: int = 30
    char_hidden_size: int = 50  # CNN filters, or LSTM size per direction
    feature_emb_size: int = 20  # for each of data.feature_columns
    head: str = "crf"  # crf | softmax
    word_dropout: float = 0.05  # replace a word by <unk> in training (char features still see it)
    lowercase_words: bool = True  # the word embedding sees lowercased words; chars keep case
    # Pretrained word vectors (GloVe, word2vec/fastText text, word2vec binary; gzipped or
    # not): the word vocabulary is the train words plus the file's word_vectors_max most
    # frequent words; each takes the file's vector for the same string, else for the same
    # string ignoring case (nlp_lstm/data/word_vectors.py). The file's dimension must equal
    # emb_size. word_vectors_freeze keeps the whole embedding fixed.
    word_vectors: Optional[str] = None
    word_vectors_format: str = "auto"  # auto | glove | word2vec_text | word2vec_binary
    word_vectors_max: int = 100000
    word_vectors_freeze: bool = False
    # Contextual features from a word-level LM package of this project (ELMo-style: the
    # forward and, for a bidirectional LM, backward states at each word). The LM is copied
    # into the tagger's package; frozen unless lm_fine_tune.
    lm_features: Optional[str] = None
    lm_fine_tune: bool = False
    # Which of the feature LM's states: `top` (its output, as its softmax reads it) or `mix`
    # (every RNN layer, weighted by a learned softmax and scaled: ELMo's scalar mix).
    lm_features_layers: str = "top"
    # A frozen feature LM's states for the train sentences are computed once and kept in
    # host memory up to this many MB (0: computed in every step); nlp_lstm/tasks/feature_cache.py.
    lm_features_cache_mb: float = 4096
    # Taggers that predict input columns (data.feature_columns) where an input lacks them,
    # by column name: {pos: PATH} lets a chunker trained with a POS column tag raw text. Each
    # is copied into this tagger's package. Training still reads the column from the data.
    feature_taggers: Dict[str, str] = field(default_factory=dict)
    # Auxiliary language-modelling cost (Rei 2017): the first layer's forward state predicts
    # the next word and its backward state the previous word; the loss adds lm_loss_weight
    # times their summed NLL. Training only: it shapes the encoder, inference is unchanged.
    lm_loss_weight: float = 0.0
    lm_loss_vocab: int = 7500  # the most frequent train words (specials included); others are <unk>
    lm_loss_hidden: int = 50  # tanh layer between each direction's state and its softmax
    # Draws per direction and training step for a sampled softmax over lm_loss_vocab (Jean et
    # al. 2015, log-uniform, shared by the batch: 1,024 draws give about 530 distinct classes
    # of 7,500); 0 computes the full softmax. Evaluation always computes the full one.
    lm_loss_samples: int = 1024

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_choice("model.char_features", self.char_features, ("none", "cnn", "lstm"))
        _check_choice("model.head", self.head, ("crf", "softmax"))
        _check_choice(
            "model.word_vectors_format", self.word_vectors_format, ("auto", "glove", "word2vec_text", "word2vec_binary")
        )
        _check_choice("model.lm_features_layers", self.lm_features_layers, ("top", "mix"))
        _check(self.lm_features_cache_mb >= 0, "model.lm_features_cache_mb", self.lm_features_cache_mb, "must be >= 0")
        _check(self.word_vectors_max >= 0, "model.word_vectors_max", self.word_vectors_max, "must be >= 0")
        _check(self.bidirectional, "model.bidirectional", self.bidirectional, "taggers are bidirectional")
        # LM output-layer options: a tagger has no word softmax to tie or to make adaptive.
        _check(
            not self.tie_weights, "model.tie_weights", self.tie_weights, "must be false for a tagger (no word softmax)"
        )
        _check(self.softmax == "full", "model.softmax", self.softmax, "must be full for a tagger (no word softmax)")
        _check(
            self.last_layer_size is None,
            "model.last_layer_size",
            self.last_layer_size,
            "is for language models only (a tagger's layers have hidden_size per direction)",
        )
        for key in ("activation_reg", "temporal_activation_reg"):  # the LM's; a tagger has model.lm_loss_weight
            _check(getattr(self, key) == 0.0, f"model.{key}", getattr(self, key), "is for language models only")
        _check(0.0 <= self.word_dropout < 1.0, "model.word_dropout", self.word_dropout, "must be in [0, 1)")
        for key in ("char_emb_size", "char_hidden_size", "feature_emb_size", "lm_loss_hidden"):
            _check(getattr(self, key) >= 1, f"model.{key}", getattr(self, key), "must be >= 1")
        _check(self.lm_loss_weight >= 0.0, "model.lm_loss_weight", self.lm_loss_weight, "must be >= 0")
        _check(self.lm_loss_vocab >= 3, "model.lm_loss_vocab", self.lm_loss_vocab, "must be >= 3")
        _check(self.lm_loss_samples >= 0, "model.lm_loss_samples", self.lm_loss_samples, "must be >= 0")


# --------------------------------------------------------------------------- optim
@dataclass
class OptimConfig:
    name: str = "sgd"  # sgd | adamw | ntasgd (SGD, then iterate averaging once valid stalls)
    lr: float = 20.0
    momentum: float = 0.0
    weight_decay: float = 0.0
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])
    clip_grad_norm: Optional[float] = 0.25
    schedule: str = "plateau"  # none | plateau | cosine | exponential
    plateau_factor: float = 0.25  # lr *= factor when valid loss does not improve
    plateau_patience: int = 0
    warmup_steps: int = 0  # cosine only
    min_lr: float = 0.0
    decay_start_epoch: int = 1  # exponential: lr *= decay_factor after each epoch from this one
    decay_factor: float = 0.5
    nonmono: int = 5  # ntasgd: start averaging when valid is worse than the best of the last n
    # Any optimiser: average the weights of every step from the start of this epoch on
    # (stochastic weight averaging); evaluation and the saved model use the average.
    average_from_epoch: Optional[int] = None

    def __post_init__(self) -> None:
        _check_choice("optim.name", self.name, ("sgd", "adamw", "ntasgd"))
        _check_choice("optim.schedule", self.schedule, ("none", "plateau", "cosine", "exponential"))
        _check(0 < self.decay_factor <= 1, "optim.decay_factor", self.decay_factor, "must be in (0, 1]")
        _check(self.lr > 0, "optim.lr", self.lr, "must be > 0")
        _check(0 < self.plateau_factor < 1, "optim.plateau_factor", self.plateau_factor, "must be in (0, 1)")
        _check(
            self.clip_grad_norm is None or self.clip_grad_norm > 0,
            "optim.clip_grad_norm",
            self.clip_grad_norm,
            "must be > 0 or null",
        )
        _check(len(self.betas) == 2, "optim.betas", self.betas, "must have two values")
        _check(self.nonmono >= 1, "optim.nonmono", self.nonmono, "must be >= 1")
        _check(
            self.average_from_epoch is None or self.average_from_epoch >= 1,
            "optim.average_from_epoch",
            self.average_from_epoch,
            "must be >= 1 or null",
        )


# --------------------------------------------------------------------------- trainer
@dataclass
class TrainerConfig:
    device: str = "auto"  # auto | cpu | cuda | mps (or cuda:N)
    # fp32 | bf16 | fp16 | auto: whichever of fp32 and bf16 trains faster here, timed on one
    # training step (nlp_lstm/training/precision_choice.py, nlp_lstm/speed_choices.py).
    precision: str = "fp32"
    max_epochs: Optional[int] = 40
    max_steps: Optional[int] = None
    max_time: Optional[float] = None  # seconds of training; then evaluate, save, exit 0
    resume: bool = False  # continue the run in hydra.run.dir from checkpoints/last.pt
    early_stopping_patience: Optional[int] = None  # evaluations without improvement
    log_every_n_steps: int = 50
    val_check_interval: Optional[int] = None  # also evaluate every n steps (else per epoch)
    checkpoint_every_minutes: float = 10.0
    limit_eval_batches: Optional[int] = None  # score only the first n windows (smoke tests)
    num_threads: Optional[int] = None  # torch intra-op threads; null = physical cores
    deterministic: bool = False
    progress_bar: bool = True
    # A step whose loss or gradient is NaN/Inf: `skip` it (no update; counted as
    # train/skipped_steps) or `stop` the run. Either way the run stops after
    # max_nonfinite_steps such steps in a row: the model has diverged. The verdict stays on
    # the device (the fused optimiser skips with it, as under GradScaler) and is read at each
    # log line, so a `stop` or a divergence is reported up to log_every_n_steps steps later,
    # those steps skipped too. `off`: no check (a non-finite running loss then still stops
    # the run at the next log line).
    nonfinite: str = "skip"
    max_nonfinite_steps: int = 20

    def __post_init__(self) -> None:
        _check(
            self.device in ("auto", "cpu", "cuda", "mps") or self.device.startswith("cuda:"),
            "trainer.device",
            self.device,
            "must be auto, cpu, cuda, cuda:N or mps",
        )
        _check_choice("trainer.precision", self.precision, ("fp32", "bf16", "fp16", "auto"))
        _check(
            self.max_epochs is None or self.max_epochs >= 1,
            "trainer.max_epochs",
            self.max_epochs,
            "must be >= 1 or null",
        )
        _check(
            self.max_steps is None or self.max_steps >= 1, "trainer.max_steps", self.max_steps, "must be >= 1 or null"
        )
        _check(self.max_time is None or self.max_time > 0, "trainer.max_time", self.max_time, "must be > 0 or null")
        _check(
            not (self.max_epochs is None and self.max_steps is None and self.max_time is None),
            "trainer.max_epochs",
            None,
            "set at least one of max_epochs, max_steps, max_time",
        )
        _check(self.log_every_n_steps >= 1, "trainer.log_every_n_steps", self.log_every_n_steps, "must be >= 1")
        _check(
            self.val_check_interval is None or self.val_check_interval >= 1,
            "trainer.val_check_interval",
            self.val_check_interval,
            "must be >= 1 or null",
        )
        _check(
            self.num_threads is None or self.num_threads >= 1, "trainer.num_threads", self.num_threads, "must be >= 1"
        )
        _check_choice("trainer.nonfinite", self.nonfinite, ("skip", "stop", "off"))
        _check(self.max_nonfinite_steps >= 1, "trainer.max_nonfinite_steps", self.max_nonfinite_steps, "must be >= 1")


# --------------------------------------------------------------------------- logger
@dataclass
class LoggerConfig:
    tensorboard: bool = True
    # weight/gradient histograms every N steps; 0 = never (opt-in: slow to write, rarely read)
    histogram_every_n_steps: int = 0
    projector_tokens: int = 500  # most frequent tokens shown in the embedding projector; 0 = off


@dataclass
class PathsConfig:
    data_dir: str = "data"  # corpus download cache and tokenizer/id cache
    output_dir: str = MISSING  # the run dir, from Hydra


@dataclass
class Config:
    seed: int = 1234
    task: TaskConfig = MISSING
    data: DataConfig = MISSING
    tokenizer: TokenizerConfig = MISSING
    model: ModelConfig = MISSING
    optim: OptimConfig = MISSING
    trainer: TrainerConfig = MISSING
    logger: LoggerConfig = MISSING
    paths: PathsConfig = field(default_factory=PathsConfig)
