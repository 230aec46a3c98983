"""Tokenizers fit on the train split: word (whitespace), char, sentencepiece.

Every tokenizer turns one line into ids and marks the end of each line with `eos_id`, so
a corpus is one stream of ids with one end-of-line token per line, whatever the unit.
A tokenizer saves itself into a directory of plain files and loads back without the corpus.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Dict, Iterable, List, Sequence

from nlp_lstm.data.vocab import Vocab, build_vocab_from_counter
from nlp_lstm.errors import ConfigError, ModelPackageError

UNK = "<unk>"
EOS = "<eos>"


class Tokenizer:
    kind: str = ""
    vocab: Vocab

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def eos_id(self) -> int:
        return self.vocab[EOS]

    @property
    def unk_id(self) -> int:
        return self.vocab[UNK]

    def encode_line(self, line: str) -> List[int]:
        """Ids of one line, without the end-of-line token."""
        raise NotImplementedError

    def encode_lines(self, lines: Iterable[str]) -> List[int]:
        """One stream: each line's ids followed by `eos_id`."""
        eos, out = self.eos_id, []
        for line in lines:
            out.extend(self.encode_line(line))
            out.append(eos)
        return out

    def decode(self, ids: Sequence[int]) -> str:
        """Text of a stream of ids; `eos_id` becomes a newline."""
        raise NotImplementedError

    def token_strings(self, ids: Sequence[int]) -> List[str]:
        return self.vocab.lookup_tokens(ids)

    def save(self, directory: Path) -> None:
        raise NotImplementedError

    def settings(self) -> Dict:
        return {"kind": self.kind}


def _decode_by_line(ids: Sequence[int], eos: int, decode_line) -> str:
    """Decode each line's ids with `decode_line`; every eos becomes a newline."""
    out, line = [], []
    for i in ids:
        if i == eos:
            out.append(decode_line(line) + "\n")
            line = []
        else:
            line.append(int(i))
    if line:
        out.append(decode_line(line))
    return "".join(out)


class VocabTokenizer(Tokenizer):
    """Units looked up in a Vocab fit on the train split; subclasses say what a unit is."""

    def __init__(self, vocab: Vocab, lowercase: bool = False) -> None:
        self.vocab = vocab
        self.vocab.set_default_index(vocab[UNK])
        self.lowercase = lowercase

    @staticmethod
    def split(text: str) -> Iterable[str]:
        raise NotImplementedError

    @classmethod
    def fit(cls, lines: Iterable[str], min_freq: int = 1, max_size: int | None = None,
            lowercase: bool = False) -> "VocabTokenizer":
        counter: Counter = Counter()
        for line in lines:
            counter.update(cls.split(line.lower() if lowercase else line))
        return cls(build_vocab_from_counter(counter, min_freq, [UNK, EOS], max_size), lowercase)

    def encode_line(self, line: str) -> List[int]:
        return self.vocab.lookup_indices(self.split(line.lower() if self.lowercase else line))

    def save(self, directory: Path) -> None:
        self.vocab.save(directory / "vocab.json")

    def settings(self) -> Dict:
        return {"kind": self.kind, "lowercase": self.lowercase}

    @classmethod
    def load(cls, directory: Path, settings: Dict) -> "VocabTokenizer":
        return cls(Vocab.load(directory / "vocab.json"), settings.get("lowercase", False))


class WordTokenizer(VocabTokenizer):
    """Whitespace-separated words."""

    kind = "word"
    split = staticmethod(str.split)

    def decode(self, ids: Sequence[int]) -> str:
        return _decode_by_line(ids, self.eos_id, lambda line: " ".join(self.vocab.lookup_tokens(line)))


class CharTokenizer(VocabTokenizer):
    """Characters; the end of a line is the newline character, shown as '\\n'."""

    kind = "char"
    split = staticmethod(list)

    def decode(self, ids: Sequence[int]) -> str:
        eos = self.eos_id
        return "".join("\n" if i == eos else self.vocab.lookup_token(i) for i in ids)


