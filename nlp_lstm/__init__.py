"""nlp_lstm: recurrent language models and sequence taggers, configured with Hydra."""

__version__ = "0.1.0"


def load(path, device: str = "auto"):
    """Load a trained model package (see nlp_lstm.api.load)."""
    from nlp_lstm.api import load as _load

    return _load(path, device)


def train(overrides=(), run_dir=None):
    """Train as `python train.py OVERRIDES` would; returns the run dir, its metrics and the
    trained model (see nlp_lstm.train_entry.train)."""
    from nlp_lstm.train_entry import train as _train

    return _train(overrides, run_dir)
