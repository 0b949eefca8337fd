"""The metadata service: what VMs ask for their network persona, and what operators drive."""

from netpersona.service.app import create_app
from netpersona.service.fleet import Fleet
from netpersona.service.notifier import ChangeNotifier
from netpersona.service.policy import PolicyPersonas
from netpersona.service.views import (
    EffectiveVersion,
    FleetView,
    PersonaResolver,
    PinnedPersonas,
    View,
    ViewKind,
)

__all__ = [
    "ChangeNotifier",
    "EffectiveVersion",
    "Fleet",
    "FleetView",
    "PersonaResolver",
    "PinnedPersonas",
    "PolicyPersonas",
    "View",
    "ViewKind",
    "create_app",
]
