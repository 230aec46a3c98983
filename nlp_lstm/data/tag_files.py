"""Files a tagger reads and writes, one sentence at a time (inputs larger than memory
stream): raw text, CoNLL column files and CoNLL-U in; CoNLL, text, JSON lines and CoNLL-U
out. Errors name the file and the line.

CoNLL-U output from CoNLL-U input fills one field of each word line (UPOS, XPOS, or a
`key=value` entry of MISC) and leaves every other line and field as it was read: comments
(blocks of comments alone included, wherever they stand), multiword-token ranges, empty
nodes, the other columns. (Lines are read with "\\n" as the
terminator: a file with "\\r\\n" line ends is written back with "\\n".)
"""

from __future__ import annotations

import itertools
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

from nlp_lstm.data.conll import is_line_comment, line_comment
from nlp_lstm.data.readers import decoded_lines, iter_lines
from nlp_lstm.errors import DataError

# The fallback tokenizer (and the dependency-free one `nlp-lstm export` describes): words
# (letters/digits, inner hyphens and apostrophes kept) and single punctuation marks.
TOKEN_PATTERN = re.compile(r"\w+(?:[-'’]\w+)*|[^\w\s]")
CONLLU_FIELDS = {"upos": 3, "xpos": 4, "misc": 9}


def tokenize(text: str) -> List[Tuple[str, int, int]]:
    """(token, start, end) character offsets into `text`, tokenised as the Penn Treebank
    corpora the taggers learn from are ("does n't", "Boeing 's", "U.S.", "3.5", "1,000"):
    segtok's word tokenizer and contraction splitter, as flair uses them. Its tokens are
    substrings of the text in order; should they ever not cover every non-space character,
    the regex TOKEN_PATTERN tokenises the text instead, so nothing is dropped."""
    from segtok.tokenizer import split_contractions, word_tokenizer

    spans, position = [], 0
    for token in split_contractions(word_tokenizer(text)):
        start = text.find(token, position)
        if start < 0 or text[position:start].strip():
            break
        spans.append((token, start, start + len(token)))
        position = start + len(token)
    else:
        if not text[position:].strip():
            return spans
    return [(m.group(), m.start(), m.end()) for m in TOKEN_PATTERN.finditer(text)]


@dataclass
class InputSentence:
    words: List[str]
    features: Dict[str, List[str]] = field(default_factory=dict)
    gold: Optional[List[str]] = None  # a labelled file's tags (evaluation)
    text: Optional[str] = None  # raw input: the text the tokens come from...
    offsets: Optional[List[Tuple[int, int]]] = None  # ...and each token's character span in it
    text_start: int = 0  # where `text` starts in its input line (a split sentence's offset)
    block: Optional[List[str]] = None  # CoNLL-U input: the sentence's lines as read
    word_lines: Optional[List[int]] = None  # CoNLL-U input: which lines of `block` are words
    line: int = 0  # where the sentence starts in its file (1-based)
    token_lines: Optional[List[int]] = None  # file input: each word's line, for errors about one word


def input_lines(path: str, what: str = "input file") -> Iterator[Tuple[int, str]]:
    """(line number, line) of a UTF-8 file, or of stdin for '-', one at a time."""
    if path != "-":
        yield from enumerate(iter_lines(path, what), start=1)
        return
    yield from enumerate(decoded_lines(sys.stdin.buffer, "stdin", f"no {what.split()[0]} to read"), start=1)


# Input format detection (`--input auto`): the name's extension, else the first lines.
# .txt decides nothing: CoNLL-2000 and many column corpora ship as .txt.
EXTENSIONS = {".conll": "conll", ".conll2000": "conll", ".bio": "conll", ".iob": "conll", ".conllu": "conllu"}
SNIFF_LINES = 300  # only the head is read ahead (and handed on), so the input still streams
CONLLU_ID = re.compile(r"^\d+(?:-\d+|\.\d+)?$")  # a word, a multiword range or an empty node


def detect_input(path: str, lines: Iterator[Tuple[int, str]], choices=("text", "conll", "conllu")
                 ) -> Tuple[str, str, Iterator[Tuple[int, str]]]:
    """(format, why, lines): the format of an input among `choices`, the reason in words,
    and the same lines again, none lost to the look ahead. Without `text` among the
    choices (labelled files) the answer is conll unless the input looks like CoNLL-U."""
    suffix = Path(path).suffix.lower() if path != "-" else ""
    if EXTENSIONS.get(suffix) in choices:
        return EXTENSIONS[suffix], f"extension {suffix}", lines
    head = list(itertools.islice(lines, SNIFF_LINES))
    fmt, why = _sniff([line for _, line in head], choices)
    return fmt, why, itertools.chain(head, lines)


