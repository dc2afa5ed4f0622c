"""A list and a detail endpoint over SharedDocument, written the way every capability writes
them, so the standard outsider test can run against real URLs."""

from django.http import HttpRequest, JsonResponse

from minga.core import access
from tests.sharedapp.models import SharedDocument


def document_list(request: HttpRequest) -> JsonResponse:
    documents = SharedDocument.objects.visible_to(request.user).order_by("pk")
    return JsonResponse({"items": [{"uuid": str(d.uuid), "title": d.title} for d in documents]})


def document_detail(request: HttpRequest, uuid: str) -> JsonResponse:
    document = access.get_readable_or_404(SharedDocument.objects.all(), request.user, uuid=uuid)
    return JsonResponse({"uuid": str(document.uuid), "title": document.title, "tlp": document.tlp})