class SentencePieceTokenizer(Tokenizer):
    """BPE or unigram subwords from the sentencepiece library, trained on the train split."""

    kind = "sentencepiece"

    def __init__(self, model_path: Path, lowercase: bool = False) -> None:
        import sentencepiece as spm

        self.model_path = Path(model_path)
        self.processor = spm.SentencePieceProcessor(model_file=str(self.model_path))
        size = self.processor.get_piece_size()
        self.vocab = Vocab([self.processor.id_to_piece(i) for i in range(size)], default_index=0)
        self.lowercase = lowercase

    @classmethod
    def fit(cls, lines: Iterable[str], workdir: Path, vocab_size: int = 8000, model_type: str = "bpe",
            character_coverage: float = 1.0, user_defined_symbols: Sequence[str] = (),
            lowercase: bool = False) -> "SentencePieceTokenizer":
        import sentencepiece as spm

        workdir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".txt", dir=workdir, delete=False) as handle:
            for line in lines:
                if line.strip():
                    handle.write((line.lower() if lowercase else line).strip() + "\n")
            train_file = handle.name
        try:
            spm.SentencePieceTrainer.train(
                input=train_file,
                model_prefix=str(workdir / "spm"),
                vocab_size=vocab_size,
                model_type=model_type,
                character_coverage=character_coverage,
                user_defined_symbols=list(user_defined_symbols),
                # ids 0 and 1 are <unk> and <eos>, as in the other tokenizers; no <s>, no pad.
                unk_id=0, eos_id=1, bos_id=-1, pad_id=-1,
                unk_piece=UNK, eos_piece=EOS,
                input_sentence_size=2_000_000, shuffle_input_sentence=True,
                hard_vocab_limit=False,
                num_threads=os.cpu_count() or 1,
                minloglevel=2,
            )
        except RuntimeError as exc:
            raise ConfigError(f"sentencepiece training failed (tokenizer.vocab_size={vocab_size}?): "
                              f"{str(exc).splitlines()[0]}") from None
        finally:
            os.unlink(train_file)
        return cls(workdir / "spm.model", lowercase)

    def encode_line(self, line: str) -> List[int]:
        return self.processor.encode(line.lower() if self.lowercase else line)

    def encode_lines(self, lines: Iterable[str]) -> List[int]:
        lines = [line.lower() if self.lowercase else line for line in lines]
        eos, out = self.eos_id, []
        for ids in self.processor.encode(lines):  # batched: much faster than one call a line
            out.extend(ids)
            out.append(eos)
        return out

    def decode(self, ids: Sequence[int]) -> str:
        return _decode_by_line(ids, self.eos_id, lambda line: self.processor.decode(line))

    def save(self, directory: Path) -> None:
        shutil.copyfile(self.model_path, directory / "spm.model")

    def settings(self) -> Dict:
        return {"kind": self.kind, "lowercase": self.lowercase}

    @classmethod
    def load(cls, directory: Path, settings: Dict) -> "SentencePieceTokenizer":
        return cls(directory / "spm.model", settings.get("lowercase", False))


_KINDS = {cls.kind: cls for cls in (WordTokenizer, CharTokenizer, SentencePieceTokenizer)}


def fit_tokenizer(cfg, lines: List[str], workdir: Path, lowercase: bool = False) -> Tokenizer:
    """Fit the tokenizer described by a TokenizerConfig on the train lines."""
    if cfg.kind == "sentencepiece":
        return SentencePieceTokenizer.fit(lines, workdir, cfg.vocab_size, cfg.model_type,
                                          cfg.character_coverage, cfg.user_defined_symbols, lowercase)
    return _KINDS[cfg.kind].fit(lines, cfg.min_freq, cfg.max_size, lowercase)


def save_tokenizer(tokenizer: Tokenizer, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save(directory)
    (directory / "tokenizer.json").write_text(json.dumps(tokenizer.settings()) + "\n", encoding="utf-8")


def load_tokenizer(directory: Path) -> Tokenizer:
    directory = Path(directory)
    try:
        settings = json.loads((directory / "tokenizer.json").read_text(encoding="utf-8"))
        return _KINDS[settings["kind"]].load(directory, settings)
    except (FileNotFoundError, KeyError, json.JSONDecodeError, OSError) as exc:
        raise ModelPackageError(f"{directory}: not a saved tokenizer ({exc})") from None
