"""The classifier kinds: train_classifier, classify, triage and fine_tune.

Their request schemas are the parsers of ``api_client.schemas_classifiers``,
run through ``Request.parse`` by every caller.
"""

from __future__ import annotations

from api_client import results
from api_client.kinds import Kind, declare
from api_client.kinds.collections import _schema  # replaced with the classifier kinds' own schemas
from api_client.schemas_classifiers import (
    parse_classify_request,
    parse_fine_tune_request,
    parse_train_request,
    parse_triage_request,
)

TRAINING_TIME_LIMITS = (3600, 3720)
"""(soft, hard) seconds of one training or fine-tuning task: SetFit on Banking77 at 8 examples per class
takes about 200 s on 2 CPU cores; a task past the soft limit stops between steps and is retried."""

TRAIN_CLASSIFIER = declare(
    Kind(
        name="train_classifier",
        request=_schema("TrainRequest", parse_train_request),
        read_result=results.read_summary,
        output="classifier_versions (the summary is the report and names the version)",
        text_fields=("texts",),
        lane="batch",
        time_limits=TRAINING_TIME_LIMITS,
    )
)
CLASSIFY = declare(
    Kind(
        name="classify",
        request=_schema("ClassifyRequest", parse_classify_request),
        read_result=results.read_predictions,
        output="item_results: one prediction (jsonb) by item (text)",
        text_fields=("texts",),
    )
)
TRIAGE = declare(
    Kind(
        name="triage",
        request=_schema("TriageRequest", parse_triage_request),
        read_result=results.read_triage,
        output="item_results: {category, similar, duplicates} (jsonb) by item (text)",
        text_fields=("texts",),
        lane="interactive",
    )
)
FINE_TUNE = declare(
    Kind(
        name="fine_tune",
        request=_schema("FineTuneRequest", parse_fine_tune_request),
        read_result=results.read_summary,
        output="models (a registered version; the summary names it with its evaluation before and after)",
        lane="batch",
        time_limits=TRAINING_TIME_LIMITS,
    )
)
