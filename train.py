#!/usr/bin/env python
"""Train a model from the Hydra config in conf/ (same as the `nlp-lstm-train` command).

python train.py                                 # the default word-level LM on WikiText-2
python train.py experiment=wt2_medium trainer.max_time=3600
python train.py -m model.cell=lstm,gru          # a sweep
"""

from nlp_lstm.train_entry import main

if __name__ == "__main__":
    main()
