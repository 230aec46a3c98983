"""A tagging corpus: read the splits, fit vocabularies on train, encode, batch.

Vocabularies (words, characters, tags, extra feature columns) come from the train split
only. A tag seen in dev/test but never in train is kept in the gold data and simply can
never be predicted: it is scored as an error, never a crash.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple


from nlp_lstm.data.conll import Sentence, read_conll, read_conllu
from nlp_lstm.data.fetch import fetch_corpus
from nlp_lstm.data.registry import get_corpus
from nlp_lstm.data.tag_schemes import check_tags, convert
from nlp_lstm.data.vocab import Vocab, build_vocab_from_counter
from nlp_lstm.errors import ConfigError, DataError

PAD, UNK = "<pad>", "<unk>"


def read_tagging_splits(data_cfg, data_dir: Path, log=print) -> Dict[str, List[Sentence]]:
    """{train, valid, test} sentences; valid is held out of train where the corpus has none."""
    if data_cfg.name in ("conll", "conllu"):
        paths = {s: getattr(data_cfg, s) for s in ("train", "valid", "test") if getattr(data_cfg, s)}
        fmt = data_cfg.name
    else:
        try:
            corpus = get_corpus(data_cfg.name)
        except DataError as exc:
            raise ConfigError(f"config data.name: {exc}") from None
        if corpus.format == "lines":
            raise ConfigError(f"config data.name={data_cfg.name!r}: a text corpus, not a tagging corpus for task=tagging")
        paths = fetch_corpus(corpus.name, data_dir)
        fmt = corpus.format
    splits = {}
    for split, path in paths.items():
        what = f"data.{split} file"
        if fmt == "conllu":
            sentences = read_conllu(path, data_cfg.conllu_field, what)
        else:
            sentences = read_conll(path, data_cfg.word_column, data_cfg.tag_column, dict(data_cfg.feature_columns), what)
        for sentence in sentences:
            check_tags(sentence.tags, data_cfg.tag_scheme, str(path), sentence.token_lines)
        splits[split] = sentences
    if "valid" not in splits:
        if len(splits["train"]) < 2:
            raise DataError(f"{paths['train']}: data.train file has {len(splits['train'])} sentence(s), too few to "
                            "hold out a dev split: give data.valid")
        order = list(range(len(splits["train"])))
        random.Random(data_cfg.split_seed).shuffle(order)
        n_dev = max(1, int(len(order) * data_cfg.dev_fraction))
        held = set(order[:n_dev])
        splits["valid"] = [s for i, s in enumerate(splits["train"]) if i in held]
        splits["train"] = [s for i, s in enumerate(splits["train"]) if i not in held]
        log(f"{data_cfg.name} has no dev split: {n_dev} train sentences (data.dev_fraction="
            f"{data_cfg.dev_fraction}, seed {data_cfg.split_seed}) are held out as valid")
    return splits


@dataclass
class TaggingVocabs:
    words: Vocab
    chars: Vocab
    tags: Vocab
    features: Dict[str, Vocab]
    lowercase_words: bool = False

    @classmethod
    def fit(cls, sentences: Sequence[Sentence], train_scheme: str, corpus_scheme: str, lowercase_words: bool,
            min_word_freq: int = 1) -> "TaggingVocabs":
        words, chars, tags = Counter(), Counter(), Counter()
        features: Dict[str, Counter] = {name: Counter() for name in (sentences[0].features if sentences else {})}
        for s in sentences:
            words.update(w.lower() if lowercase_words else w for w in s.words)
            for w in s.words:
                chars.update(w)
            tags.update(convert(s.tags, corpus_scheme, train_scheme))
            for name, values in s.features.items():
                features[name].update(values)
        word_vocab = build_vocab_from_counter(words, min_word_freq, [PAD, UNK])
        char_vocab = build_vocab_from_counter(chars, 1, [PAD, UNK])
        feature_vocabs = {n: build_vocab_from_counter(c, 1, [PAD, UNK]) for n, c in features.items()}
        for vocab in (word_vocab, char_vocab, *feature_vocabs.values()):
            vocab.set_default_index(1)
        # "O" first so that index 0 is a valid tag for padding positions.
        tag_vocab = Vocab(sorted(tags, key=lambda t: (t != "O", t)))
        return cls(word_vocab, char_vocab, tag_vocab, feature_vocabs, lowercase_words)

    def with_words(self, extra: Sequence[str]) -> "TaggingVocabs":
        """The same vocabularies with `extra` words appended to the word vocabulary."""
        known = set(self.words.get_itos())
        itos = self.words.get_itos() + [w for w in dict.fromkeys(extra) if w not in known]
        return TaggingVocabs(Vocab(itos, 1), self.chars, self.tags, self.features, self.lowercase_words)

    def extended_with(self, other: "TaggingVocabs") -> "TaggingVocabs":
        """These vocabularies, each followed by the entries only `other` has (a package's
        vocabularies extended with a new train split's: existing ids stay as they are)."""
        def extend(mine: Vocab, theirs: Vocab, default: Optional[int]) -> Vocab:
            known = set(mine.get_itos())
            return Vocab(mine.get_itos() + [t for t in theirs.get_itos() if t not in known], default)

        return TaggingVocabs(extend(self.words, other.words, 1), extend(self.chars, other.chars, 1),
                             extend(self.tags, other.tags, None),
                             {n: extend(v, other.features[n], 1) for n, v in self.features.items()},
                             self.lowercase_words)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        obj = {"words": self.words.get_itos(), "chars": self.chars.get_itos(), "tags": self.tags.get_itos(),
               "features": {n: v.get_itos() for n, v in self.features.items()},
               "lowercase_words": self.lowercase_words}
        (directory / "vocabs.json").write_text(json.dumps(obj, ensure_ascii=False) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> "TaggingVocabs":
        obj = json.loads((directory / "vocabs.json").read_text(encoding="utf-8"))
        return cls(Vocab(obj["words"], 1), Vocab(obj["chars"], 1), Vocab(obj["tags"]),
                   {n: Vocab(itos, 1) for n, itos in obj["features"].items()}, obj["lowercase_words"])


@dataclass
class EncodedSentence:
    words: List[int]
    chars: List[List[int]]
    features: Dict[str, List[int]]
    tags: Optional[List[int]]  # None where a gold tag is unknown to the model (never trained on)
    # The feature LM's token stream for the sentence, and per word the stream positions of
    # its first and last token (one token per word for a word LM; see lm_stream).
    lm_ids: Optional[List[int]] = None
    lm_first: Optional[List[int]] = None
    lm_last: Optional[List[int]] = None


def encode(sentence: Sentence, vocabs: TaggingVocabs, train_scheme: str, corpus_scheme: str,
           lm_tokenizer=None, char_cache: Optional[Dict[str, List[int]]] = None) -> EncodedSentence:
    """`char_cache`: word -> character ids, filled as words are seen (a tagger encoding a
    large input looks each frequent word's characters up once)."""
    words = [w.lower() for w in sentence.words] if vocabs.lowercase_words else sentence.words
    tags = None
    if sentence.tags:
        converted = convert(sentence.tags, corpus_scheme, train_scheme)
        if all(t in vocabs.tags for t in converted):
            tags = vocabs.tags.lookup_indices(converted)
    lm_ids, lm_first, lm_last = lm_stream(sentence.words, lm_tokenizer) if lm_tokenizer is not None else (None,) * 3
    return EncodedSentence(
        words=vocabs.words.lookup_indices(words),
        chars=(_cached_chars(sentence.words, vocabs.chars, char_cache) if char_cache is not None
               else [vocabs.chars.lookup_indices(w) for w in sentence.words]),
        features={n: v.lookup_indices(sentence.features.get(n, [UNK] * len(words))) for n, v in vocabs.features.items()},
        tags=tags, lm_ids=lm_ids, lm_first=lm_first, lm_last=lm_last,
    )


def _cached_chars(words: Sequence[str], chars: Vocab, cache: Dict[str, List[int]]) -> List[List[int]]:
    out = []
    for word in words:
        ids = cache.get(word)
        if ids is None:
            if len(cache) >= 500_000:  # bounded: a stream of ever-new words must not grow it forever
                cache.clear()
            ids = cache[word] = chars.lookup_indices(word)
        out.append(ids)
    return out


def lm_stream(words: Sequence[str], tokenizer) -> Tuple[List[int], List[int], List[int]]:
    """The sentence as the feature LM reads it, and each word's first and last position.

    Word LM: one id per word (<unk> for an unknown one). Character LM: the words' characters
    with a space between words, as running text reads (Akbik et al. 2018). Subword LM: each
    word's pieces (sentencepiece splits at whitespace, so encoding word by word gives the
    pieces of the whole line)."""
    kind = tokenizer.kind
    space = None
    if kind == "char":
        space_ids = tokenizer.encode_line(" ")
        space = space_ids[0] if len(space_ids) == 1 else tokenizer.unk_id
    stream: List[int] = []
    first: List[int] = []
    last: List[int] = []
    for i, word in enumerate(words):
        ids = tokenizer.encode_line(word)
        if kind == "word" and len(ids) != 1:
            ids = [tokenizer.unk_id]
        ids = ids or [tokenizer.unk_id]
        if space is not None and i > 0:
            stream.append(space)
        first.append(len(stream))
        stream.extend(ids)
        last.append(len(stream) - 1)
    return stream, first, last


