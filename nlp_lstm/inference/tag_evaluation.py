"""`nlp-lstm evaluate TAGGER FILE`: a tagger scored on any labelled file, with the numbers
training reports (conlleval precision/recall/F1, strict F1, accuracy, per label) and a
confusion matrix, as JSON and as a table a person reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

from nlp_lstm.data.conll import Sentence
from nlp_lstm.data.tag_files import InputSentence
from nlp_lstm.data.tag_schemes import check_tags
from nlp_lstm.inference.tag_stream import tag_stream
from nlp_lstm.metrics import confusion_matrix, tagging_metrics, write_conll_predictions


def evaluate_file(
    tagger,
    sentences: Iterable[InputSentence],
    where: str,
    batch_size: int = 256,
    predictions_path: Optional[Path] = None,
    progress: Optional[bool] = None,
) -> Dict[str, Any]:
    gold: List[List[str]] = []
    predicted: List[List[str]] = []
    kept: List[Sentence] = []
    for sentence, prediction in tag_stream(
        tagger, _checked(sentences, where, tagger.corpus_scheme), batch_size, progress=progress
    ):
        gold.append(sentence.gold)
        predicted.append(prediction.tags)
        if predictions_path is not None:
            kept.append(Sentence(sentence.words, sentence.gold))
    if predictions_path is not None:
        write_conll_predictions(Path(predictions_path), kept, predicted)
    metrics = tagging_metrics(gold, predicted, tagger.corpus_scheme)
    labels = sorted({t for s in gold for t in s} | {t for s in predicted for t in s})
    matrix = confusion_matrix(gold, predicted, labels)
    report: Dict[str, Any] = {"file": where, "sentences": len(gold), "tokens": sum(map(len, gold)), **metrics}
    report["per_tag"] = _per_tag(labels, matrix)
    report["confusion"] = {"labels": labels, "matrix": matrix}
    unknown = sorted({t for s in gold for t in s} - set(tagger.labels))
    if unknown:
        report["tags_unknown_to_the_model"] = unknown
    return report


def _checked(sentences: Iterable[InputSentence], where: str, scheme: str) -> Iterable[InputSentence]:
    for sentence in sentences:
        check_tags(sentence.gold, scheme, where, sentence.token_lines)
        yield sentence


def _per_tag(labels: List[str], matrix: List[List[int]]) -> Dict[str, Dict[str, float]]:
    """Token-level precision, recall and F1 of each tag (what POS users read per tag)."""
    out = {}
    for i, label in enumerate(labels):
        correct = matrix[i][i]
        gold = sum(matrix[i])
        guessed = sum(row[i] for row in matrix)
        precision = 100.0 * correct / guessed if guessed else 0.0
        recall = 100.0 * correct / gold if gold else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out[label] = {"precision": precision, "recall": recall, "f1": f1, "support": gold}
    return out


def format_report(report: Dict[str, Any], max_confusion_labels: int = 20) -> str:
    lines = [
        f"{report['file']}: {report['sentences']:,} sentences, {report['tokens']:,} tokens",
        f"accuracy {report['acc']:.2f}",
    ]
    if "f1" in report:
        lines.append(
            f"spans (conlleval): precision {report['precision']:.2f}  recall {report['recall']:.2f}  "
            f"F1 {report['f1']:.2f}  (macro F1 {report['macro_f1']:.2f}; strict F1 {report['strict_f1']:.2f})"
        )
        lines += ["", _table("span type", report["per_label"])]
    else:
        lines += ["", _table("tag", report["per_tag"])]
    labels, matrix = report["confusion"]["labels"], report["confusion"]["matrix"]
    if len(labels) <= max_confusion_labels:
        width = max(5, *(len(label) for label in labels))
        lines += [
            "",
            "confusion (rows gold, columns predicted):",
            " " * width + " " + " ".join(f"{label:>{width}}" for label in labels),
        ]
        for label, row in zip(labels, matrix):
            lines.append(f"{label:>{width}} " + " ".join(f"{n:>{width}}" for n in row[: len(labels)]))
    else:
        lines.append(f"\n({len(labels)} labels: the confusion matrix is in the JSON report)")
    if report.get("tags_unknown_to_the_model"):
        lines.append(
            f"\ngold tags the model never saw in training (always errors): "
            f"{', '.join(report['tags_unknown_to_the_model'])}"
        )
    return "\n".join(lines)


def _table(what: str, rows: Dict[str, Dict[str, float]]) -> str:
    width = max(len(what), *(len(k) for k in rows)) if rows else len(what)
    out = [f"{what:<{width}}  precision  recall      F1  support"]
    for label, r in rows.items():
        out.append(f"{label:<{width}}  {r['precision']:9.2f}  {r['recall']:6.2f}  {r['f1']:6.2f}  {r['support']:7,}")
    return "\n".join(out)
