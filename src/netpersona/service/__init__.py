"""The metadata service: what VMs ask for their network persona, and what operators drive."""

from netpersona.service.app import create_app
from netpersona.service.assignment import PolicyPersonas
from netpersona.service.fleet import Fleet
from netpersona.service.notifier import ChangeNotifier
from netpersona.service.views import (
    FleetView,
    PersonaResolver,
    PinnedPersonas,
    View,
    ViewKind,
)

__all__ = [
    "ChangeNotifier",
    "Fleet",
    "FleetView",
    "PersonaResolver",
    "PinnedPersonas",
    "PolicyPersonas",
    "View",
    "ViewKind",
    "create_app",
]
