"""How the classifier commands print what they got: tables, the training report, predictions, triage records.

Each function returns the lines to print, so the shapes are tested without a
service. Texts and labels are put on one line (tabs and line breaks become
spaces): every printed row is one line.
"""

from __future__ import annotations

from typing import Any

from embedq.worker.cli.collections import _one_line


def figure(value: Any, digits: int = 3) -> str:
    """A metric with ``digits`` decimals, or ``-`` when it is undefined."""
    return "-" if value is None else f"{value:.{digits}f}"


def table(rows: list[tuple[str, ...]], right: tuple[int, ...]) -> list[str]:
    """Rows as aligned columns apart by two spaces; the columns in ``right`` aligned right."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.rjust(widths[i]) if i in right else cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip()
        for row in rows
    ]


def classifiers_table(found: list[dict[str, Any]]) -> list[str]:
    """One row per classifier: name, model, active version, its method, number of versions, its threshold."""
    rows: list[tuple[str, ...]] = [("name", "model", "active", "method", "versions", "threshold")]
    for c in found:
        active = "-" if c["active_version"] is None else f"v{c['active_version']}"
        rows.append((c["name"], c["model"], active, c["method"] or "-", str(c["versions"]), figure(c["threshold"], 4)))
    return table(rows, right=(4, 5))


def classifier_lines(info: dict[str, Any], versions: list[dict[str, Any]]) -> list[str]:
    """A heading line, then one row per version with its held-out figures; ``*`` marks the active one."""
    active = "none" if info["active_version"] is None else f"version {info['active_version']}"
    lines = [f"classifier {info['name']}: model {info['model']}, active {active}, {info['versions']} version(s)"]
    if not versions:
        return lines
    rows: list[tuple[str, ...]] = [("version", "active", "method", "accuracy", "macro-F1", "threshold", "coverage")]
    for v in versions:
        m = v["metrics"] or {}
        cells = (m.get("accuracy"), m.get("macro_f1"), v["threshold"], m.get("coverage"))
        rows.append((str(v["version"]), "*" if v["active"] else "", v["method"], *map(figure, cells)))
    return lines + table(rows, right=(0, 3, 4, 5, 6))


def activated_line(info: dict[str, Any]) -> str:
    """What a promotion or rollback left active."""
    return f"classifier {info['name']}: active version {info['active_version']} ({info['method']})"


def report_lines(report: dict[str, Any]) -> list[str]:
    """A training report: the version and whether it is active, the held-out figures, the abstention
    threshold with its coverage and the accuracy of the answered part, and the per-class table."""
    state = "active" if report["active"] else "not active (`embedq promote` makes it active)"
    lines = [f"classifier {report['classifier']}: version {report['version']} ({report['method']}), {state}"]
    if not report.get("n_eval"):
        return [*lines, "no held-out examples (--eval-split 0): no accuracy and no abstention threshold"]
    coverage = "-" if report["coverage"] is None else f"{report['coverage']:.1%}"
    lines += [
        f"held out {report['n_eval']}: accuracy {figure(report['accuracy'])}, macro-F1 {figure(report['macro_f1'])}",
        f"abstention threshold {figure(report['threshold'], 4)}: answers {coverage} of the held-out examples, "
        f"accuracy of the answered {figure(report['answered_accuracy'])}",
    ]
    rows: list[tuple[str, ...]] = [("label", "precision", "recall", "f1", "support")]
    for label, c in report["per_class"].items():
        rows.append((_one_line(label), figure(c["precision"]), figure(c["recall"]), figure(c["f1"]), str(c["support"])))
    return lines + table(rows, right=(1, 2, 3, 4))


def prediction_cells(p: dict[str, Any], top: bool) -> str:
    """label, score, ``abstained`` or ``-``, and with ``top`` the best labels ``label score, ...``; tab-separated."""
    cells = [p["label"], f"{p['score']:.4f}", "abstained" if p["abstained"] else "-"]
    if top:
        cells.append(", ".join(f"{label} {score:.4f}" for label, score in p["top"]))
    return "\t".join(_one_line(cell) for cell in cells)


def prediction_lines(texts: list[str], predictions: list[dict[str, Any]], top: bool) -> list[str]:
    """One line per text: its prediction's cells, then the text."""
    return [f"{prediction_cells(p, top)}\t{_one_line(t)}" for t, p in zip(texts, predictions, strict=True)]


def triage_lines(texts: list[str], records: list[dict[str, Any]], top: bool) -> list[str]:
    """Per text a block: ``# TEXT``, ``category`` with the prediction's cells, then one line per similar
    document, ``duplicate`` or ``similar``, score, id, text; blocks apart by a blank line."""
    lines: list[str] = []
    for n, (text, record) in enumerate(zip(texts, records, strict=True)):
        lines += [""] if n else []
        lines += [f"# {_one_line(text)}", f"category\t{prediction_cells(record['category'], top)}"]
        duplicates = {hit["id"] for hit in record["duplicates"]}
        for hit in record["similar"]:
            what = "duplicate" if hit["id"] in duplicates else "similar"
            lines.append(f"{what}\t{hit['score']:.4f}\t{_one_line(hit['id'])}\t{_one_line(hit.get('text', ''))}")
    return lines


def fine_tune_lines(result: dict[str, Any]) -> list[str]:
    """The new model, then each evaluation figure before and after training (and after, by Matryoshka dimension)."""
    lines = [
        f"model {result['model']} (id {result['model_id']}, version {result['model_version']}) fine-tuned from "
        f"{result['base']} with {result['loss']}: {result['steps']} steps in {result['train_seconds']:.1f} s"
    ]
    before, after = result.get("before") or {}, result.get("after") or {}
    if not before and not after:
        return [*lines, "no evaluation: give --eval-pairs"]
    rows: list[tuple[str, ...]] = [("figure", "before", "after")]
    rows += [(key, figure(before.get(key), 4), figure(after.get(key), 4)) for key in {**before, **after}]
    for dim, figures in (result.get("after_by_dim") or {}).items():
        rows += [(f"{key} at {dim} dims", "", figure(value, 4)) for key, value in figures.items()]
    return lines + table(rows, right=(1, 2))