def _sniff(sample: List[str], choices) -> Tuple[str, str]:
    filled = [line for line in sample if line.strip()]
    if "conllu" in choices:
        if any(line.startswith(("# sent_id", "# text")) for line in filled):
            return "conllu", "# sent_id / # text comments"
        rows = [line.split("\t") for line in filled if not line.startswith("#")]
        fits = sum(1 for f in rows if len(f) == 10 and CONLLU_ID.match(f[0]))
        if rows and fits >= 0.8 * len(rows):
            return "conllu", "lines of 10 tab-separated fields with a word ID first"
    if "text" not in choices:
        return "conll", "no CoNLL-U word lines"
    if any(line.split()[0] == "-DOCSTART-" for line in filled):
        return "conll", "a -DOCSTART- line"
    counts = Counter(len(line.split()) for line in filled)
    columns, count = counts.most_common(1)[0] if counts else (0, 0)
    blocks = sum(1 for i, line in enumerate(sample) if line.strip() and (i == 0 or not sample[i - 1].strip()))
    # Columns: most lines the same count of fields, in sentences of several lines each
    # (running text has lines of every length, a paragraph or a sentence a line).
    if columns >= 2 and count >= 0.8 * len(filled) and len(filled) >= 2 * blocks:
        spread = f"{min(counts)}-{max(counts)}" if len(counts) > 1 else f"{columns}"
        return "conll", f"{spread} columns per line"
    return "text", "lines of running text, not columns"


def text_sentences(lines: Iterable[Tuple[int, str]], split=None) -> Iterator[InputSentence]:
    """One sentence per line, or per sentence of it with `split` (a function from a
    paragraph to (start, end) character spans of its sentences), each with its line number
    and its start in the line. A blank line is one empty sentence (no words), so that what
    is written for each line can be lined up with the input."""
    for line_no, line in lines:
        pieces = split(line) if split is not None and line.strip() else [(0, len(line))]
        found = False
        for start, end in pieces:
            text = line[start:end]
            tokens = tokenize(text)
            if tokens:
                found = True
                yield InputSentence([t for t, _, _ in tokens], text=text, offsets=[(s, e) for _, s, e in tokens],
                                    text_start=start, line=line_no)
        if not found:
            yield InputSentence([], text=line, offsets=[], line=line_no)


def conll_sentences(lines: Iterable[Tuple[int, str]], path: str, feature_columns: Dict[str, int],
                    gold_column: Optional[int] = None) -> Iterator[InputSentence]:
    """Column files: the word in column 0, the model's input columns at their indices, gold
    tags (for evaluation) in `gold_column`; blank lines between sentences; -DOCSTART-
    and `# line = N` comments skipped. A sentence's `line` is its first word line. Every token
    line must have as many columns as the first one."""
    current: List[List[str]] = []
    current_lines: List[int] = []
    n_columns, start = None, 0
    needed = list(feature_columns.values()) + ([gold_column] if gold_column is not None else [])

    def sentence() -> InputSentence:
        return InputSentence([f[0] for f in current], {n: [f[i] for f in current] for n, i in feature_columns.items()},
                             [f[gold_column] for f in current] if gold_column is not None else None, line=start,
                             token_lines=list(current_lines))

    for line_no, line in lines:
        fields = line.split()
        if not fields:
            if current:
                yield sentence()
                current, current_lines = [], []
            continue
        if fields[0] == "-DOCSTART-" or is_line_comment(line):
            continue
        if n_columns is None:
            n_columns = len(fields)
            if any(not -n_columns <= i < n_columns for i in needed):
                what = dict(feature_columns, **({"gold tags": gold_column} if gold_column is not None else {}))
                raise DataError(f"{path}:{line_no}: {n_columns} column(s); the model reads columns {what}")
        elif len(fields) != n_columns:
            raise DataError(f"{path}:{line_no}: {len(fields)} column(s), expected {n_columns} as on the first token line")
        if not current:
            start = line_no
        current.append(fields)
        current_lines.append(line_no)
    if current:
        yield sentence()


