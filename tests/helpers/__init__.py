"""Helpers shared by the tests (importable as `helpers.*`: pyproject puts tests/ on the path).

    paths     ROOT (the checkout) and MIRROR (the offline corpus mirror, if any)
    corpora   toy text corpora and the tiny LM settings the fast tests train with
    tagging   toy tagged (CoNLL) corpora and the tiny tagger settings
    runs      `python train.py` and `nlp-lstm` runs (in this process by default), and the
              trainer driven step by step
    resume    a run stopped and resumed against one never stopped
    serve     real servers for the serve tests (on a thread, or `nlp-lstm serve` in a process)

Fixtures stay in conftest.py; nothing here is a fixture.
"""
