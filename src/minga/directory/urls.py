from django.urls import path

from minga.directory import views

app_name = "directory"

urlpatterns = [
    path("", views.state_list, name="state_list"),
    path("states/<str:code>/", views.state_detail, name="state_detail"),
    path("states/<str:code>/participation/", views.state_participation, name="state_participation"),
    path("organisations/<slug:short_name>/", views.profile_edit, name="profile"),
    path("organisations/<slug:short_name>/constituency/", views.constituency_add, name="constituency_add"),
    path(
        "organisations/<slug:short_name>/constituency/remove/",
        views.constituency_remove,
        name="constituency_remove",
    ),
    path("organisations/<slug:short_name>/contacts/", views.contact_add, name="contact_add"),
    path("organisations/<slug:short_name>/webhook/", views.webhook_edit, name="webhook"),
    path("contacts/<int:pk>/", views.contact_action, name="contact_action"),
    path("coordination/", views.coordination, name="coordination"),
    path("confirm/<str:token>/", views.confirm_contact, name="confirm_contact"),
    path(
        "organisations/<slug:short_name>/security.txt",
        views.organisation_security_txt,
        name="organisation_security_txt",
    ),
    path("organisations/<slug:short_name>/team/", views.team_profile, name="team_profile"),
    path("organisations/<slug:short_name>/rfc2350.txt", views.rfc2350_text, name="rfc2350"),
    path("sectors/", views.sector_list, name="sector_list"),
    path("exchange/", views.exchange_page, name="exchange"),
    path("exchange/export/", views.exchange_export, name="exchange_export"),
    path("proposals/", views.proposal_list, name="proposals"),
    path("proposals/upload/", views.proposal_upload, name="proposal_upload"),
    path("proposals/decide/", views.proposal_decide, name="proposal_decide"),
]