def conllu_sentences(lines: Iterable[Tuple[int, str]], path: str,
                     gold_field: Optional[str] = None) -> Iterator[InputSentence]:
    """CoNLL-U sentences with every line kept for output; the integer-ID lines are the
    words (multiword-token ranges and empty nodes are carried, not tagged).

    A block of comments alone (`# newdoc id = ...` between documents, `# end of document`
    after the last sentence) is no sentence, so it is carried by one: it joins the block
    of the sentence before it, a blank line between them (the first sentence's, ahead of
    it, when none came before). Each sentence is therefore handed on only once the next
    one has started, or the file has ended."""
    block: List[str] = []
    word_lines: List[int] = []
    words: List[str] = []
    gold: List[str] = []
    start = 0  # the block's first line in the file: word_lines[i] is the word's line less start
    column = CONLLU_FIELDS[gold_field] if gold_field else None
    held: Optional[InputSentence] = None  # the last sentence, until we know what follows it
    leading: List[str] = []  # comment-only blocks before the first sentence
    leading_start = 0

    def end_of_block() -> Optional[InputSentence]:
        """The block just ended as a sentence, or None for a comment-only one (carried)."""
        nonlocal held, leading_start
        if not block:
            return None
        if not words:
            if any(not line.startswith("#") for line in block):
                raise DataError(f"{path}:{start}: a sentence without word lines")
            if held is not None:
                held.block += [""] + block
            else:
                leading_start = leading_start or start
                leading.extend(block + [""])
            return None
        before = list(leading)
        leading.clear()
        sentence = InputSentence(list(words), gold=list(gold) if column is not None else None,
                                 block=before + block, word_lines=[len(before) + i for i in word_lines], line=start,
                                 token_lines=[start + i for i in word_lines])
        previous, held = held, sentence
        return previous

    for line_no, line in lines:
        if not line.strip():
            done = end_of_block()
            if done is not None:
                yield done
            block, word_lines, words, gold = [], [], [], []
            continue
        if not block:
            start = line_no
        block.append(line)
        if line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 10:
            raise DataError(f"{path}:{line_no}: {len(fields)} tab-separated field(s), CoNLL-U needs 10")
        if "-" in fields[0] or "." in fields[0]:
            continue  # a multiword-token range or an empty node: passed through
        if not fields[0].isdigit():
            raise DataError(f"{path}:{line_no}: token ID {fields[0]!r} is not an integer")
        word_lines.append(len(block) - 1)
        words.append(fields[1])
        if column is not None:
            gold.append(fields[column])
    done = end_of_block()
    if done is not None:
        yield done
    if held is not None:
        yield held
    elif leading:
        raise DataError(f"{path}:{leading_start}: comment lines but no sentence (no word lines) in the file")


def split_sentences(paragraph: str) -> List[Tuple[int, int]]:
    """(start, end) character spans of a paragraph's sentences, by segtok (the rule-based
    splitter flair uses: abbreviations, initials, quotes and ellipses handled; pure Python,
    no model to download). Its sentences are substrings, found in order to keep offsets."""
    from segtok.segmenter import split_single

    spans, position = [], 0
    for sentence in split_single(paragraph):
        start = paragraph.find(sentence, position)
        if start < 0:  # not expected; keep the rest whole rather than lose text
            return spans + ([(position, len(paragraph))] if paragraph[position:].strip() else [])
        spans.append((start, start + len(sentence)))
        position = start + len(sentence)
    return spans


# ------------------------------------------------------------------ writers
def _with_misc(misc: str, key: str, value: str) -> str:
    """MISC with `key=value` set (an existing entry for key replaced, others kept in order)."""
    entries = [] if misc == "_" else [e for e in misc.split("|") if e.split("=", 1)[0] != key]
    return "|".join(entries + [f"{key}={value}"])


def _set_field(fields: List[str], field_name: str, tag: str, misc_key: str) -> None:
    index = CONLLU_FIELDS[field_name]
    fields[index] = _with_misc(fields[index], misc_key, tag) if field_name == "misc" else tag


def format_conllu(sentence: InputSentence, tags: List[str], sent_id: int, field_name: str,
                  misc_key: str = "Tag") -> str:
    """The sentence as CoNLL-U (no trailing blank line) with the tags in `field_name`."""
    if sentence.block is not None:
        out = list(sentence.block)
        for index, tag in zip(sentence.word_lines, tags):
            fields = out[index].split("\t")
            _set_field(fields, field_name, tag, misc_key)
            out[index] = "\t".join(fields)
        return "\n".join(out)
    text = sentence.text if sentence.text is not None else " ".join(sentence.words)
    lines = [f"# sent_id = {sent_id}", f"# text = {text}"]
    if sentence.line:
        lines.append(line_comment(sentence.line))
    for i, (word, tag) in enumerate(zip(sentence.words, tags)):
        fields = [str(i + 1), word] + ["_"] * 8
        if sentence.offsets is not None and i + 1 < len(sentence.words) \
                and sentence.offsets[i][1] == sentence.offsets[i + 1][0]:
            fields[9] = "SpaceAfter=No"
        _set_field(fields, field_name, tag, misc_key)
        lines.append("\t".join(fields))
    return "\n".join(lines)


def read_labelled(path: str, fmt: str, feature_columns: Dict[str, int], conllu_field: str = "upos"
                  ) -> Iterator[InputSentence]:
    """A labelled file for evaluation: CoNLL (gold tags in the last column) or CoNLL-U
    (gold in `conllu_field`)."""
    lines = input_lines(path, "labelled file")
    if fmt == "conllu":
        return conllu_sentences(lines, path, conllu_field)
    return conll_sentences(lines, path, feature_columns, gold_column=-1)


def output_path_ok(path: Optional[str]) -> None:
    if path is not None and Path(path).is_dir():
        raise DataError(f"{path}: is a directory (--output needs a file name)")
