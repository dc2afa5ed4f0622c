from django.urls import path

from minga.assistance import views

app_name = "assistance"

urlpatterns = [
    path("", views.request_list, name="list"),
    path("new/", views.request_create, name="create"),
    path("sla/", views.sla, name="sla"),
    path("<str:reference>/", views.request_detail, name="detail"),
    path("<str:reference>/edit/", views.request_edit, name="edit"),
    path("<str:reference>/act/", views.request_act, name="act"),
    path("<str:reference>/answer/", views.request_answer, name="answer"),
    path("<str:reference>/messages/", views.request_message, name="message"),
    path("<str:reference>/attachments/", views.request_attach, name="attach"),
    path("<str:reference>/attachments/<int:attachment_id>/", views.attachment_download, name="attachment"),
]
