"""nlp_lstm: recurrent language models and sequence taggers, configured with Hydra."""

__version__ = "0.1.0"


def load(path, device: str = "auto", kind=None):
    """Load a trained model package: a LanguageModel or a Tagger (see nlp_lstm.inference.load;
    imported here on first use, so `import nlp_lstm` stays light)."""
    from nlp_lstm.inference import load as _load

    return _load(path, device, kind)


def train(overrides=(), run_dir=None):
    """Train as `python train.py OVERRIDES` would; returns the run dir, its metrics and the
    trained model (see nlp_lstm.train_entry.train)."""
    from nlp_lstm.train_entry import train as _train

    return _train(overrides, run_dir)
