"""Choices of the core app, with translated labels."""

from django.db import models
from django.utils.translation import gettext_lazy as _


class TLP(models.TextChoices):
    """Traffic Light Protocol 2.0 levels, from most to least open."""

    CLEAR = "clear", _("TLP:CLEAR")
    GREEN = "green", _("TLP:GREEN")
    AMBER = "amber", _("TLP:AMBER")
    AMBER_STRICT = "amber+strict", _("TLP:AMBER+STRICT")
    RED = "red", _("TLP:RED")


class Role(models.TextChoices):
    NODE_ADMIN = "node_admin", _("Node admin")
    ORG_ADMIN = "org_admin", _("Organisation admin")
    ANALYST = "analyst", _("Analyst")
    LIAISON = "liaison", _("Law-enforcement liaison")
    READ_ONLY = "read_only", _("Read-only")


# Roles allowed to change an organisation's own data and memberships.
ORG_MANAGER_ROLES = frozenset({Role.NODE_ADMIN, Role.ORG_ADMIN})
# Roles that act in an organisation's name (share intelligence, work incidents and requests):
# everyone but read-only members.
WORKING_ROLES = (Role.NODE_ADMIN, Role.ORG_ADMIN, Role.ANALYST, Role.LIAISON)
