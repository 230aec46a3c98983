"""`nlp-lstm tag`: a tagger over text, CoNLL or CoNLL-U input of any size, streamed, with
every output record traceable to its input line."""

from __future__ import annotations

import contextlib
import json
import sys

from nlp_lstm.cli.inputs import columns_to_read, detected
from nlp_lstm.data.conll import line_comment
from nlp_lstm.data.tag_files import (
    conll_sentences,
    conllu_sentences,
    format_conllu,
    input_lines,
    output_path_ok,
    split_sentences,
    text_sentences,
)
from nlp_lstm.errors import NlpLstmError
from nlp_lstm.fileio import atomic_open
from nlp_lstm.inference import load
from nlp_lstm.inference.records import jsonl_record
from nlp_lstm.inference.tag_stream import tag_stream


def tag(args) -> None:
    tagger = load(args.model, args.device, kind="tagger")
    tagger.set_precision(args.precision)
    if (args.nbest or args.marginals) and args.format != "jsonl":
        raise NlpLstmError("--nbest and --marginals need --format jsonl")
    output_path_ok(args.output)
    lines = detected(args, input_lines(args.file), ("text", "conll", "conllu"))
    if args.split_sentences and args.input != "text":
        raise NlpLstmError(f"--split-sentences splits raw text: it needs --input text (the input is {args.input})")
    columns = columns_to_read(tagger, args.input, args.predict_features)
    where = "stdin" if args.file == "-" else args.file
    if args.input == "conll":
        sentences = conll_sentences(lines, where, columns)
    elif args.input == "conllu":
        sentences = conllu_sentences(lines, where)
    else:
        sentences = text_sentences(lines, split_sentences if args.split_sentences else None)
    field = args.conllu_field or tagger.conllu_field
    progress = {"auto": None, "on": True, "off": False}[args.progress]
    # n-best and marginals come from the same pass (the same emissions) as the tags
    results = tag_stream(
        tagger,
        sentences,
        args.batch_size,
        spans=args.format == "jsonl",
        progress=progress,
        nbest=args.nbest,
        marginals=args.marginals,
    )
    with atomic_open(args.output, "w") if args.output else contextlib.nullcontext(sys.stdout) as out:
        written = 0  # sentences written: CoNLL-U sent_id
        text_line = None  # text format: the input line now being written
        for sentence, prediction in results:
            tags = prediction.tags
            if args.format == "text":
                # One output line per input line: a paragraph's sentences are joined back on
                # its line, a blank line stays blank.
                if text_line is not None:
                    out.write(" " if sentence.line == text_line else "\n")
                out.write(" ".join(f"{w}/{t}" for w, t in zip(sentence.words, tags)))
                text_line = sentence.line
            elif args.format == "jsonl":
                # Every input line gets a record (a blank one, no tokens), numbered, so
                # records line up with the input.
                record = jsonl_record(sentence, prediction, sentence_start=args.split_sentences)
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
            elif not sentence.words:
                continue  # a blank line is no sentence; `# line = N` maps the others back
            elif args.format == "conll":
                out.write(
                    line_comment(sentence.line)
                    + "\n"
                    + "\n".join(f"{w}\t{t}" for w, t in zip(sentence.words, tags))
                    + "\n\n"
                )
            else:
                written += 1
                out.write(format_conllu(sentence, tags, written, field, args.misc_key) + "\n\n")
        if text_line is not None:
            out.write("\n")
