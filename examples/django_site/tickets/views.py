import json

from api_client.errors import BadRequest
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from tickets.client import embedq


@csrf_exempt
@require_POST
def similar(request: HttpRequest) -> JsonResponse:
    """``{"text", "candidates"}`` → the candidates ranked by similarity to the text, best first."""
    try:
        body = json.loads(request.body)
        text, candidates = body["text"], body["candidates"]
    except (ValueError, KeyError, TypeError):
        return JsonResponse({"error": 'expected JSON {"text": "...", "candidates": ["...", ...]}'}, status=400)
    try:
        scores = embedq().similarity([text], candidates).result(timeout=30)[0]
    except BadRequest as exc:
        return JsonResponse({"error": exc.message}, status=400)
    ranked = sorted(zip(candidates, scores.tolist(), strict=True), key=lambda pair: -pair[1])
    return JsonResponse({"ranked": [{"text": candidate, "score": score} for candidate, score in ranked]})
