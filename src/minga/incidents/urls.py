from django.urls import path

from minga.incidents import views

app_name = "incidents"

urlpatterns = [
    path("", views.board, name="board"),
    path("new/", views.incident_create, name="create"),
    path("metrics/", views.metrics_page, name="metrics"),
    path("<str:reference>/", views.incident_detail, name="detail"),
    path("<str:reference>/edit/", views.incident_edit, name="edit"),
    path("<str:reference>/status/", views.incident_status, name="status"),
    path("<str:reference>/comment/", views.incident_comment, name="comment"),
    path("<str:reference>/observables/", views.incident_observables, name="observables"),
    path("<str:reference>/propose/", views.incident_propose, name="propose"),
    path("<str:reference>/participants/", views.incident_participant, name="participant"),
    path("<str:reference>/answer/", views.incident_answer, name="answer"),
    path("<str:reference>/tasks/", views.incident_task, name="task"),
    path("<str:reference>/tasks/<int:task_id>/", views.incident_task_status, name="task_status"),
    path("<str:reference>/links/", views.incident_link, name="link"),
    path("<str:reference>/events/", views.incident_events, name="events"),
    path("<str:reference>/merge/", views.incident_merge, name="merge"),
    path("<str:reference>/stix.json", views.incident_stix, name="stix"),
    path("<str:reference>/evidence/new/", views.evidence_create, name="evidence_create"),
    path("<str:reference>/evidence/<int:evidence_id>/", views.evidence_detail, name="evidence"),
    path(
        "<str:reference>/evidence/<int:evidence_id>/custody/", views.evidence_custody, name="evidence_custody"
    ),
    path("<str:reference>/evidence/<int:evidence_id>/verify/", views.evidence_verify, name="evidence_verify"),
    path(
        "<str:reference>/evidence/<int:evidence_id>/download/",
        views.evidence_download,
        name="evidence_download",
    ),
]
